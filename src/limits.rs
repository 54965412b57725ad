//! Rate limits per client IP (`[limits]`), so client secrets and keys cannot
//! be guessed at speed: one on the OAuth endpoints (token, revoke,
//! introspect), and one on failed client authentications and failed key
//! checks. Counting uses `pingora-limits`' fixed windows, in constant memory.
//!
//! The failure limit refuses only failures: a caller whose credentials are
//! good is served whatever its address's count, so one client guessing from
//! a shared address (a NAT, a load balancer not listed in
//! `server.trusted_proxies`) cannot lock out the others. Past the limit a
//! failing attempt is answered 429 instead of its own 401, and says nothing
//! about why it failed.

use std::net::IpAddr;
use std::time::Duration;

use pingora_limits::rate::Rate;

use crate::config::LimitsConfig;
use crate::http::reply::Reply;
use crate::telemetry::RATE_LIMITED;

/// What is counted for an address: an IPv4 address itself, an IPv6 address's
/// /64, since one client usually holds a whole /64 and could rotate within it.
fn bucket(ip: IpAddr) -> IpAddr {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d, which
    // would put every one of them in the same /64.
    let ip = ip.to_canonical();
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// The limits in force.
pub struct Limits {
    config: LimitsConfig,
    oauth: Rate,
    failures: Rate,
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Limits {
        let window = Duration::from_secs(config.window_secs);
        // A count-min sketch: more columns than pingora-limits' default keep
        // many distinct clients from adding up in one counter (4 × 16384
        // counters, about 1 MiB a limit).
        let rate = || Rate::new_with_estimator_config(window, 4, 16_384);
        Limits {
            oauth: rate(),
            failures: rate(),
            config,
        }
    }

    fn refusal(&self, limit: &str) -> Reply {
        RATE_LIMITED.with_label_values(&[limit]).inc();
        Reply::failure(429, "Too many requests; try again later.")
            .field("error", "rate_limited")
            .header("Retry-After", self.config.window_secs.to_string())
    }

    /// Counts a request to an OAuth endpoint; the refusal once over the limit.
    pub fn oauth_request(&self, ip: Option<IpAddr>) -> Result<(), Reply> {
        let Some(ip) = ip.filter(|_| self.config.enabled) else {
            return Ok(());
        };
        if self.oauth.observe(&bucket(ip), 1) > self.config.oauth_requests as isize {
            return Err(self.refusal("oauth"));
        }
        Ok(())
    }

    /// Counts a failed client authentication or key check; once this IP is
    /// past the limit, the 429 to answer instead of the failure's own answer.
    pub fn failure(&self, ip: Option<IpAddr>) -> Option<Reply> {
        let ip = ip.filter(|_| self.config.enabled)?;
        (self.failures.observe(&bucket(ip), 1) > self.config.failed_auths as isize)
            .then(|| self.refusal("failed_auth"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(oauth: u64, failed: u64) -> Limits {
        Limits::new(LimitsConfig {
            enabled: true,
            window_secs: 60,
            oauth_requests: oauth,
            failed_auths: failed,
        })
    }

    #[test]
    fn oauth_requests_are_refused_past_the_limit_per_ip() {
        let l = limits(3, 10);
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(l.oauth_request(a).is_ok());
        }
        let r = l.oauth_request(a).unwrap_err();
        assert_eq!(r.status, 429);
        assert_eq!(r.headers, vec![("Retry-After", "60".to_string())]);
        assert!(l.oauth_request(b).is_ok(), "other IPs are not affected");
    }

    #[test]
    fn failures_are_refused_only_past_the_limit() {
        let l = limits(100, 2);
        let a = Some("10.0.0.1".parse().unwrap());
        assert!(l.failure(a).is_none());
        assert!(l.failure(a).is_none());
        assert_eq!(l.failure(a).map(|r| r.status), Some(429));
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_client() {
        let l = limits(100, 2);
        l.failure(Some("2001:db8::1".parse().unwrap()));
        l.failure(Some("2001:db8::2:3".parse().unwrap()));
        assert!(l.failure(Some("2001:db8::ffff".parse().unwrap())).is_some());
        assert!(l
            .failure(Some("2001:db8:0:1::1".parse().unwrap()))
            .is_none());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        let l = limits(100, 2);
        l.failure(Some("::ffff:10.0.0.1".parse().unwrap()));
        l.failure(Some("::ffff:10.0.0.1".parse().unwrap()));
        assert!(l
            .failure(Some("::ffff:10.0.0.2".parse().unwrap()))
            .is_none());
        assert!(l.failure(Some("10.0.0.1".parse().unwrap())).is_some());
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let mut l = limits(0, 0);
        l.config.enabled = false;
        assert!(l.oauth_request(Some("10.0.0.1".parse().unwrap())).is_ok());
        assert!(l.failure(Some("10.0.0.1".parse().unwrap())).is_none());
    }
}
