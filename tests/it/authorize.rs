//! The standard authorization endpoint (RFC 6749 §4.1, RFC 7636, RFC 9207)
//! through real sockets, driven as an OAuth2 client library and a browser
//! would: the request built by the `oauth2` crate, the consent page's form
//! posted back, the code exchanged, and every error. (A real browser clicks
//! through the page in `browser.rs`.)

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde_json::{json, Value};

use crate::support::*;

/// A client that follows no redirects, to see where the gate sends the browser.
fn browserish() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden input `name` on a page.
pub fn hidden_input(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(html_unescape(&page[start..end]))
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// The query parameters of a `Location`.
fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A client registered at the gate, as an `oauth2` crate client.
struct Registered {
    id: String,
    secret: Option<String>,
    redirect: String,
}

impl Registered {
    fn library(
        &self,
        gate: &TestGate,
    ) -> oauth2::Client<
        oauth2::basic::BasicErrorResponse,
        oauth2::basic::BasicTokenResponse,
        oauth2::basic::BasicTokenIntrospectionResponse,
        oauth2::StandardRevocableToken,
        oauth2::basic::BasicRevocationErrorResponse,
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    > {
        let mut client = BasicClient::new(ClientId::new(self.id.clone()))
            .set_auth_uri(AuthUrl::new(gate.url("/api/v1/oauth/authorize")).unwrap())
            .set_token_uri(TokenUrl::new(gate.url("/api/v1/oauth/token")).unwrap())
            .set_redirect_uri(RedirectUrl::new(self.redirect.clone()).unwrap());
        if let Some(secret) = &self.secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        } else {
            client = client.set_auth_type(oauth2::AuthType::RequestBody);
        }
        client
    }
}

async fn register(gate: &TestGate, cookie: &str, public: bool, redirect: &str) -> Registered {
    let r = gate
        .post_as(
            &gate.url("/api/v1/clients/create"),
            cookie,
            json!({"name": "Score Hook <b>", "redirectUri": redirect, "public": public,
                   "permissions": ["submit_score", "manage_rivals"]}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true, "{v}");
    Registered {
        id: v["body"]["clientID"].as_str().unwrap().to_string(),
        secret: v["body"]["clientSecret"].as_str().map(str::to_string),
        redirect: redirect.to_string(),
    }
}

/// `GET url` as the browser holding `cookie`, following no redirect.
async fn visit(url: &str, cookie: &str) -> reqwest::Response {
    browserish()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// Loads the consent page for `url` as `cookie`'s browser; its HTML.
async fn consent_page(url: &str, cookie: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = visit(url, cookie).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// Posts the consent form of `page` with `decision`; the redirect's `Location`.
async fn answer(
    gate: &TestGate,
    page: &str,
    cookie: &str,
    decision: &str,
) -> (u16, Option<String>) {
    let mut form: Vec<(String, String)> = Vec::new();
    for name in [
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "consent_token",
    ] {
        if let Some(v) = hidden_input(page, name) {
            form.push((name.to_string(), v));
        }
    }
    form.push(("decision".into(), decision.into()));
    let r = browserish()
        .post(gate.url("/api/v1/oauth/authorize"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (status, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_flow_from_a_library_to_a_working_key() {
    let gate = TestGate::start("[server]\npublic_url = \"http://gate.example\"").await;
    let cookie = gate.session(21);
    let client = register(&gate, &gate.session(20), false, "https://app.example/cb").await;
    let library = client.library(&gate);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = library
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("submit_score".into()))
        .set_pkce_challenge(challenge)
        .url();

    let (status, headers, page) = consent_page(url.as_str(), &cookie).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(
        page.contains("Score Hook &lt;b&gt;"),
        "the client's name, escaped"
    );
    assert!(page.contains("Submit scores for you"));
    assert!(
        !page.contains("Add and remove your rivals"),
        "only the scope asked for"
    );
    assert!(page.contains("#21") && page.contains("#20"));

    let (status, location) = answer(&gate, &page, &cookie, "approve").await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    assert!(
        location.starts_with("https://app.example/cb?"),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query["state"], *state.secret());
    assert_eq!(query["iss"], "http://gate.example");

    let token = library
        .exchange_code(AuthorizationCode::new(query["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&browserish())
        .await
        .unwrap();
    let scopes: Vec<String> = token
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        scopes,
        ["submit_score"],
        "the key has the granted scope only"
    );
    let r = gate.get_with_key("/x", token.access_token().secret()).await;
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), ["21"]);
    assert_eq!(
        echoed_headers(&echo, "x-tachi-permissions"),
        ["submit_score"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_and_every_error_reach_the_right_party() {
    let gate = TestGate::start("").await;
    let cookie = gate.session(31);
    let client = register(&gate, &cookie, false, "https://app.example/cb").await;
    let base = gate.url("/api/v1/oauth/authorize");
    let with = |extra: &str| {
        format!(
            "{base}?response_type=code&client_id={}&state=s1{extra}",
            client.id
        )
    };

    // Denied: the client hears access_denied, with its state.
    let (_, _, page) = consent_page(&with(""), &cookie).await;
    let (status, location) = answer(&gate, &page, &cookie, "deny").await;
    assert_eq!(status, 303);
    let q = query_of(&location.unwrap());
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("access_denied", "s1")
    );
    assert!(q.contains_key("iss"));

    // Errors the client may hear: redirected, with error and state.
    let long = "a".repeat(43);
    for (query, error) in [
        (
            "response_type=token".to_string(),
            "unsupported_response_type",
        ),
        ("scope=submit_score".to_string(), "invalid_request"),
        (
            "response_type=code&scope=delete_score".to_string(),
            "invalid_scope",
        ),
        (
            "response_type=code&code_challenge=x&code_challenge_method=S256".to_string(),
            "invalid_request",
        ),
        (
            format!("response_type=code&code_challenge={long}&code_challenge_method=S512"),
            "invalid_request",
        ),
    ] {
        let url = format!("{base}?client_id={}&state=s1&{query}", client.id);
        let r = visit(&url, &cookie).await;
        assert_eq!(r.status(), 303, "{query}");
        let q = query_of(r.headers()["location"].to_str().unwrap());
        assert_eq!(
            (q["error"].as_str(), q["state"].as_str()),
            (error, "s1"),
            "{query}"
        );
    }
    // Errors about the client or its redirect URI: a page, never a redirect.
    for url in [
        format!("{base}?response_type=code&client_id=CInope"),
        format!("{base}?response_type=code"),
        // A parameter given twice (RFC 6749 §3.1): which client is meant?
        format!(
            "{base}?response_type=code&client_id={}&client_id=CInope",
            client.id
        ),
        with("&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"),
    ] {
        let r = visit(&url, &cookie).await;
        assert_eq!(r.status(), 400, "{url}");
        assert!(!r.headers().contains_key("location"), "{url}");
        assert!(r.text().await.unwrap().contains("cannot continue"));
    }
    // No session: a page that sends the user to Tachi's login.
    let r = browserish().get(with("")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("href=\"/login\""));
    // A consent form is bound to its session and its parameters.
    let (_, _, page) = consent_page(&with(""), &cookie).await;
    let other = gate.session(32);
    let (status, _) = answer(&gate, &page, &other, "approve").await;
    assert_eq!(status, 400, "another session's form");
    let tampered = page.replace("name=\"state\" value=\"s1\"", "name=\"state\" value=\"s2\"");
    let (status, _) = answer(&gate, &tampered, &cookie, "approve").await;
    assert_eq!(status, 400, "changed parameters");
    let (status, _) = answer(&gate, &page, &cookie, "approve").await;
    assert_eq!(status, 303, "the untouched form still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_client_uses_pkce_and_its_id_alone() {
    let gate = TestGate::start("").await;
    let cookie = gate.session(41);
    let client = register(&gate, &cookie, true, "tachi-hook:done").await;
    assert_eq!(client.secret, None, "a public client has no secret");
    let library = client.library(&gate);

    // Without PKCE S256 it is told invalid_request.
    let (plain_url, _) = library.authorize_url(CsrfToken::new_random).url();
    let r = visit(plain_url.as_str(), &cookie).await;
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = library
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let (_, _, page) = consent_page(url.as_str(), &cookie).await;
    let (status, location) = answer(&gate, &page, &cookie, "approve").await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    assert!(location.starts_with("tachi-hook:done?"), "{location}");
    let code = query_of(&location)["code"].clone();

    // The library sends client_id alone (token_endpoint_auth_method none).
    let token = library
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.secret().clone()))
        .request_async(&browserish())
        .await
        .unwrap();
    assert_eq!(
        gate.get_with_key("/x", token.access_token().secret())
            .await
            .status(),
        200
    );
    // Its ID alone may revoke its own keys, but not introspect any: anyone
    // can read a client ID (RFC 7662 §2.1 wants introspection authorised).
    let key = token.access_token().secret();
    let by_id = |endpoint: &str| {
        let r = gate
            .http
            .post(gate.url(endpoint))
            .form(&[("client_id", client.id.as_str()), ("token", key.as_str())]);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(by_id("/api/v1/oauth/introspect").await, 401);
    assert_eq!(by_id("/api/v1/oauth/revoke").await, 200);
    assert_eq!(gate.get_with_key("/x", key).await.status(), 401);
    // A confidential client cannot do the same.
    let confidential = register(&gate, &cookie, false, "https://app.example/cb").await;
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", &confidential.id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_uri_sent_at_authorization_is_needed_at_the_token_endpoint() {
    let gate = TestGate::start("").await;
    let cookie = gate.session(51);
    let client = register(&gate, &cookie, false, "https://app.example/cb").await;
    let url = format!(
        "{}?response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
        gate.url("/api/v1/oauth/authorize"),
        client.id
    );
    let (_, _, page) = consent_page(&url, &cookie).await;
    let (_, location) = answer(&gate, &page, &cookie, "approve").await;
    let code = query_of(&location.unwrap())["code"].clone();
    let secret = client.secret.clone().unwrap();
    let exchange = |redirect: Option<&str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
        ];
        if let Some(r) = redirect {
            form.push(("redirect_uri", r.to_string()));
        }
        let request = gate
            .http
            .post(gate.url("/api/v1/oauth/token"))
            .basic_auth(&client.id, Some(&secret))
            .form(&form);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = exchange(None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, v) = exchange(Some("https://app.example/other")).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) = exchange(Some("https://app.example/cb")).await;
    assert_eq!(status, 200);
}
