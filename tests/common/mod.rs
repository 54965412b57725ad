//! The test harness: a mock Tachi upstream and the real gate on free ports,
//! each test with its own temporary store.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use serde_json::{json, Value};
use tachi_gate::config::{Config, Overrides};
use tachi_gate::server::Gate;
use tokio::sync::watch;

/// A port nobody listens on right now, for a server the test starts later.
///
/// The port is released before the server binds it, so it must be one that
/// nothing else in the meantime is handed: not one from the kernel's
/// ephemeral range, which every `bind(":0")` and every outgoing connection
/// of the tests running alongside draws from. Ports are taken in turn
/// outside that range, from a start that differs between test processes, so
/// two tests of one process never get the same port and other processes
/// rarely do.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (low, high) = fixed_port_range();
    let span = u64::from(high - low);
    let start = u64::from(std::process::id()) % span * 7_919;
    for _ in 0..span {
        let turn = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + u16::try_from((start + turn) % span).expect("offset within span");
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The ports [`free_port`] hands out: the larger stretch of at least 1,000
/// ports outside the kernel's ephemeral range (Linux's setting, or its
/// default), not counting ports below 10000, which services tend to use.
fn fixed_port_range() -> (u16, u16) {
    const LOW: u16 = 10_000;
    let (first, last) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32_768, 60_999));
    let below = (LOW, first.max(LOW));
    let above = (last.saturating_add(1).max(LOW), u16::MAX);
    let widest = if below.1 - below.0 >= above.1 - above.0 {
        below
    } else {
        above
    };
    assert!(
        widest.1 - widest.0 >= 1_000,
        "the ephemeral port range {first}-{last} leaves no room for test ports"
    );
    widest
}

/// A mock Tachi server: `/api/v1/status` answers by cookie, everything else is
/// echoed back as JSON (method, path, query, headers, body).
pub struct MockTachi {
    pub addr: SocketAddr,
    sessions: Arc<Mutex<HashMap<String, u64>>>,
    pub status_calls: Arc<AtomicUsize>,
    /// The header names of the last `/api/v1/status` request, with values.
    pub last_status_headers: Arc<Mutex<Vec<(String, String)>>>,
    stop: watch::Sender<bool>,
}

impl MockTachi {
    pub async fn start() -> MockTachi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let status_calls = Arc::new(AtomicUsize::new(0));
        let last_status_headers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (stop, stopped) = watch::channel(false);
        let (s, c, l) = (
            sessions.clone(),
            status_calls.clone(),
            last_status_headers.clone(),
        );
        tokio::spawn(async move {
            let mut accept_stop = stopped.clone();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = accept_stop.wait_for(|s| *s) => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let (s, c, l) = (s.clone(), c.clone(), l.clone());
                let mut conn_stop = stopped.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, s.clone(), c.clone(), l.clone()));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    // Stopping the mock also drops its open connections, as a crash would.
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_stop.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        MockTachi {
            addr,
            sessions,
            status_calls,
            last_status_headers,
            stop,
        }
    }

    /// Makes `cookie` (the whole Cookie header value) a live session of `user`.
    pub fn add_session(&self, cookie: &str, user: u64) {
        self.sessions
            .lock()
            .unwrap()
            .insert(cookie.to_string(), user);
    }

    pub fn end_session(&self, cookie: &str) {
        self.sessions.lock().unwrap().remove(cookie);
    }

    /// Stops listening and drops every open connection.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for MockTachi {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    req: Request<Incoming>,
    sessions: Arc<Mutex<HashMap<String, u64>>>,
    status_calls: Arc<AtomicUsize>,
    last_status_headers: Arc<Mutex<Vec<(String, String)>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // A slow Tachi, for timeout tests.
    if parts.uri.path().starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let value = if parts.uri.path() == "/api/v1/status" {
        status_calls.fetch_add(1, Ordering::SeqCst);
        *last_status_headers.lock().unwrap() = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect();
        let cookie = parts
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let user = sessions.lock().unwrap().get(cookie).copied();
        json!({"success": true, "description": "Status", "body": {"whoami": user}})
    } else {
        json!({
            "echo": true,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": header_list(&parts.headers),
            "body": String::from_utf8_lossy(&body),
        })
    };
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(resp)
}

fn header_list(h: &hyper::HeaderMap) -> Value {
    Value::Array(
        h.iter()
            .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
            .collect(),
    )
}

/// All values of header `name` in an echoed request.
pub fn echoed_headers(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The value of a response header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Sends raw bytes and reads until the gate closes the connection (send
/// `Connection: close`). Status 0 means the connection closed with no answer.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    raw_request_within(addr, request, Duration::from_secs(15)).await
}

/// As [`raw_request`], giving up reading after `within` (a request the gate is
/// still waiting to receive the rest of gets status 0).
pub async fn raw_request_within(addr: SocketAddr, request: &[u8], within: Duration) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut buf)).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawResponse {
        status,
        head,
        body: buf[split..].to_vec(),
    }
}

struct TestSignal(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for TestSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::FastShutdown
    }
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        // Fine enough for the scale bench, which times start-up with it.
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The real gate, in-process, in front of a [`MockTachi`].
pub struct TestGate {
    pub addr: SocketAddr,
    pub upstream: MockTachi,
    pub others: Vec<MockTachi>,
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
    pub store_path: PathBuf,
}

impl TestGate {
    /// A gate with the built-in defaults but for `extra` TOML (which must not
    /// set listen addresses, upstreams or the store path) and for the admin
    /// listener, which is off unless `extra` sets `server.admin_listen`.
    pub async fn start(extra: &str) -> TestGate {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let mut g = TestGate::start_on(extra, &path, MockTachi::start().await).await;
        g._dir = Some(dir);
        g
    }

    /// A gate on a given store path and upstream.
    pub async fn start_on(extra: &str, store: &Path, upstream: MockTachi) -> TestGate {
        let addr = upstream.addr;
        TestGate::start_with_upstreams(extra, store, vec![upstream], &[addr]).await
    }

    /// A gate forwarding to `addrs`; the first of `mocks` becomes `upstream`
    /// (for sessions), the others are kept alive in `others`.
    pub async fn start_with_upstreams(
        extra: &str,
        store: &Path,
        mut mocks: Vec<MockTachi>,
        addrs: &[SocketAddr],
    ) -> TestGate {
        let upstream = mocks.remove(0);
        let port = free_port();
        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let overrides = Overrides {
            listen: Some(format!("127.0.0.1:{port}")),
            upstream: Some(list.join(",")),
            data: Some(store.to_path_buf()),
        };
        let mut config = Config::from_toml(extra, &overrides, None).expect("test config");
        // The admin listener is off unless asked for: its default address is
        // one fixed port, which gates started side by side would contend for.
        if !extra.contains("admin_listen") {
            config.admin_listen = None;
        }
        let addr = config.listen[0];
        let gate = Gate::build(config).expect("gate builds");
        let (stop, rx) = watch::channel(false);
        let thread = std::thread::spawn(move || {
            gate.run(RunArgs {
                shutdown_signal: Box::new(TestSignal(rx)),
            })
            .expect("gate stops cleanly");
        });
        assert!(
            tokio::task::spawn_blocking(move || wait_for_port(addr, Duration::from_secs(10)))
                .await
                .unwrap(),
            "gate did not start listening"
        );
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        TestGate {
            addr,
            upstream,
            others: mocks,
            http,
            stop,
            thread: Some(thread),
            _dir: None,
            store_path: store.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the gate and waits until its store is closed.
    pub fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// GET `path` with no credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// GET `path` with a Bearer key.
    pub async fn get_with_key(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// A request without a body, as the holder of the session `cookie`.
    pub async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    /// POST a JSON body to a full URL as a session.
    pub async fn post_as(&self, url: &str, cookie: &str, body: Value) -> reqwest::Response {
        self.http
            .post(url)
            .header("cookie", cookie)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A session cookie for `user`, known to the mock upstream.
    pub fn session(&self, user: u64) -> String {
        let cookie = format!("connect.sid=s{user}-{}", tachi_gate::store::random_hex(8));
        self.upstream.add_session(&cookie, user);
        cookie
    }

    /// Creates a client as `cookie`'s user; returns (clientID, clientSecret).
    pub async fn create_client(
        &self,
        cookie: &str,
        redirect: &str,
        perms: &[&str],
    ) -> (String, String) {
        let resp = self
            .http
            .post(self.url("/api/v1/clients/create"))
            .header("cookie", cookie)
            .json(&json!({"name": "Epic Games", "redirectUri": redirect, "permissions": perms}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        (
            v["body"]["clientID"].as_str().unwrap().to_string(),
            v["body"]["clientSecret"].as_str().unwrap().to_string(),
        )
    }

    /// Creates a code as `cookie`'s user with extra JSON parameters.
    pub async fn create_code(&self, cookie: &str, params: Value) -> String {
        let resp = self
            .http
            .post(self.url("/api/v1/oauth/create-code"))
            .header("cookie", cookie)
            .json(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        v["body"]["code"].as_str().unwrap().to_string()
    }

    /// A token request in Tachi's JSON style; returns (status, body).
    pub async fn token_json(&self, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url("/api/v1/oauth/token"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Runs the whole flow once for `user`; returns (key, clientID, clientSecret).
    pub async fn issue_key(&self, user: u64, perms: &[&str]) -> (String, String, String) {
        let cookie = self.session(user);
        let (id, secret) = self
            .create_client(&cookie, "https://example.com/cb", perms)
            .await;
        let code = self.create_code(&cookie, json!({})).await;
        let (status, body) = self
            .token_json(json!({
                "client_id": id, "client_secret": secret, "grant_type": "authorization_code",
                "redirect_uri": "https://example.com/cb", "code": code
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        (
            body["body"]["token"].as_str().unwrap().to_string(),
            id,
            secret,
        )
    }
}

impl Drop for TestGate {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A gate with its admin listener on; (gate, admin base URL).
pub async fn gate_with_admin(extra: &str) -> (TestGate, String) {
    let port = free_port();
    let gate = TestGate::start(&format!(
        "[server]\nadmin_listen = \"127.0.0.1:{port}\"\n{extra}"
    ))
    .await;
    assert!(wait_for_port(
        format!("127.0.0.1:{port}").parse().unwrap(),
        std::time::Duration::from_secs(10)
    ));
    (gate, format!("http://127.0.0.1:{port}"))
}

/// The value of one sample line in Prometheus text (0 when absent).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub async fn scrape(gate: &TestGate, base: &str) -> String {
    let r = gate
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    r.text().await.unwrap()
}

/// Reads one HTTP/1.1 answer with a Content-Length from a kept-alive socket.
pub async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[..end + 4 + len]).to_string();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `GET /x` `times` times on a kept-alive connection, expecting a 200
/// each time.
pub async fn get_kept_alive(s: &mut tokio::net::TcpStream, times: usize) {
    use tokio::io::AsyncWriteExt;
    for _ in 0..times {
        s.write_all(b"GET /x HTTP/1.1\r\nHost: gate\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

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
