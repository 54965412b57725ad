//! What the benches that start the gate's release binary share.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the gate's binary on `addr` with its store at `data` and the
/// `extra` arguments: no admin token, no log, output discarded. Its
/// upstream is a port nothing answers on; what the benches send never
/// reaches it.
pub fn start_gate(addr: SocketAddr, data: &Path, extra: &[&OsStr]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_tachi-gate"))
        .args(["--listen", &addr.to_string(), "--upstream", "127.0.0.1:9"])
        .arg("--data")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "off")
        .env("TACHI_GATE_ADMIN_TOKEN", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// A loopback address with a port free at the time of asking.
pub fn free_addr() -> SocketAddr {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until something listens on `addr`, at most `within`; returns how
/// long that took.
pub fn wait_until_listening(addr: SocketAddr, within: Duration) -> Duration {
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_err() {
        assert!(started.elapsed() < within, "the gate did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

/// A gate process, stopped when dropped (also when a check fails).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
