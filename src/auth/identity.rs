//! The identity headers the upstream is told (`X-Tachi-*`): who the caller
//! is, what its key may do, and which client and key it came from. The
//! proxy's forwarding step sets them; see docs/http-api.md, "What the
//! upstream receives".

use bytes::BytesMut;
use http::header::InvalidHeaderValue;
use http::{HeaderName, HeaderValue};

use super::Identity;
use crate::store::KeyRecord;

/// Identity headers the gate sets; any inbound copies are removed first.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-tachi-user-id",
    "x-tachi-permissions",
    "x-tachi-client-id",
    "x-tachi-token-id",
];

/// The identity headers as header names, in the order of [`IDENTITY_HEADERS`].
const IDENTITY_NAMES: [HeaderName; 4] = [
    HeaderName::from_static(IDENTITY_HEADERS[0]),
    HeaderName::from_static(IDENTITY_HEADERS[1]),
    HeaderName::from_static(IDENTITY_HEADERS[2]),
    HeaderName::from_static(IDENTITY_HEADERS[3]),
];

/// The identity headers to set upstream for a caller: none for a caller
/// without a key. A key's are made at its first forwarded request and kept
/// with its record in memory ([`crate::store::Memo`]), so a request with a
/// key in use copies no string and allocates nothing for them.
pub fn identity_headers(
    identity: &Identity,
) -> Result<&[(HeaderName, HeaderValue)], InvalidHeaderValue> {
    match identity {
        Identity::Key(k) => k.memo.headers(|| key_headers(k)),
        _ => Ok(&[]),
    }
}

/// A key's identity headers, in the order of [`IDENTITY_HEADERS`], without
/// a client header for a key no client was given. The values are written
/// into one buffer, each split off as it is complete. Every part comes from
/// the store, whose writers validate it, so a value that cannot be a header
/// is a corrupt record.
fn key_headers(k: &KeyRecord) -> Result<Vec<(HeaderName, HeaderValue)>, InvalidHeaderValue> {
    let mut headers = Vec::with_capacity(4);
    let mut text = BytesMut::with_capacity(64);
    let [user, permissions, client, token] = IDENTITY_NAMES;
    text.extend_from_slice(itoa::Buffer::new().format(k.user_id).as_bytes());
    headers.push((user, value(&mut text)?));
    for (i, permission) in k.permissions.iter().enumerate() {
        if i > 0 {
            text.extend_from_slice(b",");
        }
        text.extend_from_slice(permission.as_bytes());
    }
    headers.push((permissions, value(&mut text)?));
    if let Some(id) = &k.from_client {
        text.extend_from_slice(id.as_bytes());
        headers.push((client, value(&mut text)?));
    }
    text.extend_from_slice(k.token_id.as_bytes());
    headers.push((token, value(&mut text)?));
    Ok(headers)
}

/// The bytes written to `text` since the last split, as a header value that
/// shares the buffer.
fn value(text: &mut BytesMut) -> Result<HeaderValue, InvalidHeaderValue> {
    HeaderValue::from_maybe_shared(text.split().freeze())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn key_identity_headers_are_complete() {
        let k = KeyRecord {
            from_client: Some("CI1".into()),
            ..KeyRecord::sample()
        };
        let h = listed(identity_headers(&keyed(k)).unwrap());
        assert_eq!(
            h,
            vec![
                ("x-tachi-user-id".into(), HeaderValue::from_static("5")),
                (
                    "x-tachi-permissions".into(),
                    HeaderValue::from_static("a,b")
                ),
                ("x-tachi-client-id".into(), HeaderValue::from_static("CI1")),
                ("x-tachi-token-id".into(), HeaderValue::from_static("t1")),
            ]
        );
        assert!(listed(identity_headers(&Identity::Session(1)).unwrap()).is_empty());
        // Without a client, and with one permission or none: the values
        // around the missing one keep their own bytes.
        for (permissions, joined) in [(vec!["a".to_string()], "a"), (vec![], "")] {
            let k = KeyRecord {
                permissions,
                user_id: 1234567,
                token_id: "tok".into(),
                ..KeyRecord::sample()
            };
            assert_eq!(
                listed(identity_headers(&keyed(k)).unwrap()),
                vec![
                    (
                        "x-tachi-user-id".into(),
                        HeaderValue::from_static("1234567")
                    ),
                    (
                        "x-tachi-permissions".into(),
                        HeaderValue::from_static(joined)
                    ),
                    ("x-tachi-token-id".into(), HeaderValue::from_static("tok")),
                ]
            );
        }
    }

    #[test]
    fn a_keys_headers_are_made_once_and_kept_with_its_record() {
        let record = Arc::new(KeyRecord::sample());
        let (one, other) = (keyed_arc(&record), keyed_arc(&record));
        let first = identity_headers(&one).unwrap();
        let again = identity_headers(&other).unwrap();
        assert!(std::ptr::eq(first, again), "the same kept headers");
        // A copy of the record (a fresh store read) makes its own.
        let copy = Identity::Key(Arc::new((*record).clone()));
        assert!(!std::ptr::eq(identity_headers(&copy).unwrap(), first));
        assert_eq!(listed(identity_headers(&copy).unwrap()), listed(first));
    }

    #[test]
    fn no_identity_header_can_carry_the_assertion() {
        for h in IDENTITY_HEADERS {
            let e = crate::config::Config::from_toml_offline(&format!(
                "[identity]\nheader = \"{h}\"\n"
            ))
            .unwrap_err();
            assert!(e.to_string().starts_with("identity.header: "), "{h}: {e}");
        }
    }

    /// The headers set, as (name, value) pairs.
    fn listed(h: &[(HeaderName, HeaderValue)]) -> Vec<(String, HeaderValue)> {
        h.iter().map(|(n, v)| (n.to_string(), v.clone())).collect()
    }

    fn keyed_arc(record: &Arc<KeyRecord>) -> Identity {
        Identity::Key(record.clone())
    }

    fn keyed(record: KeyRecord) -> Identity {
        Identity::Key(Arc::new(record))
    }
}
