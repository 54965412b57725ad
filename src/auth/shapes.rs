//! The shape of a refusal on paths whose clients read another one: Tachi's
//! score hooks (IR routes) do not all read `description`.
//!
//! | path            | refusals of credentials                                   |
//! |-----------------|-----------------------------------------------------------|
//! | `/ir/fervidex`, `/ir/kshook` | the message under `error`, not `description` (Tachi's `SetFervidexStyleRequestPermissions`) |
//! | `/ir/usc`       | HTTP 200 with `{"statusCode": 40 or 41, "description"}`, as Tachi's USC router answers |
//! | other `/ir`     | the usual shape; a guest is told "This endpoint requires authentication." (Tachi's `RequireNotGuest`) |
//!
//! A missing permission keeps the usual 403 with `description` everywhere,
//! as Tachi's `RequirePermissions` gives it. Elsewhere every refusal is
//! [`Rejection::reply`] unchanged.

use serde_json::json;

use super::Rejection;
use crate::http::path::covers;
use crate::http::reply::Reply;

/// Which clients read a path's refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"success": false, "error": …}`.
    ErrorKey,
    /// USC's own status codes in a 200.
    Usc,
    /// Tachi's envelope, with the IR routes' words for a guest.
    Ir,
}

/// First match wins.
const SHAPES: [(&str, Shape); 4] = [
    ("/ir/fervidex", Shape::ErrorKey),
    ("/ir/kshook", Shape::ErrorKey),
    ("/ir/usc", Shape::Usc),
    ("/ir", Shape::Ir),
];

const NEEDS_AUTHENTICATION: &str = "This endpoint requires authentication.";

/// The answer to `rejection` for a request to `path` (canonical).
pub fn reply(rejection: &Rejection, path: &str) -> Reply {
    let shape = SHAPES
        .iter()
        .find(|(prefix, _)| covers(prefix, path))
        .map(|(_, shape)| *shape);
    let credentials = matches!(
        rejection,
        Rejection::WrongScheme
            | Rejection::EmptyToken
            | Rejection::UnknownKey
            | Rejection::NotAuthorised
    );
    match shape {
        Some(Shape::Usc) if credentials => usc(rejection),
        Some(Shape::ErrorKey) if credentials => {
            let mut reply = tachi_ir(rejection);
            if let Some(message) = reply.envelope.remove("description") {
                reply.envelope.insert("error".into(), message);
            }
            reply
        }
        Some(_) => tachi_ir(rejection),
        None => rejection.reply(),
    }
}

/// The usual answer, with the IR routes' words for a guest.
fn tachi_ir(rejection: &Rejection) -> Reply {
    match rejection {
        Rejection::NotAuthorised => Reply::failure(401, NEEDS_AUTHENTICATION).header(
            "WWW-Authenticate",
            format!("Bearer realm=\"{}\"", super::REALM),
        ),
        other => other.reply(),
    }
}

/// USC's answers (Tachi's `ValidateUSCRequest`): 40 for a missing or
/// malformed header, 41 for a key nobody issued, both with HTTP 200.
fn usc(rejection: &Rejection) -> Reply {
    let (code, description) = match rejection {
        Rejection::NotAuthorised => (40, "No auth token provided."),
        Rejection::WrongScheme => (40, "Invalid Authorization Header. Expected Bearer <token>"),
        _ => (41, "Unauthorized."),
    };
    Reply::plain(200, json!({"statusCode": code, "description": description}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hook_reads_its_own_shape() {
        let r = reply(&Rejection::UnknownKey, "/ir/fervidex/score/submit");
        assert_eq!(r.status, 401);
        assert!(r.envelope.get("description").is_none());
        assert_eq!(
            r.envelope["error"],
            "The provided API token does not correspond with any key in the database."
        );
        let r = reply(&Rejection::NotAuthorised, "/IR/KSHOOK/sv6c/score/save");
        assert_eq!(r.envelope["error"], NEEDS_AUTHENTICATION);

        let r = reply(&Rejection::UnknownKey, "/ir/usc/Keyboard/scores");
        assert_eq!(r.status, 200);
        assert_eq!(r.envelope["statusCode"], 41);
        let r = reply(&Rejection::NotAuthorised, "/ir/usc/Controller");
        assert_eq!(
            (r.envelope["statusCode"].clone(), r.status),
            (json!(40), 200)
        );

        let r = reply(&Rejection::NotAuthorised, "/ir/direct-manual/import");
        assert_eq!(r.description(), NEEDS_AUTHENTICATION);
        let r = reply(&Rejection::NotAuthorised, "/api/v1/x");
        assert_eq!(
            r.description(),
            "You are not authorised to perform this action."
        );
    }

    #[test]
    fn missing_permissions_keep_their_403_everywhere() {
        let missing = Rejection::MissingPermissions(vec!["submit_score".into()]);
        for path in ["/ir/usc/Keyboard/scores", "/ir/fervidex/x", "/api/v1/x"] {
            let r = reply(&missing, path);
            assert_eq!(r.status, 403, "{path}");
            assert!(r.description().contains("submit_score"), "{path}");
        }
    }
}
