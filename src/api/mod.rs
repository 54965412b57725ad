//! The routes the gate answers itself, from its own store: Tachi's OAuth2
//! flow, its client and API-key routes, and the OAuth metadata. Each URL
//! has one file; [`routes`] is the table from URL to handler.
//!
//! | URL                                          | file                  |
//! |----------------------------------------------|-----------------------|
//! | `/api/v1/oauth/create-code`                  | `oauth/create_code.rs`|
//! | `/api/v1/oauth/token`                        | `oauth/token.rs`      |
//! | `/api/v1/oauth/revoke`                       | `oauth/revoke.rs`     |
//! | `/api/v1/oauth/introspect`                   | `oauth/introspect.rs` |
//! | `/.well-known/oauth-authorization-server`    | `oauth/metadata.rs`   |
//! | `/.well-known/jwks.json`                     | `jwks.rs`             |
//! | `/api/v1/clients…`                           | `clients.rs`          |
//! | `/api/v1/users/:userID/api-tokens…`          | `api_tokens.rs`       |
//!
//! Every route is described for its callers in docs/http-api.md.

pub mod api_tokens;
pub mod clients;
pub mod fields;
pub mod jwks;
pub mod oauth;
pub mod routes;
pub mod views;
