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

use crate::config::postgres_url::{parse_url, Verify};

/// Everything needed to connect: tokio-postgres' settings and the TLS policy.
pub(super) struct Settings {
    pub(super) pg: tokio_postgres::Config,
    pub(super) verify: Verify,
}

/// Parses `url`; every connection made with the result times out after
/// `timeout` and commits synchronously whatever the server's default.
pub(super) fn parse(url: &str, timeout: Duration) -> Result<Settings, String> {
    let (mut pg, verify) = parse_url(url)?;
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
