//! A mock Tachi upstream on a port of its own: it answers Tachi's status
//! route from the sessions a test gives it, and echoes every other request
//! back as JSON so a test can see exactly what the gate forwarded.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::watch;

/// A mock Tachi server: `/api/v1/status` answers by cookie, everything else is
/// echoed back as JSON (method, path, query, headers, body).
pub struct MockTachi {
    pub addr: SocketAddr,
    sessions: Arc<Mutex<HashMap<String, u64>>>,
    pub status_calls: Arc<AtomicUsize>,
    /// The header names of the last `/api/v1/status` request, with values.
    pub last_status_headers: Arc<Mutex<Vec<(String, String)>>>,
    stop: watch::Sender<bool>,
}

impl MockTachi {
    pub async fn start() -> MockTachi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let status_calls = Arc::new(AtomicUsize::new(0));
        let last_status_headers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (stop, stopped) = watch::channel(false);
        let (s, c, l) = (
            sessions.clone(),
            status_calls.clone(),
            last_status_headers.clone(),
        );
        tokio::spawn(async move {
            let mut accept_stop = stopped.clone();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = accept_stop.wait_for(|s| *s) => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let (s, c, l) = (s.clone(), c.clone(), l.clone());
                let mut conn_stop = stopped.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, s.clone(), c.clone(), l.clone()));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    // Stopping the mock also drops its open connections, as a crash would.
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_stop.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        MockTachi {
            addr,
            sessions,
            status_calls,
            last_status_headers,
            stop,
        }
    }

    /// Makes `cookie` (the whole Cookie header value) a live session of `user`.
    pub fn add_session(&self, cookie: &str, user: u64) {
        self.sessions
            .lock()
            .unwrap()
            .insert(cookie.to_string(), user);
    }

    pub fn end_session(&self, cookie: &str) {
        self.sessions.lock().unwrap().remove(cookie);
    }

    /// Stops listening and drops every open connection.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for MockTachi {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    req: Request<Incoming>,
    sessions: Arc<Mutex<HashMap<String, u64>>>,
    status_calls: Arc<AtomicUsize>,
    last_status_headers: Arc<Mutex<Vec<(String, String)>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // A slow Tachi, for timeout tests.
    if parts.uri.path().starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let value = if parts.uri.path() == "/api/v1/status" {
        status_calls.fetch_add(1, Ordering::SeqCst);
        *last_status_headers.lock().unwrap() = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect();
        let cookie = parts
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let user = sessions.lock().unwrap().get(cookie).copied();
        json!({"success": true, "description": "Status", "body": {"whoami": user}})
    } else {
        json!({
            "echo": true,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": header_list(&parts.headers),
            "body": String::from_utf8_lossy(&body),
        })
    };
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(resp)
}

fn header_list(h: &hyper::HeaderMap) -> Value {
    Value::Array(
        h.iter()
            .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
            .collect(),
    )
}

/// All values of header `name` in an echoed request.
pub fn echoed_headers(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}
