//! HTTP plumbing shared by every listener: request bodies, the canonical
//! path, the `Authorization` header, the request handed to the gate's own
//! routes, and the one way an answer is shaped ([`reply::Reply`]) and
//! written ([`io`]).

pub mod authorization;
pub mod body;
pub mod cors;
pub mod forwarded;
pub mod io;
pub mod path;
pub mod reply;
pub mod request;
