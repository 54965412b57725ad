//! Everything a request handler needs, built once at start-up and shared by
//! the public listeners, the admin listener and the operator commands.

use std::sync::Arc;

use crate::assertion::Assertions;
use crate::auth::session::Sessions;
use crate::auth::Auth;
use crate::config::Config;
use crate::limits::Limits;
use crate::store::Store;
use crate::upstream::Upstreams;

/// The gate's shared state.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub sessions: Sessions,
    pub upstreams: Upstreams,
    pub limits: Limits,
    /// Signs the authorization endpoint's consent forms; new at each start,
    /// so a form outlives neither its ten minutes nor the process.
    pub consent_key: [u8; 32],
    /// Signs the identity assertions sent upstream; `None` unless
    /// `identity.mode = "jwt"`.
    pub assertions: Option<Assertions>,
}

impl App {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Result<App, String> {
        let upstreams = Upstreams::new(&config.upstream.addrs, config.upstream.health_check)
            .map_err(|e| format!("upstream.addrs: {e}"))?;
        Ok(App {
            sessions: Sessions::new(
                config.session.status_path.clone(),
                config.session.cache_ttl,
                &config.upstream,
            )?,
            upstreams,
            limits: Limits::new(config.limits.clone()),
            consent_key: rand::random(),
            assertions: Assertions::open(&config.identity, config.public_url.as_deref())?,
            config,
            store,
        })
    }

    /// What the auth check of one request consults.
    pub fn auth(&self) -> Auth<'_> {
        Auth {
            config: &self.config.auth,
            store: &*self.store,
            sessions: &self.sessions,
            upstreams: &self.upstreams,
        }
    }
}
