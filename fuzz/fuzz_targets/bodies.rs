//! The token, revoke and introspect body parsers: JSON and form, any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tachi_gate::http::body;
use tachi_gate::api::oauth::token::TokenParams;

fuzz_target!(|data: &[u8]| {
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    let content_type = match selector % 4 {
        0 => Some("application/json"),
        1 => Some("application/x-www-form-urlencoded"),
        2 => Some("text/plain"),
        _ => None,
    };
    if let Ok((_, map)) = body::object(content_type, rest) {
        let _ = TokenParams::from_object(&map);
    }
    let _ = body::query_object(std::str::from_utf8(rest).ok());
});
