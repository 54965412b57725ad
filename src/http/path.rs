//! One canonical form of the request path for every decision the gate makes.
//!
//! Tachi's router (Express) matches paths case-insensitively, so `/IR/x`
//! reaches the same handler as `/ir/x`; other upstreams decode escapes or
//! merge slashes. If the gate matched the raw path, such spellings would slip
//! past its own routes and policies. So decisions use this canonical form:
//! escapes of unreserved characters decoded, runs of `/` merged, and dot
//! segments and backslashes refused outright. Callers compare it
//! case-insensitively. The request itself is forwarded unchanged.

use std::borrow::Cow;

/// A path that the gate will not interpret: one the upstream could read as
/// another path than the gate would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uninterpretable {
    /// `.` or `..` segments, which upstreams resolve.
    DotSegments,
    /// A `\`, which Node's legacy URL parser (Express's, for some targets)
    /// turns into `/`: `/ir\x` would be `/ir/x` upstream and pass by a
    /// policy on `/ir/`.
    Backslash,
}

impl Uninterpretable {
    /// The refusal's words.
    pub fn describe(self) -> &'static str {
        match self {
            Uninterpretable::DotSegments => "The path has '.' or '..' segments.",
            Uninterpretable::Backslash => "The path has a backslash.",
        }
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Whether appending `decoded` to `out` would spell a new escape with a stray
/// `%` already there (`%%33` → `%3…`). Such an escape is kept as it is, so
/// that the canonical form is its own canonical form.
fn completes_an_escape(out: &[u8], decoded: u8) -> bool {
    decoded.is_ascii_hexdigit()
        && match out {
            [.., b'%'] => true,
            [.., b'%', h] => h.is_ascii_hexdigit(),
            _ => false,
        }
}

/// The canonical form of `path` (without its query string).
pub fn canonical(path: &str) -> Result<Cow<'_, str>, Uninterpretable> {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return Err(Uninterpretable::Backslash);
    }
    let simple = !bytes.contains(&b'%') && !path.contains("//");
    let out: Cow<'_, str> = if simple {
        Cow::Borrowed(path)
    } else {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' && i + 2 < bytes.len() {
                if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    let decoded = h * 16 + l;
                    if unreserved(decoded) && !completes_an_escape(&out, decoded) {
                        out.push(decoded);
                        i += 3;
                        continue;
                    }
                }
            }
            if b == b'/' && out.last() == Some(&b'/') {
                i += 1;
                continue;
            }
            out.push(b);
            i += 1;
        }
        // Only ASCII was decoded and nothing else changed, so this stays UTF-8.
        Cow::Owned(String::from_utf8(out).map_err(|_| Uninterpretable::DotSegments)?)
    };
    if out.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(Uninterpretable::DotSegments);
    }
    Ok(out)
}

/// `path` as logs may show it: each segment that holds what could be a key,
/// a code or a client secret (a run of 32 or more hex digits, not part of a
/// client ID, which is public and starts `CI`) becomes `[redacted]`. Applied
/// to every logged path, recognised or not, so a key a client put in a URL
/// by mistake never reaches a log.
pub fn redact_secrets(path: &str) -> Cow<'_, str> {
    if !path.split('/').any(holds_secret) {
        return Cow::Borrowed(path);
    }
    let parts: Vec<&str> = path
        .split('/')
        .map(|seg| if holds_secret(seg) { "[redacted]" } else { seg })
        .collect();
    Cow::Owned(parts.join("/"))
}

fn holds_secret(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut run = 0;
    for (i, b) in bytes.iter().enumerate() {
        if b.is_ascii_hexdigit() {
            run += 1;
            let start = i + 1 - run;
            let client_id = start >= 2 && bytes[start - 2..start].eq_ignore_ascii_case(b"CI");
            if run >= 32 && !client_id {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Whether `prefix` covers `path` segment by segment, ignoring case: `/ir/`
/// and `/ir` both cover `/ir` and everything under it, and neither covers
/// `/irx`.
pub fn covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if !starts_with_ignore_case(path, prefix) {
        return false;
    }
    let rest = &path[prefix.len()..];
    rest.is_empty() || rest.starts_with('/')
}

/// Whether `path` starts with `prefix`, ignoring ASCII case.
pub fn starts_with_ignore_case(path: &str, prefix: &str) -> bool {
    path.len() >= prefix.len()
        && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        assert!(matches!(
            canonical("/ir/direct-manual"),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded() {
        assert_eq!(canonical("/%69r/x").unwrap(), "/ir/x");
        assert_eq!(canonical("/%49R/x").unwrap(), "/IR/x");
        assert_eq!(
            canonical("/a%2Fb").unwrap(),
            "/a%2Fb",
            "an escaped slash stays"
        );
        assert_eq!(canonical("/a%zz").unwrap(), "/a%zz");
        assert_eq!(canonical("/a%4").unwrap(), "/a%4");
    }

    #[test]
    fn decoding_never_makes_a_new_escape() {
        // Found by tests/properties.rs: "/%%330" became "/%30", then "/0".
        assert_eq!(canonical("/%%330").unwrap(), "/%%330");
        assert_eq!(canonical("/%3%30").unwrap(), "/%3%30");
        for p in ["/%%330", "/%3%30", "/%%%36%31", "/a%%6%39r"] {
            let once = canonical(p).unwrap();
            assert_eq!(canonical(&once).unwrap(), once, "{p}");
        }
        assert_eq!(
            canonical("/%%69r").unwrap(),
            "/%ir",
            "not a hex digit: decoded"
        );
    }

    #[test]
    fn slashes_are_merged() {
        assert_eq!(canonical("//ir///x").unwrap(), "/ir/x");
    }

    #[test]
    fn dot_segments_are_refused() {
        assert_eq!(canonical("/a/../ir/x"), Err(Uninterpretable::DotSegments));
        assert_eq!(canonical("/a/./x"), Err(Uninterpretable::DotSegments));
        assert_eq!(canonical("/a/%2e%2E/x"), Err(Uninterpretable::DotSegments));
        assert_eq!(canonical("/a/.."), Err(Uninterpretable::DotSegments));
        assert!(canonical("/a/.well-known/x").is_ok());
    }

    #[test]
    fn backslashes_are_refused() {
        for p in ["/ir\\direct-manual", "\\ir/x", "/api\\v1\\users"] {
            assert_eq!(canonical(p), Err(Uninterpretable::Backslash), "{p}");
        }
        // Escaped, it is a plain character to every parser: left alone.
        assert!(canonical("/ir%5Cx").is_ok());
    }

    #[test]
    fn prefix_comparison_ignores_case() {
        assert!(starts_with_ignore_case("/IR/Direct", "/ir/"));
        assert!(!starts_with_ignore_case("/i", "/ir/"));
    }

    #[test]
    fn secrets_in_paths_are_redacted_for_logs() {
        let key = "0123456789abcdef0123456789abcdef01234567";
        let client = format!("CI{key}");
        assert_eq!(redact_secrets("/x/y"), "/x/y");
        assert_eq!(
            redact_secrets(&format!("/api/v1/users/me/api-tokens/{key}/x")),
            "/api/v1/users/me/api-tokens/[redacted]/x"
        );
        assert_eq!(
            redact_secrets(&format!("/a/CS{key}/../b?{key}")),
            "/a/[redacted]/../[redacted]"
        );
        assert_eq!(
            redact_secrets(&format!("/api/v1/clients/{client}")),
            format!("/api/v1/clients/{client}")
        );
        // A token ID (24 hex digits) is not a secret.
        assert_eq!(
            redact_secrets("/t/0123456789abcdef01234567"),
            "/t/0123456789abcdef01234567"
        );
    }
}
