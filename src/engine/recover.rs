//! Settling a takeover whose process died (SIGKILL, a crash, a lost machine) before it finished.
//!
//! The journal says which phase was last recorded; the live topology says what actually
//! happened (a phase may have half-run after its last journal entry). Baton decides from the live
//! topology:
//!
//! | found                                                | `auto` (recover)   | `resume`          | `abort`            |
//! |------------------------------------------------------|--------------------|-------------------|--------------------|
//! | nothing changed (designated replicates from the old master, no sibling moved, old master writable) | record, release | same | same |
//! | not promoted: old master writable or fenced, siblings maybe moved, designated maybe reset | roll back | refused: roll back first | roll back |
//! | promoted: new master writable, old master read-only  | finish             | finish            | refused: take over back |
//! | both writable                                        | `needs_operator`   | fence the old master, finish unless it has transactions the new one lacks | fence the new master, roll back unless it has transactions the old one lacks |
//!
//! Why: before promotion the old master holds every acknowledged write and the caller was never
//! told the takeover succeeded, so restoring it is the safe and fast way to give writes back (one
//! statement). After promotion the new master may have taken writes: going back would be a new
//! takeover, so Baton finishes (repoints the old master, moves any sibling left behind, runs the
//! remaining hooks). Two writable masters mean writes may have gone to both: only an operator can
//! say which side wins, so Baton reports what each has that the other lacks and waits.

use std::time::Instant;

use tracing::{info, info_span, warn, Instrument};

use super::report::{Outcome, Phase, Recovery, Status, TakeoverReport};
use super::rollback::{UndoAction, UndoPlan};
use super::{ops, Engine, Run, Target};
use crate::discovery;
use crate::store::StoreError;
use crate::topology::InstanceKey;

/// Who asked for the settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverMode {
    /// Found interrupted: Baton decides where it safely can.
    Auto,
    /// The operator asks to finish it.
    Resume,
    /// The operator asks to undo it.
    Abort,
}

impl RecoverMode {
    pub fn name(self) -> &'static str {
        match self {
            RecoverMode::Auto => "auto",
            RecoverMode::Resume => "resume",
            RecoverMode::Abort => "abort",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("no takeover with id {0}")]
    NotFound(String),
    #[error("takeover {id} is not interrupted: its status is {status}")]
    Finished { id: String, status: String },
    #[error("takeover {id} is still running (pid {pid} on {host})")]
    StillRunning { id: String, pid: u32, host: String },
    #[error("takeover {id}: the stored record cannot be read: {message}")]
    BadRecord { id: String, message: String },
    #[error("takeover {id}: {message}")]
    Refused { id: String, message: String },
    #[error(
        "there is no record of takeover {id}; released the lock it held on {} (its journal was never written): check the cluster with baton topology",
        clusters.join(", ")
    )]
    OrphanLockReleased { id: String, clusters: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
    /// Takeovers the store shows running whose process is gone (on this host), oldest first.
    pub fn interrupted(&self) -> Result<Vec<TakeoverReport>, StoreError> {
        let live = self.store.live_nodes()?;
        let mut out: Vec<TakeoverReport> = self
            .store
            .unsettled_takeovers()?
            .into_iter()
            .filter_map(|e| serde_json::from_value::<TakeoverReport>(e.record).ok())
            .filter(|r| {
                r.status == Status::NeedsOperator || !r.owner.as_ref().is_some_and(|o| o.alive_among(live.as_deref()))
            })
            .collect();
        out.sort_by_key(|r| r.started_at);
        Ok(out)
    }

    /// Running takeovers owned by another process on this host that is still alive (a previous
    /// `baton serve` still exiting, say): (id, pid). Settle them once that process is gone.
    pub fn owned_by_live_process(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let me = super::Owner::current();
        Ok(self
            .store
            .unsettled_takeovers()?
            .into_iter()
            .filter(|e| e.status == Status::Running.as_str())
            .filter_map(|e| serde_json::from_value::<TakeoverReport>(e.record).ok())
            .filter_map(|r| {
                let o = r.owner.as_ref()?;
                (o.host == me.host && o.pid != me.pid && o.alive()).then(|| (r.id.clone(), o.pid))
            })
            .collect())
    }

    /// Settles the interrupted takeover `id` (see the module's table).
    pub async fn recover(&self, id: &str, mode: RecoverMode) -> Result<TakeoverReport, RecoverError> {
        let Some(entry) = self.store.takeover(id)? else {
            // A lock whose takeover never got a record (the journal write failed): nothing can
            // be settled from it, but the lock must not block the cluster for ever.
            let clusters = self.store.release_locks_of(id)?;
            return Err(if clusters.is_empty() {
                RecoverError::NotFound(id.to_string())
            } else {
                RecoverError::OrphanLockReleased { id: id.to_string(), clusters }
            });
        };
        let report: TakeoverReport = serde_json::from_value(entry.record)
            .map_err(|e| RecoverError::BadRecord { id: id.to_string(), message: e.to_string() })?;
        match report.status {
            Status::Running => {
                let live = self.store.live_nodes()?;
                if let Some(o) =
                    report.owner.as_ref().filter(|o| o.alive_among(live.as_deref()) && **o != super::Owner::current())
                {
                    return Err(RecoverError::StillRunning { id: id.to_string(), pid: o.pid, host: o.host.clone() });
                }
            }
            Status::NeedsOperator => {}
            other => return Err(RecoverError::Finished { id: id.to_string(), status: other.as_str().to_string() }),
        }
        let span = info_span!("recover", id = %id, mode = mode.name());
        let run = Run::from_report(self.clone(), report);
        run.settle(mode).instrument(span).await
    }
}

impl Run {
    /// Continues an interrupted takeover under its own id and journal.
    fn from_report(engine: Engine, report: TakeoverReport) -> Run {
        let req = super::TakeoverRequest {
            cluster_hint: report.alias.clone().unwrap_or_else(|| report.cluster.clone()),
            auto: report.command.ends_with("-auto"),
            start_replication: report.start_old_master_replication,
            ..Default::default()
        };
        let mut run = Run::new(engine, report.id.clone(), req, None);
        let scripts = run.report.scripts.clone();
        run.report = report;
        // Keep the version the takeover started with when it is still the loaded one; otherwise
        // the hooks that run now are the current version, and the report says so.
        if scripts != run.report.scripts {
            run.report.warnings.push(format!(
                "recovery runs scripts version {}, the takeover started with {}",
                scripts.as_ref().map(|v| v.id.as_str()).unwrap_or("none"),
                run.report.scripts.as_ref().map(|v| v.id.as_str()).unwrap_or("none")
            ));
        }
        if run.report.started_by.is_none() {
            run.report.started_by = run.report.owner.clone();
        }
        run.report.owner = Some(super::Owner::current());
        run.lock = Some(run.report.alias.clone().unwrap_or_else(|| run.report.cluster.clone()));
        run
    }

    fn refused(&self, message: impl Into<String>) -> RecoverError {
        RecoverError::Refused { id: self.report.id.clone(), message: message.into() }
    }

    async fn settle(mut self, mode: RecoverMode) -> Result<TakeoverReport, RecoverError> {
        let last_phase = self.report.phases.iter().rev().find(|p| p.name != Phase::Rollback).map(|p| p.name);
        let parse = |s: &Option<String>| s.as_deref().and_then(|k| k.parse::<InstanceKey>().ok());
        let (Some(old), Some(d)) = (parse(&self.report.old_master), parse(&self.report.designated)) else {
            // Interrupted before a replica was chosen: nothing was changed.
            return Ok(self
                .close(mode, last_phase, "no replica chosen yet".into(), "nothing to undo".into(), Status::Refused)
                .await);
        };
        // The live topology. Mid-takeover it may be two trees (the promoted replica, and the old
        // master not yet repointed): discover from each and keep every member seen.
        let mut cluster = None::<crate::topology::Cluster>;
        for seed in [&old, &d] {
            match discovery::discover(self.conn(), self.cfg(), std::slice::from_ref(seed)).await {
                Ok(c) => match cluster.as_mut() {
                    None => cluster = Some(c),
                    Some(all) => {
                        for m in c.members {
                            if all.member(&m.key).is_none() {
                                all.members.push(m);
                            }
                        }
                    }
                },
                Err(e) => return Err(self.refused(format!("cannot read the topology to settle it ({seed}): {e}"))),
            }
        }
        let Some(cluster) = cluster else {
            return Err(self.refused("no topology was read to settle it"));
        };
        let (Some(oi), Some(di)) = (cluster.instance(&old).cloned(), cluster.instance(&d).cloned()) else {
            return Err(self.refused(format!("{old} or {d} is unreachable: settle it when both answer")));
        };
        let moved: Vec<InstanceKey> = cluster
            .members
            .iter()
            .filter(|m| m.key != old && m.source.as_ref() == Some(&d))
            .map(|m| m.key.clone())
            .collect();
        let found = format!(
            "old master {old} {}{}, designated {d} {}{}, {} sibling(s) below {d}",
            if oi.read_only { "read-only" } else { "writable" },
            oi.source().map(|s| format!(" replicating from {s}")).unwrap_or_default(),
            if di.read_only { "read-only" } else { "writable" },
            di.source().map(|s| format!(" replicating from {s}")).unwrap_or_else(|| " not replicating".into()),
            moved.len()
        );
        info!(%found, "settling an interrupted takeover");
        self.members = cluster.members.iter().map(|m| m.key.clone()).collect();
        let t = Target { cluster, master: old.clone(), designated: d.clone() };

        // What hooks wrote before the interruption is only in the journal's undo plan.
        let hook_writes =
            !self.report.undo.scripts.is_empty() && !self.report.phases.iter().any(|p| p.name == Phase::Promote);
        let unchanged = !oi.read_only && di.read_only && di.source() == Some(&old) && moved.is_empty() && !hook_writes;
        if unchanged {
            return Ok(self
                .close(mode, last_phase, found, "nothing had changed: nothing to undo".into(), Status::Refused)
                .await);
        }
        // Take the cross-process lock again (the dead process's connection, and its lock, are gone).
        let lock = self.lock.clone().unwrap_or_else(|| self.report.cluster.clone());
        if let Some(l) = ops::server_lock(self.conn(), &old, &ops::lock_name(&lock))
            .await
            .map_err(|e| self.refused(e.to_string()))?
        {
            self.server_lock = Some(l);
        } else if self.engine.lease.is_some() {
            // Several nodes: the owner's session is gone (that is why this runs), so whoever holds
            // the lock is a node that no longer leads (frozen, or cut off from etcd, its
            // connection still open). It acts no more: end its session and take the lock.
            let name = ops::lock_name(&lock);
            let killed =
                ops::break_server_lock(self.conn(), &old, &name).await.map_err(|e| self.refused(e.to_string()))?;
            // The server lets go of a killed session's lock once it has ended it: wait there.
            let taken = ops::server_lock_within(self.conn(), &old, &name, 5).await;
            match taken.map_err(|e| self.refused(e.to_string()))? {
                Some(l) => {
                    warn!(instance = %old, connection = ?killed, "ended the session of a node that no longer leads, to take the server lock");
                    self.server_lock = Some(l);
                }
                None => return Err(self.refused(format!("another Baton process holds the server lock on {old}"))),
            }
        } else {
            return Err(self.refused(format!("another Baton process holds the server lock on {old}")));
        }
        match (!oi.read_only, !di.read_only) {
            // Promoted: finish.
            (false, true) => {
                if mode == RecoverMode::Abort {
                    let e = self.refused(format!(
                        "{d} was promoted and may have taken writes: run a takeover back to {old} instead"
                    ));
                    self.release_server_lock().await;
                    return Err(e);
                }
                self.promoted = true;
                self.report.new_master = Some(d.to_string());
                let status = self.finish_forward(&t, &oi).await;
                Ok(self
                    .close(mode, last_phase, found, "promoted before the interruption: finished".into(), status)
                    .await)
            }
            // Not promoted: roll back.
            (_, false) => {
                if mode == RecoverMode::Resume {
                    let e = self.refused(
                        "it had not promoted: recover or abort it (that rolls it back), then start a new takeover",
                    );
                    self.release_server_lock().await;
                    return Err(e);
                }
                self.report.undo = undo_from_live(&self.report.undo, &t, oi.read_only, &moved, di.source());
                let ok = self.rollback(true).await;
                let status = if ok { Status::RolledBack } else { Status::Failed };
                Ok(self
                    .close(mode, last_phase, found, "not promoted before the interruption: rolled back".into(), status)
                    .await)
            }
            // Both writable.
            (true, true) => match mode {
                RecoverMode::Auto => {
                    let lacks = |a: &crate::topology::Instance, b: &crate::topology::Instance| {
                        a.gtid.missing_from(&b.gtid).map(|m| format!("{} has {m} that {} lacks", a.key, b.key))
                    };
                    let diff: Vec<String> = [lacks(&oi, &di), lacks(&di, &oi)].into_iter().flatten().collect();
                    let action = format!(
                        "both writable: left for an operator (baton takeover resume|abort {}){}",
                        self.report.id,
                        if diff.is_empty() { String::new() } else { format!("; {}", diff.join("; ")) }
                    );
                    Ok(self.close(mode, last_phase, found, action, Status::NeedsOperator).await)
                }
                RecoverMode::Resume => {
                    let status = self.split_resolve(t, true).await;
                    Ok(self
                        .close(mode, last_phase, found, format!("both writable: {old} fenced, {d} kept"), status)
                        .await)
                }
                RecoverMode::Abort => {
                    let status = self.split_resolve(t, false).await;
                    Ok(self
                        .close(mode, last_phase, found, format!("both writable: {d} fenced, {old} kept"), status)
                        .await)
                }
            },
        }
    }

    /// After promotion: move siblings still under the old master, run the post-promotion hooks
    /// the journal does not show, repoint the old master, run post_takeover hooks.
    async fn finish_forward(&mut self, t: &Target, oi: &crate::topology::Instance) -> Status {
        use Phase::*;
        self.hooks_may_have_run = self.report.in_progress.filter(|p| matches!(p, PostPromoteHooks | PostTakeoverHooks));
        let journaled = |p: Phase| self.report.phases.iter().any(|r| r.name == p && r.outcome == Outcome::Ok);
        let (post_promote, post_takeover) = (!journaled(PostPromoteHooks), !journaled(PostTakeoverHooks));
        if let Err(e) = self.step(RelocateSiblings, async |r: &mut Run| r.relocate_siblings(t).await).await {
            self.report.errors.push(e.to_string());
        }
        let d = &t.designated;
        // The fence held if the old master's position is where the new master has it.
        let mut fenced = None;
        if oi.source() != Some(d) {
            match ops::own_position(self.conn(), &oi.key).await {
                Ok(p) => fenced = Some(p),
                Err(e) => self.report.errors.push(format!("recover: {e}")),
            }
        } else {
            self.report.old_master_repointed = true;
        }
        self.after_promotion(t, fenced.as_ref(), post_promote, post_takeover).await;
        // A write the old master took that the new one lacks is reported, never silently dropped.
        if let (Some(o), Some(n)) = (t.cluster.instance(&t.master), t.cluster.instance(d)) {
            if let Some(missing) = o.gtid.missing_from(&n.gtid) {
                self.report.errors.push(format!("{} has transactions {d} lacks: {missing}", t.master));
            }
        }
        if self.report.errors.is_empty() {
            Status::Promoted
        } else {
            Status::PromotedWithErrors
        }
    }

    /// Two writable masters. Forward (resume): fence the old master and finish towards the
    /// designated replica. Backward (abort): fence the designated replica and undo towards the old
    /// master. The fenced side is repointed below the other unless it has transactions the other
    /// lacks (then it stays fenced and the report says what it has).
    async fn split_resolve(&mut self, t: Target, forward: bool) -> Status {
        let (loser, winner) = if forward { (&t.master, &t.designated) } else { (&t.designated, &t.master) };
        let lock_wait = self.cfg().takeover.fence_lock_wait_s;
        let start = Instant::now();
        match ops::set_read_only(self.conn(), loser, true, lock_wait).await {
            Ok(op) => {
                self.ops.push(op);
                self.record(Phase::Fence, start, Outcome::Ok, format!("{loser} fenced"));
            }
            Err(e) => {
                self.report.errors.push(format!("recover: fencing {loser}: {e}"));
                self.record(Phase::Fence, start, Outcome::Failed, String::new());
                return Status::Failed;
            }
        }
        // Fresh positions, after the fence, read from each server itself (the two are separate
        // trees: one discovery would not see both).
        let (l, w) = (crate::mysql::probe(self.conn(), loser).await, crate::mysql::probe(self.conn(), winner).await);
        let lacks = match (l, w) {
            (Ok(l), Ok(w)) => l.gtid.missing_from(&w.gtid),
            (Err(e), _) | (_, Err(e)) => {
                self.report.errors.push(format!("recover: {e}"));
                return Status::Failed;
            }
        };
        if let Some(m) = lacks {
            self.report.errors.push(format!(
                "{loser} has transactions {winner} lacks ({m}): left fenced and not repointed; reconcile them by hand"
            ));
            // Forward: the new master runs and the old one holds extra transactions to reconcile.
            // Backward: refusing to throw the new master's transactions away leaves it unsettled.
            return if forward { Status::PromotedWithErrors } else { Status::NeedsOperator };
        }
        if forward {
            self.promoted = true;
            self.report.new_master = Some(winner.to_string());
            let fenced = match ops::own_position(self.conn(), loser).await {
                Ok(p) => p,
                Err(e) => {
                    self.report.errors.push(format!("recover: {e}"));
                    return Status::PromotedWithErrors;
                }
            };
            if let Err(e) = self.step(Phase::RelocateSiblings, async |r: &mut Run| r.relocate_siblings(&t).await).await
            {
                self.report.errors.push(e.to_string());
            }
            self.after_promotion(&t, Some(&fenced), false, false).await;
            if self.report.errors.is_empty() {
                Status::Promoted
            } else {
                Status::PromotedWithErrors
            }
        } else {
            // Undo towards the old master: the fenced designated and the replicas below it go back.
            let mut plan = UndoPlan { scripts: std::mem::take(&mut self.report.undo.scripts), ..Default::default() };
            plan.replica_back(loser, winner, true, &t.cluster, Phase::Promote);
            for m in t.cluster.members.iter().filter(|m| m.source.as_ref() == Some(loser) && m.key != *winner) {
                plan.replica_back(&m.key, winner, true, &t.cluster, Phase::RelocateSiblings);
            }
            self.report.undo = plan;
            if self.rollback(true).await {
                Status::RolledBack
            } else {
                Status::Failed
            }
        }
    }

    /// Records the settlement, releases the locks, journals the final state.
    async fn close(
        mut self,
        mode: RecoverMode,
        last_phase: Option<Phase>,
        found: String,
        action: String,
        status: Status,
    ) -> TakeoverReport {
        warn!(id = %self.report.id, ?last_phase, %found, %action, status = status.as_str(), "interrupted takeover settled");
        let found = match self.report.in_progress.take() {
            Some(p) => format!("{found} (the journal had {p} in progress)"),
            None => found,
        };
        self.report.recoveries.push(Recovery {
            at: crate::store::now_unix_ms(),
            mode: mode.name().into(),
            last_phase,
            found,
            action,
            by: Some(super::Owner::current()),
        });
        self.report.status = status;
        if status == Status::NeedsOperator {
            // The store lock stays with the takeover: nothing else may start on this cluster.
            self.release_server_lock().await;
            self.lock = None;
            self.journal_or_report();
            return self.report;
        }
        self.finish().await
    }
}

/// The undo plan of an interrupted takeover that had not promoted, from the live topology: the old
/// master writable if it is fenced, every replica found below the designated back below the old
/// master, the designated too if it no longer replicates from it (or stopped again if the
/// takeover had started its replication); and, from the journal, what the hooks wrote.
fn undo_from_live(
    journaled: &UndoPlan,
    t: &Target,
    fenced: bool,
    moved: &[InstanceKey],
    designated_source: Option<&InstanceKey>,
) -> UndoPlan {
    let mut plan = UndoPlan { scripts: journaled.scripts.clone(), ..Default::default() };
    if fenced {
        plan.unfence(&t.master);
    }
    for s in moved {
        plan.replica_back(s, &t.master, true, &t.cluster, Phase::RelocateSiblings);
    }
    if designated_source != Some(&t.master) {
        plan.replica_back(&t.designated, &t.master, true, &t.cluster, Phase::Promote);
        // The promotion switched its master-side semi-sync on (as the old master had it).
        let master_side = |k: &InstanceKey| {
            t.cluster.instance(k).and_then(|i| i.semi_sync.as_ref()).is_some_and(|s| s.master_enabled)
        };
        if master_side(&t.designated) && master_side(&t.master) {
            let back = crate::mysql::SemiSyncChange { master: Some(false), ..Default::default() };
            plan.semi_sync_back(&t.designated, back, Phase::Promote);
        }
    } else if journaled.replicas.iter().any(|s| s.instance == t.designated && s.action == UndoAction::StopReplication) {
        plan.stop_again(&t.designated, Phase::CheckDesignated);
    }
    plan
}
