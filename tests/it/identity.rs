//! The signed identity assertion (`[identity] mode = "jwt"`) through real
//! sockets: what the upstream receives, verified as an upstream would
//! against the published keys; the assertion kept per key and signed
//! again at half its life; rotation with the old key still published; and
//! `headers` mode, which signs nothing.

use crate::support::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use std::time::Duration;

const ISSUER: &str = "https://gate.example";
const ADMIN_TOKEN: &str = "identity-admin-token";

/// A gate with its admin listener and API on; (gate, admin base URL).
async fn with_admin(extra: &str) -> (TestGate, String) {
    gate_with_admin(&format!("admin_token = \"{ADMIN_TOKEN}\"\n{extra}")).await
}

/// A gate in `jwt` mode (assertions valid a minute) with its admin API on.
async fn jwt_gate_with_admin() -> (TestGate, String) {
    with_admin(&format!("public_url = \"{ISSUER}\"\n{}", jwt_config(60))).await
}

/// `POST {admin}{path}` with the admin token.
async fn admin_post(gate: &TestGate, admin: &str, path: &str) -> reqwest::Response {
    gate.http
        .post(format!("{admin}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

fn jwt_config(ttl_secs: u64) -> String {
    format!(
        "[identity]\nmode = \"jwt\"\nttl_secs = {ttl_secs}\n\
         [[auth.policy]]\npath_prefix = \"/ir/\"\nrequire = [\"submit_score\"]\n"
    )
}

/// `[server]` with the public URL the assertions name as their issuer.
fn server(extra: &str) -> String {
    format!("[server]\npublic_url = \"{ISSUER}\"\n{extra}")
}

/// The assertion headers the upstream received for a request with these
/// extra header lines (raw, so that spoofed spellings arrive as sent).
async fn assertions_upstream(gate: &TestGate, headers: &str) -> Vec<String> {
    let req =
        format!("GET /api/v1/users/1 HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n");
    let r = raw_request(gate.addr, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let echo = r.json();
    let mut found = echoed_headers(&echo, "x-tachi-identity");
    found.extend(echoed_headers(&echo, "x_tachi_identity"));
    found
}

async fn jwks(gate: &TestGate, base: &str) -> JwkSet {
    let r = gate
        .http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=60"
    );
    r.json().await.unwrap()
}

fn kid(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap()
}

/// The assertion's claims, verified as an upstream would: signature by a
/// published key (EdDSA only), issuer, audience and expiry.
fn verify(set: &JwkSet, jwt: &str) -> Value {
    let jwk = set.find(&kid(jwt)).expect("the signing key is published");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&["tachi"]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_request_carries_an_assertion_the_upstream_can_verify() {
    let (gate, admin) = jwt_gate_with_admin().await;
    let (key, client, _) = gate.issue_key(4, &["submit_score"]).await;
    let spoofed = "X-Tachi-Identity: forged\r\nx_tachi_identity: forged\r\n";

    let sent =
        assertions_upstream(&gate, &format!("{spoofed}Authorization: Bearer {key}\r\n")).await;
    assert_eq!(sent.len(), 1, "exactly the gate's own: {sent:?}");
    let jwt = &sent[0];
    assert_ne!(jwt, "forged");
    // The same keys on both listeners.
    let public = jwks(&gate, &gate.url("")).await;
    assert_eq!(public, jwks(&gate, &admin).await);
    assert_eq!(public.keys.len(), 1);
    let claims = verify(&public, jwt);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "tachi");
    assert_eq!(claims["sub"], "4");
    assert_eq!(claims["permissions"], json!(["submit_score"]));
    assert_eq!(claims["client_id"], client);
    assert!(!claims["identifier"].as_str().unwrap().is_empty());
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(exp, claims["iat"].as_u64().unwrap() + 60);
    // The token ID is the one in the plain identity header.
    let echo = gate.get_with_key("/api/v1/users/1", &key).await;
    let echo: Value = echo.json().await.unwrap();
    assert_eq!(
        echoed_headers(&echo, "x-tachi-token-id"),
        vec![claims["token_id"].as_str().unwrap().to_string()]
    );

    // A guest, and a session, get none: what a client sent is dropped.
    assert!(assertions_upstream(&gate, spoofed).await.is_empty());
    let cookie = gate.session(4);
    let with_cookie = format!("{spoofed}Cookie: {cookie}\r\n");
    assert!(assertions_upstream(&gate, &with_cookie).await.is_empty());

    // The metadata names the key set.
    let meta: Value = gate
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assertion_is_kept_per_key_and_signed_again_at_half_its_life() {
    let gate = TestGate::start(&format!("{}{}", server(""), jwt_config(2))).await;
    let (a, _, _) = gate.issue_key(4, &["submit_score"]).await;
    let (b, _, _) = gate.issue_key(5, &["submit_score"]).await;
    let bearer = |k: &str| format!("Authorization: Bearer {k}\r\n");
    let first = assertions_upstream(&gate, &bearer(&a)).await;
    assert_eq!(assertions_upstream(&gate, &bearer(&a)).await, first);
    let other = assertions_upstream(&gate, &bearer(&b)).await;
    assert_ne!(other, first, "each key has its own");
    assert_eq!(
        verify(&jwks(&gate, &gate.url("")).await, &other[0])["sub"],
        "5"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = assertions_upstream(&gate, &bearer(&a)).await;
    assert_ne!(later, first, "signed again after half of its two seconds");
    let set = jwks(&gate, &gate.url("")).await;
    let (old, new) = (verify(&set, &first[0]), verify(&set, &later[0]));
    assert_ne!(old["jti"], new["jti"]);
    assert!(new["iat"].as_u64() >= old["iat"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_before_the_upstream_sees_it() {
    let (gate, admin) = jwt_gate_with_admin().await;
    let (key, _, _) = gate.issue_key(4, &["submit_score"]).await;
    let bearer = format!("Authorization: Bearer {key}\r\n");
    assert_eq!(assertions_upstream(&gate, &bearer).await.len(), 1);
    let r = admin_post(&gate, &admin, "/admin/users/4/revoke-all").await;
    assert_eq!(r.status(), 200);
    let before = gate.upstream.hits();
    let r = gate.get_with_key("/api/v1/users/1", &key).await;
    assert_eq!(r.status(), 401);
    assert_eq!(gate.upstream.hits(), before, "the upstream saw nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_a_new_key_and_keeps_the_old_one_published() {
    let (gate, admin) = jwt_gate_with_admin().await;
    let (key, _, _) = gate.issue_key(4, &["submit_score"]).await;
    let bearer = format!("Authorization: Bearer {key}\r\n");
    let before = assertions_upstream(&gate, &bearer).await.remove(0);
    let first_kid = kid(&before);

    // Through the admin API.
    let r = admin_post(&gate, &admin, "/admin/identity/rotate").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let second_kid = body["body"]["kid"].as_str().unwrap().to_string();
    assert_ne!(second_kid, first_kid);
    let after = assertions_upstream(&gate, &bearer).await.remove(0);
    assert_eq!(
        kid(&after),
        second_kid,
        "no longer the kept assertion of the old key"
    );
    let set = jwks(&gate, &gate.url("")).await;
    assert_eq!(set.keys.len(), 2);
    verify(&set, &before);
    verify(&set, &after);

    // From the command line, on the key file, while the gate runs: it
    // reads the new key within a second or so.
    let config = gate.store_path.with_extension("toml");
    std::fs::write(
        &config,
        format!("[server]\npublic_url = \"{ISSUER}\"\n{}", jwt_config(60)),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tachi-gate"))
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&gate.store_path)
        .args(["identity", "rotate"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let third_kid = printed["kid"].as_str().unwrap().to_string();
    assert_eq!(printed["jwks"]["keys"].as_array().unwrap().len(), 3);
    let mut seen = String::new();
    for _ in 0..50 {
        seen = kid(&assertions_upstream(&gate, &bearer).await.remove(0));
        if seen == third_kid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen, third_kid,
        "the running gate did not pick up the key file"
    );
    assert_eq!(jwks(&gate, &gate.url("")).await.keys.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_mode_signs_nothing_and_strips_what_clients_send() {
    let (gate, admin) = with_admin("").await;
    let (key, _, _) = gate.issue_key(4, &["submit_score"]).await;
    let spoofed = format!("X-Tachi-Identity: forged\r\nAuthorization: Bearer {key}\r\n");
    assert!(assertions_upstream(&gate, &spoofed).await.is_empty());
    for base in [gate.url(""), admin.clone()] {
        let r = gate
            .http
            .get(format!("{base}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{base}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false);
    }
    let meta: Value = gate
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert!(meta.get("jwks_uri").is_none());
    let r = admin_post(&gate, &admin, "/admin/identity/rotate").await;
    assert_eq!(r.status(), 409);
    assert!(!gate.store_path.join("identity-keys.json").exists());
}
