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

mod change;
mod checks;
pub mod commands;
mod dry_run;
mod fault;
pub mod hooks;
pub mod plan;
pub mod recover;
pub mod report;
mod rollback;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::discovery::{self, DiscoveryError};
use crate::mysql::ops::{self, OpRecord, OwnPosition};
use crate::mysql::{Connector, SourcePosition, SourceSpec, SqlError};
use crate::store::{KnownCluster, Store, StoreError};
use crate::topology::{Cluster, Flavor, GtidMode, InstanceKey, ThreadState};

pub use commands::{CommandError, CommandNameError, CommandReport, InstanceCommand};
pub use hooks::{
    Choice, ChoiceFuture, HookContext, HookFuture, HookPhase, HookRun, NoScripts, PhaseTiming, PolicyInput, ScriptOp,
    ScriptSource, Scripts, ScriptsVersion, Undo,
};
pub use plan::{Candidate, Check, Excluded, PlanInputs};
pub use recover::{RecoverError, RecoverMode};
pub use report::{
    Outcome, Owner, Phase, PhaseEvent, PhaseRecord, Plan, PlannedStep, Recovery, Refusal, RefusalKind, Status,
    TakeoverReport,
};
pub use rollback::{UndoAction, UndoPlan, UndoStep};

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
    /// This node's leadership lapsed (lease deadline passed): it changes nothing more; the
    /// leader settles the takeover from the journal.
    #[error("{phase}: not started: this node no longer leads (its lease lapsed); the leader settles this takeover from the journal")]
    Deposed { phase: Phase },
}

impl TakeoverError {
    /// The phase that failed.
    pub fn phase(&self) -> Phase {
        match self {
            TakeoverError::Sql { phase, .. }
            | TakeoverError::Discovery { phase, .. }
            | TakeoverError::Store { phase, .. }
            | TakeoverError::Refused { phase, .. }
            | TakeoverError::Busy { phase, .. }
            | TakeoverError::Vetoed { phase, .. }
            | TakeoverError::HookFailed { phase, .. }
            | TakeoverError::Deposed { phase } => *phase,
        }
    }

    /// How a refusal is classified for callers (HTTP status codes).
    fn refusal(&self) -> Refusal {
        let (kind, phase, check, instance) = match self {
            TakeoverError::Busy { phase, .. } => (RefusalKind::Busy, *phase, "busy".to_string(), None),
            // Another process holds the store right now: busy, as another takeover would be.
            TakeoverError::Store { phase, source }
            | TakeoverError::Discovery { phase, source: DiscoveryError::Store(source) }
                if source.is_busy() =>
            {
                (RefusalKind::Busy, *phase, "busy".to_string(), None)
            }
            TakeoverError::Discovery { phase, source: DiscoveryError::UnknownHint(_) | DiscoveryError::BadKey(_) } => {
                (RefusalKind::UnknownCluster, *phase, "unknown_cluster".to_string(), None)
            }
            TakeoverError::Refused { phase, check, instance, .. } => {
                (RefusalKind::Check, *phase, check.clone(), instance.as_ref().map(|i| i.to_string()))
            }
            TakeoverError::Vetoed { phase, .. } => (RefusalKind::Veto, *phase, "hook".to_string(), None),
            TakeoverError::Sql { phase, source } => {
                (RefusalKind::Error, *phase, "sql".to_string(), Some(source.instance().to_string()))
            }
            _ => (RefusalKind::Error, self.phase(), "error".to_string(), None),
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
    /// With several nodes (etcd): this node's leadership. A takeover changes servers and runs
    /// hooks only while it holds (`Lease::acting`); None: one node, always.
    pub lease: Option<crate::ha::Lease>,
}

impl Engine {
    pub fn new(
        cfg: Arc<Config>,
        connector: Arc<Connector>,
        store: Arc<dyn Store>,
        scripts: Arc<dyn ScriptSource>,
    ) -> Engine {
        Engine { cfg, connector, store, scripts, lease: None }
    }

    /// The engine of one of several nodes: it acts only while `lease` says it leads.
    pub fn leading_by(mut self, lease: crate::ha::Lease) -> Engine {
        self.lease = Some(lease);
        self
    }

    /// Whether this node may change servers now (always, without leadership).
    pub fn may_act(&self) -> bool {
        self.lease.as_ref().is_none_or(|l| l.acting())
    }

    /// Runs one takeover to its end and returns its report (also saved in the store).
    pub async fn takeover(&self, req: TakeoverRequest, events: Option<EventSink>) -> TakeoverReport {
        self.takeover_with_id(Engine::new_id(), req, events).await
    }

    /// Plan inputs read from the store (rules and downtime in force) and the config.
    pub fn plan_inputs(&self) -> Result<PlanInputs, StoreError> {
        Engine::plan_inputs_of(&self.cfg, self.store.as_ref())
    }

    /// `plan_inputs` from a config and a store (the fleet view judges with the same inputs).
    pub fn plan_inputs_of(cfg: &Config, store: &dyn Store) -> Result<PlanInputs, StoreError> {
        Ok(PlanInputs {
            rules: store.promotion_rules()?.into_iter().map(|r| (r.instance, r.rule)).collect(),
            downtimes: store.downtimes()?.into_iter().map(|d| (d.instance.clone(), d)).collect(),
            ignore_hostname_filters: cfg.takeover.promotion_ignore_hostname_filters.clone(),
            reasonable_lag_s: cfg.takeover.reasonable_lag_s,
            allow_lax_gtid: cfg.takeover.allow_lax_gtid,
            semi_sync_required: cfg.takeover.semi_sync_required,
        })
    }

    /// A fresh takeover id.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// `takeover` under an id the caller chose (to answer before the takeover ends).
    ///
    /// The takeover runs as a task of its own: a caller that goes away (a dropped future, a
    /// closed HTTP connection) does not cut it short, and a panic in it ends like any failure:
    /// the takeover is settled from its journal and the live topology (`recover`: rolled back
    /// before promotion, finished after it), its locks released, its report saved.
    pub async fn takeover_with_id(
        &self,
        id: String,
        req: TakeoverRequest,
        events: Option<EventSink>,
    ) -> TakeoverReport {
        let span = info_span!("takeover", id = %id, hint = %req.cluster_hint, dry_run = req.dry_run);
        let run = Run::new(self.clone(), id.clone(), req.clone(), events);
        let task = tokio::spawn(run.execute().instrument(span));
        match task.await {
            Ok(report) => report,
            Err(e) => {
                let why = if e.is_panic() { "panicked" } else { "was cancelled" };
                error!(%id, "the takeover {why}: settling it from its journal and the live topology");
                self.settle_after_panic(&id, why, req).await
            }
        }
    }

    async fn settle_after_panic(&self, id: &str, why: &str, req: TakeoverRequest) -> TakeoverReport {
        match self.recover(id, RecoverMode::Auto).await {
            Ok(mut report) => {
                report.errors.insert(0, format!("the takeover {why}; it was settled like an interrupted one"));
                report
            }
            Err(e) => {
                // Nothing journaled to settle from (it panicked before its first record): no
                // server was changed; release any lock it took and answer with the failure.
                let _ = self.store.release_locks_of(id);
                let mut run = Run::new(self.clone(), id.to_string(), req, None);
                run.report.status = Status::Failed;
                run.report.errors.push(format!("the takeover {why}, and could not be settled: {e}"));
                let _ = run.journal();
                run.report
            }
        }
    }
}

/// What the check phases established about the cluster: every phase after them is handed it, so
/// what a phase needs exists by construction.
struct Target {
    /// The live snapshot the takeover decided on (re-read after the designated replica caught up).
    cluster: Cluster,
    master: InstanceKey,
    designated: InstanceKey,
}

/// One takeover in progress: the context that travels through the phases. What the phases
/// established is in `Target`; what they changed, and how to undo it, in `report.undo`.
struct Run {
    engine: Engine,
    /// The scripts version this takeover started with, kept to its end.
    scripts: Arc<dyn Scripts>,
    req: TakeoverRequest,
    events: Option<EventSink>,
    report: TakeoverReport,
    started: Instant,
    inputs: PlanInputs,
    lock: Option<String>,
    server_lock: Option<ops::ServerLock>,
    /// The members when resolved: remembered under the new master's name after promotion.
    members: Vec<InstanceKey>,
    // Progress.
    fenced_at: Option<Instant>,
    /// What the designated replica had executed before the fence (MariaDB), for the catch-up.
    designated_had: Option<(InstanceKey, String)>,
    promoted: bool,
    rolled_back: Vec<String>,
    /// The last journal write that failed, for `step` to act on.
    journal_error: Option<StoreError>,
    /// Recovery: the hook phase the crashed process had in progress (its hooks may have run).
    hooks_may_have_run: Option<Phase>,
    /// This node stopped leading during the takeover: nothing more is changed or undone here.
    deposed: bool,
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
            started_by: None,
            recoveries: Vec::new(),
            in_progress: None,
            undo: UndoPlan::default(),
            semi_sync: None,
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
            inputs: PlanInputs::default(),
            lock: None,
            server_lock: None,
            deposed: false,
            members: Vec::new(),
            fenced_at: None,
            designated_had: None,
            promoted: false,
            rolled_back: Vec::new(),
            journal_error: None,
            hooks_may_have_run: None,
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
        // Nothing changes in these phases (but what check_designated and the pre_takeover hooks
        // may start, which the undo plan holds): a failure is a refusal.
        let t = match self.prepare().await {
            Ok(t) => t,
            Err(e) => {
                self.report.errors.push(e.to_string());
                self.report.refusal = Some(e.refusal());
                let undone = self.rollback(false).await;
                self.report.status = if undone { Status::Refused } else { Status::Failed };
                return self.finish().await;
            }
        };
        if self.req.dry_run {
            match self.plan(&t).await {
                Ok(plan) => {
                    self.report.plan = Some(plan);
                    self.report.status = Status::Planned;
                }
                Err(e) => {
                    self.report.errors.push(e.to_string());
                    self.report.refusal = Some(e.refusal());
                    self.report.status = Status::Refused;
                }
            }
            return self.finish().await;
        }
        // Changes begin. Until the new master is writable, a failure rolls everything back.
        let fenced = match self.change(&t).await {
            Ok(fenced) => fenced,
            Err(e) => {
                self.report.errors.push(e.to_string());
                let rolled_back = self.rollback(true).await;
                self.report.status = if rolled_back { Status::RolledBack } else { Status::Failed };
                return self.finish().await;
            }
        };
        // Promoted. What follows is recorded, never undone.
        self.after_promotion(&t, Some(&fenced), true, true).await;
        self.report.status = if self.report.errors.is_empty() { Status::Promoted } else { Status::PromotedWithErrors };
        self.finish().await
    }

    /// resolve .. pre_takeover_hooks (a dry run calls no hook: they are listed in its plan).
    async fn prepare(&mut self) -> Result<Target, TakeoverError> {
        use Phase::*;
        let cluster = self.step(Resolve, async |r: &mut Run| r.resolve().await).await?;
        let master = self.step(CheckMaster, async |r: &mut Run| r.check_master(&cluster)).await?;
        let designated =
            self.step(ChooseDesignated, async |r: &mut Run| r.choose_designated(&cluster, &master).await).await?;
        self.members = cluster.members.iter().map(|m| m.key.clone()).collect();
        let t = Target { cluster, master, designated };
        let t = self.step(CheckDesignated, async move |r: &mut Run| r.check_designated(t).await).await?;
        if !self.req.dry_run {
            self.step(PreTakeoverHooks, async |r: &mut Run| {
                r.hooks(PreTakeoverHooks, HookPhase::PreTakeover, &t).await
            })
            .await?;
        }
        Ok(t)
    }

    /// relocate_siblings .. promote. Before each phase that changes servers, the undo plan says how
    /// to undo it (and the write-ahead journal record carries it). The fenced master's final
    /// position comes back, for the repoint to check that the fence held.
    async fn change(&mut self, t: &Target) -> Result<OwnPosition, TakeoverError> {
        use Phase::*;
        for s in self.siblings_to_move(t) {
            self.report.undo.replica_back(&s, &t.master, true, &t.cluster, RelocateSiblings);
        }
        self.step(RelocateSiblings, async |r: &mut Run| r.relocate_siblings(t).await).await?;
        self.step(PreFenceHooks, async |r: &mut Run| r.hooks(PreFenceHooks, HookPhase::PreFence, t).await).await?;
        self.report.undo.unfence(&t.master);
        let fenced = self.step(Fence, async |r: &mut Run| r.fence(t).await).await?;
        self.step(CatchUp, async |r: &mut Run| r.catch_up(t, &fenced).await).await?;
        self.report.undo.replica_back(&t.designated, &t.master, true, &t.cluster, Promote);
        if Run::semi_sync_for_new_master(t).is_some() {
            let was =
                t.cluster.instance(&t.designated).and_then(|i| i.semi_sync.as_ref()).is_some_and(|s| s.master_enabled);
            let back = crate::mysql::SemiSyncChange { master: Some(was), ..Default::default() };
            self.report.undo.semi_sync_back(&t.designated, back, Promote);
        }
        self.step(Promote, async |r: &mut Run| r.promote(t).await).await?;
        Ok(fenced)
    }

    /// post_promote_hooks, repoint_old_master (when the fenced position is known), post_takeover_hooks:
    /// each failure is recorded, none stops the others.
    async fn after_promotion(
        &mut self,
        t: &Target,
        fenced: Option<&OwnPosition>,
        post_promote: bool,
        post_takeover: bool,
    ) {
        use Phase::*;
        if post_promote {
            let r = self
                .step(PostPromoteHooks, async |r: &mut Run| r.hooks(PostPromoteHooks, HookPhase::PostPromote, t).await)
                .await;
            self.after_promotion_error(r);
        }
        if let Some(fenced) = fenced {
            let r = self.step(RepointOldMaster, async |r: &mut Run| r.repoint_old_master(t, fenced).await).await;
            self.after_promotion_error(r);
        }
        if post_takeover {
            let r = self
                .step(PostTakeoverHooks, async |r: &mut Run| {
                    r.hooks(PostTakeoverHooks, HookPhase::PostTakeover, t).await
                })
                .await;
            self.after_promotion_error(r);
        }
    }

    fn after_promotion_error(&mut self, r: PhaseResult) {
        if let Err(e) = r {
            error!(error = %e, "after promotion");
            self.report.errors.push(e.to_string());
        }
    }

    /// Runs one phase, timing it and recording it in the report and the journal.
    async fn step<T>(
        &mut self,
        phase: Phase,
        run_phase: impl AsyncFnOnce(&mut Run) -> Result<T, TakeoverError>,
    ) -> Result<T, TakeoverError> {
        let span = info_span!("phase", name = phase.name());
        self.emit(PhaseEvent::Started { id: self.report.id.clone(), phase });
        let start = Instant::now();
        // A node that no longer leads changes nothing more, not even to roll back: the leader
        // settles the takeover from the journal (and a lapsed node's writes to it fail anyway).
        if (phase.changes_servers() || phase.write_ahead()) && !self.req.dry_run && !self.engine.may_act() {
            self.deposed = true;
            let e = TakeoverError::Deposed { phase };
            self.record(phase, start, Outcome::Failed, e.to_string());
            return Err(e);
        }
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
                self.record(
                    phase,
                    start,
                    Outcome::Failed,
                    format!("not started: the journal cannot be written: {source}"),
                );
                self.journal_error = None;
                return Err(TakeoverError::Store { phase, source });
            }
        }
        let result = run_phase(self).instrument(span).await;
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(TakeoverError::Refused { .. } | TakeoverError::Vetoed { .. } | TakeoverError::Busy { .. }) => {
                Outcome::Refused
            }
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
        fault::panic_point(phase);
        fault::stop_point(phase);
    }

    fn emit(&self, ev: PhaseEvent) {
        if let Some(sink) = &self.events {
            sink(&ev);
        }
    }

    /// Saves the report as it stands: the journal of a running takeover, the audit of a finished one.
    fn journal(&mut self) -> Result<(), StoreError> {
        if !self.req.dry_run && !self.engine.may_act() {
            // A deposed node must not record anything: not even a final state, which would hide
            // the takeover from the leader that settles it.
            self.deposed = true;
            return Err(StoreError::NotLeader);
        }
        let entry = self.audit_entry();
        // The store may block (a busy lock, a slow disk): keep this runtime's other tasks (the
        // HTTP service, other takeovers) running meanwhile.
        let store = &self.engine.store;
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let saved = if multi {
            tokio::task::block_in_place(|| store.save_takeover(&entry))
        } else {
            store.save_takeover(&entry)
        };
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
        self.fenced_at.is_some()
            && !self.promoted
            && self.rolled_back.is_empty()
            && self.report.status == Status::Running
    }

    /// Journals the report; a failed write is tried once more and then said in the answer (the
    /// servers are as the report says, but nothing durable records it).
    fn journal_or_report(&mut self) {
        if self.journal().is_err() && self.journal().is_err() {
            let e = if self.promoted {
                "journal: the takeover's record could not be saved (the new master stands; see the warnings)"
            } else {
                "journal: the takeover's final state could not be saved (the servers are as this report says; \
                 run `baton takeover recover` once the store can be written)"
            };
            if !self.report.errors.iter().any(|x| x == e) {
                self.report.errors.push(e.to_string());
            }
        }
    }

    async fn finish(mut self) -> TakeoverReport {
        // on_failure runs while the cluster is still locked: after a rollback, after a failure, and
        // after a promotion with errors (not after a refusal or a plan: nothing changed).
        if matches!(self.report.status, Status::RolledBack | Status::Failed | Status::PromotedWithErrors)
            && !self.deposed
        {
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
        if self.deposed {
            // The journal and the cluster lock stay as they are, for the leader to settle.
            warn!(
                status = self.report.status.as_str(),
                "this node no longer leads: the takeover is left to the leader"
            );
            return self.report;
        }
        if let Some(lock) = self.lock.take() {
            if let Err(e) = self.engine.store.unlock_cluster(&lock, &self.report.id) {
                self.report.warnings.push(format!("releasing the cluster lock: {e}"));
            }
        }
        // Remember the cluster under its new name so that its alias keeps resolving: same members,
        // named after the new master (no second discovery: the snapshot has the members).
        // A takeover never changes who owns an alias: it keeps what resolve found.
        let new_master = self.report.new_master.as_deref().and_then(|k| k.parse::<InstanceKey>().ok());
        if let (true, Some(d), false) = (self.promoted, new_master, self.members.is_empty()) {
            let claimed_alias = self.engine.store.cluster_of(&d).ok().flatten().and_then(|k| k.claimed_alias);
            let known = KnownCluster {
                name: d.to_string(),
                alias: self.report.alias.clone(),
                members: self.members.clone(),
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
            successor: self.report.designated.clone(),
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
            semi_sync: self.report.semi_sync.clone(),
        }
    }

    async fn hooks(&mut self, phase: Phase, hook: HookPhase, t: &Target) -> PhaseResult {
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
            for op in &run.ops {
                self.report.undo.script(op, &t.cluster);
            }
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
}

fn keys(list: &[InstanceKey]) -> String {
    list.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
}
