//! Raw HTTP over a TCP socket, for requests no HTTP client would send and
//! for watching one connection across several requests.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The value of a response header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Sends raw bytes and reads until the gate closes the connection (send
/// `Connection: close`). Status 0 means the connection closed with no answer.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    raw_request_within(addr, request, Duration::from_secs(15)).await
}

/// As [`raw_request`], giving up reading after `within` (a request the gate is
/// still waiting to receive the rest of gets status 0).
pub async fn raw_request_within(addr: SocketAddr, request: &[u8], within: Duration) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut buf)).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawResponse {
        status,
        head,
        body: buf[split..].to_vec(),
    }
}

/// Reads one HTTP/1.1 answer with a Content-Length from a kept-alive socket.
pub async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[..end + 4 + len]).to_string();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `GET /x` `times` times on a kept-alive connection, expecting a 200
/// each time.
pub async fn get_kept_alive(s: &mut tokio::net::TcpStream, times: usize) {
    use tokio::io::AsyncWriteExt;
    for _ in 0..times {
        s.write_all(b"GET /x HTTP/1.1\r\nHost: gate\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
