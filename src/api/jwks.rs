//! `GET /.well-known/jwks.json`: the public keys that verify the gate's
//! identity assertions (RFC 7517), on the public and the admin listener.

use crate::app::App;
use crate::http::reply::Reply;

/// The published keys; 404 when the gate signs nothing (`identity.mode =
/// "headers"`).
///
/// @name GET /.well-known/jwks.json
pub fn jwks(app: &App) -> Reply {
    match &app.assertions {
        // Short-lived in caches: a rotation publishes a new key, and
        // verifiers that see an unknown `kid` fetch the set again anyway.
        Some(a) => Reply::plain(200, a.jwks()).header("Cache-Control", "public, max-age=60"),
        None => Reply::failure(
            404,
            "The gate signs no identity assertions (identity.mode is \"headers\"): there are no keys.",
        ),
    }
}
