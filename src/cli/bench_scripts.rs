//! `baton bench scripts`: the Lua host's costs. Each figure comes with a baseline measured in
//! the same run: the built-in Rust policy for the choice, no scripts for the hook call, and the
//! bare load of the same files for the reload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bench::line_with;
use super::CliResult;
use crate::config::Config;
use crate::engine::{plan, Choice, HookContext, HookPhase, NoScripts, PlanInputs, PolicyInput, Scripts};
use crate::lua::{watch, Env, LoadedScripts, ReloadEvent, ScriptHost, Sources};
use crate::store::SqliteStore;
use crate::topology::{Cluster, Instance, InstanceKey, Member};

/// A master and `n` direct replicas with varied positions and lag (deterministic).
fn synthetic_cluster(n: usize) -> Cluster {
    let instance = |port: u16, seq: u64, lag: Option<u64>, master: bool| -> Instance {
        let v = serde_json::json!({
            "key": format!("10.0.0.1:{port}"), "flavor": "mariadb", "version": "10.11.9-MariaDB-log",
            "version_comment": "bench", "server_id": port, "server_uuid": null, "read_only": !master,
            "super_read_only": null, "log_bin": true, "log_slave_updates": true, "binlog_format": "ROW",
            "gtid": { "flavor": "mariadb", "binlog_pos": format!("0-1-{seq}"), "current_pos": format!("0-1-{seq}"),
                      "slave_pos": if master { String::new() } else { format!("0-1-{seq}") }, "strict_mode": true },
            "binlog": { "file": "mysql-bin.000001", "pos": 4 + seq },
            "replication": if master { serde_json::Value::Null } else { serde_json::json!({
                "source": "10.0.0.1:3306", "io_thread": "yes", "sql_thread": "yes", "seconds_behind": lag,
                "read_coordinates": { "file": "mysql-bin.000001", "pos": 4 + seq },
                "exec_coordinates": { "file": "mysql-bin.000001", "pos": 4 + seq },
                "gtid_mode": "slave_pos", "last_io_error": null, "last_sql_error": null, "sql_delay": 0, "ssl": false }) },
            "reported_replicas": [], "probe_ms": 1.0
        });
        serde_json::from_value(v).expect("synthetic instance")
    };
    let master_key: InstanceKey = "10.0.0.1:3306".parse().expect("key");
    let mut members = vec![Member {
        key: master_key.clone(),
        depth: Some(0),
        source: None,
        instance: Some(instance(3306, 1_000_000, None, true)),
        error: None,
    }];
    for i in 0..n {
        let port = 10_000 + i as u16;
        // Positions and lags spread so that the ordering has work to do at every level.
        let seq = 1_000_000 - ((i * 7919) % 97) as u64;
        let lag = ((i * 104_729) % 13) as u64;
        let inst = instance(port, seq, Some(lag), false);
        members.push(Member {
            key: inst.key.clone(),
            depth: Some(1),
            source: Some(master_key.clone()),
            instance: Some(inst),
            error: None,
        });
    }
    Cluster {
        name: master_key.to_string(),
        alias: Some("bench".into()),
        master: Some(master_key),
        members,
        problems: Vec::new(),
    }
}

fn hook_ctx() -> HookContext {
    HookContext {
        takeover_id: "bench".into(),
        command: "graceful-master-takeover".into(),
        phase: "post_promote".into(),
        cluster: "10.0.0.1:3306".into(),
        alias: Some("bench".into()),
        old_master: Some("10.0.0.1:3306".into()),
        successor: Some("10.0.0.1:10000".into()),
        replicas: (0..3).map(|i| format!("10.0.0.1:{}", 10_000 + i)).collect(),
        lost_replicas: Vec::new(),
        phase_timings: Vec::new(),
        dry_run: false,
        status: "running".into(),
        error: None,
        rolled_back: Vec::new(),
        scripts_version: None,
        semi_sync: None,
    }
}

fn env(cfg: &Config) -> Result<Arc<Env>, Box<dyn std::error::Error>> {
    Ok(Env::new(cfg, Arc::new(SqliteStore::in_memory()?)))
}

pub async fn run(runs: usize, candidates: usize) -> CliResult {
    let base = std::env::temp_dir().join(format!("baton-bench-scripts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let mut cfg = Config::default();
    cfg.paths.scripts_dir = base.join("scripts");
    cfg.paths.hooks_dir = base.join("hooks");
    std::fs::create_dir_all(&cfg.paths.hooks_dir)?;
    // The shipped default policy and its module, copied so that the reload can edit them.
    std::fs::create_dir_all(cfg.paths.scripts_dir.join("lib"))?;
    let shipped = Config::default().paths.scripts_dir;
    std::fs::copy(shipped.join("policy.lua"), cfg.paths.scripts_dir.join("policy.lua"))
        .map_err(|e| format!("{}: {e} (run from the project root)", shipped.join("policy.lua").display()))?;
    std::fs::copy(shipped.join("lib/rank.lua"), cfg.paths.scripts_dir.join("lib/rank.lua"))?;
    std::fs::write(cfg.paths.hooks_dir.join("noop.lua"), "return { post_promote = function(ctx) return true end }")?;
    let result = measure(&cfg, runs, candidates).await;
    let _ = std::fs::remove_dir_all(&base);
    result
}

async fn measure(cfg: &Config, runs: usize, n: usize) -> CliResult {
    let host = ScriptHost::start(env(cfg)?).await?;
    let loaded = host.loaded();

    // 1. The policy's choice among n candidates, against the built-in Rust ordering.
    let cluster = synthetic_cluster(n);
    let master = cluster.master.clone().expect("master");
    let inputs = PlanInputs::default();
    let (candidates, excluded) = plan::candidates(&cluster, &master, &inputs);
    let input = Arc::new(PolicyInput { cluster: cluster.clone(), master: master.clone(), candidates, excluded });
    let (mut lua_ms, mut rust_ms, mut prep_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let lua = loaded.run_policy(input.clone()).await?;
        lua_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let (rust, _) = plan::choose_among(&master, &input.candidates, &input.excluded)?;
        rust_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let _ = plan::candidates(&cluster, &master, &inputs);
        prep_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        match lua {
            Choice::Chosen { key, .. } if key == rust => {}
            other => {
                return Err(format!("the Lua policy and the built-in ordering disagree: {other:?} vs {rust}").into())
            }
        }
    }
    println!("policy choice over {n} candidates ({runs} runs, ms):");
    println!("{}", line_with("scripts/policy.lua (tables built + choose)", lua_ms, 2));
    println!("{}", line_with("baseline: built-in Rust ordering", rust_ms, 2));
    println!("{}", line_with("(both) engine's safety rules -> candidates", prep_ms, 2));

    // 2. One hook call, against no scripts.
    let ctx = hook_ctx();
    let (mut hook_us, mut none_us) = (Vec::new(), Vec::new());
    for _ in 0..runs * 20 {
        let t = Instant::now();
        loaded.run_hooks(HookPhase::PostPromote, &ctx).await.result?;
        hook_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        NoScripts.run_hooks(HookPhase::PostPromote, &ctx).await.result?;
        none_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!("hook call ({} calls, µs; includes building the context table):", runs * 20);
    println!("{}", line_with("one no-op Lua hook", hook_us, 2));
    println!("{}", line_with("baseline: no scripts", none_us, 2));

    // 3. Reload: file written -> new version active, against loading the same files directly.
    let mut events = host.subscribe();
    let _watch = watch::watch(host.clone())?;
    let policy = cfg.paths.scripts_dir.join("policy.lua");
    let text = std::fs::read_to_string(&policy)?;
    let (mut reload_ms, mut load_ms) = (Vec::new(), Vec::new());
    for i in 0..runs.min(20) {
        let tmp = policy.with_extension("new");
        std::fs::write(&tmp, format!("{text}\n-- edit {i}\n"))?;
        let t = Instant::now();
        std::fs::rename(&tmp, &policy)?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Ok(ReloadEvent::Loaded { version, .. })) if host.status().version.id == version.id => break,
                Ok(Ok(ReloadEvent::Failed { error, .. })) => return Err(format!("reload failed: {error}").into()),
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(format!("reload events: {e}").into()),
                Err(_) => return Err("no reload within 10 s".into()),
            }
        }
        reload_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        LoadedScripts::load(&Sources::read(cfg)?, env(cfg)?).await?;
        load_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "reload ({} edits, ms; the watcher waits scripts.reload_debounce_ms = {} ms of quiet first):",
        runs.min(20),
        cfg.scripts.reload_debounce_ms
    );
    println!("{}", line_with("file renamed -> new version active", reload_ms, 2));
    println!("{}", line_with("baseline: read + load + validate only", load_ms, 2));
    Ok(())
}
