//! A protocol simulator for scale tests (feature `lab`; the `baton-sim` binary and the tests): many
//! fake MariaDB servers in one process, each on its own loopback address (`127.x.y.z:port`: all
//! of 127.0.0.0/8 is routed to `lo`), answering what Baton's probe asks (the variables, `SHOW
//! MASTER STATUS`, `SHOW SLAVE STATUS`, `SHOW SLAVE HOSTS`, the semi-sync variables) for clusters
//! of a configurable shape. Instances can be made to lag, break replication, hang (accept and
//! never answer), refuse connections, move under another source, or be promoted (someone else's
//! takeover); replicas can be added.
//!
//! It speaks the protocol with `wire` (each answer written with one call). Only what the probe and
//! `mysql_async`'s connection setup send is understood; anything else is answered with an error
//! 1064. (`opensrv-mysql` 0.7 was tried first: it does not flag "more results" at the end of a
//! result set when the client deprecates EOF packets, so a multi-statement probe stops after its
//! first result set.)

mod wire;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::TcpListener;

use wire::Answer;

use crate::topology::InstanceKey;

/// How an instance answers connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Accepts and never answers (a hung host or a full accept queue).
    Hang,
    /// Refuses connections (nothing listens), and ends the open ones.
    Refuse,
}

#[derive(Debug, Clone)]
struct State {
    server_id: u32,
    read_only: bool,
    source: Option<InstanceKey>,
    io_running: bool,
    sql_running: bool,
    /// Seconds behind its source (replicas).
    lag_s: u64,
    sql_error: Option<(u32, String)>,
    mode: Mode,
}

struct SimInstance {
    key: InstanceKey,
    cluster: usize,
    state: Mutex<State>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The shape of a simulated fleet.
#[derive(Debug, Clone)]
pub struct SimSpec {
    pub clusters: usize,
    /// Instances per cluster: one master, the rest its direct replicas.
    pub cluster_size: usize,
    /// The first instance's address; the others follow (127.1.0.1, 127.1.0.2, ...).
    pub first_ip: Ipv4Addr,
    pub port: u16,
    /// One listener on 0.0.0.0:port for all instances (for fleets larger than the open-file
    /// limit allows one listener each); `Refuse` then resets connections instead of refusing them.
    pub wildcard: bool,
}

impl Default for SimSpec {
    fn default() -> Self {
        SimSpec { clusters: 1, cluster_size: 3, first_ip: Ipv4Addr::new(127, 1, 0, 1), port: 3306, wildcard: false }
    }
}

struct Shared {
    instances: RwLock<BTreeMap<InstanceKey, Arc<SimInstance>>>,
    /// Members of each cluster, in creation order.
    clusters: RwLock<Vec<Vec<InstanceKey>>>,
    next_ip: Mutex<u32>,
    port: u16,
    connections: std::sync::atomic::AtomicU32,
    wildcard: Option<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// A running simulated fleet. Dropping it stops every listener.
pub struct Sim {
    shared: Arc<Shared>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator: cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("simulator: no instance {0}")]
    NoInstance(InstanceKey),
}

impl Sim {
    /// Starts every instance of `spec` (listening once this returns).
    pub async fn start(spec: &SimSpec) -> Result<Sim, SimError> {
        let shared = Arc::new(Shared {
            instances: RwLock::new(BTreeMap::new()),
            clusters: RwLock::new(Vec::new()),
            next_ip: Mutex::new(u32::from(spec.first_ip)),
            port: spec.port,
            connections: std::sync::atomic::AtomicU32::new(1),
            wildcard: spec.wildcard.then(|| Mutex::new(None)),
        });
        if let Some(slot) = &shared.wildcard {
            *slot.lock().expect("listener") = Some(listen_everywhere(&shared, spec.port)?);
        }
        let sim = Sim { shared };
        for c in 0..spec.clusters {
            sim.shared.clusters.write().expect("clusters").push(Vec::new());
            let master = sim.add(c, None).await?;
            for _ in 1..spec.cluster_size {
                sim.add(c, Some(master.clone())).await?;
            }
        }
        Ok(sim)
    }

    /// Every cluster's members (the master first, as created).
    pub fn clusters(&self) -> Vec<Vec<InstanceKey>> {
        self.shared.clusters.read().expect("clusters").clone()
    }

    pub fn instances(&self) -> Vec<InstanceKey> {
        self.shared.instances.read().expect("instances").keys().cloned().collect()
    }

    /// A new instance in cluster `cluster`, replicating from `source` (None: a master).
    async fn add(&self, cluster: usize, source: Option<InstanceKey>) -> Result<InstanceKey, SimError> {
        let ip = {
            let mut next = self.shared.next_ip.lock().expect("next ip");
            let ip = Ipv4Addr::from(*next);
            *next += 1;
            ip
        };
        let key = InstanceKey::new(ip.to_string(), self.shared.port);
        let server_id = u32::from(ip) & 0x00ff_ffff;
        let inst = Arc::new(SimInstance {
            key: key.clone(),
            cluster,
            state: Mutex::new(State {
                server_id,
                read_only: source.is_some(),
                source,
                io_running: true,
                sql_running: true,
                lag_s: 0,
                sql_error: None,
                mode: Mode::Normal,
            }),
            listener: Mutex::new(None),
        });
        self.shared.instances.write().expect("instances").insert(key.clone(), inst.clone());
        self.shared.clusters.write().expect("clusters")[cluster].push(key.clone());
        listen(&self.shared, &inst).await?;
        Ok(key)
    }

    /// Adds a replica of `source` to its cluster (it then shows in the source's `SHOW SLAVE HOSTS`).
    pub async fn add_replica(&self, source: &InstanceKey) -> Result<InstanceKey, SimError> {
        let cluster = self.get(source)?.cluster;
        self.add(cluster, Some(source.clone())).await
    }

    fn get(&self, key: &InstanceKey) -> Result<Arc<SimInstance>, SimError> {
        self.shared
            .instances
            .read()
            .expect("instances")
            .get(key)
            .cloned()
            .ok_or_else(|| SimError::NoInstance(key.clone()))
    }

    fn with(&self, key: &InstanceKey, f: impl FnOnce(&mut State)) -> Result<(), SimError> {
        let inst = self.get(key)?;
        f(&mut inst.state.lock().expect("state"));
        Ok(())
    }

    pub fn set_lag(&self, key: &InstanceKey, lag_s: u64) -> Result<(), SimError> {
        self.with(key, |s| s.lag_s = lag_s)
    }

    /// The SQL thread stops on a duplicate-key error.
    pub fn break_replication(&self, key: &InstanceKey) -> Result<(), SimError> {
        self.with(key, |s| {
            s.sql_running = false;
            s.sql_error =
                Some((1062, "Could not execute Write_rows_v1 event: Duplicate entry '1' for key 'PRIMARY'".into()));
        })
    }

    pub fn repair_replication(&self, key: &InstanceKey) -> Result<(), SimError> {
        self.with(key, |s| {
            s.sql_running = true;
            s.sql_error = None;
        })
    }

    /// Points `key` at `source` (a relocation someone else did).
    pub fn move_under(&self, key: &InstanceKey, source: &InstanceKey) -> Result<(), SimError> {
        self.get(source)?;
        self.with(key, |s| s.source = Some(source.clone()))
    }

    /// Someone else's takeover: `new_master` becomes the writable master of its cluster, the old
    /// master and every other member replicate from it.
    pub fn promote(&self, new_master: &InstanceKey) -> Result<(), SimError> {
        let cluster = self.get(new_master)?.cluster;
        let members = self.shared.clusters.read().expect("clusters")[cluster].clone();
        for m in members {
            self.with(&m, |s| {
                if m == *new_master {
                    s.source = None;
                    s.read_only = false;
                } else {
                    s.source = Some(new_master.clone());
                    s.read_only = true;
                }
            })?;
        }
        Ok(())
    }

    /// Changes how `key` answers; `Refuse` closes its listener, leaving it reopens it.
    pub async fn set_mode(&self, key: &InstanceKey, mode: Mode) -> Result<(), SimError> {
        let inst = self.get(key)?;
        let was = std::mem::replace(&mut inst.state.lock().expect("state").mode, mode);
        if mode == Mode::Refuse {
            if let Some(task) = inst.listener.lock().expect("listener").take() {
                task.abort();
            }
        } else if was == Mode::Refuse && self.shared.wildcard.is_none() {
            listen(&self.shared, &inst).await?;
        }
        Ok(())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(task) = self.shared.wildcard.as_ref().and_then(|w| w.lock().expect("listener").take()) {
            task.abort();
        }
        for inst in self.shared.instances.read().expect("instances").values() {
            if let Some(task) = inst.listener.lock().expect("listener").take() {
                task.abort();
            }
        }
    }
}

async fn listen(shared: &Arc<Shared>, inst: &Arc<SimInstance>) -> Result<(), SimError> {
    if shared.wildcard.is_some() {
        return Ok(()); // the one listener serves every address
    }
    let addr: SocketAddr = format!("{}:{}", inst.key.host, inst.key.port).parse().expect("an IPv4 address");
    let listener = bind(addr).map_err(|source| SimError::Bind { addr, source })?;
    let (shared, inst2) = (shared.clone(), inst.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(connection(shared.clone(), inst2.clone(), stream));
        }
    });
    *inst.listener.lock().expect("listener") = Some(task);
    Ok(())
}

/// One listener on 0.0.0.0:port for every instance: the address a client connected to names the
/// instance (one file descriptor instead of one per instance). A refusing instance's connections
/// are reset as soon as they are accepted.
fn listen_everywhere(shared: &Arc<Shared>, port: u16) -> Result<tokio::task::JoinHandle<()>, SimError> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = bind(addr).map_err(|source| SimError::Bind { addr, source })?;
    let shared = shared.clone();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let Ok(local) = stream.local_addr() else { continue };
            let key = InstanceKey::new(local.ip().to_string(), local.port());
            let inst = shared.instances.read().expect("instances").get(&key).cloned();
            match inst {
                Some(inst) if inst.state.lock().expect("state").mode != Mode::Refuse => {
                    tokio::spawn(connection(shared.clone(), inst, stream));
                }
                _ => drop(stream), // closed at once
            }
        }
    }))
}

async fn connection(shared: Arc<Shared>, inst: Arc<SimInstance>, mut stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    if inst.state.lock().expect("state").mode == Mode::Hang {
        // Accepted, never answered (not even the greeting), until the client gives up.
        let mut buf = [0u8; 64];
        use tokio::io::AsyncReadExt;
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        return;
    }
    let id = shared.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = wire::serve(stream, VERSION, id, Shim { shared, inst }).await;
}

/// A listener with a backlog big enough for thousands of clients connecting at once.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

struct Shim {
    shared: Arc<Shared>,
    inst: Arc<SimInstance>,
}

const VERSION: &str = "10.11.6-MariaDB-sim";

type Set = (Vec<&'static str>, Vec<Vec<Option<String>>>);

impl Shim {
    /// GTID sequence of the cluster's master: fixed (a fleet at rest: probed a moment apart, a
    /// replica never looks ahead of its master); a lagging replica is behind it by 100 a second.
    fn master_seq(&self) -> u64 {
        100_000
    }

    fn replicas_of(&self, key: &InstanceKey) -> Vec<(u32, InstanceKey)> {
        let members = self.shared.clusters.read().expect("clusters")[self.inst.cluster].clone();
        let all = self.shared.instances.read().expect("instances");
        members
            .iter()
            .filter_map(|m| all.get(m))
            .filter_map(|i| {
                let s = i.state.lock().expect("state");
                (s.source.as_ref() == Some(key)).then(|| (s.server_id, i.key.clone()))
            })
            .collect()
    }

    fn variable(&self, s: &State, name: &str) -> Option<String> {
        let seq = self.master_seq().saturating_sub(s.lag_s * 100);
        let gtid = format!("0-1-{seq}");
        Some(match name {
            "version" => VERSION.into(),
            "version_comment" => "baton-sim".into(),
            "server_id" => s.server_id.to_string(),
            "read_only" => (s.read_only as u8).to_string(),
            "log_bin" | "log_slave_updates" | "gtid_strict_mode" => "1".into(),
            "binlog_format" => "ROW".into(),
            "gtid_binlog_pos" | "gtid_current_pos" => gtid,
            "gtid_slave_pos" => {
                if s.source.is_some() {
                    gtid
                } else {
                    String::new()
                }
            }
            "max_allowed_packet" => "16777216".into(),
            "wait_timeout" => "28800".into(),
            "socket" => return None,
            _ => return None,
        })
    }

    /// `SELECT @@a AS x, @@b, UNIX_TIMESTAMP(NOW(6)) AS server_unix`: one row.
    fn select_vars(&self, s: &State, sql: &str) -> Option<Set> {
        let body = sql.trim().strip_prefix("SELECT ").or_else(|| sql.trim().strip_prefix("select "))?;
        let (mut names, mut row) = (Vec::new(), Vec::new());
        for item in body.split(',') {
            let item = item.trim();
            let (expr, alias) = match item.split_once(" AS ") {
                Some((e, a)) => (e.trim(), Some(a.trim())),
                None => (item, None),
            };
            let value = if let Some(v) = expr.strip_prefix("@@") {
                let v = v.trim_start_matches("session.").trim_start_matches("global.");
                self.variable(s, v)
            } else if expr.starts_with("UNIX_TIMESTAMP") {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
                Some(format!("{:.6}", now.as_secs_f64()))
            } else {
                return None;
            };
            names.push(leak(alias.unwrap_or(expr)));
            row.push(value);
        }
        Some((names, vec![row]))
    }

    fn master_status(&self, s: &State) -> Set {
        let pos = 4 + self.master_seq().saturating_sub(s.lag_s * 100) * 300;
        (
            vec!["File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB"],
            vec![vec![
                Some("mysql-bin.000001".into()),
                Some(pos.to_string()),
                Some(String::new()),
                Some(String::new()),
            ]],
        )
    }

    fn slave_status(&self, s: &State) -> Set {
        let names = vec![
            "Slave_IO_State",
            "Master_Host",
            "Master_Port",
            "Master_Log_File",
            "Read_Master_Log_Pos",
            "Relay_Master_Log_File",
            "Exec_Master_Log_Pos",
            "Slave_IO_Running",
            "Slave_SQL_Running",
            "Seconds_Behind_Master",
            "Last_IO_Errno",
            "Last_IO_Error",
            "Last_SQL_Errno",
            "Last_SQL_Error",
            "Using_Gtid",
            "SQL_Delay",
            "Master_SSL_Allowed",
        ];
        let Some(source) = &s.source else { return (names, vec![]) };
        let read = 4 + self.master_seq() * 300;
        let exec = 4 + self.master_seq().saturating_sub(s.lag_s * 100) * 300;
        let yes = |b: bool| Some(if b { "Yes" } else { "No" }.to_string());
        let (errno, error) = s.sql_error.clone().unwrap_or((0, String::new()));
        let row = vec![
            Some("Waiting for master to send event".into()),
            Some(source.host.clone()),
            Some(source.port.to_string()),
            Some("mysql-bin.000001".into()),
            Some(read.to_string()),
            Some("mysql-bin.000001".into()),
            Some(exec.to_string()),
            yes(s.io_running),
            yes(s.sql_running),
            if s.sql_running && s.io_running { Some(s.lag_s.to_string()) } else { None },
            Some("0".into()),
            Some(String::new()),
            Some(errno.to_string()),
            Some(error),
            Some("Slave_Pos".into()),
            Some("0".into()),
            Some("No".into()),
        ];
        (names, vec![row])
    }

    fn slave_hosts(&self, s: &State) -> Set {
        let rows = self
            .replicas_of(&self.inst.key)
            .into_iter()
            .map(|(id, k)| {
                vec![Some(id.to_string()), Some(k.host), Some(k.port.to_string()), Some(s.server_id.to_string())]
            })
            .collect();
        (vec!["Server_id", "Host", "Port", "Master_id"], rows)
    }

    /// The result sets of `sql` (statements separated by `;`), or the statement not understood.
    fn answer(&self, sql: &str) -> Result<Vec<Set>, String> {
        let s = self.inst.state.lock().expect("state").clone();
        let mut sets = Vec::new();
        for stmt in sql.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            let upper = stmt.to_ascii_uppercase();
            let set = if upper == "SHOW MASTER STATUS" {
                self.master_status(&s)
            } else if upper == "SHOW SLAVE STATUS" {
                self.slave_status(&s)
            } else if upper == "SHOW SLAVE HOSTS" {
                self.slave_hosts(&s)
            } else if upper.starts_with("SHOW GLOBAL VARIABLES LIKE") || upper.starts_with("SHOW GLOBAL STATUS LIKE") {
                (vec!["Variable_name", "Value"], vec![])
            } else if upper.starts_with("SET ") {
                (vec![], vec![])
            } else if let Some(set) = upper.starts_with("SELECT ").then(|| self.select_vars(&s, stmt)).flatten() {
                set
            } else {
                return Err(stmt.to_string());
            };
            sets.push(set);
        }
        Ok(sets)
    }
}

/// Column names live as long as the process (a few dozen distinct ones).
fn leak(name: &str) -> &'static str {
    static NAMES: std::sync::OnceLock<Mutex<std::collections::HashSet<&'static str>>> = std::sync::OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().expect("names");
    if let Some(n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(n);
    n
}

impl wire::Responder for Shim {
    fn query(&mut self, sql: &str) -> Vec<Answer> {
        if self.inst.state.lock().expect("state").mode == Mode::Refuse {
            return vec![Answer::Err(1053, "baton-sim: refusing (server shutdown in progress)".into())];
        }
        match self.answer(sql) {
            Ok(sets) => sets
                .into_iter()
                .map(|(names, rows)| if names.is_empty() { Answer::Ok } else { Answer::Rows(names, rows) })
                .collect(),
            Err(stmt) => vec![Answer::Err(1064, format!("baton-sim does not understand: {stmt}"))],
        }
    }

    fn silent(&self) -> bool {
        self.inst.state.lock().expect("state").mode == Mode::Hang
    }
}
