//! The graceful takeover: a fixed sequence of named phases over one `Run` that carries the
//! context, records every phase (timings, checks, SQL) in a report that is saved to the store after
//! each phase, and undoes its changes when a phase before promotion fails.
//!
//! ```text
//! resolve -> check_master -> choose_designated -> check_designated -> pre_takeover_hooks
//!    (nothing has changed up to here: a failure is a refusal)
//! -> relocate_siblings -> pre_fence_hooks -> fence -> catch_up -> promote
//!    (a failure here rolls back: old master writable, siblings back, designated replicating)
//! -> post_promote_hooks -> repoint_old_master -> post_takeover_hooks
//!    (a failure here is recorded: the promotion stands, status promoted_with_errors)
//! ```
//!
//! Architecture invariant: the engine never builds SQL (it calls `mysql::ops`) and never sleeps in a
//! polling loop: waiting for the replica to catch up is done by the server.

pub mod commands;
mod fault;
pub mod hooks;
pub mod plan;
pub mod recover;
pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::discovery::{self, DiscoveryError};
use crate::mysql::ops::{self, OpRecord, OwnPosition};
use crate::mysql::{Connector, SourcePosition, SourceSpec, SqlError};
use crate::store::{KnownCluster, Store, StoreError};
use crate::topology::{Cluster, Flavor, GtidMode, InstanceKey, ThreadState};

pub use hooks::{
    Choice, ChoiceFuture, HookContext, HookFuture, HookPhase, HookRun, NoScripts, PhaseTiming, PolicyInput, ScriptOp,
    ScriptSource, Scripts, ScriptsVersion, Undo,
};
pub use commands::{CommandError, CommandReport, InstanceCommand};
pub use plan::{Candidate, Check, Excluded, PlanInputs};
pub use recover::{RecoverError, RecoverMode};
pub use report::{
    Outcome, Owner, Phase, PhaseEvent, PhaseRecord, Plan, PlannedStep, Recovery, Refusal, RefusalKind, Status, TakeoverReport,
};

/// What the caller asks for.
#[derive(Debug, Clone, Default)]
pub struct TakeoverRequest {
    /// Alias, cluster name, or `host:port` of any member.
    pub cluster_hint: String,
    pub designated: Option<InstanceKey>,
    /// Let the candidate policy choose among several replicas, and start replication on the
    /// demoted master.
    pub auto: bool,
    /// Start replication on the demoted master even without `auto`.
    pub start_replication: bool,
    /// Compare-and-set: refuse unless this is the current master.
    pub expected_master: Option<InstanceKey>,
    /// Decide and plan, change nothing.
    pub dry_run: bool,
    /// Refuse unless the live topology hashes to this (`TakeoverReport::plan_hash` of a dry run).
    pub plan_hash: Option<String>,
}

/// Why a phase stopped the takeover. Names the phase, and the instance where there is one.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error("{phase}: {source}")]
    Sql { phase: Phase, source: SqlError },
    #[error("{phase}: {source}")]
    Discovery { phase: Phase, source: DiscoveryError },
    #[error("{phase}: {source}")]
    Store { phase: Phase, source: StoreError },
    #[error("{phase}: refused by check {check}{}: {message}", instance.as_ref().map(|i| format!(" on {i}")).unwrap_or_default())]
    Refused { phase: Phase, check: String, instance: Option<InstanceKey>, message: String },
    #[error("{phase}: a takeover of cluster {cluster} is already running ({holder})")]
    Busy { phase: Phase, cluster: String, holder: String },
    #[error("{phase}: vetoed by hook: {reason}")]
    Vetoed { phase: Phase, reason: String },
    #[error("{phase}: hook failed: {reason}")]
    HookFailed { phase: Phase, reason: String },
}

impl TakeoverError {
    /// How a refusal is classified for callers (HTTP status codes).
    fn refusal(&self, current: Phase) -> Refusal {
        let (kind, phase, check, instance) = match self {
            TakeoverError::Busy { phase, .. } => (RefusalKind::Busy, *phase, "busy".to_string(), None),
            TakeoverError::Discovery { phase, source: DiscoveryError::UnknownHint(_) | DiscoveryError::BadKey(_) } => {
                (RefusalKind::UnknownCluster, *phase, "unknown_cluster".to_string(), None)
            }
            TakeoverError::Refused { phase, check, instance, .. } => {
                (RefusalKind::Check, *phase, check.clone(), instance.as_ref().map(|i| i.to_string()))
            }
            TakeoverError::Vetoed { phase, .. } => (RefusalKind::Veto, *phase, "hook".to_string(), None),
            TakeoverError::Sql { phase, source } => (RefusalKind::Error, *phase, "sql".to_string(), Some(source.instance().to_string())),
            _ => (RefusalKind::Error, current, "error".to_string(), None),
        };
        Refusal { kind, phase, check, instance }
    }
}

impl TakeoverError {
    fn refused(phase: Phase, check: &str, instance: Option<&InstanceKey>, message: impl Into<String>) -> Self {
        TakeoverError::Refused { phase, check: check.into(), instance: instance.cloned(), message: message.into() }
    }
}

/// Receives phase events as they happen.
pub type EventSink = Arc<dyn Fn(&PhaseEvent) + Send + Sync>;

/// Runs takeovers. Cheap to clone; shareable between tasks.
#[derive(Clone)]
pub struct Engine {
    pub cfg: Arc<Config>,
    pub connector: Arc<Connector>,
    pub store: Arc<dyn Store>,
    pub scripts: Arc<dyn ScriptSource>,
}

impl Engine {
    pub fn new(cfg: Arc<Config>, connector: Arc<Connector>, store: Arc<dyn Store>, scripts: Arc<dyn ScriptSource>) -> Engine {
        Engine { cfg, connector, store, scripts }
    }

    /// Runs one takeover to its end and returns its report (also saved in the store).
    pub async fn takeover(&self, req: TakeoverRequest, events: Option<EventSink>) -> TakeoverReport {
        self.takeover_with_id(Engine::new_id(), req, events).await
    }

    /// Plan inputs read from the store (rules and downtime in force) and the config.
    pub fn plan_inputs(&self) -> Result<PlanInputs, StoreError> {
        Ok(PlanInputs {
            rules: self.store.promotion_rules()?.into_iter().map(|r| (r.instance, r.rule)).collect(),
            downtimes: self.store.downtimes()?.into_iter().map(|d| (d.instance.clone(), d)).collect(),
            ignore_hostname_filters: self.cfg.takeover.promotion_ignore_hostname_filters.clone(),
            reasonable_lag_s: self.cfg.takeover.reasonable_lag_s,
            allow_lax_gtid: self.cfg.takeover.allow_lax_gtid,
        })
    }

    /// A fresh takeover id.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// `takeover` under an id the caller chose (to answer before the takeover ends).
    pub async fn takeover_with_id(&self, id: String, req: TakeoverRequest, events: Option<EventSink>) -> TakeoverReport {
        let span = info_span!("takeover", id = %id, hint = %req.cluster_hint, dry_run = req.dry_run);
        let run = Run::new(self.clone(), id, req, events);
        run.execute().instrument(span).await
    }
}



/// One takeover in progress: the context that travels through the phases.
struct Run {
    engine: Engine,
    /// The scripts version this takeover started with, kept to its end.
    scripts: Arc<dyn Scripts>,
    req: TakeoverRequest,
    events: Option<EventSink>,
    report: TakeoverReport,
    started: Instant,
    // What the phases learned and did, for the next phases and for rollback.
    cluster: Option<Cluster>,
    inputs: PlanInputs,
    lock: Option<String>,
    server_lock: Option<ops::ServerLock>,
    master: Option<InstanceKey>,
    designated: Option<InstanceKey>,
    started_designated_replication: bool,
    moved: Vec<InstanceKey>,
    fenced_at: Option<Instant>,
    fenced_position: Option<OwnPosition>,
    designated_reset: bool,
    promoted: bool,
    rolled_back: Vec<String>,
    /// The last journal write that failed, for `step` to act on.
    journal_error: Option<StoreError>,
    /// Recovery: the hook phase the crashed process had in progress (its hooks may have run).
    hooks_may_have_run: Option<Phase>,
    /// Writes the hooks made before promotion, for the rollback to undo (newest last).
    hook_writes: Vec<ScriptOp>,
    // Filled by the running phase.
    ops: Vec<OpRecord>,
    script_ops: Vec<ScriptOp>,
    checks: Vec<Check>,
    detail: String,
}

type PhaseResult = Result<(), TakeoverError>;

impl Run {
    fn new(engine: Engine, id: String, req: TakeoverRequest, events: Option<EventSink>) -> Run {
        let command = if req.auto { "graceful-master-takeover-auto" } else { "graceful-master-takeover" };
        let mut report = TakeoverReport {
            id,
            command: command.into(),
            status: Status::Running,
            cluster: req.cluster_hint.clone(),
            alias: None,
            old_master: None,
            new_master: None,
            choice: None,
            started_at: crate::store::now_unix_ms(),
            total_ms: 0.0,
            write_unavailable_ms: None,
            old_master_repointed: false,
            siblings_moved: Vec::new(),
            phases: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            scripts: None,
            dry_run: req.dry_run,
            replicas: Vec::new(),
            lost_replicas: Vec::new(),
            plan_hash: None,
            plan: None,
            refusal: None,
            start_old_master_replication: req.auto || req.start_replication,
            designated: None,
            owner: Some(report::Owner::current()),
            recoveries: Vec::new(),
            in_progress: None,
        };
        // The scripts version is fixed for the whole takeover, even if a reload happens meanwhile.
        let scripts = engine.scripts.current();
        report.scripts = scripts.version();
        Run {
            engine,
            scripts,
            req,
            events,
            report,
            started: Instant::now(),
            cluster: None,
            inputs: PlanInputs::default(),
            lock: None,
            server_lock: None,
            master: None,
            designated: None,
            started_designated_replication: false,
            moved: Vec::new(),
            fenced_at: None,
            fenced_position: None,
            designated_reset: false,
            promoted: false,
            rolled_back: Vec::new(),
            journal_error: None,
            hooks_may_have_run: None,
            hook_writes: Vec::new(),
            ops: Vec::new(),
            script_ops: Vec::new(),
            checks: Vec::new(),
            detail: String::new(),
        }
    }

    fn conn(&self) -> &Connector {
        &self.engine.connector
    }

    fn cfg(&self) -> &Config {
        &self.engine.cfg
    }

    async fn execute(mut self) -> TakeoverReport {
        use Phase::*;
        // Nothing changes in these phases: a failure is a refusal. A dry run stops after the
        // checks (hooks are listed in the plan, not called) and plans the rest.
        let checks: &[Phase] = if self.req.dry_run {
            &[Resolve, CheckMaster, ChooseDesignated, CheckDesignated]
        } else {
            &[Resolve, CheckMaster, ChooseDesignated, CheckDesignated, PreTakeoverHooks]
        };
        for &p in checks {
            if let Err(e) = self.step(p).await {
                self.report.errors.push(e.to_string());
                self.report.refusal = Some(e.refusal(p));
                let undo = self.undo_preparation().await;
                self.report.status = if undo { Status::Refused } else { Status::Failed };
                return self.finish().await;
            }
        }
        if self.req.dry_run {
            match self.plan().await {
                Ok(plan) => {
                    self.report.plan = Some(plan);
                    self.report.status = Status::Planned;
                }
                Err(e) => {
                    self.report.errors.push(e.to_string());
                    self.report.refusal = Some(e.refusal(Phase::CheckDesignated));
                    self.report.status = Status::Refused;
                }
            }
            return self.finish().await;
        }
        // Changes begin. Until the new master is writable, a failure rolls everything back.
        for p in [RelocateSiblings, PreFenceHooks, Fence, CatchUp, Promote] {
            if let Err(e) = self.step(p).await {
                self.report.errors.push(e.to_string());
                let rolled_back = self.rollback().await;
                self.report.status = if rolled_back { Status::RolledBack } else { Status::Failed };
                return self.finish().await;
            }
        }
        // Promoted. What follows is recorded, never undone.
        for p in [PostPromoteHooks, RepointOldMaster, PostTakeoverHooks] {
            if let Err(e) = self.step(p).await {
                error!(error = %e, "after promotion");
                self.report.errors.push(e.to_string());
            }
        }
        self.report.status = if self.report.errors.is_empty() { Status::Promoted } else { Status::PromotedWithErrors };
        self.finish().await
    }

    /// Runs one phase, timing it and recording it in the report and the journal.
    async fn step(&mut self, phase: Phase) -> PhaseResult {
        let span = info_span!("phase", name = phase.name());
        self.emit(PhaseEvent::Started { id: self.report.id.clone(), phase });
        let start = Instant::now();
        // Write-ahead: before a phase that changes servers, the journal durably says it is about
        // to run; if it cannot, the phase does not run (before promotion the takeover then
        // refuses or rolls back like for any failure).
        if phase.write_ahead() && self.promoted && !self.req.dry_run {
            // After promotion a journal failure is reported, never a reason to stop.
            self.report.in_progress = Some(phase);
            self.journal_or_report();
        } else if phase.changes_servers() && !self.promoted && !self.req.dry_run && !self.in_write_window() {
            self.report.in_progress = Some(phase);
            if let Err(source) = self.journal() {
                self.report.in_progress = None;
                self.record(phase, start, Outcome::Failed, format!("not started: the journal cannot be written: {source}"));
                self.journal_error = None;
                return Err(TakeoverError::Store { phase, source });
            }
        }
        let result = async {
            match phase {
                Phase::Resolve => self.resolve().await,
                Phase::CheckMaster => self.check_master(),
                Phase::ChooseDesignated => self.choose_designated().await,
                Phase::CheckDesignated => self.check_designated().await,
                Phase::PreTakeoverHooks => self.hooks(phase, HookPhase::PreTakeover).await,
                Phase::PreFenceHooks => self.hooks(phase, HookPhase::PreFence).await,
                Phase::RelocateSiblings => self.relocate_siblings().await,
                Phase::Fence => self.fence().await,
                Phase::CatchUp => self.catch_up().await,
                Phase::Promote => self.promote().await,
                Phase::PostPromoteHooks => self.hooks(phase, HookPhase::PostPromote).await,
                Phase::PostTakeoverHooks => self.hooks(phase, HookPhase::PostTakeover).await,
                Phase::RepointOldMaster => self.repoint_old_master().await,
                Phase::Rollback => unreachable!("rollback is not a step"),
            }
        }
        .instrument(span)
        .await;
        let outcome = match &result {
            Ok(()) => Outcome::Ok,
            Err(TakeoverError::Refused { .. } | TakeoverError::Vetoed { .. } | TakeoverError::Busy { .. }) => Outcome::Refused,
            Err(_) => Outcome::Failed,
        };
        let mut detail = std::mem::take(&mut self.detail);
        if let Err(e) = &result {
            detail = if detail.is_empty() { e.to_string() } else { format!("{detail}; {e}") };
        }
        self.report.in_progress = None;
        self.record(phase, start, outcome, detail);
        // A journal write that failed: before promotion the takeover stops here (and undoes what
        // was done); after it, the write is tried once more and the answer says so if it fails.
        if let Some(source) = self.journal_error.take().filter(|_| !self.req.dry_run) {
            if self.promoted {
                self.journal_or_report();
            } else if result.is_ok() {
                return Err(TakeoverError::Store { phase, source });
            }
        }
        result
    }

    fn record(&mut self, phase: Phase, start: Instant, outcome: Outcome, detail: String) {
        let rec = PhaseRecord {
            name: phase,
            start_ms: (start - self.started).as_secs_f64() * 1000.0,
            duration_ms: start.elapsed().as_secs_f64() * 1000.0,
            outcome,
            detail,
            checks: std::mem::take(&mut self.checks),
            ops: std::mem::take(&mut self.ops),
            script_ops: std::mem::take(&mut self.script_ops),
            by: phase.name().ends_with("_hooks").then(|| {
                let o = report::Owner::current();
                format!("{}:{}", o.host, o.pid)
            }),
        };
        info!(phase = phase.name(), ms = rec.duration_ms, outcome = ?outcome, "{}", rec.detail);
        self.emit(PhaseEvent::Finished { id: self.report.id.clone(), record: rec.clone() });
        self.report.phases.push(rec);
        // Inside the write-unavailable window (fenced, not yet promoted) nothing waits on the
        // store: the write-ahead record before the fence already says what is under way, and
        // the next write (right after the promotion, or after the rollback) records it all.
        if !self.in_write_window() {
            if let Err(e) = self.journal() {
                self.journal_error = Some(e);
            }
        }
        fault::crash_point(phase);
    }

    fn emit(&self, ev: PhaseEvent) {
        if let Some(sink) = &self.events {
            sink(&ev);
        }
    }

    /// Saves the report as it stands: the journal of a running takeover, the audit of a finished one.
    fn journal(&mut self) -> Result<(), StoreError> {
        let entry = self.audit_entry();
        // The store may block (a busy lock, a slow disk): keep this runtime's other tasks (the
        // HTTP service, other takeovers) running meanwhile.
        let store = &self.engine.store;
        let multi = tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let saved = if multi { tokio::task::block_in_place(|| store.save_takeover(&entry)) } else { store.save_takeover(&entry) };
        if let Err(e) = &saved {
            warn!(error = %e, "cannot save the takeover journal");
            if !self.report.warnings.iter().any(|w| w.starts_with("journal:")) {
                self.report.warnings.push(format!("journal: {e}"));
            }
        }
        saved
    }

    /// The report as a store record.
    fn audit_entry(&mut self) -> crate::store::AuditEntry {
        self.report.total_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        crate::store::AuditEntry {
            id: self.report.id.clone(),
            cluster: self.report.cluster.clone(),
            status: self.report.status.as_str().into(),
            started_at: self.report.started_at,
            record: serde_json::to_value(&self.report).expect("report serializes"),
        }
    }

    /// Fenced and not yet promoted (nor rolled back): writes are unavailable right now.
    fn in_write_window(&self) -> bool {
        self.fenced_at.is_some() && !self.promoted && self.rolled_back.is_empty() && self.report.status == Status::Running
    }

    /// Journals the report; once promoted, a failed write is tried once more and then said in
    /// the answer (the new master stands, but nothing durable records it).
    fn journal_or_report(&mut self) {
        if self.journal().is_err() && self.promoted && self.journal().is_err() {
            let e = "journal: the takeover's record could not be saved (the new master stands; see the warnings)".to_string();
            if !self.report.errors.contains(&e) {
                self.report.errors.push(e);
            }
        }
    }

    async fn finish(mut self) -> TakeoverReport {
        // on_failure runs while the cluster is still locked: after a rollback, after a failure, and
        // after a promotion with errors (not after a refusal or a plan: nothing changed).
        if matches!(self.report.status, Status::RolledBack | Status::Failed | Status::PromotedWithErrors) {
            let ctx = self.hook_context(HookPhase::OnFailure);
            let scripts = self.scripts.clone();
            let run = scripts.run_hooks(HookPhase::OnFailure, &ctx).await;
            if let Err(e) = run.result {
                self.report.warnings.push(format!("on_failure hook: {e}"));
            }
            // on_failure is not a phase: its writes go with the last phase recorded.
            if let Some(last) = self.report.phases.last_mut() {
                last.script_ops.extend(run.ops);
            }
        }
        self.release_server_lock().await;
        if let Some(lock) = self.lock.take() {
            if let Err(e) = self.engine.store.unlock_cluster(&lock, &self.report.id) {
                self.report.warnings.push(format!("releasing the cluster lock: {e}"));
            }
        }
        // Remember the cluster under its new name so that its alias keeps resolving: same members,
        // named after the new master (no second discovery: the snapshot has the members).
        // A takeover never changes who owns an alias: it keeps what resolve found.
        if let (true, Some(c), Some(d)) = (self.promoted, &self.cluster, &self.designated) {
            let claimed_alias = self.engine.store.cluster_of(d).ok().flatten().and_then(|k| k.claimed_alias);
            let known = KnownCluster {
                name: d.to_string(),
                alias: self.report.alias.clone(),
                members: c.members.iter().map(|m| m.key.clone()).collect(),
                claimed_alias,
                seen_at: 0,
            };
            if let Err(e) = self.engine.store.remember_cluster(&known) {
                self.report.warnings.push(format!("remembering the cluster: {e}"));
            }
        }
        self.journal_or_report();
        if self.report.status == Status::Promoted && !self.report.errors.is_empty() {
            self.report.status = Status::PromotedWithErrors;
            let _ = self.journal();
        }
        info!(status = self.report.status.as_str(), ms = self.report.total_ms, "takeover finished");
        self.report
    }

    fn hook_context(&self, phase: HookPhase) -> HookContext {
        HookContext {
            takeover_id: self.report.id.clone(),
            command: self.report.command.clone(),
            phase: phase.name().to_string(),
            cluster: self.report.cluster.clone(),
            alias: self.report.alias.clone(),
            old_master: self.report.old_master.clone(),
            successor: self.designated.as_ref().map(|k| k.to_string()),
            replicas: self.report.replicas.clone(),
            lost_replicas: self.report.lost_replicas.clone(),
            phase_timings: self
                .report
                .phases
                .iter()
                .map(|p| PhaseTiming { phase: p.name.name().to_string(), ms: p.duration_ms })
                .collect(),
            dry_run: false,
            status: self.report.status.as_str().to_string(),
            error: self.report.errors.first().cloned(),
            rolled_back: self.rolled_back.clone(),
            scripts_version: self.report.scripts.as_ref().map(|v| v.id.clone()),
        }
    }

    // ---- phases that change nothing ----------------------------------------------------------

    /// A fresh live snapshot of the cluster named by the hint, and the cluster's takeover lock.
    async fn resolve(&mut self) -> PhaseResult {
        let phase = Phase::Resolve;
        let store = self.engine.store.clone();
        let discover = |run: &Run| {
            let (conn, cfg, store, hint) = (run.engine.connector.clone(), run.engine.cfg.clone(), store.clone(), run.req.cluster_hint.clone());
            async move {
                discovery::discover_hint(&conn, &cfg, store.as_ref(), &hint).await.map_err(|source| TakeoverError::Discovery { phase, source })
            }
        };
        let mut cluster = discover(self).await?;
        self.inputs = self.engine.plan_inputs().map_err(|source| TakeoverError::Store { phase, source })?;
        if !self.req.dry_run {
            // One takeover per cluster, named after the alias when there is one (stable across
            // takeovers), else after the cluster's name. Two locks: the store's (this process and
            // those sharing its store) and a server lock on the master (any process anywhere; the
            // server drops it if Baton dies).
            let lock = cluster.alias.clone().unwrap_or_else(|| cluster.name.clone());
            // The lock and the takeover's first record in one transaction.
            self.report.cluster = cluster.name.clone();
            self.report.alias = cluster.alias.clone();
            let first = self.audit_entry();
            if let Some(holder) = store.lock_cluster_journaled(&lock, &first).map_err(|source| TakeoverError::Store { phase, source })? {
                let interrupted = self.engine.interrupted().unwrap_or_default().into_iter().any(|r| r.id == holder);
                let holder = if interrupted {
                    format!("id {holder}, interrupted: its process is gone; settle it with `baton takeover recover {holder}`")
                } else {
                    format!("id {holder}")
                };
                return Err(TakeoverError::Busy { phase, cluster: lock, holder });
            }
            self.lock = Some(lock.clone());
            // An unreachable master cannot be locked; check_master refuses it with the reason.
            if let Some(master) = cluster.master.clone().filter(|m| cluster.instance(m).is_some()) {
                let name = ops::lock_name(&lock);
                match ops::server_lock(self.conn(), &master, &name).await.map_err(|source| TakeoverError::Sql { phase, source })? {
                    Some(l) => self.server_lock = Some(l),
                    None => {
                        return Err(TakeoverError::Busy {
                            phase,
                            cluster: lock,
                            holder: format!("another Baton process holds the server lock '{name}' on {master}"),
                        })
                    }
                }
                // Decide on a snapshot taken under the locks: another process may have moved the
                // master between the first look and the lock.
                cluster = discover(self).await?;
                if cluster.master.as_ref() != Some(&master) {
                    let now = cluster.master.as_ref().map(|k| k.to_string()).unwrap_or_else(|| "none".into());
                    return Err(TakeoverError::refused(
                        phase,
                        "master_unchanged",
                        Some(&master),
                        format!("the master changed to {now} while this takeover was taking its locks"),
                    ));
                }
            }
        }
        self.report.cluster = cluster.name.clone();
        self.report.alias = cluster.alias.clone();
        self.report.replicas = cluster.members.iter().filter(|m| m.depth.unwrap_or(0) > 0).map(|m| m.key.to_string()).collect();
        self.report.lost_replicas = cluster.members.iter().filter(|m| !m.reachable()).map(|m| m.key.to_string()).collect();
        let hash = plan::topology_hash(&cluster);
        self.report.plan_hash = Some(hash.clone());
        self.detail = format!("{} members, {} problems, topology {hash}", cluster.members.len(), cluster.problems.len());
        self.cluster = Some(cluster);
        if let Some(want) = &self.req.plan_hash {
            if *want != hash {
                return Err(TakeoverError::refused(
                    phase,
                    "plan_hash",
                    None,
                    format!("the topology changed since the plan was made (plan {want}, now {hash}): make a new plan"),
                ));
            }
        }
        Ok(())
    }

    fn check_master(&mut self) -> PhaseResult {
        let phase = Phase::CheckMaster;
        let c = self.cluster.as_ref().expect("resolved");
        let writable = c.writable_members();
        let Some(master) = c.master.clone() else {
            let names: Vec<String> = c.problems.iter().filter(|p| matches!(p.kind, crate::topology::ProblemKind::MultipleMasters | crate::topology::ProblemKind::CoMaster | crate::topology::ProblemKind::NoMaster)).map(|p| p.message.clone()).collect();
            return Err(TakeoverError::refused(phase, "one_master", None, format!("cannot tell the master: {}", names.join("; "))));
        };
        let mi = c.instance(&master).ok_or_else(|| {
            TakeoverError::refused(phase, "master_reachable", Some(&master), "the master is unreachable (a graceful takeover needs it; this is a failover)")
        })?;
        if writable.len() > 1 {
            let names: Vec<String> = writable.iter().map(|k| k.to_string()).collect();
            return Err(TakeoverError::refused(phase, "one_writable", None, format!("several writable instances: {}", names.join(", "))));
        }
        if mi.read_only {
            return Err(TakeoverError::refused(phase, "master_writable", Some(&master), "the master is read-only already"));
        }
        if let Some(why) = plan::clock_skew(mi, self.cfg().takeover.max_clock_skew_s) {
            return Err(TakeoverError::refused(phase, "clock_skew", Some(&master), why));
        }
        if let Some(expected) = &self.req.expected_master {
            if *expected != master {
                return Err(TakeoverError::refused(phase, "expected_master", Some(&master), format!("the master is {master}, not the expected {expected}")));
            }
        }
        let replicas = c.replicas_of(&master);
        if replicas.is_empty() {
            return Err(TakeoverError::refused(phase, "has_replicas", Some(&master), "the master has no replicas"));
        }
        // Every member must be reachable, or downtimed (then it is left behind).
        for r in c.members.iter().filter(|m| m.key != master) {
            if !r.reachable() && !self.inputs.downtimed(&r.key) {
                return Err(TakeoverError::refused(
                    phase,
                    "replicas_reachable",
                    Some(&r.key),
                    format!("replica unreachable ({}); downtime it to take over without it", r.error.as_deref().unwrap_or("?")),
                ));
            }
        }
        self.report.old_master = Some(master.to_string());
        self.detail = format!("master {master}, {} direct replicas", replicas.len());
        self.master = Some(master);
        Ok(())
    }

    async fn choose_designated(&mut self) -> PhaseResult {
        let phase = Phase::ChooseDesignated;
        let c = self.cluster.as_ref().expect("resolved");
        let master = self.master.clone().expect("checked");
        let replicas: Vec<InstanceKey> = c.replicas_of(&master).iter().map(|m| m.key.clone()).collect();
        let (designated, why) = match &self.req.designated {
            Some(d) => {
                if !replicas.contains(d) {
                    return Err(TakeoverError::refused(
                        phase,
                        "designated_is_direct_replica",
                        Some(d),
                        format!("not a direct replica of the master {master} (direct replicas: {})", keys(&replicas)),
                    ));
                }
                (d.clone(), "designated by the request".to_string())
            }
            None if replicas.len() == 1 => (replicas[0].clone(), "the master's only replica".to_string()),
            None if !self.req.auto => {
                return Err(TakeoverError::refused(
                    phase,
                    "designated_given",
                    Some(&master),
                    format!("the master has {} replicas ({}): name one, or ask for auto", replicas.len(), keys(&replicas)),
                ))
            }
            None => self.policy_choice(phase, &master).await?,
        };
        self.report.choice = Some(why.clone());
        self.report.designated = Some(designated.to_string());
        self.detail = why;
        self.designated = Some(designated);
        Ok(())
    }

    /// The candidate policy's choice among the eligible replicas: the operator's Lua policy when
    /// one is loaded, else the built-in ordering. The policy may only pick an eligible candidate.
    async fn policy_choice(&self, phase: Phase, master: &InstanceKey) -> Result<(InstanceKey, String), TakeoverError> {
        let c = self.cluster.as_ref().expect("resolved");
        let refused = |why: String| TakeoverError::refused(phase, "candidate", Some(master), why);
        let (candidates, excluded) = plan::candidates(c, master, &self.inputs);
        let input = Arc::new(PolicyInput { cluster: c.clone(), master: master.clone(), candidates, excluded });
        let Some(choice) = self.scripts.choose(input.clone()) else {
            return plan::choose_candidate(c, master, &self.inputs).map_err(refused);
        };
        if input.candidates.is_empty() {
            let why: Vec<String> = input.excluded.iter().map(|e| format!("{} ({})", e.key, e.reason)).collect();
            return Err(refused(format!("no eligible replica of {master}: {}", why.join("; "))));
        }
        match choice.await {
            Ok(Choice::Chosen { key, reason }) if input.candidates.iter().any(|c| c.instance.key == key) => {
                Ok((key, format!("policy: {reason}")))
            }
            Ok(Choice::Chosen { key, reason }) => Err(TakeoverError::refused(
                phase,
                "policy",
                Some(&key),
                format!("the policy chose {key}, which is not an eligible candidate ({reason})"),
            )),
            Ok(Choice::Refused { reason }) => Err(TakeoverError::refused(phase, "policy", Some(master), format!("the policy refused: {reason}"))),
            Err(e) => Err(TakeoverError::refused(phase, "policy", Some(master), format!("the policy failed: {e}"))),
        }
    }

    async fn check_designated(&mut self) -> PhaseResult {
        let phase = Phase::CheckDesignated;
        let master = self.master.clone().expect("checked");
        let d = self.designated.clone().expect("chosen");
        // A designated replica whose replication was simply stopped (both threads, no error: a
        // demoted master repointed without starting replication) is started and caught up first.
        let replication = self.cluster.as_ref().and_then(|c| c.instance(&d)).and_then(|i| i.replication.clone());
        let stopped_cleanly = replication.as_ref().is_some_and(|r| {
            r.source == master && !r.io_thread.running() && !r.sql_thread.running() && !r.broken()
        });
        // Replication just started (the IO thread still connecting, no error): wait, in the
        // server, until it has caught up, instead of refusing a replica that is about to be fine.
        let connecting = replication.as_ref().is_some_and(|r| {
            r.source == master
                && r.sql_thread.running()
                && matches!(r.io_thread, ThreadState::Connecting | ThreadState::Preparing)
                && !r.broken()
        });
        if connecting && !self.req.dry_run {
            self.catch_up_designated(&master, &d).await?;
            self.detail = format!("replication on {d} was connecting: waited until it caught up; ");
        }
        if stopped_cleanly && self.req.dry_run {
            self.detail = format!("replication on {d} is stopped: a takeover starts it and waits for it to catch up first; ");
        } else if stopped_cleanly {
            self.ops.push(ops::start_replication(self.conn(), &d).await.map_err(|source| TakeoverError::Sql { phase, source })?);
            self.started_designated_replication = true;
            self.catch_up_designated(&master, &d).await?;
            self.detail = format!("started replication on {d} (it was stopped) and waited for it to catch up; ");
        }
        let c = self.cluster.as_ref().expect("resolved");
        let mut checks = plan::check_designated(c, &master, &d, &self.inputs);
        // Replication that a takeover starts (dry run) or just started and proved caught up with
        // the server-side wait (its IO thread may still be connecting, with a NULL lag) is not a
        // reason to refuse. Catch-up after the fence still waits for it, bounded.
        let io_connecting_cleanly = c.instance(&d).and_then(|i| i.replication.as_ref()).is_some_and(|r| {
            r.sql_thread.running() && matches!(r.io_thread, ThreadState::Connecting | ThreadState::Preparing) && !r.broken()
        });
        let accepted = if stopped_cleanly && self.req.dry_run {
            Some("stopped cleanly: started and caught up before the takeover")
        } else if !self.req.dry_run && (stopped_cleanly || connecting) && io_connecting_cleanly {
            Some("the IO thread is still connecting; the replica executed the master's position")
        } else {
            None
        };
        if let Some(why) = accepted {
            for ch in checks.iter_mut().filter(|ch| ch.name == "replication_running" || ch.name == "lag_within_limit") {
                ch.ok = true;
                ch.detail = format!("{} ({why})", ch.detail);
            }
        }
        // Every member that will be pointed at a new source must accept the replication account
        // in CHANGE MASTER (a password too long for it fails there, half-applied).
        let r = &self.cfg().replication;
        let fit = c
            .members
            .iter()
            .filter_map(|m| m.instance.as_ref())
            .filter(|i| i.key != d)
            .map(|i| {
                let dialect = crate::mysql::dialect::for_server(i.flavor, i.version_number());
                dialect.source_credential_limits().check(i.flavor, &r.user, r.password.expose()).map_err(|e| format!("{}: {e}", i.key))
            })
            .find_map(Result::err);
        checks.push(Check {
            name: "replication_credentials_fit".into(),
            instance: d.clone(),
            ok: fit.is_none(),
            detail: fit.unwrap_or_else(|| "the replication user and password fit every member's CHANGE MASTER".into()),
        });
        // The replicas will log in to the designated replica with the replication account: prove
        // that works now, not after the siblings were moved (a wrong password would break them).
        let login = self.conn().try_login(&d, &self.cfg().replication).await;
        checks.push(Check {
            name: "replication_credentials".into(),
            instance: d.clone(),
            ok: login.is_ok(),
            detail: match login {
                Ok(()) => format!("user '{}' can log in", self.cfg().replication.user),
                Err(e) => e.to_string(),
            },
        });
        let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
        let result = match failed.first() {
            Some(first) => Err(TakeoverError::refused(phase, &first.name, Some(&d), failed.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; "))),
            None => Ok(()),
        };
        self.detail.push_str(&format!("{} checks on {d}", checks.len()));
        self.checks = checks;
        result
    }

    /// Waits (in the server) until the designated replica has executed the master's current
    /// position, then re-reads the cluster so that the checks see it as it is now.
    async fn catch_up_designated(&mut self, master: &InstanceKey, d: &InstanceKey) -> PhaseResult {
        let phase = Phase::CheckDesignated;
        let pos = ops::own_position(self.conn(), master).await.map_err(|source| TakeoverError::Sql { phase, source })?;
        self.ops.push(self.wait_executed(d, &pos).await.map_err(|source| TakeoverError::Sql { phase, source })?);
        // Seeded with the designated replica too: its IO thread may not have registered with the
        // master yet (it is listed by SHOW SLAVE HOSTS only once connected).
        let seeds = vec![master.clone(), d.clone()];
        let c = discovery::discover(self.conn(), self.cfg(), &seeds).await.map_err(|source| TakeoverError::Discovery { phase, source })?;
        self.cluster = Some(c);
        Ok(())
    }

    async fn hooks(&mut self, phase: Phase, hook: HookPhase) -> PhaseResult {
        let ctx = self.hook_context(hook);
        let scripts = self.scripts.clone();
        // A recovery of a crash in the middle of this phase: the hooks may have run already;
        // only those declared idempotent run again, and the report names the others.
        let run = if self.hooks_may_have_run == Some(phase) {
            let skipped = scripts.non_idempotent_hooks(hook);
            if !skipped.is_empty() {
                let w = format!(
                    "{phase}: the process that crashed may have run these hooks already; not run again (declare idempotent = true to re-run): {}",
                    skipped.join(", ")
                );
                warn!("{w}");
                self.report.warnings.push(w);
            }
            scripts.run_idempotent_hooks(hook, &ctx).await
        } else {
            scripts.run_hooks(hook, &ctx).await
        };
        if !self.promoted {
            self.hook_writes.extend(run.ops.iter().filter(|op| op.undo != Undo::Nothing).cloned());
        }
        self.script_ops.extend(run.ops);
        match run.result {
            Ok(summary) => {
                self.detail = summary;
                Ok(())
            }
            Err(reason) if hook.may_veto() => Err(TakeoverError::Vetoed { phase, reason }),
            Err(reason) => Err(TakeoverError::HookFailed { phase, reason }),
        }
    }

    /// Undoes what the check phases did (starting the designated's replication) after a refusal.
    async fn undo_preparation(&mut self) -> bool {
        if !self.started_designated_replication && self.hook_writes.is_empty() {
            return true;
        }
        let start = Instant::now();
        let (mut done, mut failures) = (Vec::new(), Vec::new());
        self.undo_hook_writes(&mut done, &mut failures).await;
        if self.started_designated_replication {
            let d = self.designated.clone().expect("chosen");
            match ops::stop_replication(self.conn(), &d).await {
                Ok(op) => {
                    self.ops.push(op);
                    done.push(format!("stopped replication on {d} again"));
                }
                Err(e) => failures.push(format!("could not stop replication on {d} again: {e}")),
            }
        }
        self.end_rollback(start, done, failures)
    }

    /// Undoes, newest first, what hooks wrote before promotion (`scripts.allow_writes`); what
    /// cannot be undone is a warning that says so.
    async fn undo_hook_writes(&mut self, done: &mut Vec<String>, failures: &mut Vec<String>) {
        while let Some(op) = self.hook_writes.pop() {
            let k = op.instance.clone();
            let what = format!("{} by {} on {k}", op.primitive, op.by);
            let r = match &op.undo {
                Undo::Nothing => continue,
                Undo::Impossible { why } => {
                    let w = format!("cannot undo {what}: {why}");
                    warn!("{w}");
                    self.report.warnings.push(w);
                    continue;
                }
                Undo::ReadOnly { on } => ops::set_read_only(self.conn(), &k, *on, self.cfg().takeover.fence_lock_wait_s).await,
                Undo::StopReplication => ops::stop_replication(self.conn(), &k).await,
                Undo::StartReplication => ops::start_replication(self.conn(), &k).await,
                Undo::Repoint { source, start } => {
                    let spec = self.replication_spec(source, self.replica_position(&k), self.uses_tls(&k));
                    ops::repoint(self.conn(), &k, &spec, *start).await
                }
            };
            match r {
                Ok(rec) => {
                    self.ops.push(rec);
                    done.push(format!("undid {what}"));
                }
                Err(e) => failures.push(format!("could not undo {what}: {e}")),
            }
        }
    }

    /// Records the rollback phase; true when everything was undone.
    fn end_rollback(&mut self, start: Instant, done: Vec<String>, failures: Vec<String>) -> bool {
        let ok = failures.is_empty();
        self.rolled_back.extend(done.iter().cloned());
        let detail = if ok { done.join("; ") } else { format!("{}; FAILED: {}", done.join("; "), failures.join("; ")) };
        for f in &failures {
            self.report.errors.push(format!("rollback: {f}"));
        }
        self.record(Phase::Rollback, start, if ok { Outcome::Ok } else { Outcome::Failed }, detail);
        ok
    }

    /// Dry run: the steps a takeover would take from here, each with the statements it would run
    /// (positions known only at run time appear as `<...>`), and the hooks that would be called.
    async fn plan(&mut self) -> Result<Plan, TakeoverError> {
        let phase = Phase::CheckDesignated;
        let sql = |source| TakeoverError::Sql { phase, source };
        let master = self.master.clone().expect("checked");
        let d = self.designated.clone().expect("chosen");
        let c = self.cluster.as_ref().expect("resolved");
        let limit = self.cfg().takeover.catchup_timeout_ms as f64 / 1000.0;
        let lock_wait = self.cfg().takeover.fence_lock_wait_s;
        let shown = |v: Vec<crate::mysql::Statement>| v.into_iter().map(|s| s.shown).collect::<Vec<_>>();
        let mut steps = Vec::new();
        let mut step = |phase: Phase, instance: &InstanceKey, action: String, statements: Vec<String>| {
            steps.push(PlannedStep { phase, instance: instance.to_string(), action, statements })
        };
        let dd = self.conn().dialect(&d).await.map_err(sql)?;
        let md = self.conn().dialect(&master).await.map_err(sql)?;
        let stopped = c.instance(&d).and_then(|i| i.replication.as_ref()).is_some_and(|r| !r.io_thread.running() && !r.sql_thread.running());
        if stopped {
            step(Phase::CheckDesignated, &d, "start replication and wait until the master's position is executed".into(), vec![
                dd.start_replication().shown,
                dd.wait_for_gtid("<the master's position>", limit).shown,
            ]);
        }
        let siblings: Vec<InstanceKey> =
            c.replicas_of(&master).iter().map(|m| m.key.clone()).filter(|k| *k != d && c.instance(k).is_some()).collect();
        for s in &siblings {
            let sd = self.conn().dialect(s).await.map_err(sql)?;
            step(Phase::RelocateSiblings, s, "stop replication".into(), vec![sd.stop_replication().shown]);
            step(Phase::RelocateSiblings, &d, format!("wait until it executed what {s} had"), vec![
                dd.wait_for_gtid(&format!("<gtid executed by {s}>"), limit).shown,
            ]);
            let spec = self.replication_spec(&d, self.replica_position(s), self.uses_tls(s));
            step(Phase::RelocateSiblings, s, format!("replicate from {d}"), shown(ops::statements::repoint(sd.as_ref(), &spec, true))[1..].to_vec());
        }
        step(Phase::Fence, &master, "read_only on".into(), shown(ops::statements::set_read_only(md.as_ref(), true, lock_wait)));
        if self.cfg().takeover.kill_connections_after_ms.is_some() {
            step(Phase::Fence, &master, "kill client connections".into(), vec![
                md.client_connections(&self.cfg().topology.user).shown,
                md.kill_connection(0).shown.replace(" 0", " <id>"),
            ]);
        }
        step(Phase::CatchUp, &d, "wait until the fenced master's position is executed".into(), vec![
            dd.wait_for_gtid("<the master's position after the fence>", limit).shown,
        ]);
        let mut promote = shown(ops::statements::reset_replication(dd.as_ref()));
        promote.extend(shown(ops::statements::set_read_only(dd.as_ref(), false, lock_wait)));
        step(Phase::Promote, &d, "forget replication, read_only off".into(), promote);
        let (spec, start) = self.old_master_spec(&master, &d);
        step(
            Phase::RepointOldMaster,
            &master,
            format!("replicate from {d}{}", if start { "" } else { " (not started)" }),
            shown(ops::statements::repoint(md.as_ref(), &spec, start)),
        );
        let hooks = HookPhase::ALL.iter().map(|p| (p.name().to_string(), self.scripts.describe_hooks(*p))).collect();
        self.detail = format!("{} steps planned", steps.len());
        Ok(Plan { steps, hooks })
    }

    // ---- phases that change the topology ------------------------------------------------------

    fn replication_spec(&self, to: &InstanceKey, position: SourcePosition, tls: bool) -> SourceSpec {
        let r = &self.cfg().replication;
        SourceSpec {
            host: to.host.clone(),
            port: to.port,
            user: r.user.clone(),
            password: r.password.expose().to_string(),
            position,
            tls: tls || r.tls,
        }
    }

    /// How the demoted master replicates from the new one, and whether its replication starts.
    fn old_master_spec(&self, master: &InstanceKey, d: &InstanceKey) -> (SourceSpec, bool) {
        let position = match self.cluster.as_ref().and_then(|c| c.instance(master)).map(|i| i.flavor) {
            Some(Flavor::MySql) => SourcePosition::AutoPosition,
            _ => SourcePosition::GtidCurrentPos, // its own writes are in gtid_binlog_pos, not gtid_slave_pos
        };
        (self.replication_spec(d, position, self.uses_tls(d)), self.report.start_old_master_replication)
    }

    async fn release_server_lock(&mut self) {
        if let Some(l) = self.server_lock.take() {
            l.release(self.engine.connector.read_timeout()).await;
        }
    }

    /// The position mode an ordinary replica uses on a new source.
    fn replica_position(&self, key: &InstanceKey) -> SourcePosition {
        match self.cluster.as_ref().and_then(|c| c.instance(key)).map(|i| i.flavor) {
            Some(Flavor::MySql) => SourcePosition::AutoPosition,
            _ => SourcePosition::GtidSlavePos,
        }
    }

    fn uses_tls(&self, key: &InstanceKey) -> bool {
        self.cluster.as_ref().and_then(|c| c.instance(key)).and_then(|i| i.replication.as_ref()).is_some_and(|r| r.ssl)
    }

    /// Moves the designated replica's siblings below it while the master is still writable.
    /// Each sibling is stopped, the designated waits (in the server) until it has executed what
    /// the sibling had, and the sibling is pointed at the designated with GTID.
    async fn relocate_siblings(&mut self) -> PhaseResult {
        let phase = Phase::RelocateSiblings;
        let master = self.master.clone().expect("checked");
        let d = self.designated.clone().expect("chosen");
        let c = self.cluster.as_ref().expect("resolved");
        let siblings: Vec<InstanceKey> = c.replicas_of(&master).iter().map(|m| m.key.clone()).filter(|k| *k != d).collect();
        if siblings.is_empty() {
            self.detail = "no siblings".into();
            return Ok(());
        }
        let mut to_move = Vec::new();
        for s in siblings {
            if c.instance(&s).is_none() {
                // Unreachable and downtimed (check_master refused the others): left behind.
                let w = format!("{s} is downtimed and unreachable: left behind, not relocated");
                warn!("{w}");
                self.report.warnings.push(w);
            } else {
                to_move.push(s);
            }
        }
        let dialect = self.conn().dialect(&d).await.map_err(|source| TakeoverError::Sql { phase, source })?;
        let limit = Duration::from_millis(self.cfg().takeover.catchup_timeout_ms);
        let moves = to_move.iter().map(|s| {
            let spec = self.replication_spec(&d, self.replica_position(s), self.uses_tls(s));
            let (conn, dialect, d) = (self.conn(), &dialect, &d);
            async move {
                let mut done = vec![ops::stop_replication(conn, s).await?];
                let pos = ops::own_position_as_replica(conn, s).await?;
                if !pos.is_empty() {
                    done.push(ops::wait_for_gtid(conn, dialect.as_ref(), d, &pos, limit).await?);
                }
                done.push(ops::repoint(conn, s, &spec, true).await?);
                Ok::<_, SqlError>(done)
            }
        });
        let results = futures::future::join_all(moves).await;
        let mut first_err = None;
        for (s, r) in to_move.iter().zip(results) {
            match r {
                Ok(done) => {
                    self.ops.extend(done);
                    self.moved.push(s.clone());
                    self.report.siblings_moved.push(s.to_string());
                }
                Err(e) => {
                    // It may have been stopped before failing: move it back with the others.
                    self.moved.push(s.clone());
                    first_err.get_or_insert(e);
                }
            }
        }
        self.detail = format!("moved below {d}: {}", keys(&self.moved));
        match first_err {
            Some(source) => Err(TakeoverError::Sql { phase, source }),
            None => Ok(()),
        }
    }

    /// read_only on the master, with a bounded lock wait; optionally kill client connections.
    async fn fence(&mut self) -> PhaseResult {
        let phase = Phase::Fence;
        let master = self.master.clone().expect("checked");
        let lock_wait = self.cfg().takeover.fence_lock_wait_s;
        self.fenced_at = Some(Instant::now());
        let op = ops::set_read_only(self.conn(), &master, true, lock_wait).await.map_err(|source| TakeoverError::Sql { phase, source })?;
        self.ops.push(op);
        if let Some(grace) = self.cfg().takeover.kill_connections_after_ms {
            tokio::time::sleep(Duration::from_millis(grace)).await;
            let user = self.cfg().topology.user.clone();
            let op = ops::kill_client_connections(self.conn(), &master, &user).await.map_err(|source| TakeoverError::Sql { phase, source })?;
            self.detail = format!("killed {} client connections; ", op.statements.len().saturating_sub(1));
            self.ops.push(op);
        }
        self.detail.push_str(&format!("{master} is read-only"));
        Ok(())
    }

    /// Reads the fenced master's final position and waits, in the designated replica's server,
    /// until it has executed it.
    async fn catch_up(&mut self) -> PhaseResult {
        let phase = Phase::CatchUp;
        let master = self.master.clone().expect("checked");
        let d = self.designated.clone().expect("chosen");
        let sql = |source| TakeoverError::Sql { phase, source };
        let pos = ops::own_position(self.conn(), &master).await.map_err(sql)?;
        let op = self.wait_executed(&d, &pos).await.map_err(sql)?;
        self.ops.push(op);
        self.detail = format!("{d} executed {}", if pos.gtid.is_empty() { "everything" } else { &pos.gtid });
        self.fenced_position = Some(pos);
        Ok(())
    }

    /// Waits, in `d`'s server, until it has executed `pos` of the master: by GTID when it
    /// replicates with GTID (or no coordinates are known), else by binlog coordinates.
    async fn wait_executed(&self, d: &InstanceKey, pos: &OwnPosition) -> Result<OpRecord, SqlError> {
        let dialect = self.conn().dialect(d).await?;
        let limit = Duration::from_millis(self.cfg().takeover.catchup_timeout_ms);
        let gtid = self
            .cluster
            .as_ref()
            .and_then(|c| c.instance(d))
            .and_then(|i| i.replication.as_ref())
            .is_some_and(|r| r.gtid_mode != GtidMode::No);
        match (&pos.coordinates, gtid) {
            (Some(coords), false) => ops::wait_for_coordinates(self.conn(), dialect.as_ref(), d, coords, limit).await,
            _ => ops::wait_for_gtid(self.conn(), dialect.as_ref(), d, &pos.gtid, limit).await,
        }
    }

    /// Replication off and forgotten on the designated replica, then read_only off.
    async fn promote(&mut self) -> PhaseResult {
        let phase = Phase::Promote;
        let d = self.designated.clone().expect("chosen");
        let sql = |source| TakeoverError::Sql { phase, source };
        self.designated_reset = true; // from here on, rollback re-points it
        self.ops.push(ops::reset_replication(self.conn(), &d).await.map_err(sql)?);
        let lock_wait = self.cfg().takeover.fence_lock_wait_s;
        self.ops.push(ops::set_read_only(self.conn(), &d, false, lock_wait).await.map_err(sql)?);
        self.promoted = true;
        let window = self.fenced_at.expect("fenced").elapsed().as_secs_f64() * 1000.0;
        self.report.write_unavailable_ms = Some(window);
        self.report.new_master = Some(d.to_string());
        self.detail = format!("{d} is the master and writable; writes were unavailable for {window:.1} ms");
        Ok(())
    }

    /// The old master replicates from the new one (stopped unless auto / start_replication), and
    /// its position must not have moved while fenced.
    async fn repoint_old_master(&mut self) -> PhaseResult {
        let phase = Phase::RepointOldMaster;
        let master = self.master.clone().expect("checked");
        let d = self.designated.clone().expect("chosen");
        let sql = |source| TakeoverError::Sql { phase, source };
        let now = ops::own_position(self.conn(), &master).await.map_err(sql)?;
        let fenced = self.fenced_position.clone().expect("caught up");
        let moved = now.gtid != fenced.gtid;
        let (spec, start) = self.old_master_spec(&master, &d);
        self.ops.push(ops::repoint(self.conn(), &master, &spec, start).await.map_err(sql)?);
        self.report.old_master_repointed = true;
        self.detail = format!("{master} replicates from {d}{}", if start { " (started)" } else { " (not started)" });
        if moved {
            let msg = format!(
                "{master}: a write got through the fence: its position moved from {} to {} after read_only; \
                 those transactions are not on {d}",
                fenced.gtid, now.gtid
            );
            error!("{msg}");
            return Err(TakeoverError::refused(phase, "fence_held", Some(&master), msg));
        }
        Ok(())
    }

    /// Undoes the changes of a failed takeover before promotion: old master writable first (writes
    /// resume), then siblings and the designated replica back under it. True when all of it worked.
    async fn rollback(&mut self) -> bool {
        let start = Instant::now();
        self.emit(PhaseEvent::Started { id: self.report.id.clone(), phase: Phase::Rollback });
        let master = self.master.clone().expect("checked");
        let mut failures = Vec::new();
        let mut done = Vec::new();
        if let Some(fenced_at) = self.fenced_at {
            match ops::set_read_only(self.conn(), &master, false, self.cfg().takeover.fence_lock_wait_s).await {
                Ok(op) => {
                    self.ops.push(op);
                    // Writes were unavailable from the fence until the old master took them again.
                    self.report.write_unavailable_ms = Some(fenced_at.elapsed().as_secs_f64() * 1000.0);
                    done.push(format!("{master} writable again"));
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        let mut back: Vec<InstanceKey> = self.moved.clone();
        if self.designated_reset || self.started_designated_replication {
            back.push(self.designated.clone().expect("chosen"));
        }
        let designated = self.designated.clone();
        let moves = back.iter().map(|s| {
            let spec = self.replication_spec(&master, self.replica_position(s), self.uses_tls(s));
            // The designated replica goes back running only if it was running before.
            let start = !(Some(s) == designated.as_ref() && self.started_designated_replication && !self.designated_reset);
            let conn = self.conn();
            async move { ops::repoint(conn, s, &spec, start).await }
        });
        for (s, r) in back.iter().zip(futures::future::join_all(moves).await) {
            match r {
                Ok(op) => {
                    self.ops.push(op);
                    done.push(format!("{s} replicates from {master} again"));
                }
                // A sibling that went down meanwhile cannot be moved back now; that does not make
                // the rollback a failure (writes go to the old master again), but it is reported.
                // A sibling that is up but does not answer (STOP SLAVE blocked behind a hung
                // source) is a failure: it is left below the designated replica, and said so.
                Err(e) if e.is_down() && Some(s) != designated.as_ref() => {
                    let w = format!("{s} is unreachable and was not moved back: check that it replicates from {master} when it returns ({e})");
                    warn!("{w}");
                    self.report.warnings.push(w);
                }
                Err(e) if Some(s) != designated.as_ref() => failures.push(format!(
                    "{e} ({s} may still replicate from {}; if that source was hung, the STOP SLAVE sent to {s} runs \
                     when it resumes: repoint {s} to {master} then)",
                    designated.as_ref().map(|d| d.to_string()).unwrap_or_default()
                )),
                Err(e) => failures.push(e.to_string()),
            }
        }
        self.undo_hook_writes(&mut done, &mut failures).await;
        self.end_rollback(start, done, failures)
    }
}

fn keys(list: &[InstanceKey]) -> String {
    list.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
}
