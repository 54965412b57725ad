//! Hostile peers: upstreams that break mid-answer, speak garbage or hang;
//! clients that trickle or hold idle connections; and a corpus of hundreds
//! of malformed requests. The gate answers each with a 4xx/502/504 (or closes
//! the connection), never a 5xx of its own making, and keeps serving.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw upstream that misbehaves by path, and answers `/api/v1/status`
/// properly (user 1), so sessions still work.
async fn hostile_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(m) => n += m,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                match path.as_str() {
                    "/api/v1/status" => {
                        let body =
                            json!({"success": true, "description": "ok", "body": {"whoami": 1}})
                                .to_string();
                        let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await;
                    }
                    "/close-at-once" => {}
                    "/garbage" => {
                        let _ = s
                            .write_all(b"\x00\x13this is not HTTP at all\r\n\r\n")
                            .await;
                    }
                    "/hang" => tokio::time::sleep(Duration::from_secs(30)).await,
                    "/half-body" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
                            .await;
                    }
                    _ => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstreams_get_json_errors_and_the_oauth_routes_keep_working() {
    let upstream = hostile_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = TestGate::start_with_upstreams(
        "[upstream]\nread_timeout_ms = 500\nhealth_check_secs = 0",
        &dir.path().join("store"),
        vec![MockTachi::start().await],
        &[upstream],
    )
    .await;
    let cookie = "connect.sid=anything";
    let (id, secret) = gate
        .create_client(cookie, "https://example.com/cb", &["submit_score"])
        .await;

    for (path, status) in [("/close-at-once", 502), ("/garbage", 502), ("/hang", 504)] {
        let started = Instant::now();
        let r = gate.get(path).await;
        assert_eq!(r.status(), status, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} took {:?}",
            started.elapsed()
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false, "{path}");
        // Between the failures, everything else still works.
        assert_eq!(gate.get("/fine").await.text().await.unwrap(), "ok");
        let code = gate.create_code(cookie, json!({})).await;
        let (st, v) = gate.token_json(json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": "https://example.com/cb", "code": code})).await;
        assert_eq!(st, 200, "token exchange after {path}: {v}");
    }
    // A body cut short after the header went out cannot become JSON; the
    // client sees the truncation, and the gate carries on.
    let truncated = gate.get("/half-body").await.text().await;
    assert!(
        truncated.is_err(),
        "a truncated body must not look complete"
    );
    assert_eq!(gate.get("/fine").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_and_idle_clients_do_not_stop_others() {
    let gate = TestGate::start("").await;
    // 2000 idle connections, and 50 that trickle a header one byte at a time.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(tokio::net::TcpStream::connect(gate.addr).await.unwrap());
    }
    let mut tricklers = Vec::new();
    for _ in 0..50 {
        let addr = gate.addr;
        tricklers.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            for b in b"GET /x HTTP/1.1\r\nHost: slow\r\nX-Slow: ".iter() {
                if s.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "50 requests took {:?} beside the idle ones",
        started.elapsed()
    );
    for t in tricklers {
        t.abort();
    }
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_past_the_time_limit_is_cut_off() {
    let gate = TestGate::start("").await;
    let mut s = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").await.unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            if s.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        rest
    });
    let answer = String::from_utf8_lossy(&trickle.await.unwrap()).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // Meanwhile and after, the gate serves.
    assert_eq!(gate.get("/x").await.status(), 200);
}

/// Hundreds of malformed requests, none answered with a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_malformed_requests_gets_no_5xx() {
    let gate = TestGate::start("[limits]\nenabled = false").await;
    let routes = [
        "/api/v1/oauth/create-code",
        "/api/v1/oauth/token",
        "/api/v1/oauth/revoke",
        "/api/v1/oauth/introspect",
        "/.well-known/oauth-authorization-server",
        "/api/v1/clients",
        "/api/v1/clients/create",
        "/api/v1/clients/CIx",
        "/api/v1/clients/CIx/reset-secret",
        "/api/v1/users/me/api-tokens",
        "/api/v1/users/me/api-tokens/create",
        "/api/v1/users/1/api-tokens/abc",
        "/x",
    ];
    let methods = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "BREW", "CONNECT",
    ];
    let bodies: [&[u8]; 6] = [
        b"",
        b"{",
        b"[]",
        b"\xff\xfe",
        b"a=%zz&a=1",
        b"{\"grant_type\":{\"x\":[1,2,{}]}}",
    ];
    let mut requests: Vec<Vec<u8>> = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        for (j, method) in methods.iter().enumerate() {
            let body = bodies[(i + j) % bodies.len()];
            let ct = [
                "application/json",
                "application/x-www-form-urlencoded",
                "text/plain",
            ][(i * j) % 3];
            // Honest length, a length that lies, and no length.
            for len in [Some(body.len()), Some(body.len() + 7), None] {
                let mut r = format!("{method} {route} HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\nAuthorization: Bearer junk{i}\r\nConnection: close\r\n").into_bytes();
                if let Some(l) = len {
                    r.extend_from_slice(format!("Content-Length: {l}\r\n").as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r.extend_from_slice(body);
                requests.push(r);
            }
        }
    }
    // Random bytes and truncations of a good request.
    let good = b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    for cut in (1..good.len()).step_by(7) {
        requests.push(good[..cut].to_vec());
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for n in 0..40 {
        let bytes: Vec<u8> = (0..(n * 13 + 5))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        requests.push(bytes);
    }
    // NUL bytes, huge URLs, invalid chunking.
    requests.push(b"GET /x\x00y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec());
    requests.push(
        format!(
            "GET /{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "a".repeat(100_000)
        )
        .into_bytes(),
    );
    requests.push(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffffff\r\nx\r\n".to_vec());
    requests.push(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n0\r\n\r\n".to_vec());
    assert!(requests.len() > 400, "{} requests", requests.len());

    // Many at once: requests that lie about their length or stop half-way are
    // left waiting by the gate (until its read timeouts), which is fine; what
    // must never come back is a 5xx.
    let mut tasks = tokio::task::JoinSet::new();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
    for req in requests {
        let (addr, limit) = (gate.addr, limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let r = raw_request_within(addr, &req, Duration::from_secs(3)).await;
            (
                String::from_utf8_lossy(&req[..req.len().min(60)]).to_string(),
                r,
            )
        });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        let (shown, r) = done.unwrap();
        assert!(r.status < 500, "{shown:?} -> {}", r.head);
        if r.status >= 400 {
            answered += 1;
        }
    }
    assert!(
        answered > 300,
        "only {answered} requests were refused with a 4xx"
    );
    // Still serving.
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
}

/// A header trickled quicker than any per-read timeout but slower than the
/// header deadline is cut off with a JSON 408, and the gate serves others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_trickled_past_the_deadline_gets_408() {
    let (gate, admin) = gate_with_admin("header_timeout_ms = 1500").await;
    let before = sample(
        &scrape(&gate, &admin).await,
        "tachi_gate_header_timeouts_total",
    );
    let (answer, elapsed) =
        answer_to_a_trickle(gate.addr, b"GET /x HTTP/1.1\r\nHost: slow\r\nX-Slow: ").await;
    assert_json_408(&answer);
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(6),
        "cut off after {elapsed:?}"
    );
    let after = sample(
        &scrape(&gate, &admin).await,
        "tachi_gate_header_timeouts_total",
    );
    assert!(after >= before + 1.0, "{before} -> {after}");
    assert_eq!(gate.get("/x").await.status(), 200);
}

/// Every request on a kept-alive connection has the deadline, not only the
/// first: the connection's timer, moved later while it waited, is moved back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_request_trickled_past_the_deadline_gets_408() {
    let gate = TestGate::start("[server]\nheader_timeout_ms = 1500").await;
    let mut s = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    get_kept_alive(&mut s, 2).await;
    let (answer, elapsed) =
        answer_to_a_trickle_on(s, b"GET /x HTTP/1.1\r\nHost: slow\r\nX-Slow: ").await;
    assert_json_408(&answer);
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(6),
        "cut off after {elapsed:?}"
    );
}

/// The deadline runs from a request's first byte: a kept-alive connection
/// may stay idle longer than it between requests, and a head that arrives in
/// pieces within it is served, body bytes sent with it included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_deadline_does_not_count_idle_time() {
    let gate = TestGate::start("[server]\nheader_timeout_ms = 800").await;
    let mut s = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.write_all(b"GET /x?round=").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(format!("{round} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = read_answer(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(&format!("round={round}")), "{answer}");
    }
    // A body that came in the same packet as the end of the head is not lost:
    // the token endpoint reads it and refuses the unknown client at once.
    s.write_all(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = r#"{"client_id":"CInope","client_secret":"CSnope","grant_type":"authorization_code","code":"x","redirect_uri":"https://e.x/cb"}"#;
    s.write_all(
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("This client does not exist."), "{answer}");
}

/// Sends `head`, then one byte every 100 ms (for up to 20 s) while reading
/// concurrently, so the answer is taken before any reset. Returns what the
/// gate answered before closing, and when it closed.
async fn answer_to_a_trickle(addr: SocketAddr, head: &[u8]) -> (String, Duration) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    answer_to_a_trickle_on(s, head).await
}

/// [`answer_to_a_trickle`] on a connection already open.
async fn answer_to_a_trickle_on(s: tokio::net::TcpStream, head: &[u8]) -> (String, Duration) {
    let (mut read, mut write) = s.into_split();
    let started = Instant::now();
    let head = head.to_vec();
    let trickle = tokio::spawn(async move {
        let _ = write.write_all(&head).await;
        for _ in 0..200 {
            if write.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(25), read.read(&mut chunk)).await
    {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let elapsed = started.elapsed();
    trickle.abort();
    (String::from_utf8_lossy(&answer).to_string(), elapsed)
}

/// Asserts a complete JSON 408 answer in the gate's envelope.
fn assert_json_408(answer: &str) {
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer}"
    );
    let body: Value =
        serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["success"], false, "{answer}");
}

/// A forwarded body trickled quicker than Pingora's per-read timeout but
/// slower than `body_timeout_ms` in total is cut off with a JSON 408, and the
/// gate serves others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_body_trickled_past_its_deadline_gets_408() {
    let gate = TestGate::start("[server]\nbody_timeout_ms = 1500").await;
    let (answer, elapsed) = answer_to_a_trickle(
        gate.addr,
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n",
    )
    .await;
    assert_json_408(&answer);
    assert!(
        answer.contains("The request body did not arrive in time."),
        "{answer}"
    );
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(6),
        "cut off after {elapsed:?}"
    );
    assert_eq!(gate.get("/x").await.status(), 200);
}

/// The body deadline runs from a body's first byte and only while one
/// arrives: at 100 ms, requests without a body, bodies sent at once, and a
/// body that starts late but then comes at once all pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_deadline_spares_prompt_and_empty_bodies() {
    let gate = TestGate::start("[server]\nbody_timeout_ms = 100").await;
    for _ in 0..3 {
        assert_eq!(gate.get("/x").await.status(), 200);
        let r = gate
            .http
            .post(gate.url("/x"))
            .header("content-type", "text/plain")
            .body("a".repeat(200_000))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["body"].as_str().map(str::len), Some(200_000));
    }
    // A body that starts well after its header, then comes at once, passes:
    // the clock starts at its first byte.
    let mut s = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.write_all(b"hello").await.unwrap();
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("hello"), "{answer}");
}
