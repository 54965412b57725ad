//! Property tests for the parsers that see untrusted bytes: they never panic,
//! and what they accept round-trips.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Map, Value};
use tachi_gate::api::oauth::token::TokenParams;
use tachi_gate::api::routes::own_route;
use tachi_gate::config::Config;
use tachi_gate::http::authorization::{basic_credentials, parse, Authorization};
use tachi_gate::http::body;
use tachi_gate::http::path::canonical;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn body_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), kind in 0u8..4) {
        let ct = [Some("application/json"), Some("application/x-www-form-urlencoded"), Some("text/plain"), None][kind as usize];
        if let Ok((_, map)) = body::object(ct, &data) {
            let _ = TokenParams::from_object(&map);
        }
    }

    #[test]
    fn forms_round_trip(pairs in proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{0,40}", 0..8)) {
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let parsed = body::form_object(encoded.as_bytes()).unwrap();
        let expected: Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn json_objects_round_trip(pairs in proptest::collection::btree_map("\\PC{1,12}", "\\PC{0,40}", 0..8)) {
        let object: Map<String, Value> = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let text = serde_json::to_vec(&object).unwrap();
        prop_assert_eq!(body::json_object(&text).unwrap(), object);
    }

    #[test]
    fn authorization_parsing_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Authorization::Basic(enc) = parse(&data) {
            let _ = basic_credentials(enc);
        }
        let _ = basic_credentials(&data);
    }

    #[test]
    fn bearer_tokens_are_read_back(token in "[!-~]{1,64}", scheme in "(?i)bearer") {
        let header = format!("{scheme} {token}");
        prop_assert_eq!(parse(header.as_bytes()), Authorization::Bearer(token.as_bytes()));
    }

    #[test]
    fn basic_credentials_round_trip(id in "[A-Za-z0-9]{1,42}", secret in "\\PC{0,42}") {
        let form = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let raw = format!("{}:{}", form(&id), form(&secret));
        let enc = base64::engine::general_purpose::STANDARD.encode(raw);
        prop_assert_eq!(basic_credentials(enc.as_bytes()), Some((id, secret)));
    }

    #[test]
    fn canonical_paths_are_stable_and_clean(path in "/[a-zA-Z0-9%/._~-]{0,60}") {
        if let Ok(c) = canonical(&path) {
            prop_assert!(!c.contains("//"));
            prop_assert!(!c.split('/').any(|s| s == "." || s == ".."));
            let again = canonical(&c).unwrap();
            prop_assert_eq!(again.as_ref(), c.as_ref());
            let _ = own_route(&c);
        }
    }

    #[test]
    fn the_config_loader_never_panics(text in "\\PC{0,300}") {
        let _ = Config::from_toml_offline(&text);
    }

    #[test]
    fn config_documents_of_known_keys_never_panic(
        listen in "(\"[0-9.:]{0,20}\"|\\[\\])",
        ttl in any::<i64>(),
        cap in any::<i64>(),
        tokens in "(\"reject\"|\"forward\"|\"[a-z]{0,6}\"|1)",
    ) {
        let text = format!("[server]\nlisten = {listen}\n[oauth]\ncode_ttl_secs = {ttl}\nclient_cap = {cap}\n[gate]\nunknown_tokens = {tokens}\n");
        let _ = Config::from_toml_offline(&text);
    }
}
