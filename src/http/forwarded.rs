//! Who the client is when the gate stands behind load balancers it trusts
//! (`server.trusted_proxies`), and the `X-Forwarded-For` it passes on.
//!
//! A request from a trusted proxy names its client in `X-Forwarded-For`;
//! each proxy appends the address it received from, so the right-most entry
//! that is not itself a trusted proxy is the first one nobody trusted vouches
//! for: the client. Entries further left were written by that client and
//! prove nothing. A request from anyone else is its own client, whatever it
//! sent. IPv4-mapped IPv6 addresses (how a dual-stack listener sees IPv4
//! clients) are read as IPv4 throughout.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client of a request that came from `peer`.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.map(|ip| ip.to_canonical())?;
    if !is_trusted(trusted, peer) {
        return Some(peer);
    }
    let mut entries = forwarded_entries(headers);
    let mut client = peer;
    // Right to left: each entry is who the one to its right received from.
    while let Some(entry) = entries.pop() {
        match entry.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !is_trusted(trusted, client) {
                    break;
                }
            }
            // Not an address: nothing to its left can be believed either.
            Err(_) => break,
        }
    }
    Some(client)
}

/// The `X-Forwarded-For` to send upstream: the chain a trusted proxy sent,
/// extended with that proxy's address, or the peer's address alone (what
/// anyone else sent is dropped). `None` when the peer has no IP address.
pub fn forwarded_for(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
    peer_value: impl Fn(IpAddr) -> HeaderValue,
) -> Option<HeaderValue> {
    let peer = peer.map(|ip| ip.to_canonical())?;
    if trusted.is_empty() || !is_trusted(trusted, peer) {
        return Some(peer_value(peer));
    }
    let mut chain = forwarded_entries(headers).join(", ");
    if !chain.is_empty() {
        chain.push_str(", ");
    }
    chain.push_str(&peer.to_string());
    HeaderValue::try_from(chain)
        .ok()
        .or_else(|| Some(peer_value(peer)))
}

/// Every `X-Forwarded-For` entry, left to right, over all its headers.
fn forwarded_entries(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            client_address(ip("203.0.113.5"), &h, &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_address(ip("203.0.113.5"), &h, &[]),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_address(ip("::ffff:203.0.113.5"), &h, &[]),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1/32"]);
        // The client forged the first entry; the balancers added the rest.
        let h = xff(&["6.6.6.6, 198.51.100.7", "192.0.2.1"]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &h, &trusted),
            ip("198.51.100.7")
        );
        // Only trusted entries: the left-most of them.
        let h = xff(&["192.0.2.1"]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &h, &trusted),
            ip("192.0.2.1")
        );
        // None at all: the proxy itself.
        assert_eq!(
            client_address(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
        // Garbage stops the walk where it stands.
        let h = xff(&["1.1.1.1, junk, 192.0.2.1"]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &h, &trusted),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn a_trusted_proxys_chain_is_extended_and_anyone_elses_replaced() {
        let trusted = nets(&["10.0.0.0/8"]);
        let value = |ip: IpAddr| HeaderValue::try_from(ip.to_string()).unwrap();
        let h = xff(&["198.51.100.7", "10.1.1.1"]);
        assert_eq!(
            forwarded_for(ip("10.0.0.2"), &h, &trusted, value).unwrap(),
            "198.51.100.7, 10.1.1.1, 10.0.0.2"
        );
        assert_eq!(
            forwarded_for(ip("203.0.113.5"), &h, &trusted, value).unwrap(),
            "203.0.113.5"
        );
        assert_eq!(
            forwarded_for(ip("10.0.0.2"), &HeaderMap::new(), &trusted, value).unwrap(),
            "10.0.0.2"
        );
        assert_eq!(forwarded_for(None, &h, &trusted, value), None);
    }
}
