//! Real MariaDB topologies for the integration tests: one shared per test binary for tests that
//! only read, fresh ones for tests that change replication. Ports are chosen at run time.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use baton::config::Config;
use baton::mysql::{Connector, RowMap};
use baton::sandbox::{Sandbox, SandboxError, SandboxSpec};
use baton::topology::InstanceKey;

/// A running sandbox that is killed and removed when dropped.
pub struct Topology {
    pub sandbox: Sandbox,
    keep: bool,
}

impl Topology {
    pub fn cfg(&self) -> Config {
        self.sandbox.config()
    }
    pub fn master(&self) -> InstanceKey {
        self.sandbox.master()
    }
    pub fn replicas(&self) -> Vec<InstanceKey> {
        self.sandbox.keys()[1..].to_vec()
    }
    pub fn connector(&self) -> Connector {
        Connector::new(&self.cfg())
    }
}

fn random_base() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.write_u32(std::process::id());
    20000 + (h.finish() % 40000) as u16
}

fn test_dir() -> PathBuf {
    std::env::temp_dir().join(format!("baton-test-{}", uuid::Uuid::new_v4().simple()))
}

/// Starts a fresh 1+`replicas` topology on free ports.
pub async fn fresh(replicas: usize) -> Topology {
    baton::init_crypto();
    let dir = test_dir();
    for _ in 0..10 {
        let spec = SandboxSpec { dir: dir.clone(), base_port: random_base(), replicas, alias: None };
        match Sandbox::up(&spec).await {
            Ok(sandbox) => return Topology { sandbox, keep: false },
            Err(SandboxError::PortInUse(_)) => continue,
            Err(SandboxError::Start { reason, tail, .. }) if tail.contains("Address already in use") => {
                eprintln!("port race ({reason}); retrying");
                continue;
            }
            Err(e) => panic!("sandbox up: {e}"),
        }
    }
    panic!("no free port range found");
}

fn kill_all(sb: &Sandbox) {
    for i in &sb.instances {
        baton::sandbox::send_signal(i.pid, libc::SIGKILL);
    }
    let _ = std::fs::remove_dir_all(&sb.dir);
}

impl Drop for Topology {
    fn drop(&mut self) {
        if !self.keep {
            kill_all(&self.sandbox);
        }
    }
}

static SHARED: OnceLock<Sandbox> = OnceLock::new();

extern "C" fn kill_shared() {
    if let Some(sb) = SHARED.get() {
        kill_all(sb);
    }
}

/// The topology shared by the read-only tests of this binary (1+3), killed at process exit.
pub fn shared() -> Topology {
    let sb = SHARED.get_or_init(|| {
        // On a thread of its own: the caller may already be inside a tokio runtime.
        let sb = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let t = rt.block_on(fresh(3));
            let sb = t.sandbox.clone();
            std::mem::forget(t);
            sb
        })
        .join()
        .expect("shared topology");
        // SAFETY: registering a plain extern "C" function with atexit.
        unsafe { libc::atexit(kill_shared) };
        sb
    });
    Topology { sandbox: sb.clone(), keep: true }
}

/// Runs one statement and returns its rows.
pub async fn rows(conn: &Connector, key: &InstanceKey, sql: &str) -> Vec<RowMap> {
    conn.query(key, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn exec(conn: &Connector, key: &InstanceKey, sql: &str) {
    conn.query(key, sql).await.unwrap_or_else(|e| panic!("{key}: {sql}: {e}"));
}

pub fn baton_bin() -> &'static str {
    env!("CARGO_BIN_EXE_baton")
}

/// Accepts one HTTP request on `listener`, answers 200, and returns its head and body.
pub async fn one_http_request(listener: tokio::net::TcpListener) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the body announced by content-length is complete.
    loop {
        let n = sock.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if body.len() >= len {
                sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                return (head.to_string(), body.to_string());
            }
        }
        assert!(n > 0, "connection closed before the whole request arrived");
    }
}
