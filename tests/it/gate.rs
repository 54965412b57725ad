//! The auth check and forwarding through real sockets: header hygiene, Authorization
//! errors, policies, sessions, options, and a dead upstream.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

const POLICIES: &str = r#"
[[auth.policy]]
methods = ["POST", "PUT", "PATCH", "DELETE"]
path_prefix = "/ir/"
require = ["submit_score", "delete_score"]

[[auth.policy]]
path_prefix = "/api/v1/users/me/settings"
require = []
"#;

async fn echo_of(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["echo"], true, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let gate = TestGate::start("").await;
    let (key, client, _) = gate.issue_key(4, &["submit_score"]).await;
    let spoof = "X-Tachi-User-ID: 1\r\nx-tachi-user-id: 2\r\nX-TACHI-PERMISSIONS: delete_score\r\n\
                 x-Tachi-Client-Id: CIevil\r\nX-Tachi-Token-ID: t\r\nx-tachi-token-id: u\r\n\
                 X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\
                 X-Forwarded-Host: evil.example\r\nX_Forwarded_Port: 444\r\n";

    // As a guest: none of them arrive, and the forwarding headers are the gate's.
    let req =
        format!("GET /api/v1/users/1 HTTP/1.1\r\nHost: t\r\n{spoof}Connection: close\r\n\r\n");
    let echo = raw_request(gate.addr, req.as_bytes()).await.json();
    for h in [
        "x-tachi-user-id",
        "x-tachi-permissions",
        "x-tachi-client-id",
        "x-tachi-token-id",
    ] {
        assert!(echoed_headers(&echo, h).is_empty(), "{h} leaked: {echo}");
    }
    assert_eq!(echoed_headers(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echoed_headers(&echo, "x-forwarded-proto"), vec!["http"]);
    for h in ["x-forwarded-host", "x_forwarded_port"] {
        assert!(echoed_headers(&echo, h).is_empty(), "{h} leaked: {echo}");
    }
    assert_eq!(echoed_headers(&echo, "host"), vec!["t"]);

    // With a key: exactly the gate's values, once each.
    let req = format!("GET /api/v1/users/1 HTTP/1.1\r\nHost: t\r\n{spoof}Authorization: Bearer {key}\r\nConnection: close\r\n\r\n");
    let echo = raw_request(gate.addr, req.as_bytes()).await.json();
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["4"]);
    assert_eq!(
        echoed_headers(&echo, "x-tachi-permissions"),
        vec!["submit_score"]
    );
    assert_eq!(echoed_headers(&echo, "x-tachi-client-id"), vec![client]);
    let token_ids = echoed_headers(&echo, "x-tachi-token-id");
    assert_eq!(token_ids.len(), 1);
    assert_ne!(token_ids[0], "t");
    assert_eq!(echoed_headers(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
}

/// RFC 9112 §3.2: HTTP/1.1 requires `Host`, so a request without one is the
/// gate's to refuse (in JSON, before any upstream sees it); HTTP/1.0 may
/// leave it out, and is forwarded with the upstream's own name, since the
/// gate speaks HTTP/1.1 upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_is_refused_in_http_1_1_and_given_one_in_http_1_0() {
    let gate = TestGate::start("").await;
    for path in ["/api/v1/users/1", "/api/v1/oauth/token"] {
        let req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
        let r = raw_request(gate.addr, req.as_bytes()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.head);
        assert_eq!(
            r.json(),
            json!({"success": false, "description": "The request has no Host header."})
        );
    }

    // Two are refused too, as Pingora's parser refuses them, and in JSON.
    let two = b"GET /api/v1/users/1 HTTP/1.1\r\nHost: t\r\nhost: u\r\n\r\n";
    let r = raw_request(gate.addr, two).await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert_eq!(
        r.json(),
        json!({"success": false, "description": "The request header is malformed: multiple Host header fields."})
    );
    assert_eq!(r.header("connection").as_deref(), Some("close"));

    let host_upstream_saw = |req: &'static [u8]| async move {
        let r = raw_request(gate.addr, req).await;
        assert_eq!(r.status, 200, "{}", r.head);
        echoed_headers(&r.json(), "host")
    };
    assert_eq!(
        host_upstream_saw(b"GET /api/v1/users/1 HTTP/1.0\r\n\r\n").await,
        vec![gate.upstream.addr.to_string()]
    );
    // A request that names its host keeps it.
    assert_eq!(
        host_upstream_saw(b"GET /api/v1/users/1 HTTP/1.0\r\nHost: t\r\n\r\n").await,
        vec!["t"]
    );
    assert_eq!(
        host_upstream_saw(b"GET http://b.example/api/v1/users/1 HTTP/1.0\r\n\r\n").await,
        vec!["b.example"]
    );
}

/// The gate's count of refused request heads (shared by all gates of this
/// test binary, so tests compare with at least what they added).
async fn heads_refused(gate: &TestGate, admin: &str) -> f64 {
    sample(&scrape(gate, admin).await, "tachi_gate_heads_refused_total")
}

/// A refused head's answer: 400, the JSON failure `description`, and the
/// connection closed.
fn assert_head_refused(r: &RawResponse, description: &str, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.head);
    assert_eq!(
        r.json(),
        json!({"success": false, "description": description}),
        "{what}"
    );
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{what}");
}

/// Sends `pieces` 30 ms apart on a connection that has just had a request
/// answered and kept alive, and returns the answer to them.
async fn trickle_after_a_kept_alive_request(
    addr: std::net::SocketAddr,
    pieces: &[&[u8]],
) -> String {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    get_kept_alive(&mut s, 1).await;
    for piece in pieces {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    read_answer(&mut s).await
}

/// Heads Pingora's parser refuses for their framing headers are answered in
/// JSON, on every kind of route, and the connection closed; look-alikes that
/// it accepts still reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_headers_get_a_json_400_and_the_rest_are_forwarded() {
    let (gate, admin) = gate_with_admin("").await;
    let refused = || heads_refused(&gate, &admin);
    let before = refused().await;
    for path in ["/api/v1/users/1", "/api/v1/oauth/token"] {
        for (framing, reason) in [
            (
                "Content-Length: 2\r\nContent-Length: 3",
                "invalid Content-Length header",
            ),
            ("Content-Length: 2, 3", "invalid Content-Length header"),
            (
                "Transfer-Encoding: gzip",
                "non-chunked final Transfer-Encoding",
            ),
        ] {
            let req = format!("POST {path} HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n{{}}");
            let r = raw_request(gate.addr, req.as_bytes()).await;
            let description = format!("The request header is malformed: {reason}.");
            assert_head_refused(&r, &description, &format!("{path} {framing}"));
        }
    }
    let r = raw_request(
        gate.addr,
        b"POST /api/v1/users/1 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(
        r.json()["description"]
            .as_str()
            .unwrap()
            .contains("HTTP/1.0"),
        "{}",
        r.json()
    );

    // A head arriving in pieces, on a kept-alive connection after a request
    // that went through, is checked the same way.
    let answer = trickle_after_a_kept_alive_request(
        gate.addr,
        &[
            b"GET /api/v1/users/1 HTTP/1.1\r\nHo",
            b"st: t\r\nX: 1\r",
            b"\nhost",
            b": u\r\n",
            b"\r\n",
        ],
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("multiple Host header fields"), "{answer}");

    // Eight refused above (the counter is shared with tests running beside).
    assert!(refused().await >= before + 8.0);

    // Suspect-looking but well formed: equal lengths, and chunked bodies.
    let forwarded = [
        &b"POST /api/v1/users/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{}"[..],
        b"POST /api/v1/users/1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ];
    for req in forwarded {
        let r = raw_request(gate.addr, req).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.json()["body"], "{}", "{}", r.json());
    }
}

/// Heads with bytes the parser cannot read (docs/guarantees.md): the same JSON 400 and
/// closed connection, on a forwarded route and an own route, whole or in
/// pieces on a kept-alive connection, and counted; the upstream sees none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_heads_get_a_json_400() {
    let (gate, admin) = gate_with_admin("").await;
    let refused = || heads_refused(&gate, &admin);
    let before = refused().await;
    let status_calls = || gate.upstream.status_calls.load(Ordering::SeqCst);
    for path in ["/api/v1/status", "/api/v1/oauth/token"] {
        for line in [
            "Bad Name: 1",
            "no colon",
            "X-A: a\x01b",
            "X-A: 1\r\n folded",
        ] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{line}\r\n\r\n");
            let r = raw_request(gate.addr, req.as_bytes()).await;
            let what = format!("{path} {line:?}");
            assert_head_refused(&r, "The request header is malformed.", &what);
        }
        let req = format!("GET {path} HTTP/1.2\r\nHost: t\r\n\r\n");
        let r = raw_request(gate.addr, req.as_bytes()).await;
        assert_eq!(r.status, 400, "{}", r.head);
        assert_eq!(r.json()["success"], false);
    }

    let answer = trickle_after_a_kept_alive_request(
        gate.addr,
        &[
            b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\nX-",
            b"A B: 1\r",
            b"\n\r\n",
        ],
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("The request header is malformed."),
        "{answer}"
    );

    // Eleven refused above (the counter is shared with tests running beside),
    // and none reached the upstream.
    assert!(refused().await >= before + 11.0);
    assert_eq!(status_calls(), 0);
    let r = raw_request(
        gate.addr,
        b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(status_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_errors_use_tachis_messages() {
    let gate = TestGate::start("").await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let url = gate.url("/api/v1/users/me");
    let get = |auth: &str| {
        gate.http
            .get(&url)
            .header("authorization", auth.to_string())
            .send()
    };

    for auth in ["Basic dXNlcjpwYXNz", "Token abc", "Digest x"] {
        let r = get(auth).await.unwrap();
        assert_eq!(r.status(), 400, "{auth}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["description"],
            "Invalid Authorization Type - Expected Bearer."
        );
    }
    for auth in ["Bearer", "Bearer ", "bearer   "] {
        let r = get(auth).await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["description"],
            "Invalid token."
        );
    }
    let r = get("Bearer 0123456789abcdef0123456789abcdef01234567")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"tachi\", error=\"invalid_token\""
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(
        v["description"],
        "The provided API token does not correspond with any key in the database."
    );

    // The scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let r = get(&format!("{scheme} {key}")).await.unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // Two Authorization headers are refused rather than guessed at.
    let req = format!("GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nAuthorization: Bearer other\r\nConnection: close\r\n\r\n");
    let r = raw_request(gate.addr, req.as_bytes()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["success"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_allow_and_refuse() {
    let gate = TestGate::start(POLICIES).await;
    let (full, _, _) = gate.issue_key(1, &["submit_score", "delete_score"]).await;
    let (partial, _, _) = gate.issue_key(2, &["submit_score"]).await;
    let url = gate.url("/ir/direct-manual/import");

    let r = gate
        .http
        .post(&url)
        .bearer_auth(&full)
        .body("{}")
        .send()
        .await
        .unwrap();
    let echo = echo_of(r).await;
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["1"]);

    let r = gate
        .http
        .post(&url)
        .bearer_auth(&partial)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"tachi\", error=\"insufficient_scope\", scope=\"delete_score\""
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["description"],
        "You are missing the following permissions necessary for this request: delete_score"
    );

    // A guest on an IR route is told what Tachi's RequireNotGuest tells it
    // (server/src/server/middleware/auth.ts, RequireNotGuest).
    let r = gate.http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tachi\"");
    assert_eq!(
        r.json::<Value>().await.unwrap()["description"],
        "This endpoint requires authentication."
    );

    // Methods outside the policy are not covered by it.
    echo_of(gate.http.get(&url).send().await.unwrap()).await;
    // require = [] admits any key, but no guest.
    let settings = gate.url("/api/v1/users/me/settings");
    echo_of(
        gate.http
            .patch(&settings)
            .bearer_auth(&partial)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        gate.http.patch(&settings).send().await.unwrap().status(),
        401
    );
    // A path outside every policy passes as a guest.
    echo_of(
        gate.http
            .post(gate.url("/api/v1/search"))
            .send()
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_pass_through_with_their_cookie_and_are_cached() {
    let gate = TestGate::start(POLICIES).await;
    let cookie = gate.session(5);
    let path = "/ir/direct-manual/import";

    let calls_before = gate
        .upstream
        .status_calls
        .load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        let echo = echo_of(gate.send_as(Method::POST, path, &cookie).await).await;
        assert_eq!(echoed_headers(&echo, "cookie"), vec![cookie.clone()]);
        assert!(
            echoed_headers(&echo, "x-tachi-user-id").is_empty(),
            "sessions get no identity headers"
        );
    }
    let calls = gate
        .upstream
        .status_calls
        .load(std::sync::atomic::Ordering::SeqCst)
        - calls_before;
    assert_eq!(calls, 1, "one status lookup serves the cache TTL");

    // A cookie that is not a live session is a guest.
    let r = gate.send_as(Method::POST, path, "connect.sid=dead").await;
    assert_eq!(r.status(), 401);
    // Without a policy, a cookie costs no status lookup at all.
    let before = gate
        .upstream
        .status_calls
        .load(std::sync::atomic::Ordering::SeqCst);
    echo_of(
        gate.send_as(Method::GET, "/api/v1/games", "connect.sid=other")
            .await,
    )
    .await;
    assert_eq!(
        gate.upstream
            .status_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_lookup_sends_only_the_cookie() {
    let gate = TestGate::start("").await;
    let cookie = gate.session(5);
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/create-code"))
        .header("cookie", &cookie)
        .header("x-tachi-user-id", "1")
        .header("x-custom", "secret-ish")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["body"]["userID"], 5);
    let sent = gate.upstream.last_status_headers.lock().unwrap().clone();
    assert!(sent.contains(&("cookie".to_string(), cookie)), "{sent:?}");
    for (name, _) in &sent {
        assert!(
            ["cookie", "host", "accept"].contains(&name.as_str()),
            "unexpected {name} in {sent:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_credentials_false_forwards_authorization() {
    let gate = TestGate::start("[auth]\nhide_credentials = false").await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let echo = echo_of(gate.get_with_key("/x", &key).await).await;
    assert_eq!(
        echoed_headers(&echo, "authorization"),
        vec![format!("Bearer {key}")]
    );
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_forward_passes_foreign_keys_untouched() {
    let gate = TestGate::start("[auth]\nunknown_tokens = \"forward\"").await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let foreign = "ffffffffffffffffffffffffffffffffffffffff";
    let echo = echo_of(gate.get_with_key("/x", foreign).await).await;
    assert_eq!(
        echoed_headers(&echo, "authorization"),
        vec![format!("Bearer {foreign}")]
    );
    assert!(echoed_headers(&echo, "x-tachi-user-id").is_empty());
    // The gate's own keys are still checked and replaced by identity headers.
    let echo = echo_of(gate.get_with_key("/x", &key).await).await;
    assert!(echoed_headers(&echo, "authorization").is_empty());
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["1"]);
    // Malformed Authorization is still refused.
    let r = gate
        .http
        .get(gate.url("/x"))
        .header("authorization", "Bearer")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_gives_502_while_token_exchange_keeps_working() {
    let mut gate = TestGate::start("").await;
    let cookie = gate.session(1);
    let (id, secret) = gate
        .create_client(&cookie, "https://example.com/cb", &["submit_score"])
        .await;
    let code = gate.create_code(&cookie, json!({})).await;
    let (key, _, _) = gate.issue_key(2, &["submit_score"]).await;

    gate.upstream.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    for auth in [None, Some(key.as_str())] {
        let mut req = gate.http.get(gate.url("/api/v1/users/me"));
        if let Some(k) = auth {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 502);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v,
            json!({"success": false, "description": "The Tachi server is unavailable."})
        );
    }
    let (st, v) = gate
        .token_json(
            json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code",
                           "redirect_uri": "https://example.com/cb", "code": code}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let r = gate.get(&format!("/api/v1/clients/{id}")).await;
    assert_eq!(r.status(), 200, "client lookups need no upstream");
    // Routes that need a session say the upstream is down rather than "not authenticated".
    let r = gate
        .send_as(Method::POST, "/api/v1/oauth/create-code", "connect.sid=new")
        .await;
    assert_eq!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_own_routes_hold_for_every_spelling_of_a_path() {
    let gate = TestGate::start(POLICIES).await;
    let (weak, _, _) = gate.issue_key(1, &["customise_profile"]).await;
    for path in [
        "/ir/x", "/IR/x", "/Ir/x", "/%69r/x", "/%49R/x", "//ir/x", "/ir//x",
    ] {
        let r = gate
            .http
            .post(gate.url(path))
            .bearer_auth(&weak)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    for path in ["/ir/../ir/x", "/x/./ir/x", "/a/%2e%2e/ir/x"] {
        let req = format!("POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {weak}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let r = raw_request(gate.addr, req.as_bytes()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.head);
    }
    // The gate's own routes are its own in any case, never the upstream's.
    for path in [
        "/API/v1/oauth/token",
        "/api/V1/OAuth/Token",
        "/api/v1/oauth/token/",
        "//api/v1/oauth/token",
    ] {
        let r = gate
            .http
            .post(gate.url(path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{path}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_foreign_keys_never_pass_a_policy() {
    let gate = TestGate::start(&format!("[auth]\nunknown_tokens = \"forward\"\n{POLICIES}")).await;
    let r = gate
        .http
        .post(gate.url("/ir/x"))
        .bearer_auth("made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"tachi\", error=\"invalid_token\""
    );
    let r = gate
        .http
        .patch(gate.url("/api/v1/users/me/settings"))
        .bearer_auth("made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "require = [] still needs a key the gate knows"
    );
    echo_of(
        gate.http
            .get(gate.url("/ir/x"))
            .bearer_auth("made-up")
            .send()
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_and_forwarding_headers_are_stripped() {
    let gate = TestGate::start("").await;
    let (key, _, _) = gate.issue_key(4, &["submit_score"]).await;
    let req = format!(
        "GET /x HTTP/1.1\r\nHost: t\r\nX_Tachi_User_ID: 1\r\nx_tachi_permissions: delete_score\r\n\
         Forwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\nX-Tachi-Other: kept\r\n\
         Authorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    let echo = raw_request(gate.addr, req.as_bytes()).await.json();
    for h in [
        "x_tachi_user_id",
        "x_tachi_permissions",
        "forwarded",
        "x-real-ip",
    ] {
        assert!(echoed_headers(&echo, h).is_empty(), "{h} leaked: {echo}");
    }
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["4"]);
    assert_eq!(echoed_headers(&echo, "x-tachi-other"), vec!["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_says_the_connection_closes() {
    let mut gate = TestGate::start("").await;
    gate.upstream.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for _ in 0..5 {
        let r = gate.get("/api/v1/users/me").await;
        assert_eq!(r.status(), 502);
        assert_eq!(r.headers()["connection"], "close");
    }
}
