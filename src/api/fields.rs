//! Checks of request fields shared by the client and key routes and the
//! admin API.

use serde_json::{Map, Value};

use crate::http::reply::Reply;

/// Refuses any field outside `allowed`, naming them as Tachi's validator does.
pub fn only_fields(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), Reply> {
    let unexpected: Vec<String> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .take(10)
        .map(|k| k.chars().take(60).collect())
        .collect();
    if unexpected.is_empty() {
        return Ok(());
    }
    Err(Reply::failure(
        400,
        format!(
            "[null] Unexpected properties inside object: {}.",
            unexpected.join(", ")
        ),
    ))
}

/// An array of permission names, each one of `known`, de-duplicated in
/// order. Refusals are worded as Tachi's validator words them
/// (`[permissions[1]] Expected any of …. (Received x)`).
pub fn permission_list(value: Option<&Value>, known: &[String]) -> Result<Vec<String>, Reply> {
    let Some(Value::Array(list)) = value else {
        return Err(Reply::failure(400, "[permissions] Value was not an array."));
    };
    let mut permissions: Vec<String> = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        match p.as_str() {
            Some(p) if known.iter().any(|k| k == p) => {
                if !permissions.iter().any(|q| q == p) {
                    permissions.push(p.to_string());
                }
            }
            _ => {
                return Err(Reply::failure(
                    400,
                    format!(
                        "[permissions[{i}]] Expected any of {}.{}",
                        known.join(", "),
                        received(p)
                    ),
                ))
            }
        }
    }
    Ok(permissions)
}

/// How Tachi's validator shows the value it refused: " (Received x)",
/// cut to 100 characters, and nothing for an empty, false, null, object or
/// array value.
pub fn received(value: &Value) -> String {
    let shown = match value {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) if n.as_f64() != Some(0.0) => n.to_string(),
        Value::Bool(true) => "true".to_string(),
        _ => return String::new(),
    };
    if shown.chars().count() > 100 {
        let cut: String = shown.chars().take(100).collect();
        format!(" (Received {cut}...)")
    } else {
        format!(" (Received {shown})")
    }
}
