//! Benchmarks and the demo. Numbers are medians of several runs; nothing here is a test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::CliResult;
use crate::engine::{Engine, NoScripts, Status, TakeoverRequest};
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
    /// Start a 1+3 sandbox for the run (else --cluster must name one).
    #[arg(long)]
    pub sandbox: bool,
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    #[arg(long, default_value_t = 5)]
    pub write_interval_ms: u64,
    #[arg(long, default_value_t = 24306)]
    pub base_port: u16,
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

fn line(name: &str, v: Vec<f64>) -> String {
    let (min, med, max) = summary(v);
    format!("  {name:<40} min {min:>8.1}  median {med:>8.1}  max {max:>8.1}")
}

fn bench_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("baton-bench-{name}-{}", std::process::id()))
}

pub async fn run(cmd: BenchCmd) -> CliResult {
    match cmd {
        BenchCmd::Http { rounds, base_port, seconds, clients } => super::bench_http::run(rounds, base_port, seconds, clients).await,
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
                        .args(["--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"])
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
        let sb = Sandbox::up(&SandboxSpec { dir: dir.clone(), base_port: args.base_port, replicas: 3, alias: None }).await?;
        let result = takeover_rounds(&args, sb.config(), sb.master().to_string()).await;
        sb.down().await?;
        let _ = std::fs::remove_dir_all(&dir);
        result
    } else {
        let hint = args.cluster.clone().ok_or("give --sandbox or --cluster")?;
        takeover_rounds(&args, crate::config::Config::load(None)?, hint).await
    }
}

async fn takeover_rounds(args: &TakeoverBench, cfg: crate::config::Config, hint: String) -> CliResult {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir)?);
    let connector = Arc::new(Connector::new(&cfg));
    let engine = Engine::new(Arc::new(cfg.clone()), connector.clone(), store.clone(), Arc::new(NoScripts));
    let first = crate::discovery::discover_hint(&connector, &cfg, store.as_ref(), &hint).await?;
    let members: Vec<InstanceKey> = first.members.iter().map(|m| m.key.clone()).collect();
    let a = first.master.clone().ok_or("no master")?;
    let b = first.replicas_of(&a).first().map(|m| m.key.clone()).ok_or("no replica")?;
    // From now on the cluster is named by its alias (its name changes with every takeover).
    let hint = first.alias.clone().unwrap_or(hint);

    let writer_id = (std::process::id() as i64) % 1000 + 1;
    let writer = Writer::start(members.clone(), APP_USER.0, APP_USER.1, writer_id, Duration::from_millis(args.write_interval_ms), 1e9).await;
    let sampler = Sampler::start(members.clone(), &cfg.topology.user, cfg.topology.password.expose(), Duration::from_millis(2)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut gaps, mut windows, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    let mut failures = 0;
    for round in 0..args.rounds {
        let to = if round % 2 == 0 { b.clone() } else { a.clone() };
        writer.take_window_gap();
        let t = Instant::now();
        let r = engine
            .takeover(
                TakeoverRequest { cluster_hint: hint.clone(), designated: Some(to.clone()), start_replication: true, ..Default::default() },
                None,
            )
            .await;
        calls.push(t.elapsed().as_secs_f64() * 1000.0);
        // Let the writer land a few rows on the new master before reading its longest gap.
        tokio::time::sleep(Duration::from_millis(100)).await;
        gaps.push(writer.take_window_gap());
        if r.status != Status::Promoted {
            failures += 1;
            eprintln!("round {round}: {} {:?}", r.status.as_str(), r.errors);
        }
        if let Some(w) = r.write_unavailable_ms {
            windows.push(w);
        }
    }
    let stats = writer.stop().await;
    let (rounds, double) = sampler.stop().await;

    // Every acknowledged row must be on every instance once replication has caught up.
    let final_cluster = crate::discovery::discover(&connector, &cfg, &[a.clone()]).await?;
    let master = final_cluster.master.clone().ok_or("no master at the end")?;
    let pos = crate::mysql::ops::own_position(&connector, &master).await?;
    let mut lost = 0usize;
    for m in &members {
        if *m != master {
            let d = connector.dialect(m).await?;
            crate::mysql::ops::wait_for_gtid(&connector, d.as_ref(), m, &pos.gtid, Duration::from_secs(30)).await?;
        }
        let have: std::collections::HashSet<i64> = rows_of(&connector, m, writer_id).await?.into_iter().collect();
        lost += stats.acked.iter().filter(|id| !have.contains(id)).count();
    }
    connector.close().await;

    println!("takeover benchmark: {} rounds on a 1+{} topology, writer every {} ms (ms):", args.rounds, members.len() - 1, args.write_interval_ms);
    println!("{}", line("client-observed longest write gap", gaps));
    println!("{}", line("engine fence-to-writable window", windows));
    println!("{}", line("whole takeover call", calls));
    println!("  rows acknowledged {}  lost {}  (checked on {} instances)", stats.acked.len(), lost, members.len());
    println!("  read_only samples {rounds}, with two writable instances (confirmed) {double}");
    println!("  takeovers not promoted: {failures}");
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
    let sb = Sandbox::up(&SandboxSpec { dir: args.dir.clone(), base_port: args.base_port, replicas: 3, alias: None }).await?;
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
