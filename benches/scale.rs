//! Scale: resident memory, store size on disk and start-up time of the
//! `tachi-gate` binary with 10⁴, 10⁵ and 10⁶ stored keys.
//! Run: `cargo bench --bench scale`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tachi_gate::store::{digest, KeyRecord, SledStore, Store};

#[path = "../tests/it/support/binary.rs"]
mod binary;
#[path = "../tests/it/support/ports.rs"]
mod ports;

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:>9} {:>12} {:>12} {:>12}",
        "keys", "store MiB", "start-up ms", "RSS MiB"
    );
    for n in [10_000usize, 100_000, 1_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let perms = vec!["submit_score".to_string()];
        {
            let store = SledStore::open(&path).unwrap();
            for chunk in 0..n.div_ceil(10_000) {
                let batch: Vec<_> = (chunk * 10_000..((chunk + 1) * 10_000).min(n))
                    .map(|i| {
                        (
                            digest(&format!("{i:040x}")),
                            KeyRecord::mint(i as u64 % 1000, "k".into(), &perms, None, 0).record,
                        )
                    })
                    .collect();
                rt.block_on(store.import(&[], &batch)).unwrap();
            }
            store.close().unwrap();
        }
        let size = dir_size(&path) as f64 / (1024.0 * 1024.0);
        let addr = SocketAddr::from(([127, 0, 0, 1], ports::free_port()));
        let started = Instant::now();
        let gate = binary::spawn_gate_binary(addr, &path, &[]);
        assert!(
            ports::wait_for_port(addr, Duration::from_secs(120)),
            "the gate did not start"
        );
        let startup = started.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let rss = rss_kib(gate.id()) as f64 / 1024.0;
        drop(gate);
        println!(
            "{n:>9} {size:>12.1} {:>12.0} {rss:>12.1}",
            startup.as_secs_f64() * 1000.0
        );
    }
}
