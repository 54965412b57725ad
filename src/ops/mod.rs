//! What operators do besides serving traffic: the admin API and its
//! listener ([`admin`]), the binary's operator commands ([`cli`]), and
//! reading an existing Tachi's clients and keys ([`import`]). See
//! docs/operations.md.

pub mod admin;
pub mod cli;
pub mod import;
