//! Baton's own state behind one small interface: remembered clusters (aliases, members), promotion
//! rules, downtime, the per-cluster takeover lock, and the takeover audit.
//!
//! `Store` is the interface; `SqliteStore` the embedded implementation in the data directory.
//! Several Baton nodes will later share state through another implementation (etcd, or a MySQL
//! backend): nothing outside this module knows it is SQLite.

mod etcd;
mod sqlite;

use serde::{Deserialize, Serialize};

pub use etcd::{EtcdStore, Fence};
pub use sqlite::SqliteStore;

/// The store the configuration names: etcd when `[ha] etcd_endpoints` lists any (state shared by
/// several Baton nodes), else SQLite in the data directory (one node).
pub fn open(cfg: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_fenced(cfg, Fence::default())
}

/// `open`, the etcd store's writes carrying the election key `fence` holds while this node leads.
pub fn open_fenced(cfg: &crate::config::Config, fence: Fence) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(if cfg.ha.etcd_endpoints.is_empty() {
        std::sync::Arc::new(SqliteStore::open(&cfg.paths.data_dir)?)
    } else {
        std::sync::Arc::new(
            EtcdStore::connect(
                &cfg.ha.etcd_endpoints,
                &cfg.ha.prefix,
                std::time::Duration::from_millis(cfg.ha.timeout_ms),
            )?
            .fenced_by(fence),
        )
    })
}

use crate::topology::InstanceKey;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}{}", sqlite_hint(source))]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("store {path}: cannot create directory: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error("store: bad record {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("store etcd ({endpoints}): {message}")]
    Etcd { endpoints: String, message: String },
    /// A node whose leadership lapsed writes nothing more (the leader settles its takeovers).
    #[error("store: this node no longer leads: it writes nothing more (the leader settles its takeovers)")]
    NotLeader,
}

impl StoreError {
    /// Another process holds the store (SQLite busy or locked past the busy timeout).
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. }
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
    }
}

/// What SQLite's terse errors mean for an operator.
fn sqlite_hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode::*;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ReadOnly => " (the store is read-only: check the permissions and attributes of baton.db, its -wal and -shm files and their directory)",
            DiskFull => " (the filesystem of the data directory is full)",
            SystemIoFailure => " (an I/O error: a full or read-only filesystem, or a baton.db made immutable?)",
            CannotOpen => " (cannot open it: check that the data directory exists and is writable)",
            DatabaseBusy | DatabaseLocked => " (another process holds it: another baton on the same data directory?)",
            _ => "",
        },
        _ => "",
    }
}

/// A cluster seen by discovery: how to find it again by alias or name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownCluster {
    pub name: String,
    /// The alias this cluster owns. An alias belongs to one cluster; only an admin moves it.
    pub alias: Option<String>,
    pub members: Vec<InstanceKey>,
    /// An alias this cluster's servers claim (the alias query's answer) that another cluster
    /// owns: a problem shown on both, never a rebinding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_alias: Option<String>,
    /// Unix seconds of the last discovery that found it (set by the store when remembering).
    #[serde(default)]
    pub seen_at: i64,
}

/// Orchestrator's promotion rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PromotionRule {
    Prefer,
    Neutral,
    PreferNot,
    MustNot,
}

impl std::str::FromStr for PromotionRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "prefer" | "must" => Ok(PromotionRule::Prefer),
            "neutral" => Ok(PromotionRule::Neutral),
            "prefer_not" => Ok(PromotionRule::PreferNot),
            "must_not" => Ok(PromotionRule::MustNot),
            _ => Err(format!("'{s}' is not a promotion rule (prefer, neutral, prefer_not, must_not)")),
        }
    }
}

impl std::fmt::Display for PromotionRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PromotionRule::Prefer => "prefer",
            PromotionRule::Neutral => "neutral",
            PromotionRule::PreferNot => "prefer_not",
            PromotionRule::MustNot => "must_not",
        })
    }
}

/// A promotion rule on an instance, optionally expiring (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleEntry {
    pub instance: InstanceKey,
    pub rule: PromotionRule,
    pub until: Option<i64>,
}

/// Downtime: the instance is known to be under maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downtime {
    pub instance: InstanceKey,
    pub owner: String,
    pub reason: String,
    pub until: i64,
}

/// One takeover as audited. `record` is the engine's full report as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: String,
    pub cluster: String,
    pub status: String,
    pub started_at: i64,
    pub record: serde_json::Value,
}

/// A stored record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedRecord {
    /// `takeovers` or `operations`.
    pub table: String,
    pub id: String,
    pub error: String,
}

pub fn now_unix() -> i64 {
    now_unix_ms() / 1000
}

/// The longest expiry Baton accepts for a promotion rule or a downtime: ten years. Longer is a
/// mistake (or an overflow in the making); "forever" is spelled by leaving the duration out
/// where a route allows it.
pub const MAX_DURATION_S: u64 = 10 * 366 * 86_400;

/// The expiry (unix seconds) `duration_s` from now, or an error naming `field` when the duration
/// is 0 or longer than [`MAX_DURATION_S`].
pub fn expiry_after(field: &str, duration_s: u64) -> Result<i64, String> {
    if duration_s == 0 || duration_s > MAX_DURATION_S {
        return Err(format!(
            "{field}: {duration_s} is not a duration from 1 to {MAX_DURATION_S} seconds (ten years); leave it out for no expiry where that is allowed"
        ));
    }
    Ok(now_unix() + duration_s as i64)
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The state Baton keeps. Implementations must be safe to call from many tasks.
pub trait Store: Send + Sync {
    fn remember_cluster(&self, cluster: &KnownCluster) -> Result<(), StoreError>;
    /// A remembered cluster by alias or name.
    fn find_cluster(&self, hint: &str) -> Result<Option<KnownCluster>, StoreError>;
    /// The remembered cluster that has `key` as a member.
    fn cluster_of(&self, key: &InstanceKey) -> Result<Option<KnownCluster>, StoreError>;
    fn clusters(&self) -> Result<Vec<KnownCluster>, StoreError>;
    /// Gives `alias` to the remembered cluster named `to` (an admin action), taking it from the
    /// cluster that owned it. False when no cluster is named `to`.
    fn move_alias(&self, alias: &str, to: &str) -> Result<bool, StoreError>;

    fn set_promotion_rule(&self, entry: &RuleEntry) -> Result<(), StoreError>;
    fn clear_promotion_rule(&self, key: &InstanceKey) -> Result<(), StoreError>;
    /// Rules in force now (expired ones are not returned).
    fn promotion_rules(&self) -> Result<Vec<RuleEntry>, StoreError>;

    fn begin_downtime(&self, d: &Downtime) -> Result<(), StoreError>;
    fn end_downtime(&self, key: &InstanceKey) -> Result<bool, StoreError>;
    /// Downtimes in force now.
    fn downtimes(&self) -> Result<Vec<Downtime>, StoreError>;

    /// Takes the takeover lock of `cluster` for `takeover_id`. Returns the holder's id when
    /// another takeover holds it.
    fn lock_cluster(&self, cluster: &str, takeover_id: &str) -> Result<Option<String>, StoreError>;
    fn unlock_cluster(&self, cluster: &str, takeover_id: &str) -> Result<(), StoreError>;

    /// Inserts or replaces the audit entry of a takeover.
    fn save_takeover(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    fn takeover(&self, id: &str) -> Result<Option<AuditEntry>, StoreError>;
    /// Newest first.
    fn takeovers(&self, cluster: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Takes the cluster lock and writes the takeover's first record in one transaction: a lock
    /// never exists without a record of its takeover. The holder when the lock is taken.
    fn lock_cluster_journaled(&self, cluster: &str, entry: &AuditEntry) -> Result<Option<String>, StoreError>;
    /// Releases every cluster lock held by `takeover_id`; the clusters released.
    fn release_locks_of(&self, takeover_id: &str) -> Result<Vec<String>, StoreError>;
    /// Takeovers not settled (running, or waiting for an operator): all of them, whatever their
    /// age or clock. Recovery reads these.
    fn unsettled_takeovers(&self) -> Result<Vec<AuditEntry>, StoreError>;
    /// Records that cannot be read (damaged JSON, wrong column types): skipped by every listing,
    /// named here.
    fn damaged(&self) -> Result<Vec<DamagedRecord>, StoreError>;
    /// Moves the damaged records aside (kept, not deleted); how many.
    fn set_aside_damaged(&self) -> Result<usize, StoreError>;
    /// Forgets the remembered cluster named (or aliased) `hint`. False when there is none.
    fn forget_cluster(&self, hint: &str) -> Result<bool, StoreError>;
    /// Removes `key` from the remembered cluster that lists it. False when none does.
    fn forget_member(&self, key: &InstanceKey) -> Result<bool, StoreError>;
    /// Records an instance command (start-replica, relocate, ...).
    fn save_operation(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Instance commands, newest first.
    fn operations(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// The Baton node sessions alive now when several share this store (each registered on its
    /// lease, `node_id/lease`); None for a store of one node.
    fn live_nodes(&self) -> Result<Option<Vec<String>>, StoreError> {
        Ok(None)
    }
    /// Deletes the settled takeovers and instance commands started before `before_ms` (unix ms);
    /// how many. Unsettled takeovers are never deleted. A store that is an archive (SQLite, on
    /// the node's own disk) keeps everything and deletes nothing.
    fn prune_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        let _ = before_ms;
        Ok(0)
    }
}
