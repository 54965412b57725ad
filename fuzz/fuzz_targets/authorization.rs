//! The Authorization header parser and the HTTP Basic credentials decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tachi_gate::http::authorization::{basic_credentials, parse, Authorization};

fuzz_target!(|data: &[u8]| {
    if let Authorization::Basic(encoded) = parse(data) {
        let _ = basic_credentials(encoded);
    }
    let _ = basic_credentials(data);
});
