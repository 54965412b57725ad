mod common;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let gate = TestGate::start("").await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let resp = gate
        .http
        .get(gate.url("/api/v1/users/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    println!("{v:#}");
}
