//! Reading Tachi's `api-clients` and `api-tokens` collections as `mongoexport`
//! writes them (JSON lines or a JSON array, relaxed or canonical extended
//! JSON), so an existing Tachi's integrations keep working through the gate.
//!
//! A file is checked whole before anything is written: one bad record rejects
//! the file, naming its line.

use serde_json::{Map, Value};

use crate::store::{digest, digest_hex, now_ms, random_hex, ClientRecord, Digest, KeyRecord};

/// A record that cannot be imported, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn error<T>(line: usize, message: impl Into<String>) -> Result<T, ImportError> {
    Err(ImportError {
        line,
        message: message.into(),
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Every document in a mongoexport file, with the line it starts on.
pub fn documents(text: &str) -> Result<Vec<(usize, Value)>, ImportError> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let skip_ws = |mut p: usize| {
        while p < bytes.len() && bytes[p].is_ascii_whitespace() {
            p += 1;
        }
        p
    };
    pos = skip_ws(pos);
    let array = bytes.get(pos) == Some(&b'[');
    if array {
        pos += 1;
    }
    let mut docs = Vec::new();
    loop {
        pos = skip_ws(pos);
        if array {
            if bytes.get(pos) == Some(&b']') {
                pos = skip_ws(pos + 1);
                if pos < bytes.len() {
                    return error(line_of(text, pos), "unexpected text after the JSON array");
                }
                return Ok(docs);
            }
            if !docs.is_empty() {
                if bytes.get(pos) != Some(&b',') {
                    return error(line_of(text, pos), "expected ',' or ']' between documents");
                }
                pos = skip_ws(pos + 1);
            }
        }
        if pos >= bytes.len() {
            return if array {
                error(line_of(text, pos), "the JSON array is not closed")
            } else {
                Ok(docs)
            };
        }
        let line = line_of(text, pos);
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                pos += stream.byte_offset();
                docs.push((line, v));
            }
            Some(Err(e)) => return error(line + e.line() - 1, format!("invalid JSON: {e}")),
            None => return Ok(docs),
        }
    }
}

/// Unwraps Mongo's extended-JSON wrappers: `{"$oid": s}` → s,
/// `{"$numberInt"|"$numberLong"|"$numberDouble": s}` → the number.
fn plain(v: Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 => {
            let (k, inner) = m.into_iter().next().unwrap_or_default();
            match (k.as_str(), &inner) {
                ("$oid", Value::String(_)) => inner,
                ("$numberInt" | "$numberLong", Value::String(s)) => s
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(s.clone())),
                ("$numberDouble", Value::String(s)) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::String(s.clone())),
                _ => Value::Object(Map::from_iter([(k, plain(inner))])),
            }
        }
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, plain(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(plain).collect()),
        other => other,
    }
}

struct Doc<'a> {
    line: usize,
    map: &'a Map<String, Value>,
}

impl Doc<'_> {
    fn string(&self, name: &str) -> Result<String, ImportError> {
        match self.map.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => error(self.line, format!("{name}: expected a non-empty string")),
        }
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>, ImportError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => error(self.line, format!("{name}: expected a string or null")),
        }
    }

    fn user(&self, name: &str) -> Result<u64, ImportError> {
        let value = self.map.get(name);
        // A whole number, also when Mongo wrote it as a double (`7.0`).
        let whole = value.and_then(Value::as_u64).or_else(|| {
            value
                .and_then(Value::as_f64)
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        });
        whole.map_or_else(
            || {
                error(
                    self.line,
                    format!("{name}: expected a user ID (a whole number)"),
                )
            },
            Ok,
        )
    }

    fn permission(&self, p: &str, known: &[String]) -> Result<String, ImportError> {
        if known.iter().any(|k| k == p) {
            Ok(p.to_string())
        } else {
            error(
                self.line,
                format!("unknown permission '{p}' (add it to oauth.permissions to import it)"),
            )
        }
    }

    /// When the document was made: the time in its ObjectId, else now.
    fn created_on(&self) -> u64 {
        self.map
            .get("_id")
            .and_then(Value::as_str)
            .filter(|id| id.len() == 24)
            .and_then(|id| u64::from_str_radix(&id[..8], 16).ok())
            .map(|secs| secs * 1000)
            .unwrap_or_else(now_ms)
    }
}

/// Runs `f` on each document of `text` (a JSON object, Extended JSON made
/// plain), stopping at the first error.
fn each_doc<T>(
    text: &str,
    mut f: impl FnMut(&Doc<'_>) -> Result<T, ImportError>,
) -> Result<Vec<T>, ImportError> {
    documents(text)?
        .into_iter()
        .map(|(line, v)| {
            let v = plain(v);
            f(&Doc {
                line,
                map: object(line, &v)?,
            })
        })
        .collect()
}

fn object(line: usize, v: &Value) -> Result<&Map<String, Value>, ImportError> {
    v.as_object()
        .map_or_else(|| error(line, "expected a JSON object"), Ok)
}

/// Whether a client ID is one the gate can store and index: 1 to 128
/// printable ASCII characters, no `/` (Tachi's are `CI` + 40 hex).
pub fn valid_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Tachi `api-clients` documents as client records (secrets hashed here).
pub fn clients(text: &str, known: &[String]) -> Result<Vec<ClientRecord>, ImportError> {
    each_doc(text, |d| {
        let line = d.line;
        let Some(Value::Array(perms)) = d.map.get("requestedPermissions") else {
            return error(line, "requestedPermissions: expected an array");
        };
        let mut requested = Vec::with_capacity(perms.len());
        for p in perms {
            let Some(p) = p.as_str() else {
                return error(line, "requestedPermissions: expected strings");
            };
            let p = d.permission(p, known)?;
            if !requested.contains(&p) {
                requested.push(p);
            }
        }
        let client_id = d.string("clientID")?;
        if !valid_client_id(&client_id) {
            return error(
                line,
                "clientID: expected 1 to 128 printable characters without '/'",
            );
        }
        Ok(ClientRecord {
            client_id,
            secret_hash: digest_hex(&d.string("clientSecret")?),
            name: d.string("name")?,
            author: d.user("author")?,
            requested_permissions: requested,
            redirect_uri: d.optional_string("redirectUri")?,
            webhook_uri: d.optional_string("webhookUri")?,
            api_key_template: d.optional_string("apiKeyTemplate")?,
            api_key_filename: d.optional_string("apiKeyFilename")?,
            created_on: d.created_on(),
            public: false,
        })
    })
}

/// Tachi `api-tokens` documents as keys (hashed here), each with a new token ID.
pub fn keys(text: &str, known: &[String]) -> Result<Vec<(Digest, KeyRecord)>, ImportError> {
    each_doc(text, |d| {
        let line = d.line;
        let mut permissions = Vec::new();
        match d.map.get("permissions") {
            Some(Value::Object(m)) => {
                for (p, on) in m {
                    if on.as_bool() == Some(true) {
                        permissions.push(d.permission(p, known)?);
                    }
                }
            }
            Some(Value::Array(list)) => {
                for p in list {
                    let Some(p) = p.as_str() else {
                        return error(line, "permissions: expected strings");
                    };
                    permissions.push(d.permission(p, known)?);
                }
            }
            _ => return error(line, "permissions: expected an object of permission: true"),
        }
        permissions.sort();
        permissions.dedup();
        let token = d.string("token")?;
        Ok((
            digest(&token),
            KeyRecord {
                token_id: random_hex(12),
                user_id: d.user("userID")?,
                identifier: d.optional_string("identifier")?.unwrap_or_default(),
                permissions,
                from_client: match d.optional_string("fromAPIClient")? {
                    Some(c) if !valid_client_id(&c) => {
                        return error(line, "fromAPIClient: not a client ID")
                    }
                    other => other,
                },
                created_on: d.created_on(),
                memo: Default::default(),
            },
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        vec!["submit_score".into(), "customise_profile".into()]
    }

    #[test]
    fn json_lines_and_arrays_give_the_same_documents_with_lines() {
        let lines = "{\"a\":1}\n\n{\"a\":2}\n";
        let array = "[\n  {\"a\":1},\n\n  {\"a\":2}\n]\n";
        let l = documents(lines).unwrap();
        let a = documents(array).unwrap();
        assert_eq!(l.iter().map(|d| d.0).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(a.iter().map(|d| d.0).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(l[1].1, a[1].1);
        assert!(documents("").unwrap().is_empty());
        assert_eq!(documents("{\"a\":1}\n{oops}\n").unwrap_err().line, 2);
        assert!(documents("[{\"a\":1}").is_err());
    }

    #[test]
    fn mongo_wrappers_are_unwrapped() {
        let text = r#"{"_id":{"$oid":"65a1b2c3d4e5f60718293a4b"},"userID":{"$numberInt":"7"},"token":"abc","identifier":"x","permissions":{"submit_score":true,"customise_profile":false},"fromAPIClient":null}"#;
        let keys = keys(text, &known()).unwrap();
        let (d, k) = &keys[0];
        assert_eq!(*d, digest("abc"));
        assert_eq!(k.user_id, 7);
        assert_eq!(k.permissions, vec!["submit_score"]);
        assert_eq!(k.created_on, 0x65a1b2c3 * 1000);
    }

    #[test]
    fn a_bad_record_names_its_line() {
        let text = "{\"clientID\":\"CI1\",\"clientSecret\":\"CS1\",\"name\":\"A\",\"author\":1,\"requestedPermissions\":[]}\n{\"clientID\":\"CI2\",\"name\":\"B\",\"author\":1,\"requestedPermissions\":[]}\n";
        let e = clients(text, &known()).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("clientSecret"), "{e}");
        let e = keys(
            "{\"userID\":1,\"token\":\"t\",\"permissions\":{\"fly\":true}}",
            &known(),
        )
        .unwrap_err();
        assert!(e.message.contains("fly"), "{e}");
    }
}
