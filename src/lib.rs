//! tachi-gate: a Pingora reverse proxy in front of a Tachi server. It serves
//! Tachi's OAuth2 flow (clients, codes, API keys) from its own store and
//! checks API keys on all other traffic before forwarding it with identity
//! headers the upstream can trust.
//!
//! The modules follow the path a request takes (drawn in
//! docs/ARCHITECTURE.md); the request-independent layers at the bottom
//! import nothing above them.
//!
//! | module        | what it does                                                        |
//! |---------------|---------------------------------------------------------------------|
//! | [`server`]    | builds the Pingora server: listeners, services, background tasks     |
//! | [`listener`]  | each HTTP/1 head within a deadline; JSON for heads Pingora refuses   |
//! | [`proxy`]     | [`proxy::PublicProxy`]: the proxy phases, forwarding, failures       |
//! | [`auth`]      | who is calling and may they: keys, sessions, policies, identity      |
//! | [`assertion`] | the signed identity assertion for the upstream, and its keys         |
//! | [`api`]       | the routes the gate answers itself, one file per URL                 |
//! | [`ops`]       | the admin API and listener, operator commands, Tachi import          |
//! | [`app`]       | [`app::App`]: the shared state every handler gets                    |
//! | [`http`]      | bodies, the canonical path, `Authorization`, shaping and writing answers |
//! | [`limits`]    | per-IP rate limits                                                   |
//! | [`upstream`]  | the Tachi servers behind: health-checked round robin                 |
//! | [`store`]     | clients, codes and keys: the `Store` trait and its sled backend      |
//! | [`config`]    | the TOML file format and the validated [`config::Config`]            |
//! | [`telemetry`] | metrics and the audit log                                            |
//!
//! Names: "the gate" is the whole program ([`server::Gate`]);
//! [`proxy::PublicProxy`] is the service on the public listeners and
//! [`ops::admin::listener::AdminService`] the one on the admin listener;
//! [`auth::Auth::check`] is the per-request decision, configured by the
//! `[auth]` section; `gated` is the route class of forwarded traffic in
//! metrics and logs.

pub mod api;
pub mod app;
pub mod assertion;
pub mod auth;
pub mod config;
pub mod http;
pub mod limits;
pub mod listener;
pub mod ops;
pub mod proxy;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;
