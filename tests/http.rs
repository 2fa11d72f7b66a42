//! The HTTP service in-process (tower `oneshot`, no listener, no MySQL): routing, auth in each
//! mode and role, bad input answered with a 4xx that names the problem, and the error shapes.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use baton::config::{AuthMode, Config, HttpToken, HttpUser, Role};
use baton::http::{auth, router, AppState};
use tower::ServiceExt;

struct Server {
    app: axum::Router,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn server(mode: AuthMode) -> Server {
    server_with(mode, true).await
}

async fn server_with(mode: AuthMode, orchestrator_routes: bool) -> Server {
    baton::init_crypto();
    let dir = std::env::temp_dir().join(format!("baton-http-{}", uuid::Uuid::new_v4().simple()));
    let mut cfg = Config::default();
    cfg.paths.data_dir = dir.join("data");
    cfg.paths.scripts_dir = dir.join("scripts");
    cfg.paths.hooks_dir = dir.join("hooks");
    cfg.scripts.policy = String::new();
    cfg.http.auth = mode;
    cfg.http.orchestrator_routes = orchestrator_routes;
    let mut users = BTreeMap::new();
    users.insert(
        "ops".to_string(),
        HttpUser { password_hash: auth::hash_password("ops-secret").unwrap(), role: Role::Admin },
    );
    users.insert(
        "viewer".to_string(),
        HttpUser { password_hash: auth::hash_password("view-secret").unwrap(), role: Role::Read },
    );
    cfg.http.users = users;
    let mut tokens = BTreeMap::new();
    tokens.insert("ci".to_string(), HttpToken { sha256: auth::token_digest("admin-token"), role: Role::Admin });
    tokens.insert("dash".to_string(), HttpToken { sha256: auth::token_digest("read-token"), role: Role::Read });
    cfg.http.tokens = tokens;
    let state = AppState::new(&cfg).await.unwrap();
    Server { app: router(state), _dir: TempDir(dir) }
}

struct Answer {
    status: StatusCode,
    body: serde_json::Value,
    www_authenticate: bool,
}

async fn call(s: &Server, method: Method, uri: &str, auth: Option<&str>, body: &str) -> Answer {
    let json = !body.is_empty() || matches!(method, Method::POST | Method::PUT);
    let headers: &[(&str, &str)] = if json { &[("content-type", "application/json")] } else { &[] };
    call_with(s, method, uri, auth, body, headers).await
}

async fn call_with(
    s: &Server,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = s.app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let www_authenticate = resp.headers().contains_key("www-authenticate");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    Answer { status, body, www_authenticate }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn basic_auth_roles_and_answers() {
    let s = server(AuthMode::Basic).await;
    let takeover = "/api/v1/clusters/nosuch/takeover";
    // No credentials, wrong password, unknown user: 401 with a challenge; nothing leaks.
    for a in [None, Some(basic("ops", "wrong")), Some(basic("nobody", "ops-secret")), Some("Basic !!!".to_string())] {
        let r = call(&s, Method::GET, "/api/v1/takeovers", a.as_deref(), "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{a:?}");
        assert!(r.www_authenticate);
        assert_eq!(r.body["error"]["code"], "unauthorized");
        assert!(!r.body.to_string().contains("secret"));
    }
    // A reader reads, and is forbidden to act (403, not 401), natively and on orchestrator's routes.
    let viewer = basic("viewer", "view-secret");
    assert_eq!(call(&s, Method::GET, "/api/v1/takeovers", Some(&viewer), "").await.status, StatusCode::OK);
    let r = call(&s, Method::POST, takeover, Some(&viewer), "{}").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("needs role admin"));
    for uri in [
        "/api/graceful-master-takeover/nosuch",
        "/api/register-candidate/db1/3306/prefer",
        "/api/end-downtime/db1/3306",
        "/api/v1/scripts/reload",
    ] {
        let method = if uri.ends_with("reload") { Method::POST } else { Method::GET };
        assert_eq!(call(&s, method, uri, Some(&viewer), "").await.status, StatusCode::FORBIDDEN, "{uri}");
    }
    // An admin gets through auth (and then a 404 for the unknown cluster).
    let ops = basic("ops", "ops-secret");
    let r = call(&s, Method::POST, takeover, Some(&ops), "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.body["error"]["check"], "unknown_cluster");
    // Twice (the second from the verified cache): same answer.
    assert_eq!(call(&s, Method::POST, takeover, Some(&ops), "{}").await.status, StatusCode::NOT_FOUND);
    // orchestrator-client's auth probe and the open routes.
    assert_eq!(call(&s, Method::HEAD, "/api", None, "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&s, Method::HEAD, "/api", Some(&viewer), "").await.status, StatusCode::OK);
    assert_eq!(call(&s, Method::GET, "/api/leader-check", Some(&viewer), "").await.body, "OK");
    assert_eq!(call(&s, Method::GET, "/healthz", None, "").await.status, StatusCode::OK);
    let m = call(&s, Method::GET, "/metrics", None, "").await;
    assert!(
        m.body.as_str().unwrap().contains("baton_http_requests_total{route=\"/api/v1/takeovers\",code=\"401\"}"),
        "{}",
        m.body
    );
}

#[tokio::test]
async fn token_auth_roles() {
    let s = server(AuthMode::Token).await;
    assert_eq!(call(&s, Method::GET, "/api/v1/takeovers", None, "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&s, Method::GET, "/api/v1/takeovers", Some("Bearer nope"), "").await.status,
        StatusCode::UNAUTHORIZED
    );
    // A basic header is not a token.
    assert_eq!(
        call(&s, Method::GET, "/api/v1/takeovers", Some(&basic("ops", "ops-secret")), "").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call(&s, Method::GET, "/api/v1/takeovers", Some("Bearer read-token"), "").await.status, StatusCode::OK);
    assert_eq!(
        call(&s, Method::POST, "/api/v1/scripts/reload", Some("Bearer read-token"), "").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&s, Method::POST, "/api/v1/scripts/reload", Some("bearer admin-token"), "").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn no_auth_is_refused_off_loopback() {
    let mut cfg = Config::default();
    cfg.http.listen = "0.0.0.0:3000".into();
    let e = baton::http::serve(&cfg, None).await.unwrap_err().to_string();
    assert!(e.contains("allowed only on a loopback address"), "{e}");
}

#[tokio::test]
async fn bad_input_gets_a_4xx_naming_the_problem() {
    let s = server(AuthMode::None).await;
    let cases: &[(Method, &str, &str, StatusCode, &str)] = &[
        (Method::GET, "/api/v1/instances/db1/0", "", StatusCode::BAD_REQUEST, "'0' is not a port number"),
        (Method::GET, "/api/v1/instances/db1/70000", "", StatusCode::BAD_REQUEST, "'70000' is not a port number"),
        (Method::GET, "/api/v1/instances/db%20one/3306", "", StatusCode::BAD_REQUEST, "host"),
        (Method::GET, "/api/v1/clusters/bad!name", "", StatusCode::BAD_REQUEST, "cluster 'bad!name'"),
        (Method::POST, "/api/v1/clusters/main/takeover", "{", StatusCode::BAD_REQUEST, "request body"),
        (
            Method::POST,
            "/api/v1/clusters/main/takeover",
            r#"{"autoo": true}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `autoo`",
        ),
        (Method::POST, "/api/v1/clusters/main/takeover", r#"{"auto": "yes"}"#, StatusCode::BAD_REQUEST, "invalid type"),
        (
            Method::POST,
            "/api/v1/clusters/main/takeover",
            r#"{"designated": "db1"}"#,
            StatusCode::BAD_REQUEST,
            "designated: 'db1' is not host:port",
        ),
        (
            Method::POST,
            "/api/v1/clusters/main/takeover",
            r#"{"expected_master": "db1:x"}"#,
            StatusCode::BAD_REQUEST,
            "expected_master",
        ),
        (
            Method::POST,
            "/api/v1/clusters/main/takeover",
            "{}",
            StatusCode::NOT_FOUND,
            "neither host:port nor a known cluster",
        ),
        (Method::GET, "/api/v1/takeovers?limit=0", "", StatusCode::BAD_REQUEST, "limit '0'"),
        (Method::GET, "/api/v1/takeovers/not-an-id!", "", StatusCode::BAD_REQUEST, "takeover id"),
        (Method::GET, "/api/v1/takeovers/abc123", "", StatusCode::NOT_FOUND, "no takeover with id abc123"),
        (Method::GET, "/api/v1/takeovers/abc123/events", "", StatusCode::NOT_FOUND, "no takeover with id abc123"),
        (Method::POST, "/api/v1/takeovers/abc123/resume", "", StatusCode::NOT_FOUND, "no takeover with id abc123"),
        (
            Method::POST,
            "/api/v1/takeovers/abc123/explode",
            "",
            StatusCode::NOT_FOUND,
            "no action 'explode' (recover, resume, abort)",
        ),
        (
            Method::PUT,
            "/api/v1/instances/db1/3306/promotion-rule",
            r#"{"rule": "always"}"#,
            StatusCode::BAD_REQUEST,
            "'always' is not a promotion rule",
        ),
        (
            Method::PUT,
            "/api/v1/instances/db1/3306/downtime",
            r#"{"owner": "me", "reason": "", "duration_s": 60}"#,
            StatusCode::BAD_REQUEST,
            "must not be empty",
        ),
        (Method::DELETE, "/api/v1/instances/db1/3306/downtime", "", StatusCode::NOT_FOUND, "db1:3306 is not downtimed"),
        (Method::GET, "/api/v1/nothing-here", "", StatusCode::NOT_FOUND, "no such route"),
        (Method::GET, "/api/begin-downtime/db1/3306/me/maint/5years", "", StatusCode::BAD_REQUEST, "duration '5years'"),
        (
            Method::GET,
            "/api/register-candidate/db1/3306/sometimes",
            "",
            StatusCode::BAD_REQUEST,
            "not a promotion rule",
        ),
        (
            Method::GET,
            "/api/graceful-master-takeover/db1/notaport",
            "",
            StatusCode::BAD_REQUEST,
            "'notaport' is not a port number",
        ),
        (
            Method::GET,
            "/api/graceful-master-takeover-auto/nosuch",
            "",
            StatusCode::INTERNAL_SERVER_ERROR,
            "neither host:port nor a known cluster",
        ),
    ];
    for (method, uri, body, status, expect) in cases {
        let r = call(&s, method.clone(), uri, None, body).await;
        assert_eq!(r.status, *status, "{method} {uri} {body}: {}", r.body);
        let msg = if uri.starts_with("/api/v1") || !uri.starts_with("/api/") {
            assert!(r.body["error"]["code"].as_str().is_some(), "{uri}: {}", r.body);
            r.body["error"]["message"].as_str().unwrap().to_string()
        } else {
            assert_eq!(r.body["Code"], "ERROR", "{uri}: {}", r.body);
            assert!(r.body.get("Details").is_some());
            r.body["Message"].as_str().unwrap().to_string()
        };
        assert!(msg.contains(expect), "{method} {uri}: '{msg}' lacks '{expect}'");
    }
    // A body over the limit is refused before it is read.
    let big = format!("{{\"auto\": true, \"pad\": \"{}\"}}", "x".repeat(100_000));
    assert_eq!(
        call(&s, Method::POST, "/api/v1/clusters/main/takeover", None, &big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Writes that are well-formed work without a server.
    let r = call(
        &s,
        Method::PUT,
        "/api/v1/instances/db1/3306/promotion-rule",
        None,
        r#"{"rule": "prefer", "duration_s": 600}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["rule"], "prefer");
    assert_eq!(
        call(&s, Method::DELETE, "/api/v1/instances/db1/3306/promotion-rule", None, "").await.status,
        StatusCode::NO_CONTENT
    );
    let r = call(&s, Method::GET, "/api/begin-downtime/db1/3306/me/maint/30m", None, "").await;
    assert_eq!((r.status, r.body["Code"].as_str()), (StatusCode::OK, Some("OK")));
    assert_eq!(r.body["Details"], serde_json::json!({"Hostname": "db1", "Port": 3306}));
    assert_eq!(
        call(&s, Method::DELETE, "/api/v1/instances/db1/3306/downtime", None, "").await.status,
        StatusCode::NO_CONTENT
    );
    let r = call(&s, Method::GET, "/api/v1/scripts", None, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["version"]["id"].as_str().is_some());
}

#[tokio::test]
async fn orchestrator_routes_can_be_switched_off() {
    let s = server_with(AuthMode::None, false).await;
    for uri in ["/api/clusters", "/api/leader-check", "/api/graceful-master-takeover/x"] {
        let r = call(&s, Method::GET, uri, None, "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.body["error"]["code"], "not_found");
    }
    assert_eq!(call(&s, Method::GET, "/api/v1/takeovers", None, "").await.status, StatusCode::OK);
}

/// Trust boundary: a web page cannot drive a change (issue 13, item 6). With auth `none` on
/// loopback, a `text/plain` POST, a foreign Origin, or Sec-Fetch-Site cross-site is refused on
/// every state-changing route, orchestrator's GET routes included; curl-style clients pass.
#[tokio::test]
async fn cross_site_requests_are_refused() {
    let s = server(AuthMode::None).await;
    let takeover = "/api/v1/clusters/nosuch/takeover";
    let body = r#"{"auto":true}"#;
    let plain = [("content-type", "text/plain")];
    let r = call_with(&s, Method::POST, takeover, None, body, &plain).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("application/json"));
    let r = call_with(&s, Method::POST, takeover, None, "", &[]).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let foreign = [("content-type", "application/json"), ("host", "127.0.0.1:3000"), ("origin", "http://evil.example")];
    let r = call_with(&s, Method::POST, takeover, None, body, &foreign).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("evil.example"));
    let fetch = [("content-type", "application/json"), ("sec-fetch-site", "cross-site")];
    assert_eq!(call_with(&s, Method::POST, takeover, None, body, &fetch).await.status, StatusCode::FORBIDDEN);
    // orchestrator's GET takeover route, as an <img> on another site would request it.
    for uri in [
        "/api/graceful-master-takeover-auto/nosuch",
        "/api/begin-downtime/db1/3306/me/why",
        "/api/register-candidate/db1/3306/prefer",
    ] {
        let img = [("sec-fetch-site", "cross-site")];
        assert_eq!(call_with(&s, Method::GET, uri, None, "", &img).await.status, StatusCode::FORBIDDEN, "{uri}");
        let img = [("origin", "http://evil.example"), ("host", "127.0.0.1:3000")];
        assert_eq!(call_with(&s, Method::GET, uri, None, "", &img).await.status, StatusCode::FORBIDDEN, "{uri}");
    }
    // Reads stay open to pages (nothing changes), and a same-origin or header-less client passes.
    let r = call_with(&s, Method::GET, "/api/v1/takeovers", None, "", &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let same = [("content-type", "application/json"), ("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000")];
    assert_eq!(call_with(&s, Method::POST, takeover, None, body, &same).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&s, Method::POST, takeover, None, body).await.status, StatusCode::NOT_FOUND);
    let r = call(&s, Method::GET, "/api/graceful-master-takeover-auto/nosuch", None, "").await;
    assert_eq!(r.body["Code"], "ERROR", "orchestrator-client's request reaches the route: {}", r.body);
    assert_eq!(call(&s, Method::GET, "/healthz", None, "").await.status, StatusCode::OK);
}

/// Trust boundary: durations that overflow or make no sense are 400 naming the field (issue 13,
/// item 7); "forever" is a rule without `duration_s`.
#[tokio::test]
async fn bad_durations_are_refused() {
    let s = server(AuthMode::None).await;
    let rule = "/api/v1/instances/db1/3306/promotion-rule";
    for d in ["18446744073709551615", "0", "400000000"] {
        let r = call(&s, Method::PUT, rule, None, &format!(r#"{{"rule":"must_not","duration_s":{d}}}"#)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{d}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("duration_s"), "{}", r.body);
        let r = call(
            &s,
            Method::PUT,
            "/api/v1/instances/db1/3306/downtime",
            None,
            &format!(r#"{{"owner":"me","reason":"r","duration_s":{d}}}"#),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{d}: {}", r.body);
    }
    let r = call(&s, Method::PUT, rule, None, r#"{"rule":"must_not","duration_s":-5}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for d in ["99999999999999999999d", "9999999999999999d", "0"] {
        let r = call(&s, Method::GET, &format!("/api/begin-downtime/db1/3306/me/why/{d}"), None, "").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{d}: {}", r.body);
    }
    // Forever: no duration; a rule that lasts is listed without an expiry.
    let r = call(&s, Method::PUT, rule, None, r#"{"rule":"must_not"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["until"].is_null());
    let r = call(&s, Method::PUT, rule, None, r#"{"rule":"must_not","duration_s":3600}"#).await;
    assert!(r.body["until"].as_i64().unwrap() > baton::store::now_unix());
}

/// Moving an alias is an admin action with a JSON body; an unknown cluster is 404.
#[tokio::test]
async fn moving_an_alias_needs_admin() {
    let s = server(AuthMode::Basic).await;
    let viewer = basic("viewer", "view-secret");
    let ops = basic("ops", "ops-secret");
    let r = call(&s, Method::PUT, "/api/v1/aliases/prod", Some(&viewer), r#"{"cluster":"db1:3306"}"#).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&s, Method::PUT, "/api/v1/aliases/prod", Some(&ops), r#"{"cluster":"db1:3306"}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("db1:3306"));
    let r = call(&s, Method::PUT, "/api/v1/aliases/prod", Some(&ops), r#"{"to":"db1:3306"}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Issue 11, items 1 and 3: an orchestrator command Baton does not serve answers an error in
/// orchestrator's shape (so orchestrator-client exits 1 with the message), failovers say that
/// Baton does graceful takeovers only, and a served command with bad arguments says its form.
#[tokio::test]
async fn unsupported_orchestrator_commands_are_loud() {
    let s = server(AuthMode::None).await;
    for (uri, expect) in [
        ("/api/make-co-master/db1/3306", "make-co-master: not supported by Baton"),
        ("/api/take-siblings/db1/3306", "take-siblings: not supported by Baton"),
        ("/api/tags/db1/3306", "tags: not supported by Baton"),
        ("/api/recover/db1/3306", "graceful master takeovers only"),
        ("/api/force-master-failover/db1/3306", "graceful master takeovers only"),
        ("/api/instance/db1", "instance: bad arguments (Baton serves it as instance/{host}/{port})"),
    ] {
        let r = call(&s, Method::GET, uri, None, "").await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {}", r.body);
        assert_eq!(r.body["Code"], "ERROR", "{uri}");
        assert!(r.body["Message"].as_str().unwrap().contains(expect), "{uri}: {}", r.body);
        assert!(r.body["Details"].is_null());
    }
    // The native API keeps its own shape.
    let r = call(&s, Method::GET, "/api/v1/nosuch", None, "").await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

/// The real orchestrator-client (orchestrator's own script, read from ../shared) exits non-zero
/// with Baton's message for a command Baton does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_client_fails_loudly_on_unsupported_commands() {
    let client =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/orchestrator/orchestrator-client");
    let tools = ["bash", "curl", "jq"]
        .iter()
        .all(|t| std::process::Command::new("which").arg(t).output().is_ok_and(|o| o.status.success()));
    if !client.is_file() || !tools {
        eprintln!("SKIPPED: needs {} and bash, curl, jq", client.display());
        return;
    }
    let s = server(AuthMode::None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = baton::http::listen::ConnLimits {
        max_connections: 64,
        header_read_timeout: std::time::Duration::from_secs(10),
    };
    tokio::spawn(baton::http::listen::serve(listener, s.app.clone(), limits, std::future::pending()));
    for (command, expect) in
        [("make-co-master", "not supported by Baton"), ("recover", "graceful master takeovers only")]
    {
        let out = tokio::process::Command::new("bash")
            .arg(&client)
            .args(["-c", command, "-i", "127.0.0.1:3306"])
            .env("ORCHESTRATOR_API", format!("http://{addr}/api"))
            .output()
            .await
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{command}: exit 0: {text}");
        assert!(text.contains(expect), "{command}: {text}");
    }
}
