//! What an attacker tried, through real sockets: locking honest clients out
//! by failing from a shared address, sidestepping policies by spelling,
//! cross-site forms against cookie routes, unbounded growth from one
//! session, secrets in logs, and smuggling-prone framing. (HTTP/2 and TLS
//! cases are in `tls.rs`.)

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CB: &str = "https://example.com/cb";

/// A client whose connections come from `source` (any 127.0.0.0/8 address
/// is this machine's).
fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from(source))
        .build()
        .unwrap()
}

async fn status_with_key(http: &reqwest::Client, gate: &TestGate, key: &str) -> u16 {
    let r = http
        .get(gate.url("/x"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_dual_stack_listener_ipv4_clients_are_counted_apart() {
    let gate = TestGate::start_dual_stack("[limits]\nfailed_auths = 3").await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let (guesser, other) = (client_from([127, 0, 0, 1]), client_from([127, 0, 0, 2]));
    for _ in 0..3 {
        assert_eq!(status_with_key(&guesser, &gate, "guess").await, 401);
    }
    assert_eq!(status_with_key(&guesser, &gate, "guess").await, 429);
    // Another IPv4 client has failures of its own to spend, and its key works.
    assert_eq!(status_with_key(&other, &gate, "guess").await, 401);
    assert_eq!(status_with_key(&other, &gate, &key).await, 200);
    // The guesser's own good key is served too.
    assert_eq!(status_with_key(&guesser, &gate, &key).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for() {
    let gate = TestGate::start(
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[limits]\nfailed_auths = 2",
    )
    .await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let from = |client: &'static str, key: &str| {
        gate.http
            .get(gate.url("/x"))
            .header("x-forwarded-for", client)
            .bearer_auth(key)
            .send()
    };
    for expected in [401, 401, 429] {
        let r = from("198.51.100.1", "guess").await.unwrap();
        assert_eq!(r.status(), expected);
    }
    // Another client behind the same balancer is not affected.
    assert_eq!(from("198.51.100.2", "guess").await.unwrap().status(), 401);
    // The chain the balancer sent is extended with the balancer's address.
    let echo: Value = from("198.51.100.2", &key)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        echoed_headers(&echo, "x-forwarded-for"),
        ["198.51.100.2, 127.0.0.1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_x_forwarded_for_is_replaced() {
    let gate = TestGate::start("[server]\ntrusted_proxies = [\"10.0.0.0/8\"]").await;
    let r = gate
        .http
        .get(gate.url("/x"))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echoed_headers(&echo, "x-forwarded-for"), ["127.0.0.1"]);
}

/// Sends `prefix` (a PROXY header), then a GET, on one plain connection;
/// the upstream's echo of it.
async fn through_proxy_header(gate: &TestGate, prefix: &[u8]) -> RawResponse {
    let mut request = prefix.to_vec();
    request.extend_from_slice(b"GET /x HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n");
    raw_request(gate.addr, &request).await
}

/// A PROXY v2 header for a TCP over IPv4 connection from `source`.
fn proxy_v2(source: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = source else {
        panic!("an IPv4 source")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&v4.ip().octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&v4.port().to_be_bytes());
    h.extend_from_slice(&8080u16.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_names_the_client_on_plain_listeners() {
    let gate =
        TestGate::start("[server]\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true").await;
    let v1 = through_proxy_header(&gate, b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n").await;
    assert_eq!(v1.status, 200);
    assert_eq!(
        echoed_headers(&v1.json(), "x-forwarded-for"),
        ["203.0.113.7"]
    );
    let v2 = through_proxy_header(&gate, &proxy_v2("198.51.100.9:40000".parse().unwrap())).await;
    assert_eq!(v2.status, 200);
    assert_eq!(
        echoed_headers(&v2.json(), "x-forwarded-for"),
        ["198.51.100.9"]
    );
    // A balancer's own health check names nobody: the balancer is the client.
    let local = through_proxy_header(&gate, b"PROXY UNKNOWN\r\n").await;
    assert_eq!(
        echoed_headers(&local.json(), "x-forwarded-for"),
        ["127.0.0.1"]
    );
    // A trusted peer without the header is dropped, not read as HTTP.
    let missing = through_proxy_header(&gate, b"").await;
    assert_eq!(missing.status, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_peers_may_send_a_proxy_header() {
    let gate =
        TestGate::start("[server]\ntrusted_proxies = [\"127.0.0.2\"]\nproxy_protocol = true").await;
    // 127.0.0.1 is not trusted: its PROXY line is a malformed request.
    let r = through_proxy_header(&gate, b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n").await;
    assert_eq!(r.status, 400);
    // Its plain requests are served as they are.
    let echo: Value = gate.get("/x").await.json().await.unwrap();
    assert_eq!(echoed_headers(&echo, "x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_counts_its_failures_apart() {
    let port = free_port();
    let token = "an-admin-token-long-enough";
    let gate = TestGate::start(&format!(
        "[server]\nadmin_listen = \"127.0.0.1:{port}\"\nadmin_token = \"{token}\"\n[limits]\nfailed_auths = 2"
    ))
    .await;
    assert!(wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10)
    ));
    let admin = |bearer: &str| {
        gate.http
            .get(format!("http://127.0.0.1:{port}/admin/clients"))
            .bearer_auth(bearer)
            .send()
    };
    // The public listener's failures do not lock the operator out...
    for _ in 0..3 {
        gate.get_with_key("/x", "guess").await;
    }
    assert_eq!(admin(token).await.unwrap().status(), 200);
    // ...and the admin listener's failures are limited on their own.
    for expected in [401, 401, 429] {
        assert_eq!(admin("wrong").await.unwrap().status(), expected);
    }
    assert_eq!(admin(token).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_only_policy_covers_head_and_any_spelling_of_the_method() {
    let gate = TestGate::start(
        "[[auth.policy]]\nmethods = [\"GET\", \"POST\"]\npath_prefix = \"/private/\"",
    )
    .await;
    for method in ["HEAD", "GET", "post", "Post"] {
        let request = format!(
            "{method} /private/x HTTP/1.1\r\nHost: gate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = raw_request(gate.addr, request.as_bytes()).await;
        assert_eq!(r.status, 401, "{method}");
    }
    // Methods the policy does not name still pass.
    let r = raw_request(
        gate.addr,
        b"PUT /private/x HTTP/1.1\r\nHost: gate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_covers_its_segment_with_or_without_the_slash() {
    let gate =
        TestGate::start("[[auth.policy]]\npath_prefix = \"/ir/\"\nrequire = [\"submit_score\"]")
            .await;
    for path in ["/ir", "/IR", "/ir/", "/ir?x=1", "/ir/direct-manual"] {
        let r = gate.http.post(gate.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    assert_eq!(
        gate.http
            .post(gate.url("/irx"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backslash_cannot_spell_a_path_past_a_policy() {
    // Node's legacy URL parser, which Express uses for some targets, reads
    // `\` as `/`: /ir\direct-manual would reach /ir/direct-manual upstream.
    let gate =
        TestGate::start("[[auth.policy]]\npath_prefix = \"/ir/\"\nrequire = [\"submit_score\"]")
            .await;
    for target in [
        "/ir\\direct-manual",
        "/ir\\direct-manual?\u{a0}",
        "http://gate/ir\\direct-manual",
        "/api\\v1\\users\\me\\api-tokens\\create",
    ] {
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: gate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = raw_request(gate.addr, request.as_bytes()).await;
        assert_eq!(r.status, 400, "{target}: {}", r.head);
        assert_eq!(r.json()["success"], false, "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_binding_can_be_required_and_keys_keep_to_the_codes_client() {
    let gate = TestGate::start("[oauth]\nrequire_client_binding = true").await;
    let cookie = gate.session(1);
    let r = gate
        .post_as(&gate.url("/api/v1/oauth/create-code"), &cookie, json!({}))
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["description"].as_str().unwrap().contains("clientID"),
        "{v}"
    );

    let (narrow, narrow_secret) = gate.create_client(&cookie, CB, &["submit_score"]).await;
    let (wide, wide_secret) = gate
        .create_client(&cookie, CB, &["submit_score", "delete_score"])
        .await;
    let code = gate.create_code(&cookie, json!({"clientID": narrow})).await;
    let exchange = |id: &str, secret: &str| {
        gate.token_json(json!({
            "client_id": id, "client_secret": secret, "grant_type": "authorization_code",
            "redirect_uri": CB, "code": code,
        }))
    };
    // A client with more permissions cannot take the code to widen the key.
    let (status, _) = exchange(&wide, &wide_secret).await;
    assert_eq!(status, 404);
    let (status, body) = exchange(&narrow, &narrow_secret).await;
    assert_eq!(status, 200);
    assert_eq!(body["body"]["permissions"], json!({"submit_score": true}));
}

/// POSTs `body` as `content_type` to `url` with a session cookie, from
/// `origin` when given; the status.
async fn session_post(
    gate: &TestGate,
    url: &str,
    cookie: &str,
    (content_type, body): (&str, &'static str),
    origin: Option<&str>,
) -> u16 {
    let mut r = gate
        .http
        .post(url)
        .header("cookie", cookie)
        .header("content-type", content_type)
        .body(body);
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_routes_refuse_forms_and_other_sites() {
    let gate = TestGate::start("[server]\ntrusted_origins = [\"https://tachi.example\"]").await;
    let cookie = gate.session(1);
    let (id, _) = gate.create_client(&cookie, CB, &["submit_score"]).await;
    let reset = gate.url(&format!("/api/v1/clients/{id}/reset-secret"));
    let evil = Some("https://evil.example");
    // What a cross-site HTML form can send.
    for form in [
        ("application/x-www-form-urlencoded", "a=b"),
        ("text/plain", "x"),
        ("multipart/form-data; boundary=x", "--x--"),
    ] {
        assert_eq!(
            session_post(&gate, &reset, &cookie, form, evil).await,
            400,
            "{form:?}"
        );
    }
    // JSON from another site's page (after a preflight it would never pass).
    let json = ("application/json", "{}");
    assert_eq!(session_post(&gate, &reset, &cookie, json, evil).await, 403);
    // The gate's own pages, a trusted front-end, and no Origin at all.
    let own = format!("http://{}", gate.addr);
    for origin in [Some(own.as_str()), Some("https://tachi.example"), None] {
        assert_eq!(
            session_post(&gate, &reset, &cookie, json, origin).await,
            200,
            "{origin:?}"
        );
    }
    // create-code and api-tokens/create are guarded the same way.
    for path in [
        "/api/v1/oauth/create-code",
        "/api/v1/users/me/api-tokens/create",
    ] {
        let form = ("application/x-www-form-urlencoded", "identifier=x");
        assert_eq!(
            session_post(&gate, &gate.url(path), &cookie, form, None).await,
            400,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_cannot_grow_codes_or_keys_without_bound() {
    let gate = TestGate::start("[oauth]\ncodes_per_user = 3\nkeys_per_user = 2").await;
    let cookie = gate.session(1);
    let (id, secret) = gate.create_client(&cookie, CB, &["submit_score"]).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(gate.create_code(&cookie, json!({})).await);
    }
    // The two oldest codes made way for the newest three.
    let exchange = |code: String| {
        gate.token_json(json!({
            "client_id": id, "client_secret": secret, "grant_type": "authorization_code",
            "redirect_uri": CB, "code": code,
        }))
    };
    assert_eq!(exchange(codes[0].clone()).await.0, 404);
    assert_eq!(exchange(codes[1].clone()).await.0, 404);
    assert_eq!(exchange(codes[2].clone()).await.0, 200);
    // A custom key makes two; a third, by either route, is refused.
    let create_url = gate.url("/api/v1/users/me/api-tokens/create");
    let custom = json!({"identifier": "mine", "permissions": ["submit_score"]});
    let create = || gate.post_as(&create_url, &cookie, custom.clone());
    assert_eq!(create().await.status(), 200);
    let r = create().await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["description"].as_str().unwrap().contains("at most 2"),
        "{v}"
    );
    let (status, body) = exchange(codes[3].clone()).await;
    assert_eq!(status, 400, "{body}");
    // The refused exchange left its code for when there is room again.
    let listed: Value = gate
        .send_as(reqwest::Method::GET, "/api/v1/users/me/api-tokens", &cookie)
        .await
        .json()
        .await
        .unwrap();
    let token_id = listed["body"][0]["tokenID"].as_str().unwrap().to_string();
    let r = gate
        .send_as(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/me/api-tokens/{token_id}"),
            &cookie,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(exchange(codes[3].clone()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_content_length_is_forwarded_once() {
    let gate = TestGate::start("").await;
    for lengths in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ] {
        let request =
            format!("POST /x HTTP/1.1\r\nHost: gate\r\n{lengths}Connection: close\r\n\r\nhello");
        let r = raw_request(gate.addr, request.as_bytes()).await;
        assert_eq!(r.status, 200, "{lengths:?}");
        let echo = r.json();
        assert_eq!(
            echoed_headers(&echo, "content-length"),
            ["5"],
            "{lengths:?}"
        );
        assert_eq!(echo["body"], "hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_built_from_host_is_not_cached() {
    let from_host = TestGate::start("").await;
    let r = from_host
        .get("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["vary"], "Host");
    let configured = TestGate::start("[server]\npublic_url = \"https://gate.example\"").await;
    let r = configured
        .get("/.well-known/oauth-authorization-server")
        .await;
    assert!(!r.headers().contains_key("vary"));
    assert!(!r.headers().contains_key("cache-control"));
}

/// The gate's binary with `RUST_LOG=debug` and `extra` TOML, in front of
/// `upstream`; (process, its address).
fn debug_gate(
    dir: &std::path::Path,
    upstream: SocketAddr,
    extra: &str,
) -> (GateBinary, SocketAddr) {
    let conf = dir.join("gate.toml");
    std::fs::write(&conf, format!("[server]\nadmin_listen = \"\"\n{extra}")).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(env!("CARGO_BIN_EXE_tachi-gate"))
        .arg("--config")
        .arg(&conf)
        .args([
            "--listen",
            &addr.to_string(),
            "--upstream",
            &upstream.to_string(),
        ])
        .arg("--data")
        .arg(dir.join("store"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_port(addr, Duration::from_secs(20)));
    (GateBinary(child), addr)
}

/// Sends requests carrying a cookie and a key-like path segment, stops the
/// gate, and returns everything it logged.
async fn log_of_secret_requests(gate: GateBinary, addr: SocketAddr, secret: &str) -> String {
    for path in [
        format!("/api/v1/users/me/api-tokens/{secret}/x"),
        format!("/a/{secret}/../b"),
        "/plain".to_string(),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: gate\r\nCookie: connect.sid={secret}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    }
    stopped_log(gate)
}

/// Stops the gate with SIGTERM; everything it wrote to stderr.
fn stopped_log(mut gate: GateBinary) -> String {
    unsafe { libc::kill(gate.id() as i32, libc::SIGTERM) };
    let _ = gate.wait();
    let mut log = String::new();
    gate.stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_the_logs_even_at_debug() {
    let upstream = MockTachi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "0123456789abcdef0123456789abcdef01234567";
    let (gate, addr) = debug_gate(dir.path(), upstream.addr, "");
    let log = log_of_secret_requests(gate, addr, secret).await;
    assert!(log.contains("/plain"), "the requests were logged: {log}");
    assert!(log.contains("[redacted]"), "{log}");
    assert!(!log.contains(secret), "{log}");
    // The operator can ask for the libraries' own lines, secrets and all.
    let dir = tempfile::tempdir().unwrap();
    let (gate, addr) = debug_gate(dir.path(), upstream.addr, "[log]\nunsafe_debug = true\n");
    let log = log_of_secret_requests(gate, addr, secret).await;
    assert!(
        log.contains(secret),
        "unsafe_debug lets Pingora's dumps through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_warns_when_public_url_is_unset() {
    let upstream = MockTachi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (gate, _) = debug_gate(dir.path(), upstream.addr, "");
    let log = stopped_log(gate);
    assert!(log.contains("server.public_url is not set"), "{log}");
}
