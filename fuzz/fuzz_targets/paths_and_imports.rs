//! Path canonicalisation, own-route matching and the Tachi export reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = tachi_gate::http::path::canonical(text) {
        let _ = tachi_gate::api::routes::own_route(&path);
    }
    let known = vec!["submit_score".to_string()];
    let _ = tachi_gate::ops::import::clients(text, &known);
    let _ = tachi_gate::ops::import::keys(text, &known);
});
