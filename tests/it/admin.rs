//! The admin listener and API, the operator commands (as subprocesses, on a
//! store and through a running gate), and importing Tachi's collections.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_tachi-gate");
const TOKEN: &str = "admin-secret-for-tests";

/// A gate whose admin listener is on; returns it with the admin base URL.
async fn gate_with_admin(token: Option<&str>) -> (TestGate, String) {
    let port = free_port();
    let token_line = token
        .map(|t| format!("admin_token = \"{t}\"\n"))
        .unwrap_or_default();
    let gate = TestGate::start(&format!(
        "[server]\nadmin_listen = \"127.0.0.1:{port}\"\n{token_line}"
    ))
    .await;
    assert!(wait_for_port(
        format!("127.0.0.1:{port}").parse().unwrap(),
        std::time::Duration::from_secs(10)
    ));
    (gate, format!("http://127.0.0.1:{port}"))
}

async fn admin(
    gate: &TestGate,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = gate
        .http
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_health_and_guards_the_admin_api() {
    let (gate, base) = gate_with_admin(Some(TOKEN)).await;
    let r = gate
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["success"], true);
    // Health checkers and scrapers may ask with HEAD: the same answer, no content.
    for (path, content_type) in [("/healthz", "application/json"), ("/metrics", "text/plain")] {
        let r = gate
            .http
            .head(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        assert!(r.bytes().await.unwrap().is_empty(), "{path}");
    }
    let r = gate
        .http
        .post(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");

    let r = gate
        .http
        .get(format!("{base}/admin/clients"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = gate
        .http
        .get(format!("{base}/admin/clients"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The admin listener serves none of the public routes...
    let r = gate
        .http
        .post(format!("{base}/api/v1/oauth/token"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // ...and the public listener none of the admin's: they go upstream like any path.
    for path in ["/admin/clients", "/healthz"] {
        let r = gate.get(path).await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["echo"], true, "{path}");
        // The admin token is no API key.
        let r = gate.get_with_key(path, TOKEN).await;
        assert_eq!(r.status(), 401, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_is_off() {
    let (gate, base) = gate_with_admin(None).await;
    let r = gate
        .http
        .get(format!("{base}/admin/clients"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["description"]
        .as_str()
        .unwrap()
        .contains("admin API is off"));
    assert_eq!(
        gate.http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_manages_clients_and_keys() {
    let (gate, base) = gate_with_admin(Some(TOKEN)).await;
    use reqwest::Method as M;

    let (st, v) = admin(&gate, &base, M::POST, "/admin/clients", Some(json!({
        "author": 3, "name": "Ops Client", "redirectUri": "https://ops.example/cb", "permissions": ["submit_score"]}))).await;
    assert_eq!(st, 200, "{v}");
    let client = v["body"]["clientID"].as_str().unwrap().to_string();
    let client_secret = v["body"]["clientSecret"].as_str().unwrap().to_string();
    assert!(client_secret.starts_with("CS"));
    let (st, _) = admin(
        &gate,
        &base,
        M::POST,
        "/admin/clients",
        Some(json!({"author": 3, "name": "x"})),
    )
    .await;
    assert_eq!(st, 400);

    let (_, v) = admin(&gate, &base, M::GET, "/admin/clients", None).await;
    assert_eq!(v["body"].as_array().unwrap().len(), 1);
    let (_, v) = admin(&gate, &base, M::GET, "/admin/clients?author=4", None).await;
    assert_eq!(v["body"].as_array().unwrap().len(), 0);
    let (st, v) = admin(
        &gate,
        &base,
        M::GET,
        &format!("/admin/clients/{client}"),
        None,
    )
    .await;
    assert_eq!((st, v["body"]["name"].as_str()), (200, Some("Ops Client")));
    assert!(v["body"].get("clientSecret").is_none());

    // Keys: from the client, and custom ones.
    let (st, v) = admin(
        &gate,
        &base,
        M::POST,
        "/admin/keys",
        Some(json!({"userID": 3, "clientID": client})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let client_key = v["body"]["token"].as_str().unwrap().to_string();
    let (st, v) = admin(
        &gate,
        &base,
        M::POST,
        "/admin/keys",
        Some(json!({"userID": 3, "identifier": "ops", "permissions": ["delete_score"]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let custom_key = v["body"]["token"].as_str().unwrap().to_string();
    let custom_id = v["body"]["tokenID"].as_str().unwrap().to_string();
    let (st, _) = admin(
        &gate,
        &base,
        M::POST,
        "/admin/keys",
        Some(json!({"userID": 9, "identifier": "ops", "permissions": ["fly"]})),
    )
    .await;
    assert_eq!(st, 400);
    let echo: Value = gate
        .get_with_key("/x", &custom_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["3"]);

    let (_, v) = admin(&gate, &base, M::GET, "/admin/keys?user=3", None).await;
    assert_eq!(v["body"].as_array().unwrap().len(), 2);
    assert!(
        !v.to_string().contains(&custom_key),
        "listings never show keys"
    );
    let (_, v) = admin(
        &gate,
        &base,
        M::GET,
        &format!("/admin/keys?client={client}"),
        None,
    )
    .await;
    assert_eq!(v["body"].as_array().unwrap().len(), 1);
    let (st, _) = admin(&gate, &base, M::GET, "/admin/keys", None).await;
    assert_eq!(st, 400);

    // Revoke a leaked key while the gate runs, by token ID.
    let (st, _) = admin(
        &gate,
        &base,
        M::DELETE,
        &format!("/admin/keys/{custom_id}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(gate.get_with_key("/x", &custom_key).await.status(), 401);
    let (st, _) = admin(
        &gate,
        &base,
        M::DELETE,
        &format!("/admin/keys/{custom_id}"),
        None,
    )
    .await;
    assert_eq!(st, 404);

    // Revoke everything of a user: keys, and codes not yet exchanged.
    let user3 = gate.session(3);
    let pending = gate.create_code(&user3, json!({})).await;
    let (st, v) = admin(&gate, &base, M::POST, "/admin/users/3/revoke-all", None).await;
    assert_eq!((st, v["body"]["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(gate.get_with_key("/x", &client_key).await.status(), 401);
    let (st, v) = gate
        .token_json(json!({"client_id": client, "client_secret": client_secret, "grant_type": "authorization_code",
                           "redirect_uri": "https://ops.example/cb", "code": pending}))
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (404, Some("invalid_grant")),
        "a code made before revoke-all was exchanged after it: {v}"
    );

    // Delete the client.
    let (st, _) = admin(
        &gate,
        &base,
        M::DELETE,
        &format!("/admin/clients/{client}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = admin(
        &gate,
        &base,
        M::GET,
        &format!("/admin/clients/{client}"),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = admin(&gate, &base, M::GET, "/admin/nothing", None).await;
    assert_eq!(st, 404);
}

fn tachi_gate(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("TACHI_GATE_ADMIN_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_works_on_a_store_and_refuses_one_a_gate_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let data = store.to_str().unwrap();

    let out = tachi_gate(
        &[
            "--data",
            data,
            "clients",
            "create",
            "--name",
            "CLI App",
            "--author",
            "8",
            "--permissions",
            "submit_score,manage_rivals",
            "--redirect-uri",
            "https://cli.example/cb",
        ],
        &[],
    );
    let created = ok_json(&out);
    let client = created["clientID"].as_str().unwrap().to_string();
    let secret = created["clientSecret"].as_str().unwrap().to_string();
    let listed = ok_json(&tachi_gate(&["--data", data, "clients", "list"], &[]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is printed only at creation"
    );

    let key = ok_json(&tachi_gate(
        &[
            "--data", data, "keys", "create", "--user", "8", "--client", &client,
        ],
        &[],
    ));
    let key_value = key["token"].as_str().unwrap().to_string();
    let listed = ok_json(&tachi_gate(
        &["--data", data, "keys", "list", "--user", "8"],
        &[],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&key_value));

    // A second key for the same client is another key; the first keeps
    // working (Tachi answers a repeat with "Returned existing key").
    let again = ok_json(&tachi_gate(
        &[
            "--data", data, "keys", "create", "--user", "8", "--client", &client,
        ],
        &[],
    ));
    let again_value = again["token"].as_str().unwrap().to_string();
    assert_ne!(again_value, key_value);
    let listed = ok_json(&tachi_gate(
        &["--data", data, "keys", "list", "--user", "8"],
        &[],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let revoked = ok_json(&tachi_gate(
        &[
            "--data",
            data,
            "keys",
            "revoke",
            again["tokenID"].as_str().unwrap(),
        ],
        &[],
    ));
    assert!(revoked.is_object() || revoked.is_null(), "{revoked}");

    // While a gate holds the store: one clear line; through --admin it works.
    let port = free_port();
    let upstream = MockTachi::start().await;
    let gate = TestGate::start_on(
        &format!("[server]\nadmin_listen = \"127.0.0.1:{port}\"\nadmin_token = \"{TOKEN}\"\n"),
        &store,
        upstream,
    )
    .await;
    assert_eq!(gate.get_with_key("/x", &key_value).await.status(), 200);
    let out = tachi_gate(&["--data", data, "keys", "list", "--user", "8"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("in use by a running gate") && err.contains("--admin"),
        "{err}"
    );

    let admin_url = format!("http://127.0.0.1:{port}");
    let out = tachi_gate(&["--admin", &admin_url, "keys", "list", "--user", "8"], &[]);
    assert!(!out.status.success(), "no token in the environment");
    let env = [("TACHI_GATE_ADMIN_TOKEN", TOKEN)];
    let listed = ok_json(&tachi_gate(
        &["--admin", &admin_url, "keys", "list", "--client", &client],
        &env,
    ));
    let token_id = listed[0]["tokenID"].as_str().unwrap().to_string();
    ok_json(&tachi_gate(
        &["--admin", &admin_url, "keys", "revoke", &token_id],
        &env,
    ));
    assert_eq!(
        gate.get_with_key("/x", &key_value).await.status(),
        401,
        "revoked through the running gate"
    );
    let made = ok_json(&tachi_gate(
        &[
            "--admin",
            &admin_url,
            "keys",
            "create",
            "--user",
            "8",
            "--permissions",
            "submit_score",
            "--identifier",
            "ops",
        ],
        &env,
    ));
    assert_eq!(
        gate.get_with_key("/x", made["token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    ok_json(&tachi_gate(
        &["--admin", &admin_url, "keys", "revoke", "--user", "8"],
        &env,
    ));
    assert_eq!(
        gate.get_with_key("/x", made["token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    ok_json(&tachi_gate(
        &["--admin", &admin_url, "clients", "delete", &client],
        &env,
    ));
    let out = tachi_gate(&["--admin", &admin_url, "clients", "delete", &client], &env);
    assert!(stderr(&out).contains("does not exist"));
}

/// Imports the sample clients and the tokens fixture `tokens` into the store at `data`.
fn import_with_tokens(data: &str, tokens: &str) -> Output {
    tachi_gate(
        &[
            "--data",
            data,
            "import",
            "--clients",
            &fixture("api-clients.jsonl"),
            "--tokens",
            &fixture(tokens),
        ],
        &[],
    )
}

/// Imports the sample mongoexport files into the store at `data`; the counts.
fn import_fixtures(data: &str) -> Value {
    ok_json(&import_with_tokens(data, "api-tokens.json"))
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_tachi_keys_and_secrets_work_through_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let data = store.to_str().unwrap();

    let counts = import_fixtures(data);
    assert_eq!(
        counts,
        json!({"clientsAdded": 2, "clientsPresent": 0, "keysAdded": 3, "keysPresent": 0})
    );
    let again = import_fixtures(data);
    assert_eq!(
        again,
        json!({"clientsAdded": 0, "clientsPresent": 2, "keysAdded": 0, "keysPresent": 3}),
        "importing twice changes nothing"
    );

    let upstream = MockTachi::start().await;
    let gate = TestGate::start_on("", &store, upstream).await;
    // An imported key passes the gate with its Tachi identity.
    let echo: Value = gate
        .get_with_key(
            "/api/v1/users/me",
            "aa11bb22cc33dd44ee55ff6677889900aabbccdd",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["5"]);
    assert_eq!(
        echoed_headers(&echo, "x-tachi-permissions"),
        vec!["customise_score,submit_score"]
    );
    assert_eq!(
        echoed_headers(&echo, "x-tachi-client-id"),
        vec!["CI8f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e"]
    );
    let echo: Value = gate
        .get_with_key("/x", "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        echoed_headers(&echo, "x-tachi-permissions"),
        vec!["customise_profile"]
    );
    assert!(echoed_headers(&echo, "x-tachi-client-id").is_empty());

    // An imported client's secret exchanges codes as before.
    let cookie = gate.session(2);
    let code = gate.create_code(&cookie, json!({})).await;
    let (st, v) = gate.token_json(json!({
        "client_id": "CI0123456789abcdef0123456789abcdef01234567",
        "client_secret": "CSfedcba9876543210fedcba9876543210fedcba98",
        "grant_type": "authorization_code", "redirect_uri": "https://importer.example.com/oauth", "code": code})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["body"]["identifier"], "Score Importer Token");
    // Imported clients belong to their Tachi author.
    let r = gate.send_as(Method::GET, "/api/v1/clients", &cookie).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["body"][0]["apiKeyTemplate"], "TOKEN=%%TACHI_KEY%%");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_export_is_rejected_with_its_line_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let data = store.to_str().unwrap();
    let out = import_with_tokens(data, "api-tokens-bad.jsonl");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("api-tokens-bad.jsonl line 2") && err.contains("userID"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
    let listed = ok_json(&tachi_gate(&["--data", data, "clients", "list"], &[]));
    assert_eq!(listed, json!([]), "not even the good file");
    let keys = ok_json(&tachi_gate(
        &["--data", data, "keys", "list", "--user", "5"],
        &[],
    ));
    assert_eq!(keys, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_importing_never_revives_revoked_keys_or_deleted_clients() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    import_fixtures(data);
    ok_json(&tachi_gate(
        &[
            "--data",
            data,
            "keys",
            "revoke",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
        ],
        &[],
    ));
    ok_json(&tachi_gate(
        &[
            "--data",
            data,
            "clients",
            "delete",
            "CI8f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
        ],
        &[],
    ));
    let again = import_fixtures(data);
    assert_eq!(
        again,
        json!({"clientsAdded": 0, "clientsPresent": 2, "keysAdded": 0, "keysPresent": 3})
    );
    let clients_now = ok_json(&tachi_gate(&["--data", data, "clients", "list"], &[]));
    assert_eq!(
        clients_now.as_array().unwrap().len(),
        1,
        "the deleted client stays deleted"
    );
    let keys6 = ok_json(&tachi_gate(
        &["--data", data, "keys", "list", "--user", "6"],
        &[],
    ));
    assert_eq!(keys6, json!([]), "the revoked key stays revoked");
    let keys5 = ok_json(&tachi_gate(
        &["--data", data, "keys", "list", "--user", "5"],
        &[],
    ));
    assert_eq!(keys5, json!([]), "keys of the deleted client stay revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_import_goes_through_a_running_gate() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let gate = TestGate::start_on(
        &format!("[server]\nadmin_listen = \"127.0.0.1:{port}\"\nadmin_token = \"{TOKEN}\"\n"),
        &dir.path().join("store"),
        MockTachi::start().await,
    )
    .await;
    // 1000 keys: far over one request's 64 KiB.
    let lines: Vec<String> = (0..1000)
        .map(|i| json!({"userID": 100 + i % 7, "token": format!("{i:040x}"), "identifier": "bulk", "permissions": {"submit_score": true}, "fromAPIClient": null}).to_string())
        .collect();
    let file = dir.path().join("bulk.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let env = [("TACHI_GATE_ADMIN_TOKEN", TOKEN)];
    let admin_url = format!("http://127.0.0.1:{port}");
    let counts = ok_json(&tachi_gate(
        &[
            "--admin",
            &admin_url,
            "import",
            "--tokens",
            file.to_str().unwrap(),
        ],
        &env,
    ));
    assert_eq!(counts["keysAdded"], 1000);
    assert_eq!(
        gate.get_with_key("/x", &format!("{:040x}", 999))
            .await
            .status(),
        200
    );
}
