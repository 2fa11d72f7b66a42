//! The instance commands an operator runs around a takeover (orchestrator's `start-replica`,
//! `stop-replica`, `restart-replica`, `set-read-only`, `set-writeable`, `relocate`/`move-below`,
//! `move-up`): one change to one instance, through the same `mysql::ops` primitives the takeover
//! uses, under the same cluster locks (never during a takeover of that cluster), refused on
//! instances Baton does not know, and recorded (who, what, the statements) in the store.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Engine;
use crate::discovery;
use crate::mysql::ops::{self, OpRecord};
use crate::mysql::{SourcePosition, SourceSpec};
use crate::store::AuditEntry;
use crate::topology::{Cluster, Flavor, GtidMode, InstanceKey};

/// One change to one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum InstanceCommand {
    StartReplica,
    StopReplica,
    RestartReplica,
    SetReadOnly,
    SetWriteable,
    /// Replicate from `below` (GTID), a member of the same cluster.
    Relocate {
        below: InstanceKey,
    },
    /// Replicate from the source's source.
    MoveUp,
}

impl InstanceCommand {
    /// The command `name()` names; `relocate` needs `below`.
    pub fn parse(name: &str, below: Option<InstanceKey>) -> Result<InstanceCommand, CommandNameError> {
        Ok(match name {
            "start-replica" => InstanceCommand::StartReplica,
            "stop-replica" => InstanceCommand::StopReplica,
            "restart-replica" => InstanceCommand::RestartReplica,
            "set-read-only" => InstanceCommand::SetReadOnly,
            "set-writeable" => InstanceCommand::SetWriteable,
            "move-up" => InstanceCommand::MoveUp,
            "relocate" => InstanceCommand::Relocate { below: below.ok_or(CommandNameError::NeedsBelow)? },
            other => return Err(CommandNameError::Unknown(other.to_string())),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            InstanceCommand::StartReplica => "start-replica",
            InstanceCommand::StopReplica => "stop-replica",
            InstanceCommand::RestartReplica => "restart-replica",
            InstanceCommand::SetReadOnly => "set-read-only",
            InstanceCommand::SetWriteable => "set-writeable",
            InstanceCommand::Relocate { .. } => "relocate",
            InstanceCommand::MoveUp => "move-up",
        }
    }
}

/// A command name that `InstanceCommand::parse` does not take.
#[derive(Debug, thiserror::Error)]
pub enum CommandNameError {
    #[error(
        "no instance command '{0}' (start-replica, stop-replica, restart-replica, set-read-only, set-writeable, relocate, move-up)"
    )]
    Unknown(String),
    #[error("relocate needs the instance to replicate from (below)")]
    NeedsBelow,
}

/// What a command did, as recorded in the store and answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandReport {
    pub id: String,
    pub command: InstanceCommand,
    pub instance: InstanceKey,
    pub cluster: Option<String>,
    /// Who asked: the HTTP caller's role and address, or the CLI.
    pub by: String,
    pub started_at: i64,
    pub ms: f64,
    /// `done`, `refused` (nothing changed) or `failed` (the statements ran may have changed it).
    pub status: String,
    pub ops: Vec<OpRecord>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Nothing was changed.
    #[error("{command} {instance}: refused: {reason}")]
    Refused { command: &'static str, instance: InstanceKey, reason: String },
    /// Another takeover or command holds the cluster.
    #[error("{command} {instance}: cluster {cluster} is busy: {holder}")]
    Busy { command: &'static str, instance: InstanceKey, cluster: String, holder: String },
    #[error("{command} {instance}: {message}")]
    Failed { command: &'static str, instance: InstanceKey, message: String },
}

impl Engine {
    /// Runs `cmd` on `key`; the report is saved whatever the outcome.
    pub async fn instance_command(
        &self,
        key: &InstanceKey,
        cmd: InstanceCommand,
        by: &str,
    ) -> (CommandReport, Result<Cluster, CommandError>) {
        let start = Instant::now();
        let mut report = CommandReport {
            id: Engine::new_id(),
            command: cmd.clone(),
            instance: key.clone(),
            cluster: None,
            by: by.to_string(),
            started_at: crate::store::now_unix_ms(),
            ms: 0.0,
            status: "running".into(),
            ops: Vec::new(),
            error: None,
        };
        let result = self.run_command(key, &cmd, &mut report).await;
        report.ms = start.elapsed().as_secs_f64() * 1000.0;
        report.status = match &result {
            Ok(_) => "done",
            Err(CommandError::Refused { .. } | CommandError::Busy { .. }) => "refused",
            Err(CommandError::Failed { .. }) => "failed",
        }
        .into();
        report.error = result.as_ref().err().map(|e| e.to_string());
        match &result {
            Ok(_) => info!(command = cmd.name(), instance = %key, by, "instance command done"),
            Err(e) => warn!(command = cmd.name(), instance = %key, by, error = %e, "instance command not done"),
        }
        let entry = AuditEntry {
            id: report.id.clone(),
            cluster: report.cluster.clone().unwrap_or_default(),
            status: report.status.clone(),
            started_at: report.started_at,
            record: serde_json::to_value(&report).expect("report serializes"),
        };
        if let Err(e) = self.store.save_operation(&entry) {
            warn!(error = %e, "cannot record the instance command");
        }
        (report, result)
    }

    async fn run_command(
        &self,
        key: &InstanceKey,
        cmd: &InstanceCommand,
        report: &mut CommandReport,
    ) -> Result<Cluster, CommandError> {
        let name = cmd.name();
        let refused = |reason: String| CommandError::Refused { command: name, instance: key.clone(), reason };
        let failed = |message: String| CommandError::Failed { command: name, instance: key.clone(), message };
        if self.store.cluster_of(key).map_err(|e| failed(e.to_string()))?.is_none() {
            return Err(refused(format!(
                "{key} is not a member of a cluster Baton knows (discover its cluster first)"
            )));
        }
        let cluster = discovery::discover_hint(&self.connector, &self.cfg, self.store.as_ref(), &key.to_string())
            .await
            .map_err(|e| refused(e.to_string()))?;
        report.cluster = Some(cluster.name.clone());
        let i = cluster.instance(key).ok_or_else(|| refused(format!("{key} does not answer")))?.clone();
        let moves = matches!(cmd, InstanceCommand::Relocate { .. } | InstanceCommand::MoveUp);
        if moves && self.store.downtimes().map_err(|e| failed(e.to_string()))?.iter().any(|d| d.instance == *key) {
            return Err(refused(format!("{key} is downtimed")));
        }
        // The target of a move, checked before anything changes.
        let target = match cmd {
            InstanceCommand::Relocate { below } => Some(below.clone()),
            InstanceCommand::MoveUp => {
                let source = i.source().ok_or_else(|| refused(format!("{key} does not replicate")))?;
                let grand = cluster.instance(source).and_then(|s| s.source()).cloned();
                Some(grand.ok_or_else(|| {
                    refused(format!("its source {source} does not replicate from anyone: nothing to move up to"))
                })?)
            }
            _ => None,
        };
        if let Some(t) = &target {
            check_move(&cluster, key, t).map_err(refused)?;
        }
        if matches!(cmd, InstanceCommand::StartReplica | InstanceCommand::StopReplica | InstanceCommand::RestartReplica)
            && i.replication.is_none()
        {
            return Err(refused(format!("{key} is not a replica")));
        }

        // The locks a takeover takes: never while one runs on this cluster.
        let lock = cluster.alias.clone().unwrap_or_else(|| cluster.name.clone());
        let holder = self.store.lock_cluster(&lock, &report.id).map_err(|e| failed(e.to_string()))?;
        if let Some(holder) = holder {
            return Err(CommandError::Busy {
                command: name,
                instance: key.clone(),
                cluster: lock,
                holder: format!("takeover or command {holder}"),
            });
        }
        let server_lock = match cluster.master.as_ref().filter(|m| cluster.instance(m).is_some()) {
            Some(m) => match ops::server_lock(&self.connector, m, &ops::lock_name(&lock)).await {
                Ok(Some(l)) => Some(l),
                Ok(None) => {
                    let _ = self.store.unlock_cluster(&lock, &report.id);
                    return Err(CommandError::Busy {
                        command: name,
                        instance: key.clone(),
                        cluster: lock,
                        holder: "another Baton process".into(),
                    });
                }
                Err(e) => {
                    let _ = self.store.unlock_cluster(&lock, &report.id);
                    return Err(failed(e.to_string()));
                }
            },
            None => None,
        };
        let changed = self.apply(key, cmd, target.as_ref(), &i.flavor, &mut report.ops).await.map_err(failed);
        if let Some(l) = server_lock {
            l.release(Duration::from_secs(2)).await;
        }
        let _ = self.store.unlock_cluster(&lock, &report.id);
        changed?;
        discovery::discover_hint(&self.connector, &self.cfg, self.store.as_ref(), &key.to_string())
            .await
            .map_err(|e| failed(format!("done, but the cluster could not be read again: {e}")))
    }

    async fn apply(
        &self,
        key: &InstanceKey,
        cmd: &InstanceCommand,
        target: Option<&InstanceKey>,
        flavor: &Flavor,
        ops_out: &mut Vec<OpRecord>,
    ) -> Result<(), String> {
        let c = &self.connector;
        let lock_wait = self.cfg.takeover.fence_lock_wait_s;
        let op = |r: Result<OpRecord, crate::mysql::SqlError>, out: &mut Vec<OpRecord>| {
            r.map(|o| out.push(o)).map_err(|e| e.to_string())
        };
        match cmd {
            InstanceCommand::StartReplica => op(ops::start_replication(c, key).await, ops_out),
            InstanceCommand::StopReplica => op(ops::stop_replication(c, key).await, ops_out),
            InstanceCommand::RestartReplica => {
                op(ops::stop_replication(c, key).await, ops_out)?;
                op(ops::start_replication(c, key).await, ops_out)
            }
            InstanceCommand::SetReadOnly => op(ops::set_read_only(c, key, true, lock_wait).await, ops_out),
            InstanceCommand::SetWriteable => op(ops::set_read_only(c, key, false, lock_wait).await, ops_out),
            InstanceCommand::Relocate { .. } | InstanceCommand::MoveUp => {
                let t = target.expect("a move has a target");
                let r = &self.cfg.replication;
                let position = match flavor {
                    Flavor::MySql => SourcePosition::AutoPosition,
                    Flavor::MariaDb => SourcePosition::GtidSlavePos,
                };
                let spec = SourceSpec {
                    host: t.host.clone(),
                    port: t.port,
                    user: r.user.clone(),
                    password: r.password.clone(),
                    position,
                    tls: r.tls,
                };
                op(ops::repoint(c, key, &spec, true).await, ops_out)
            }
        }
    }
}

/// Whether `replica` can replicate from `target` with GTID, from the cluster as it is: a member
/// that keeps binary logs of what it replicates, not the replica itself or below it, with every
/// transaction the replica has (else the replica holds what the target never had).
pub fn check_move(cluster: &Cluster, replica: &InstanceKey, target: &InstanceKey) -> Result<(), String> {
    if replica == target {
        return Err("an instance cannot replicate from itself".into());
    }
    let r = cluster.instance(replica).ok_or_else(|| format!("{replica} does not answer"))?;
    let t = cluster
        .instance(target)
        .ok_or_else(|| format!("{target} is not a reachable member of cluster {}", cluster.name))?;
    if r.source() == Some(target) {
        return Err(format!("{replica} already replicates from {target}"));
    }
    // Walking up from the target must not meet the replica (that would make a loop).
    let mut up = Some(target.clone());
    let mut hops = 0;
    while let Some(k) = up {
        if k == *replica {
            return Err(format!("{target} replicates (directly or not) from {replica}: that would make a loop"));
        }
        hops += 1;
        if hops > cluster.members.len() {
            break;
        }
        up = cluster.instance(&k).and_then(|i| i.source()).cloned();
    }
    if !t.can_be_master() {
        return Err(format!(
            "{target} cannot serve replicas (log_bin={} log_slave_updates={})",
            t.log_bin, t.log_slave_updates
        ));
    }
    if !r.gtid.enabled() || !t.gtid.enabled() || r.replication.as_ref().is_some_and(|x| x.gtid_mode == GtidMode::No) {
        return Err("moves are GTID-based: both instances must use GTID replication".into());
    }
    if let Some(missing) = r.gtid.missing_from(&t.gtid) {
        return Err(format!(
            "{target} lacks transactions {replica} has ({missing}): errant on {replica}, or {target} is behind"
        ));
    }
    Ok(())
}
