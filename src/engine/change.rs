//! The phases that change the topology: `relocate_siblings`, `fence`, `catch_up`, `promote`,
//! `repoint_old_master`, and the replication specs they use.

use super::*;

impl Run {
    pub(super) fn replication_spec(&self, to: &InstanceKey, position: SourcePosition, tls: bool) -> SourceSpec {
        let r = &self.cfg().replication;
        SourceSpec {
            host: to.host.clone(),
            port: to.port,
            user: r.user.clone(),
            password: r.password.clone(),
            position,
            tls: tls || r.tls,
        }
    }

    /// How the demoted master replicates from the new one, and whether its replication starts.
    pub(super) fn old_master_spec(&self, t: &Target) -> (SourceSpec, bool) {
        let position = match t.cluster.instance(&t.master).map(|i| i.flavor) {
            Some(Flavor::MySql) => SourcePosition::AutoPosition,
            _ => SourcePosition::GtidCurrentPos, // its own writes are in gtid_binlog_pos, not gtid_slave_pos
        };
        let tls = rollback::uses_tls(&t.cluster, &t.designated);
        (self.replication_spec(&t.designated, position, tls), self.report.start_old_master_replication)
    }

    pub(super) async fn release_server_lock(&mut self) {
        if let Some(l) = self.server_lock.take() {
            l.release(self.engine.connector.read_timeout()).await;
        }
    }

    /// Semi-sync for the new master: the master side as the old master had it (on, its timeout and
    /// wait point). None when the old master did not run semi-sync.
    pub(super) fn semi_sync_for_new_master(t: &Target) -> Option<crate::mysql::SemiSyncChange> {
        let ms = t.cluster.instance(&t.master)?.semi_sync.as_ref().filter(|s| s.master_enabled)?;
        Some(crate::mysql::SemiSyncChange {
            master: Some(true),
            replica: None,
            timeout_ms: Some(ms.master_timeout_ms).filter(|t| *t > 0),
            wait_point: Some(ms.wait_point.clone()).filter(|w| !w.is_empty()),
        })
    }

    /// Semi-sync for the demoted master: master side off, replica side on (it acknowledges the
    /// new master once its replication starts). None when it did not run semi-sync.
    pub(super) fn semi_sync_for_old_master(t: &Target) -> Option<crate::mysql::SemiSyncChange> {
        t.cluster.instance(&t.master)?.semi_sync.as_ref().filter(|s| s.master_enabled)?;
        Some(crate::mysql::SemiSyncChange { master: Some(false), replica: Some(true), ..Default::default() })
    }

    /// The position mode `key` uses on a new source, as an ordinary replica.
    pub(super) fn replica_position(t: &Target, key: &InstanceKey) -> SourcePosition {
        rollback::replica_position(t.cluster.instance(key).map(|i| i.flavor))
    }

    /// The designated replica's siblings that relocation moves: the reachable ones (an
    /// unreachable one is downtimed, or check_master refused: it is left behind).
    pub(super) fn siblings_to_move(&self, t: &Target) -> Vec<InstanceKey> {
        let c = &t.cluster;
        c.replicas_of(&t.master)
            .iter()
            .map(|m| m.key.clone())
            .filter(|k| *k != t.designated && c.instance(k).is_some())
            .collect()
    }

    /// Moves the designated replica's siblings below it while the master is still writable, then
    /// lets the designated replica catch up with the live master, so that the wait inside the
    /// write-unavailable window covers only the last few transactions, whatever the cluster's size:
    ///
    /// 1. every sibling is stopped and says what it executed (all at once, bounded);
    /// 2. the designated replica waits, in its server, once, until it has executed all of that;
    /// 3. every sibling is pointed at it with GTID and started (all at once);
    /// 4. the siblings settle: each executes what the designated replica has (a slow one is a
    ///    warning, not a failure), so their new dump threads are not starting inside the window;
    /// 5. the designated replica executes the master's current position within
    ///    `reasonable_lag_s`, or the takeover stops here, before the fence.
    pub(super) async fn relocate_siblings(&mut self, t: &Target) -> PhaseResult {
        let phase = Phase::RelocateSiblings;
        let sql = |source| TakeoverError::Sql { phase, source };
        let (c, d) = (&t.cluster, &t.designated);
        let to_move = self.siblings_to_move(t);
        for s in c.replicas_of(&t.master).iter().filter(|m| m.key != *d && c.instance(&m.key).is_none()) {
            let w = format!("{} is downtimed and unreachable: left behind, not relocated", s.key);
            warn!("{w}");
            self.report.warnings.push(w);
        }
        let dialect = self.conn().dialect(d).await.map_err(sql)?;
        let limit = Duration::from_millis(self.cfg().takeover.catchup_timeout_ms);
        if !to_move.is_empty() {
            // 1. Stopped, with what each executed. One that failed may have been stopped: the
            // undo plan moves every one back.
            let conn = self.conn();
            let stopped = at_once(
                to_move
                    .iter()
                    .map(|s| async move {
                        let op = ops::stop_replication(conn, s).await?;
                        Ok::<_, SqlError>((op, ops::own_position_as_replica(conn, s).await?))
                    })
                    .collect(),
            )
            .await;
            let mut positions = Vec::new();
            let mut first_err = None;
            for r in stopped {
                match r {
                    Ok((op, pos)) => {
                        self.ops.push(op);
                        positions.push(pos);
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(source) = first_err {
                return Err(sql(source));
            }
            // 2. One wait for all of it.
            let mariadb = dialect.flavor() == Flavor::MariaDb;
            let all = crate::topology::gtid::union_text(mariadb, &positions).map_err(|e| {
                sql(SqlError::Unexpected {
                    instance: d.clone(),
                    what: "the siblings' positions".into(),
                    detail: e.to_string(),
                })
            })?;
            let all = all.replace('\n', "");
            if !all.is_empty() {
                self.ops.push(ops::wait_for_gtid(self.conn(), dialect.as_ref(), d, &all, limit).await.map_err(sql)?);
            }
            // 3. Below the designated replica.
            let specs: Vec<SourceSpec> = to_move
                .iter()
                .map(|s| self.replication_spec(d, Run::replica_position(t, s), rollback::uses_tls(c, s)))
                .collect();
            let conn = self.conn();
            let moved =
                at_once(to_move.iter().zip(&specs).map(|(s, spec)| ops::repoint(conn, s, spec, true)).collect()).await;
            let mut first_err = None;
            for (s, r) in to_move.iter().zip(moved) {
                match r {
                    Ok(op) => {
                        self.ops.push(op);
                        self.report.siblings_moved.push(s.to_string());
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(source) = first_err {
                self.detail = format!("moved below {d}: {}", self.report.siblings_moved.join(", "));
                return Err(sql(source));
            }
            // 4. Settled: each has what the designated replica has now.
            let now = ops::own_position(self.conn(), d).await.map_err(sql)?.gtid;
            let settle = Duration::from_secs(self.cfg().takeover.reasonable_lag_s);
            let conn = self.conn();
            let now = &now;
            let settled = at_once(
                to_move
                    .iter()
                    .map(|s| async move {
                        let sd = conn.dialect(s).await?;
                        ops::wait_for_gtid(conn, sd.as_ref(), s, now, settle).await
                    })
                    .collect(),
            )
            .await;
            for (s, r) in to_move.iter().zip(settled) {
                match r {
                    Ok(op) => self.ops.push(op),
                    Err(e) => {
                        let w = format!("{s} had not caught up with {d} before the fence: {e}");
                        warn!("{w}");
                        self.report.warnings.push(w);
                    }
                }
            }
        }
        // 5. Caught up with the live master, before the fence (a recovery that finishes a
        // promoted takeover moves leftover siblings only: the designated is the master already).
        // What the designated had executed is read first: the catch-up inside the window then
        // needs one round trip, not two.
        if !self.promoted {
            if dialect.flavor() == Flavor::MariaDb {
                let had = ops::executed_gtid(self.conn(), dialect.as_ref(), d).await.map_err(sql)?;
                self.designated_had = Some((d.clone(), had));
            }
            let live = ops::own_position(self.conn(), &t.master).await.map_err(sql)?;
            let keep_up = Duration::from_secs(self.cfg().takeover.reasonable_lag_s);
            match self.wait_executed_within(&t.cluster, d, &live, keep_up).await {
                Ok(op) => self.ops.push(op),
                Err(e) => {
                    return Err(TakeoverError::refused(
                        phase,
                        "designated_keeps_up",
                        Some(d),
                        format!(
                            "{d} did not execute the master's current position within reasonable_lag_s ({} s) \
                             before the fence: {e}",
                            keep_up.as_secs()
                        ),
                    ))
                }
            }
        }
        self.detail = if to_move.is_empty() {
            format!("no siblings; {d} caught up with the master")
        } else {
            format!("moved below {d}: {}; {d} caught up with the master", keys(&to_move))
        };
        Ok(())
    }

    /// read_only on the master, with a bounded lock wait, and its final position read in the same
    /// round trip; optionally kill client connections.
    pub(super) async fn fence(&mut self, t: &Target) -> Result<OwnPosition, TakeoverError> {
        let phase = Phase::Fence;
        let master = &t.master;
        let lock_wait = self.cfg().takeover.fence_lock_wait_s;
        self.fenced_at = Some(Instant::now());
        let semi_sync = t.cluster.instance(master).and_then(|i| i.semi_sync.as_ref()).is_some_and(|s| s.master_enabled);
        let (op, position) = ops::fence(self.conn(), master, lock_wait).await.map_err(|source| {
            // On a semi-sync master, the usual lock to wait behind is a commit waiting for an
            // acknowledgement no replica sends.
            if semi_sync {
                self.detail = format!(
                    "{master} runs semi-sync: a commit waiting for a replica's acknowledgement holds the lock \
                     read_only waits for (fence_lock_wait_s = {lock_wait}); check that its semi-sync replicas \
                     acknowledge (Rpl_semi_sync_master_clients, _status)"
                );
            }
            TakeoverError::Sql { phase, source }
        })?;
        self.ops.push(op);
        if let Some(grace) = self.cfg().takeover.kill_connections_after_ms {
            tokio::time::sleep(Duration::from_millis(grace)).await;
            let user = self.cfg().topology.user.clone();
            let op = ops::kill_client_connections(self.conn(), master, &user)
                .await
                .map_err(|source| TakeoverError::Sql { phase, source })?;
            self.detail = format!("killed {} client connections; ", op.statements.len().saturating_sub(1));
            self.ops.push(op);
        }
        self.detail.push_str(&format!("{master} is read-only at {}", shown_position(&position)));
        Ok(position)
    }

    /// Waits, in the designated replica's server, until it has executed the fenced master's final
    /// position (read by the fence).
    pub(super) async fn catch_up(&mut self, t: &Target, pos: &OwnPosition) -> PhaseResult {
        let phase = Phase::CatchUp;
        let d = &t.designated;
        let op = self.wait_executed(&t.cluster, d, pos).await.map_err(|source| TakeoverError::Sql { phase, source })?;
        self.ops.push(op);
        self.detail = format!("{d} executed {}", shown_position(pos));
        Ok(())
    }

    /// Waits, in `d`'s server, until it has executed `pos` of the master: by GTID when it
    /// replicates with GTID (or no coordinates are known), else by binlog coordinates.
    pub(super) async fn wait_executed(
        &self,
        c: &Cluster,
        d: &InstanceKey,
        pos: &OwnPosition,
    ) -> Result<OpRecord, SqlError> {
        self.wait_executed_within(c, d, pos, Duration::from_millis(self.cfg().takeover.catchup_timeout_ms)).await
    }

    /// `wait_executed`, bounded by `limit`. What the designated replica had executed before the
    /// fence (read then) spares a round trip inside the window.
    pub(super) async fn wait_executed_within(
        &self,
        c: &Cluster,
        d: &InstanceKey,
        pos: &OwnPosition,
        limit: Duration,
    ) -> Result<OpRecord, SqlError> {
        let dialect = self.conn().dialect(d).await?;
        let gtid = c.instance(d).and_then(|i| i.replication.as_ref()).is_some_and(|r| r.gtid_mode != GtidMode::No);
        let had = self.designated_had.as_ref().filter(|(k, _)| k == d).map(|(_, had)| had.as_str());
        match (&pos.coordinates, gtid) {
            (Some(coords), false) => ops::wait_for_coordinates(self.conn(), dialect.as_ref(), d, coords, limit).await,
            _ => ops::wait_for_gtid_after(self.conn(), dialect.as_ref(), d, &pos.gtid, had, limit).await,
        }
    }

    /// Replication off and forgotten on the designated replica, then read_only off.
    pub(super) async fn promote(&mut self, t: &Target) -> PhaseResult {
        let phase = Phase::Promote;
        let d = &t.designated;
        let sql = |source| TakeoverError::Sql { phase, source };
        // One round trip. Semi-sync is carried over before the new master takes a write: no commit
        // on it is acknowledged with less durability than the old master gave.
        let semi_sync = Run::semi_sync_for_new_master(t);
        let lock_wait = self.cfg().takeover.fence_lock_wait_s;
        self.ops.push(ops::promote(self.conn(), d, semi_sync.as_ref(), lock_wait).await.map_err(sql)?);
        self.promoted = true;
        self.report.new_master = Some(d.to_string());
        self.detail = format!("{d} is the master and writable");
        if let Some(fenced_at) = self.fenced_at {
            let window = fenced_at.elapsed().as_secs_f64() * 1000.0;
            self.report.write_unavailable_ms = Some(window);
            self.detail.push_str(&format!("; writes were unavailable for {window:.1} ms"));
        }
        Ok(())
    }

    /// The old master replicates from the new one (stopped unless auto / start_replication), and
    /// its position must not have moved while fenced.
    pub(super) async fn repoint_old_master(&mut self, t: &Target, fenced: &OwnPosition) -> PhaseResult {
        let phase = Phase::RepointOldMaster;
        let (master, d) = (&t.master, &t.designated);
        let sql = |source| TakeoverError::Sql { phase, source };
        let now = ops::own_position(self.conn(), master).await.map_err(sql)?;
        let moved = now.gtid != fenced.gtid;
        let (spec, start) = self.old_master_spec(t);
        // Before its replication starts, so that its IO thread acknowledges from the first event.
        if let Some(change) = Run::semi_sync_for_old_master(t) {
            self.ops.push(ops::set_semi_sync(self.conn(), master, &change).await.map_err(sql)?);
        }
        self.ops.push(ops::repoint(self.conn(), master, &spec, start).await.map_err(sql)?);
        self.report.old_master_repointed = true;
        self.detail = format!("{master} replicates from {d}{}", if start { " (started)" } else { " (not started)" });
        if moved {
            let msg = format!(
                "{master}: a write got through the fence: its position moved from {} to {} after read_only; \
                 those transactions are not on {d}",
                fenced.gtid, now.gtid
            );
            error!("{msg}");
            return Err(TakeoverError::refused(phase, "fence_held", Some(master), msg));
        }
        Ok(())
    }
}

/// Instances worked on at once by one phase (relocation, and the rollback's moves back).
pub(super) const AT_ONCE: usize = 16;

/// Runs `work`, at most `AT_ONCE` at a time; the results in the same order.
pub(super) async fn at_once<T, Fut>(work: Vec<Fut>) -> Vec<T>
where
    Fut: std::future::Future<Output = T>,
{
    use futures::StreamExt;
    futures::stream::iter(work).buffered(AT_ONCE).collect().await
}

/// A position as the phases' details show it.
fn shown_position(pos: &OwnPosition) -> String {
    match (&pos.coordinates, pos.gtid.is_empty()) {
        (_, false) => pos.gtid.clone(),
        (Some(c), true) => c.to_string(),
        (None, true) => "an empty position".into(),
    }
}
