//! The authorization endpoint's pages: consent, log in first, and errors.
//! Server-rendered HTML in Tachi's dark, plain look, readable on a phone,
//! with no script at all. Everything a client controls (its name, its
//! URIs) is escaped, and the pages refuse to be framed.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use super::authorize::AuthzRequest;
use crate::http::reply::Reply;

/// No scripts, no framing, no other origin's content; the style is inline.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The headers every page and redirect of the endpoint carries.
pub fn secured(reply: Reply) -> Reply {
    reply
        .header("Content-Security-Policy", CSP)
        .header("X-Frame-Options", "DENY")
        // Not no-referrer: with it a browser sends `Origin: null` on the
        // form's own POST, which the Origin check then (rightly) refuses.
        // Nothing leaves the site: the client's page gets no referrer.
        .header("Referrer-Policy", "same-origin")
        .header("X-Content-Type-Options", "nosniff")
        .header("Cache-Control", "no-store")
}

/// A player's words for each of Tachi's permissions.
fn describe(permission: &str) -> &str {
    match permission {
        "submit_score" => "Submit scores for you",
        "delete_score" => "Delete your scores",
        "customise_score" => "Edit the comments and highlights of your scores",
        "customise_session" => "Rename and edit your sessions",
        "customise_profile" => "Change your profile (picture, banner, about me)",
        "manage_rivals" => "Add and remove your rivals",
        "manage_targets" => "Set and remove your goals and quests",
        "manage_challenges" => "Create and manage your challenges",
        other => other,
    }
}

fn page(status: u16, title: &str, body: &str) -> Reply {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; background: #131313; color: #e6e6e6; font: 16px/1.5 system-ui, sans-serif; }}
main {{ max-width: 32rem; margin: 3rem auto; padding: 1.5rem; background: #1f1f1f; border-radius: 8px; }}
h1 {{ font-size: 1.4rem; margin-top: 0; }}
ul {{ padding-left: 1.2rem; }}
li {{ margin: .3rem 0; }}
.muted {{ color: #9a9a9a; font-size: .9rem; }}
.actions {{ display: flex; gap: .75rem; margin-top: 1.5rem; }}
button, a.button {{ flex: 1; padding: .7rem; font-size: 1rem; border: 0; border-radius: 6px; cursor: pointer; text-align: center; text-decoration: none; }}
.approve {{ background: #2b7cd3; color: #fff; }}
.deny {{ background: #3a3a3a; color: #e6e6e6; }}
</style>
</head>
<body><main>
{body}
</main></body>
</html>
"#,
        title = text(title)
    );
    secured(Reply::html(status, html))
}

/// A request the page cannot act on, said to the user (never to the client).
pub fn error(status: u16, message: &str) -> Reply {
    page(
        status,
        "Authorisation failed",
        &format!(
            "<h1>This authorisation request cannot continue</h1>\n<p>{}</p>\n<p class=\"muted\">Go back to the application and try again.</p>",
            text(message)
        ),
    )
}

/// Asks a visitor without a Tachi session to log in first.
pub fn log_in(login_url: &str) -> Reply {
    page(
        200,
        "Log in to authorise",
        &format!(
            "<h1>Log in to Tachi first</h1>\n<p>An application is asking to act for you. Log in, then come back to this page (reload it) to answer.</p>\n<div class=\"actions\"><a class=\"button approve\" id=\"log-in\" href=\"{}\">Log in</a></div>",
            attr(login_url)
        ),
    )
}

/// The consent page: who asks, for whom, for what; Approve or Deny.
pub fn consent(request: &AuthzRequest, user: u64, token: &str) -> Reply {
    let client = &request.client;
    let permissions: String = request
        .scope
        .iter()
        .map(|p| format!("<li>{}</li>\n", text(describe(p))))
        .collect();
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            attr(value)
        )
    };
    let mut fields = String::new();
    fields.push_str(&hidden("response_type", "code"));
    fields.push_str(&hidden("client_id", &client.client_id));
    if request.sent_redirect {
        fields.push_str(&hidden("redirect_uri", &request.redirect_uri));
    }
    if let Some(state) = &request.state {
        fields.push_str(&hidden("state", state));
    }
    fields.push_str(&hidden("scope", &request.scope.join(" ")));
    if let Some(c) = &request.challenge {
        let method = match c.method {
            crate::store::PkceMethod::S256 => "S256",
            crate::store::PkceMethod::Plain => "plain",
        };
        fields.push_str(&hidden("code_challenge", &c.value));
        fields.push_str(&hidden("code_challenge_method", method));
    }
    fields.push_str(&hidden("consent_token", token));
    page(
        200,
        &format!("Authorise {}", client.name),
        &format!(
            "<h1><span id=\"client-name\">{name}</span> wants to act for you</h1>\n\
             <p>It will act as Tachi user <strong>#{user}</strong>. It was registered by user #{author}.</p>\n\
             <p>It asks to:</p>\n<ul id=\"permissions\">\n{permissions}</ul>\n\
             <p class=\"muted\">Approving sends you back to {redirect}</p>\n\
             <form method=\"post\" action=\"authorize\">\n{fields}\
             <div class=\"actions\">\n\
             <button class=\"deny\" id=\"deny\" type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\n\
             <button class=\"approve\" id=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\n\
             </div>\n</form>",
            name = text(&client.name),
            author = client.author,
            redirect = text(&request.redirect_uri),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ClientRecord;

    #[test]
    fn what_a_client_controls_is_escaped() {
        let request = AuthzRequest {
            client: ClientRecord {
                client_id: "CI1".into(),
                secret_hash: String::new(),
                name: "<script>alert(1)</script>".into(),
                author: 2,
                requested_permissions: vec!["submit_score".into()],
                redirect_uri: Some("https://x.example/?a=\"><b>".into()),
                webhook_uri: None,
                api_key_template: None,
                api_key_filename: None,
                created_on: 0,
                public: false,
            },
            redirect_uri: "https://x.example/?a=\"><b>".into(),
            sent_redirect: true,
            state: Some("\"><img src=x>".into()),
            scope: vec!["submit_score".into()],
            challenge: None,
        };
        let reply = consent(&request, 7, "1.ab");
        let html = String::from_utf8(reply.body_bytes()).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x>"), "{html}");
        assert!(!html.contains("\"><b>"), "{html}");
        assert!(html.contains("Submit scores for you"));
        assert!(reply
            .headers
            .iter()
            .any(|(n, v)| *n == "X-Frame-Options" && v == "DENY"));
    }
}
