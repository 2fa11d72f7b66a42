//! Undoing a takeover that failed before promotion, from an explicit **undo plan**: what to
//! restore, on which instance, in which order.
//!
//! The plan is written before the change it undoes (it is part of the write-ahead journal record),
//! by the running takeover as it goes, or by recovery from the live topology and the journal. It
//! runs in three stages:
//!
//! 1. `writable`: the fenced old master takes writes again (first: writes resume);
//! 2. `replicas`: the replicas go back to where they were, all at once;
//! 3. `scripts`: what hooks wrote (`scripts.allow_writes`), newest first.
//!
//! The report shows the plan (`undo`) and what was done (the `rollback` phase).

use serde::{Deserialize, Serialize};

use super::*;

/// One thing to restore on one instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UndoStep {
    pub instance: InstanceKey,
    pub action: UndoAction,
    /// What made the change: a phase, or the hook (`file: phase`).
    pub because: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum UndoAction {
    ReadOnly {
        on: bool,
    },
    StopReplication,
    StartReplication,
    /// Replicate from `source` again (by GTID), started or not.
    Repoint {
        source: InstanceKey,
        start: bool,
        #[serde(default)]
        tls: bool,
        #[serde(default)]
        flavor: Option<Flavor>,
    },
    /// It cannot be undone (killed connections stay killed); the rollback says so.
    Impossible {
        why: String,
    },
    /// Semi-sync settings back as they were.
    SemiSync {
        change: crate::mysql::SemiSyncChange,
    },
}

/// The undo plan, in the order it runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UndoPlan {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable: Vec<UndoStep>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<UndoStep>,
    /// Newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<UndoStep>,
}

impl UndoPlan {
    pub fn is_empty(&self) -> bool {
        self.writable.is_empty() && self.replicas.is_empty() && self.scripts.is_empty()
    }

    /// The fenced master `m` becomes writable again.
    pub fn unfence(&mut self, m: &InstanceKey) {
        if !self.writable.iter().any(|s| s.instance == *m) {
            self.writable.push(UndoStep {
                instance: m.clone(),
                action: UndoAction::ReadOnly { on: false },
                because: Phase::Fence.name().into(),
            });
        }
    }

    /// `r` goes back to replicating from `source` (replacing any earlier step for `r`).
    pub fn replica_back(&mut self, r: &InstanceKey, source: &InstanceKey, start: bool, c: &Cluster, because: Phase) {
        self.replicas.retain(|s| s.instance != *r);
        self.replicas.push(UndoStep {
            instance: r.clone(),
            action: UndoAction::Repoint {
                source: source.clone(),
                start,
                tls: uses_tls(c, r),
                flavor: c.instance(r).map(|i| i.flavor),
            },
            because: because.name().into(),
        });
    }

    /// Replication the takeover started on `r` is stopped again.
    pub fn stop_again(&mut self, r: &InstanceKey, because: Phase) {
        self.replicas.retain(|s| s.instance != *r);
        self.replicas.push(UndoStep {
            instance: r.clone(),
            action: UndoAction::StopReplication,
            because: because.name().into(),
        });
    }

    /// `r`'s semi-sync back as `change` says (after the steps already planned for it).
    pub fn semi_sync_back(&mut self, r: &InstanceKey, change: crate::mysql::SemiSyncChange, because: Phase) {
        self.replicas.push(UndoStep {
            instance: r.clone(),
            action: UndoAction::SemiSync { change },
            because: because.name().into(),
        });
    }

    /// A hook's write, undone before the older ones.
    pub fn script(&mut self, op: &ScriptOp, c: &Cluster) {
        let k = &op.instance;
        let action = match &op.undo {
            Undo::Nothing => return,
            Undo::ReadOnly { on } => UndoAction::ReadOnly { on: *on },
            Undo::StopReplication => UndoAction::StopReplication,
            Undo::StartReplication => UndoAction::StartReplication,
            Undo::Repoint { source, start } => UndoAction::Repoint {
                source: source.clone(),
                start: *start,
                tls: uses_tls(c, k),
                flavor: c.instance(k).map(|i| i.flavor),
            },
            Undo::Impossible { why } => UndoAction::Impossible { why: why.clone() },
        };
        let because = format!("{} by {}", op.primitive, op.by);
        self.scripts.insert(0, UndoStep { instance: k.clone(), action, because });
    }

    /// One line per step, in order (for the report and the logs).
    pub fn describe(&self) -> Vec<String> {
        self.writable.iter().chain(&self.replicas).chain(&self.scripts).map(UndoStep::describe).collect()
    }
}

impl UndoStep {
    pub fn describe(&self) -> String {
        let what = match &self.action {
            UndoAction::ReadOnly { on: false } => "writable again".to_string(),
            UndoAction::ReadOnly { on: true } => "read-only again".to_string(),
            UndoAction::StopReplication => "replication stopped again".to_string(),
            UndoAction::StartReplication => "replication started again".to_string(),
            UndoAction::Repoint { source, start, .. } => {
                format!("replicates from {source} again{}", if *start { "" } else { " (not started)" })
            }
            UndoAction::Impossible { why } => format!("cannot be undone: {why}"),
            UndoAction::SemiSync { change } => {
                let side = |b: Option<bool>| b.map(|b| if b { "on" } else { "off" });
                let mut parts = Vec::new();
                if let Some(m) = side(change.master) {
                    parts.push(format!("master side {m}"));
                }
                if let Some(r) = side(change.replica) {
                    parts.push(format!("replica side {r}"));
                }
                format!("semi-sync back: {}", parts.join(", "))
            }
        };
        format!("{}: {what} (undoes {})", self.instance, self.because)
    }
}

/// Whether `key` replicates over TLS now (a replica moved back keeps it).
pub(super) fn uses_tls(c: &Cluster, key: &InstanceKey) -> bool {
    c.instance(key).and_then(|i| i.replication.as_ref()).is_some_and(|r| r.ssl)
}

/// The position mode an ordinary replica of this flavor uses on a new source.
pub(super) fn replica_position(flavor: Option<Flavor>) -> SourcePosition {
    match flavor {
        Some(Flavor::MySql) => SourcePosition::AutoPosition,
        _ => SourcePosition::GtidSlavePos,
    }
}

impl Run {
    /// Runs one undo step.
    async fn undo_step(&self, step: &UndoStep) -> Result<OpRecord, SqlError> {
        let k = &step.instance;
        match &step.action {
            UndoAction::ReadOnly { on } => {
                ops::set_read_only(self.conn(), k, *on, self.cfg().takeover.fence_lock_wait_s).await
            }
            UndoAction::StopReplication => ops::stop_replication(self.conn(), k).await,
            UndoAction::StartReplication => ops::start_replication(self.conn(), k).await,
            UndoAction::Repoint { source, start, tls, flavor } => {
                let spec = self.replication_spec(source, replica_position(*flavor), *tls);
                ops::repoint(self.conn(), k, &spec, *start).await
            }
            UndoAction::SemiSync { change } => ops::set_semi_sync(self.conn(), k, change).await,
            UndoAction::Impossible { why } => {
                Err(SqlError::Unexpected { instance: k.clone(), what: "undo".into(), detail: why.clone() })
            }
        }
    }

    /// `undo_step`, tried again while the instance cannot be reached, until
    /// `takeover.unfence_retry_ms` has passed (each try bounded by the connect and read timeouts).
    async fn undo_step_retrying(&self, step: &UndoStep) -> Result<OpRecord, SqlError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg().takeover.unfence_retry_ms);
        let mut pause = Duration::from_millis(50);
        loop {
            match self.undo_step(step).await {
                Err(e) if (e.is_unreachable() || e.connection_lost()) && Instant::now() + pause < deadline => {
                    warn!(instance = %step.instance, error = %e, "cannot reach it to undo the fence yet: trying again");
                    // The server cannot wait for Baton here: it is out of reach.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }

    /// Runs the undo plan (see the module). True when all of it was undone. Nothing to undo after
    /// a refusal is not a rollback; after a failed change it is still recorded as one.
    pub(super) async fn rollback(&mut self, always_record: bool) -> bool {
        if self.report.undo.is_empty() && !always_record {
            return true;
        }
        if self.deposed || !self.engine.may_act() {
            // The leader undoes it, from the journal's undo plan and the live topology.
            self.deposed = true;
            self.report.errors.push("rollback: not run here: this node no longer leads; the leader settles it".into());
            return false;
        }
        let start = Instant::now();
        self.emit(PhaseEvent::Started { id: self.report.id.clone(), phase: Phase::Rollback });
        let plan = self.report.undo.clone();
        let (mut done, mut failures) = (Vec::new(), Vec::new());
        // 1. Writes resume on the old master. It may be unreachable for a moment (a network blip
        // right after the fence): tried again until `unfence_retry_ms` has passed.
        for step in &plan.writable {
            match self.undo_step_retrying(step).await {
                Ok(op) => {
                    self.ops.push(op);
                    if let Some(fenced_at) = self.fenced_at {
                        // Writes were unavailable from the fence until the old master took them again.
                        self.report.write_unavailable_ms = Some(fenced_at.elapsed().as_secs_f64() * 1000.0);
                    }
                    done.push(step.describe());
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        // 2. The replicas, all at once (bounded).
        let results = super::change::at_once(plan.replicas.iter().map(|s| self.undo_step(s)).collect()).await;
        let designated = self.report.designated.clone().unwrap_or_default();
        for (step, r) in plan.replicas.iter().zip(results) {
            let s = &step.instance;
            match r {
                Ok(op) => {
                    self.ops.push(op);
                    done.push(step.describe());
                }
                // A sibling that went down meanwhile cannot be moved back now; that does not make
                // the rollback a failure (writes go to the old master again), but it is reported.
                // A sibling that is up but does not answer (STOP SLAVE blocked behind a hung
                // source) is a failure: it is left below the designated replica, and said so.
                Err(e) if e.is_down() && s.to_string() != designated => {
                    let w = format!("{s} is unreachable and was not undone ({}): check it when it returns ({e})", step.describe());
                    warn!("{w}");
                    self.report.warnings.push(w);
                }
                Err(e) if s.to_string() != designated => failures.push(format!(
                    "{e} ({s} may still replicate from {designated}; if that source was hung, the STOP SLAVE sent to {s} \
                     runs when it resumes: then {})",
                    step.describe()
                )),
                Err(e) => failures.push(e.to_string()),
            }
        }
        // 3. What the hooks wrote, newest first.
        for step in &plan.scripts {
            if let UndoAction::Impossible { why } = &step.action {
                let w = format!("cannot undo {} on {}: {why}", step.because, step.instance);
                warn!("{w}");
                self.report.warnings.push(w);
                continue;
            }
            match self.undo_step(step).await {
                Ok(op) => {
                    self.ops.push(op);
                    done.push(step.describe());
                }
                Err(e) => failures.push(format!("could not undo {} on {}: {e}", step.because, step.instance)),
            }
        }
        let ok = failures.is_empty();
        self.rolled_back.extend(done.iter().cloned());
        let detail = if ok { done.join("; ") } else { format!("{}; FAILED: {}", done.join("; "), failures.join("; ")) };
        for f in &failures {
            self.report.errors.push(format!("rollback: {f}"));
        }
        self.record(Phase::Rollback, start, if ok { Outcome::Ok } else { Outcome::Failed }, detail);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(p: u16) -> InstanceKey {
        InstanceKey::new("127.0.0.1", p)
    }

    fn op(primitive: &str, on: u16, undo: Undo) -> ScriptOp {
        ScriptOp {
            by: "h.lua: pre_fence".into(),
            primitive: primitive.into(),
            instance: k(on),
            statements: vec![],
            ms: 0.0,
            error: None,
            undo,
        }
    }

    #[test]
    fn plan_orders_writable_first_then_replicas_then_hook_writes_newest_first() {
        let c = Cluster { name: "c".into(), alias: None, master: None, members: vec![], problems: vec![] };
        let mut p = UndoPlan::default();
        p.stop_again(&k(2), Phase::CheckDesignated);
        p.script(&op("read_only", 3, Undo::ReadOnly { on: false }), &c);
        p.replica_back(&k(3), &k(1), true, &c, Phase::RelocateSiblings);
        p.unfence(&k(1));
        p.unfence(&k(1));
        p.script(&op("stop_replication", 4, Undo::StartReplication), &c);
        p.script(&op("read_only", 4, Undo::Nothing), &c);
        // Promotion replaces "stop again" on the designated by "replicate again", and plans its
        // semi-sync back after it.
        p.replica_back(&k(2), &k(1), true, &c, Phase::Promote);
        p.semi_sync_back(
            &k(2),
            crate::mysql::SemiSyncChange { master: Some(false), ..Default::default() },
            Phase::Promote,
        );
        let lines = p.describe();
        assert_eq!(
            lines,
            vec![
                "127.0.0.1:1: writable again (undoes fence)",
                "127.0.0.1:3: replicates from 127.0.0.1:1 again (undoes relocate_siblings)",
                "127.0.0.1:2: replicates from 127.0.0.1:1 again (undoes promote)",
                "127.0.0.1:2: semi-sync back: master side off (undoes promote)",
                "127.0.0.1:4: replication started again (undoes stop_replication by h.lua: pre_fence)",
                "127.0.0.1:3: writable again (undoes read_only by h.lua: pre_fence)",
            ]
        );
        let back: UndoPlan = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert!(UndoPlan::default().is_empty() && !p.is_empty());
    }
}
