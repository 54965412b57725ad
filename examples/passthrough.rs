//! A bare Pingora proxy that only forwards: the framework's own cost, for the
//! load benchmark (benches/load.sh) to compare tachi-gate against.
//!
//! `passthrough LISTEN UPSTREAM THREADS [READ_TIMEOUT_MS]`
//!
//! With `READ_TIMEOUT_MS` the proxy bounds each upstream read as the gate
//! does (`upstream.read_timeout_ms`), so that Pingora's own cost for that
//! timer can be told apart from the gate's work.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// The same allocator as the gate's binary, so the comparison measures the
/// gate's work, not a difference in malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Passthrough {
    upstream: std::net::SocketAddr,
    read_timeout: Option<std::time::Duration>,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.read_timeout = self.read_timeout;
        Ok(Box::new(peer))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream), Some(threads)) = (args.get(1), args.get(2), args.get(3))
    else {
        eprintln!("usage: passthrough LISTEN UPSTREAM THREADS [READ_TIMEOUT_MS]");
        std::process::exit(2);
    };
    let read_timeout = args
        .get(4)
        .map(|ms| ms.parse().map(std::time::Duration::from_millis));
    let (Ok(upstream), Ok(threads), Ok(read_timeout)) =
        (upstream.parse(), threads.parse(), read_timeout.transpose())
    else {
        eprintln!("passthrough: UPSTREAM must be host:port, THREADS and READ_TIMEOUT_MS numbers");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream,
            read_timeout,
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
