//! tachi-gate: a Pingora reverse proxy in front of a Tachi server that serves
//! Tachi's OAuth2 flow from its own store and checks API keys on all other
//! traffic. See README.md for the operator's view and SPEC.md for the contract.

pub mod admin;
pub mod api;
pub mod app;
pub mod body;
pub mod cli;
pub mod config;
pub mod gate;
pub mod head_check;
pub mod head_deadline;
pub mod import;
pub mod limits;
pub mod oauth;
pub mod proxy;
pub mod reply;
pub mod routes;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod views;
