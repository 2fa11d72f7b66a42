//! The `baton` command line: parses arguments, loads the configuration, calls the library and
//! prints. The only place that writes to stdout.

mod admin;
#[cfg(feature = "lab")]
mod bench;
#[cfg(feature = "lab")]
mod bench_fleet;
#[cfg(feature = "lab")]
mod bench_ha;
#[cfg(feature = "lab")]
mod bench_http;
#[cfg(feature = "lab")]
mod bench_scripts;
mod client;
mod fleet;
mod instance;
#[cfg(feature = "lab")]
mod sandbox;
mod script;
mod takeover;
mod topology;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "baton", version, about = "Graceful master takeover for MySQL/MariaDB replication clusters")]
pub struct Cli {
    /// Configuration file (default: config/baton.toml when present, else built-in defaults).
    #[arg(long, global = true, env = "BATON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines on stderr (level from RUST_LOG, default warn).
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start, stop or inspect a local MariaDB replication topology.
    #[cfg(feature = "lab")]
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCmd),
    /// Show the live topology of a cluster.
    Topology(topology::TopologyArgs),
    /// Move the master role to a replica, gracefully.
    Takeover(takeover::TakeoverArgs),
    /// Check, test and watch the Lua policy and hooks.
    #[command(subcommand)]
    Script(script::ScriptCmd),
    /// Show the takeover history.
    Audit(admin::AuditArgs),
    /// Set, clear or list promotion rules.
    #[command(subcommand, name = "promotion-rule")]
    PromotionRule(admin::RuleCmd),
    /// Begin, end or list downtime.
    #[command(subcommand)]
    Downtime(admin::DowntimeCmd),
    /// Start, stop or restart replication on an instance.
    #[command(subcommand)]
    Replica(instance::ReplicaCmd),
    /// Set read_only on or off on an instance.
    #[command(subcommand, name = "read-only")]
    ReadOnly(instance::ReadOnlyCmd),
    /// Point a replica at another member of its cluster (GTID).
    Relocate(instance::RelocateArgs),
    /// Point a replica at its source's source.
    MoveUp { instance: crate::topology::InstanceKey },
    /// Forget an instance, or a whole cluster, from Baton's memory (no server changes).
    Forget(instance::ForgetArgs),
    /// The instance commands on record (who, what, the statements).
    Operations {
        #[arg(long)]
        json: bool,
    },
    /// Verify the store, or move its damaged records aside.
    #[command(subcommand)]
    Store(admin::StoreCmd),
    /// List cluster aliases and their claims, or move an alias to another cluster.
    #[command(subcommand)]
    Alias(admin::AliasCmd),
    /// Benchmarks (not tests): sandbox start, discovery, takeovers under a writer.
    #[command(subcommand)]
    #[cfg(feature = "lab")]
    Bench(bench::BenchCmd),
    /// Start a 1+3 sandbox, show it, take it over, show it again.
    #[cfg(feature = "lab")]
    Demo(bench::DemoArgs),
    /// Run the HTTP service: native API under /api/v1, orchestrator's routes under /api.
    Serve {
        /// Address to listen on (default: http.listen of the config).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Print the argon2 hash of a password read from stdin, for http.users.*.password_hash.
    HashPassword,
    /// Print a baton.toml for the setup an orchestrator JSON configuration describes, with what
    /// it did not carry over (and why) as comments.
    ImportOrchestratorConfig {
        /// orchestrator's configuration (orchestrator.conf.json).
        file: std::path::PathBuf,
    },
    /// Print a new random API token and its SHA-256, for http.tokens.*.sha256.
    HashToken,
    /// Every known cluster at a glance: members, worst lag, problems, takeover readiness.
    Fleet(fleet::FleetArgs),
    /// `fleet`, again every poll interval, until Ctrl-C.
    Watch(fleet::FleetArgs),
    /// Several Baton nodes on etcd: which leads, each node's view.
    #[command(subcommand)]
    Ha(HaCmd),
}

#[derive(Subcommand)]
pub enum HaCmd {
    /// Each node's view: its id, whether it leads, the leader it sees, its lease, the nodes alive.
    Status {
        /// Every node's URL (comma-separated).
        #[arg(long, env = "BATON_API", value_delimiter = ',', required = true)]
        api: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

/// A failure the CLI reports as one line on stderr and exit status 1.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    crate::init_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(run(cli));
    // A script call stuck in a C function keeps its blocking thread (its VM was given up):
    // never wait for it on the way out.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> CliResult {
    let load = || Config::load(cli.config.as_deref());
    match cli.command {
        #[cfg(feature = "lab")]
        Command::Sandbox(cmd) => sandbox::run(cmd).await,
        Command::Topology(args) => topology::run(&load()?, args).await,
        Command::Takeover(args) => takeover::run(&load()?, args).await,
        Command::Script(cmd) => script::run(&load()?, cmd).await,
        Command::Audit(args) => admin::audit(&load()?, args).await,
        Command::Ha(HaCmd::Status { api, json }) => ha_status(&api, json).await,
        Command::Fleet(args) => fleet::fleet(&load()?, args).await,
        Command::Watch(args) => fleet::watch(&load()?, args).await,
        Command::PromotionRule(cmd) => admin::rule(&load()?, cmd),
        Command::Downtime(cmd) => admin::downtime(&load()?, cmd),
        Command::Alias(cmd) => admin::alias(&load()?, cmd),
        Command::Store(cmd) => admin::store_cmd(&load()?, cmd),
        Command::Replica(cmd) => {
            use crate::engine::InstanceCommand as C;
            let (k, c) = match cmd {
                instance::ReplicaCmd::Start { instance } => (instance, C::StartReplica),
                instance::ReplicaCmd::Stop { instance } => (instance, C::StopReplica),
                instance::ReplicaCmd::Restart { instance } => (instance, C::RestartReplica),
            };
            instance::run(&load()?, k, c).await
        }
        Command::ReadOnly(cmd) => match cmd {
            instance::ReadOnlyCmd::On { instance } => {
                instance::run(&load()?, instance, crate::engine::InstanceCommand::SetReadOnly).await
            }
            instance::ReadOnlyCmd::Off { instance } => {
                instance::run(&load()?, instance, crate::engine::InstanceCommand::SetWriteable).await
            }
        },
        Command::Relocate(a) => {
            instance::run(&load()?, a.instance, crate::engine::InstanceCommand::Relocate { below: a.below }).await
        }
        Command::MoveUp { instance } => instance::run(&load()?, instance, crate::engine::InstanceCommand::MoveUp).await,
        Command::Forget(a) => instance::forget(&load()?, a),
        Command::Operations { json } => instance::operations(&load()?, json),
        Command::ImportOrchestratorConfig { file } => {
            let json = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let toml = crate::migrate::from_orchestrator(
                &json,
                &|p| std::fs::read_to_string(p).ok(),
                &crate::http::auth::hash_password,
            )
            .map_err(|e| format!("{}: {e}", file.display()))?;
            print!("{toml}");
            Ok(())
        }
        #[cfg(feature = "lab")]
        Command::Bench(cmd) => bench::run(cmd).await,
        #[cfg(feature = "lab")]
        Command::Demo(args) => bench::demo(args).await,
        Command::Serve { listen } => {
            crate::http::serve(&load()?, listen.as_deref()).await.map_err(|e| e.to_string().into())
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                return Err("no password on stdin".into());
            }
            println!("{}", crate::http::auth::hash_password(password)?);
            Ok(())
        }
        Command::HashToken => {
            let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            println!("token:  {token}\nsha256: {}", crate::http::auth::token_digest(&token));
            Ok(())
        }
    }
}

async fn ha_status(urls: &[String], json: bool) -> CliResult {
    let views = client::ha_status(urls).await;
    if json {
        let v: Vec<serde_json::Value> = views
            .iter()
            .map(|(u, r)| match r {
                Ok(v) => serde_json::json!({ "url": u, "status": v }),
                Err(e) => serde_json::json!({ "url": u, "error": e }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:<32} {:<16} {:<9} {:<32} {:>10}", "NODE URL", "NODE ID", "ROLE", "LEADER SEEN", "ACTING MS");
        for (u, r) in &views {
            match r {
                Ok(v) if v["single_node"] == true => println!("{u:<32} {:<16} single node (no [ha])", "-"),
                Ok(v) => println!(
                    "{u:<32} {:<16} {:<9} {:<32} {:>10}",
                    v["node_id"].as_str().unwrap_or("?"),
                    if v["leader"] == true { "leader" } else { "follower" },
                    v["leader_url"].as_str().unwrap_or("(none known)"),
                    v["acting_for_ms"].as_u64().map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                ),
                Err(e) => println!("{u:<32} unreachable: {e}"),
            }
        }
        let nodes: std::collections::BTreeSet<&str> = views
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flat_map(|v| v["nodes"].as_array().into_iter().flatten().filter_map(|n| n.as_str()))
            .collect();
        if !nodes.is_empty() {
            println!("node sessions registered in etcd: {}", nodes.into_iter().collect::<Vec<_>>().join(", "));
        }
        let leaders = views.iter().filter(|(_, r)| r.as_ref().is_ok_and(|v| v["leader"] == true)).count();
        if leaders != 1 {
            println!("warning: {leaders} nodes say they lead (expected exactly one)");
        }
    }
    let unreachable = views.iter().filter(|(_, r)| r.is_err()).count();
    if unreachable == views.len() {
        return Err("no node answered".into());
    }
    Ok(())
}
