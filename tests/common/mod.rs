//! Real MariaDB topologies for the integration tests: one shared per test binary for tests that
//! only read, fresh ones for tests that change replication. Ports are chosen at run time.
#![allow(dead_code)]

#[allow(dead_code)]
pub mod netfault;
#[allow(dead_code)]
pub mod storefault;

use std::path::PathBuf;
use std::sync::OnceLock;

use baton::config::Config;
use baton::mysql::{Connector, RowMap};
use baton::sandbox::{Sandbox, SandboxError, SandboxSpec};
use baton::topology::{InstanceKey, ThreadState};

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

/// The cluster as it is now, discovered from every sandbox instance.
pub async fn live_cluster(t: &Topology) -> baton::topology::Cluster {
    let conn = t.connector();
    let c = baton::discovery::discover(&conn, &t.cfg(), &t.sandbox.keys()).await.unwrap();
    conn.close().await;
    c
}

/// The end state every fault must reach: exactly one writable instance, and every other member
/// replicating from it with the SQL thread running and the IO thread running or connecting
/// (`stopped_ok`: members whose replication may be configured but stopped). Returns the master.
pub async fn assert_one_master(t: &Topology, stopped_ok: &[&InstanceKey]) -> InstanceKey {
    use baton::topology::ThreadState;
    let c = live_cluster(t).await;
    let writable: Vec<InstanceKey> = c.writable_members().into_iter().cloned().collect();
    assert_eq!(writable.len(), 1, "exactly one writable instance, found {writable:?}: {c:#?}");
    let master = writable[0].clone();
    for m in c.members.iter().filter(|m| m.key != master) {
        let i = m.instance.as_ref().unwrap_or_else(|| panic!("{} unreachable", m.key));
        let r = i.replication.as_ref().unwrap_or_else(|| panic!("{} has no replication", m.key));
        assert_eq!(r.source, master, "{} replicates from {}, not the master {master}", m.key, r.source);
        assert!(!r.broken(), "{}: {:?}", m.key, r);
        if !stopped_ok.contains(&&m.key) {
            assert!(r.io_thread != ThreadState::No && r.sql_thread == ThreadState::Yes, "{}: {:?}", m.key, r);
        }
    }
    master
}

/// The relaxed end state after a fault that can leave a replica chained: exactly one writable
/// instance, and every other member replicating (not broken) through a chain that ends at it.
pub async fn assert_one_master_tree(t: &Topology) -> InstanceKey {
    let c = live_cluster(t).await;
    let writable: Vec<InstanceKey> = c.writable_members().into_iter().cloned().collect();
    assert_eq!(writable.len(), 1, "exactly one writable instance, found {writable:?}: {c:#?}");
    let master = writable[0].clone();
    for m in c.members.iter().filter(|m| m.key != master) {
        let mut at = m.key.clone();
        for _ in 0..c.members.len() {
            if at == master {
                break;
            }
            let r = c
                .instance(&at)
                .and_then(|i| i.replication.as_ref())
                .unwrap_or_else(|| panic!("{at} does not replicate: {c:#?}"));
            assert!(!r.broken(), "{at}: {r:?}");
            at = r.source.clone();
        }
        assert_eq!(at, master, "{} does not lead to the master {master}", m.key);
    }
    master
}

/// Every acknowledged row of `writer_id` is on every instance, once each replica has executed
/// the master's position. A marker row written first makes every replica fetch from the master,
/// so a replica still reconnecting after a fault has reconnected when this returns.
pub async fn assert_rows_everywhere(t: &Topology, master: &InstanceKey, writer_id: i64, acked: &[i64]) {
    use baton::mysql::ops;
    let conn = t.connector();
    let marker = 900_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as i64;
    exec(&conn, master, &format!("INSERT INTO app.writes (id, writer) VALUES ({marker}, 0)")).await;
    let pos = ops::own_position(&conn, master).await.unwrap();
    for k in t.sandbox.keys() {
        if k != *master {
            let d = conn.dialect(&k).await.unwrap();
            ops::wait_for_gtid(&conn, d.as_ref(), &k, &pos.gtid, std::time::Duration::from_secs(20)).await.unwrap();
        }
        let have: std::collections::HashSet<i64> =
            baton::mysql::workload::rows_of(&conn, &k, writer_id).await.unwrap().into_iter().collect();
        let missing: Vec<&i64> = acked.iter().filter(|id| !have.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{k} lacks {} acknowledged rows, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    conn.close().await;
}

/// A config file for the `baton` binary on this sandbox (no hooks, built-in policy).
pub fn config_file(t: &Topology) -> PathBuf {
    let dir = &t.sandbox.dir;
    let path = dir.join("baton-test.toml");
    let cfg = t.cfg();
    let text = format!(
        "[topology]\nuser = \"{}\"\npassword = \"{}\"\nread_timeout_ms = 2000\n[replication]\nuser = \"{}\"\npassword = \"{}\"\n\
         [takeover]\ncatchup_timeout_ms = 2000\n[paths]\ndata_dir = \"{}\"\nscripts_dir = \"{}\"\nhooks_dir = \"{}\"\n[scripts]\npolicy = \"\"\n",
        cfg.topology.user,
        cfg.topology.password.expose(),
        cfg.replication.user,
        cfg.replication.password.expose(),
        cfg.paths.data_dir.display(),
        dir.join("no-scripts").display(),
        dir.join("no-hooks").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Who replicates from whom, who is writable, whose threads run: what "unchanged" means.
pub async fn shape(t: &Topology) -> Vec<(String, Option<String>, bool, bool)> {
    let cfg = t.cfg();
    let conn = Connector::new(&cfg);
    let c = baton::discovery::discover(&conn, &cfg, &t.sandbox.keys()).await.unwrap();
    let mut v: Vec<_> = c
        .members
        .iter()
        .map(|m| {
            let i = m.instance.as_ref().expect("reachable");
            // Replicating: the SQL thread runs and the IO thread runs or is (re)connecting; right
            // after a rollback's START SLAVE the IO thread may not have connected yet.
            let running = i
                .replication
                .as_ref()
                .is_some_and(|r| r.sql_thread.running() && !matches!(r.io_thread, ThreadState::No) && !r.broken());
            (m.key.to_string(), m.source.as_ref().map(|s| s.to_string()), i.read_only, running)
        })
        .collect();
    v.sort();
    v
}

/// Polls `f` until it holds, for at most `limit` (no sleep stands in for synchronisation).
#[allow(dead_code)]
pub async fn wait_until<F, Fut>(what: &str, limit: std::time::Duration, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An event sink that runs `f` once, when `phase` starts (`finished` false) or ends (true).
pub fn at(
    phase: baton::engine::Phase,
    finished: bool,
    f: impl Fn() + Send + Sync + 'static,
) -> baton::engine::EventSink {
    use baton::engine::PhaseEvent;
    let fired = std::sync::atomic::AtomicBool::new(false);
    std::sync::Arc::new(move |ev: &PhaseEvent| {
        let hit = match ev {
            PhaseEvent::Started { phase: p, .. } => !finished && *p == phase,
            PhaseEvent::Finished { record, .. } => finished && record.name == phase,
        };
        if hit && !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            f();
        }
    })
}

/// Blocks `designated`'s SQL thread as the fence starts: a session on it takes a write lock on the
/// table the master writes to, and the master (as the admin) takes one more write (`id`), so the
/// catch-up inside the window cannot finish. Call `release` to unlock. Needs a multi-thread
/// runtime (the sink blocks its worker while another runs the statements).
pub struct FenceBlock {
    held: std::sync::Arc<tokio::sync::Mutex<mysql_async::Conn>>,
    blocker: std::sync::Arc<Connector>,
}

impl FenceBlock {
    pub async fn new(cfg: &Config, designated: &InstanceKey) -> FenceBlock {
        let blocker = std::sync::Arc::new(Connector::new(cfg));
        let held = std::sync::Arc::new(tokio::sync::Mutex::new(blocker.dedicated(designated).await.unwrap()));
        FenceBlock { held, blocker }
    }

    pub fn sink(&self, cfg: &Config, master: &InstanceKey, id: i64) -> baton::engine::EventSink {
        let (h, m, cfg) = (self.held.clone(), master.clone(), cfg.clone());
        at(baton::engine::Phase::Fence, false, move || {
            let (h, m, cfg, rt) = (h.clone(), m.clone(), cfg.clone(), tokio::runtime::Handle::current());
            std::thread::spawn(move || {
                rt.block_on(async {
                    use mysql_async::prelude::Queryable;
                    h.lock().await.query_drop("LOCK TABLES app.writes WRITE").await.unwrap();
                    exec(&Connector::new(&cfg), &m, &format!("INSERT INTO app.writes (id) VALUES ({id})")).await;
                })
            })
            .join()
            .unwrap();
        })
    }

    pub async fn release(self) {
        use mysql_async::prelude::Queryable;
        self.held.lock().await.query_drop("UNLOCK TABLES").await.unwrap();
        self.blocker.close().await;
    }
}

/// Short limits, so that a hung server costs seconds, not minutes (the fault and network drills).
pub fn fast(cfg: &Config) -> Config {
    let mut c = cfg.clone();
    c.topology.read_timeout_ms = 1500;
    c.topology.connect_timeout_ms = 500;
    c.takeover.catchup_timeout_ms = 1500;
    c.takeover.fence_lock_wait_s = 1;
    c.takeover.unfence_retry_ms = 2000;
    c
}
