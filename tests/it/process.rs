//! The binary as an operator runs it: durability across SIGKILL, clean stops
//! on SIGTERM/SIGINT, and one clear line for every start-up problem.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_tachi-gate");
const CB: &str = "https://example.com/cb";

/// A gate process; killed if the test ends without stopping it.
struct Proc {
    child: GateBinary,
    addr: std::net::SocketAddr,
}

impl Proc {
    fn spawn(store: &Path, upstream: std::net::SocketAddr, subcommand: bool) -> Proc {
        Proc::spawn_configured(store, upstream, subcommand, "warn", "")
    }

    /// `log` is the `RUST_LOG` filter; `server` is more of the `[server]`
    /// table, one key a line.
    fn spawn_configured(
        store: &Path,
        upstream: std::net::SocketAddr,
        subcommand: bool,
        log: &str,
        server: &str,
    ) -> Proc {
        let port = free_port();
        let dir = store.parent().unwrap();
        let conf = dir.join(format!("gate-{port}.toml"));
        std::fs::write(&conf, format!("[server]\nadmin_listen = \"\"\n{server}")).unwrap();
        let mut cmd = Command::new(BIN);
        if subcommand {
            cmd.arg("serve");
        }
        cmd.arg("--config")
            .arg(&conf)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(upstream.to_string())
            .arg("--data")
            .arg(store)
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            wait_for_port(addr, Duration::from_secs(20)),
            "gate process did not start"
        );
        Proc {
            child: GateBinary(child),
            addr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to exit; its exit code and how long that took.
    fn wait(&mut self, within: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gate did not exit within {within:?}");
    }
}

async fn post_json(
    http: &reqwest::Client,
    url: String,
    cookie: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap())
}

async fn status_with_key(http: &reqwest::Client, p: &Proc, key: &str) -> u16 {
    http.get(p.url("/api/v1/users/me"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let upstream = MockTachi::start().await;
    let cookie = "connect.sid=durable";
    upstream.add_session(cookie, 21);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let mut p = Proc::spawn(&store, upstream.addr, false);
    let (st, v) = post_json(
        &http,
        p.url("/api/v1/clients/create"),
        Some(cookie),
        json!({"name": "Durable", "redirectUri": CB, "permissions": ["submit_score"]}),
    )
    .await;
    assert_eq!(st, 200);
    let (id, secret) = (
        v["body"]["clientID"].as_str().unwrap().to_string(),
        v["body"]["clientSecret"].as_str().unwrap().to_string(),
    );
    let (st, v) = post_json(
        &http,
        p.url("/api/v1/clients/create"),
        Some(cookie),
        json!({"name": "Doomed", "redirectUri": CB, "permissions": ["submit_score"]}),
    )
    .await;
    assert_eq!(st, 200);
    let (doomed, doomed_secret) = (
        v["body"]["clientID"].as_str().unwrap().to_string(),
        v["body"]["clientSecret"].as_str().unwrap().to_string(),
    );

    let exchange = |client: String, secret: String| {
        let http = http.clone();
        let url = p.url("/api/v1/oauth/create-code");
        let token_url = p.url("/api/v1/oauth/token");
        async move {
            let (st, v) = post_json(&http, url, Some(cookie), json!({})).await;
            assert_eq!(st, 200);
            let code = v["body"]["code"].as_str().unwrap().to_string();
            let body = json!({"client_id": client, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code});
            let (st, v) = post_json(&http, token_url.clone(), None, body.clone()).await;
            assert_eq!(st, 200, "{v}");
            (
                v["body"]["token"].as_str().unwrap().to_string(),
                body,
                token_url,
            )
        }
    };
    let (kept_key, kept_exchange, token_url) = exchange(id.clone(), secret.clone()).await;
    let (replayed_key, replayed_exchange, _) = exchange(id.clone(), secret.clone()).await;
    let (doomed_key, _, _) = exchange(doomed.clone(), doomed_secret.clone()).await;
    // Acknowledged revocations: a replay, and a client deletion.
    let (st, _) = post_json(&http, token_url.clone(), None, replayed_exchange.clone()).await;
    assert_eq!(st, 404);
    let r = http
        .delete(p.url(&format!("/api/v1/clients/{doomed}")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A code created last, so the newest write of all is a code.
    let (st, v) = post_json(
        &http,
        p.url("/api/v1/oauth/create-code"),
        Some(cookie),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let last_code = v["body"]["code"].as_str().unwrap().to_string();

    // Kill at once. sled's timer flush is off in the gate, so only the group
    // commit before each answer can have put these writes on disk.
    p.signal(libc::SIGKILL);
    let (code, _) = p.wait(Duration::from_secs(5));
    assert_eq!(code, None, "killed by a signal");

    let p = Proc::spawn(&store, upstream.addr, true);
    assert_eq!(
        status_with_key(&http, &p, &kept_key).await,
        200,
        "an acknowledged key survives"
    );
    assert_eq!(
        status_with_key(&http, &p, &replayed_key).await,
        401,
        "an acknowledged revocation survives"
    );
    assert_eq!(
        status_with_key(&http, &p, &doomed_key).await,
        401,
        "a deleted client's keys stay deleted"
    );
    let r = http
        .get(p.url(&format!("/api/v1/clients/{doomed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let token_url = p.url("/api/v1/oauth/token");
    let (st, _) = post_json(&http, token_url.clone(), None, kept_exchange).await;
    assert_eq!(st, 404, "a consumed code stays consumed");
    let (st, v) = post_json(&http, token_url, None,
        json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": last_code})).await;
    assert_eq!(st, 200, "an acknowledged code survives: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_promptly_with_everything_on_disk() {
    let upstream = MockTachi::start().await;
    upstream.add_session("connect.sid=t", 3);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // One proxy thread runs a single-thread runtime, more a work-stealing one:
    // each signal stops both.
    let runs = [libc::SIGTERM, libc::SIGINT]
        .into_iter()
        .flat_map(|sig| [(sig, 1), (sig, 2)]);
    for (sig, threads) in runs {
        let server = format!("threads = {threads}\n");
        let mut p = Proc::spawn_configured(&store, upstream.addr, false, "warn", &server);
        let (st, _) = post_json(&http, p.url("/api/v1/clients/create"), Some("connect.sid=t"),
            json!({"name": format!("Client {sig} {threads}"), "redirectUri": CB, "permissions": ["submit_score"]})).await;
        assert_eq!(st, 200);
        p.signal(sig);
        let (code, took) = p.wait(Duration::from_secs(10));
        assert_eq!(code, Some(0), "signal {sig}, {threads} threads");
        assert!(
            took < Duration::from_secs(5),
            "signal {sig}, {threads} threads took {took:?}"
        );
    }
    let p = Proc::spawn(&store, upstream.addr, false);
    let r = http
        .get(p.url("/api/v1/clients"))
        .header("cookie", "connect.sid=t")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["body"].as_array().unwrap().len(), 4);
}

/// Runs the binary expecting it to refuse to start; its stderr.
fn refuses(args: &[&str], cwd: &Path) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{args:?}: the gate started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{args:?} exited 0");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{args:?}: one line, got: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_problems_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };

    let unknown = write(
        "unknown.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\nthreadz = 4\n",
    );
    let e = refuses(&["--config", &unknown, "--data", &store], d);
    assert!(e.contains("threadz") && e.contains("line 3"), "{e}");

    let bad_addr = write("addr.toml", "[upstream]\naddrs = [\"nowhere\"]\n");
    let e = refuses(&["--config", &bad_addr, "--data", &store], d);
    assert!(e.contains("upstream.addrs") && e.contains("nowhere"), "{e}");

    let bad_perm = write(
        "perm.toml",
        "[[gate.policy]]\npath_prefix = \"/ir/\"\nrequire = [\"submit_scores\"]\n",
    );
    let e = refuses(&["--config", &bad_perm, "--data", &store], d);
    assert!(e.contains("submit_scores"), "{e}");

    let e = refuses(
        &["--config", &d.join("missing.toml").display().to_string()],
        d,
    );
    assert!(e.contains("missing.toml"), "{e}");

    // A store path under a regular file cannot be created.
    let file = write("a-file", "");
    let e = refuses(
        &["--listen", &listen, "--data", &format!("{file}/store")],
        d,
    );
    assert!(e.contains("store"), "{e}");

    // TLS files that are missing, or are not a certificate and key.
    let no_cert = write(
        "tls-missing.toml",
        "[server.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
    );
    let e = refuses(&["--config", &no_cert, "--data", &store], d);
    assert!(e.contains("server.tls.cert"), "{e}");
    let junk = write("junk.pem", "not a certificate");
    let junk_tls = write("tls-junk.toml", &format!("[server]\nlisten = \"{listen}\"\nadmin_listen = \"\"\n[server.tls]\nlisten = \"127.0.0.1:{}\"\ncert = \"{junk}\"\nkey = \"{junk}\"\n", free_port()));
    let e = refuses(&["--config", &junk_tls, "--data", &store], d);
    assert!(e.contains("server.tls"), "{e}");

    // An upgrade whose hand-over socket cannot exist.
    let bad_sock = write(
        "sock.toml",
        "[server]\nadmin_listen = \"\"\nupgrade_sock = \"/nonexistent/dir/upgrade.sock\"\n",
    );
    let e = refuses(
        &[
            "serve",
            "--upgrade",
            "--config",
            &bad_sock,
            "--data",
            &store,
        ],
        d,
    );
    assert!(e.contains("upgrade_sock"), "{e}");

    // Signing keys that cannot be used: a key file that is not one.
    let keys = write("keys.json", "{\"keys\": \"none\"}");
    let jwt = write(
        "jwt.toml",
        &format!("[server]\nlisten = \"{listen}\"\nadmin_listen = \"\"\npublic_url = \"https://gate.example\"\n[identity]\nmode = \"jwt\"\nkey_file = \"{keys}\"\n"),
    );
    let e = refuses(&["--config", &jwt, "--data", &store], d);
    assert!(
        e.contains("identity.key_file") && e.contains("keys.json"),
        "{e}"
    );

    // A listen address already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let e = refuses(&["--listen", &taken_addr, "--data", &store], d);
    assert!(e.contains(&taken_addr), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_store_is_refused() {
    let upstream = MockTachi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let _first = Proc::spawn(&store, upstream.addr, false);
    let listen = format!("127.0.0.1:{}", free_port());
    let e = refuses(
        &["--listen", &listen, "--data", &store.display().to_string()],
        dir.path(),
    );
    assert!(e.contains("locked by another process"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_have_access_and_audit_lines_and_no_secrets() {
    let upstream = MockTachi::start().await;
    let cookie = "connect.sid=log-test-cookie-value";
    upstream.add_session(cookie, 31);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut p = Proc::spawn_configured(&store, upstream.addr, false, "info", "");

    let (_, v) = post_json(
        &http,
        p.url("/api/v1/clients/create"),
        Some(cookie),
        json!({"name": "Logged", "redirectUri": CB, "permissions": ["submit_score"]}),
    )
    .await;
    let (id, secret) = (
        v["body"]["clientID"].as_str().unwrap().to_string(),
        v["body"]["clientSecret"].as_str().unwrap().to_string(),
    );
    let (_, v) = post_json(
        &http,
        p.url("/api/v1/oauth/create-code"),
        Some(cookie),
        json!({}),
    )
    .await;
    let code = v["body"]["code"].as_str().unwrap().to_string();
    let (st, v) = post_json(&http, p.url(&format!("/api/v1/oauth/token?code={code}")), None,
        json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code})).await;
    assert_eq!(st, 200);
    let key = v["body"]["token"].as_str().unwrap().to_string();
    assert_eq!(status_with_key(&http, &p, &key).await, 200);
    let r = http
        .get(p.url(&format!("/api/v1/users/me?access_token={key}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Deleting by key value puts the key in the path.
    let r = http
        .delete(p.url(&format!("/api/v1/users/me/api-tokens/{key}")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status_with_key(&http, &p, "wrong-key-value").await, 401);

    p.signal(libc::SIGTERM);
    p.wait(Duration::from_secs(10));
    let mut log = String::new();
    p.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();

    for secret_value in [
        &secret,
        &code,
        &key,
        "log-test-cookie-value",
        "wrong-key-value",
    ] {
        assert!(
            !log.contains(secret_value),
            "{secret_value} appears in the log:\n{log}"
        );
    }
    assert!(
        log.contains("access") && log.contains("class=oauth") && log.contains("class=gated"),
        "{log}"
    );
    assert!(log.contains("user=31 client="), "{log}");
    assert!(log.contains("/api/v1/users/me/api-tokens/[token]"), "{log}");
    assert!(log.contains("code issued user=31"), "{log}");
    assert!(log.contains("key issued token_id="), "{log}");
    assert!(log.contains("keys revoked count=1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_keeps_answering_requests() {
    let upstream = MockTachi::start().await;
    let cookie = "connect.sid=upgrade";
    upstream.add_session(cookie, 9);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let conf = dir.path().join("gate.toml");
    let sock = dir.path().join("upgrade.sock");
    // No rate limits: the load below is one busy client.
    std::fs::write(
        &conf,
        format!(
            // A load of one user's exchanges: no rate limits, no key cap.
            "[server]\nadmin_listen = \"\"\nupgrade_sock = \"{}\"\n[limits]\nenabled = false\n\
             [oauth]\nkeys_per_user = 1000000\n",
            sock.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = |upgrade: bool| {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        if upgrade {
            cmd.arg("--upgrade");
        }
        cmd.arg("--config")
            .arg(&conf)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--upstream")
            .arg(upstream.addr.to_string())
            .arg("--data")
            .arg(&store)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    let mut old = Proc {
        child: GateBinary(start(false)),
        addr,
    };
    assert!(wait_for_port(addr, Duration::from_secs(20)));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let (_, v) = post_json(
        &http,
        old.url("/api/v1/clients/create"),
        Some(cookie),
        json!({"name": "Upgrade", "redirectUri": CB, "permissions": ["submit_score"]}),
    )
    .await;
    let (id, secret) = (
        v["body"]["clientID"].as_str().unwrap().to_string(),
        v["body"]["clientSecret"].as_str().unwrap().to_string(),
    );

    // Load throughout: key checks and token exchanges (store reads and writes),
    // each on a fresh connection, as clients arriving during the upgrade would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, base, id, secret) = (
            stop.clone(),
            format!("http://{addr}"),
            id.clone(),
            secret.clone(),
        );
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let (mut answered, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let code = match http
                    .post(format!("{base}/api/v1/oauth/create-code"))
                    .header("cookie", cookie)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => r.json::<Value>().await.unwrap()["body"]["code"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    other => {
                        failures.push(format!("create-code: {other:?}"));
                        continue;
                    }
                };
                let body = json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code});
                match http
                    .post(format!("{base}/api/v1/oauth/token"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let key = r.json::<Value>().await.unwrap()["body"]["token"]
                            .as_str()
                            .unwrap()
                            .to_string();
                        match http.get(format!("{base}/x")).bearer_auth(&key).send().await {
                            Ok(r) if r.status() == 200 => answered += 1,
                            other => failures.push(format!("gated: {other:?}")),
                        }
                    }
                    other => failures.push(format!("token: {other:?}")),
                }
            }
            (answered, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Killed on drop, should an assertion below fail.
    let new = Proc {
        child: GateBinary(start(true)),
        addr,
    };
    // The new process waits on the upgrade socket; hand over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal(libc::SIGQUIT);
    let (code, took) = old.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "the old gate exits cleanly");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (answered, failures) = load.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(answered > 20, "only {answered} flows completed");
    // The new gate carries on alone with everything the old one acknowledged.
    let (st, _) = post_json(
        &http,
        new.url("/api/v1/oauth/create-code"),
        Some(cookie),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "the old gate took {took:?} to hand over");
}

/// Once shutdown begins, an idle kept-alive connection is closed at once:
/// not held for the second the process keeps running, nor until its
/// keep-alive time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_when_shutdown_begins() {
    use tokio::io::AsyncReadExt;
    let upstream = MockTachi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(&dir.path().join("store"), upstream.addr, false);
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    get_kept_alive(&mut s, 2).await;
    let began = Instant::now();
    p.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    let closed_after = began.elapsed();
    assert!(matches!(read, Ok(Ok(0))), "{read:?} {rest:?}");
    assert!(
        closed_after < Duration::from_millis(800),
        "closed after {closed_after:?}"
    );
    let (code, _) = p.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

/// A connection accepted just before shutdown, whose request had not yet
/// arrived, still gets its answer (FIRST_REQUEST_GRACE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_before_shutdown_still_gets_its_answer() {
    use std::io::Write;
    let upstream = MockTachi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(&dir.path().join("store"), upstream.addr, false);
    // Connected, but its request not yet sent when shutdown begins.
    let mut early = std::net::TcpStream::connect(p.addr).unwrap();
    // Connections are accepted in turn: once a later one has been answered,
    // the gate has accepted `early` too.
    let later = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(later.get(p.url("/x")).send().await.unwrap().status(), 200);
    p.signal(libc::SIGTERM);
    // Shutdown has begun once the gate stops accepting.
    let began = Instant::now();
    while std::net::TcpStream::connect(p.addr).is_ok() {
        assert!(began.elapsed() < Duration::from_secs(5), "still accepting");
        std::thread::sleep(Duration::from_millis(5));
    }
    early
        .write_all(b"GET /x HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n")
        .unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let read = early.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{read:?}: {answer:?}");
    let (code, _) = p.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}
