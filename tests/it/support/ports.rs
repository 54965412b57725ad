//! Ports for servers a test starts, and waiting for them to listen. Also
//! used by the benches (`#[path]`), so it needs nothing but std.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A port nobody listens on right now, for a server the test starts later.
///
/// The port is released before the server binds it, so it must be one that
/// nothing else in the meantime is handed: not one from the kernel's
/// ephemeral range, which every `bind(":0")` and every outgoing connection
/// of the tests running alongside draws from. Ports are taken in turn
/// outside that range, from a start that differs between test processes, so
/// two tests of one process never get the same port and other processes
/// rarely do.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (low, high) = fixed_port_range();
    // A test re-run alone in a child process (`alone.rs`) takes its ports
    // from the top of the range, which its parent leaves alone, so the two
    // never hand out the same port at once.
    const CHILD_PORTS: u16 = 500;
    let (low, high) = match std::env::var_os("TACHI_GATE_TEST_ALONE") {
        Some(_) => (high - CHILD_PORTS, high),
        None => (low, high - CHILD_PORTS),
    };
    let span = u64::from(high - low);
    let start = u64::from(std::process::id()) % span * 7_919;
    for _ in 0..span {
        let turn = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + u16::try_from((start + turn) % span).expect("offset within span");
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The ports [`free_port`] hands out: the larger stretch of at least 1,000
/// ports outside the kernel's ephemeral range (Linux's setting, or its
/// default), not counting ports below 10000, which services tend to use.
fn fixed_port_range() -> (u16, u16) {
    const LOW: u16 = 10_000;
    let (first, last) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32_768, 60_999));
    let below = (LOW, first.max(LOW));
    let above = (last.saturating_add(1).max(LOW), u16::MAX);
    let widest = if below.1 - below.0 >= above.1 - above.0 {
        below
    } else {
        above
    };
    assert!(
        widest.1 - widest.0 >= 1_000,
        "the ephemeral port range {first}-{last} leaves no room for test ports"
    );
    widest
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        // Fine enough for the scale bench, which times start-up with it.
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}
