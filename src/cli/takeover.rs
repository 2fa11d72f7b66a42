use std::sync::Arc;

use clap::Args;

use super::CliResult;
use crate::config::Config;
use crate::engine::{Engine, Outcome, PhaseEvent, Status, TakeoverReport, TakeoverRequest};
use crate::lua::{Env, ScriptHost};
use crate::mysql::Connector;
use crate::store::{SqliteStore, Store};
use crate::topology::InstanceKey;

#[derive(Args)]
pub struct TakeoverArgs {
    /// Cluster alias, cluster name, or host:port of any member.
    pub cluster: String,
    /// The replica to promote (a direct replica of the master).
    #[arg(long = "to")]
    pub designated: Option<InstanceKey>,
    /// Let the candidate policy choose, and start replication on the demoted master.
    #[arg(long)]
    pub auto: bool,
    /// Start replication on the demoted master (implied by --auto).
    #[arg(long)]
    pub start_replication: bool,
    /// Refuse unless this is the current master.
    #[arg(long)]
    pub expected_master: Option<InstanceKey>,
    /// Print one JSON object instead of the live phases and the timeline.
    #[arg(long)]
    pub json: bool,
}

/// Builds an engine for the CLI from the configuration, with the configured Lua policy and
/// hooks (a script that does not load stops here: nothing runs without the operator's hooks).
pub async fn engine(cfg: &Config) -> Result<Engine, Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir)?);
    let env = Arc::new(Env { cfg: Arc::new(cfg.clone()), connector: Arc::new(Connector::new(cfg)), store });
    let host = ScriptHost::start(env.clone()).await?;
    Ok(Engine::new(env.cfg.clone(), env.connector.clone(), env.store.clone(), host))
}

pub async fn run(cfg: &Config, args: TakeoverArgs) -> CliResult {
    let engine = engine(cfg).await?;
    let req = TakeoverRequest {
        cluster_hint: args.cluster,
        designated: args.designated,
        auto: args.auto,
        start_replication: args.start_replication,
        expected_master: args.expected_master,
    };
    let live: Option<crate::engine::EventSink> = if args.json {
        None
    } else {
        Some(Arc::new(|ev: &PhaseEvent| {
            if let PhaseEvent::Finished { record, .. } = ev {
                let mark = match record.outcome {
                    Outcome::Ok => "ok",
                    Outcome::Refused => "REFUSED",
                    Outcome::Failed => "FAILED",
                };
                println!("  {:<20} {:>8.1} ms  {:<7} {}", record.name.name(), record.duration_ms, mark, record.detail);
            }
        }))
    };
    let report = engine.takeover(req, live).await;
    engine.connector.close().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", timeline(&report));
    }
    let success = matches!(report.status, Status::Promoted | Status::PromotedWithErrors) && report.old_master_repointed;
    if success {
        Ok(())
    } else {
        Err(format!("takeover {} {}: {}", report.id, report.status.as_str(), report.errors.join("; ")).into())
    }
}

/// The final summary: outcome, masters, the write-unavailability window and each phase's span.
pub fn timeline(r: &TakeoverReport) -> String {
    let mut out = format!(
        "takeover {} of {}{}: {}\n",
        r.id,
        r.cluster,
        r.alias.as_ref().map(|a| format!(" ({a})")).unwrap_or_default(),
        r.status.as_str()
    );
    if let (Some(old), Some(new)) = (&r.old_master, &r.new_master) {
        out.push_str(&format!("  master: {old} -> {new}\n"));
    }
    if let Some(w) = r.write_unavailable_ms {
        out.push_str(&format!("  writes unavailable: {w:.1} ms (fence to new master writable)\n"));
    }
    out.push_str(&format!("  total: {:.1} ms\n", r.total_ms));
    if let Some(v) = &r.scripts {
        out.push_str(&format!("  scripts: version {} ({} files)\n", v.id, v.files.len()));
    }
    let scale = r.total_ms.max(1.0);
    for p in &r.phases {
        let from = ((p.start_ms / scale) * 40.0) as usize;
        let len = (((p.duration_ms / scale) * 40.0).ceil() as usize).max(1);
        out.push_str(&format!(
            "  {:<20} |{}{}{}| {:.1} ms\n",
            p.name.name(),
            " ".repeat(from.min(40)),
            "#".repeat(len.min(40 - from.min(40)).max(1)),
            " ".repeat(40usize.saturating_sub(from + len)),
            p.duration_ms
        ));
    }
    for w in &r.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    for e in &r.errors {
        out.push_str(&format!("  error: {e}\n"));
    }
    out
}
