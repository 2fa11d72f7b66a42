//! Real replication topologies on one machine: N+1 `mariadbd` processes on consecutive loopback
//! ports, the first the master, the others replicating from it with MariaDB GTID.
//!
//! Fast by construction: one template datadir (made once per MariaDB version and cached in the
//! temp directory), copied per instance; all instances started at once; readiness taken from the
//! server's own `READY=1` notification (sd_notify on a socket of ours), not from sleeping.

pub mod etcd;
pub mod haproxy;
mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::config::{Config, Secret};
use crate::mysql::{Connector, SourcePosition, SourceSpec};
use crate::topology::InstanceKey;

pub use process::{pid_alive, send_signal, wait_exit};

/// A loopback port nobody listens on right now (for the components the tests start).
pub(crate) fn free_port() -> Result<u16, SandboxError> {
    let io = |source| SandboxError::Io { path: PathBuf::from("127.0.0.1:0"), source };
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(l.local_addr().map_err(io)?.port())
}

/// Accounts every sandbox has.
pub const ADMIN_USER: (&str, &str) = ("baton", "baton");
pub const REPL_USER: (&str, &str) = ("repl", "repl");
/// The application user: no SUPER, no READ ONLY ADMIN, so read_only stops its writes.
pub const APP_USER: (&str, &str) = ("app", "app");

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("mariadbd was not found on PATH or in /usr/sbin: install it with `apt-get install mariadb-server`")]
    NoMariadb,
    #[error("{dir}: a sandbox is already running there (pids {pids:?}); `baton sandbox down --dir {dir}` first")]
    AlreadyRunning { dir: PathBuf, pids: Vec<u32> },
    #[error("{dir}: no sandbox here (no sandbox.json)")]
    NotFound { dir: PathBuf },
    #[error("port {0} on 127.0.0.1 is already in use")]
    PortInUse(u16),
    #[error("--replicas {replicas} from --base-port {base}: ports past 65535")]
    PortRange { base: u16, replicas: usize },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("initialising the template datadir failed: {0}")]
    Init(String),
    #[error("instance 127.0.0.1:{port} did not start: {reason}; last lines of {log}:\n{tail}")]
    Start { port: u16, reason: String, log: PathBuf, tail: String },
    #[error("setting up replication: {0}")]
    Setup(#[from] crate::mysql::SqlError),
    #[error("sandbox.json in {dir}: {message}")]
    State { dir: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io { path: path.to_path_buf(), source }
}

/// One instance of a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxInstance {
    pub port: u16,
    pub server_id: u32,
    pub pid: u32,
    pub dir: PathBuf,
}

impl SandboxInstance {
    pub fn key(&self) -> InstanceKey {
        InstanceKey::new("127.0.0.1", self.port)
    }
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }
    fn cnf(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }
}

/// A running (or stopped) sandbox, as recorded in `DIR/sandbox.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    pub dir: PathBuf,
    pub base_port: u16,
    pub alias: String,
    pub mariadbd: PathBuf,
    pub instances: Vec<SandboxInstance>,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub dir: PathBuf,
    pub base_port: u16,
    pub replicas: usize,
    /// Written to the replicated `meta.cluster` row; default `sandbox-<base port>`.
    pub alias: Option<String>,
}

const STATE_FILE: &str = "sandbox.json";
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn find_mariadbd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("mariadbd"))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The SQL run once into the template: accounts, the alias table and the application schema.
fn template_sql() -> String {
    let (au, ap) = ADMIN_USER;
    let (ru, rp) = REPL_USER;
    let (pu, pp) = APP_USER;
    format!(
        "FLUSH PRIVILEGES;\n\
         CREATE USER '{au}'@'%' IDENTIFIED BY '{ap}';\n\
         GRANT ALL PRIVILEGES ON *.* TO '{au}'@'%' WITH GRANT OPTION;\n\
         CREATE USER '{ru}'@'%' IDENTIFIED BY '{rp}';\n\
         GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{ru}'@'%';\n\
         CREATE DATABASE meta;\n\
         CREATE TABLE meta.cluster (anchor TINYINT NOT NULL PRIMARY KEY, alias VARCHAR(128) NOT NULL) ENGINE=InnoDB;\n\
         CREATE DATABASE app;\n\
         CREATE TABLE app.writes (id BIGINT NOT NULL PRIMARY KEY, writer INT NOT NULL DEFAULT 0, \
           at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;\n\
         CREATE USER '{pu}'@'%' IDENTIFIED BY '{pp}';\n\
         GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX ON app.* TO '{pu}'@'%';\n\
         GRANT SELECT ON meta.* TO '{pu}'@'%';\n"
    )
}

/// Server settings shared by the template and every instance.
fn common_cnf() -> String {
    let mut s = String::from(
        "innodb_buffer_pool_size = 24M\n\
         innodb_log_file_size = 8M\n\
         innodb_data_file_path = ibdata1:4M:autoextend\n\
         innodb_flush_log_at_trx_commit = 2\n\
         performance_schema = OFF\n\
         skip_name_resolve = ON\n\
         character_set_server = utf8mb4\n",
    );
    if is_root() {
        s.push_str("user = root\n");
    }
    s
}

/// The template datadir for this mariadbd, made once and reused (keyed by binary and SQL).
fn template(mariadbd: &Path) -> Result<PathBuf, SandboxError> {
    use sha2::{Digest, Sha256};
    let version = std::process::Command::new(mariadbd).arg("--version").output().map_err(io_err(mariadbd))?;
    let mut h = Sha256::new();
    h.update(&version.stdout);
    h.update(template_sql());
    h.update(common_cnf());
    let digest = format!("{:x}", h.finalize());
    let root = std::env::temp_dir().join(format!("baton-template-{}", &digest[..16]));
    if root.join("data").join("mysql").is_dir() {
        return Ok(root.join("data"));
    }
    // Build beside, then rename: concurrent builders never see a half-made template.
    let tmp = std::env::temp_dir().join(format!("baton-template-{}.{}", &digest[..16], std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let cnf = tmp.join("my.cnf");
    std::fs::write(&cnf, format!("[mariadbd]\n{}", common_cnf())).map_err(io_err(&cnf))?;
    let extra = tmp.join("template.sql");
    std::fs::write(&extra, template_sql()).map_err(io_err(&extra))?;
    let mut cmd = std::process::Command::new("mariadb-install-db");
    cmd.arg(format!("--defaults-file={}", cnf.display()))
        .arg(format!("--datadir={}", tmp.join("data").display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg("--skip-name-resolve")
        .arg(format!("--extra-file={}", extra.display()));
    if is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd.output().map_err(|e| SandboxError::Init(format!("running mariadb-install-db: {e}")))?;
    if !out.status.success() {
        return Err(SandboxError::Init(format!(
            "mariadb-install-db exited with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    match std::fs::rename(&tmp, &root) {
        Ok(()) => {}
        Err(_) if root.join("data").join("mysql").is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp); // another builder won the race
        }
        Err(e) => return Err(SandboxError::Io { path: root, source: e }),
    }
    Ok(root.join("data"))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(to).map_err(io_err(to))?;
    for entry in std::fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io_err(&entry.path()))?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io_err(&target))?;
        }
    }
    Ok(())
}

fn instance_cnf(dir: &Path, port: u16, server_id: u32) -> String {
    format!(
        "[mariadbd]\n\
         datadir = {data}\n\
         port = {port}\n\
         bind_address = 127.0.0.1\n\
         socket = {dir}/mysqld.sock\n\
         pid_file = {dir}/mysqld.pid\n\
         log_error = {dir}/error.log\n\
         server_id = {server_id}\n\
         log_bin = mysql-bin\n\
         relay_log = relay-bin\n\
         log_slave_updates = ON\n\
         binlog_format = ROW\n\
         gtid_strict_mode = ON\n\
         report_host = 127.0.0.1\n\
         report_port = {port}\n\
         read_only = ON\n\
         slave_net_timeout = 5\n\
         max_connections = 300\n\
         {common}",
        data = dir.join("data").display(),
        dir = dir.display(),
        common = common_cnf(),
    )
}

impl Sandbox {
    /// Reads `DIR/sandbox.json`.
    pub fn load(dir: &Path) -> Result<Sandbox, SandboxError> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SandboxError::NotFound { dir: dir.to_path_buf() })
            }
            Err(e) => return Err(SandboxError::Io { path, source: e }),
        };
        serde_json::from_str(&text).map_err(|e| SandboxError::State { dir: dir.to_path_buf(), message: e.to_string() })
    }

    fn save(&self) -> Result<(), SandboxError> {
        let path = self.dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).expect("sandbox state serializes");
        std::fs::write(&path, text).map_err(io_err(&path))
    }

    pub fn master(&self) -> InstanceKey {
        self.instances[0].key()
    }

    pub fn keys(&self) -> Vec<InstanceKey> {
        self.instances.iter().map(|i| i.key()).collect()
    }

    pub fn instance(&self, port: u16) -> Option<&SandboxInstance> {
        self.instances.iter().find(|i| i.port == port)
    }

    /// A configuration pointing at this sandbox's accounts, for tools and tests.
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.topology.user = ADMIN_USER.0.into();
        c.topology.password = Secret::new(ADMIN_USER.1);
        c.replication.user = REPL_USER.0.into();
        c.replication.password = Secret::new(REPL_USER.1);
        c.paths.data_dir = self.dir.join("baton-data");
        c.origin = format!("sandbox {}", self.dir.display());
        c
    }

    /// Starts the sandbox described by `spec`.
    pub async fn up(spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let started = Instant::now();
        let mariadbd = find_mariadbd().ok_or(SandboxError::NoMariadb)?;
        let dir = std::path::absolute(&spec.dir).map_err(io_err(&spec.dir))?;
        if let Ok(old) = Sandbox::load(&dir) {
            let pids: Vec<u32> = old.instances.iter().map(|i| i.pid).filter(|p| pid_alive(*p)).collect();
            if !pids.is_empty() {
                return Err(SandboxError::AlreadyRunning { dir, pids });
            }
        }
        let last = spec.base_port as usize + spec.replicas;
        if last > u16::MAX as usize || spec.base_port == 0 {
            return Err(SandboxError::PortRange { base: spec.base_port, replicas: spec.replicas });
        }
        let ports: Vec<u16> = (0..=spec.replicas).map(|i| spec.base_port + i as u16).collect();
        for p in &ports {
            if std::net::TcpListener::bind(("127.0.0.1", *p)).is_err() {
                return Err(SandboxError::PortInUse(*p));
            }
        }

        let bin = mariadbd.clone();
        let tmpl = tokio::task::spawn_blocking(move || template(&bin)).await.expect("template task")?;
        debug!(ms = started.elapsed().as_millis() as u64, "template ready");

        let mut instances = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let idir = dir.join(format!("n{port}"));
            if idir.exists() {
                std::fs::remove_dir_all(&idir).map_err(io_err(&idir))?;
            }
            copy_dir(&tmpl, &idir.join("data"))?;
            let server_id = 100 + i as u32;
            let inst = SandboxInstance { port: *port, server_id, pid: 0, dir: idir };
            std::fs::write(inst.cnf(), instance_cnf(&inst.dir, *port, server_id)).map_err(io_err(&inst.cnf()))?;
            instances.push(inst);
        }
        debug!(ms = started.elapsed().as_millis() as u64, "datadirs copied");

        let mut sandbox = Sandbox {
            dir: dir.clone(),
            base_port: spec.base_port,
            alias: spec.alias.clone().unwrap_or_else(|| format!("sandbox-{}", spec.base_port)),
            mariadbd,
            instances,
        };
        let starts = sandbox.instances.iter().map(|i| process::start(&sandbox.mariadbd, i, START_TIMEOUT));
        let results = futures::future::join_all(starts).await;
        let mut first_err = None;
        for (inst, r) in sandbox.instances.iter_mut().zip(results) {
            match r {
                Ok(pid) => inst.pid = pid,
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        sandbox.save()?;
        if let Some(e) = first_err {
            let _ = sandbox.down().await;
            return Err(e);
        }
        debug!(ms = started.elapsed().as_millis() as u64, "instances ready");

        if let Err(e) = sandbox.wire().await {
            let _ = sandbox.down().await;
            return Err(e);
        }
        info!(dir = %dir.display(), ms = started.elapsed().as_millis() as u64, "sandbox up");
        Ok(sandbox)
    }

    /// Makes the master writable, points the replicas at it, writes the alias row and waits until
    /// every replica has executed it.
    async fn wire(&self) -> Result<(), SandboxError> {
        use crate::mysql::ops;
        let cfg = self.config();
        let conn = Connector::new(&cfg);
        let master = self.master();
        let spec = SourceSpec {
            host: master.host.clone(),
            port: master.port,
            user: REPL_USER.0.into(),
            password: crate::config::Secret::new(REPL_USER.1),
            position: SourcePosition::GtidSlavePos,
            tls: false,
        };
        let replicas = self.instances[1..].iter().map(|i| {
            let (conn, spec) = (&conn, &spec);
            async move { ops::repoint(conn, &i.key(), spec, true).await }
        });
        for r in futures::future::join_all(replicas).await {
            r?;
        }
        ops::set_read_only(&conn, &master, false, cfg.takeover.fence_lock_wait_s).await?;
        let alias_row = format!(
            "REPLACE INTO meta.cluster (anchor, alias) VALUES (1, {})",
            crate::mysql::dialect::quote(&self.alias)
        );
        conn.query(&master, &alias_row).await?;
        let pos = ops::own_position(&conn, &master).await?;
        let d = conn.dialect(&master).await?;
        let waits = self.instances[1..].iter().map(|i| {
            let (conn, d, pos) = (&conn, &d, &pos);
            async move { ops::wait_for_gtid(conn, d.as_ref(), &i.key(), &pos.gtid, Duration::from_secs(30)).await }
        });
        for r in futures::future::join_all(waits).await {
            r?;
        }
        conn.close().await;
        Ok(())
    }

    /// Semi-synchronous replication on: the master side on the master (a commit waits for one
    /// replica's acknowledgement, `rpl_semi_sync_master_timeout` at its default), the replica
    /// side on every replica, whose IO threads are restarted to take it. Nothing waits here: the
    /// master's first commits wait, in the server, for the replicas to reconnect.
    pub async fn enable_semi_sync(&self) -> Result<(), SandboxError> {
        use crate::mysql::{ops, SemiSyncChange};
        let conn = Connector::new(&self.config());
        ops::set_semi_sync(&conn, &self.master(), &SemiSyncChange { master: Some(true), ..Default::default() }).await?;
        let replicas = self.instances[1..].iter().map(|i| {
            let conn = &conn;
            async move {
                let k = i.key();
                ops::set_semi_sync(conn, &k, &SemiSyncChange { replica: Some(true), ..Default::default() }).await?;
                conn.query_sets(&k, "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD").await
            }
        });
        for r in futures::future::join_all(replicas).await {
            r?;
        }
        conn.close().await;
        Ok(())
    }

    /// Stops every instance of the sandbox that is still running: SIGTERM, then a clean wait.
    pub async fn down(&self) -> Result<(), SandboxError> {
        let stops = self.instances.iter().filter(|i| i.pid != 0).map(|i| process::stop(i.pid, Duration::from_secs(30)));
        futures::future::join_all(stops).await;
        Ok(())
    }

    /// Each instance and whether its process is alive.
    pub fn status(&self) -> Vec<(SandboxInstance, bool)> {
        self.instances.iter().map(|i| (i.clone(), pid_alive(i.pid))).collect()
    }

    /// Starts one stopped (or crashed) instance again, with its existing datadir.
    pub async fn restart_instance(&mut self, port: u16) -> Result<(), SandboxError> {
        let idx = self.instances.iter().position(|i| i.port == port).ok_or_else(|| SandboxError::State {
            dir: self.dir.clone(),
            message: format!("no instance on port {port}"),
        })?;
        let pid = process::start(&self.mariadbd, &self.instances[idx], START_TIMEOUT).await?;
        self.instances[idx].pid = pid;
        self.save()
    }
}
