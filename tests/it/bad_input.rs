//! Bad input (docs/guarantees.md) through real sockets: every case gets a clear 4xx JSON
//! answer (or, for broken HTTP, a closed connection), never a 5xx or a hang,
//! and the gate keeps serving.

use std::time::Duration;

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post_raw(gate: &TestGate, path: &str, content_type: &str, body: &[u8]) -> RawResponse {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw_request(gate.addr, &req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_before_and_while_reading() {
    let gate = TestGate::start("").await;
    // Declared too large: answered at once, without waiting for a body.
    let req = b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n";
    let r = tokio::time::timeout(Duration::from_secs(5), raw_request(gate.addr, req))
        .await
        .expect("no hang");
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["success"], false);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    // Chunked, so only reading finds out.
    let chunk = "a".repeat(8192);
    let mut req = b"POST /api/v1/clients/create HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..10 {
        req.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw_request(gate.addr, &req).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["success"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_400_json() {
    let gate = TestGate::start("").await;
    let cookie = gate.session(1);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_obj = format!("{{\"name\": {}}}", deep);
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "/api/v1/oauth/token",
            "application/json",
            b"{not json".to_vec(),
        ),
        (
            "/api/v1/oauth/token",
            "application/json",
            b"[1,2,3]".to_vec(),
        ),
        (
            "/api/v1/oauth/token",
            "application/json",
            b"{\"code\": \"\xff\xfe\"}".to_vec(),
        ),
        (
            "/api/v1/oauth/token",
            "application/json",
            deep.clone().into_bytes(),
        ),
        (
            "/api/v1/oauth/token",
            "application/json",
            b"{\"grant_type\": [\"authorization_code\"]}".to_vec(),
        ),
        (
            "/api/v1/oauth/token",
            "application/x-www-form-urlencoded",
            b"code=%ff%fe&grant_type=authorization_code".to_vec(),
        ),
        (
            "/api/v1/oauth/token",
            "application/x-www-form-urlencoded",
            b"code=\xff".to_vec(),
        ),
        (
            "/api/v1/oauth/token",
            "application/x-www-form-urlencoded",
            b"code=a&code=b".to_vec(),
        ),
        ("/api/v1/oauth/token", "text/xml", b"<token/>".to_vec()),
        (
            "/api/v1/oauth/token",
            "multipart/form-data; boundary=x",
            b"--x--".to_vec(),
        ),
        (
            "/api/v1/clients/create",
            "application/json",
            deep_obj.into_bytes(),
        ),
        (
            "/api/v1/clients/create",
            "application/json",
            b"\"just a string\"".to_vec(),
        ),
        ("/api/v1/clients/create", "text/plain", b"name=x".to_vec()),
        (
            "/api/v1/oauth/create-code",
            "application/json",
            b"{\"clientID\": ".to_vec(),
        ),
    ];
    for (path, ct, body) in cases {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let r = raw_request(gate.addr, &req).await;
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
        assert_eq!(
            r.status,
            400,
            "{path} {ct} {shown}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["success"], false);
        assert!(!v["description"].as_str().unwrap().is_empty());
        if path == "/api/v1/oauth/token" {
            assert_eq!(v["error"], "invalid_request", "{shown}");
        }
    }
    // Wrong types in client creation.
    let r = post_raw(
        &gate,
        "/api/v1/clients/create",
        "application/json",
        json!({"name": ["x"], "permissions": ["submit_score"]})
            .to_string()
            .as_bytes(),
    )
    .await;
    // The body is checked before the session, as Tachi's prValidate runs
    // before its session check (server/src/server/router/api/v1/clients/
    // router.ts, POST /create).
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["description"],
        "[name] Expected a string with length between 3 and 80."
    );
    let r = post_raw(
        &gate,
        "/api/v1/clients/create",
        "application/json",
        json!({"name": "Fine", "permissions": ["submit_score"]})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401, "a good body without a session");
    let r = gate
        .http
        .post(gate.url("/api/v1/clients/create"))
        .header("cookie", &cookie)
        .json(&json!({"name": "Fine", "permissions": [1, 2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered() {
    let gate = TestGate::start("").await;
    let body = json!({"grant_type": "authorization_code"}).to_string();
    let mut s = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("100 Continue within 2 s")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(body.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    assert!(text.contains("invalid_request"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_gets_a_5xx_and_the_gate_keeps_serving() {
    let gate = TestGate::start("").await;
    let long_path = format!("/api/v1/clients/{}", "A".repeat(8000));
    let huge_header = format!("X-Big: {}\r\n", "b".repeat(200_000));
    let many_headers: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    // A head that never ends, one byte past what Pingora's parser would take
    // (exactly that much, so that the gate reads it all before answering).
    let mut endless_head = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    endless_head.resize(1_048_576, b'b');
    // (request, expected status); every answer is JSON.
    let requests: Vec<(Vec<u8>, u16)> = vec![
        (b"\x00\x01\x02garbage\r\n\r\n".to_vec(), 400),
        (b"GET\r\n\r\n".to_vec(), 400),
        (b"GET /x HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n".to_vec(), 400),
        (b"GET /x HTTP/1.1\r\nHost: t\r\nno colon\r\n\r\n".to_vec(), 400),
        (b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n".to_vec(), 400),
        (b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\r\n folded\r\n\r\n".to_vec(), 400),
        (b"GET /x HTTP/3.0\r\nHost: t\r\n\r\n".to_vec(), 400),
        (b"GET /a<b> HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        (b"GET /x?q=\"y\" HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        (b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n".to_vec(), 400),
        (b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(), 400),
        (b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n".to_vec(), 400),
        (format!("GET {long_path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes(), 404),
        (format!("GET /x HTTP/1.1\r\nHost: t\r\n{huge_header}Connection: close\r\n\r\n").into_bytes(), 431),
        (format!("GET /x HTTP/1.1\r\nHost: t\r\n{many_headers}Connection: close\r\n\r\n").into_bytes(), 400),
        (endless_head, 431),
        (b"BREW /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 405),
        (b"GET /api/v1/clients/%ff%00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 404),
        (b"GET /api/v1/users/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n".to_vec(), 401),
        (b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nAuthorization: Basic !!!\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(), 400),
        (b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(), 400),
    ];
    for (req, expected) in &requests {
        let t0 = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(20), raw_request(gate.addr, req))
            .await
            .expect("no hang");
        let shown = String::from_utf8_lossy(&req[..req.len().min(60)]).to_string();
        assert_eq!(r.status, *expected, "{shown:?} -> {}", r.head);
        assert_eq!(r.json()["success"], false, "{shown:?}");
        // Broken requests must be answered and closed, not left to a client's timeout.
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{shown:?} took {:?}",
            t0.elapsed()
        );
    }
    // Every method on every own route: allowed ones answer, others get 405 JSON.
    let routes = [
        "/api/v1/oauth/create-code",
        "/api/v1/oauth/token",
        "/api/v1/clients",
        "/api/v1/clients/create",
        "/api/v1/clients/CI1",
        "/api/v1/clients/CI1/reset-secret",
    ];
    for path in routes {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"] {
            let req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let r = raw_request(gate.addr, req.as_bytes()).await;
            assert!(
                (200..500).contains(&r.status),
                "{method} {path} -> {}",
                r.head
            );
            if r.status == 405 {
                assert!(r.header("allow").is_some());
                if method != "HEAD" {
                    assert_eq!(r.json()["success"], false);
                }
            }
        }
    }
    // Still serving.
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let r = gate
        .http
        .get(gate.url("/x"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["echo"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_get_431_json() {
    let gate = TestGate::start("").await;
    for path in ["/x", "/api/v1/oauth/token"] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(40_000)
        );
        let r = raw_request(gate.addr, req.as_bytes()).await;
        assert_eq!(r.status, 431, "{path}");
        assert_eq!(r.json()["success"], false);
    }
    // Many cookies of a normal size still pass.
    let cookies: String = (0..50)
        .map(|i| format!("c{i}={}; ", "v".repeat(100)))
        .collect();
    let r = gate.send_as(Method::GET, "/x", &cookies).await;
    assert_eq!(r.status(), 200);
}
