//! What one probe of one server found: the `Instance` and its replication status.

use serde::{Deserialize, Serialize};

use super::gtid::{GtidPos, GtidSet};
use super::key::InstanceKey;

/// The server family. Decides the SQL dialect and how GTIDs are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    /// Tells the flavor from `@@version` / `@@version_comment`.
    pub fn detect(version: &str, version_comment: &str) -> Flavor {
        let both = format!("{version} {version_comment}").to_ascii_lowercase();
        if both.contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }
}

/// `major.minor.patch` parsed from `@@version` (`10.11.6-MariaDB-log`, `8.0.36`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Version(pub u16, pub u16, pub u16);

impl Version {
    pub fn parse(v: &str) -> Version {
        // Over the protocol MariaDB may announce itself as "5.5.5-10.11.6-MariaDB".
        let v = v.strip_prefix("5.5.5-").unwrap_or(v);
        let mut nums =
            v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<u16>().unwrap_or(0));
        Version(nums.next().unwrap_or(0), nums.next().unwrap_or(0), nums.next().unwrap_or(0))
    }
}

/// A binary log file and offset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BinlogCoordinates {
    pub file: String,
    pub pos: u64,
}

impl BinlogCoordinates {
    /// The binary log's sequence number: the numeric extension of its file name (`mysql-bin.000042`
    /// is 42; the extension widens past 999999, so it is compared as a number, not as text).
    pub fn file_index(&self) -> u64 {
        self.file.rsplit_once('.').and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
    }
}

impl std::fmt::Display for BinlogCoordinates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// GTID state, per flavor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flavor", rename_all = "lowercase")]
pub enum GtidState {
    MariaDb {
        binlog_pos: GtidPos,
        current_pos: GtidPos,
        slave_pos: GtidPos,
        strict_mode: bool,
    },
    MySql {
        /// `@@gtid_mode`: OFF, OFF_PERMISSIVE, ON_PERMISSIVE, ON.
        mode: String,
        executed: GtidSet,
    },
}

impl GtidState {
    /// Whether GTID-based replication can be used from/to this server.
    pub fn enabled(&self) -> bool {
        match self {
            GtidState::MariaDb { .. } => true,
            GtidState::MySql { mode, .. } => mode.eq_ignore_ascii_case("ON"),
        }
    }

    /// Transactions this server wrote itself that `master` does not have: errant when `self` is a
    /// replica. The check must hold although the two states were read at different moments (the
    /// replica may have received transactions newer than the master's snapshot):
    /// * MariaDB: a GTID of the replica's `gtid_binlog_pos` or `gtid_current_pos` that replication
    ///   does not explain (it differs from `gtid_slave_pos` for its domain) is errant when the
    ///   master has not reached its sequence, or when it carries a server id that is neither the
    ///   master's nor that of the master's own last GTID in the domain. The second rule catches a
    ///   local write whose sequence number the master has already passed (`0-2-9` on a replica at
    ///   `0-1-8` while the master is at `0-1-10`), which sequence numbers alone cannot tell.
    /// * MySQL: executed minus the master's executed, leaving out the master's own uuid (those can
    ///   only be transactions newer than the master's snapshot).
    pub fn errant_against(
        &self,
        master: &GtidState,
        master_uuid: Option<&str>,
        master_server_id: u32,
    ) -> Option<String> {
        match (self, master) {
            (
                GtidState::MariaDb { binlog_pos, current_pos, slave_pos, .. },
                GtidState::MariaDb { binlog_pos: m, current_pos: mc, .. },
            ) => {
                let known = m.union(mc);
                let mut errant: Vec<String> = binlog_pos
                    .iter()
                    .chain(current_pos.iter())
                    .filter(|g| slave_pos.get(g.domain) != Some(*g))
                    .filter(|g| {
                        let k = known.get(g.domain);
                        let beyond = k.is_none_or(|k| k.seq < g.seq);
                        let foreign = g.server != master_server_id && k.is_none_or(|k| k.server != g.server);
                        beyond || foreign
                    })
                    .map(|g| format!("{}-{}-{}", g.domain, g.server, g.seq))
                    .collect();
                errant.sort();
                errant.dedup();
                (!errant.is_empty()).then(|| errant.join(","))
            }
            (GtidState::MySql { executed, .. }, GtidState::MySql { executed: m, .. }) => {
                let mut errant = executed.subtract(m);
                if let Some(u) = master_uuid {
                    errant = errant.without_uuid(u);
                }
                (!errant.is_empty()).then(|| errant.to_string())
            }
            _ => None,
        }
    }

    /// MariaDB's `gtid_strict_mode`: with it OFF, a local write can go unnoticed by replication
    /// (see `errant_against` for what can still be detected). Always true for MySQL.
    pub fn strict(&self) -> bool {
        match self {
            GtidState::MariaDb { strict_mode, .. } => *strict_mode,
            GtidState::MySql { .. } => true,
        }
    }

    /// Transactions this server executed that `other` has not (MariaDB: per domain, sequence
    /// numbers beyond the other's `gtid_current_pos`; MySQL: the executed set minus the other's).
    /// None when there are none, or when the flavors differ.
    pub fn missing_from(&self, other: &GtidState) -> Option<String> {
        let missing = match (self, other) {
            (GtidState::MariaDb { current_pos: a, .. }, GtidState::MariaDb { current_pos: b, .. }) => {
                a.ahead_of(b).to_string()
            }
            (GtidState::MySql { executed: a, .. }, GtidState::MySql { executed: b, .. }) => a.subtract(b).to_string(),
            _ => String::new(),
        };
        (!missing.is_empty()).then_some(missing)
    }

    /// A number that grows with executed transactions; comparable between replicas of one master.
    pub fn progress(&self) -> u128 {
        match self {
            GtidState::MariaDb { current_pos, .. } => current_pos.progress(),
            GtidState::MySql { executed, .. } => executed.count(),
        }
    }

    pub fn summary(&self) -> String {
        match self {
            GtidState::MariaDb { current_pos, .. } => format!("gtid {current_pos}"),
            GtidState::MySql { mode, executed } => format!("gtid_mode={mode} {}", executed.count()),
        }
    }
}

/// State of a replication thread as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadState {
    Yes,
    No,
    Connecting,
    Preparing,
}

impl ThreadState {
    pub fn parse(s: &str) -> ThreadState {
        match s.to_ascii_lowercase().as_str() {
            "yes" => ThreadState::Yes,
            "connecting" => ThreadState::Connecting,
            "preparing" => ThreadState::Preparing,
            _ => ThreadState::No,
        }
    }
    pub fn running(self) -> bool {
        self == ThreadState::Yes
    }
}

/// How a replica finds its position on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GtidMode {
    /// Binary log file and position.
    No,
    /// MariaDB `MASTER_USE_GTID=slave_pos`.
    SlavePos,
    /// MariaDB `MASTER_USE_GTID=current_pos`.
    CurrentPos,
    /// MySQL `SOURCE_AUTO_POSITION=1`.
    AutoPosition,
}

/// An error a replication thread reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadError {
    pub errno: u32,
    pub message: String,
}

/// `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`, read by column name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    pub source: InstanceKey,
    pub io_thread: ThreadState,
    pub sql_thread: ThreadState,
    /// `Seconds_Behind_Master`; `None` when the server reports NULL (e.g. the SQL thread is stopped).
    pub seconds_behind: Option<u64>,
    /// Coordinates on the source up to which events were read (IO thread).
    pub read_coordinates: Option<BinlogCoordinates>,
    /// Coordinates on the source up to which events were executed (SQL thread).
    pub exec_coordinates: Option<BinlogCoordinates>,
    pub gtid_mode: GtidMode,
    pub last_io_error: Option<ThreadError>,
    pub last_sql_error: Option<ThreadError>,
    pub sql_delay: u64,
    pub ssl: bool,
}

impl ReplicationStatus {
    pub fn running(&self) -> bool {
        self.io_thread.running() && self.sql_thread.running()
    }
    pub fn broken(&self) -> bool {
        self.last_io_error.is_some() || self.last_sql_error.is_some()
    }
}

/// Everything one probe learned about one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub key: InstanceKey,
    pub flavor: Flavor,
    pub version: String,
    pub version_comment: String,
    pub server_id: u32,
    /// MySQL only.
    pub server_uuid: Option<String>,
    pub read_only: bool,
    /// MySQL only.
    pub super_read_only: Option<bool>,
    pub log_bin: bool,
    pub log_slave_updates: bool,
    pub binlog_format: String,
    pub gtid: GtidState,
    /// `SHOW MASTER STATUS`: this server's own binary log position (None without log_bin).
    pub binlog: Option<BinlogCoordinates>,
    /// None when no replication is configured (a master, or a standalone server).
    pub replication: Option<ReplicationStatus>,
    /// Replicas that report to this server (`SHOW SLAVE HOSTS` / `SHOW REPLICAS`).
    pub reported_replicas: Vec<InstanceKey>,
    /// How long the probe took, in milliseconds.
    pub probe_ms: f64,
    /// The server's clock minus Baton's when the probe's answer arrived (seconds; the round trip
    /// makes it approximate). None when the server did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_s: Option<f64>,
    /// Semi-synchronous replication, both sides. None when the server has none (MySQL without the
    /// plugins loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<SemiSync>,
}

/// Semi-synchronous replication as one server has it configured and running (MariaDB's
/// `rpl_semi_sync_master_*`/`slave_*`, MySQL's `rpl_semi_sync_source_*`/`replica_*` or the older
/// names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SemiSync {
    /// Master side switched on: commits wait for a replica's acknowledgement.
    pub master_enabled: bool,
    /// Master side actually waiting right now (off when it fell back to asynchronous).
    pub master_status: bool,
    /// Semi-sync replicas connected.
    pub master_clients: u64,
    /// How long a commit waits for an acknowledgement before falling back (ms).
    pub master_timeout_ms: u64,
    /// `AFTER_SYNC` or `AFTER_COMMIT`.
    pub wait_point: String,
    /// Keep waiting when no semi-sync replica is connected.
    pub wait_no_replica: bool,
    /// Acknowledgements a commit needs (MySQL's `wait_for_replica_count`; MariaDB: always 1).
    pub wait_for_replica_count: u64,
    /// Replica side switched on.
    pub replica_enabled: bool,
    /// Replica side acknowledging right now.
    pub replica_status: bool,
}

impl SemiSync {
    /// Reads `SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'` and `SHOW GLOBAL STATUS LIKE
    /// 'Rpl_semi_sync%'` as (name, value) pairs, names in any case, old or new spellings. None
    /// when the server has no semi-sync variables at all.
    pub fn from_pairs(vars: &[(String, String)], status: &[(String, String)]) -> Option<SemiSync> {
        if vars.is_empty() {
            return None;
        }
        let get = |list: &[(String, String)], names: &[&str]| -> Option<String> {
            list.iter()
                .find(|(n, _)| names.iter().any(|w| n.eq_ignore_ascii_case(w)))
                .map(|(_, v)| v.trim().to_string())
        };
        let on = |v: Option<String>| v.is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "ON" | "1" | "YES"));
        let num = |v: Option<String>| v.and_then(|v| v.parse().ok());
        Some(SemiSync {
            master_enabled: on(get(vars, &["rpl_semi_sync_master_enabled", "rpl_semi_sync_source_enabled"])),
            master_status: on(get(status, &["Rpl_semi_sync_master_status", "Rpl_semi_sync_source_status"])),
            master_clients: num(get(status, &["Rpl_semi_sync_master_clients", "Rpl_semi_sync_source_clients"]))
                .unwrap_or(0),
            master_timeout_ms: num(get(vars, &["rpl_semi_sync_master_timeout", "rpl_semi_sync_source_timeout"]))
                .unwrap_or(0),
            wait_point: get(vars, &["rpl_semi_sync_master_wait_point", "rpl_semi_sync_source_wait_point"])
                .unwrap_or_default(),
            wait_no_replica: on(get(
                vars,
                &["rpl_semi_sync_master_wait_no_slave", "rpl_semi_sync_source_wait_no_replica"],
            )),
            wait_for_replica_count: num(get(
                vars,
                &["rpl_semi_sync_master_wait_for_slave_count", "rpl_semi_sync_source_wait_for_replica_count"],
            ))
            .unwrap_or(1),
            replica_enabled: on(get(vars, &["rpl_semi_sync_slave_enabled", "rpl_semi_sync_replica_enabled"])),
            replica_status: on(get(status, &["Rpl_semi_sync_slave_status", "Rpl_semi_sync_replica_status"])),
        })
    }
}

impl Instance {
    pub fn version_number(&self) -> Version {
        Version::parse(&self.version)
    }

    /// Writable for ordinary application users.
    pub fn writable(&self) -> bool {
        !self.read_only
    }

    pub fn source(&self) -> Option<&InstanceKey> {
        self.replication.as_ref().map(|r| &r.source)
    }

    /// Can serve as a master to others after promotion: binary log on, and replicated events
    /// logged so that its own replicas see everything.
    pub fn can_be_master(&self) -> bool {
        self.log_bin && self.log_slave_updates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_and_version() {
        assert_eq!(Flavor::detect("10.11.6-MariaDB-0+deb12u1-log", "Debian 12"), Flavor::MariaDb);
        assert_eq!(Flavor::detect("8.0.36", "MySQL Community Server - GPL"), Flavor::MySql);
        assert_eq!(Version::parse("10.11.6-MariaDB-log"), Version(10, 11, 6));
        assert_eq!(Version::parse("8.0.36"), Version(8, 0, 36));
        assert!(Version::parse("8.4.0") > Version::parse("8.0.36"));
    }

    #[test]
    fn errant_gtids() {
        let m = GtidState::MariaDb {
            binlog_pos: "0-1-10".parse().unwrap(),
            current_pos: "0-1-10".parse().unwrap(),
            slave_pos: Default::default(),
            strict_mode: true,
        };
        let ok = GtidState::MariaDb {
            binlog_pos: "0-1-8".parse().unwrap(),
            current_pos: "0-1-8".parse().unwrap(),
            slave_pos: "0-1-8".parse().unwrap(),
            strict_mode: true,
        };
        let errant = GtidState::MariaDb {
            binlog_pos: "0-2-11".parse().unwrap(),
            current_pos: "0-2-11".parse().unwrap(),
            slave_pos: "0-1-10".parse().unwrap(),
            strict_mode: true,
        };
        assert_eq!(ok.errant_against(&m, None, 1), None);
        assert_eq!(errant.errant_against(&m, None, 1).as_deref(), Some("0-2-11"));
        // Replicated further than the master's (older) snapshot: not errant.
        let ahead = GtidState::MariaDb {
            binlog_pos: "0-1-12".parse().unwrap(),
            current_pos: "0-1-12".parse().unwrap(),
            slave_pos: "0-1-12".parse().unwrap(),
            strict_mode: true,
        };
        assert_eq!(ahead.errant_against(&m, None, 1), None);
        // A demoted master's own old writes, known to the new master: not errant.
        let demoted = GtidState::MariaDb {
            binlog_pos: "0-1-10".parse().unwrap(),
            current_pos: "0-1-10".parse().unwrap(),
            slave_pos: Default::default(),
            strict_mode: true,
        };
        // ... also when the new master (server 2) has not written since.
        assert_eq!(demoted.errant_against(&m, None, 2), None);
        // A local write the master's sequence has already passed (issue 16): 0-2-9 on a replica
        // that applied 0-1-8, with the master (server 1) at 0-1-10.
        let lax = GtidState::MariaDb {
            binlog_pos: "0-2-9".parse().unwrap(),
            current_pos: "0-2-9".parse().unwrap(),
            slave_pos: "0-1-8".parse().unwrap(),
            strict_mode: false,
        };
        assert_eq!(lax.errant_against(&m, None, 1).as_deref(), Some("0-2-9"));
        assert!(!lax.strict());
        // The same shape, replicated (slave_pos explains it): clean.
        let replicated = GtidState::MariaDb {
            binlog_pos: "0-2-9".parse().unwrap(),
            current_pos: "0-2-9".parse().unwrap(),
            slave_pos: "0-2-9".parse().unwrap(),
            strict_mode: false,
        };
        assert_eq!(replicated.errant_against(&m, None, 1), None);
        // Old history from a third server that the master also has last in that domain: clean.
        let m3 = GtidState::MariaDb {
            binlog_pos: "0-3-7".parse().unwrap(),
            current_pos: "0-3-7".parse().unwrap(),
            slave_pos: "0-3-7".parse().unwrap(),
            strict_mode: true,
        };
        let old = GtidState::MariaDb {
            binlog_pos: "0-3-7".parse().unwrap(),
            current_pos: "0-3-7".parse().unwrap(),
            slave_pos: Default::default(),
            strict_mode: true,
        };
        assert_eq!(old.errant_against(&m3, None, 1), None);
    }
}
