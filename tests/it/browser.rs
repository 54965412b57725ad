//! The consent page in a real browser: headless Chromium driven through
//! WebDriver (Debian's `chromium` and `chromium-driver`, which
//! `scripts/setup` installs). A user with a Tachi session loads the URL an
//! OAuth2 library built, sees the client and its permissions, clicks, and
//! lands on the client's redirect URI with a code (or a refusal) and the
//! state; the code then makes a key that works at the gate.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, RedirectUrl,
    TokenResponse, TokenUrl,
};
use serde_json::{json, Value};

use crate::support::*;

/// `chromedriver` on a free port, stopped when dropped.
struct Driver {
    child: GateBinary,
    addr: SocketAddr,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/setup installs it)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            wait_for_port(addr, Duration::from_secs(20)),
            "chromedriver did not start"
        );
        Driver {
            child: GateBinary(child),
            addr,
        }
    }

    /// A headless Chromium with its own empty profile, kept off the network.
    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=480,860",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // chromedriver is on loopback: plain HTTP, no TLS stack needed.
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://{}", self.addr))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Clicks the consent page's button `id`; the query of the page landed on.
async fn click_and_land(browser: &Client, id: &str) -> std::collections::HashMap<String, String> {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    landed(browser).await
}

/// The query parameters of the page the browser lands on after leaving the
/// authorization endpoint (a click does not wait for the navigation).
async fn landed(browser: &Client) -> std::collections::HashMap<String, String> {
    let mut url = browser.current_url().await.unwrap();
    for _ in 0..100 {
        if url.path() != "/api/v1/oauth/authorize" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        url = browser.current_url().await.unwrap();
    }
    assert_ne!(
        url.path(),
        "/api/v1/oauth/authorize",
        "still on the page: {}",
        browser.source().await.unwrap_or_default()
    );
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_approves_and_denies_in_a_real_browser() {
    let gate = TestGate::start("").await;
    let author = gate.session(60);
    // The client's redirect URI is the mock upstream, which echoes the query.
    let redirect = format!("http://{}/cb", gate.upstream.addr);
    let r = gate
        .post_as(
            &gate.url("/api/v1/clients/create"),
            &author,
            json!({"name": "Kamaitachi Uploader", "redirectUri": redirect,
                   "permissions": ["submit_score", "manage_rivals"]}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    let (id, secret) = (
        v["body"]["clientID"].as_str().unwrap().to_string(),
        v["body"]["clientSecret"].as_str().unwrap().to_string(),
    );
    let library = BasicClient::new(ClientId::new(id))
        .set_client_secret(ClientSecret::new(secret))
        .set_auth_uri(AuthUrl::new(gate.url("/api/v1/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(gate.url("/api/v1/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(redirect.clone()).unwrap());

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    // The user's Tachi session, as their browser holds it for the site.
    // (Set as Tachi's login sets it: by an answer through the gate.)
    let cookie = gate.session(61);
    browser
        .goto(&gate.url(&format!("/test/set-cookie?{cookie}")))
        .await
        .unwrap();

    // Approve.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = library
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    browser.goto(url.as_str()).await.unwrap();
    let shown = browser
        .find(Locator::Id("client-name"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, "Kamaitachi Uploader");
    let permissions = browser
        .find(Locator::Id("permissions"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        permissions.contains("Submit scores for you"),
        "{permissions}"
    );
    assert!(
        permissions.contains("Add and remove your rivals"),
        "{permissions}"
    );
    let png = browser.screenshot().await.unwrap();
    let shots = std::env::var("TACHI_GATE_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    std::fs::write(shots.join("consent-page.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let query = click_and_land(&browser, "approve").await;
    assert_eq!(browser.current_url().await.unwrap().path(), "/cb");
    assert_eq!(query["state"], *state.secret());
    let token = library
        .exchange_code(AuthorizationCode::new(query["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&reqwest::Client::builder().no_proxy().build().unwrap())
        .await
        .unwrap();
    let r = gate.get_with_key("/x", token.access_token().secret()).await;
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), ["61"]);

    // Deny.
    let (url, state) = library.authorize_url(CsrfToken::new_random).url();
    browser.goto(url.as_str()).await.unwrap();
    let query = click_and_land(&browser, "deny").await;
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["state"], *state.secret());
    assert!(!query.contains_key("code"));
    browser.close().await.unwrap();
}
