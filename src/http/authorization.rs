//! Parsing the `Authorization` header: Bearer keys for the gate, Basic client
//! credentials for the token endpoint.

use base64::Engine as _;
use http::HeaderMap;

/// What an `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization<'a> {
    /// `Bearer <token>` (scheme case-insensitive); the token may be empty.
    Bearer(&'a [u8]),
    /// `Basic <base64>`.
    Basic(&'a [u8]),
    /// Any other scheme.
    Other,
}

/// More than one `Authorization` header: which one counts would be a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

/// The request's `Authorization` header, parsed: `None` without one, and
/// [`Repeated`] when there are several.
pub fn of_request(headers: &HeaderMap) -> Result<Option<Authorization<'_>>, Repeated> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    match (all.next(), all.next()) {
        (Some(_), Some(_)) => Err(Repeated),
        // An empty header is no credentials at all, as in Tachi.
        (Some(value), None) if value.is_empty() => Ok(None),
        (Some(value), None) => Ok(Some(parse(value.as_bytes()))),
        (None, _) => Ok(None),
    }
}

/// Splits a header value into its scheme and credentials (RFC 9110 §11.4).
pub fn parse(value: &[u8]) -> Authorization<'_> {
    let value = value.trim_ascii();
    let (scheme, rest) = match value.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => (&value[..i], value[i..].trim_ascii()),
        None => (value, &b""[..]),
    };
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Authorization::Bearer(rest)
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        Authorization::Basic(rest)
    } else {
        Authorization::Other
    }
}

/// Decodes HTTP Basic client credentials as RFC 6749 §2.3.1 has them: base64 of
/// `id:secret`, each part form-url-encoded. `None` when malformed.
pub fn basic_credentials(encoded: &[u8]) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| crate::http::body::form_decode(s).ok();
    Some((decode(id)?, decode(secret)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parse(b"Bearer abc"), Authorization::Bearer(b"abc"));
        assert_eq!(parse(b"bEaReR   abc "), Authorization::Bearer(b"abc"));
        assert_eq!(parse(b"Bearer"), Authorization::Bearer(b""));
        assert_eq!(parse(b"Bearer "), Authorization::Bearer(b""));
        assert_eq!(parse(b"basic Zm9v"), Authorization::Basic(b"Zm9v"));
        assert_eq!(parse(b"Token abc"), Authorization::Other);
        assert_eq!(parse(b""), Authorization::Other);
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // "CI1:a%2Bb+c" -> ("CI1", "a+b c")
        let enc = base64::engine::general_purpose::STANDARD.encode("CI1:a%2Bb+c");
        assert_eq!(
            basic_credentials(enc.as_bytes()),
            Some(("CI1".into(), "a+b c".into()))
        );
        let colon_in_secret = base64::engine::general_purpose::STANDARD.encode("id:x:y");
        assert_eq!(
            basic_credentials(colon_in_secret.as_bytes()),
            Some(("id".into(), "x:y".into()))
        );
        assert_eq!(basic_credentials(b"!!!"), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("abc");
        assert_eq!(basic_credentials(no_colon.as_bytes()), None);
        let bad_utf8 = base64::engine::general_purpose::STANDARD.encode("a:%ff");
        assert_eq!(basic_credentials(bad_utf8.as_bytes()), None);
    }
}
