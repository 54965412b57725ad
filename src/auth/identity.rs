//! The identity headers the upstream is told (`X-Tachi-*`): who the caller
//! is, what its key may do, and which client and key it came from. The
//! proxy's forwarding step sets them; see docs/http-api.md, "What the
//! upstream receives".

use bytes::BytesMut;
use http::header::InvalidHeaderValue;
use http::{HeaderName, HeaderValue};

use super::Identity;

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

/// A caller's identity headers, in the order of [`IDENTITY_HEADERS`]: none
/// for a caller without a key, and no client header for a key no client
/// was given.
pub type IdentityHeaders = [Option<(HeaderName, HeaderValue)>; 4];

/// The identity headers to set upstream for a caller. This runs for every
/// request with a key, so the values are written into one buffer, each split
/// off as it is complete: two allocations in all, where a value each and a
/// list took five. Every part comes from the store, whose writers validate
/// it, so a value that cannot be a header is a corrupt record.
pub fn identity_headers(identity: &Identity) -> Result<IdentityHeaders, InvalidHeaderValue> {
    let Identity::Key(k) = identity else {
        return Ok(Default::default());
    };
    let mut text = BytesMut::with_capacity(64);
    let [user, permissions, client, token] = IDENTITY_NAMES;
    text.extend_from_slice(itoa::Buffer::new().format(k.user_id).as_bytes());
    let user = (user, value(&mut text)?);
    for (i, permission) in k.permissions.iter().enumerate() {
        if i > 0 {
            text.extend_from_slice(b",");
        }
        text.extend_from_slice(permission.as_bytes());
    }
    let permissions = (permissions, value(&mut text)?);
    let client = match &k.from_client {
        Some(id) => {
            text.extend_from_slice(id.as_bytes());
            Some((client, value(&mut text)?))
        }
        None => None,
    };
    text.extend_from_slice(k.token_id.as_bytes());
    let token = (token, value(&mut text)?);
    Ok([Some(user), Some(permissions), client, Some(token)])
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
    use crate::store::KeyRecord;

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
    fn listed(h: IdentityHeaders) -> Vec<(String, HeaderValue)> {
        h.into_iter()
            .flatten()
            .map(|(n, v)| (n.to_string(), v))
            .collect()
    }

    fn keyed(record: KeyRecord) -> Identity {
        Identity::Key(Arc::new(record))
    }
}
