//! Gates on a PostgreSQL store: a schema of its own per test (dropped after)
//! on the server `TACHI_GATE_TEST_POSTGRES_URL` names (default: the local
//! one), gates in-process or as processes on it, and a TCP proxy in front of
//! the database that a test can cut.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::binary::GateBinary;
use super::gate::TestGate;
use super::mock_tachi::MockTachi;
use super::ports::{free_port, wait_for_port};

/// The server the tests use.
pub fn server_url() -> String {
    std::env::var("TACHI_GATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs SQL on the test server as its administrator.
pub async fn admin_sql(sql: &str) -> Vec<tokio_postgres::SimpleQueryMessage> {
    let (client, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL server (TACHI_GATE_TEST_POSTGRES_URL) answers");
    tokio::spawn(connection);
    client.simple_query(sql).await.unwrap()
}

/// A schema of one test's own; its connections carry its name as their
/// `application_name`, so a test can end exactly its own.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub async fn new() -> PgSchema {
        let name = format!("tg_it_{}", tachi_gate::store::random_hex(6));
        admin_sql(&format!("CREATE SCHEMA {name}")).await;
        PgSchema { name }
    }

    /// A URL for gates on this schema, through `via` (a proxy) if given.
    pub fn url_via(&self, via: Option<SocketAddr>) -> String {
        let mut base = url::Url::parse(&server_url()).unwrap();
        if let Some(addr) = via {
            base.set_ip_host(addr.ip()).unwrap();
            base.set_port(Some(addr.port())).unwrap();
        }
        let base = base.to_string();
        let joiner = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{joiner}application_name={}&options=-c%20search_path%3D{}",
            self.name, self.name
        )
    }

    pub fn url(&self) -> String {
        self.url_via(None)
    }

    /// The `[store]` section for gates on this schema.
    pub fn store_toml(&self, via: Option<SocketAddr>, timeout_ms: u64) -> String {
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 8\ntimeout_ms = {timeout_ms}\n",
            self.url_via(via)
        )
    }

    /// Ends the connections of this test's gates that listen for
    /// revocations (their last statement was `LISTEN` or the listener's
    /// empty ping); how many.
    pub async fn terminate_listeners(&self) -> usize {
        let rows = admin_sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{}' AND (query = '' OR query LIKE 'LISTEN%')",
            self.name
        ))
        .await;
        rows.iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count()
    }

    /// Ends every connection of this test's gates (as an administrator
    /// would with `pg_terminate_backend`); how many.
    pub async fn terminate_connections(&self) -> usize {
        let rows = admin_sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{}'",
            self.name
        ))
        .await;
        rows.iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { admin_sql(&sql).await });
        })
        .join();
    }
}

/// Two in-process gates on one schema, each with its own mock upstream;
/// the same session cookies are known to both.
pub async fn two_gates(schema: &PgSchema, extra: &str) -> (TestGate, TestGate) {
    let conf = format!("{}{extra}", schema.store_toml(None, 2_000));
    let dir = tempfile::tempdir().unwrap();
    let a = TestGate::start_on(&conf, &dir.path().join("a"), MockTachi::start().await).await;
    let b = TestGate::start_on(&conf, &dir.path().join("b"), MockTachi::start().await).await;
    // The directories only hold the upgrade sockets; the gates keep theirs open.
    std::mem::forget(dir);
    (a, b)
}

/// A session cookie for `user` that both gates accept.
pub fn shared_session(a: &TestGate, b: &TestGate, user: u64) -> String {
    let cookie = a.session(user);
    b.upstream.add_session(&cookie, user);
    cookie
}

/// A gate process on a PostgreSQL store, with its admin listener.
pub struct PgGateProcess {
    pub child: GateBinary,
    pub base: String,
    pub admin: String,
}

pub const ADMIN_TOKEN: &str = "postgres-test-admin-token";

impl PgGateProcess {
    pub fn spawn(schema: &PgSchema, upstream: SocketAddr, dir: &Path) -> PgGateProcess {
        let (port, admin_port) = (free_port(), free_port());
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("gate.toml");
        std::fs::write(
            &conf,
            format!(
                "[server]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n[limits]\nenabled = false\n{}",
                schema.store_toml(None, 2_000)
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tachi-gate"))
            .arg("--config")
            .arg(&conf)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &upstream.to_string()])
            .arg("--data")
            .arg(dir)
            .env("RUST_LOG", "error")
            .env("TACHI_GATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            wait_for_port(addr, Duration::from_secs(20)),
            "gate process did not listen"
        );
        PgGateProcess {
            child: GateBinary(child),
            base: format!("http://{addr}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
        }
    }
}

/// How the proxy treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Forwards both ways.
    Open,
    /// Closes every connection and refuses new ones (the database is down).
    Cut,
    /// Keeps connections but passes nothing (a network that drops packets).
    Silent,
    /// Forwards on the connections it has, refuses new ones (a server at
    /// its connection limit).
    NoNew,
}

/// Waits until the line is as `wanted` says.
async fn until(state: &mut watch::Receiver<Line>, wanted: impl Fn(Line) -> bool) {
    let _ = state.wait_for(|l| wanted(*l)).await;
}

/// A TCP proxy in front of the test server, under the test's control.
pub struct CutProxy {
    pub addr: SocketAddr,
    line: watch::Sender<Line>,
}

impl CutProxy {
    pub async fn start() -> CutProxy {
        let server = url::Url::parse(&server_url()).unwrap();
        let target = format!(
            "{}:{}",
            server.host_str().unwrap_or("127.0.0.1"),
            server.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (line, watching) = watch::channel(Line::Open);
        let target = Arc::new(target);
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut state = watching.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let now = *state.borrow_and_update();
                    if now == Line::Cut || now == Line::NoNew {
                        return;
                    }
                    if now == Line::Silent {
                        // Holds the connection, passing nothing.
                        until(&mut state, |l| l != Line::Silent).await;
                        drop(inbound);
                        return;
                    }
                    let Ok(outbound) = TcpStream::connect(target.as_str()).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::join!(
                                tokio::io::copy(&mut ri, &mut wo),
                                tokio::io::copy(&mut ro, &mut wi)
                            )
                        } => {}
                        _ = until(&mut state, |l| l != Line::Open && l != Line::NoNew) => {
                            let now = *state.borrow();
                            if now == Line::Silent {
                                // Holds both sockets open, passing nothing.
                                until(&mut state, |l| l != Line::Silent).await;
                            }
                        }
                    }
                });
            }
        });
        CutProxy { addr, line }
    }

    pub fn set(&self, line: Line) {
        let _ = self.line.send(line);
    }
}
