//! TLS: a TLS listener speaking HTTP/1.1 and HTTP/2 with a certificate made in
//! the test, and TLS to the upstream (a gate chained behind another).

use std::path::Path;

use crate::support::*;
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

/// A TLS listener on `port` with this certificate, and more `[server]` keys.
fn tls_config(port: u16, cert: &str, key: &str, server: &str) -> String {
    format!("[server]\nadmin_listen = \"\"\n{server}\n[server.tls]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n")
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

/// A gate with a TLS listener (beside its plain one) on a certificate made
/// for the test, in a temporary directory the test may use too.
struct TlsGate {
    gate: TestGate,
    port: u16,
    /// The path of the CA's PEM, to trust.
    ca: String,
    dir: tempfile::TempDir,
}

impl TlsGate {
    async fn start() -> TlsGate {
        TlsGate::start_with("").await
    }

    /// A TLS gate with more `[server]` keys.
    async fn start_with(server: &str) -> TlsGate {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = make_certificates(dir.path());
        let port = free_port();
        let gate = TestGate::start(&tls_config(port, &cert, &key, server)).await;
        let t = TlsGate {
            gate,
            port,
            ca,
            dir,
        };
        assert!(wait_for_port(t.addr(), std::time::Duration::from_secs(10)));
        t
    }

    /// The TLS listener's address.
    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_answers_http1_and_http2() {
    let t = TlsGate::start().await;
    let (gate, port, ca) = (&t.gate, t.port, t.ca.clone());
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
    let h2 = client(&ca, false);
    let metadata = format!("https://localhost:{port}/.well-known/oauth-authorization-server");
    let r = h2.get(&metadata).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let length = r.headers()["content-length"].clone();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issuer"], format!("https://localhost:{port}"));
    // HEAD over HTTP/2: the same header, and a stream ended with no content
    // (Pingora leaves that to the application on HTTP/2).
    let r = h2.head(&metadata).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_2)
    );
    assert_eq!(r.headers()["content-length"], length);
    assert!(r.bytes().await.unwrap().is_empty());
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
    // B: a gate with a TLS listener in front of the mock Tachi.
    let b = TlsGate::start().await;
    // A: a gate whose upstream is B, over TLS, trusting the test CA.
    let a = TestGate::start_with_upstreams(
        &format!(
            "[upstream]\ntls = true\nsni = \"localhost\"\nca_file = \"{}\"\n",
            b.ca
        ),
        &b.dir.path().join("a-store"),
        vec![MockTachi::start().await],
        &[b.addr()],
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
    let cookie = b.gate.session(44);
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
    let b = TlsGate::start().await;
    let a = TestGate::start_with_upstreams(
        "[upstream]\ntls = true\nsni = \"localhost\"\n",
        &b.dir.path().join("a-store"),
        vec![MockTachi::start().await],
        &[b.addr()],
    )
    .await;
    assert_eq!(a.get("/x").await.status(), 502);
}

/// A raw HTTP/2 connection over TLS, for frames no client library would send.
struct RawH2 {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    /// Bytes read and not yet taken as frames.
    received: Vec<u8>,
}

/// One HTTP/2 frame as read: type, flags and payload.
struct Frame {
    kind: u8,
    flags: u8,
    payload: Vec<u8>,
}

/// TLS over `tcp` to the test certificate's `localhost`, offering `alpn`.
async fn tls_over(
    tcp: tokio::net::TcpStream,
    ca: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{self, RootCertStore};

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
    stream
}

impl RawH2 {
    /// Connects with ALPN `h2` and sends the client preface and empty SETTINGS.
    async fn connect(port: u16, ca: &str) -> RawH2 {
        use tokio::io::AsyncWriteExt;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut stream = tls_over(tcp, ca, b"h2").await;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        RawH2 {
            stream,
            received: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The next frame the gate sends; None once it has closed the
    /// connection (a TLS error counts as closed). Panics after 10 s of
    /// silence: the gate must neither hang nor keep a broken connection.
    async fn next_frame(&mut self) -> Option<Frame> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.received.len() >= 9 {
                let r = &self.received;
                let len = usize::from(r[0]) << 16 | usize::from(r[1]) << 8 | usize::from(r[2]);
                if r.len() >= 9 + len {
                    let frame = Frame {
                        kind: r[3],
                        flags: r[4],
                        payload: r[9..9 + len].to_vec(),
                    };
                    self.received.drain(..9 + len);
                    return Some(frame);
                }
            }
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.stream.read(&mut buf),
            )
            .await
            .expect("the gate neither answered nor closed the connection");
            match read {
                Ok(n @ 1..) => self.received.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// Reads until the gate closes the connection; the error code of the
    /// GOAWAY frame it sent before, if any.
    async fn goaway_then_close(mut self) -> Option<u32> {
        let mut goaway = None;
        while let Some(f) = self.next_frame().await {
            if f.kind == 0x7 && f.payload.len() >= 8 {
                goaway = Some(u32::from_be_bytes(f.payload[4..8].try_into().unwrap()));
            }
        }
        goaway
    }

    /// Sends a PING; whether the gate acknowledged it on this connection.
    async fn ping_answered(&mut self, data: [u8; 8]) -> bool {
        self.send(&frame(0x6, 0, 0, &data)).await;
        while let Some(f) = self.next_frame().await {
            if f.kind == 0x6 && f.flags & 0x1 != 0 && f.payload == data {
                return true;
            }
        }
        false
    }
}

/// An HTTP/2 frame: type, flags, stream and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_protocol_faults_close_only_their_own_connection() {
    const END_STREAM_AND_HEADERS: u8 = 0x1 | 0x4;
    let t = TlsGate::start().await;
    let (port, ca) = (t.port, t.ca.as_str());
    let (key, _, _) = t.gate.issue_key(2, &["submit_score"]).await;
    // A connection opened before the faults, and used after them.
    let mut bystander = RawH2::connect(port, ca).await;
    assert!(bystander.ping_answered(*b"before!!").await);

    // (what is sent, the GOAWAY error codes it may be answered with)
    let get_headers = [0x82, 0x87, 0x84]; // :method GET, :scheme https, :path /
    let faults: Vec<(&str, Vec<u8>, &[u32])> = vec![
        (
            "HEADERS on stream 0",
            frame(0x1, END_STREAM_AND_HEADERS, 0, &get_headers),
            &[0x1], // PROTOCOL_ERROR
        ),
        (
            "a header block that does not decode",
            frame(0x1, END_STREAM_AND_HEADERS, 1, &[0x80]),
            // RFC 9113 §4.3 names COMPRESSION_ERROR; the h2 library (0.4)
            // answers PROTOCOL_ERROR. Both end the connection.
            &[0x9, 0x1],
        ),
        (
            "a frame over the 16,384-byte maximum",
            frame(0x0, 0, 1, &[0; 16_385]),
            &[0x6], // FRAME_SIZE_ERROR
        ),
        (
            "DATA on a stream never opened",
            frame(0x0, 0x1, 3, b"hello"),
            &[0x1], // PROTOCOL_ERROR
        ),
    ];
    for (what, bytes, codes) in faults {
        let mut raw = RawH2::connect(port, ca).await;
        raw.send(&bytes).await;
        let answered = raw.goaway_then_close().await;
        assert!(
            answered.is_some_and(|c| codes.contains(&c)),
            "{what}: GOAWAY {answered:?}, expected one of {codes:?}"
        );
    }
    // A frame cut off by the client hanging up.
    let mut raw = RawH2::connect(port, ca).await;
    raw.send(&frame(0x1, END_STREAM_AND_HEADERS, 1, &get_headers)[..6])
        .await;
    drop(raw);

    // The connection from before is still open and answered, and new ones
    // are served.
    assert!(
        bystander.ping_answered(*b"after!!!").await,
        "the faults of other connections closed this one"
    );
    let url = format!("https://localhost:{port}/api/v1/users/me");
    let r = client(ca, false)
        .get(&url)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_2)
    );
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["2"]);
    let r = client(ca, false)
        .get(&url)
        .bearer_auth("bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// An HTTP/2 client connection (the `h2` crate) to the TLS listener; the
/// peer's advertised limit on concurrent streams, read once its SETTINGS
/// have arrived.
async fn h2_client(port: u16, ca: &str) -> (h2::client::SendRequest<bytes::Bytes>, usize) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (send, mut connection) = h2::client::handshake(tls_over(tcp, ca, b"h2").await)
        .await
        .unwrap();
    // Drive the connection a moment so the server's SETTINGS are read.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(300), &mut connection).await;
    let streams = connection.max_concurrent_send_streams();
    tokio::spawn(connection);
    (send, streams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_that_never_comes_is_a_408_at_the_body_deadline() {
    let t = TlsGate::start_with("body_timeout_ms = 500\nh2_max_streams = 3").await;
    let (send, streams) = h2_client(t.port, &t.ca).await;
    // One client connection can hold at most this many streams (and so
    // upstream connections) at once.
    assert_eq!(streams, 3);
    let mut send = send.ready().await.unwrap();
    let request = http::Request::post(format!("https://localhost:{}/upload", t.port))
        .header("content-length", "10")
        .body(())
        .unwrap();
    let started = std::time::Instant::now();
    // Headers only: the ten bytes announced never come.
    let (response, _body_stream) = send.send_request(request, false).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("an answer, not a hang")
        .unwrap();
    assert_eq!(response.status(), 408);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["success"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_names_the_client_on_tls_listeners() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TlsGate::start_with("trusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true").await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", t.port))
        .await
        .unwrap();
    // The header comes before the TLS handshake, as a balancer sends it.
    tcp.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n")
        .await
        .unwrap();
    let mut tls = tls_over(tcp, &t.ca, b"http/1.1").await;
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let echo: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(echoed_headers(&echo, "x-forwarded-for"), ["203.0.113.7"]);
    assert_eq!(echoed_headers(&echo, "x-forwarded-proto"), ["https"]);
}
