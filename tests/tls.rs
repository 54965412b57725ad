//! TLS: a TLS listener speaking HTTP/1.1 and HTTP/2 with a certificate made in
//! the test, and TLS to the upstream (a gate chained behind another).

mod common;

use std::path::Path;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};

/// Writes a CA and a leaf for localhost/127.0.0.1 signed by it; returns the CA PEM path.
fn make_certificates(dir: &Path) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tachi-gate test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    (
        write("cert.pem", leaf.pem()),
        write("key.pem", leaf_key.serialize_pem()),
        write("ca.pem", ca.pem()),
    )
}

fn tls_config(port: u16, cert: &str, key: &str) -> String {
    format!("[server]\nadmin_listen = \"\"\n[server.tls]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n")
}

fn client(ca: &str, http1: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .resolve("localhost", "127.0.0.1:0".parse().unwrap());
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_answers_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = make_certificates(dir.path());
    let port = free_port();
    let gate = TestGate::start(&tls_config(port, &cert, &key)).await;
    assert!(wait_for_port(
        format!("127.0.0.1:{port}").parse().unwrap(),
        std::time::Duration::from_secs(10)
    ));
    let (key_value, _, _) = gate.issue_key(2, &["submit_score"]).await;
    let url = format!("https://localhost:{port}/api/v1/users/me");

    for (http1, version) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        // Spoofed identity and forwarding headers go, over HTTP/2 as over HTTP/1.
        let r = client(&ca, http1)
            .get(&url)
            .bearer_auth(&key_value)
            .header("X-Tachi-User-ID", "1")
            .header("x_tachi_permissions", "delete_score")
            .header("X-Forwarded-For", "6.6.6.6")
            .header("Forwarded", "for=6.6.6.6")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version);
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echoed_headers(&echo, "x-forwarded-proto"), vec!["https"]);
        assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["2"]);
        assert_eq!(echoed_headers(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
        assert!(echoed_headers(&echo, "x_tachi_permissions").is_empty());
        assert!(echoed_headers(&echo, "forwarded").is_empty());
    }
    // The gate's own routes over HTTP/2 too, and the metadata says https.
    let r = client(&ca, false)
        .get(format!(
            "https://localhost:{port}/.well-known/oauth-authorization-server"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issuer"], format!("https://localhost:{port}"));
    let r = client(&ca, false)
        .get(format!("https://localhost:{port}/x"))
        .bearer_auth("bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The plain listener still says http.
    let echo: Value = gate.get("/x").await.json().await.unwrap();
    assert_eq!(echoed_headers(&echo, "x-forwarded-proto"), vec!["http"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_upstream_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = make_certificates(dir.path());
    // B: a gate with a TLS listener in front of the mock Tachi.
    let b_port = free_port();
    let b = TestGate::start(&tls_config(b_port, &cert, &key)).await;
    let b_tls: std::net::SocketAddr = format!("127.0.0.1:{b_port}").parse().unwrap();
    assert!(wait_for_port(b_tls, std::time::Duration::from_secs(10)));
    // A: a gate whose upstream is B, over TLS, trusting the test CA.
    let a_store = dir.path().join("a-store");
    let a = TestGate::start_with_upstreams(
        &format!("[upstream]\ntls = true\nsni = \"localhost\"\nca_file = \"{ca}\"\n"),
        &a_store,
        vec![MockTachi::start().await],
        &[b_tls],
    )
    .await;
    let r = a.get("/through/both").await;
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/through/both");
    assert_eq!(
        echoed_headers(&echo, "x-forwarded-proto"),
        vec!["https"],
        "B saw A arrive over TLS"
    );
    // Session checks go over TLS too: A asks B, B asks the mock.
    let cookie = b.session(44);
    let r = a
        .http
        .post(a.url("/api/v1/oauth/create-code"))
        .header("cookie", &cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["body"]["userID"], 44);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_upstream_certificate_is_a_502() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _ca) = make_certificates(dir.path());
    let b_port = free_port();
    let _b = TestGate::start(&tls_config(b_port, &cert, &key)).await;
    let b_tls: std::net::SocketAddr = format!("127.0.0.1:{b_port}").parse().unwrap();
    assert!(wait_for_port(b_tls, std::time::Duration::from_secs(10)));
    let a = TestGate::start_with_upstreams(
        "[upstream]\ntls = true\nsni = \"localhost\"\n",
        &dir.path().join("a-store"),
        vec![MockTachi::start().await],
        &[b_tls],
    )
    .await;
    assert_eq!(a.get("/x").await.status(), 502);
}
