//! Any bytes as a `retell` signature header: the parser must answer, never panic, and a
//! header it accepts must verify without panicking too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ingest::{SecretList, providers::retell};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        if retell::parse_header(header).is_ok() {
            let secrets = SecretList::parse("fuzz_secret");
            let _ = retell::verify(Some(header), b"{}", &secrets, 1_790_000_000_000);
        }
    }
});
