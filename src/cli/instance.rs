//! `baton replica`, `read-only`, `relocate`, `move-up`, `forget`, `operations`: the instance
//! commands around a takeover (see `engine::commands`), run here with the local configuration.

use std::sync::Arc;

use clap::{Args, Subcommand};

use super::CliResult;
use crate::config::Config;
use crate::engine::{Engine, InstanceCommand, NoScripts};
use crate::mysql::Connector;
use crate::store::Store;
use crate::topology::InstanceKey;

#[derive(Subcommand)]
pub enum ReplicaCmd {
    /// START SLAVE / START REPLICA.
    Start { instance: InstanceKey },
    /// STOP SLAVE / STOP REPLICA.
    Stop { instance: InstanceKey },
    /// Stop, then start.
    Restart { instance: InstanceKey },
}

#[derive(Subcommand)]
pub enum ReadOnlyCmd {
    On { instance: InstanceKey },
    Off { instance: InstanceKey },
}

#[derive(Args)]
pub struct RelocateArgs {
    pub instance: InstanceKey,
    /// The member to replicate from (GTID).
    #[arg(long)]
    pub below: InstanceKey,
}

#[derive(Args)]
pub struct ForgetArgs {
    /// The instance to drop from its remembered cluster.
    pub instance: Option<InstanceKey>,
    /// Forget a whole cluster (its name or alias) instead.
    #[arg(long, conflicts_with = "instance")]
    pub cluster: Option<String>,
}

fn who() -> String {
    format!("cli:{}@{}", std::env::var("USER").unwrap_or_else(|_| "?".into()), crate::engine::report::host_name())
}

/// Runs one instance command and prints the instance's replication after it.
pub async fn run(cfg: &Config, key: InstanceKey, cmd: InstanceCommand) -> CliResult {
    let store: Arc<dyn Store> = crate::store::open(cfg)?;
    let engine = Engine::new(Arc::new(cfg.clone()), Arc::new(Connector::new(cfg)), store, Arc::new(NoScripts));
    let (report, result) = engine.instance_command(&key, cmd, &who()).await;
    let cluster = result?;
    for op in &report.ops {
        for s in &op.statements {
            println!("{}: {s}", op.instance);
        }
    }
    if let Some(i) = cluster.instance(&key) {
        let source = i.source().map(|s| format!("replicates from {s}")).unwrap_or_else(|| "no source".into());
        println!("{key}: {source}, read_only={}", i.read_only);
    }
    Ok(())
}

pub fn forget(cfg: &Config, args: ForgetArgs) -> CliResult {
    let store = crate::store::open(cfg)?;
    match (args.instance, args.cluster) {
        (Some(k), _) if store.forget_member(&k)? => println!("forgot {k}"),
        (Some(k), _) => return Err(format!("{k} is not a member of a remembered cluster").into()),
        (None, Some(c)) if store.forget_cluster(&c)? => println!("forgot cluster {c}"),
        (None, Some(c)) => return Err(format!("no remembered cluster is named or aliased {c}").into()),
        (None, None) => return Err("name an instance, or --cluster".into()),
    }
    Ok(())
}

/// The instance commands on record, newest first.
pub fn operations(cfg: &Config, json: bool) -> CliResult {
    let store = crate::store::open(cfg)?;
    for e in store.operations(200)? {
        if json {
            println!("{}", e.record);
        } else {
            let r = &e.record;
            println!(
                "{}  {}  {} {}  by {}{}",
                r["id"].as_str().unwrap_or_default(),
                e.status,
                r["command"]["command"].as_str().unwrap_or_default(),
                r["instance"].as_str().unwrap_or_default(),
                r["by"].as_str().unwrap_or_default(),
                r["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}
