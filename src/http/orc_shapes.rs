//! orchestrator's answer shapes as typed structs, with orchestrator's field names (as in the
//! answers of orchestrator 3.2.6 captured in `shared/reference/orchestrator-api/`; the HTTP tests
//! check every captured name is present). Values orchestrator has and Baton does not track
//! (uptime, semi-sync, data centre, ...) are given their zero value.

use serde::Serialize;

use crate::engine::{PlanInputs, Status, TakeoverReport};
use crate::store::{now_unix, PromotionRule};
use crate::topology::{BinlogCoordinates, Cluster, Flavor, GtidMode, GtidState, InstanceKey, Member, ThreadState};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Key {
    pub hostname: String,
    pub port: u16,
}

pub fn key(k: Option<&InstanceKey>) -> Key {
    match k {
        Some(k) => Key { hostname: k.host.clone(), port: k.port },
        None => Key { hostname: String::new(), port: 0 },
    }
}

fn keys(list: &[String]) -> Vec<Key> {
    list.iter().map(|k| key(k.parse().ok().as_ref())).collect()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coords {
    pub log_file: String,
    pub log_pos: u64,
    #[serde(rename = "Type")]
    pub kind: u8,
}

fn coords(c: Option<&BinlogCoordinates>, kind: u8) -> Coords {
    match c {
        Some(c) => Coords { log_file: c.file.clone(), log_pos: c.pos, kind },
        None => Coords { log_file: String::new(), log_pos: 0, kind },
    }
}

/// Go's `sql.NullInt64`.
#[derive(Serialize)]
pub struct NullInt {
    #[serde(rename = "Int64")]
    pub int64: u64,
    #[serde(rename = "Valid")]
    pub valid: bool,
}

fn null_int(v: Option<u64>) -> NullInt {
    NullInt { int64: v.unwrap_or(0), valid: v.is_some() }
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

/// An orchestrator `Instance`: a reachable member in full, an unreachable one as far as known.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Instance {
    Reachable(Box<Probed>),
    Unreachable(Unreachable),
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Unreachable {
    pub key: Key,
    pub master_key: Key,
    pub cluster_name: String,
    pub suggested_cluster_alias: String,
    pub replication_depth: u32,
    pub is_last_check_valid: bool,
    pub is_up_to_date: bool,
    pub is_recently_checked: bool,
    pub problems: Vec<String>,
    pub promotion_rule: String,
    pub is_downtimed: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probed {
    pub key: Key,
    pub instance_alias: String,
    pub uptime: u64,
    #[serde(rename = "ServerID")]
    pub server_id: u32,
    #[serde(rename = "ServerUUID")]
    pub server_uuid: String,
    pub version: String,
    pub version_comment: String,
    pub flavor_name: &'static str,
    pub read_only: bool,
    #[serde(rename = "Binlog_format")]
    pub binlog_format: String,
    pub binlog_row_image: String,
    pub log_bin_enabled: bool,
    pub log_slave_updates_enabled: bool,
    pub log_replication_updates_enabled: bool,
    pub self_binlog_coordinates: Coords,
    pub master_key: Key,
    #[serde(rename = "MasterUUID")]
    pub master_uuid: String,
    #[serde(rename = "AncestryUUID")]
    pub ancestry_uuid: String,
    pub is_detached_master: bool,
    #[serde(rename = "Slave_SQL_Running")]
    pub slave_sql_running: bool,
    #[serde(rename = "ReplicationSQLThreadRuning")]
    pub replication_sql_thread_runing: bool,
    #[serde(rename = "Slave_IO_Running")]
    pub slave_io_running: bool,
    #[serde(rename = "ReplicationIOThreadRuning")]
    pub replication_io_thread_runing: bool,
    #[serde(rename = "ReplicationSQLThreadState")]
    pub replication_sql_thread_state: i32,
    #[serde(rename = "ReplicationIOThreadState")]
    pub replication_io_thread_state: i32,
    pub has_replication_filters: bool,
    #[serde(rename = "GTIDMode")]
    pub gtid_mode: String,
    #[serde(rename = "SupportsOracleGTID")]
    pub supports_oracle_gtid: bool,
    #[serde(rename = "UsingOracleGTID")]
    pub using_oracle_gtid: bool,
    #[serde(rename = "UsingMariaDBGTID")]
    pub using_maria_db_gtid: bool,
    #[serde(rename = "UsingPseudoGTID")]
    pub using_pseudo_gtid: bool,
    pub read_binlog_coordinates: Coords,
    pub exec_binlog_coordinates: Coords,
    pub is_detached: bool,
    pub relaylog_coordinates: Coords,
    #[serde(rename = "LastSQLError")]
    pub last_sql_error: String,
    #[serde(rename = "LastIOError")]
    pub last_io_error: String,
    pub seconds_behind_master: NullInt,
    #[serde(rename = "SQLDelay")]
    pub sql_delay: u64,
    pub executed_gtid_set: String,
    pub gtid_purged: String,
    pub gtid_errant: String,
    pub slave_lag_seconds: NullInt,
    pub replication_lag_seconds: NullInt,
    pub slave_hosts: Vec<Key>,
    pub replicas: Vec<Key>,
    pub cluster_name: String,
    pub suggested_cluster_alias: String,
    pub data_center: String,
    pub region: String,
    pub physical_environment: String,
    pub replication_depth: u32,
    pub is_co_master: bool,
    pub has_replication_credentials: bool,
    pub replication_credentials_available: bool,
    pub semi_sync_available: bool,
    pub semi_sync_priority: u32,
    pub semi_sync_master_enabled: bool,
    pub semi_sync_replica_enabled: bool,
    pub semi_sync_master_timeout: u64,
    pub semi_sync_master_wait_for_replica_count: u32,
    pub semi_sync_master_status: bool,
    pub semi_sync_master_clients: u32,
    pub semi_sync_replica_status: bool,
    pub last_seen_timestamp: String,
    pub is_last_check_valid: bool,
    pub is_up_to_date: bool,
    pub is_recently_checked: bool,
    pub seconds_since_last_seen: NullInt,
    #[serde(rename = "CountMySQLSnapshots")]
    pub count_mysql_snapshots: u32,
    pub is_candidate: bool,
    pub promotion_rule: String,
    pub is_downtimed: bool,
    pub downtime_reason: String,
    pub downtime_owner: String,
    pub downtime_end_timestamp: String,
    pub elapsed_downtime: u64,
    pub unresolved_hostname: String,
    #[serde(rename = "AllowTLS")]
    pub allow_tls: bool,
    pub problems: Vec<String>,
    pub last_discovery_latency: u64,
    pub replication_group_name: String,
    pub replication_group_is_single_primary: bool,
    pub replication_group_member_state: String,
    pub replication_group_member_role: String,
    pub replication_group_members: Vec<Key>,
    pub replication_group_primary_instance_key: Key,
}

/// The orchestrator `Instance` for one member of `c`.
pub fn instance(m: &Member, c: &Cluster, inputs: &PlanInputs) -> Instance {
    let rule = inputs.rule(&m.key);
    let downtime = inputs.downtimes.get(&m.key);
    let problems: Vec<String> = c.problems.iter().filter(|p| p.instance == m.key).map(|p| p.message.clone()).collect();
    let replicas = || c.replicas_of(&m.key).iter().map(|r| key(Some(&r.key))).collect::<Vec<_>>();
    let Some(i) = &m.instance else {
        return Instance::Unreachable(Unreachable {
            key: key(Some(&m.key)),
            master_key: key(m.source.as_ref()),
            cluster_name: c.name.clone(),
            suggested_cluster_alias: c.alias.clone().unwrap_or_default(),
            replication_depth: m.depth.unwrap_or(0),
            is_last_check_valid: false,
            is_up_to_date: false,
            is_recently_checked: true,
            problems,
            promotion_rule: rule.to_string(),
            is_downtimed: downtime.is_some(),
        });
    };
    let r = i.replication.as_ref();
    let lag = r.and_then(|r| r.seconds_behind);
    let (gtid_mode, executed) = match &i.gtid {
        GtidState::MySql { mode, executed } => (mode.to_string(), executed.to_string()),
        GtidState::MariaDb { .. } => (String::new(), String::new()),
    };
    let error =
        |e: Option<&crate::topology::ThreadError>| e.map(|e| format!("{}: {}", e.errno, e.message)).unwrap_or_default();
    let ss = i.semi_sync.as_ref();
    let sql_running = r.is_some_and(|r| r.sql_thread.running());
    let io_running = r.is_some_and(|r| r.io_thread.running());
    Instance::Reachable(Box::new(Probed {
        key: key(Some(&i.key)),
        instance_alias: String::new(),
        uptime: 0,
        server_id: i.server_id,
        server_uuid: i.server_uuid.clone().unwrap_or_default(),
        version: i.version.clone(),
        version_comment: i.version_comment.clone(),
        flavor_name: if i.flavor == Flavor::MySql { "MySQL" } else { "MariaDB" },
        read_only: i.read_only,
        binlog_format: i.binlog_format.clone(),
        binlog_row_image: String::new(),
        log_bin_enabled: i.log_bin,
        log_slave_updates_enabled: i.log_slave_updates,
        log_replication_updates_enabled: i.log_slave_updates,
        self_binlog_coordinates: coords(i.binlog.as_ref(), 0),
        master_key: key(r.map(|r| &r.source)),
        master_uuid: String::new(),
        ancestry_uuid: String::new(),
        is_detached_master: false,
        slave_sql_running: sql_running,
        replication_sql_thread_runing: sql_running,
        slave_io_running: io_running,
        replication_io_thread_runing: io_running,
        replication_sql_thread_state: thread_state(r.map(|r| r.sql_thread)),
        replication_io_thread_state: thread_state(r.map(|r| r.io_thread)),
        has_replication_filters: false,
        gtid_mode,
        supports_oracle_gtid: i.flavor == Flavor::MySql,
        using_oracle_gtid: r.is_some_and(|r| i.flavor == Flavor::MySql && r.gtid_mode != GtidMode::No),
        using_maria_db_gtid: r.is_some_and(|r| i.flavor == Flavor::MariaDb && r.gtid_mode != GtidMode::No),
        using_pseudo_gtid: false,
        read_binlog_coordinates: coords(r.and_then(|r| r.read_coordinates.as_ref()), 0),
        exec_binlog_coordinates: coords(r.and_then(|r| r.exec_coordinates.as_ref()), 0),
        is_detached: false,
        relaylog_coordinates: coords(None, 1),
        last_sql_error: error(r.and_then(|r| r.last_sql_error.as_ref())),
        last_io_error: error(r.and_then(|r| r.last_io_error.as_ref())),
        seconds_behind_master: null_int(lag),
        sql_delay: r.map(|r| r.sql_delay).unwrap_or(0),
        executed_gtid_set: executed,
        gtid_purged: String::new(),
        gtid_errant: String::new(),
        slave_lag_seconds: null_int(lag.or(r.is_none().then_some(0))),
        replication_lag_seconds: null_int(lag.or(r.is_none().then_some(0))),
        slave_hosts: replicas(),
        replicas: replicas(),
        cluster_name: c.name.clone(),
        suggested_cluster_alias: c.alias.clone().unwrap_or_default(),
        data_center: String::new(),
        region: String::new(),
        physical_environment: String::new(),
        replication_depth: m.depth.unwrap_or(0),
        is_co_master: false,
        has_replication_credentials: r.is_some(),
        replication_credentials_available: false,
        semi_sync_available: ss.is_some(),
        semi_sync_priority: 0,
        semi_sync_master_enabled: ss.is_some_and(|s| s.master_enabled),
        semi_sync_replica_enabled: ss.is_some_and(|s| s.replica_enabled),
        semi_sync_master_timeout: ss.map(|s| s.master_timeout_ms).unwrap_or(0),
        semi_sync_master_wait_for_replica_count: ss.map(|s| s.wait_for_replica_count as u32).unwrap_or(0),
        semi_sync_master_status: ss.is_some_and(|s| s.master_status),
        semi_sync_master_clients: ss.map(|s| s.master_clients as u32).unwrap_or(0),
        semi_sync_replica_status: ss.is_some_and(|s| s.replica_status),
        last_seen_timestamp: rfc3339(now_unix()),
        is_last_check_valid: true,
        is_up_to_date: true,
        is_recently_checked: true,
        seconds_since_last_seen: null_int(Some(0)),
        count_mysql_snapshots: 0,
        is_candidate: rule == PromotionRule::Prefer,
        promotion_rule: rule.to_string(),
        is_downtimed: downtime.is_some(),
        downtime_reason: downtime.map(|d| d.reason.clone()).unwrap_or_default(),
        downtime_owner: downtime.map(|d| d.owner.clone()).unwrap_or_default(),
        downtime_end_timestamp: downtime.map(|d| rfc3339(d.until)).unwrap_or_default(),
        elapsed_downtime: 0,
        unresolved_hostname: String::new(),
        allow_tls: r.is_some_and(|r| r.ssl),
        problems,
        last_discovery_latency: (i.probe_ms * 1e6) as u64,
        replication_group_name: String::new(),
        replication_group_is_single_primary: false,
        replication_group_member_state: String::new(),
        replication_group_member_role: String::new(),
        replication_group_members: Vec::new(),
        replication_group_primary_instance_key: key(None),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterInfo {
    pub cluster_name: String,
    pub cluster_alias: String,
    pub cluster_domain: String,
    pub count_instances: usize,
    pub heuristic_lag: u64,
    pub has_automated_master_recovery: bool,
    pub has_automated_intermediate_master_recovery: bool,
}

pub fn cluster_info(name: &str, alias: Option<&str>, count: usize) -> ClusterInfo {
    ClusterInfo {
        cluster_name: name.to_string(),
        cluster_alias: alias.unwrap_or_default().to_string(),
        cluster_domain: String::new(),
        count_instances: count,
        heuristic_lag: 0,
        has_automated_master_recovery: false,
        has_automated_intermediate_master_recovery: false,
    }
}

/// One entry of `replication-analysis`: a problem Baton sees on an instance.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProblemEntry {
    pub analyzed_instance_key: Key,
    pub analyzed_instance_master_key: Key,
    pub cluster_details: ClusterInfo,
    pub is_master: bool,
    pub count_replicas: usize,
    pub analysis: &'static str,
    pub description: String,
    pub structure_analysis: Vec<String>,
    pub is_downtimed: bool,
}

pub fn problem_entry(c: &Cluster, p: &crate::topology::Problem) -> ProblemEntry {
    let is_master = c.master.as_ref() == Some(&p.instance);
    ProblemEntry {
        analyzed_instance_key: key(Some(&p.instance)),
        analyzed_instance_master_key: key(c.member(&p.instance).and_then(|m| m.source.as_ref())),
        cluster_details: cluster_info(&c.name, c.alias.as_deref(), c.members.len()),
        is_master,
        count_replicas: c.replicas_of(&p.instance).len(),
        analysis: analysis_code(p.kind, is_master),
        description: p.message.clone(),
        structure_analysis: Vec::new(),
        is_downtimed: false,
    }
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

/// The `AnalysisEntry` of a takeover's recovery record.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Analysis {
    pub analyzed_instance_key: Key,
    pub analyzed_instance_master_key: Key,
    pub cluster_details: ClusterInfo,
    pub analyzed_instance_data_center: String,
    pub analyzed_instance_region: String,
    pub analyzed_instance_physical_environment: String,
    pub analyzed_instance_binlog_coordinates: Coords,
    pub is_master: bool,
    pub is_replication_group_member: bool,
    pub is_co_master: bool,
    pub last_check_valid: bool,
    pub last_check_partial_success: bool,
    pub count_replicas: usize,
    pub count_valid_replicas: usize,
    pub count_valid_replicating_replicas: usize,
    pub count_replicas_failing_to_connect_to_master: usize,
    pub count_downtimed_replicas: usize,
    pub replication_depth: u32,
    pub replicas: Vec<Key>,
    pub slave_hosts: Vec<Key>,
    pub is_failing_to_connect_to_master: bool,
    pub analysis: &'static str,
    pub description: String,
    pub structure_analysis: Option<Vec<String>>,
    pub is_downtimed: bool,
    pub is_replicas_downtimed: bool,
    pub downtime_end_timestamp: String,
    pub downtime_remaining_seconds: u64,
    pub is_binlog_server: bool,
    #[serde(rename = "PseudoGTIDImmediateTopology")]
    pub pseudo_gtid_immediate_topology: bool,
    #[serde(rename = "OracleGTIDImmediateTopology")]
    pub oracle_gtid_immediate_topology: bool,
    #[serde(rename = "MariaDBGTIDImmediateTopology")]
    pub mariadb_gtid_immediate_topology: bool,
    pub binlog_server_immediate_topology: bool,
    pub semi_sync_master_enabled: bool,
    pub semi_sync_master_status: bool,
    pub semi_sync_master_wait_for_replica_count: u32,
    pub semi_sync_master_clients: u32,
    pub count_semi_sync_replicas_enabled: u32,
    pub count_logging_replicas: usize,
    pub count_statement_based_logging_replicas: usize,
    pub count_mixed_based_logging_replicas: usize,
    pub count_row_based_logging_replicas: usize,
    pub count_distinct_major_versions_logging_replicas: usize,
    pub count_delayed_replicas: usize,
    pub count_lagging_replicas: usize,
    pub is_actionable_recovery: bool,
    pub processing_node_hostname: String,
    pub processing_node_token: String,
    pub count_additional_agreeing_nodes: u32,
    pub start_active_period: String,
    pub skippable_due_to_downtime: bool,
    #[serde(rename = "GTIDMode")]
    pub gtid_mode: String,
    #[serde(rename = "MinReplicaGTIDMode")]
    pub min_replica_gtid_mode: String,
    #[serde(rename = "MaxReplicaGTIDMode")]
    pub max_replica_gtid_mode: String,
    #[serde(rename = "MaxReplicaGTIDErrant")]
    pub max_replica_gtid_errant: String,
    pub command_hint: &'static str,
    pub is_read_only: bool,
}

/// An orchestrator `TopologyRecovery`: one takeover.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Recovery {
    pub id: i64,
    #[serde(rename = "UID")]
    pub uid: String,
    pub analysis_entry: Analysis,
    pub successor_key: Option<Key>,
    pub successor_alias: String,
    pub successor_binlog_coordinates: Coords,
    pub is_active: bool,
    pub is_successful: bool,
    pub lost_replicas: Vec<Key>,
    pub participating_instance_keys: Vec<Key>,
    pub all_errors: Vec<String>,
    pub recovery_start_timestamp: String,
    pub recovery_end_timestamp: String,
    pub processing_node_hostname: String,
    pub processing_node_token: String,
    pub acknowledged: bool,
    pub acknowledged_at: String,
    pub acknowledged_by: String,
    pub acknowledged_comment: String,
    pub last_detection_id: i64,
    pub related_recovery_id: i64,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub recovery_type: &'static str,
}

pub fn recovery(r: &TakeoverReport) -> Recovery {
    let old: Option<InstanceKey> = r.old_master.as_deref().and_then(|k| k.parse().ok());
    let new: Option<InstanceKey> = r.new_master.as_deref().and_then(|k| k.parse().ok());
    let promoted = matches!(r.status, Status::Promoted | Status::PromotedWithErrors);
    let end = r.started_at + r.total_ms as i64;
    let valid = r.replicas.len() - r.lost_replicas.len().min(r.replicas.len());
    let analysis = Analysis {
        analyzed_instance_key: key(old.as_ref()),
        analyzed_instance_master_key: key(None),
        cluster_details: cluster_info(&r.cluster, r.alias.as_deref(), r.replicas.len() + 1),
        analyzed_instance_data_center: String::new(),
        analyzed_instance_region: String::new(),
        analyzed_instance_physical_environment: String::new(),
        analyzed_instance_binlog_coordinates: coords(None, 0),
        is_master: true,
        is_replication_group_member: false,
        is_co_master: false,
        last_check_valid: true,
        last_check_partial_success: true,
        count_replicas: r.replicas.len(),
        count_valid_replicas: valid,
        count_valid_replicating_replicas: valid,
        count_replicas_failing_to_connect_to_master: 0,
        count_downtimed_replicas: r.lost_replicas.len(),
        replication_depth: 0,
        replicas: keys(&r.replicas),
        slave_hosts: keys(&r.replicas),
        is_failing_to_connect_to_master: false,
        analysis: "DeadMaster",
        description: String::new(),
        structure_analysis: None,
        is_downtimed: false,
        is_replicas_downtimed: false,
        downtime_end_timestamp: String::new(),
        downtime_remaining_seconds: 0,
        is_binlog_server: false,
        pseudo_gtid_immediate_topology: false,
        oracle_gtid_immediate_topology: false,
        mariadb_gtid_immediate_topology: true,
        binlog_server_immediate_topology: false,
        semi_sync_master_enabled: false,
        semi_sync_master_status: false,
        semi_sync_master_wait_for_replica_count: 0,
        semi_sync_master_clients: 0,
        count_semi_sync_replicas_enabled: 0,
        count_logging_replicas: r.replicas.len(),
        count_statement_based_logging_replicas: 0,
        count_mixed_based_logging_replicas: 0,
        count_row_based_logging_replicas: r.replicas.len(),
        count_distinct_major_versions_logging_replicas: 1,
        count_delayed_replicas: 0,
        count_lagging_replicas: 0,
        is_actionable_recovery: true,
        processing_node_hostname: String::new(),
        processing_node_token: String::new(),
        count_additional_agreeing_nodes: 0,
        start_active_period: String::new(),
        skippable_due_to_downtime: false,
        gtid_mode: String::new(),
        min_replica_gtid_mode: String::new(),
        max_replica_gtid_mode: String::new(),
        max_replica_gtid_errant: String::new(),
        command_hint: "graceful-master-takeover",
        is_read_only: false,
    };
    let participating: Vec<String> = [r.old_master.clone(), r.new_master.clone()].into_iter().flatten().collect();
    Recovery {
        id: r.started_at,
        uid: r.id.clone(),
        analysis_entry: analysis,
        successor_key: promoted.then(|| key(new.as_ref())),
        successor_alias: String::new(),
        successor_binlog_coordinates: coords(None, 0),
        is_active: r.status == Status::Running,
        is_successful: promoted,
        lost_replicas: keys(&r.lost_replicas),
        participating_instance_keys: keys(&participating),
        all_errors: r.errors.clone(),
        recovery_start_timestamp: rfc3339(r.started_at / 1000),
        recovery_end_timestamp: if r.status == Status::Running { String::new() } else { rfc3339(end / 1000) },
        processing_node_hostname: String::new(),
        processing_node_token: String::new(),
        acknowledged: false,
        acknowledged_at: String::new(),
        acknowledged_by: String::new(),
        acknowledged_comment: String::new(),
        last_detection_id: 0,
        related_recovery_id: 0,
        kind: "MasterRecovery",
        recovery_type: "MasterRecoveryGTID",
    }
}

/// One step of `audit-recovery-steps`: a phase of the takeover.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecoveryStep {
    pub id: usize,
    #[serde(rename = "RecoveryUID")]
    pub recovery_uid: String,
    pub audit_at: String,
    pub message: String,
}

pub fn recovery_steps(r: &TakeoverReport) -> Vec<RecoveryStep> {
    r.phases
        .iter()
        .enumerate()
        .map(|(n, p)| RecoveryStep {
            id: n + 1,
            recovery_uid: r.id.clone(),
            audit_at: rfc3339((r.started_at + p.start_ms as i64) / 1000),
            message: format!("{}: {:?} in {:.1} ms: {}", p.name.name(), p.outcome, p.duration_ms, p.detail),
        })
        .collect()
}

/// `health`'s details.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub healthy: bool,
    pub is_active_node: bool,
    pub error: Option<String>,
}
