//! The fleet poller: every member of every known cluster probed every
//! `discovery.poll_interval_s`, spread over the interval, on one kept-open connection per
//! instance, at most `poll_max_parallel` at once. An instance whose probe fails (refused, reset,
//! or hanging until the timeout) moves to a lane of its own, with `poll_backoff_parallel` probes
//! at once and an exponential back-off up to `poll_backoff_max_s`: it never holds a healthy
//! instance's turn. A probe's answer is followed: a source or a reported replica not yet polled
//! is polled from then on (up to `poll_max_instances`), so new replicas, moved replicas and a new
//! master after someone else's takeover show within an interval.
//!
//! The cache is for looking (`view`: the fleet, readiness, problems, metrics). A takeover never
//! reads it: it discovers live.

pub mod view;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::mysql::Connector;
use crate::store::Store;
use crate::topology::{BuildOptions, Instance, InstanceKey};
pub use view::{Cached, ClusterView, Readiness};

/// How a poller runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// First probes spread over the interval (else all due at once: a one-off look).
    pub spread: bool,
    /// Every probe through the full `Connector` (`mysql_async` behind the password guard), not
    /// the lean client: the benchmark's baseline.
    pub full_connector: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { spread: true, full_connector: false }
    }
}

/// Which lane an instance's probes take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Healthy,
    Backoff,
}

#[derive(Debug, Clone)]
struct Entry {
    instance: Option<Arc<Instance>>,
    last_ok: Option<Instant>,
    error: Option<String>,
    /// Probes failed in a row (0: the last one answered).
    failures: u32,
    latency_ms: Option<f64>,
}

impl Entry {
    /// An instance whose last probe failed is probed in the back-off lane.
    fn lane(&self) -> Lane {
        if self.failures > 0 {
            Lane::Backoff
        } else {
            Lane::Healthy
        }
    }
}

/// Counters the poller keeps about itself.
#[derive(Default)]
pub struct Stats {
    pub probes: AtomicU64,
    pub failures: AtomicU64,
    /// Probes due and waiting for a free slot.
    pub queued: AtomicU64,
}

/// One instance as `/metrics` and the fleet routes show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceState {
    pub key: InstanceKey,
    pub up: bool,
    pub lane: Lane,
    pub latency_ms: Option<f64>,
    pub age_s: Option<f64>,
    pub error: Option<String>,
    #[serde(skip)]
    pub instance: Option<Arc<Instance>>,
}

/// How an instance is reached: a lean connection kept open (and what the server is), or the full
/// `Connector` when the lean client cannot (TLS, another authentication plugin).
#[derive(Default)]
struct Link {
    conn: Option<crate::mysql::lean::LeanConn>,
    server: Option<(crate::topology::Flavor, crate::topology::Version)>,
    full: bool,
}

struct Inner {
    cfg: Arc<Config>,
    connector: Connector,
    links: Mutex<HashMap<InstanceKey, Link>>,
    /// Every probe through the `Connector` (the benchmark's baseline).
    full_connector: bool,
    /// The remembered clusters, as last read (every interval).
    known: RwLock<Arc<Vec<crate::store::KnownCluster>>>,
    store: Arc<dyn Store>,
    entries: RwLock<HashMap<InstanceKey, Entry>>,
    /// When each instance is next probed (earliest first).
    schedule: Mutex<BinaryHeap<Reverse<(Instant, InstanceKey)>>>,
    wake: Notify,
    healthy: Semaphore,
    backoff: Semaphore,
    stats: Stats,
    /// Recent probe latencies (ms), for the benchmark's percentiles.
    latencies: Mutex<Vec<f64>>,
    views: Mutex<Option<(Instant, Arc<Vec<ClusterView>>)>>,
    /// First probes spread over the interval (else all due at once).
    spread: bool,
    rebuilding: std::sync::atomic::AtomicBool,
}

/// The running poller (cheap to clone). Dropping the last clone does not stop it: `stop` does.
#[derive(Clone)]
pub struct Poller {
    inner: Arc<Inner>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Spreads first probes over the interval by the key's hash: no thundering herd at start.
fn offset(key: &InstanceKey, interval: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

const LATENCY_SAMPLES: usize = 50_000;

/// A takeover as the fleet view lists it (the newest of its cluster).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LastTakeover {
    pub id: String,
    pub status: String,
    pub started_at: i64,
}

/// One line of the fleet: the cluster's view, the age of its data, its newest takeover.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetRow {
    #[serde(flatten)]
    pub view: ClusterView,
    pub data_age_s: f64,
    pub last_takeover: Option<LastTakeover>,
}

/// The whole fleet as `GET /api/v1/fleet` and `baton fleet` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetReport {
    pub poll_interval_s: u64,
    /// The oldest data among the clusters (seconds).
    pub data_age_s: f64,
    pub clusters: Vec<FleetRow>,
}

/// The oldest data (seconds) among `views`.
pub fn oldest_s(views: &[ClusterView]) -> f64 {
    views.iter().map(ClusterView::age_s).fold(0.0, f64::max)
}

/// Joins each cluster with its newest takeover among `recent` (newest first, as the audit lists
/// them), found by the cluster's name then, its new master's, or its alias.
pub fn rows(views: &[ClusterView], recent: &[crate::store::AuditEntry]) -> Vec<FleetRow> {
    let mut last: HashMap<String, LastTakeover> = HashMap::new();
    for e in recent.iter().rev() {
        let t = LastTakeover { id: e.id.clone(), status: e.status.clone(), started_at: e.started_at };
        if let Some(nm) = e.record.get("new_master").and_then(|v| v.as_str()) {
            last.insert(nm.to_string(), t.clone());
        }
        if let Some(a) = e.record.get("alias").and_then(|v| v.as_str()) {
            last.insert(a.to_string(), t.clone());
        }
        last.insert(e.cluster.clone(), t);
    }
    views
        .iter()
        .map(|v| FleetRow {
            view: v.clone(),
            data_age_s: v.age_s(),
            last_takeover: last.get(&v.name).or_else(|| v.alias.as_ref().and_then(|a| last.get(a))).cloned(),
        })
        .collect()
}

impl Poller {
    /// Starts polling the members of the clusters `store` remembers (re-read every interval).
    pub fn start(cfg: Arc<Config>, store: Arc<dyn Store>) -> Poller {
        Poller::start_with(cfg, store, Options::default())
    }

    /// `start` with other `Options`.
    pub fn start_with(cfg: Arc<Config>, store: Arc<dyn Store>, opts: Options) -> Poller {
        let Options { spread, full_connector } = opts;
        let d = &cfg.discovery;
        let inner = Arc::new(Inner {
            connector: Connector::for_polling(&cfg),
            links: Mutex::new(HashMap::new()),
            full_connector,
            known: RwLock::new(Arc::new(Vec::new())),
            store,
            entries: RwLock::new(HashMap::new()),
            schedule: Mutex::new(BinaryHeap::new()),
            wake: Notify::new(),
            healthy: Semaphore::new(d.poll_max_parallel),
            backoff: Semaphore::new(d.poll_backoff_parallel),
            stats: Stats::default(),
            latencies: Mutex::new(Vec::new()),
            views: Mutex::new(None),
            spread,
            rebuilding: Default::default(),
            cfg: cfg.clone(),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(run(inner.clone(), stopped));
        info!(interval_s = d.poll_interval_s, max_parallel = d.poll_max_parallel, "fleet poller started");
        Poller { inner, stop: Arc::new(stop) }
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.inner.cfg.discovery.poll_interval_s.max(1))
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Instances in the back-off lane now.
    pub fn backoff_lane(&self) -> usize {
        self.read().values().filter(|e| e.lane() == Lane::Backoff).count()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<InstanceKey, Entry>> {
        self.inner.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Every instance followed, with what the cache knows.
    pub fn instances(&self) -> Vec<InstanceState> {
        let now = Instant::now();
        let mut v: Vec<InstanceState> = self
            .read()
            .iter()
            .map(|(k, e)| InstanceState {
                key: k.clone(),
                up: e.error.is_none() && e.instance.is_some(),
                lane: e.lane(),
                latency_ms: e.latency_ms,
                age_s: e.last_ok.map(|t| now.duration_since(t).as_secs_f64()),
                error: e.error.clone(),
                instance: e.instance.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// The fleet's clusters as the cache shows them. The view is rebuilt at most once a second,
    /// in the background: a reader gets the last one built (each says its data's age) and never
    /// waits for a rebuild, except the very first.
    pub fn views(&self) -> Result<Arc<Vec<ClusterView>>, crate::store::StoreError> {
        let cached = self.inner.views.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some((at, v)) = cached else { return self.views_now() };
        if at.elapsed() >= Duration::from_secs(1) && !self.inner.rebuilding.swap(true, Ordering::SeqCst) {
            let me = self.clone();
            let rebuild = move || {
                if let Err(e) = me.views_now() {
                    warn!(error = %e, "fleet view: cannot rebuild");
                }
                me.inner.rebuilding.store(false, Ordering::SeqCst);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(rebuild)),
                Err(_) => rebuild(),
            }
        }
        Ok(v)
    }

    /// The fleet's clusters rebuilt from the cache now.
    pub fn views_now(&self) -> Result<Arc<Vec<ClusterView>>, crate::store::StoreError> {
        let now = Instant::now();
        let cache: HashMap<InstanceKey, Cached> = self
            .read()
            .iter()
            .map(|(k, e)| {
                let age_s = e.last_ok.map(|t| now.duration_since(t).as_secs_f64());
                (k.clone(), Cached { instance: e.instance.clone(), error: e.error.clone(), age_s })
            })
            .collect();
        let known = self.inner.known.read().unwrap_or_else(|e| e.into_inner()).clone();
        let inputs = crate::engine::Engine::plan_inputs_of(&self.inner.cfg, self.inner.store.as_ref())?;
        let opts = BuildOptions { lag_threshold_s: self.inner.cfg.discovery.lag_threshold_s };
        let v = Arc::new(view::build(&cache, &known, &inputs, opts, self.inner.cfg.takeover.max_clock_skew_s));
        *self.inner.views.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, v.clone()));
        Ok(v)
    }

    /// The fleet now: every cluster's view with its newest takeover (from the audit's last 1,000).
    pub fn report(&self) -> Result<FleetReport, crate::store::StoreError> {
        let views = self.views()?;
        let recent = self.inner.store.takeovers(None, 1000)?;
        Ok(FleetReport {
            poll_interval_s: self.interval().as_secs(),
            data_age_s: oldest_s(&views),
            clusters: rows(&views, &recent),
        })
    }

    /// Takes the recent probe latencies (ms), for a benchmark's percentiles.
    pub fn take_latencies(&self) -> Vec<f64> {
        std::mem::take(&mut *self.inner.latencies.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The oldest successful probe (seconds) among instances whose last probe succeeded.
    pub fn stalest_healthy_s(&self) -> f64 {
        let now = Instant::now();
        self.read()
            .values()
            .filter(|e| e.error.is_none())
            .filter_map(|e| e.last_ok.map(|t| now.duration_since(t).as_secs_f64()))
            .fold(0.0, f64::max)
    }
}

async fn run(inner: Arc<Inner>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_secs(inner.cfg.discovery.poll_interval_s.max(1));
    let mut next_sync = Instant::now();
    loop {
        if *stopped.borrow() {
            return;
        }
        let now = Instant::now();
        if now >= next_sync {
            sync_members(&inner, interval);
            next_sync = now + interval;
        }
        // Start every probe that is due.
        let due: Vec<InstanceKey> = {
            let mut schedule = inner.schedule.lock().unwrap_or_else(|e| e.into_inner());
            let mut due = Vec::new();
            while schedule.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                if let Some(Reverse((_, k))) = schedule.pop() {
                    due.push(k);
                }
            }
            due
        };
        for key in due {
            let lane = match inner.entries.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
                Some(e) => e.lane(),
                None => continue, // no longer followed
            };
            inner.stats.queued.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(probe(inner.clone(), key, lane, interval));
        }
        let next = inner.schedule.lock().unwrap_or_else(|e| e.into_inner()).peek().map(|Reverse((at, _))| *at);
        let until = next.map_or(next_sync, |at| at.min(next_sync));
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = inner.wake.notified() => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Follows the remembered clusters: new members are polled (first probe spread over the
/// interval); instances neither remembered nor reported by a polled one are dropped.
fn sync_members(inner: &Inner, interval: Duration) {
    let remembered: HashSet<InstanceKey> = match inner.store.clusters() {
        Ok(c) => {
            let members = c.iter().flat_map(|c| c.members.iter().cloned()).collect();
            *inner.known.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
            members
        }
        Err(e) => {
            warn!(error = %e, "fleet poller: cannot read the remembered clusters; polling what it has");
            return;
        }
    };
    let mut entries = inner.entries.write().unwrap_or_else(|e| e.into_inner());
    let reported: HashSet<InstanceKey> = entries
        .values()
        .filter_map(|e| e.instance.as_ref())
        .flat_map(|i| i.source().cloned().into_iter().chain(i.reported_replicas.iter().cloned()))
        .collect();
    entries.retain(|k, _| remembered.contains(k) || reported.contains(k));
    inner.links.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| entries.contains_key(k));
    let now = Instant::now();
    let mut schedule = inner.schedule.lock().unwrap_or_else(|e| e.into_inner());
    let max = inner.cfg.discovery.poll_max_instances;
    for k in remembered {
        if entries.len() >= max {
            warn!(max, "fleet poller: discovery.poll_max_instances reached; not following more instances");
            break;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = entries.entry(k) {
            let first = if inner.spread { offset(slot.key(), interval) } else { Duration::ZERO };
            schedule.push(Reverse((now + first, slot.key().clone())));
            slot.insert(new_entry());
        }
    }
}

/// One probe of `key` within `limit`: over its lean connection (opened when there is none),
/// or through the `Connector` when the lean client cannot reach it. A connection that failed is
/// dropped (the next probe opens a new one).
async fn probe_one(inner: &Inner, key: &InstanceKey, limit: Duration) -> Result<Instance, String> {
    use crate::mysql::lean::{LeanConn, LeanError};
    let link = inner.links.lock().unwrap_or_else(|e| e.into_inner()).remove(key).unwrap_or_default();
    if link.full || inner.full_connector || inner.cfg.topology.tls {
        let r = match tokio::time::timeout(limit, crate::mysql::probe(&inner.connector, key)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        };
        if r.is_err() {
            inner.connector.forget(key);
        }
        inner
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Link { full: true, ..Link::default() });
        return r;
    }
    let Link { conn, server, .. } = link;
    let mut conn = match conn {
        Some(c) => c,
        None => {
            let to = inner.cfg.topology.dial.get(&key.to_string()).cloned().unwrap_or_else(|| key.to_string());
            let creds = inner.cfg.topology.credentials();
            match LeanConn::connect(&to, &creds.user, creds.password.expose().as_bytes(), inner.cfg.connect_timeout())
                .await
            {
                Ok(c) => c,
                Err(LeanError::Unsupported(why)) => {
                    debug!(instance = %key, %why, "fleet poller: probing through the full connector");
                    inner
                        .links
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone(), Link { full: true, ..Link::default() });
                    return Err(format!("{key}: {why}; the full connector is used from the next probe"));
                }
                Err(e) => return Err(format!("{key}: connect: {e}")),
            }
        }
    };
    match crate::mysql::probe::probe_lean(&mut conn, key, server, limit).await {
        Ok((inst, server)) => {
            inner
                .links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), Link { conn: Some(conn), server: Some(server), full: false });
            Ok(inst)
        }
        Err(e) => Err(format!("{key}: {e}")),
    }
}

fn new_entry() -> Entry {
    Entry { instance: None, last_ok: None, error: None, failures: 0, latency_ms: None }
}

async fn probe(inner: Arc<Inner>, key: InstanceKey, lane: Lane, interval: Duration) {
    let sem = if lane == Lane::Healthy { &inner.healthy } else { &inner.backoff };
    let permit = sem.acquire().await;
    inner.stats.queued.fetch_sub(1, Ordering::Relaxed);
    let started = Instant::now();
    // The connect timeout bounds a server that never greets; the read timeout one that never answers.
    let limit = inner.cfg.connect_timeout() + inner.cfg.read_timeout();
    let result = probe_one(&inner, &key, limit).await;
    let answered = result.is_ok();
    drop(permit);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    inner.stats.probes.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let mut follow = Vec::new();
    let next = {
        let mut entries = inner.entries.write().unwrap_or_else(|e| e.into_inner());
        let Some(e) = entries.get_mut(&key) else { return };
        match result {
            Ok(i) => {
                if e.lane() == Lane::Backoff {
                    debug!(instance = %key, "fleet poller: answering again; back to the healthy lane");
                }
                follow.extend(i.source().cloned());
                follow.extend(i.reported_replicas.iter().cloned());
                e.instance = Some(Arc::new(i));
                e.last_ok = Some(now);
                e.error = None;
                e.failures = 0;
                e.latency_ms = Some(ms);
                now + interval
            }
            Err(err) => {
                inner.stats.failures.fetch_add(1, Ordering::Relaxed);
                e.error = Some(err);
                e.failures = e.failures.saturating_add(1);
                let max = Duration::from_secs(inner.cfg.discovery.poll_backoff_max_s.max(1));
                let backoff = interval.saturating_mul(1 << e.failures.min(16).saturating_sub(1)).min(max);
                now + backoff
            }
        }
    };
    if answered {
        // Answered: its latency is a sample (failures are counted, not timed).
        let mut l = inner.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() < LATENCY_SAMPLES {
            l.push(ms);
        }
    }
    // New instances this answer names: polled from now on (the entries first, then the
    // schedule: the same lock order as `sync_members`).
    let mut new = Vec::new();
    if !follow.is_empty() {
        let mut entries = inner.entries.write().unwrap_or_else(|e| e.into_inner());
        let max = inner.cfg.discovery.poll_max_instances;
        for k in follow {
            if entries.len() >= max {
                break;
            }
            if !entries.contains_key(&k) {
                debug!(instance = %k, "fleet poller: following a newly reported instance");
                entries.insert(k.clone(), new_entry());
                new.push(k);
            }
        }
    }
    let mut schedule = inner.schedule.lock().unwrap_or_else(|e| e.into_inner());
    schedule.push(Reverse((next, key)));
    if !new.is_empty() {
        for k in new {
            schedule.push(Reverse((now, k)));
        }
        inner.wake.notify_one();
    }
}
