//! A bare Pingora proxy that only forwards: the framework's own cost, for the
//! load benchmark (benches/load.sh) to compare tachi-gate against.
//!
//! `passthrough LISTEN UPSTREAM THREADS [READ_TIMEOUT_MS] [steal]`
//!
//! With `READ_TIMEOUT_MS` the proxy bounds each upstream read as the gate
//! does (`upstream.read_timeout_ms`), so that Pingora's own cost for that
//! timer can be told apart from the gate's work.
//!
//! It runs on the same kind of runtime as the gate with as many threads
//! (`tachi_gate::server::shares_work`): a single-thread one for one thread.
//! `steal` keeps Pingora's default, a work-stealing runtime at any count, to
//! measure what that choice is worth.

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
    let usage = || -> ! {
        eprintln!("usage: passthrough LISTEN UPSTREAM THREADS [READ_TIMEOUT_MS] [steal]");
        std::process::exit(2);
    };
    let (Some(listen), Some(upstream), Some(threads)) = (args.get(1), args.get(2), args.get(3))
    else {
        usage()
    };
    let (Ok(upstream), Ok(threads @ 1..)) = (upstream.parse(), threads.parse::<usize>()) else {
        usage()
    };
    let mut read_timeout = None;
    let mut steal = false;
    for arg in &args[4..] {
        match (arg.as_str(), arg.parse()) {
            ("steal", _) => steal = true,
            (_, Ok(ms)) if read_timeout.is_none() => {
                read_timeout = Some(std::time::Duration::from_millis(ms))
            }
            _ => usage(),
        }
    }
    let conf = ServerConf {
        threads,
        work_stealing: steal || tachi_gate::server::shares_work(threads),
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
