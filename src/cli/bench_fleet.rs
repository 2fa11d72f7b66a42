//! `baton bench fleet`: the fleet poller of this process against `baton-sim` (another process, so
//! that its CPU is not counted here) on N loopback addresses. After a warm-up of two intervals,
//! for `--duration-s`: this process's CPU (user + system, from getrusage) per second of wall
//! time, its largest resident size, probes per second, probe latency percentiles, and the
//! oldest data of a healthy instance at any moment (sampled every 100 ms). Then the fleet view's
//! rebuild for every cluster (what `GET /api/v1/fleet` does past its one-second cache).

use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::CliResult;
use crate::config::{Config, Secret};
use crate::store::{KnownCluster, SqliteStore, Store};
use crate::topology::InstanceKey;

pub struct FleetBench {
    pub instances: usize,
    pub cluster_size: usize,
    pub poll_s: u64,
    pub duration_s: u64,
    pub hanging_pct: f64,
    /// The baseline: every probe through the full connector (mysql_async behind the guard).
    pub via_connector: bool,
}

fn cpu_s() -> f64 {
    // SAFETY: getrusage writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Starts `baton-sim` (next to this binary) and reads its clusters.
fn simulator(b: &FleetBench, port: u16) -> Result<(std::process::Child, Vec<Vec<InstanceKey>>), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let sim = exe.with_file_name("baton-sim");
    if !sim.is_file() {
        return Err(format!("{} not found: build it with `cargo build --release` (feature lab)", sim.display()));
    }
    let clusters = b.instances.div_ceil(b.cluster_size);
    let mut child = std::process::Command::new(&sim)
        .args(["--clusters", &clusters.to_string(), "--cluster-size", &b.cluster_size.to_string()])
        .args(["--port", &port.to_string(), "--hanging-pct", &b.hanging_pct.to_string(), "--wildcard"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", sim.display()))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut found = Vec::new();
    for line in std::io::BufReader::new(out).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(rest) = line.strip_prefix("cluster ") {
            found.push(rest.split_whitespace().filter_map(|k| k.parse().ok()).collect());
        } else if line.starts_with("ready ") {
            eprintln!("baton-sim: {line}");
            return Ok((child, found));
        }
    }
    let _ = child.kill();
    Err("baton-sim ended before it was ready".into())
}

pub async fn run(b: FleetBench) -> CliResult {
    let fds = crate::process::raise_fd_limit();
    // One connection per instance (the lean client), and some room; through the connector, the
    // guard's relay adds a listener and two sockets per instance.
    let need = if b.via_connector { b.instances * 4 + 1000 } else { b.instances + 1000 };
    if (fds as usize) < need {
        return Err(format!("the open-file limit is {fds}; {} instances need about {need}", b.instances).into());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let (mut sim, clusters) = simulator(&b, port)?;
    let result = measure(&b, &clusters).await;
    let _ = sim.kill();
    let _ = sim.wait();
    result
}

async fn measure(b: &FleetBench, clusters: &[Vec<InstanceKey>]) -> CliResult {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory()?);
    for (i, members) in clusters.iter().enumerate() {
        let name = members.first().map(|k| k.to_string()).unwrap_or_default();
        let k = KnownCluster {
            name,
            alias: Some(format!("c{i}")),
            members: members.clone(),
            claimed_alias: None,
            seen_at: 0,
        };
        store.remember_cluster(&k)?;
    }
    let total: usize = clusters.iter().map(Vec::len).sum();
    let mut cfg = Config::default();
    cfg.topology.user = "baton".into();
    cfg.topology.password = Secret::new("bench");
    cfg.discovery.poll_interval_s = b.poll_s;
    let opts = crate::fleet::Options { full_connector: b.via_connector, ..Default::default() };
    let p = crate::fleet::Poller::start_with(Arc::new(cfg), store.clone(), opts);
    // Warm-up: two intervals (every instance probed, connections open).
    tokio::time::sleep(Duration::from_secs(b.poll_s * 2)).await;
    let up = p.instances().iter().filter(|i| i.up).count();
    p.take_latencies();
    let (cpu0, probes0, t0) = (cpu_s(), p.stats().probes.load(Ordering::Relaxed), Instant::now());
    let (mut stale, mut rss) = (0.0f64, 0.0f64);
    while t0.elapsed() < Duration::from_secs(b.duration_s) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stale = stale.max(p.stalest_healthy_s());
        rss = rss.max(rss_mb());
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_s() - cpu0) / wall * 100.0;
    let probes = (p.stats().probes.load(Ordering::Relaxed) - probes0) as f64 / wall;
    let lat = p.take_latencies();
    let (p50, p99) = (percentile(lat.clone(), 0.5), percentile(lat, 0.99));
    let backoff = p.backoff_lane();
    // The fleet view: its rebuild from the cache (at most once a second, in the background), and
    // what `GET /api/v1/fleet` does with the last view built: the audit's newest takeovers, the
    // rows, the JSON (medians of 5 and 20).
    let mut rebuild_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(p.views_now()?);
        rebuild_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut get_ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let views = p.views()?;
        let rows = crate::fleet::rows(&views, &store.takeovers(None, 1000)?);
        std::hint::black_box(serde_json::to_vec(&rows)?);
        get_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    p.stop();
    let (_, rebuild_med, _) = super::bench::summary(rebuild_ms);
    let (_, get_med, _) = super::bench::summary(get_ms);
    println!(
        "instances={total} probes_per_s={probes:.0} cpu_pct_of_one_core={cpu:.1} rss_mb={rss:.0} p50_probe_ms={p50:.2} p99_probe_ms={p99:.2} stale_max_s={stale:.2}"
    );
    println!(
        "  {} up at the start {up}/{total}; back-off lane {backoff} ({}% hanging); fleet of {} clusters: GET {get_med:.1} ms, view rebuild {rebuild_med:.1} ms",
        if b.via_connector { "through the full connector (baseline);" } else { "lean client;" },
        b.hanging_pct,
        clusters.len()
    );
    Ok(())
}
