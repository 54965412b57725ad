//! The integration tests: the real gate on loopback ports, in front of a
//! mock Tachi, each test with its own store, driven by real HTTP clients.
//! One binary with a module per area, so the suite links once; the harness
//! is in [`support`].

mod support;

mod admin;
mod authorize;
mod bad_input;
mod browser;
mod clients;
mod concurrency;
mod crash;
mod gate;
mod hardening;
mod hostile;
mod identity;
mod lifecycle;
mod metrics;
mod oauth;
mod operations;
mod postgres;
mod process;
mod properties;
mod tachi_compat;
mod tls;
