//! The gate's binary as a child process. Also used by the benches
//! (`#[path]`), so it needs nothing but std.

use std::net::SocketAddr;
use std::path::Path;

/// A running gate process (from [`spawn_gate_binary`], or a test's own
/// `Command`): killed and reaped when dropped, also when a check fails, so
/// that no gate outlives its test or bench.
pub struct GateBinary(pub std::process::Child);

impl std::ops::Deref for GateBinary {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for GateBinary {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for GateBinary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the gate's binary on `addr` with its store at `data` and the
/// `extra` arguments: no admin token, no log, output discarded. Its upstream
/// is a port nothing answers on, for callers that never need one (the
/// benches).
pub fn spawn_gate_binary(addr: SocketAddr, data: &Path, extra: &[&std::ffi::OsStr]) -> GateBinary {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tachi-gate"))
        .args(["--listen", &addr.to_string(), "--upstream", "127.0.0.1:9"])
        .arg("--data")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "off")
        .env("TACHI_GATE_ADMIN_TOKEN", "")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    GateBinary(child)
}
