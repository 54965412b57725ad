//! The headers of a forwarded request: what a client could spoof is
//! removed, `X-Forwarded-*` is set afresh, and a key's identity is added
//! (see docs/http-api.md, "What the upstream receives").

use std::net::{IpAddr, SocketAddr};

use http::header::{InvalidHeaderValue, MaxSizeReached};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::identity::{identity_headers, IDENTITY_HEADERS};
use crate::auth::Identity;
use crate::config::UpstreamConfig;
use pingora::http::authority::raw_target_authority;
use pingora::http::RequestHeader;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Why a forwarded request's headers could not be written.
#[derive(Debug)]
pub enum ForwardError {
    /// A key record holds a value that cannot be a header: it is corrupt,
    /// since the store's writers validate every part.
    CorruptRecord(InvalidHeaderValue),
    /// More headers than a header map can hold (unreachable below the
    /// gate's own header size limit).
    TooManyHeaders,
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::CorruptRecord(e) => write!(f, "corrupt key record: {e}"),
            ForwardError::TooManyHeaders => f.write_str("too many headers to forward"),
        }
    }
}

impl From<MaxSizeReached> for ForwardError {
    fn from(_: MaxSizeReached) -> ForwardError {
        ForwardError::TooManyHeaders
    }
}

/// The identity assertion's header: its name, removed from every request
/// (only the gate may send it), and for a key in `jwt` mode its value.
#[derive(Debug, Clone)]
pub struct Assertion<'a> {
    pub header: &'a HeaderName,
    pub value: Option<HeaderValue>,
}

/// Rewrites the headers of a request the gate forwards (docs/http-api.md, "What the upstream receives"): removes
/// what a client could spoof, sets `X-Forwarded-For` (to `client_ip`, or
/// removes it when the client did not come over TCP) and
/// `X-Forwarded-Proto` afresh, and for a key adds the identity headers and,
/// with `hide_credentials`, drops `Authorization`; the assertion, if any,
/// goes with the identity headers.
pub fn forward_headers(
    headers: &mut HeaderMap,
    client_ip: Option<HeaderValue>,
    proto: &'static str,
    identity: &Identity,
    hide_credentials: bool,
    assertion: Assertion<'_>,
) -> Result<(), ForwardError> {
    for name in spoofable_headers(headers, assertion.header) {
        headers.remove(&name);
    }
    normalise_content_length(headers);
    let key_headers = identity_headers(identity).map_err(ForwardError::CorruptRecord)?;
    if hide_credentials && matches!(identity, Identity::Key(_)) {
        headers.remove(http::header::AUTHORIZATION);
    }
    // Room for every header added, so that the map grows at most once.
    headers.try_reserve(3 + key_headers.len())?;
    match client_ip {
        Some(ip) => headers.try_insert(X_FORWARDED_FOR, ip)?,
        None => headers.remove(X_FORWARDED_FOR),
    };
    headers.try_insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto))?;
    for (name, value) in key_headers {
        headers.try_insert(name.clone(), value.clone())?;
    }
    if let Some(value) = assertion.value {
        headers.try_insert(assertion.header.clone(), value)?;
    }
    Ok(())
}

/// One `Content-Length` with one value, where the client sent the same
/// length repeated (`5, 5`, or the header twice). Pingora has already refused
/// lengths that disagree or are not numbers; an upstream that does not allow
/// the repetition (Node answers 400) must still see a request it can read.
fn normalise_content_length(headers: &mut HeaderMap) {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return;
    };
    if values.next().is_none() && !first.as_bytes().contains(&b',') {
        return;
    }
    let length = first
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .and_then(|v| HeaderValue::from_str(v).ok());
    if let Some(length) = length {
        headers.insert(http::header::CONTENT_LENGTH, length);
    }
}

/// Inbound headers that could pass for the gate's word upstream: the identity
/// headers and the assertion's (`assertion`), and every forwarding header (`X-Forwarded-*`, `Forwarded`,
/// `X-Real-IP`), of which the gate sets `X-Forwarded-For` and
/// `X-Forwarded-Proto` afresh. A client's `X-Forwarded-Host` would otherwise
/// reach a framework that trusts its proxy (Express's `trust proxy`) as the
/// site's own host name. Names match with `_` for `-` too, as CGI-style
/// servers merge the two.
pub fn spoofable_headers(headers: &HeaderMap, assertion: &HeaderName) -> Vec<http::HeaderName> {
    headers
        .keys()
        .filter(|name| is_spoofable(name.as_str(), assertion.as_str()))
        .cloned()
        .collect()
}

fn is_spoofable(name: &str, assertion: &str) -> bool {
    let is = |header: &str| name.len() == header.len() && starts_dashed(name, header);
    if is(assertion) {
        return true;
    }
    if starts_dashed(name, "x-tachi-") {
        return IDENTITY_HEADERS.iter().any(|h| is(h));
    }
    starts_dashed(name, "x-forwarded-") || is("forwarded") || is("x-real-ip")
}

/// Whether `name` begins with `prefix`, reading `_` in `name` as `-`. Both
/// are lower case (header names are kept so).
fn starts_dashed(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(n, p)| n == p || (n == b'_' && p == b'-'))
}

/// The `Host` to send upstream for a request that names no host at all (an
/// HTTP/1.0 request without `Host`, its target in origin form). Pingora
/// forwards those as HTTP/1.1 without `Host`, which an upstream must refuse.
/// Like a reverse proxy's usual default, the value is the upstream's own
/// name: its TLS name if it has one (as for session lookups), else the
/// address connected to, `upstream`.
pub fn fallback_host(
    downstream: http::Version,
    req: &RequestHeader,
    upstream: Option<SocketAddr>,
    config: &UpstreamConfig,
) -> Option<HeaderValue> {
    // HTTP/1.1 requests have a Host (see `missing_host`), and Pingora gives
    // HTTP/2 ones theirs from `:authority`.
    if downstream != http::Version::HTTP_10
        || req.headers.contains_key(http::header::HOST)
        || req.uri.authority().is_some()
        || raw_target_authority(req.raw_path()).authority().is_some()
    {
        return None;
    }
    let name = match (config.tls_name(), upstream) {
        (Some(name), _) => name.to_string(),
        (None, Some(addr)) => addr.to_string(),
        (None, None) => return None,
    };
    HeaderValue::try_from(name).ok()
}

/// Runs `edit` on the header map of `req` itself.
///
/// `RequestHeader` keeps a second map with each header name as the client
/// spelled it, and offers no mutable access to its `HeaderMap`: each
/// `insert_header` parses and copies the name, then inserts into both maps,
/// growing each in turn, for each of the six headers a request with a key
/// gets (the cost is in benches/README.md). Here the parts are taken out (a move, not a
/// copy), edited directly with static names and room reserved once, and put
/// back. The cost: without the case map, Pingora writes header names to the
/// upstream in lower case (a few, such as `Host`, in title case). Header
/// names are case-insensitive (RFC 9110 §5.1), and HTTP/2 sends them in
/// lower case anyway. A request-target the URI does not hold byte for byte
/// (absolute-form, or not UTF-8) and the HTTP/2 end-of-stream flag do not
/// survive the round trip on their own, so they are put back.
pub fn edit_headers<T>(
    req: &mut RequestHeader,
    edit: impl FnOnce(&mut http::HeaderMap) -> T,
) -> pingora::Result<T> {
    let uri_target = req
        .uri
        .path_and_query()
        .map(|p| p.as_str().as_bytes())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or_default();
    let target =
        (req.raw_path() != uri_target || !req.raw_path_is_utf8()).then(|| req.raw_path().to_vec());
    let end_stream = req.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, placeholder));
    let out = edit(&mut parts.headers);
    *req = RequestHeader::from(parts);
    if let Some(target) = target {
        req.set_raw_path(&target)?;
    }
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    Ok(out)
}

/// The client address as an `X-Forwarded-For` value. IPv4 is put together
/// from its octets: going through `Display` (with its padding support) and a
/// `String` cost more than inserting the header.
pub fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        // An IPv6 address is always a valid header value.
        return HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static(""));
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let part = digits.format(octet).as_bytes();
        text[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    // Digits and dots only.
    HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::store::KeyRecord;

    fn keyed(record: KeyRecord) -> Identity {
        Identity::Key(Arc::new(record))
    }

    fn inbound() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("host", "tachi"),
            ("authorization", "Bearer k"),
            ("X-Tachi-User-ID", "1"),
            ("x_tachi_permissions", "delete_score"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            ("accept", "*/*"),
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        h
    }

    static ASSERTION: HeaderName = HeaderName::from_static("x-tachi-identity");

    /// The assertion header of a gate in `headers` mode.
    fn unsigned() -> Assertion<'static> {
        Assertion {
            header: &ASSERTION,
            value: None,
        }
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_key_is_forwarded_with_its_identity_and_without_spoofed_headers() {
        let mut h = inbound();
        let ip = Some(HeaderValue::from_static("127.0.0.1"));
        forward_headers(
            &mut h,
            ip,
            "http",
            &keyed(KeyRecord::sample()),
            true,
            unsigned(),
        )
        .unwrap();
        assert_eq!(values(&h, "x-tachi-user-id"), ["5"]);
        assert_eq!(values(&h, "x-tachi-permissions"), ["a,b"]);
        assert_eq!(values(&h, "x-tachi-token-id"), ["t1"]);
        assert!(values(&h, "x-tachi-client-id").is_empty());
        assert!(values(&h, "x_tachi_permissions").is_empty());
        assert_eq!(values(&h, "x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
        assert!(values(&h, "forwarded").is_empty());
        assert!(values(&h, "x-forwarded-host").is_empty());
        assert!(values(&h, "authorization").is_empty());
        assert_eq!(values(&h, "host"), ["tachi"]);
        assert_eq!(values(&h, "accept"), ["*/*"]);
        assert_eq!(h.len(), 7);
    }

    #[test]
    fn others_keep_their_authorization_and_get_no_identity() {
        for identity in [Identity::Guest, Identity::ForeignKey, Identity::Session(3)] {
            let mut h = inbound();
            forward_headers(&mut h, None, "https", &identity, true, unsigned()).unwrap();
            assert_eq!(values(&h, "authorization"), ["Bearer k"], "{identity:?}");
            assert!(values(&h, "x-forwarded-for").is_empty(), "not over TCP");
            assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
            assert!(IDENTITY_HEADERS.iter().all(|n| !h.contains_key(*n)));
        }
        // Without hide_credentials a key's Authorization is forwarded too.
        let mut h = inbound();
        forward_headers(
            &mut h,
            None,
            "http",
            &keyed(KeyRecord::sample()),
            false,
            unsigned(),
        )
        .unwrap();
        assert_eq!(values(&h, "authorization"), ["Bearer k"]);
    }

    #[test]
    fn a_record_that_cannot_be_a_header_is_an_error() {
        let mut record = KeyRecord::sample();
        record.token_id = "a\nb".into();
        let mut h = inbound();
        let e =
            forward_headers(&mut h, None, "http", &keyed(record), true, unsigned()).unwrap_err();
        assert!(matches!(e, ForwardError::CorruptRecord(_)), "{e}");
    }

    #[test]
    fn a_repeated_content_length_is_sent_once() {
        for sent in [&["5, 5"][..], &["5", "5"], &["5,5", "5"]] {
            let mut h = HeaderMap::new();
            for v in sent {
                h.append("content-length", HeaderValue::from_static(v));
            }
            forward_headers(&mut h, None, "http", &Identity::Guest, true, unsigned()).unwrap();
            assert_eq!(values(&h, "content-length"), ["5"], "{sent:?}");
        }
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("12"));
        forward_headers(&mut h, None, "http", &Identity::Guest, true, unsigned()).unwrap();
        assert_eq!(values(&h, "content-length"), ["12"]);
    }

    #[test]
    fn spoofable_headers_are_the_identity_and_forwarding_ones_in_either_spelling() {
        let mut h = HeaderMap::new();
        for name in [
            "x-tachi-user-id",
            "X_Tachi_User_ID",
            "x-tachi-permissions",
            "forwarded",
            "x-real-ip",
            "x_real_ip",
            "x-tachi-other",
            "x-tachi-user-idx",
            "x-forwarded-host",
            "X_Forwarded_Port",
            "x-forwarded-for",
            "x-forwardedfor",
            "x-real-ip-not",
            "accept",
            "X_Tachi_Identity",
            "x-tachi-identity",
        ] {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "1".parse().unwrap(),
            );
        }
        let mut names: Vec<String> = spoofable_headers(&h, &ASSERTION)
            .iter()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-real-ip",
                "x-tachi-identity",
                "x-tachi-permissions",
                "x-tachi-user-id",
                "x_forwarded_port",
                "x_real_ip",
                "x_tachi_identity",
                "x_tachi_user_id"
            ]
        );
    }

    #[test]
    fn the_assertion_replaces_any_the_client_sent_and_only_a_key_gets_one() {
        let signed = || Assertion {
            header: &ASSERTION,
            value: Some(HeaderValue::from_static("signed.by.gate")),
        };
        let spoofed = || {
            let mut h = inbound();
            h.append("x-tachi-identity", HeaderValue::from_static("forged"));
            h.append("x_tachi_identity", HeaderValue::from_static("forged"));
            h
        };
        let mut h = spoofed();
        forward_headers(
            &mut h,
            None,
            "http",
            &keyed(KeyRecord::sample()),
            true,
            signed(),
        )
        .unwrap();
        assert_eq!(values(&h, "x-tachi-identity"), ["signed.by.gate"]);
        assert!(values(&h, "x_tachi_identity").is_empty());
        // In `headers` mode, and for callers without a key, no copy survives.
        for identity in [Identity::Guest, Identity::Session(1), Identity::ForeignKey] {
            let mut h = spoofed();
            forward_headers(&mut h, None, "http", &identity, true, unsigned()).unwrap();
            assert!(values(&h, "x-tachi-identity").is_empty(), "{identity:?}");
            assert!(values(&h, "x_tachi_identity").is_empty(), "{identity:?}");
        }
        let mut h = spoofed();
        forward_headers(
            &mut h,
            None,
            "http",
            &keyed(KeyRecord::sample()),
            true,
            unsigned(),
        )
        .unwrap();
        assert!(values(&h, "x-tachi-identity").is_empty());
    }

    pub(crate) fn request(version: http::Version, target: &[u8], hosts: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target, None).unwrap();
        req.set_version(version);
        for host in hosts {
            req.append_header("Host", *host).unwrap();
        }
        req
    }

    #[test]
    fn a_request_naming_no_host_is_given_the_upstreams() {
        // An upstream over TLS, known by `sni`.
        let tls = |sni: Option<&str>| UpstreamConfig {
            addrs: vec![],
            tls: true,
            sni: sni.map(str::to_string),
            ca_file: None,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            health_check: None,
        };
        let up: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let v10 = http::Version::HTTP_10;
        let bare = request(v10, b"/x", &[]);
        assert_eq!(
            fallback_host(v10, &bare, Some(up), &tls(None)).unwrap(),
            "10.0.0.7:8080"
        );
        assert_eq!(
            fallback_host(v10, &bare, Some(up), &tls(Some("tachi.internal"))).unwrap(),
            "tachi.internal"
        );
        assert_eq!(fallback_host(v10, &bare, None, &tls(None)), None);
        let v6: SocketAddr = "[::1]:8443".parse().unwrap();
        for sni in [None, Some("::1"), Some("10.0.0.7")] {
            assert_eq!(
                fallback_host(v10, &bare, Some(v6), &tls(sni)).unwrap(),
                "[::1]:8443"
            );
        }
        // A request that names its host keeps it, in a header or in its target.
        let named = request(v10, b"/x", &["t"]);
        assert_eq!(fallback_host(v10, &named, Some(up), &tls(None)), None);
        let absolute = request(v10, b"http://b.example/x", &[]);
        assert_eq!(fallback_host(v10, &absolute, Some(up), &tls(None)), None);
        // Only HTTP/1.0 comes without a host.
        for v in [http::Version::HTTP_11, http::Version::HTTP_2] {
            assert_eq!(fallback_host(v, &bare, Some(up), &tls(None)), None, "{v:?}");
        }
    }

    #[test]
    fn editing_headers_keeps_the_rest_of_the_request() {
        let targets: [&[u8]; 5] = [
            b"/a/b?c=d&e",
            b"/",
            b"*",
            b"http://tachi.example/x?y=1",
            b"/caf\xe9?q=\xff",
        ];
        for target in targets {
            let mut req = RequestHeader::build("POST", target, None).unwrap();
            req.insert_header("Host", "tachi").unwrap();
            req.insert_header("X-Drop", "1").unwrap();
            req.set_version(http::Version::HTTP_10);
            let (raw, utf8, uri) = (
                req.raw_path().to_vec(),
                req.raw_path_is_utf8(),
                req.uri.clone(),
            );
            let removed = edit_headers(&mut req, |h| {
                h.insert("x-added", http::HeaderValue::from_static("2"));
                h.remove("x-drop")
            })
            .unwrap();
            assert_eq!(removed.unwrap(), "1");
            assert_eq!(req.raw_path(), raw, "{}", String::from_utf8_lossy(target));
            assert_eq!(req.raw_path_is_utf8(), utf8);
            assert_eq!(req.uri, uri);
            assert_eq!(req.method, http::Method::POST);
            assert_eq!(req.version, http::Version::HTTP_10);
            assert_eq!(req.headers.get("host").unwrap(), "tachi");
            assert_eq!(req.headers.get("x-added").unwrap(), "2");
            assert_eq!(req.headers.len(), 2);
        }
    }

    #[test]
    fn editing_headers_keeps_a_uri_with_an_authority() {
        // As HTTP/2 requests carry it.
        let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        let uri: http::Uri = "https://tachi.example:8443/a?b=c".parse().unwrap();
        req.set_uri(uri.clone());
        edit_headers(&mut req, |h| {
            h.insert("x-added", http::HeaderValue::from_static("1"))
        })
        .unwrap();
        assert_eq!(req.uri, uri);
        assert_eq!(req.raw_path(), b"/a?b=c");
    }

    #[test]
    fn editing_headers_keeps_the_http2_end_of_stream_flag() {
        for flag in [true, false] {
            let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
            req.set_version(http::Version::HTTP_2);
            req.set_send_end_stream(flag);
            edit_headers(&mut req, |_| ()).unwrap();
            assert_eq!(req.send_end_stream(), Some(flag));
        }
    }

    #[test]
    fn ipv4_header_values_match_display() {
        for a in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(a, 0, 7, 255),
                Ipv4Addr::new(10, a, 99, 100),
                Ipv4Addr::new(255, 9, a, 1),
                Ipv4Addr::new(1, 2, 3, a),
            ] {
                assert_eq!(ip_header_value(IpAddr::V4(ip)), ip.to_string().as_str());
            }
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_header_value(v6), "2001:db8::1");
    }
}
