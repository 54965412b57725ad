//! Builds the Pingora server: the gate's proxy service and its background
//! tasks, on a store opened here. `main.rs` and the tests both start the gate
//! through [`Gate::build`], so the tests run exactly what ships.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService, GenBackgroundService};
use pingora::services::listening::Service;

use crate::app::App;
use crate::config::{Config, StoreBackend, TlsConfig};
use crate::listener::deadline::HeadDeadline;
use crate::listener::proxy_protocol::ProxyProtocol;
use crate::ops::admin::listener::AdminService;
use crate::proxy::PublicProxy;
use crate::store::{now_ms, OpenError, PgOpenError, PgStore, SledStore, Store, StoreError};
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::http::v2::server::default_h2_options;

/// Why the gate could not start (or stop cleanly), as the one line printed
/// before exiting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error(transparent)]
    Postgres(#[from] PgOpenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `server.upgrade_sock` cannot be used for a graceful upgrade.
    #[error("server.upgrade_sock: {0}")]
    UpgradeSock(String),
    /// The TLS certificate or key cannot be used.
    #[error("server.tls: {0}")]
    Tls(String),
    /// The upstream settings (addresses, CA file) or the identity signing
    /// keys cannot be put to use.
    #[error("{0}")]
    Setup(String),
    #[error("closing the store failed: {0}")]
    Close(#[source] StoreError),
}

/// A gate ready to run.
pub struct Gate {
    server: Server,
    store: Arc<dyn Store>,
}

/// Removes codes whose time is up, so the store does not grow with every
/// abandoned authorisation. Expiry is also checked on every read.
struct CodeSweeper {
    store: Arc<dyn Store>,
    every: Duration,
}

#[async_trait]
impl BackgroundService for CodeSweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = shutdown.changed() => return,
            }
            match self.store.sweep_codes(now_ms()).await {
                Ok(0) => {}
                Ok(n) => log::debug!("swept {n} expired code(s)"),
                Err(e) => log::error!("sweeping expired codes failed: {e}"),
            }
        }
    }
}

/// Reads the identity key file again each second, so that a rotation made
/// outside this gate (`tachi-gate identity rotate`, or another gate sharing
/// the file) is signed with here within a second, without a restart.
struct KeyFileWatcher {
    app: Arc<App>,
}

#[async_trait]
impl BackgroundService for KeyFileWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(signer) = &self.app.assertions else {
            return;
        };
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            match signer.reload() {
                Ok(true) => {
                    failing = false;
                    log::info!(
                        "identity key file changed: signing with key {}",
                        signer.signing_kid()
                    );
                }
                Ok(false) => failing = false,
                // Said once per failure, not every second.
                Err(e) if !failing => {
                    failing = true;
                    log::error!("{e}");
                }
                Err(_) => {}
            }
        }
    }
}

fn path_str(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Loads the certificate and key once at start-up, so a bad pair is one clear
/// line here rather than a panic in Pingora's listener thread later.
fn check_certificate(tls: &TlsConfig) -> Result<(), StartError> {
    use pingora::tls as rustls;
    rustls::install_default_crypto_provider();
    let (cert, key) = (path_str(&tls.cert), path_str(&tls.key));
    let loaded = rustls::load_certs_and_key_files(&cert, &key)
        .map_err(|e| StartError::Tls(format!("cannot read {cert} or {key}: {e}")))?;
    let Some((certs, key_der)) = loaded else {
        return Err(StartError::Tls(format!(
            "{cert} has no certificate or {key} has no private key"
        )));
    };
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| StartError::Tls(format!("{cert} and {key} do not make a usable pair: {e}")))?;
    Ok(())
}

/// How long a new process in an upgrade waits for the old one to let go of
/// the store (the old one keeps serving for Pingora's 5 s hand-over, then
/// finishes its requests).
const UPGRADE_STORE_WAIT: Duration = Duration::from_secs(60);

/// How long an HTTP/2 connection with no open stream is kept: as long as an
/// idle HTTP/1 connection.
const H2_IDLE_TIMEOUT: Duration = Duration::from_secs(crate::listener::deadline::KEEPALIVE_SECS);

/// Whether the proxy's worker threads share their work (Tokio's multi-thread
/// scheduler, Pingora's default) rather than each running a single-thread
/// runtime of its own.
///
/// One thread has nobody to share with, and there the multi-thread scheduler
/// only costs: under load on one thread a single-thread runtime answered
/// more requests a second for less CPU, with the same instructions and
/// system calls a request.
/// With more threads, sharing is what keeps them evenly busy: Pingora hands
/// each new connection to a thread at random and, without stealing, it
/// stays there; two threads without stealing were no faster and had a worse
/// p99. The record is in `benches/README.md`.
pub fn shares_work(threads: usize) -> bool {
    threads > 1
}

/// Opens the configured store. A sled store is held by one process, so in
/// an upgrade this retries while the old process still holds it; a
/// database is shared, and opened at once.
pub fn open_store(config: &Config, upgrade: bool) -> Result<Arc<dyn Store>, StartError> {
    match &config.store_backend {
        StoreBackend::Sled => Ok(Arc::new(open_sled(&config.store_path, upgrade)?)),
        StoreBackend::Postgres(pg) => Ok(Arc::new(PgStore::open(pg)?)),
    }
}

fn open_sled(path: &std::path::Path, upgrade: bool) -> Result<SledStore, StartError> {
    let started = std::time::Instant::now();
    loop {
        match SledStore::open(path) {
            Ok(store) => return Ok(store),
            Err(OpenError::Locked { .. }) if upgrade && started.elapsed() < UPGRADE_STORE_WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Gate {
    /// Opens the store, checks the listen addresses can be bound, and builds
    /// the server. Nothing is served until [`Gate::run`].
    pub fn build(config: Config) -> Result<Gate, StartError> {
        Gate::build_with(config, false)
    }

    /// Builds the gate; with `upgrade`, as the new process of a graceful
    /// upgrade: it takes the listening sockets over from the running gate
    /// (which is then sent SIGQUIT), and opens the store once that gate has
    /// finished and let go of it.
    pub fn build_with(config: Config, upgrade: bool) -> Result<Gate, StartError> {
        let sock_dir = config
            .upgrade_sock
            .parent()
            .filter(|d| !d.as_os_str().is_empty());
        // A Unix socket path holds at most 107 bytes.
        if upgrade && config.upgrade_sock.as_os_str().len() > 107 {
            return Err(StartError::UpgradeSock(format!(
                "{} is longer than a Unix socket path may be",
                config.upgrade_sock.display()
            )));
        }
        if upgrade && !sock_dir.is_some_and(|d| d.is_dir()) {
            return Err(StartError::UpgradeSock(format!(
                "the directory of {} does not exist",
                config.upgrade_sock.display()
            )));
        }
        if !upgrade {
            // Pingora would only log a failed bind and serve nothing: check first.
            let tls_listen = config.tls.iter().flat_map(|t| t.listen.iter());
            for addr in config
                .listen
                .iter()
                .chain(tls_listen)
                .chain(&config.admin_listen)
            {
                std::net::TcpListener::bind(addr).map_err(|source| StartError::Listen {
                    addr: *addr,
                    source,
                })?;
            }
        }

        if let Some(tls) = &config.tls {
            check_certificate(tls)?;
        }
        let conf = ServerConf {
            // Extra CAs to trust for upstream TLS.
            ca_file: config
                .upstream
                .ca_file
                .as_ref()
                .map(|p| p.display().to_string()),
            threads: config.threads,
            work_stealing: shares_work(config.threads),
            // SIGTERM: stop accepting, give in-flight requests a moment, exit.
            grace_period_seconds: Some(1),
            graceful_shutdown_timeout_seconds: Some(1),
            // Connect failures move on to the next upstream this many times.
            max_retries: config.upstream.addrs.len().clamp(1, 4),
            upgrade_sock: config.upgrade_sock.display().to_string(),
            ..ServerConf::default()
        };
        let opt = Opt {
            upgrade,
            ..Opt::default()
        };
        let mut server = Server::new_with_opt_and_conf(opt, conf);
        // In an upgrade this waits for the running gate's sockets.
        server.bootstrap();
        let store = open_store(&config, upgrade)?;

        if config.public_url.is_none() {
            log::warn!(
                "server.public_url is not set: the OAuth metadata names its endpoints \
                 after each request's Host header; set it to the gate's public URL"
            );
        }
        let config = Arc::new(config);
        let app = Arc::new(App::new(config.clone(), store.clone()).map_err(StartError::Setup)?);
        let mut gate_proxy =
            pingora::proxy::http_proxy(&server.configuration, PublicProxy::new(app.clone()));
        // HTTP/2 connections bypass the HTTP/1 header deadline; without this an
        // idle one would be kept for ever.
        let mut options = HttpServerOptions::default();
        options.h2_idle_timeout = Some(H2_IDLE_TIMEOUT);
        gate_proxy.server_options = Some(options);
        // Each open stream of an HTTP/2 connection may hold an upstream
        // connection: bound how many one client connection can have.
        let mut h2 = default_h2_options();
        h2.max_concurrent_streams(config.h2_max_streams);
        gate_proxy.h2_options = Some(h2);
        let proxy_protocol = config.proxy_protocol.then(|| ProxyProtocol {
            trusted: config.trusted_proxies.clone(),
            within: config.header_timeout,
        });
        let mut proxy = Service::new(
            "tachi-gate".into(),
            HeadDeadline::new(gate_proxy, config.header_timeout, proxy_protocol.clone()),
        );
        if let Some(pp) = proxy_protocol {
            proxy.endpoints().set_pre_tls_callback(Arc::new(pp));
        }
        for addr in &config.listen {
            proxy.add_tcp(&addr.to_string());
        }
        if let Some(tls) = &config.tls {
            for addr in &tls.listen {
                let mut settings =
                    TlsSettings::intermediate(&path_str(&tls.cert), &path_str(&tls.key))
                        .map_err(|e| StartError::Tls(e.to_string()))?;
                // ALPN offers h2 first, then http/1.1.
                settings.enable_h2();
                proxy.add_tls_with_settings(&addr.to_string(), None, settings);
            }
        }
        server.add_service(proxy);
        if let Some(addr) = config.admin_listen {
            let mut admin = pingora::proxy::http_proxy_service_with_name(
                &server.configuration,
                AdminService::new(app.clone()),
                "tachi-gate admin",
            );
            admin.add_tcp(&addr.to_string());
            server.add_service(admin);
        }
        if config.upstream.health_check.is_some() {
            server.add_service(GenBackgroundService::new(
                "upstream health checks".into(),
                app.upstreams.balancer(),
            ));
        }
        if app.assertions.is_some() {
            server.add_service(background_service(
                "identity key file watcher",
                KeyFileWatcher { app: app.clone() },
            ));
        }
        let every = config.oauth.code_ttl.min(Duration::from_secs(60));
        server.add_service(background_service(
            "code sweeper",
            CodeSweeper {
                store: store.clone(),
                every,
            },
        ));
        Ok(Gate { server, store })
    }

    /// Serves until a shutdown signal, then makes the store durable and closes it.
    pub fn run(self, args: RunArgs) -> Result<(), StartError> {
        self.server.run(args);
        self.store.close().map_err(StartError::Close)
    }
}

#[cfg(test)]
mod tests {
    use super::shares_work;

    #[test]
    fn one_thread_runs_alone_and_more_share_their_work() {
        assert!(!shares_work(1));
        assert!(shares_work(2));
        assert!(shares_work(8));
    }
}
