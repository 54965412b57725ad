//! Tachi's OAuth2 routes (docs/http-api.md), served by the gate from its own store.

pub mod authorize;
pub mod client_auth;
pub mod consent_page;
pub mod create_code;
pub mod introspect;
pub mod metadata;
pub mod pkce;
pub mod revoke;
pub mod token;

use serde_json::{Map, Value};

/// A request parameter that must be a string when present (`null` = absent).
/// An empty string counts as missing, as RFC 6749 §3.2 has it.
pub fn string_param(params: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} must be a string.")),
    }
}
