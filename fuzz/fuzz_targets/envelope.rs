//! Any bytes as a webhook body: every provider's envelope parser must answer, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ingest::providers::{calcom, retell, stripe};

fuzz_target!(|data: &[u8]| {
    let _ = retell::envelope(data);
    let _ = stripe::envelope(data);
    let _ = calcom::envelope(data);
});
