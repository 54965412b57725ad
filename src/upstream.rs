//! The Tachi servers behind the gate: round-robin over those that pass an
//! active TCP health check, so a dead one is skipped instead of failing
//! every other request.
//!
//! `pingora-load-balancing` runs the health checks; the choice per request is
//! made here, from one flag per upstream that its health-change callback
//! keeps up to date. Asking the balancer itself hashes each backend to look
//! up its health, and again to skip repeats; this costs a counter increment
//! and a load of each upstream's flag (twice).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_load_balancing::health_check::{HealthObserve, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, LoadBalancer};

/// Whether each upstream passed its last health check, in config order.
/// Every upstream starts healthy, as in the balancer.
#[derive(Clone)]
struct Health {
    addrs: Arc<[SocketAddr]>,
    up: Arc<[AtomicBool]>,
}

impl Health {
    /// An address listed twice is kept once, as the balancer keeps it, so
    /// that it does not get a double share of requests.
    fn new(addrs: &[SocketAddr]) -> Health {
        let mut distinct: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if !distinct.contains(addr) {
                distinct.push(*addr);
            }
        }
        Health {
            up: distinct.iter().map(|_| AtomicBool::new(true)).collect(),
            addrs: distinct.into(),
        }
    }

    fn set(&self, addr: SocketAddr, healthy: bool) {
        if let Some(i) = self.addrs.iter().position(|a| *a == addr) {
            self.up[i].store(healthy, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl HealthObserve for Health {
    async fn observe(&self, target: &Backend, healthy: bool) {
        if let Some(addr) = target.addr.as_inet() {
            self.set(*addr, healthy);
        }
    }
}

/// The configured upstreams and their health.
pub struct Upstreams {
    health: Health,
    turn: AtomicUsize,
    balancer: Arc<LoadBalancer<RoundRobin>>,
}

impl Upstreams {
    /// `addrs` must not be empty (the config guarantees it). With
    /// `check_every`, a background task probes each upstream that often.
    pub fn new(addrs: &[SocketAddr], check_every: Option<Duration>) -> std::io::Result<Upstreams> {
        let health = Health::new(addrs);
        let mut balancer = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied())?;
        if let Some(every) = check_every {
            // One failed probe marks an upstream down, one success brings it back.
            let mut check = TcpHealthCheck::new();
            check.health_changed_callback = Some(Box::new(health.clone()));
            balancer.set_health_check(check);
            balancer.health_check_frequency = Some(every);
            balancer.parallel_health_check = true;
        }
        Ok(Upstreams {
            health,
            turn: AtomicUsize::new(0),
            balancer: Arc::new(balancer),
        })
    }

    /// The balancer, to run its health checks as a background service.
    pub fn balancer(&self) -> Arc<LoadBalancer<RoundRobin>> {
        self.balancer.clone()
    }

    /// The next healthy upstream, or `None` when every one is down. The
    /// turns go round the healthy ones only, so that they share a down
    /// upstream's requests evenly (passing its turns to the next in line, as
    /// Pingora's round-robin does, would double that one's load).
    pub fn next(&self) -> Option<SocketAddr> {
        let Health { addrs, up } = &self.health;
        let healthy = |i: &usize| up[*i].load(Ordering::Relaxed);
        let count = (0..addrs.len()).filter(healthy).count();
        match count {
            0 => return None,
            // The usual case takes no turn: the counter is the one value
            // every worker would write on every request, a cache line
            // passed between all the cores.
            1 => return (0..addrs.len()).find(healthy).map(|i| addrs[i]),
            _ => {}
        }
        let k = self.turn.fetch_add(1, Ordering::Relaxed) % count;
        // Should health change between the two passes, the first healthy one.
        (0..addrs.len())
            .filter(healthy)
            .nth(k)
            .or_else(|| (0..addrs.len()).find(healthy))
            .map(|i| addrs[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn backend(a: SocketAddr) -> Backend {
        Backend::new(&a.to_string()).unwrap()
    }

    #[test]
    fn round_robin_visits_every_address() {
        let (a, b) = (addr(1), addr(2));
        let u = Upstreams::new(&[a, b], None).unwrap();
        let seen: Vec<_> = (0..4).map(|_| u.next().unwrap()).collect();
        assert_eq!(seen, vec![a, b, a, b]);
    }

    #[tokio::test]
    async fn an_unhealthy_upstream_is_skipped_until_it_recovers() {
        let (a, b, c) = (addr(1), addr(2), addr(3));
        let u = Upstreams::new(&[a, b, c], Some(Duration::from_secs(1))).unwrap();
        u.health.observe(&backend(b), false).await;
        let seen: Vec<_> = (0..6).map(|_| u.next().unwrap()).collect();
        // The healthy ones share b's turns.
        assert_eq!(seen, vec![a, c, a, c, a, c]);
        u.health.observe(&backend(b), true).await;
        let seen: Vec<_> = (0..3).map(|_| u.next().unwrap()).collect();
        assert!(seen.contains(&b), "{seen:?}");
    }

    #[tokio::test]
    async fn health_checks_take_an_upstream_out_of_turn_and_back() {
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = live.local_addr().unwrap();
        // Bound but not listening: the port is held, and connects are refused.
        let down = tokio::net::TcpSocket::new_v4().unwrap();
        down.bind(addr(0)).unwrap();
        let flaky = down.local_addr().unwrap();
        let u = Upstreams::new(&[flaky, live], Some(Duration::from_secs(1))).unwrap();
        assert_eq!(u.next(), Some(flaky), "every upstream starts healthy");
        // In parallel, as the background service runs them.
        u.balancer().backends().run_health_check(true).await;
        let seen: Vec<_> = (0..4).map(|_| u.next().unwrap()).collect();
        assert_eq!(seen, vec![live; 4]);
        let _listening = down.listen(16).unwrap();
        u.balancer().backends().run_health_check(true).await;
        let mut seen: Vec<_> = (0..4).map(|_| u.next().unwrap()).collect();
        seen.sort();
        let mut both = vec![flaky, live, flaky, live];
        both.sort();
        assert_eq!(seen, both);
    }

    #[tokio::test]
    async fn none_is_chosen_when_every_upstream_is_down() {
        let (a, b) = (addr(1), addr(2));
        let u = Upstreams::new(&[a, b], Some(Duration::from_secs(1))).unwrap();
        u.health.observe(&backend(b), false).await;
        u.health.observe(&backend(a), false).await;
        assert_eq!(u.next(), None);
        u.health.observe(&backend(a), true).await;
        assert_eq!(
            (0..3).filter_map(|_| u.next()).collect::<Vec<_>>(),
            vec![a, a, a]
        );
    }

    #[test]
    fn an_address_listed_twice_gets_one_share() {
        let (a, b) = (addr(1), addr(2));
        let u = Upstreams::new(&[a, b, a], None).unwrap();
        let seen: Vec<_> = (0..4).map(|_| u.next().unwrap()).collect();
        assert_eq!(seen, vec![a, b, a, b]);
    }
}
