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

/// A mock Tachi server: `/api/v1/status` answers by cookie (403 for a
/// banned user, as Tachi's `RejectIfBanned` does), `/api/v1/users/<id or
/// name>` answers for the users it knows, and everything else is echoed back
/// as JSON (method, path, query, headers, body).
pub struct MockTachi {
    pub addr: SocketAddr,
    state: Arc<State>,
    pub status_calls: Arc<AtomicUsize>,
    /// The header names of the last `/api/v1/status` request, with values.
    pub last_status_headers: Arc<Mutex<Vec<(String, String)>>>,
    stop: watch::Sender<bool>,
}

/// What the mock knows, shared with its connections.
#[derive(Default)]
struct State {
    /// Cookie header value → user.
    sessions: Mutex<HashMap<String, u64>>,
    /// Lower-case name → (user, authLevel).
    users: Mutex<HashMap<String, (u64, u64)>>,
    banned: Mutex<Vec<u64>>,
    /// Every request answered, of any path.
    requests: AtomicUsize,
    status_calls: Arc<AtomicUsize>,
    last_status_headers: Arc<Mutex<Vec<(String, String)>>>,
}

impl MockTachi {
    pub async fn start() -> MockTachi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (stop, stopped) = watch::channel(false);
        let shared = state.clone();
        tokio::spawn(async move {
            let mut accept_stop = stopped.clone();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = accept_stop.wait_for(|s| *s) => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let state = shared.clone();
                let mut conn_stop = stopped.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, state.clone()));
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
            status_calls: state.status_calls.clone(),
            last_status_headers: state.last_status_headers.clone(),
            state,
            stop,
        }
    }

    /// Makes `cookie` (the whole Cookie header value) a live session of `user`.
    pub fn add_session(&self, cookie: &str, user: u64) {
        self.state
            .sessions
            .lock()
            .unwrap()
            .insert(cookie.to_string(), user);
    }

    pub fn end_session(&self, cookie: &str) {
        self.state.sessions.lock().unwrap().remove(cookie);
    }

    /// Makes `name` a Tachi user with this ID; an administrator when `admin`.
    pub fn add_user(&self, name: &str, user: u64, admin: bool) {
        let level = if admin { 3 } else { 1 };
        self.state
            .users
            .lock()
            .unwrap()
            .insert(name.to_lowercase(), (user, level));
    }

    /// Bans `user`: their session answers 403, as Tachi's do.
    pub fn ban(&self, user: u64) {
        self.state.banned.lock().unwrap().push(user);
    }

    /// How many requests it has answered, of any path.
    pub fn hits(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
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

fn json_response(status: u16, value: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// `GET /api/v1/users/<id or name>` as Tachi answers it: the user, for the
/// users the mock knows, and 404 for names it does not. `me` and numeric IDs
/// it does not know are `None`, left to the echo, so that tests can forward
/// such paths and see what the upstream received.
fn user_lookup(state: &State, param: &str) -> Option<Response<Full<Bytes>>> {
    let users = state.users.lock().unwrap();
    let by_id = param.parse::<u64>().ok().and_then(|id| {
        let session_user = state.sessions.lock().unwrap().values().any(|u| *u == id);
        users
            .values()
            .find(|(u, _)| *u == id)
            .copied()
            .or(session_user.then_some((id, 1)))
    });
    if param == "me" || (by_id.is_none() && param.parse::<u64>().is_ok()) {
        return None;
    }
    Some(
        match by_id.or_else(|| users.get(&param.to_lowercase()).copied()) {
            Some((id, level)) => json_response(
                200,
                json!({"success": true, "description": "Found user.", "body": {"id": id, "authLevel": level}}),
            ),
            None => json_response(
                404,
                json!({"success": false, "description": format!("The user {param} does not exist.")}),
            ),
        },
    )
}

async fn answer(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
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
    let path = parts.uri.path();
    // Gives a browser a session cookie, as Tachi's login would.
    if path == "/test/set-cookie" {
        let mut resp = json_response(200, json!({"cookie": "set"}));
        if let Some(cookie) = parts.uri.query() {
            let cookie = percent_encoding::percent_decode_str(cookie).decode_utf8_lossy();
            resp.headers_mut()
                .insert("set-cookie", format!("{cookie}; Path=/").parse().unwrap());
        }
        return Ok(resp);
    }
    if let Some(param) = path.strip_prefix("/api/v1/users/") {
        if parts.method == hyper::Method::GET && !param.contains('/') {
            let param = percent_encoding::percent_decode_str(param).decode_utf8_lossy();
            if let Some(found) = user_lookup(&state, &param) {
                return Ok(found);
            }
        }
    }
    let value = if path == "/api/v1/status" {
        state.status_calls.fetch_add(1, Ordering::SeqCst);
        *state.last_status_headers.lock().unwrap() = parts
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
        let user = state.sessions.lock().unwrap().get(cookie).copied();
        if user.is_some_and(|u| state.banned.lock().unwrap().contains(&u)) {
            return Ok(json_response(
                403,
                json!({"success": false, "description": "You are banned from Tachi"}),
            ));
        }
        json!({"success": true, "description": "Status", "body": {"whoami": user}})
    } else {
        json!({
            "echo": true,
            "method": parts.method.as_str(),
            "path": path,
            "query": parts.uri.query(),
            "headers": header_list(&parts.headers),
            "body": String::from_utf8_lossy(&body),
        })
    };
    Ok(json_response(200, value))
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
