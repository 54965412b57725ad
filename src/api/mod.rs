//! Tachi's own management routes that the gate serves from its store.

pub mod clients;
pub mod tokens;
