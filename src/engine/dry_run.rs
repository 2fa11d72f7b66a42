//! A dry run's plan: the statements each later phase would run, per instance, and the hooks
//! that would be called (not called).

use super::*;

impl Run {
    /// Dry run: the steps a takeover would take from here, each with the statements it would run
    /// (positions known only at run time appear as `<...>`), and the hooks that would be called.
    pub(super) async fn plan(&mut self, t: &Target) -> Result<Plan, TakeoverError> {
        let phase = Phase::CheckDesignated;
        let sql = |source| TakeoverError::Sql { phase, source };
        let (master, d, c) = (t.master.clone(), t.designated.clone(), &t.cluster);
        let limit = self.cfg().takeover.catchup_timeout_ms as f64 / 1000.0;
        let lock_wait = self.cfg().takeover.fence_lock_wait_s;
        let shown = |v: Vec<crate::mysql::Statement>| v.into_iter().map(|s| s.shown).collect::<Vec<_>>();
        let mut steps = Vec::new();
        let mut step = |phase: Phase, instance: &InstanceKey, action: String, statements: Vec<String>| {
            steps.push(PlannedStep { phase, instance: instance.to_string(), action, statements })
        };
        let dd = self.conn().dialect(&d).await.map_err(sql)?;
        let md = self.conn().dialect(&master).await.map_err(sql)?;
        let stopped = c
            .instance(&d)
            .and_then(|i| i.replication.as_ref())
            .is_some_and(|r| !r.io_thread.running() && !r.sql_thread.running());
        if stopped {
            step(
                Phase::CheckDesignated,
                &d,
                "start replication and wait until the master's position is executed".into(),
                vec![dd.start_replication().shown, dd.wait_for_gtid("<the master's position>", limit).shown],
            );
        }
        for s in &self.siblings_to_move(t) {
            let sd = self.conn().dialect(s).await.map_err(sql)?;
            step(Phase::RelocateSiblings, s, "stop replication".into(), vec![sd.stop_replication().shown]);
            step(
                Phase::RelocateSiblings,
                &d,
                format!("wait until it executed what {s} had"),
                vec![dd.wait_for_gtid(&format!("<gtid executed by {s}>"), limit).shown],
            );
            let spec = self.replication_spec(&d, Run::replica_position(t, s), rollback::uses_tls(c, s));
            step(
                Phase::RelocateSiblings,
                s,
                format!("replicate from {d}"),
                shown(ops::statements::repoint(sd.as_ref(), &spec, true))[1..].to_vec(),
            );
        }
        step(
            Phase::Fence,
            &master,
            "read_only on, and the position it stopped at".into(),
            shown(ops::statements::fence(md.as_ref(), lock_wait)),
        );
        if self.cfg().takeover.kill_connections_after_ms.is_some() {
            step(
                Phase::Fence,
                &master,
                "kill client connections".into(),
                vec![
                    md.client_connections(&self.cfg().topology.user).shown,
                    md.kill_connection(0).shown.replace(" 0", " <id>"),
                ],
            );
        }
        step(
            Phase::CatchUp,
            &d,
            "wait until the fenced master's position is executed".into(),
            vec![dd.wait_for_gtid("<the master's position after the fence>", limit).shown],
        );
        let promote =
            shown(ops::statements::promote(dd.as_ref(), Run::semi_sync_for_new_master(t).as_ref(), lock_wait));
        step(Phase::Promote, &d, "forget replication, read_only off".into(), promote);
        let (spec, start) = self.old_master_spec(t);
        let mut repoint = Run::semi_sync_for_old_master(t).map(|c| shown(md.set_semi_sync(&c))).unwrap_or_default();
        repoint.extend(shown(ops::statements::repoint(md.as_ref(), &spec, start)));
        step(
            Phase::RepointOldMaster,
            &master,
            format!("replicate from {d}{}", if start { "" } else { " (not started)" }),
            repoint,
        );
        let hooks = HookPhase::ALL.iter().map(|p| (p.name().to_string(), self.scripts.describe_hooks(*p))).collect();
        self.detail = format!("{} steps planned", steps.len());
        Ok(Plan { steps, hooks })
    }
}
