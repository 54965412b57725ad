//! From `store.url` to connection settings: libpq's URL, including its
//! `sslmode` values, on top of tokio-postgres, which knows only `disable`,
//! `prefer` and `require`.
//!
//! TLS follows libpq: `prefer` (the default) and `require` encrypt without
//! checking the server's certificate, as libpq does when no root
//! certificate is configured; `verify-ca` and `verify-full` check it against
//! `sslrootcert` (a PEM file) or, without one, the Web PKI roots. Both
//! verifying modes check the host name, as rustls always does.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the database's certificate is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verify {
    /// Encrypt, but accept any certificate (libpq's `prefer` and `require`).
    Nothing,
    /// Check the chain and the host name against these roots (a PEM file),
    /// or the Web PKI's when `None`.
    Chain(Option<String>),
}

/// Everything needed to connect: tokio-postgres' settings and the TLS policy.
pub(super) struct Settings {
    pub(super) pg: tokio_postgres::Config,
    pub(super) verify: Verify,
}

/// Checks a URL as the configuration is validated; the reason never repeats
/// the URL, which may hold a password.
pub fn check_url(url: &str) -> Result<(), String> {
    parse(url, Duration::from_secs(1)).map(|_| ())
}

/// Parses `url`; every connection made with the result times out after
/// `timeout` and commits synchronously whatever the server's default.
pub(super) fn parse(url: &str, timeout: Duration) -> Result<Settings, String> {
    let (url, verify) = split_ssl_mode(url)?;
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("not a usable PostgreSQL URL ({e})"))?;
    if pg.get_hosts().is_empty() {
        return Err("the URL names no host".into());
    }
    // An acknowledged change must be on the server's disk (and its
    // synchronous standbys') before the gate answers.
    let options = match pg.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c synchronous_commit=on"),
        _ => "-c synchronous_commit=on".to_string(),
    };
    if pg.get_application_name().is_none() {
        pg.application_name("tachi-gate");
    }
    pg.options(options)
        .connect_timeout(timeout)
        // A dead peer is noticed by the kernel, not only by the next query.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .tcp_user_timeout(timeout.max(Duration::from_secs(1)));
    Ok(Settings { pg, verify })
}

/// Takes libpq's verifying `sslmode`s and `sslrootcert` out of a URL (for
/// tokio-postgres, they become `sslmode=require`); what remains is passed on.
/// A key-value connection string (`host=… user=…`) is passed on as it is.
fn split_ssl_mode(url: &str) -> Result<(String, Verify), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok((url.to_string(), Verify::Nothing));
    }
    let mut parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let mut verify = Verify::Nothing;
    let mut root = None;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("sslmode", "verify-ca" | "verify-full") => {
                verify = Verify::Chain(None);
                kept.push(("sslmode".into(), "require".into()));
            }
            ("sslrootcert", path) => root = Some(path.to_string()),
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    match verify {
        Verify::Chain(_) => verify = Verify::Chain(root),
        Verify::Nothing if root.is_some() => {
            return Err("sslrootcert needs sslmode=verify-ca or verify-full".into())
        }
        // Nothing to take out: passed on exactly as written.
        Verify::Nothing => return Ok((url.to_string(), verify)),
    }
    // Spaces as %20, not `+`: tokio-postgres only percent-decodes.
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let query: Vec<String> = kept
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    parsed.set_query(Some(&query.join("&")));
    Ok((parsed.to_string(), verify))
}

/// The TLS connector for `verify`.
pub(super) fn tls(verify: &Verify) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Verify::Chain(root) => {
            let mut roots = rustls::RootCertStore::empty();
            match root {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
                    for cert in rustls_pemfile_certs(&pem)? {
                        roots
                            .add(cert)
                            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err("sslrootcert holds no certificate".into()),
        Err(e) => Err(format!("sslrootcert is not PEM: {e}")),
    }
}

/// libpq's `prefer` and `require`: the connection is encrypted, but the
/// certificate is not checked (the handshake's signatures still are).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_modes_become_require_with_a_check() {
        let (url, v) =
            split_ssl_mode("postgres://u:p@db:5432/x?sslmode=verify-full&sslrootcert=/ca.pem")
                .unwrap();
        assert_eq!(v, Verify::Chain(Some("/ca.pem".into())));
        assert_eq!(url, "postgres://u:p@db:5432/x?sslmode=require");
        let (url, v) = split_ssl_mode("postgresql://db/x?sslmode=disable").unwrap();
        assert_eq!(v, Verify::Nothing);
        assert!(url.ends_with("sslmode=disable"));
        let (_, v) = split_ssl_mode("postgres://db/x?sslmode=verify-ca").unwrap();
        assert_eq!(v, Verify::Chain(None));
        assert!(split_ssl_mode("postgres://db/x?sslrootcert=/ca.pem").is_err());
        let (kv, v) = split_ssl_mode("host=db user=u").unwrap();
        assert_eq!((kv.as_str(), v), ("host=db user=u", Verify::Nothing));
    }

    #[test]
    fn errors_never_repeat_the_url() {
        let e = check_url("postgres://user:hunter2@db:notaport/x").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(check_url("postgres://user:hunter2@db/x?sslmode=bogus").is_err());
        assert!(check_url("postgres://postgres@127.0.0.1:5432/test").is_ok());
    }

    #[test]
    fn every_connection_commits_synchronously() {
        let s = parse(
            "postgres://db/x?options=-c%20search_path%3Dgate",
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(
            s.pg.get_options(),
            Some("-c search_path=gate -c synchronous_commit=on")
        );
        let s = parse("postgres://db/x", Duration::from_secs(2)).unwrap();
        assert_eq!(s.pg.get_options(), Some("-c synchronous_commit=on"));
    }
}
