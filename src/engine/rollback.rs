//! Undoing a takeover that failed before promotion: the old master writable again first, then
//! the siblings and the designated replica back below it, then what hooks wrote (newest first).

use super::*;

impl Run {
    /// Undoes what the check phases did (starting the designated's replication) after a refusal.
    pub(super) async fn undo_preparation(&mut self) -> bool {
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
    pub(super) async fn undo_hook_writes(&mut self, done: &mut Vec<String>, failures: &mut Vec<String>) {
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
                Undo::ReadOnly { on } => {
                    ops::set_read_only(self.conn(), &k, *on, self.cfg().takeover.fence_lock_wait_s).await
                }
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
    pub(super) fn end_rollback(&mut self, start: Instant, done: Vec<String>, failures: Vec<String>) -> bool {
        let ok = failures.is_empty();
        self.rolled_back.extend(done.iter().cloned());
        let detail = if ok { done.join("; ") } else { format!("{}; FAILED: {}", done.join("; "), failures.join("; ")) };
        for f in &failures {
            self.report.errors.push(format!("rollback: {f}"));
        }
        self.record(Phase::Rollback, start, if ok { Outcome::Ok } else { Outcome::Failed }, detail);
        ok
    }

    /// Undoes the changes of a failed takeover before promotion: old master writable first (writes
    /// resume), then siblings and the designated replica back under it. True when all of it worked.
    pub(super) async fn rollback(&mut self) -> bool {
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
            let start =
                !(Some(s) == designated.as_ref() && self.started_designated_replication && !self.designated_reset);
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
