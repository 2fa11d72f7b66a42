//! orchestrator's HTTP routes under `/api`, answering in orchestrator's shapes (field names as
//! in the answers of orchestrator 3.2.6 captured in `shared/reference/orchestrator-api/`), so that
//! `orchestrator-client` and operators' scripts can point at Baton unchanged.
//!
//! Commands answer `{"Code": "OK"|"ERROR", "Message": ..., "Details": ...}` (ERROR with HTTP 500,
//! or 400 for a malformed path); reads answer the bare object or list, as orchestrator does.
//! Values orchestrator has and Baton does not track (uptime, semi-sync, data centre, ...) are
//! given their zero value.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::error::{key_from_parts, ApiError};
use super::native::{discover, hint};
use super::AppState;
use super::Caller;
use crate::engine::{CommandError, InstanceCommand, PlanInputs, Status, TakeoverReport, TakeoverRequest};
use crate::store::{expiry_after, now_unix, Downtime, PromotionRule, RuleEntry};
use crate::topology::{BinlogCoordinates, Cluster, Flavor, GtidMode, GtidState, InstanceKey, Member, ThreadState};

pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/api", get(|| async { Json("OK") }).head(|| async { StatusCode::OK }))
        .route("/api/leader-check", get(|| async { Json("OK") }))
        .route("/api/routed-leader-check", get(|| async { Json("OK") }))
        .route("/api/health", get(health))
        .route("/api/clusters", get(clusters))
        .route("/api/clusters-info", get(clusters_info))
        .route("/api/cluster/{hint}", get(cluster))
        .route("/api/cluster/alias/{alias}", get(cluster))
        .route("/api/cluster-info/{hint}", get(cluster_info_of))
        .route("/api/cluster-info/alias/{alias}", get(cluster_info_of))
        .route("/api/instance/{host}/{port}", get(instance))
        .route("/api/master/{hint}", get(master))
        .route("/api/instance-replicas/{host}/{port}", get(instance_replicas))
        .route("/api/topology/{hint}", get(topology))
        .route("/api/audit-recovery", get(audit_recovery))
        .route("/api/audit-recovery/{hint}", get(audit_recovery_of))
        .route("/api/audit-recovery-steps/{uid}", get(audit_recovery_steps))
        .route("/api/register-candidate/{host}/{port}/{rule}", get(register_candidate))
        .route("/api/begin-downtime/{host}/{port}/{owner}/{reason}", get(begin_downtime))
        .route("/api/begin-downtime/{host}/{port}/{owner}/{reason}/{duration}", get(begin_downtime))
        .route("/api/end-downtime/{host}/{port}", get(end_downtime));
    for name in [
        "start-replica",
        "start-slave",
        "stop-replica",
        "stop-slave",
        "restart-replica",
        "set-read-only",
        "set-writeable",
        "move-up",
    ] {
        let handler = move |State(s): State<AppState>, Extension(c): Extension<Caller>, Path(p): Path<Vec<String>>| {
            instance_command(s, c, p, name)
        };
        r = r.route(&format!("/api/{name}/{{host}}/{{port}}"), get(handler));
    }
    for name in ["relocate", "move-below"] {
        let handler = move |State(s): State<AppState>, Extension(c): Extension<Caller>, Path(p): Path<Vec<String>>| {
            instance_command(s, c, p, name)
        };
        r = r.route(&format!("/api/{name}/{{host}}/{{port}}/{{below_host}}/{{below_port}}"), get(handler));
    }
    r = r
        .route("/api/topology-tabulated/{hint}", get(topology_tabulated))
        .route("/api/all-instances", get(all_instances))
        .route("/api/masters", get(masters))
        .route("/api/cluster-osc-replicas/{hint}", get(cluster_osc_replicas))
        .route(
            "/api/replication-analysis",
            get(|State(s): State<AppState>, Extension(c): Extension<Caller>| async move {
                replication_analysis(&s, c, None).await
            }),
        )
        .route(
            "/api/replication-analysis/{hint}",
            get(|State(s): State<AppState>, Extension(c): Extension<Caller>, Path(h): Path<String>| async move {
                replication_analysis(&s, c, Some(&h)).await
            }),
        )
        .route("/api/relocate-replicas/{a}/{b}/{c}/{d}", get(relocate_replicas))
        .route("/api/forget/{host}/{port}", get(forget))
        .route("/api/forget-cluster/{hint}", get(forget_cluster))
        .route("/api/discover/{host}/{port}", get(discover_instance));
    for (cmd, auto) in [("graceful-master-takeover", false), ("graceful-master-takeover-auto", true)] {
        let handler = move |s: State<AppState>, p: Path<Vec<String>>| takeover(s, p, auto);
        r = r
            .route(&format!("/api/{cmd}/{{a}}"), get(handler))
            .route(&format!("/api/{cmd}/{{a}}/{{b}}"), get(handler))
            .route(&format!("/api/{cmd}/{{a}}/{{b}}/{{c}}"), get(handler))
            .route(&format!("/api/{cmd}/{{a}}/{{b}}/{{c}}/{{d}}"), get(handler));
    }
    r
}

// ---- the envelope -----------------------------------------------------------------------------

fn ok(message: impl Into<String>, details: Value) -> Response {
    Json(json!({ "Code": "OK", "Message": message.into(), "Details": details })).into_response()
}

/// orchestrator's error answer. Bad input is a 400, anything else a 500 (what orchestrator sends).
struct OrcError(ApiError);

impl From<ApiError> for OrcError {
    fn from(e: ApiError) -> Self {
        OrcError(e)
    }
}

impl IntoResponse for OrcError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::Forbidden(_) => self.0.status(),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "Code": "ERROR", "Message": self.0.to_string(), "Details": Value::Null })))
            .into_response()
    }
}

type OrcResult = Result<Response, OrcError>;

/// The orchestrator commands Baton serves, with the argument forms it takes.
const SERVED: &[(&str, &str)] = &[
    ("clusters", "clusters"),
    ("clusters-info", "clusters-info"),
    ("cluster", "cluster/{hint} or cluster/alias/{alias}"),
    ("cluster-info", "cluster-info/{hint} or cluster-info/alias/{alias}"),
    ("instance", "instance/{host}/{port}"),
    ("master", "master/{hint}"),
    ("instance-replicas", "instance-replicas/{host}/{port}"),
    ("topology", "topology/{hint}"),
    ("audit-recovery", "audit-recovery[/{hint}]"),
    ("audit-recovery-steps", "audit-recovery-steps/{uid}"),
    ("register-candidate", "register-candidate/{host}/{port}/{rule}"),
    ("begin-downtime", "begin-downtime/{host}/{port}/{owner}/{reason}[/{duration}]"),
    ("end-downtime", "end-downtime/{host}/{port}"),
    ("graceful-master-takeover", "graceful-master-takeover/{cluster}[/{designated host}/{port}]"),
    ("graceful-master-takeover-auto", "graceful-master-takeover-auto/{cluster}[/{designated host}/{port}]"),
    ("start-replica", "start-replica/{host}/{port}"),
    ("start-slave", "start-slave/{host}/{port}"),
    ("stop-replica", "stop-replica/{host}/{port}"),
    ("stop-slave", "stop-slave/{host}/{port}"),
    ("restart-replica", "restart-replica/{host}/{port}"),
    ("set-read-only", "set-read-only/{host}/{port}"),
    ("set-writeable", "set-writeable/{host}/{port}"),
    ("relocate", "relocate/{host}/{port}/{below host}/{below port}"),
    ("move-below", "move-below/{host}/{port}/{below host}/{below port}"),
    ("move-up", "move-up/{host}/{port}"),
    ("relocate-replicas", "relocate-replicas/{host}/{port}/{below host}/{below port}"),
    ("forget", "forget/{host}/{port}"),
    ("forget-cluster", "forget-cluster/{cluster}"),
    ("discover", "discover/{host}/{port}"),
    ("topology-tabulated", "topology-tabulated/{hint}"),
    ("all-instances", "all-instances"),
    ("masters", "masters"),
    ("cluster-osc-replicas", "cluster-osc-replicas/{hint}"),
    ("replication-analysis", "replication-analysis[/{hint}]"),
    ("leader-check", "leader-check"),
    ("routed-leader-check", "routed-leader-check"),
    ("health", "health"),
];

/// orchestrator's failover commands: Baton does graceful takeovers only.
const FAILOVER_COMMANDS: &[&str] = &[
    "recover",
    "recover-lite",
    "force-master-failover",
    "force-master-takeover",
    "ack-cluster-recoveries",
    "ack-all-recoveries",
    "ack-recovery",
    "disable-global-recoveries",
    "enable-global-recoveries",
    "check-global-recoveries",
];

/// Any `/api/...` path Baton does not serve: an error in orchestrator's shape (HTTP 500, `Code`
/// `ERROR`), so that `orchestrator-client` prints the message and exits 1 instead of exiting 0
/// having done nothing.
pub async fn unsupported(uri: axum::http::Uri) -> Response {
    let command = uri.path().trim_start_matches("/api/").split('/').next().unwrap_or_default().to_string();
    let served = SERVED.iter().find(|(c, _)| *c == command);
    let message = if let Some((_, forms)) = served {
        format!("{command}: bad arguments (Baton serves it as {forms})")
    } else if FAILOVER_COMMANDS.contains(&command.as_str()) {
        format!("{command}: not supported by Baton, which does graceful master takeovers only (graceful-master-takeover, graceful-master-takeover-auto); see docs/ORCHESTRATOR.md")
    } else {
        format!("{command}: not supported by Baton (see docs/ORCHESTRATOR.md for the commands it serves)")
    };
    OrcError(ApiError::Internal(message)).into_response()
}

// ---- shapes -----------------------------------------------------------------------------------

fn key(k: Option<&InstanceKey>) -> Value {
    match k {
        Some(k) => json!({ "Hostname": k.host, "Port": k.port }),
        None => json!({ "Hostname": "", "Port": 0 }),
    }
}

fn parse_key(s: &str) -> Option<InstanceKey> {
    s.parse().ok()
}

fn coords(c: Option<&BinlogCoordinates>, kind: u8) -> Value {
    match c {
        Some(c) => json!({ "LogFile": c.file, "LogPos": c.pos, "Type": kind }),
        None => json!({ "LogFile": "", "LogPos": 0, "Type": kind }),
    }
}

fn null_int(v: Option<u64>) -> Value {
    json!({ "Int64": v.unwrap_or(0), "Valid": v.is_some() })
}

/// Unix seconds as `2026-11-26T00:23:22Z`.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn thread_state(t: Option<ThreadState>) -> i32 {
    match t {
        None => -1,
        Some(ThreadState::Yes) => 1,
        Some(ThreadState::No) => 0,
        Some(_) => 2,
    }
}

/// An orchestrator `Instance` for one member of `cluster`.
fn instance_json(m: &Member, c: &Cluster, inputs: &PlanInputs) -> Value {
    let rule = inputs.rule(&m.key);
    let downtime = inputs.downtimes.get(&m.key);
    let problems: Vec<String> = c.problems.iter().filter(|p| p.instance == m.key).map(|p| p.message.clone()).collect();
    let replicas: Vec<Value> = c.replicas_of(&m.key).iter().map(|r| key(Some(&r.key))).collect();
    let Some(i) = &m.instance else {
        return json!({
            "Key": key(Some(&m.key)), "MasterKey": key(m.source.as_ref()), "ClusterName": c.name,
            "SuggestedClusterAlias": c.alias.clone().unwrap_or_default(), "ReplicationDepth": m.depth.unwrap_or(0),
            "IsLastCheckValid": false, "IsUpToDate": false, "IsRecentlyChecked": true, "Problems": problems,
            "PromotionRule": rule.to_string(), "IsDowntimed": downtime.is_some(),
        });
    };
    let r = i.replication.as_ref();
    let lag = r.and_then(|r| r.seconds_behind);
    let (gtid_mode, executed) = match &i.gtid {
        GtidState::MySql { mode, executed } => (mode.to_string(), executed.to_string()),
        GtidState::MariaDb { .. } => (String::new(), String::new()),
    };
    let mariadb_gtid = r.is_some_and(|r| i.flavor == Flavor::MariaDb && r.gtid_mode != GtidMode::No);
    let oracle_gtid = r.is_some_and(|r| i.flavor == Flavor::MySql && r.gtid_mode != GtidMode::No);
    let error =
        |e: Option<&crate::topology::ThreadError>| e.map(|e| format!("{}: {}", e.errno, e.message)).unwrap_or_default();
    json!({
        "Key": key(Some(&i.key)),
        "InstanceAlias": "",
        "Uptime": 0,
        "ServerID": i.server_id,
        "ServerUUID": i.server_uuid.clone().unwrap_or_default(),
        "Version": i.version,
        "VersionComment": i.version_comment,
        "FlavorName": if i.flavor == Flavor::MySql { "MySQL" } else { "MariaDB" },
        "ReadOnly": i.read_only,
        "Binlog_format": i.binlog_format,
        "BinlogRowImage": "",
        "LogBinEnabled": i.log_bin,
        "LogSlaveUpdatesEnabled": i.log_slave_updates,
        "LogReplicationUpdatesEnabled": i.log_slave_updates,
        "SelfBinlogCoordinates": coords(i.binlog.as_ref(), 0),
        "MasterKey": key(r.map(|r| &r.source)),
        "MasterUUID": "",
        "AncestryUUID": "",
        "IsDetachedMaster": false,
        "Slave_SQL_Running": r.is_some_and(|r| r.sql_thread.running()),
        "ReplicationSQLThreadRuning": r.is_some_and(|r| r.sql_thread.running()),
        "Slave_IO_Running": r.is_some_and(|r| r.io_thread.running()),
        "ReplicationIOThreadRuning": r.is_some_and(|r| r.io_thread.running()),
        "ReplicationSQLThreadState": thread_state(r.map(|r| r.sql_thread)),
        "ReplicationIOThreadState": thread_state(r.map(|r| r.io_thread)),
        "HasReplicationFilters": false,
        "GTIDMode": gtid_mode,
        "SupportsOracleGTID": i.flavor == Flavor::MySql,
        "UsingOracleGTID": oracle_gtid,
        "UsingMariaDBGTID": mariadb_gtid,
        "UsingPseudoGTID": false,
        "ReadBinlogCoordinates": coords(r.and_then(|r| r.read_coordinates.as_ref()), 0),
        "ExecBinlogCoordinates": coords(r.and_then(|r| r.exec_coordinates.as_ref()), 0),
        "IsDetached": false,
        "RelaylogCoordinates": coords(None, 1),
        "LastSQLError": error(r.and_then(|r| r.last_sql_error.as_ref())),
        "LastIOError": error(r.and_then(|r| r.last_io_error.as_ref())),
        "SecondsBehindMaster": null_int(lag),
        "SQLDelay": r.map(|r| r.sql_delay).unwrap_or(0),
        "ExecutedGtidSet": executed,
        "GtidPurged": "",
        "GtidErrant": "",
        "SlaveLagSeconds": null_int(lag.or(r.is_none().then_some(0))),
        "ReplicationLagSeconds": null_int(lag.or(r.is_none().then_some(0))),
        "SlaveHosts": replicas.clone(),
        "Replicas": replicas,
        "ClusterName": c.name,
        "SuggestedClusterAlias": c.alias.clone().unwrap_or_default(),
        "DataCenter": "",
        "Region": "",
        "PhysicalEnvironment": "",
        "ReplicationDepth": m.depth.unwrap_or(0),
        "IsCoMaster": false,
        "HasReplicationCredentials": r.is_some(),
        "ReplicationCredentialsAvailable": false,
        "SemiSyncAvailable": false,
        "SemiSyncPriority": 0,
        "SemiSyncMasterEnabled": false,
        "SemiSyncReplicaEnabled": false,
        "SemiSyncMasterTimeout": 0,
        "SemiSyncMasterWaitForReplicaCount": 0,
        "SemiSyncMasterStatus": false,
        "SemiSyncMasterClients": 0,
        "SemiSyncReplicaStatus": false,
        "LastSeenTimestamp": rfc3339(now_unix()),
        "IsLastCheckValid": true,
        "IsUpToDate": true,
        "IsRecentlyChecked": true,
        "SecondsSinceLastSeen": null_int(Some(0)),
        "CountMySQLSnapshots": 0,
        "IsCandidate": rule == PromotionRule::Prefer,
        "PromotionRule": rule.to_string(),
        "IsDowntimed": downtime.is_some(),
        "DowntimeReason": downtime.map(|d| d.reason.clone()).unwrap_or_default(),
        "DowntimeOwner": downtime.map(|d| d.owner.clone()).unwrap_or_default(),
        "DowntimeEndTimestamp": downtime.map(|d| rfc3339(d.until)).unwrap_or_default(),
        "ElapsedDowntime": 0,
        "UnresolvedHostname": "",
        "AllowTLS": r.is_some_and(|r| r.ssl),
        "Problems": problems,
        "LastDiscoveryLatency": (i.probe_ms * 1e6) as u64,
        "ReplicationGroupName": "",
        "ReplicationGroupIsSinglePrimary": false,
        "ReplicationGroupMemberState": "",
        "ReplicationGroupMemberRole": "",
        "ReplicationGroupMembers": [],
        "ReplicationGroupPrimaryInstanceKey": key(None),
    })
}

fn cluster_info(name: &str, alias: Option<&str>, count: usize) -> Value {
    json!({
        "ClusterName": name,
        "ClusterAlias": alias.unwrap_or_default(),
        "ClusterDomain": "",
        "CountInstances": count,
        "HeuristicLag": 0,
        "HasAutomatedMasterRecovery": false,
        "HasAutomatedIntermediateMasterRecovery": false,
    })
}

fn keys_json(list: &[String]) -> Value {
    Value::Array(list.iter().map(|k| key(parse_key(k).as_ref())).collect())
}

/// An orchestrator `TopologyRecovery` for one takeover report.
fn recovery_json(r: &TakeoverReport) -> Value {
    let old = r.old_master.as_deref().and_then(parse_key);
    let new = r.new_master.as_deref().and_then(parse_key);
    let promoted = matches!(r.status, Status::Promoted | Status::PromotedWithErrors);
    let end = r.started_at + r.total_ms as i64;
    let analysis = json!({
        "AnalyzedInstanceKey": key(old.as_ref()),
        "AnalyzedInstanceMasterKey": key(None),
        "ClusterDetails": cluster_info(&r.cluster, r.alias.as_deref(), r.replicas.len() + 1),
        "AnalyzedInstanceDataCenter": "",
        "AnalyzedInstanceRegion": "",
        "AnalyzedInstancePhysicalEnvironment": "",
        "AnalyzedInstanceBinlogCoordinates": coords(None, 0),
        "IsMaster": true,
        "IsReplicationGroupMember": false,
        "IsCoMaster": false,
        "LastCheckValid": true,
        "LastCheckPartialSuccess": true,
        "CountReplicas": r.replicas.len(),
        "CountValidReplicas": r.replicas.len() - r.lost_replicas.len().min(r.replicas.len()),
        "CountValidReplicatingReplicas": r.replicas.len() - r.lost_replicas.len().min(r.replicas.len()),
        "CountReplicasFailingToConnectToMaster": 0,
        "CountDowntimedReplicas": r.lost_replicas.len(),
        "ReplicationDepth": 0,
        "Replicas": keys_json(&r.replicas),
        "SlaveHosts": keys_json(&r.replicas),
        "IsFailingToConnectToMaster": false,
        "Analysis": "DeadMaster",
        "Description": "",
        "StructureAnalysis": Value::Null,
        "IsDowntimed": false,
        "IsReplicasDowntimed": false,
        "DowntimeEndTimestamp": "",
        "DowntimeRemainingSeconds": 0,
        "IsBinlogServer": false,
        "PseudoGTIDImmediateTopology": false,
        "OracleGTIDImmediateTopology": false,
        "MariaDBGTIDImmediateTopology": true,
        "BinlogServerImmediateTopology": false,
        "SemiSyncMasterEnabled": false,
        "SemiSyncMasterStatus": false,
        "SemiSyncMasterWaitForReplicaCount": 0,
        "SemiSyncMasterClients": 0,
        "CountSemiSyncReplicasEnabled": 0,
        "CountLoggingReplicas": r.replicas.len(),
        "CountStatementBasedLoggingReplicas": 0,
        "CountMixedBasedLoggingReplicas": 0,
        "CountRowBasedLoggingReplicas": r.replicas.len(),
        "CountDistinctMajorVersionsLoggingReplicas": 1,
        "CountDelayedReplicas": 0,
        "CountLaggingReplicas": 0,
        "IsActionableRecovery": true,
        "ProcessingNodeHostname": "",
        "ProcessingNodeToken": "",
        "CountAdditionalAgreeingNodes": 0,
        "StartActivePeriod": "",
        "SkippableDueToDowntime": false,
        "GTIDMode": "",
        "MinReplicaGTIDMode": "",
        "MaxReplicaGTIDMode": "",
        "MaxReplicaGTIDErrant": "",
        "CommandHint": "graceful-master-takeover",
        "IsReadOnly": false,
    });
    json!({
        "Id": r.started_at,
        "UID": r.id,
        "AnalysisEntry": analysis,
        "SuccessorKey": if promoted { key(new.as_ref()) } else { Value::Null },
        "SuccessorAlias": "",
        "SuccessorBinlogCoordinates": coords(None, 0),
        "IsActive": r.status == Status::Running,
        "IsSuccessful": promoted,
        "LostReplicas": keys_json(&r.lost_replicas),
        "ParticipatingInstanceKeys": keys_json(&[r.old_master.clone(), r.new_master.clone()].into_iter().flatten().collect::<Vec<_>>()),
        "AllErrors": r.errors,
        "RecoveryStartTimestamp": rfc3339(r.started_at / 1000),
        "RecoveryEndTimestamp": if r.status == Status::Running { String::new() } else { rfc3339(end / 1000) },
        "ProcessingNodeHostname": "",
        "ProcessingNodeToken": "",
        "Acknowledged": false,
        "AcknowledgedAt": "",
        "AcknowledgedBy": "",
        "AcknowledgedComment": "",
        "LastDetectionId": 0,
        "RelatedRecoveryId": 0,
        "Type": "MasterRecovery",
        "RecoveryType": "MasterRecoveryGTID",
    })
}

// ---- handlers ---------------------------------------------------------------------------------

/// `{a}`, `{host}/{port}`, `{hint}/{dhost}/{dport}`, `{host}/{port}/{dhost}/{dport}`.
async fn takeover(State(s): State<AppState>, Path(parts): Path<Vec<String>>, auto: bool) -> OrcResult {
    let (hint_text, designated) = match parts.as_slice() {
        [a] => (hint(a)?, None),
        [h, p] => (key_from_parts(h, p)?.to_string(), None),
        [a, dh, dp] => (hint(a)?, Some(key_from_parts(dh, dp)?)),
        [h, p, dh, dp] => (key_from_parts(h, p)?.to_string(), Some(key_from_parts(dh, dp)?)),
        _ => return Err(ApiError::BadRequest("unexpected path".into()).into()),
    };
    let req = TakeoverRequest { cluster_hint: hint_text, designated, auto, ..Default::default() };
    let (_, handle) = s.tracks.start(&s.engine, &s.metrics, req);
    let report = handle.await.map_err(|e| ApiError::Internal(format!("takeover task: {e}")))?;
    let command = if auto { "graceful-master-takeover-auto" } else { "graceful-master-takeover" };
    match report.status {
        Status::Promoted => Ok(ok(format!("{command}: successor promoted"), recovery_json(&report))),
        Status::PromotedWithErrors => {
            let body =
                json!({ "Code": "ERROR", "Message": report.errors.join("; "), "Details": recovery_json(&report) });
            Ok((StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response())
        }
        _ => {
            Err(ApiError::Internal(report.errors.first().cloned().unwrap_or_else(|| report.status.as_str().into()))
                .into())
        }
    }
}

async fn health() -> Response {
    ok("Application node is healthy", json!({ "Healthy": true, "IsActiveNode": true, "Error": Value::Null }))
}

async fn clusters(State(s): State<AppState>) -> OrcResult {
    let names: Vec<String> = super::native::live_clusters(&s).await?.into_iter().map(|c| c.name).collect();
    Ok(Json(names).into_response())
}

async fn clusters_info(State(s): State<AppState>) -> OrcResult {
    let list: Vec<Value> = super::native::live_clusters(&s)
        .await?
        .iter()
        .map(|c| cluster_info(&c.name, c.alias.as_deref(), c.members.len()))
        .collect();
    Ok(Json(list).into_response())
}

async fn live(s: &AppState, caller: Caller, h: &str) -> Result<(Cluster, PlanInputs), ApiError> {
    let c = discover(s, caller, &hint(h)?).await?;
    Ok((c, s.engine.plan_inputs()?))
}

async fn cluster(State(s): State<AppState>, Extension(caller): Extension<Caller>, Path(h): Path<String>) -> OrcResult {
    let (c, inp) = live(&s, caller, &h).await?;
    Ok(Json(c.members.iter().map(|m| instance_json(m, &c, &inp)).collect::<Vec<_>>()).into_response())
}

async fn cluster_info_of(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(h): Path<String>,
) -> OrcResult {
    let (c, _) = live(&s, caller, &h).await?;
    Ok(Json(cluster_info(&c.name, c.alias.as_deref(), c.members.len())).into_response())
}

async fn instance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port)): Path<(String, String)>,
) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    let (c, inp) = live(&s, caller, &k.to_string()).await?;
    let m = c.member(&k).ok_or_else(|| ApiError::NotFound(format!("{k} is not a member of {}", c.name)))?;
    Ok(Json(instance_json(m, &c, &inp)).into_response())
}

async fn master(State(s): State<AppState>, Extension(caller): Extension<Caller>, Path(h): Path<String>) -> OrcResult {
    let (c, inp) = live(&s, caller, &h).await?;
    let m = c
        .master
        .as_ref()
        .and_then(|k| c.member(k))
        .ok_or_else(|| ApiError::NotFound(format!("cluster {} has no single master", c.name)))?;
    Ok(Json(instance_json(m, &c, &inp)).into_response())
}

async fn instance_replicas(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port)): Path<(String, String)>,
) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    let (c, inp) = live(&s, caller, &k.to_string()).await?;
    Ok(Json(c.replicas_of(&k).iter().map(|m| instance_json(m, &c, &inp)).collect::<Vec<_>>()).into_response())
}

async fn topology(State(s): State<AppState>, Extension(caller): Extension<Caller>, Path(h): Path<String>) -> OrcResult {
    let (c, _) = live(&s, caller, &h).await?;
    let tree = crate::topology::render::tree(&c);
    Ok(ok(format!("Topology for cluster {}", c.name), json!(tree.trim_end())))
}

async fn topology_tabulated(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(h): Path<String>,
) -> OrcResult {
    let (c, _) = live(&s, caller, &h).await?;
    let table = crate::topology::render::tabulated(&c);
    Ok(ok(format!("Topology for cluster {}", c.name), json!(table.trim_end())))
}

/// Every remembered cluster, discovered live (a few at a time); clusters that cannot be reached
/// are left out (their members would be unreachable anyway).
async fn all_live(s: &AppState, caller: Caller) -> Result<Vec<Cluster>, ApiError> {
    use futures::stream::{self, StreamExt};
    let known = s.engine.store.clusters()?;
    let reach = &caller.reach(s)?;
    let found: Vec<Option<Cluster>> = stream::iter(known)
        .map(|k| async move { super::native::discover_within(s, &k.name, reach).await.ok() })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut clusters: Vec<Cluster> = found.into_iter().flatten().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(clusters)
}

async fn all_instances(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> OrcResult {
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let all: Vec<Value> = all_live(&s, caller)
        .await?
        .iter()
        .flat_map(|c| c.members.iter().map(|m| instance_json(m, c, &inputs)).collect::<Vec<_>>())
        .collect();
    Ok(Json(all).into_response())
}

async fn masters(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> OrcResult {
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let all: Vec<Value> = all_live(&s, caller)
        .await?
        .iter()
        .filter_map(|c| c.master.as_ref().and_then(|k| c.member(k)).map(|m| instance_json(m, c, &inputs)))
        .collect();
    Ok(Json(all).into_response())
}

/// The replicas an online schema change tool watches for lag: every reachable replica.
async fn cluster_osc_replicas(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(h): Path<String>,
) -> OrcResult {
    let (c, inputs) = live(&s, caller, &h).await?;
    let replicas: Vec<Value> = c
        .members
        .iter()
        .filter(|m| Some(&m.key) != c.master.as_ref() && m.instance.is_some())
        .map(|m| instance_json(m, &c, &inputs))
        .collect();
    Ok(Json(replicas).into_response())
}

/// Baton's problems of every remembered cluster (or one) in orchestrator's `ReplicationAnalysis`
/// shape. The `Analysis` codes are Baton's problem kinds (orchestrator's failure-detection codes
/// belong to failover, which Baton does not do).
async fn replication_analysis(s: &AppState, caller: Caller, hint_text: Option<&str>) -> OrcResult {
    let clusters = match hint_text {
        Some(h) => vec![live(s, caller, h).await?.0],
        None => all_live(s, caller).await?,
    };
    let mut entries = Vec::new();
    for c in &clusters {
        for p in &c.problems {
            let is_master = c.master.as_ref() == Some(&p.instance);
            entries.push(json!({
                "AnalyzedInstanceKey": key(Some(&p.instance)),
                "AnalyzedInstanceMasterKey": key(c.member(&p.instance).and_then(|m| m.source.as_ref())),
                "ClusterDetails": cluster_info(&c.name, c.alias.as_deref(), c.members.len()),
                "IsMaster": is_master,
                "CountReplicas": c.replicas_of(&p.instance).len(),
                "Analysis": analysis_code(p.kind, is_master),
                "Description": p.message,
                "StructureAnalysis": Value::Array(vec![]),
                "IsDowntimed": false,
            }));
        }
    }
    Ok(ok("Analysis", Value::Array(entries)))
}

fn analysis_code(kind: crate::topology::ProblemKind, is_master: bool) -> &'static str {
    use crate::topology::ProblemKind::*;
    match kind {
        Unreachable if is_master => "UnreachableMaster",
        Unreachable => "UnreachableReplica",
        NoMaster => "NoWriteableMaster",
        MultipleMasters => "MultipleWriteableMasters",
        CoMaster => "CoMaster",
        ReplicationStopped => "ReplicationStopped",
        ReplicationBroken => "ReplicationBroken",
        Lagging => "ReplicaLagging",
        SecondWritable => "ReplicaIsWritable",
        SourceOutsideCluster => "SourceOutsideCluster",
        ErrantGtid => "ErrantGTID",
        AliasConflict => "AliasConflict",
    }
}

fn recoveries(s: &AppState, cluster: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let entries = s.engine.store.takeovers(None, 1000)?;
    Ok(entries
        .into_iter()
        .filter_map(|e| serde_json::from_value::<TakeoverReport>(e.record).ok())
        .filter(|r| !r.dry_run && r.status != Status::Refused)
        .filter(|r| {
            cluster
                .is_none_or(|c| r.cluster == c || r.alias.as_deref() == Some(c) || r.new_master.as_deref() == Some(c))
        })
        .map(|r| recovery_json(&r))
        .collect())
}

async fn audit_recovery(State(s): State<AppState>) -> OrcResult {
    Ok(Json(recoveries(&s, None)?).into_response())
}

async fn audit_recovery_of(State(s): State<AppState>, Path(h): Path<String>) -> OrcResult {
    Ok(Json(recoveries(&s, Some(&hint(&h)?))?).into_response())
}

async fn audit_recovery_steps(State(s): State<AppState>, Path(uid): Path<String>) -> OrcResult {
    let r = super::native::stored_report(&s, &uid)?;
    let steps: Vec<Value> = r
        .phases
        .iter()
        .enumerate()
        .map(|(n, p)| {
            json!({
                "Id": n + 1,
                "RecoveryUID": r.id,
                "AuditAt": rfc3339((r.started_at + p.start_ms as i64) / 1000),
                "Message": format!("{}: {:?} in {:.1} ms: {}", p.name.name(), p.outcome, p.duration_ms, p.detail),
            })
        })
        .collect();
    Ok(Json(steps).into_response())
}

async fn register_candidate(
    State(s): State<AppState>,
    Path((host, port, rule)): Path<(String, String, String)>,
) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    let rule: PromotionRule = rule.parse().map_err(ApiError::BadRequest)?;
    // orchestrator's candidate registrations expire (CandidateInstanceExpireMinutes, 60 by default).
    let entry = RuleEntry { instance: k.clone(), rule, until: Some(now_unix() + 3600) };
    s.engine.store.set_promotion_rule(&entry).map_err(ApiError::from)?;
    Ok(ok("Registered candidate", key(Some(&k))))
}

/// `3600`, `90s`, `30m`, `2h`, `1d`, in seconds, checked by `expiry_after` when used.
fn duration_s(text: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::BadRequest(format!("duration '{text}': a number with an optional unit s, m, h or d"));
    let (num, unit) = text.find(|c: char| !c.is_ascii_digit()).map(|i| text.split_at(i)).unwrap_or((text, "s"));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).filter(|d| *d > 0).ok_or_else(bad)
}

async fn begin_downtime(State(s): State<AppState>, Path(parts): Path<Vec<String>>) -> OrcResult {
    let [host, port, owner, reason, rest @ ..] = parts.as_slice() else {
        return Err(ApiError::BadRequest("begin-downtime/{host}/{port}/{owner}/{reason}[/{duration}]".into()).into());
    };
    let k = key_from_parts(host, port)?;
    let secs = match rest.first() {
        Some(d) => duration_s(d)?,
        None => 3600,
    };
    let until = expiry_after("duration", secs).map_err(ApiError::BadRequest)?;
    let d = Downtime { instance: k.clone(), owner: owner.clone(), reason: reason.clone(), until };
    s.engine.store.begin_downtime(&d).map_err(ApiError::from)?;
    Ok(ok("Downtime begun", key(Some(&k))))
}

async fn end_downtime(State(s): State<AppState>, Path((host, port)): Path<(String, String)>) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    s.engine.store.end_downtime(&k).map_err(ApiError::from)?;
    Ok(ok("Downtime ended", key(Some(&k))))
}

// ---- instance commands ------------------------------------------------------------------------

/// `start-replica/{h}/{p}` and the like; `relocate`/`move-below` take the target as two more
/// segments. Answers the instance after the change, as orchestrator does.
async fn instance_command(s: AppState, caller: Caller, parts: Vec<String>, name: &str) -> OrcResult {
    let k = key_from_parts(&parts[0], &parts[1])?;
    let cmd = match name {
        "start-replica" | "start-slave" => InstanceCommand::StartReplica,
        "stop-replica" | "stop-slave" => InstanceCommand::StopReplica,
        "restart-replica" => InstanceCommand::RestartReplica,
        "set-read-only" => InstanceCommand::SetReadOnly,
        "set-writeable" => InstanceCommand::SetWriteable,
        "move-up" => InstanceCommand::MoveUp,
        _ => match parts.get(2..4) {
            Some([h, p]) => InstanceCommand::Relocate { below: key_from_parts(h, p)? },
            _ => {
                return Err(
                    ApiError::BadRequest(format!("{name}/{{host}}/{{port}}/{{below host}}/{{below port}}")).into()
                )
            }
        },
    };
    let (_, result) = s.engine.instance_command(&k, cmd, &caller.who()).await;
    let c = result.map_err(|e| match e {
        CommandError::Busy { .. } => ApiError::Conflict(e.to_string()),
        CommandError::Refused { .. } => ApiError::Refused(e.to_string()),
        CommandError::Failed { .. } => ApiError::Internal(e.to_string()),
    })?;
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let m = c.member(&k).ok_or_else(|| ApiError::NotFound(format!("{k} is not a member of {}", c.name)))?;
    Ok(ok(format!("{name}: {k}"), instance_json(m, &c, &inputs)))
}

/// `relocate-replicas/{h}/{p}/{below h}/{below p}`: every direct replica of the instance goes
/// below the target, one `relocate` each (each checked, locked and recorded on its own).
async fn relocate_replicas(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(parts): Path<Vec<String>>,
) -> OrcResult {
    let [h, p, th, tp] = parts.as_slice() else {
        return Err(ApiError::BadRequest("relocate-replicas/{host}/{port}/{below host}/{below port}".into()).into());
    };
    let (k, target) = (key_from_parts(h, p)?, key_from_parts(th, tp)?);
    let (c, _) = live(&s, caller, &k.to_string()).await?;
    let replicas: Vec<InstanceKey> = c.replicas_of(&k).iter().map(|m| m.key.clone()).filter(|r| *r != target).collect();
    let (mut moved, mut failed) = (Vec::new(), Vec::new());
    let mut last = None;
    for r in &replicas {
        let (_, result) =
            s.engine.instance_command(r, InstanceCommand::Relocate { below: target.clone() }, &caller.who()).await;
        match result {
            Ok(after) => {
                moved.push(r.clone());
                last = Some(after);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        let done: Vec<String> = moved.iter().map(|k| k.to_string()).collect();
        return Err(ApiError::Internal(format!(
            "relocate-replicas: moved [{}]; not moved: {}",
            done.join(", "),
            failed.join("; ")
        ))
        .into());
    }
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let details: Vec<Value> = match &last {
        Some(c) => moved.iter().filter_map(|k| c.member(k)).map(|m| instance_json(m, c, &inputs)).collect(),
        None => Vec::new(),
    };
    Ok(ok(format!("Relocated {} replicas of {k} below {target}", moved.len()), Value::Array(details)))
}

/// `forget/{h}/{p}`: drop an instance from its remembered cluster; `forget-cluster/{hint}`: drop
/// the cluster. Only Baton's memory changes.
async fn forget(State(s): State<AppState>, Path((host, port)): Path<(String, String)>) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    if !s.engine.store.forget_member(&k).map_err(ApiError::from)? {
        return Err(ApiError::NotFound(format!("{k} is not a member of a remembered cluster")).into());
    }
    Ok(ok(format!("Forgotten: {k}"), key(Some(&k))))
}

async fn forget_cluster(State(s): State<AppState>, Path(h): Path<String>) -> OrcResult {
    let h = hint(&h)?;
    if !s.engine.store.forget_cluster(&h).map_err(ApiError::from)? {
        return Err(ApiError::NotFound(format!("no remembered cluster is named or aliased {h}")).into());
    }
    Ok(ok(format!("Forgotten cluster: {h}"), Value::Null))
}

/// `discover/{h}/{p}`: discover and remember the cluster of any member (an admin action: it may
/// reach a server Baton does not know yet).
async fn discover_instance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port)): Path<(String, String)>,
) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    let (c, inputs) = live(&s, caller, &k.to_string()).await?;
    let m = c.member(&k).ok_or_else(|| ApiError::NotFound(format!("{k} is not a member of {}", c.name)))?;
    Ok(ok(format!("Instance discovered: {k}"), instance_json(m, &c, &inputs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_652_602), "2026-11-26T00:23:22Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(duration_s("90").unwrap(), 90);
        assert_eq!(duration_s("30m").unwrap(), 1800);
        assert_eq!(duration_s("2h").unwrap(), 7200);
        assert!(duration_s("0").is_err() && duration_s("5y").is_err() && duration_s("m").is_err());
    }
}
