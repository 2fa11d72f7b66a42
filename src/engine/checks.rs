//! The phases that change nothing: `resolve` (discovery under the locks), `check_master`,
//! `choose_designated` (the policy or the built-in ordering), `check_designated`.

use super::*;

impl Run {
    /// A fresh live snapshot of the cluster named by the hint, and the cluster's takeover lock.
    pub(super) async fn resolve(&mut self) -> Result<Cluster, TakeoverError> {
        let phase = Phase::Resolve;
        let store = self.engine.store.clone();
        let discover = |run: &Run| {
            let (conn, cfg, store, hint) =
                (run.engine.connector.clone(), run.engine.cfg.clone(), store.clone(), run.req.cluster_hint.clone());
            async move {
                discovery::discover_hint(&conn, &cfg, store.as_ref(), &hint)
                    .await
                    .map_err(|source| TakeoverError::Discovery { phase, source })
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
            let taken = match store.lock_cluster_journaled(&lock, &first) {
                // Another process holds the store right now: the cluster is busy, as when another
                // takeover holds its lock (409), not an error of this one.
                Err(source) if source.is_busy() => {
                    return Err(TakeoverError::Busy {
                        phase,
                        cluster: lock,
                        holder: format!("the store is busy ({source})"),
                    })
                }
                other => other.map_err(|source| TakeoverError::Store { phase, source })?,
            };
            if let Some(holder) = taken {
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
                match ops::server_lock(self.conn(), &master, &name)
                    .await
                    .map_err(|source| TakeoverError::Sql { phase, source })?
                {
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
        self.report.replicas =
            cluster.members.iter().filter(|m| m.depth.unwrap_or(0) > 0).map(|m| m.key.to_string()).collect();
        self.report.lost_replicas =
            cluster.members.iter().filter(|m| !m.reachable()).map(|m| m.key.to_string()).collect();
        let hash = plan::topology_hash(&cluster);
        self.report.plan_hash = Some(hash.clone());
        self.detail =
            format!("{} members, {} problems, topology {hash}", cluster.members.len(), cluster.problems.len());
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
        Ok(cluster)
    }

    pub(super) fn check_master(&mut self, c: &Cluster) -> Result<InstanceKey, TakeoverError> {
        let phase = Phase::CheckMaster;
        let master = plan::check_master(c, &self.inputs, self.cfg().takeover.max_clock_skew_s)
            .map_err(|r| TakeoverError::refused(phase, &r.check, r.instance.as_ref(), r.message))?;
        if let Some(expected) = &self.req.expected_master {
            if *expected != master {
                return Err(TakeoverError::refused(
                    phase,
                    "expected_master",
                    Some(&master),
                    format!("the master is {master}, not the expected {expected}"),
                ));
            }
        }
        let replicas = c.replicas_of(&master);
        self.report.old_master = Some(master.to_string());
        self.report.semi_sync = c.instance(&master).and_then(|mi| mi.semi_sync.clone());
        self.detail = format!("master {master}, {} direct replicas", replicas.len());
        Ok(master)
    }

    pub(super) async fn choose_designated(
        &mut self,
        c: &Cluster,
        master: &InstanceKey,
    ) -> Result<InstanceKey, TakeoverError> {
        let phase = Phase::ChooseDesignated;
        let replicas: Vec<InstanceKey> = c.replicas_of(master).iter().map(|m| m.key.clone()).collect();
        let (designated, why) = match &self.req.designated {
            Some(d) => {
                if !replicas.contains(d) {
                    let why = self.why_not_a_replica(c, master, d).await;
                    return Err(TakeoverError::refused(
                        phase,
                        "designated_is_direct_replica",
                        Some(d),
                        format!(
                            "not a direct replica of the master {master}: {why} (direct replicas: {})",
                            keys(&replicas)
                        ),
                    ));
                }
                (d.clone(), "designated by the request".to_string())
            }
            None if replicas.len() == 1 => (replicas[0].clone(), "the master's only replica".to_string()),
            None if !self.req.auto => {
                return Err(TakeoverError::refused(
                    phase,
                    "designated_given",
                    Some(master),
                    format!(
                        "the master has {} replicas ({}): name one, or ask for auto",
                        replicas.len(),
                        keys(&replicas)
                    ),
                ))
            }
            None => self.policy_choice(phase, c, master).await?,
        };
        self.report.choice = Some(why.clone());
        self.report.designated = Some(designated.to_string());
        self.detail = why;
        Ok(designated)
    }

    /// Why `d` is not among the master's direct replicas, asked of `d` itself when discovery did
    /// not reach it (a replica whose IO thread stopped, on a full disk say, is not listed by the
    /// master): unreachable, replicating from another source, or its replication's own errors.
    pub(super) async fn why_not_a_replica(&self, c: &Cluster, master: &InstanceKey, d: &InstanceKey) -> String {
        let probed = match c.member(d).and_then(|m| m.instance.clone()) {
            Some(i) => Ok(i),
            None => match c.member(d) {
                Some(m) => Err(m.error.clone().unwrap_or_else(|| "unreachable".into())),
                None => crate::mysql::probe(self.conn(), d).await.map_err(|e| e.to_string()),
            },
        };
        let i = match probed {
            Ok(i) => i,
            Err(e) => return format!("it does not answer ({e})"),
        };
        let Some(r) = &i.replication else { return "it does not replicate from anything".into() };
        if r.source != *master {
            return format!("it replicates from {}", r.source);
        }
        let errors: Vec<String> = [&r.last_io_error, &r.last_sql_error]
            .into_iter()
            .flatten()
            .map(|e| format!("error {}: {}", e.errno, e.message))
            .collect();
        format!(
            "it replicates from the master, but the master does not list it (IO thread {:?}, SQL thread {:?}{})",
            r.io_thread,
            r.sql_thread,
            if errors.is_empty() { String::new() } else { format!("; {}", errors.join("; ")) }
        )
    }

    /// The candidate policy's choice among the eligible replicas: the operator's Lua policy when
    /// one is loaded, else the built-in ordering. The policy may only pick an eligible candidate.
    pub(super) async fn policy_choice(
        &self,
        phase: Phase,
        c: &Cluster,
        master: &InstanceKey,
    ) -> Result<(InstanceKey, String), TakeoverError> {
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
            Ok(Choice::Refused { reason }) => {
                Err(TakeoverError::refused(phase, "policy", Some(master), format!("the policy refused: {reason}")))
            }
            Err(e) => Err(TakeoverError::refused(phase, "policy", Some(master), format!("the policy failed: {e}"))),
        }
    }

    /// Returns the target with the cluster re-read when replication was started and caught up.
    pub(super) async fn check_designated(&mut self, mut t: Target) -> Result<Target, TakeoverError> {
        let phase = Phase::CheckDesignated;
        let (master, d) = (t.master.clone(), t.designated.clone());
        // A designated replica whose replication was simply stopped (both threads, no error: a
        // demoted master repointed without starting replication) is started and caught up first.
        let replication = t.cluster.instance(&d).and_then(|i| i.replication.clone());
        let stopped_cleanly = replication
            .as_ref()
            .is_some_and(|r| r.source == master && !r.io_thread.running() && !r.sql_thread.running() && !r.broken());
        // Replication just started (the IO thread still connecting, no error): wait, in the
        // server, until it has caught up, instead of refusing a replica that is about to be fine.
        let connecting = replication.as_ref().is_some_and(|r| {
            r.source == master
                && r.sql_thread.running()
                && matches!(r.io_thread, ThreadState::Connecting | ThreadState::Preparing)
                && !r.broken()
        });
        if connecting && !self.req.dry_run {
            t.cluster = self.catch_up_designated(&t).await?;
            self.detail = format!("replication on {d} was connecting: waited until it caught up; ");
        }
        if stopped_cleanly && self.req.dry_run {
            self.detail =
                format!("replication on {d} is stopped: a takeover starts it and waits for it to catch up first; ");
        } else if stopped_cleanly {
            self.report.undo.stop_again(&d, phase);
            self.ops.push(
                ops::start_replication(self.conn(), &d).await.map_err(|source| TakeoverError::Sql { phase, source })?,
            );
            t.cluster = self.catch_up_designated(&t).await?;
            self.detail = format!("started replication on {d} (it was stopped) and waited for it to catch up; ");
        }
        let c = &t.cluster;
        let mut checks = plan::check_designated(c, &master, &d, &self.inputs);
        checks.extend(plan::semi_sync_checks(c, &master, &d, &self.inputs, self.report.start_old_master_replication));
        // Replication that a takeover starts (dry run) or just started and proved caught up with
        // the server-side wait (its IO thread may still be connecting, with a NULL lag) is not a
        // reason to refuse. Catch-up after the fence still waits for it, bounded.
        let io_connecting_cleanly = c.instance(&d).and_then(|i| i.replication.as_ref()).is_some_and(|r| {
            r.sql_thread.running()
                && matches!(r.io_thread, ThreadState::Connecting | ThreadState::Preparing)
                && !r.broken()
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
                dialect
                    .source_credential_limits()
                    .check(i.flavor, &r.user, r.password.expose())
                    .map_err(|e| format!("{}: {e}", i.key))
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
            Some(first) => Err(TakeoverError::refused(
                phase,
                &first.name,
                Some(&d),
                failed.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; "),
            )),
            None => Ok(t),
        };
        self.detail.push_str(&format!("{} checks on {d}", checks.len()));
        self.checks = checks;
        result
    }

    /// Waits (in the server) until the designated replica has executed the master's current
    /// position, then re-reads the cluster so that the checks see it as it is now.
    pub(super) async fn catch_up_designated(&mut self, t: &Target) -> Result<Cluster, TakeoverError> {
        let phase = Phase::CheckDesignated;
        let (master, d) = (&t.master, &t.designated);
        let pos =
            ops::own_position(self.conn(), master).await.map_err(|source| TakeoverError::Sql { phase, source })?;
        self.ops.push(
            self.wait_executed(&t.cluster, d, &pos).await.map_err(|source| TakeoverError::Sql { phase, source })?,
        );
        // Seeded with the designated replica too: its IO thread may not have registered with the
        // master yet (it is listed by SHOW SLAVE HOSTS only once connected).
        let seeds = vec![master.clone(), d.clone()];
        discovery::discover(self.conn(), self.cfg(), &seeds)
            .await
            .map_err(|source| TakeoverError::Discovery { phase, source })
    }
}
