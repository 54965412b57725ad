//! The configuration loader, on any text (numeric addresses only: no DNS).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tachi_gate::config::Config::from_toml_offline(text);
    }
});
