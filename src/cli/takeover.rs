use std::sync::Arc;

use clap::Args;

use super::CliResult;
use crate::config::Config;
use crate::engine::{Engine, Outcome, PhaseEvent, RecoverMode, Status, TakeoverReport, TakeoverRequest};
use crate::lua::{Env, ScriptHost};
use crate::store::Store;
use crate::topology::InstanceKey;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TakeoverArgs {
    /// Settle a takeover whose process died.
    #[command(subcommand)]
    pub action: Option<Settle>,
    /// Cluster alias, cluster name, or host:port of any member.
    #[arg(required = true)]
    pub cluster: Option<String>,
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
    /// Decide and print the plan (checks, choice, statements, hooks); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only if the topology still hashes to this (the `plan_hash` a dry run printed).
    #[arg(long)]
    pub plan_hash: Option<String>,
    /// Print one JSON object instead of the live phases and the timeline.
    #[arg(long)]
    pub json: bool,
    /// Send the request to Baton servers instead of running here (comma-separated URLs; the leader
    /// is found with /api/leader-check, as orchestrator-client does).
    #[arg(long, env = "BATON_API", value_delimiter = ',')]
    pub api: Vec<String>,
}

/// Builds an engine for the CLI from the configuration, with the configured Lua policy and
/// hooks (a script that does not load stops here: nothing runs without the operator's hooks).
pub async fn engine(cfg: &Config) -> Result<Engine, Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = crate::store::open(cfg)?;
    let env = Env::new(cfg, store);
    let host = ScriptHost::start(env.clone()).await?;
    Ok(Engine::new(env.cfg.clone(), env.connector.clone(), env.store.clone(), host))
}

#[derive(clap::Subcommand)]
pub enum Settle {
    /// Settle interrupted takeovers the safe way: roll back before promotion, finish after it;
    /// two writable masters are left for resume/abort. Without ID: every interrupted one.
    Recover { id: Option<String> },
    /// Finish an interrupted takeover (after promotion, or with two writable masters: the old one
    /// is fenced).
    Resume { id: String },
    /// Undo an interrupted takeover (before promotion, or with two writable masters: the new one
    /// is fenced).
    Abort { id: String },
}

async fn settle(cfg: &Config, action: Settle) -> CliResult {
    let engine = engine(cfg).await?;
    let todo: Vec<(String, RecoverMode)> = match action {
        Settle::Recover { id: Some(id) } => vec![(id, RecoverMode::Auto)],
        Settle::Recover { id: None } => engine.interrupted()?.into_iter().map(|r| (r.id, RecoverMode::Auto)).collect(),
        Settle::Resume { id } => vec![(id, RecoverMode::Resume)],
        Settle::Abort { id } => vec![(id, RecoverMode::Abort)],
    };
    if todo.is_empty() {
        println!("no interrupted takeover");
        return Ok(());
    }
    let mut failed = Vec::new();
    for (id, mode) in todo {
        match engine.recover(&id, mode).await {
            Ok(r) => {
                print!("{}", timeline(&r));
                for rec in &r.recoveries {
                    println!(
                        "  recovery ({}): last journaled phase {}; found {}; {}",
                        rec.mode,
                        rec.last_phase.map(|p| p.name()).unwrap_or("none"),
                        rec.found,
                        rec.action
                    );
                }
                if matches!(r.status, Status::NeedsOperator | Status::Failed | Status::PromotedWithErrors) {
                    failed.push(format!("{id}: {}", r.status.as_str()));
                } else if let Some(e) = r.errors.iter().find(|e| e.starts_with("journal:")) {
                    // Settled on the servers, but the store does not say so yet: run recover
                    // again once the store can be written.
                    failed.push(format!("{id}: {} on the servers, but {e}", r.status.as_str()));
                }
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    engine.connector.close().await;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}

pub async fn run(cfg: &Config, args: TakeoverArgs) -> CliResult {
    if let Some(action) = args.action {
        return settle(cfg, action).await;
    }
    let req = TakeoverRequest {
        cluster_hint: args.cluster.clone().expect("required by clap"),
        designated: args.designated.clone(),
        auto: args.auto,
        start_replication: args.start_replication,
        expected_master: args.expected_master.clone(),
        dry_run: args.dry_run,
        plan_hash: args.plan_hash.clone(),
    };
    let report = if args.api.is_empty() {
        let engine = engine(cfg).await?;
        let live: Option<crate::engine::EventSink> =
            if args.json { None } else { Some(Arc::new(|ev: &PhaseEvent| print_event(ev))) };
        let report = engine.takeover(req, live).await;
        engine.connector.close().await;
        report
    } else {
        super::client::takeover(&args.api, &req, !args.json).await?
    };
    finish(&report, args.json)
}

/// Prints one finished phase as it happens.
pub fn print_event(ev: &PhaseEvent) {
    if let PhaseEvent::Finished { record, .. } = ev {
        let mark = match record.outcome {
            Outcome::Ok => "ok",
            Outcome::Refused => "REFUSED",
            Outcome::Failed => "FAILED",
        };
        println!("  {:<20} {:>8.1} ms  {:<7} {}", record.name.name(), record.duration_ms, mark, record.detail);
    }
}

/// Prints the end of a takeover (or plan) and turns it into the exit status.
fn finish(report: &TakeoverReport, json: bool) -> CliResult {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", timeline(report));
        if let Some(plan) = &report.plan {
            print!("{}", render_plan(report, plan));
        }
    }
    let success = match report.status {
        Status::Planned => true,
        Status::Promoted | Status::PromotedWithErrors => report.old_master_repointed,
        _ => false,
    };
    if success {
        Ok(())
    } else {
        Err(format!("takeover {} {}: {}", report.id, report.status.as_str(), report.errors.join("; ")).into())
    }
}

/// A dry run's plan: the choice, the checks, the steps with their statements, the hooks.
pub fn render_plan(r: &TakeoverReport, plan: &crate::engine::Plan) -> String {
    let mut out = String::from("plan (nothing was changed):\n");
    if let Some(c) = &r.choice {
        out.push_str(&format!("  choice: {c}\n"));
    }
    for p in &r.phases {
        for c in &p.checks {
            out.push_str(&format!("  check {:<24} {:<4} {}\n", c.name, if c.ok { "ok" } else { "FAIL" }, c.detail));
        }
    }
    for (i, s) in plan.steps.iter().enumerate() {
        out.push_str(&format!("  {:>2}. [{}] {}: {}\n", i + 1, s.phase.name(), s.instance, s.action));
        for st in &s.statements {
            out.push_str(&format!("        {st}\n"));
        }
    }
    for (phase, hooks) in &plan.hooks {
        if !hooks.is_empty() {
            out.push_str(&format!("  hooks {phase}: {}\n", hooks.join(", ")));
        }
    }
    if let Some(h) = &r.plan_hash {
        out.push_str(&format!("  plan_hash: {h}  (run it with --plan-hash {h})\n"));
    }
    out
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
