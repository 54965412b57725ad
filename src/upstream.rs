//! The Tachi servers behind the gate: round-robin over those that pass an
//! active TCP health check (`pingora-load-balancing`), so a dead one is
//! skipped instead of failing every other request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora_load_balancing::health_check::TcpHealthCheck;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;

/// The configured upstreams and their health.
pub struct Upstreams {
    balancer: Arc<LoadBalancer<RoundRobin>>,
}

impl Upstreams {
    /// `addrs` must not be empty (the config guarantees it). With
    /// `check_every`, a background task probes each upstream that often.
    pub fn new(addrs: &[SocketAddr], check_every: Option<Duration>) -> std::io::Result<Upstreams> {
        let mut balancer = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied())?;
        if let Some(every) = check_every {
            // One failed probe marks an upstream down, one success brings it back.
            balancer.set_health_check(TcpHealthCheck::new());
            balancer.health_check_frequency = Some(every);
            balancer.parallel_health_check = true;
        }
        Ok(Upstreams {
            balancer: Arc::new(balancer),
        })
    }

    /// The balancer, to run its health checks as a background service.
    pub fn balancer(&self) -> Arc<LoadBalancer<RoundRobin>> {
        self.balancer.clone()
    }

    /// The next healthy upstream, or `None` when every one is down.
    pub fn next(&self) -> Option<SocketAddr> {
        let backend = self.balancer.select(b"", 256)?;
        backend.addr.as_inet().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_address() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let u = Upstreams::new(&[a, b], None).unwrap();
        let mut seen = vec![u.next().unwrap(), u.next().unwrap(), u.next().unwrap()];
        seen.sort();
        seen.dedup();
        assert_eq!(seen, vec![a, b]);
    }
}
