//! The PROXY protocol (v1 and v2, as HAProxy specifies it), with which a
//! load balancer that forwards TCP tells the gate whose connection it is.
//!
//! With `server.proxy_protocol` on, a connection from one of
//! `server.trusted_proxies` must begin with a PROXY header; the client
//! address it names replaces the peer's in the connection's socket digest,
//! so everything that asks who the client is (rate limits, logs,
//! `X-Forwarded-For`) sees the real client. Connections from anyone else
//! are read as they come: a PROXY header from them is just a malformed
//! request. On TLS listeners the header is read before the handshake,
//! through Pingora's pre-TLS hook; on plain ones by the head-deadline loop
//! ([`super::deadline`]), before the first request.
//!
//! The header is read exactly (no byte of the request after it), and parsed
//! by the `ppp` crate.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::{Error, ErrorType};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::http::forwarded::is_trusted;

/// The longest v1 header, CRLF included (HAProxy's specification).
const V1_MAX: usize = 107;
/// The v2 signature; a v2 header is it, four more bytes, then the addresses.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The most address bytes a v2 header may announce that the gate reads
/// (addresses and TLVs); real balancers send far fewer.
const V2_MAX_REST: usize = 2048;

/// Why a PROXY header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the connection closed or failed before its PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("no PROXY header where one was expected")]
    Missing,
    #[error("a malformed PROXY header: {0}")]
    Malformed(String),
    #[error("the PROXY header took too long")]
    TooSlow,
}

/// Which peers may send a PROXY header, and how long they may take.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    pub trusted: Vec<IpNet>,
    pub within: Duration,
}

impl ProxyProtocol {
    /// Reads the PROXY header of a connection from a trusted peer and
    /// records the client it names in the connection's socket digest.
    /// Connections from other peers are left as they are.
    pub async fn accept<S>(&self, stream: &mut S, fd: i32) -> Result<(), ProxyHeaderError>
    where
        S: AsyncRead + GetSocketDigest + Unpin + ?Sized,
    {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        if !peer.is_some_and(|ip| is_trusted(&self.trusted, ip)) {
            return Ok(());
        }
        let client = tokio::time::timeout(self.within, read_header(stream))
            .await
            .map_err(|_| ProxyHeaderError::TooSlow)??;
        if let Some(client) = client {
            let digest = SocketDigest::from_raw_fd(fd);
            let _ = digest.peer_addr.set(Some(PeerAddr::Inet(client)));
            stream.set_socket_digest(digest);
        }
        Ok(())
    }
}

#[async_trait]
impl PreTlsProcess for ProxyProtocol {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        use std::os::unix::io::AsRawFd;
        let fd = stream.as_raw_fd();
        self.accept(stream, fd).await.map_err(|e| {
            log::debug!("{e}");
            Error::explain(ErrorType::AcceptError, e.to_string())
        })
    }
}

/// Reads one PROXY header; the client address it names, or `None` for a
/// header that names none (v1 `UNKNOWN`, v2 `LOCAL`: the balancer's own
/// health checks).
pub async fn read_header<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut head = vec![0u8; 5];
    stream.read_exact(&mut head).await?;
    if head == b"PROXY" {
        // v1: a line of text, read a byte at a time so nothing after it is taken.
        while !head.ends_with(b"\r\n") {
            if head.len() == V1_MAX {
                return Err(ProxyHeaderError::Malformed("a v1 line too long".into()));
            }
            head.push(stream.read_u8().await?);
        }
        let text = std::str::from_utf8(&head)
            .map_err(|_| ProxyHeaderError::Malformed("a v1 line that is not text".into()))?;
        let header = ppp::v1::Header::try_from(text)
            .map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
        return Ok(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            ppp::v1::Addresses::Unknown => None,
        });
    }
    if head[..] != V2_SIGNATURE[..5] {
        return Err(ProxyHeaderError::Missing);
    }
    head.resize(16, 0);
    stream.read_exact(&mut head[5..]).await?;
    if head[..12] != V2_SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    let rest = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if rest > V2_MAX_REST {
        return Err(ProxyHeaderError::Malformed("a v2 header too long".into()));
    }
    head.resize(16 + rest, 0);
    stream.read_exact(&mut head[16..]).await?;
    let header = ppp::v2::Header::try_from(&head[..])
        .map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let result = read_header(&mut cursor).await;
        let pos = cursor.position() as usize;
        (result, bytes[pos..].to_vec())
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[tokio::test]
    async fn v1_names_the_client_and_leaves_the_request() {
        let (got, left) =
            read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 8080\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(got.unwrap(), Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(left, b"GET / HTTP/1.1\r\n");
        let (got, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n").await;
        assert_eq!(got.unwrap(), Some("[2001:db8::7]:51000".parse().unwrap()));
        let (got, left) = read(b"PROXY UNKNOWN\r\nX").await;
        assert_eq!(got.unwrap(), None);
        assert_eq!(left, b"X");
    }

    #[tokio::test]
    async fn v2_names_the_client_and_leaves_the_request() {
        let mut addresses = vec![198, 51, 100, 9, 10, 0, 0, 1];
        addresses.extend_from_slice(&40000u16.to_be_bytes());
        addresses.extend_from_slice(&443u16.to_be_bytes());
        let mut bytes = v2(0x1, 0x11, &addresses);
        bytes.extend_from_slice(b"GET");
        let (got, left) = read(&bytes).await;
        assert_eq!(got.unwrap(), Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(left, b"GET");
        let (got, _) = read(&v2(0x0, 0x00, &[])).await;
        assert_eq!(got.unwrap(), None, "LOCAL names no client");
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
            &[b'P'; 200][..],
        ] {
            assert!(
                read(bad).await.0.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut too_long = v2(0x1, 0x11, &[]);
        too_long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(read(&too_long).await.0.is_err());
    }
}
