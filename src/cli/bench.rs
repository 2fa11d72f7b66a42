//! Benchmarks and the demo. Numbers are medians of several runs; nothing here is a test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::CliResult;
use crate::engine::{Engine, NoScripts, TakeoverRequest};
use crate::mysql::workload::{rows_of, Sampler, Writer};
use crate::mysql::Connector;
use crate::sandbox::{Sandbox, SandboxSpec, APP_USER};
use crate::store::{SqliteStore, Store};
use crate::topology::InstanceKey;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// `sandbox up --replicas 3` then down, N times; baseline: mariadb-install-db once per instance.
    Sandbox {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 24306)]
        base_port: u16,
    },
    /// One full discovery of a 1+3 sandbox, N times.
    Discovery {
        #[arg(long, default_value_t = 50)]
        runs: usize,
        #[arg(long, default_value_t = 24306)]
        base_port: u16,
    },
    /// Takeovers back and forth under an application writer.
    Takeover(TakeoverBench),
    /// The HTTP service: takeover call latency over HTTP against in-process, read throughput.
    Http {
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long, default_value_t = 24306)]
        base_port: u16,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        #[arg(long, default_value_t = 8)]
        clients: usize,
    },
    /// The fleet poller against `baton-sim`: probes per second, CPU, memory, probe latency, the
    /// oldest data of a healthy instance.
    Fleet {
        #[arg(long, default_value_t = 10_000)]
        instances: usize,
        #[arg(long, default_value_t = 10)]
        cluster_size: usize,
        #[arg(long, default_value_t = 5)]
        poll_s: u64,
        #[arg(long, default_value_t = 30)]
        duration_s: u64,
        /// Replicas that hang (accept, never answer), in percent of the instances.
        #[arg(long, default_value_t = 0.0)]
        hanging: f64,
        /// Baseline: probe through the full connector (mysql_async behind the password guard).
        #[arg(long)]
        via_connector: bool,
    },
    /// Several nodes on etcd: takeover through a follower vs the leader, memory, leader handover
    /// (SIGTERM) and failover (SIGKILL).
    Ha {
        /// Takeovers, alternating between the leader and a follower.
        #[arg(long, default_value_t = 100)]
        takeovers: usize,
        /// SIGTERM handovers, then SIGKILL failovers, this many each.
        #[arg(long, default_value_t = 5)]
        handovers: usize,
        #[arg(long, default_value_t = 5)]
        lease_ttl_s: u64,
        #[arg(long, default_value_t = 25306)]
        base_port: u16,
    },
    /// The Lua host: policy choice over many candidates, hook call overhead, reload latency.
    Scripts {
        #[arg(long, default_value_t = 30)]
        runs: usize,
        #[arg(long, default_value_t = 1000)]
        candidates: usize,
    },
}

#[derive(Args)]
pub struct TakeoverBench {
    /// Start a sandbox for the run (else --cluster must name one).
    #[arg(long)]
    pub sandbox: bool,
    /// The sandbox's replicas; several (`--replicas 3,10,30`) give the curve, one sandbox each.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub replicas: Vec<usize>,
    /// The sandbox runs semi-synchronous replication (`baton sandbox up --semi-sync`).
    #[arg(long)]
    pub semi_sync: bool,
    #[arg(long)]
    pub cluster: Option<String>,
    /// Takeovers to run (ignored with --duration).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    #[arg(long, default_value_t = 5)]
    pub write_interval_ms: u64,
    /// Concurrent application writers.
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Run for this many seconds, one takeover every --every-ms, instead of --rounds.
    #[arg(long)]
    pub duration: Option<u64>,
    #[arg(long, default_value_t = 3000)]
    pub every_ms: u64,
    /// Run the takeovers through a `baton serve` child process, with --readers clients on its read
    /// routes meanwhile, and report the server's memory (RSS) at the start and the end.
    #[arg(long)]
    pub http: bool,
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Put a real HAProxy (Debian's `haproxy`, driven by the shipped hooks/haproxy_writer.lua
    /// through socat) in front of the cluster, and run as many writers through it as direct
    /// ones: the write gap the application sees through the proxy, beside the direct one.
    #[arg(long)]
    pub via_haproxy: bool,
    #[arg(long, default_value_t = 24306)]
    pub base_port: u16,
    /// How often the checker reads `@@read_only` on every instance (two writable instances in two
    /// rounds in a row fail the run). Default: every 2 ms per 4 instances (2 ms on 1+3, 8 ms on
    /// 1+15), so that the checker's own load (2,000 reads/s) does not grow with the cluster and
    /// weigh on the servers it measures.
    #[arg(long)]
    pub sample_every_ms: Option<u64>,
}

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "sandbox-demo")]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 23306)]
    pub base_port: u16,
}

/// min / median / max of a sample.
pub fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    (v[0], median, v[n - 1])
}

/// One benchmark line: min / median / max with `decimals` digits.
pub fn line_with(name: &str, v: Vec<f64>, decimals: usize) -> String {
    let (min, med, max) = summary(v);
    format!("  {name:<48} min {min:>9.decimals$}  median {med:>9.decimals$}  max {max:>9.decimals$}")
}

pub fn line(name: &str, v: Vec<f64>) -> String {
    line_with(name, v, 1)
}

fn bench_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("baton-bench-{name}-{}", std::process::id()))
}

pub async fn run(cmd: BenchCmd) -> CliResult {
    match cmd {
        BenchCmd::Http { rounds, base_port, seconds, clients } => {
            super::bench_http::run(rounds, base_port, seconds, clients).await
        }
        BenchCmd::Fleet { instances, cluster_size, poll_s, duration_s, hanging, via_connector } => {
            let b = super::bench_fleet::FleetBench {
                instances,
                cluster_size,
                poll_s,
                duration_s,
                hanging_pct: hanging,
                via_connector,
            };
            super::bench_fleet::run(b).await
        }
        BenchCmd::Ha { takeovers, handovers, lease_ttl_s, base_port } => {
            super::bench_ha::run(super::bench_ha::HaBench { takeovers, handovers, lease_ttl_s, base_port }).await
        }
        BenchCmd::Scripts { runs, candidates } => super::bench_scripts::run(runs, candidates).await,
        BenchCmd::Sandbox { runs, base_port } => {
            let (mut ups, mut baseline) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let dir = bench_dir("sandbox");
                let t = Instant::now();
                let sb = Sandbox::up(&SandboxSpec { dir: dir.clone(), base_port, replicas: 3, alias: None }).await?;
                ups.push(t.elapsed().as_secs_f64() * 1000.0);
                sb.down().await?;
                let _ = std::fs::remove_dir_all(&dir);
                // Baseline: what a plain script spends before starting anything.
                let t = Instant::now();
                for i in 0..4 {
                    let d = dir.join(format!("plain{i}"));
                    let out = std::process::Command::new("mariadb-install-db")
                        .args([
                            "--no-defaults",
                            "--auth-root-authentication-method=normal",
                            "--skip-test-db",
                            "--user=root",
                        ])
                        .arg(format!("--datadir={}", d.display()))
                        .output()?;
                    if !out.status.success() {
                        return Err(format!("mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr)).into());
                    }
                }
                baseline.push(t.elapsed().as_secs_f64() * 1000.0);
                let _ = std::fs::remove_dir_all(&dir);
            }
            println!("sandbox up --replicas 3 ({runs} runs, ms):");
            println!("{}", line("baton sandbox up (4 instances ready)", ups));
            println!("{}", line("baseline: mariadb-install-db x4 only", baseline));
            Ok(())
        }
        BenchCmd::Discovery { runs, base_port } => {
            let dir = bench_dir("discovery");
            let sb = Sandbox::up(&SandboxSpec { dir: dir.clone(), base_port, replicas: 3, alias: None }).await?;
            let cfg = sb.config();
            let conn = Connector::new(&cfg);
            let (mut cold, mut warm) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let fresh = Connector::new(&cfg);
                let t = Instant::now();
                crate::discovery::discover(&fresh, &cfg, &[sb.master()]).await?;
                cold.push(t.elapsed().as_secs_f64() * 1000.0);
                fresh.close().await;
                let t = Instant::now();
                crate::discovery::discover(&conn, &cfg, &[sb.master()]).await?;
                warm.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            conn.close().await;
            sb.down().await?;
            let _ = std::fs::remove_dir_all(&dir);
            println!("discovery of a 1+3 topology ({runs} runs, ms):");
            println!("{}", line("new connections (cold)", cold));
            println!("{}", line("pooled connections (warm)", warm));
            Ok(())
        }
        BenchCmd::Takeover(args) => bench_takeover(args).await,
    }
}

async fn bench_takeover(args: TakeoverBench) -> CliResult {
    let dir = bench_dir("takeover");
    if args.sandbox {
        for &replicas in &args.replicas {
            let sb = Sandbox::up(&SandboxSpec { dir: dir.clone(), base_port: args.base_port, replicas, alias: None })
                .await?;
            if args.semi_sync {
                sb.enable_semi_sync().await?;
            }
            let result = takeover_rounds(&args, sb.config(), sb.master().to_string()).await;
            sb.down().await?;
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
        Ok(())
    } else {
        let hint = args.cluster.clone().ok_or("give --sandbox or --cluster")?;
        takeover_rounds(&args, crate::config::Config::load(None)?, hint).await
    }
}

/// The percentile `p` (0..=100) of a sample (nearest rank).
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Resident memory of a process, in MiB (VmRSS from /proc).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A `baton serve` child process on a free port, for --http.
struct ServeChild {
    child: tokio::process::Child,
    base: String,
}

impl ServeChild {
    async fn start(cfg: &crate::config::Config) -> Result<ServeChild, Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = cfg.paths.data_dir.join("bench-serve");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("serve.toml");
        std::fs::write(
            &file,
            format!(
                "[topology]\nuser = \"{}\"\npassword = \"{}\"\n[replication]\nuser = \"{}\"\npassword = \"{}\"\n\
                 [paths]\ndata_dir = \"{}\"\nhooks_dir = \"{}\"\n[scripts]\npolicy = \"\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
                cfg.topology.user,
                cfg.topology.password.expose(),
                cfg.replication.user,
                cfg.replication.password.expose(),
                cfg.paths.data_dir.display(),
                dir.join("no-hooks").display()
            ),
        )?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--config")
            .arg(&file)
            .arg("serve")
            .env_remove("BATON_CONFIG")
            .kill_on_drop(true)
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        // Ready when /healthz answers (bounded).
        let http = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if Instant::now() > until {
                return Err("baton serve did not answer /healthz within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(ServeChild { child, base })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

/// The shipped HAProxy hook, for `--via-haproxy` (the bench runs wherever the binary is).
const HAPROXY_HOOK: &str = include_str!("../../hooks/haproxy_writer.lua");

async fn takeover_rounds(args: &TakeoverBench, mut cfg: crate::config::Config, hint: String) -> CliResult {
    if args.via_haproxy && args.http {
        return Err("--via-haproxy and --http are separate runs".into());
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir)?);
    let connector = Arc::new(Connector::new(&cfg));
    let first = crate::discovery::discover_hint(&connector, &cfg, store.as_ref(), &hint).await?;
    let members: Vec<InstanceKey> = first.members.iter().map(|m| m.key.clone()).collect();
    let a = first.master.clone().ok_or("no master")?;
    let haproxy = if args.via_haproxy {
        let dir = bench_dir("haproxy");
        let h = crate::sandbox::haproxy::Haproxy::start(&dir, &members, &a).await?;
        let hooks = dir.join("hooks");
        std::fs::create_dir_all(&hooks)?;
        std::fs::write(hooks.join("haproxy_writer.lua"), HAPROXY_HOOK)?;
        cfg.paths.hooks_dir = hooks;
        cfg.scripts.allow_shell = true;
        cfg.scripts.settings = toml::from_str(&format!(
            "[haproxy]\nadmin = {}\nbackend = \"{}\"",
            toml::Value::String(h.admin_command()),
            crate::sandbox::haproxy::BACKEND
        ))?;
        Some(h)
    } else {
        None
    };
    let (engine, _scripts) = if haproxy.is_some() {
        let env = crate::lua::Env::new(&cfg, store.clone());
        let host = crate::lua::ScriptHost::start(env.clone()).await?;
        (Engine::new(env.cfg.clone(), env.connector.clone(), store.clone(), host.clone()), Some(host))
    } else {
        (Engine::new(Arc::new(cfg.clone()), connector.clone(), store.clone(), Arc::new(NoScripts)), None)
    };
    let b = first.replicas_of(&a).first().map(|m| m.key.clone()).ok_or("no replica")?;
    // From now on the cluster is named by its alias (its name changes with every takeover).
    let hint = first.alias.clone().unwrap_or(hint);
    let serve = if args.http { Some(ServeChild::start(&cfg).await?) } else { None };
    let http = reqwest::Client::new();
    if let Some(s) = &serve {
        // The server learns the alias from one discovery by a member.
        http.get(format!("{}/api/v1/clusters/{a}", s.base)).send().await?;
    }
    let rss_start = serve.as_ref().and_then(|s| rss_mib(s.pid()));

    let base_id = (std::process::id() as i64) % 1000 * 100 + 1;
    // Direct writers know every member and write to whichever accepts; proxied ones know only
    // HAProxy's address.
    let mut writers = Vec::new();
    let direct = args.writers.max(1);
    for n in 0..direct * if haproxy.is_some() { 2 } else { 1 } {
        let to = match &haproxy {
            Some(h) if n >= direct => vec![h.key()],
            _ => members.clone(),
        };
        writers.push(
            Writer::start(
                to,
                APP_USER.0,
                APP_USER.1,
                base_id + n as i64,
                Duration::from_millis(args.write_interval_ms),
                1e9,
            )
            .await,
        );
    }
    let sample_every =
        Duration::from_millis(args.sample_every_ms.unwrap_or((2 * members.len() as u64).div_ceil(4).max(2)));
    let sampler =
        Sampler::start(members.clone(), &cfg.topology.user, cfg.topology.password.expose(), sample_every).await;
    // Readers on the server's read routes while takeovers run.
    let stop_readers = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    if let Some(s) = &serve {
        for n in 0..args.readers {
            let path =
                if n % 2 == 0 { format!("/api/v1/clusters/{hint}") } else { format!("/api/cluster/alias/{hint}") };
            let (url, http, stop) = (format!("{}{path}", s.base), http.clone(), stop_readers.clone());
            readers.push(tokio::spawn(async move {
                let (mut ok, mut err) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match http.get(&url).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok += 1;
                        }
                        _ => err += 1,
                    }
                }
                (ok, err)
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut gaps, mut proxied_gaps, mut windows, mut calls) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Per takeover, the longest gap of any kind while it ran (the machine's own write latency
    // included), beside the gap across the fence.
    let mut longest_gaps = Vec::new();
    // Per phase, its durations (in-process runs: the reports are at hand).
    let mut phase_ms: Vec<(crate::engine::Phase, Vec<f64>)> = Vec::new();
    let mut failures = 0;
    let started = Instant::now();
    let mut round = 0usize;
    loop {
        match args.duration {
            Some(d) if started.elapsed() >= Duration::from_secs(d) => break,
            None if round >= args.rounds => break,
            _ => {}
        }
        let to = if round.is_multiple_of(2) { b.clone() } else { a.clone() };
        for w in &writers {
            w.take_window_gap();
        }
        let t = Instant::now();
        let (status, window, errors) = match &serve {
            None => {
                let r = engine
                    .takeover(
                        TakeoverRequest {
                            cluster_hint: hint.clone(),
                            designated: Some(to.clone()),
                            start_replication: true,
                            ..Default::default()
                        },
                        None,
                    )
                    .await;
                for p in &r.phases {
                    match phase_ms.iter_mut().find(|(name, _)| *name == p.name) {
                        Some((_, v)) => v.push(p.duration_ms),
                        None => phase_ms.push((p.name, vec![p.duration_ms])),
                    }
                }
                (r.status.as_str().to_string(), r.write_unavailable_ms, r.errors.join("; "))
            }
            Some(s) => {
                let body = serde_json::json!({ "designated": to.to_string(), "start_replication": true });
                let r: serde_json::Value = http
                    .post(format!("{}/api/v1/clusters/{hint}/takeover", s.base))
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                let rep = if r.get("takeover").is_some() { &r["takeover"] } else { &r };
                (
                    rep["status"].as_str().unwrap_or("?").to_string(),
                    rep["write_unavailable_ms"].as_f64(),
                    rep["errors"].to_string(),
                )
            }
        };
        calls.push(t.elapsed().as_secs_f64() * 1000.0);
        // Let the writers land a few rows on the new master before reading their longest gap.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (n, w) in writers.iter().enumerate() {
            let g = w.take_window_gap();
            if n < direct {
                gaps.push(g.across_refusal);
                longest_gaps.push(g.longest);
            } else {
                proxied_gaps.push(g.across_refusal);
            }
        }
        if status != "promoted" {
            failures += 1;
            eprintln!("round {round}: {status} {errors}");
        }
        if let Some(w) = window {
            windows.push(w);
        }
        round += 1;
        if args.duration.is_some() {
            let next = started + Duration::from_millis(args.every_ms * round as u64);
            tokio::time::sleep_until(next.into()).await;
        }
    }
    stop_readers.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut reads, mut read_errors) = (0u64, 0u64);
    for r in readers {
        let (ok, err) = r.await?;
        reads += ok;
        read_errors += err;
    }
    let rss_end = serve.as_ref().and_then(|s| rss_mib(s.pid()));
    let mut all_acked = Vec::new();
    for w in writers {
        let stats = w.stop().await;
        all_acked.push(stats.acked);
    }
    let (rounds, double) = sampler.stop().await;

    // Every acknowledged row must be on every instance once replication has caught up.
    let final_cluster = crate::discovery::discover(&connector, &cfg, std::slice::from_ref(&a)).await?;
    let master = final_cluster.master.clone().ok_or("no master at the end")?;
    let pos = crate::mysql::ops::own_position(&connector, &master).await?;
    let mut lost = 0usize;
    for m in &members {
        if *m != master {
            let d = connector.dialect(m).await?;
            crate::mysql::ops::wait_for_gtid(&connector, d.as_ref(), m, &pos.gtid, Duration::from_secs(30)).await?;
        }
        for (n, acked) in all_acked.iter().enumerate() {
            let have: std::collections::HashSet<i64> =
                rows_of(&connector, m, base_id + n as i64).await?.into_iter().collect();
            lost += acked.iter().filter(|id| !have.contains(id)).count();
        }
    }
    connector.close().await;
    let acked: usize = all_acked.iter().map(|a| a.len()).sum();

    println!(
        "takeover benchmark: {round} takeovers{} on a 1+{} topology, {} writer(s) every {} ms{} (ms):",
        args.duration.map(|d| format!(" in {d} s")).unwrap_or_default(),
        members.len() - 1,
        args.writers.max(1),
        args.write_interval_ms,
        if args.semi_sync {
            ", semi-synchronous"
        } else if args.http {
            ", through baton serve"
        } else if args.via_haproxy {
            ", as many through HAProxy"
        } else {
            ""
        }
    );
    println!(
        "  write gap per writer per takeover: median {:.1}  p99 {:.1}  max {:.1}  ({} gaps)",
        percentile(&gaps, 50.0),
        percentile(&gaps, 99.0),
        percentile(&gaps, 100.0),
        gaps.len()
    );
    println!(
        "  (the gap in which the writer was refused; the longest gap of any kind while a takeover ran: median {:.1}  max {:.1})",
        percentile(&longest_gaps, 50.0),
        percentile(&longest_gaps, 100.0),
    );
    if haproxy.is_some() {
        println!(
            "  write gap through HAProxy:          median {:.1}  p99 {:.1}  max {:.1}  ({} gaps)",
            percentile(&proxied_gaps, 50.0),
            percentile(&proxied_gaps, 99.0),
            percentile(&proxied_gaps, 100.0),
            proxied_gaps.len()
        );
    }
    println!("{}", line("engine fence-to-writable window", windows));
    println!("{}", line("whole takeover call", calls));
    for (p, v) in phase_ms {
        println!("{}", line(&format!("  phase {}", p.name()), v));
    }
    println!("  rows acknowledged {acked}  lost {lost}  (checked on {} instances)", members.len());
    println!(
        "  read_only samples {rounds} (every {} ms), with two writable instances (confirmed) {double}",
        sample_every.as_millis()
    );
    println!("  takeovers not promoted: {failures}");
    if let (Some(s), Some(e)) = (rss_start, rss_end) {
        println!("  baton serve RSS: {s:.1} MiB at the start, {e:.1} MiB at the end; read requests served {reads}, failed {read_errors}");
    }
    if lost > 0 || double > 0 || failures > 0 {
        return Err("the benchmark saw lost rows, two writable instances, or failed takeovers".into());
    }
    Ok(())
}

/// The README's first command: a sandbox, its topology, a takeover with live phases, the new topology.
pub async fn demo(args: DemoArgs) -> CliResult {
    if let Ok(old) = Sandbox::load(&args.dir) {
        old.down().await?;
    }
    println!("== starting a 1+3 MariaDB sandbox in {}", args.dir.display());
    let sb = Sandbox::up(&SandboxSpec { dir: args.dir.clone(), base_port: args.base_port, replicas: 3, alias: None })
        .await?;
    let cfg = sb.config();
    let store = SqliteStore::open(&cfg.paths.data_dir)?;
    let conn = Connector::new(&cfg);
    let before = crate::discovery::discover_hint(&conn, &cfg, &store, &sb.master().to_string()).await?;
    println!("== topology before\n{}", super::topology::render(&before));
    conn.close().await;
    println!("== baton takeover {} --auto", sb.alias);
    super::takeover::run(
        &cfg,
        super::takeover::TakeoverArgs {
            action: None,
            cluster: Some(sb.alias.clone()),
            designated: None,
            auto: true,
            start_replication: false,
            expected_master: None,
            json: false,
            dry_run: false,
            plan_hash: None,
            api: Vec::new(),
        },
    )
    .await?;
    let conn = Connector::new(&cfg);
    let after = crate::discovery::discover_hint(&conn, &cfg, &store, &sb.alias).await?;
    println!("== topology after\n{}", super::topology::render(&after));
    conn.close().await;
    println!("the sandbox keeps running; stop it with: baton sandbox down --dir {}", args.dir.display());
    Ok(())
}
