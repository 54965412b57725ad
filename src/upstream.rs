//! The Tachi servers behind the gate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The configured upstream addresses, handed out round-robin.
pub struct Upstreams {
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Upstreams {
    /// `addrs` must not be empty (the config guarantees it).
    pub fn new(addrs: Vec<SocketAddr>) -> Upstreams {
        Upstreams {
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    /// The next upstream to use.
    pub fn next(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.addrs[i % self.addrs.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_address() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let u = Upstreams::new(vec![a, b]);
        assert_eq!([u.next(), u.next(), u.next()], [a, b, a]);
    }
}
