//! Running one test alone in a process of its own.
//!
//! Every test of the suite shares one process. Two kinds of test must not:
//!
//! - one that reads exact counts from the gate's process-wide metrics,
//!   which other tests' traffic would move;
//! - one that runs a gate with `server.threads = 1`. Pingora then runs its
//!   single-thread runtimes, which register themselves per thread in a
//!   process-wide table (`pingora_runtime::CURRENT_HANDLE`, Pingora 0.9.1)
//!   that is keyed by thread IDs the OS reuses: once such a gate has
//!   stopped, a later thread can be taken for one of its dead threads, and
//!   another gate in the process then spawns connection tasks onto a runtime
//!   that is gone. A gate binary runs one server, so this is a test-only
//!   hazard.
//!
//! Such a test calls [`in_own_process`] first: the test binary is started
//! again with that test alone, and this one passes if that one did.

use std::process::Command;

/// Set in the child process to the name of the test it runs alone.
const ALONE: &str = "TACHI_GATE_TEST_ALONE";

/// Runs the test `name` (its path in this binary, e.g. `metrics::x`) alone
/// in a new process and waits for it, failing with its output if it failed.
/// Returns `true` here, where the caller should return at once; `false` in
/// that new process, where the caller goes on with the test itself.
pub fn in_own_process(name: &str) -> bool {
    if std::env::var(ALONE).is_ok_and(|running| running == name) {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, name)
        .output()
        .expect("the test binary starts again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name}, run alone, failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}
