//! Request bodies of the routes the gate serves itself: size limit, content
//! type and parsing. Pure functions over bytes; reading from the socket is in
//! the proxy glue.

use serde_json::{Map, Value};

use crate::http::reply::Reply;

/// The largest body the gate reads for its own routes. Every legitimate body
/// here is well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    BadContentLength,
    Timeout,
    Unreadable,
    InvalidUtf8,
    InvalidJson(String),
    NotAnObject,
    InvalidForm(String),
    UnsupportedContentType(String),
}

impl BodyError {
    /// The answer for a route that speaks Tachi's envelope only.
    pub fn reply(&self) -> Reply {
        Reply::failure(self.status(), self.describe())
    }

    fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::Timeout => 408,
            _ => 400,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            BodyError::TooLarge => format!("The request body is over {MAX_BODY_BYTES} bytes."),
            BodyError::BadContentLength => "Invalid Content-Length header.".into(),
            BodyError::Timeout => "The request body did not arrive in time.".into(),
            BodyError::Unreadable => "The request body could not be read.".into(),
            BodyError::InvalidUtf8 => "The request body is not valid UTF-8.".into(),
            BodyError::InvalidJson(e) => format!("Invalid JSON body: {e}."),
            BodyError::NotAnObject => "The JSON body must be an object.".into(),
            BodyError::InvalidForm(e) => format!("Invalid form body: {e}."),
            BodyError::UnsupportedContentType(t) => format!(
                "Unsupported Content-Type '{t}': send application/json or application/x-www-form-urlencoded."
            ),
        }
    }
}

/// The body formats the gate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Form,
}

/// Works out the body format from Content-Type. An empty body needs none
/// (`None`: nothing to parse); a non-empty one must say what it is.
pub fn format_of(content_type: Option<&str>, body: &[u8]) -> Result<Option<Format>, BodyError> {
    let media = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .unwrap_or("");
    if media.eq_ignore_ascii_case("application/json") {
        Ok(Some(Format::Json))
    } else if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Some(Format::Form))
    } else if body.is_empty() {
        Ok(None)
    } else if media.is_empty() {
        Err(BodyError::UnsupportedContentType("none".into()))
    } else {
        let shown: String = media.chars().take(100).collect();
        Err(BodyError::UnsupportedContentType(shown))
    }
}

/// Parses a JSON object (an empty body is an empty object).
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let text = std::str::from_utf8(body).map_err(|_| BodyError::InvalidUtf8)?;
    // A member given twice would leave which one counts to the parser
    // (RFC 8259 §4): refused, as a parameter given twice is (RFC 6749 §3.2).
    serde_json::from_str::<NoDuplicates>(text)
        .map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(BodyError::NotAnObject),
        Err(e) => Err(BodyError::InvalidJson(e.to_string())),
    }
}

/// A JSON document read only to find an object member given twice.
struct NoDuplicates;

impl<'de> serde::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NoDuplicates, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                let shown: String = key.chars().take(60).collect();
                return Err(serde::de::Error::custom(format!(
                    "the member \"{shown}\" is given twice"
                )));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
}

/// Parses an `application/x-www-form-urlencoded` body into an object of strings.
/// A parameter given twice is an error (RFC 6749 §3.2), as is invalid UTF-8
/// before or after percent-decoding.
pub fn form_object(body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::InvalidUtf8)?;
    let mut out = Map::new();
    // form_urlencoded::parse would replace invalid UTF-8 with U+FFFD; decode
    // each part strictly instead, so a broken escape is an error, not data.
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (form_decode(k)?, form_decode(v)?);
        if out.contains_key(&k) {
            return Err(BodyError::InvalidForm(format!(
                "parameter '{k}' is repeated"
            )));
        }
        out.insert(k, Value::String(v));
    }
    Ok(out)
}

/// One `application/x-www-form-urlencoded` component: `+` is a space, then
/// percent-escapes; the result must be UTF-8.
pub fn form_decode(part: &str) -> Result<String, BodyError> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| BodyError::InvalidUtf8)
}

/// Parses a body into an object in whichever format its Content-Type says.
pub fn object(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Option<Format>, Map<String, Value>), BodyError> {
    let format = format_of(content_type, body)?;
    let map = match format {
        None => Map::new(),
        Some(Format::Json) => json_object(body)?,
        Some(Format::Form) => form_object(body)?,
    };
    Ok((format, map))
}

/// Query-string parameters as an object of strings (repeats: the first wins).
pub fn query_object(query: Option<&str>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(q) = query {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            out.entry(k.into_owned())
                .or_insert_with(|| Value::String(v.into_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_parameters_and_case_are_ignored() {
        assert_eq!(
            format_of(Some("Application/JSON; charset=utf-8"), b"{}"),
            Ok(Some(Format::Json))
        );
        assert_eq!(
            format_of(Some("application/x-www-form-urlencoded"), b"a=b"),
            Ok(Some(Format::Form))
        );
        assert!(matches!(
            format_of(Some("text/plain"), b"x"),
            Err(BodyError::UnsupportedContentType(_))
        ));
        assert_eq!(format_of(None, b""), Ok(None));
        assert!(
            format_of(None, b"{}").is_err(),
            "a body must say what it is"
        );
    }

    #[test]
    fn json_must_be_an_object_of_valid_utf8() {
        assert!(json_object(b"{\"a\":1}").is_ok());
        assert_eq!(json_object(b"[1]"), Err(BodyError::NotAnObject));
        assert_eq!(
            json_object(b"{\"a\":\"\xff\"}"),
            Err(BodyError::InvalidUtf8)
        );
        assert!(matches!(json_object(b"{"), Err(BodyError::InvalidJson(_))));
        let deep = "[".repeat(10_000);
        assert!(matches!(
            json_object(deep.as_bytes()),
            Err(BodyError::InvalidJson(_))
        ));
    }

    #[test]
    fn form_refuses_repeats_and_bad_percent_encoding() {
        let m = form_object(b"a=1&b=%2B+x").unwrap();
        assert_eq!(m["b"], "+ x");
        assert!(matches!(
            form_object(b"a=1&a=2"),
            Err(BodyError::InvalidForm(_))
        ));
        assert_eq!(form_object(b"a=%ff"), Err(BodyError::InvalidUtf8));
    }

    #[test]
    fn a_member_given_twice_is_refused() {
        assert!(json_object(br#"{"code": "a", "code": "b"}"#).is_err());
        assert!(json_object(br#"{"a": {"b": 1, "b": 2}}"#).is_err());
        assert!(json_object(br#"{"a": [{"b": 1}, {"b": 2}], "c": null}"#).is_ok());
    }
}
