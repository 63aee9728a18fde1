//! Any bytes as a webhook body: every provider's identifier parser must answer, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ingest::providers::{calcom, retell, stripe};

fuzz_target!(|data: &[u8]| {
    let _ = retell::identify(data);
    let _ = stripe::identify(data);
    let _ = calcom::identify(data);
});
