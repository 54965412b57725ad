//! The gate under test: the real Pingora server, built by the same function
//! as the binary, run in-process on a free port in front of a [`MockTachi`],
//! with a fresh temporary store; and helpers that drive it as a user would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use serde_json::{json, Value};
use tachi_gate::config::{Config, Overrides};
use tachi_gate::server::Gate;
use tokio::sync::watch;

use super::mock_tachi::MockTachi;
use super::ports::{free_port, wait_for_port};

struct TestSignal(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for TestSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::FastShutdown
    }
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
        mocks: Vec<MockTachi>,
        addrs: &[SocketAddr],
    ) -> TestGate {
        TestGate::launch(extra, store, mocks, addrs, "127.0.0.1").await
    }

    /// A gate listening on `[::]` (IPv4 clients arrive as `::ffff:a.b.c.d`),
    /// reached at 127.0.0.1.
    pub async fn start_dual_stack(extra: &str) -> TestGate {
        let dir = tempfile::tempdir().unwrap();
        let upstream = MockTachi::start().await;
        let addrs = [upstream.addr];
        let store = dir.path().join("store");
        let mut g = TestGate::launch(extra, &store, vec![upstream], &addrs, "[::]").await;
        g._dir = Some(dir);
        g
    }

    async fn launch(
        extra: &str,
        store: &Path,
        mut mocks: Vec<MockTachi>,
        addrs: &[SocketAddr],
        host: &str,
    ) -> TestGate {
        let upstream = mocks.remove(0);
        let port = free_port();
        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let overrides = Overrides {
            listen: Some(format!("{host}:{port}")),
            upstream: Some(list.join(",")),
            data: Some(store.to_path_buf()),
        };
        let mut config = Config::from_toml(extra, &overrides, None).expect("test config");
        // The admin listener is off unless asked for: its default address is
        // one fixed port, which gates started side by side would contend for.
        if !extra.contains("admin_listen") {
            config.admin_listen = None;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
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
