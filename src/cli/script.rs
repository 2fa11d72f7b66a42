//! `baton script ...`: tools for script authors: check, test a policy offline, status, watch.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::CliResult;
use crate::config::Config;
use crate::engine::{plan, Choice, HookPhase, PlanInputs, PolicyInput};
use crate::lua::{watch, Env, LoadedScripts, ReloadEvent, ScriptHost, Sources};
use crate::store::{PromotionRule, SqliteStore, Store};
use crate::topology::{Cluster, InstanceKey};

#[derive(Subcommand)]
pub enum ScriptCmd {
    /// Load and validate scripts (default: the configured scripts and hooks directories).
    Check {
        /// Files or directories: a policy file, a hook file in a hooks directory, a directory.
        paths: Vec<PathBuf>,
    },
    /// Run a policy offline against a saved `baton topology --json` snapshot.
    Test(TestArgs),
    /// Load the configured scripts and show the version, the policy and the hooks per phase.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Load the configured scripts and reload them on every change (and on SIGHUP) until Ctrl-C.
    Watch,
}

#[derive(Args)]
pub struct TestArgs {
    /// The policy file.
    pub policy: PathBuf,
    /// A snapshot written by `baton topology CLUSTER --json`.
    #[arg(long)]
    pub topology: PathBuf,
    /// Promotion rules to apply, as host:port=rule (prefer, neutral, prefer_not, must_not).
    #[arg(long = "rule")]
    pub rules: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

/// Scripts loaded for offline use: no stored state, connections only if a script asks.
fn offline_env(cfg: &Config) -> Result<Arc<Env>, Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory()?);
    Ok(Env::new(cfg, store))
}

pub async fn run(cfg: &Config, cmd: ScriptCmd) -> CliResult {
    match cmd {
        ScriptCmd::Check { paths } => {
            let sources = if paths.is_empty() { Sources::read(cfg)? } else { Sources::for_paths(&paths, cfg)? };
            let loaded = LoadedScripts::load(&sources, offline_env(cfg)?).await?;
            print_loaded(&loaded);
            Ok(())
        }
        ScriptCmd::Test(args) => test(cfg, args).await,
        ScriptCmd::Status { json } => {
            let host = ScriptHost::start(offline_env(cfg)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&host.status())?);
            } else {
                print_loaded(&host.loaded());
            }
            Ok(())
        }
        ScriptCmd::Watch => {
            let host = ScriptHost::start(offline_env(cfg)?).await?;
            print_loaded(&host.loaded());
            let mut events = host.subscribe();
            let _watch = watch::watch(host.clone())?;
            println!(
                "watching {} and {} (Ctrl-C to stop)",
                cfg.paths.scripts_dir.display(),
                cfg.paths.hooks_dir.display()
            );
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(ReloadEvent::Loaded { version, ms }) => println!("reloaded: version {} in {ms:.1} ms", version.id),
                        Ok(ReloadEvent::Failed { error, kept }) => println!("NOT reloaded (version {kept} keeps running): {error}"),
                        Err(_) => return Ok(()),
                    },
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
    }
}

fn print_loaded(loaded: &LoadedScripts) {
    let v = loaded.version_info();
    println!("ok: version {} ({} files)", v.id, v.files.len());
    println!("  policy: {}", loaded.policy_file().unwrap_or("none (built-in ordering)"));
    for p in HookPhase::ALL {
        let names = loaded.hook_names(p);
        println!("  {:<14} {}", p.name(), if names.is_empty() { "-".to_string() } else { names.join(", ") });
    }
}

async fn test(cfg: &Config, args: TestArgs) -> CliResult {
    let text = std::fs::read_to_string(&args.topology).map_err(|e| format!("{}: {e}", args.topology.display()))?;
    let cluster: Cluster = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a `baton topology --json` snapshot: {e}", args.topology.display()))?;
    let master = cluster
        .master
        .clone()
        .ok_or_else(|| format!("{}: the snapshot has no single master", args.topology.display()))?;
    let mut inputs = PlanInputs {
        ignore_hostname_filters: cfg.takeover.promotion_ignore_hostname_filters.clone(),
        reasonable_lag_s: cfg.takeover.reasonable_lag_s,
        allow_lax_gtid: cfg.takeover.allow_lax_gtid,
        ..Default::default()
    };
    for r in &args.rules {
        let (k, rule) = r.split_once('=').ok_or_else(|| format!("--rule {r}: expected host:port=rule"))?;
        let key: InstanceKey = k.parse().map_err(|e| format!("--rule {r}: {e}"))?;
        let rule: PromotionRule = rule.parse().map_err(|e| format!("--rule {r}: {e}"))?;
        inputs.rules.insert(key, rule);
    }
    let sources = Sources::for_paths(std::slice::from_ref(&args.policy), cfg)?;
    if sources.policy.is_none() {
        return Err(format!("{}: not a policy file", args.policy.display()).into());
    }
    let loaded = LoadedScripts::load(&sources, offline_env(cfg)?).await?;
    let (candidates, excluded) = plan::candidates(&cluster, &master, &inputs);
    let input = Arc::new(PolicyInput { cluster, master, candidates, excluded });
    let choice = loaded.run_policy(input.clone()).await?;
    let (chosen, reason) = match &choice {
        Choice::Chosen { key, reason } => (Some(key.to_string()), reason.clone()),
        Choice::Refused { reason } => (None, reason.clone()),
    };
    if args.json {
        println!("{}", serde_json::json!({ "chosen": chosen, "reason": reason }));
    } else {
        match &chosen {
            Some(k) => println!("chosen: {k}\nreason: {reason}"),
            None => println!("refused: {reason}"),
        }
    }
    match chosen {
        Some(k) if !input.candidates.iter().any(|c| c.instance.key.to_string() == k) => {
            Err(format!("the policy chose {k}, which is not an eligible candidate: a takeover would refuse").into())
        }
        Some(_) => Ok(()),
        None => Err("the policy refused".into()),
    }
}
