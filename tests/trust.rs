//! Trust boundaries against hostile servers and callers (issue 13): a fake MySQL server that asks
//! for the password in full gets nothing it can decrypt, a pinned key is the only key used, and a
//! read-role caller cannot make Baton connect to a server it does not know.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use baton::config::{AuthMode, Config, HttpUser, Role};
use baton::http::{auth, router, AppState};
use baton::mysql::Connector;
use baton::topology::InstanceKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

const NONCE: &[u8; 20] = b"ABCDEFGHIJKLMNOPQRST";

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    /// Everything the client sent after the server asked for full authentication.
    after_full_auth: Vec<u8>,
}

async fn write_packet(s: &mut TcpStream, seq: u8, payload: &[u8]) {
    let mut buf = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    buf.push(seq);
    buf.extend_from_slice(payload);
    s.write_all(&buf).await.unwrap();
}

async fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.ok()?;
    Some((head[3], p))
}

fn greeting() -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(b"8.0.36-fake\0");
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(&NONCE[..8]);
    p.push(0);
    p.extend_from_slice(&0xf7ffu16.to_le_bytes()); // no CLIENT_SSL
    p.push(0xff);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&0x003fu16.to_le_bytes()); // plugin auth, connect attrs, lenenc data
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&NONCE[8..]);
    p.push(0);
    p.extend_from_slice(b"caching_sha2_password\0");
    p
}

/// A server that speaks the handshake as a hostile MySQL 8 would: full authentication requested,
/// then (if asked) its own RSA key, and it keeps whatever the client sends.
async fn fake_server(attacker_pem: Vec<u8>) -> (InstanceKey, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let key = InstanceKey::new("127.0.0.1", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else { return };
            s.lock().unwrap().connections += 1;
            let (s, pem) = (s.clone(), attacker_pem.clone());
            tokio::spawn(async move {
                write_packet(&mut c, 0, &greeting()).await;
                let Some((seq, _response)) = read_packet(&mut c).await else { return };
                write_packet(&mut c, seq + 1, &[0x01, 0x04]).await;
                while let Ok(Some((seq, p))) = tokio::time::timeout(Duration::from_secs(2), read_packet(&mut c)).await {
                    s.lock().unwrap().after_full_auth.extend_from_slice(&p);
                    if p == [0x02] {
                        // The client asks for "the server's" public key: the attacker's.
                        let mut k = vec![0x01];
                        k.extend_from_slice(&pem);
                        write_packet(&mut c, seq + 1, &k).await;
                    } else {
                        let mut err = vec![0xff];
                        err.extend_from_slice(&1045u16.to_le_bytes());
                        err.extend_from_slice(b"#28000Access denied");
                        write_packet(&mut c, seq + 1, &err).await;
                        return;
                    }
                }
            });
        }
    });
    (key, seen)
}

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// An RSA key pair in `dir`: private.pem, public.pem.
fn rsa_pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (private, public) = (format!("{name}-private.pem"), format!("{name}-public.pem"));
    openssl(&["genrsa", "-out", &private, "2048"], dir);
    openssl(&["rsa", "-in", &private, "-pubout", "-out", &public], dir);
    (dir.join(private), dir.join(public))
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("baton-trust-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Item 1: a server that asks for the password in full over plain TCP gets an error and not one
/// byte more; with the server's key pinned it gets the password encrypted with that key only.
#[tokio::test]
async fn a_fake_server_never_gets_a_password_it_can_decrypt() {
    baton::init_crypto();
    let dir = temp_dir();
    let (_attacker_private, attacker_public) = rsa_pair(&dir, "attacker");
    let (fake, seen) = fake_server(std::fs::read(&attacker_public).unwrap()).await;

    let mut cfg = Config::default();
    cfg.topology.password = baton::config::Secret::new("topsecret-pw");
    let conn = Connector::new(&cfg);
    let e = baton::mysql::probe(&conn, &fake).await.unwrap_err().to_string();
    assert!(e.contains("Baton refused to send the password") && e.contains("pinned_rsa_keys"), "{e}");
    assert!(!e.contains("topsecret"), "{e}");
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.connections, 1);
        assert!(s.after_full_auth.is_empty(), "the client sent {:?} after the full-auth request", s.after_full_auth);
    }

    // Pinned: the server's own key (the fake holds its private half) encrypts the password; the
    // attacker's key offered on the wire is never asked for.
    let (server_private, server_public) = rsa_pair(&dir, "server");
    let mut pinned = cfg.clone();
    pinned.topology.pinned_rsa_keys = BTreeMap::from([("*".to_string(), server_public)]);
    let (fake2, seen2) = fake_server(std::fs::read(&attacker_public).unwrap()).await;
    let conn = Connector::new(&pinned);
    let e = baton::mysql::probe(&conn, &fake2).await.unwrap_err().to_string();
    assert!(e.contains("Access denied"), "{e}");
    let blob = seen2.lock().unwrap().after_full_auth.clone();
    assert_eq!(blob.len(), 256, "one RSA-2048 block, no key request before it");
    std::fs::write(dir.join("blob"), &blob).unwrap();
    let plain = openssl(
        &[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            server_private.to_str().unwrap(),
            "-in",
            "blob",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
        ],
        &dir,
    );
    let password: Vec<u8> = plain.iter().enumerate().map(|(i, b)| b ^ NONCE[i % NONCE.len()]).collect();
    assert_eq!(password, b"topsecret-pw\0");
    // The attacker's key cannot read it.
    let attacker = std::process::Command::new("openssl")
        .args([
            "pkeyutl",
            "-decrypt",
            "-inkey",
            "attacker-private.pem",
            "-in",
            "blob",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!attacker.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 1: a read-role caller names a server Baton does not know: 403, and the server is never
/// even connected to. An admin may reach it (and the guard still sends no password).
#[tokio::test]
async fn a_reader_cannot_point_baton_at_a_new_server() {
    baton::init_crypto();
    let dir = temp_dir();
    let (_, public) = rsa_pair(&dir, "attacker");
    let (fake, seen) = fake_server(std::fs::read(&public).unwrap()).await;
    let mut cfg = Config::default();
    cfg.paths.data_dir = dir.join("data");
    cfg.paths.scripts_dir = dir.join("scripts");
    cfg.paths.hooks_dir = dir.join("hooks");
    cfg.scripts.policy = String::new();
    cfg.http.auth = AuthMode::Basic;
    cfg.http.users = BTreeMap::from([
        (
            "viewer".to_string(),
            HttpUser { password_hash: auth::hash_password("view-secret").unwrap(), role: Role::Read },
        ),
        ("ops".to_string(), HttpUser { password_hash: auth::hash_password("ops-secret").unwrap(), role: Role::Admin }),
    ]);
    let app = router(AppState::new(&cfg).await.unwrap());
    let call = |user: &str, pw: &str, uri: String| {
        let app = app.clone();
        let a = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}")));
        async move {
            let req = Request::builder().uri(uri).header("authorization", a).body(Body::empty()).unwrap();
            let r = app.oneshot(req).await.unwrap();
            let status = r.status();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (h, p) = (fake.host.clone(), fake.port);
    for uri in [
        format!("/api/v1/instances/{h}/{p}"),
        format!("/api/v1/clusters/{h}:{p}"),
        format!("/api/instance/{h}/{p}"),
        format!("/api/cluster/{h}:{p}"),
        format!("/api/topology/{h}:{p}"),
        format!("/api/instance-replicas/{h}/{p}"),
    ] {
        let (status, body) = call("viewer", "view-secret", uri.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
        assert!(body.contains("admin action"), "{uri}: {body}");
    }
    assert_eq!(seen.lock().unwrap().connections, 0, "a reader's request reached the server");
    let (status, body) = call("ops", "ops-secret", format!("/api/v1/instances/{h}/{p}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("refused to send the password") && !body.contains("baton\\u0000"), "{body}");
    assert_eq!(seen.lock().unwrap().connections, 1);
    assert!(seen.lock().unwrap().after_full_auth.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `discovery.allowed`: CIDRs and host patterns, and nothing else.
#[test]
fn allowed_patterns() {
    use baton::discovery::Reach;
    let p = |s: &str| Reach::parse_pattern(s).unwrap();
    assert!(p("10.0.0.0/8").matches("10.1.2.3"));
    assert!(!p("10.0.0.0/8").matches("11.1.2.3"));
    assert!(p("10.0.0.3").matches("10.0.0.3") && !p("10.0.0.3").matches("10.0.0.38"));
    assert!(p("192.168.1.0/25").matches("192.168.1.127") && !p("192.168.1.0/25").matches("192.168.1.128"));
    assert!(p("*.db.example.com").matches("a.db.example.com") && !p("*.db.example.com").matches("db.example.com.evil"));
    assert!(p("db-*").matches("DB-7") && !p("db-*").matches("xdb-7"));
    assert!(p("::1/128").matches("::1"));
    for bad in ["*", "10.0.0.0/33", "a b", "", "10.0.0.0/x"] {
        assert!(Reach::parse_pattern(bad).is_err(), "{bad}");
    }
}

/// A `baton serve` in this process on a free port (the real connection loop), with `cfg`.
async fn serve(cfg: Config) -> (String, tokio::task::JoinHandle<()>) {
    let state = AppState::new(&cfg).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let limits = baton::http::listen::ConnLimits {
        max_connections: cfg.http.max_connections,
        header_read_timeout: Duration::from_millis(cfg.http.header_read_timeout_ms),
    };
    let task = tokio::spawn(baton::http::listen::serve(listener, router(state), limits, std::future::pending()));
    (base, task)
}

fn server_config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.paths.data_dir = dir.join("data");
    cfg.paths.scripts_dir = dir.join("scripts");
    cfg.paths.hooks_dir = dir.join("hooks");
    std::fs::create_dir_all(&cfg.paths.scripts_dir).unwrap();
    std::fs::create_dir_all(&cfg.paths.hooks_dir).unwrap();
    cfg.scripts.policy = String::new();
    cfg
}

/// Polls /healthz every 20 ms until stopped; returns the slowest answer.
fn healthz_poller(base: String) -> (Arc<std::sync::atomic::AtomicBool>, tokio::task::JoinHandle<Duration>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut worst = Duration::ZERO;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let t = std::time::Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(10), http.get(format!("{base}/healthz")).send()).await;
            assert!(matches!(&r, Ok(Ok(a)) if a.status() == 200), "healthz failed: {r:?}");
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worst
    });
    (stop, task)
}

/// Stops the poller; every /healthz answer came within the bound.
async fn assert_answered_throughout(
    stop: Arc<std::sync::atomic::AtomicBool>,
    poller: tokio::task::JoinHandle<Duration>,
) {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = poller.await.unwrap();
    eprintln!("slowest /healthz answer: {worst:?}");
    assert!(worst < HEALTHZ_BOUND, "/healthz took {worst:?} at worst");
}

/// The slowest /healthz answer may be noisy on a loaded 2-core machine; a frozen service would
/// not answer for seconds. The bound is generous on purpose (speed is for benchmarks).
const HEALTHZ_BOUND: Duration = Duration::from_millis(1000);

/// Item 3: hostile scripts loaded through the API fail their load, one by one, with an error
/// naming the limit; the service answers /healthz throughout, and a good version loads after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_cannot_freeze_the_service() {
    let dir = temp_dir();
    let mut cfg = server_config(&dir);
    cfg.scripts.hook_timeout_ms = 2000;
    let (base, _server) = serve(cfg.clone()).await;
    let (stop, poller) = healthz_poller(base.clone());
    let http = reqwest::Client::new();
    let hook = cfg.paths.hooks_dir.join("hostile.lua");
    for (code, expect) in [
        ("while true do pcall(function() pcall(function() coroutine.wrap(function() while true do end end)() end) end) end", "limit exceeded"),
        ("string.find(string.rep('a', 40), '.-.-.-.-.-.-.-.-b')", "backtracks"),
        ("setmetatable({}, { __gc = function() while true do end end })", "__gc"),
        ("local t = {} while true do t[#t + 1] = string.rep('x', 1024) end", "memory"),
        ("baton.sleep(60000)", "time limit exceeded"),
    ] {
        std::fs::write(&hook, format!("{code}\nreturn {{}}")).unwrap();
        let t = std::time::Instant::now();
        let r = http.post(format!("{base}/api/v1/scripts/reload")).header("content-type", "application/json").send().await.unwrap();
        assert_eq!(r.status(), 422, "{code}");
        let body: serde_json::Value = r.json().await.unwrap();
        let msg = body["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(expect), "{code}: {msg}");
        assert!(t.elapsed() < Duration::from_secs(8), "{code}: the reload took {:?}", t.elapsed());
    }
    // Two links to "." in the scripts directory: the reload does not walk them.
    std::os::unix::fs::symlink(".", cfg.paths.scripts_dir.join("loop1")).unwrap();
    std::os::unix::fs::symlink(".", cfg.paths.scripts_dir.join("loop2")).unwrap();
    std::fs::write(&hook, "return { pre_takeover = function(ctx) return true end }").unwrap();
    let r = http
        .post(format!("{base}/api/v1/scripts/reload"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_answered_throughout(stop, poller).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 9: a flood of wrong passwords neither stalls the service (argon2 runs two at a time, off
/// the async workers) nor keeps being checked (the address backs off, 429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_floods_back_off_and_do_not_stall() {
    let dir = temp_dir();
    let mut cfg = server_config(&dir);
    cfg.http.auth = AuthMode::Basic;
    cfg.http.users = BTreeMap::from([(
        "ops".to_string(),
        HttpUser { password_hash: auth::hash_password("right").unwrap(), role: Role::Admin },
    )]);
    let (base, _server) = serve(cfg).await;
    let (stop, poller) = healthz_poller(base.clone());
    let http = reqwest::Client::new();
    let attempts = (0..32).map(|i| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}/api/v1/takeovers"))
                .basic_auth("ops", Some(format!("wrong{i}")))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 429).count() > 0, "no back-off: {statuses:?}");
    // The address is backing off: even the right password waits.
    let r = http.get(format!("{base}/api/v1/takeovers")).basic_auth("ops", Some("right")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("retry in"));
    assert_answered_throughout(stop, poller).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 9: a connection that never finishes its headers is closed; connections past the cap are
/// closed at accept, and the service serves again once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_surplus_connections_are_closed() {
    let dir = temp_dir();
    let mut cfg = server_config(&dir);
    cfg.http.header_read_timeout_ms = 300;
    cfg.http.max_connections = 3;
    let (base, _server) = serve(cfg).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        idle.push(c);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A fourth is closed at once: no answer.
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("closed, not kept")
        .unwrap_or(0);
    assert_eq!(n, 0, "a connection past the cap was served");
    // The unfinished headers time out: each idle connection is closed by the server.
    for c in &mut idle {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("closed after the header timeout");
        assert!(matches!(n, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).contains("408"), "{n:?}");
    }
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}
