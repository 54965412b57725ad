//! Metrics on the admin listener. Each test runs alone in a process of its
//! own (`in_own_process`), so no other test's traffic moves the
//! process-wide counters it reads.

use crate::support::alone::in_own_process;
use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_requests_flow() {
    if in_own_process("metrics::metrics_move_as_requests_flow") {
        return;
    }
    let (gate, base) = gate_with_admin("").await;
    let before = scrape(&gate, &base).await;
    let (key, id, secret) = gate.issue_key(1, &["submit_score"]).await;
    for _ in 0..3 {
        assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
    }
    assert_eq!(gate.get_with_key("/x", "nope").await.status(), 401);
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A request is counted in its logging phase, just after its answer is
    // sent: give the last ones a moment.
    let expected: [(&str, f64); 10] = [
        ("tachi_gate_codes_issued_total", 1.0),
        ("tachi_gate_keys_issued_total", 1.0),
        ("tachi_gate_keys_revoked_total", 1.0),
        (
            "tachi_gate_requests_total{class=\"gated\",status=\"200\"}",
            3.0,
        ),
        (
            "tachi_gate_requests_total{class=\"gated\",status=\"401\"}",
            1.0,
        ),
        (
            "tachi_gate_requests_total{class=\"oauth\",status=\"200\"}",
            3.0,
        ),
        (
            "tachi_gate_requests_total{class=\"clients\",status=\"200\"}",
            1.0,
        ),
        ("tachi_gate_key_check_seconds_count", 4.0),
        ("tachi_gate_store_seconds_count{op=\"commit\"}", 3.0),
        ("tachi_gate_upstream_seconds_count", 3.0),
    ];
    let mut missing = Vec::new();
    for _ in 0..40 {
        let after = scrape(&gate, &base).await;
        missing = expected
            .iter()
            .filter(|(series, at_least)| {
                sample(&after, series) - sample(&before, series) < *at_least
            })
            .map(|(series, _)| *series)
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(missing.is_empty(), "did not move: {missing:?}");
    // Of the four key checks, only the key's first and the unknown key read
    // the store: the key's record is then held in memory, also for the
    // revocation's own lookup.
    let after = scrape(&gate, &base).await;
    let key_reads = "tachi_gate_store_seconds_count{op=\"key_read\"}";
    assert_eq!(sample(&after, key_reads) - sample(&before, key_reads), 2.0);
    // The public listener has no /metrics of its own: it goes upstream.
    let r: Value = gate.get("/metrics").await.json().await.unwrap();
    assert_eq!(r["echo"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_counted() {
    if in_own_process("metrics::upstream_errors_are_counted") {
        return;
    }
    let (mut gate, base) = gate_with_admin("").await;
    let before = scrape(&gate, &base).await;
    gate.upstream.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(gate.get("/x").await.status(), 502);
    let after = scrape(&gate, &base).await;
    assert!(
        sample(&after, "tachi_gate_upstream_errors_total")
            > sample(&before, "tachi_gate_upstream_errors_total")
    );
}
