//! Checks of request fields shared by the client and key routes and the
//! admin API.

use serde_json::{Map, Value};

use crate::http::reply::Reply;

/// Refuses any field outside `allowed`, naming the first one.
pub fn only_fields(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), Reply> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            let shown: String = k.chars().take(60).collect();
            Err(Reply::failure(400, format!("Unexpected field '{shown}'.")))
        }
        None => Ok(()),
    }
}

/// An array of permission names, each one of `known`, de-duplicated in order.
pub fn permission_list(value: Option<&Value>, known: &[String]) -> Result<Vec<String>, Reply> {
    let Some(Value::Array(list)) = value else {
        return Err(Reply::failure(
            400,
            "Invalid permissions: expected an array of permission names.",
        ));
    };
    let mut permissions: Vec<String> = Vec::with_capacity(list.len());
    for p in list {
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
                        "Invalid permissions: each must be one of {}.",
                        known.join(", ")
                    ),
                ))
            }
        }
    }
    Ok(permissions)
}
