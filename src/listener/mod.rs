//! What happens on a public connection before Pingora's HTTP session sees a
//! request: each HTTP/1 request head must arrive within a deadline
//! ([`deadline`]), and a head Pingora's parser would refuse with a bare 400
//! is answered in JSON instead ([`head_check`]).

pub mod deadline;
pub mod head_check;
pub mod proxy_protocol;
