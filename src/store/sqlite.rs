//! The embedded store: one SQLite file, `baton.db`, in the data directory.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_unix, AuditEntry, DamagedRecord, Downtime, KnownCluster, PromotionRule, RuleEntry, Store, StoreError};
use crate::topology::InstanceKey;

pub struct SqliteStore {
    path: String,
    db: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clusters (name TEXT PRIMARY KEY, alias TEXT, members TEXT NOT NULL, seen_at INTEGER NOT NULL,
    claimed_alias TEXT);
CREATE INDEX IF NOT EXISTS clusters_alias ON clusters(alias);
CREATE TABLE IF NOT EXISTS promotion_rules (instance TEXT PRIMARY KEY, rule TEXT NOT NULL, until INTEGER);
CREATE TABLE IF NOT EXISTS downtimes (instance TEXT PRIMARY KEY, owner TEXT NOT NULL, reason TEXT NOT NULL, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cluster_locks (cluster TEXT PRIMARY KEY, takeover_id TEXT NOT NULL, since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS takeovers (id TEXT PRIMARY KEY, cluster TEXT NOT NULL, status TEXT NOT NULL,
    started_at INTEGER NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS takeovers_cluster ON takeovers(cluster, started_at);
CREATE TABLE IF NOT EXISTS damaged_records (source TEXT NOT NULL, id TEXT NOT NULL, record TEXT, error TEXT NOT NULL,
    moved_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS operations (id TEXT PRIMARY KEY, cluster TEXT NOT NULL, status TEXT NOT NULL,
    started_at INTEGER NOT NULL, record TEXT NOT NULL);
";

impl SqliteStore {
    /// Opens (creating when needed) `DIR/baton.db`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { path: dir.display().to_string(), source })?;
        let path = dir.join("baton.db");
        let p = path.display().to_string();
        let err = |source| StoreError::Sqlite { path: p.clone(), source };
        let db = Connection::open(&path).map_err(err)?;
        db.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;").map_err(err)?;
        db.execute_batch(SCHEMA).map_err(err)?;
        migrate(&db).map_err(err)?;
        Ok(SqliteStore { path: p, db: Mutex::new(db) })
    }

    /// A store that lives in memory only (offline tools, unit tests).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let p = ":memory:".to_string();
        let err = |source| StoreError::Sqlite { path: p.clone(), source };
        let db = Connection::open_in_memory().map_err(err)?;
        db.execute_batch(SCHEMA).map_err(err)?;
        Ok(SqliteStore { path: p, db: Mutex::new(db) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let db = self.db.lock().expect("store mutex poisoned");
        f(&db).map_err(|source| StoreError::Sqlite { path: self.path.clone(), source })
    }
}

/// Brings a store made by an older Baton up to the current schema.
fn migrate(db: &Connection) -> rusqlite::Result<()> {
    let has_claimed: bool =
        db.query_row("SELECT COUNT(*) FROM pragma_table_info('clusters') WHERE name = 'claimed_alias'", [], |r| {
            r.get(0)
        })?;
    if !has_claimed {
        db.execute_batch("ALTER TABLE clusters ADD COLUMN claimed_alias TEXT")?;
    }
    Ok(())
}

fn key_of(s: String) -> rusqlite::Result<InstanceKey> {
    s.parse().map_err(|e: crate::topology::KeyError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn cluster_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KnownCluster> {
    let members: String = r.get(2)?;
    let members = serde_json::from_str(&members)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(KnownCluster { name: r.get(0)?, alias: r.get(1)?, members, claimed_alias: r.get(3)?, seen_at: r.get(4)? })
}

/// Takes `cluster`'s lock for `id` inside `tx`; the holder when someone has it already.
/// A write transaction that takes the write lock at BEGIN (IMMEDIATE): two processes that both
/// want to write get the busy answer up front (a clear refusal), never a deferred transaction that
/// fails at its first write with "database is locked".
fn write_tx(db: &rusqlite::Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(db, rusqlite::TransactionBehavior::Immediate)
}

fn take_lock(tx: &rusqlite::Transaction<'_>, cluster: &str, id: &str) -> rusqlite::Result<Option<String>> {
    let holder: Option<String> =
        tx.query_row("SELECT takeover_id FROM cluster_locks WHERE cluster = ?1", [cluster], |r| r.get(0)).optional()?;
    if holder.is_none() {
        tx.execute(
            "INSERT INTO cluster_locks (cluster, takeover_id, since) VALUES (?1, ?2, ?3)",
            params![cluster, id, now_unix()],
        )?;
    }
    Ok(holder)
}

/// Writes (or replaces) one audit record of `table` (`takeovers` or `operations`).
fn insert_record(db: &Connection, table: &str, e: &AuditEntry) -> rusqlite::Result<()> {
    db.execute(
        &format!(
            "INSERT OR REPLACE INTO {table} (id, cluster, status, started_at, record) VALUES (?1, ?2, ?3, ?4, ?5)"
        ),
        params![e.id, e.cluster, e.status, e.started_at, e.record.to_string()],
    )
    .map(|_| ())
}

/// One audit row, or why it cannot be read (the row's id, when even that can be read).
type AuditRow = Result<AuditEntry, (String, String)>;

/// Reads an audit row without failing the whole query on one damaged row.
fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    let id: String = r.get::<_, rusqlite::types::Value>(0).map(|v| match v {
        rusqlite::types::Value::Text(t) => t,
        other => format!("{other:?}"),
    })?;
    let read = || -> Result<AuditEntry, String> {
        let text: String = r.get(4).map_err(|e| e.to_string())?;
        let record = serde_json::from_str(&text).map_err(|e| format!("record: {e}"))?;
        Ok(AuditEntry {
            id: id.clone(),
            cluster: r.get(1).map_err(|e| e.to_string())?,
            status: r.get(2).map_err(|e| e.to_string())?,
            started_at: r.get(3).map_err(|e| e.to_string())?,
            record,
        })
    };
    Ok(read().map_err(|e| (id.clone(), e)))
}

/// The readable rows; the damaged ones are logged by id and left out.
fn readable(table: &str, rows: Vec<AuditRow>) -> Vec<AuditEntry> {
    rows.into_iter()
        .filter_map(|r| {
            r.map_err(|(id, e)| tracing::warn!(table, id = %id, error = %e, "a damaged record is skipped (baton store check, baton store repair)")).ok()
        })
        .collect()
}

impl Store for SqliteStore {
    fn remember_cluster(&self, c: &KnownCluster) -> Result<(), StoreError> {
        let members = serde_json::to_string(&c.members).expect("keys serialize");
        self.with(|db| {
            // A member belongs to one cluster: forget older clusters that claimed these members
            // (after a takeover the cluster's name changes with its master). An alias is never
            // taken from another cluster here (`discovery::remember` decides who owns it).
            let tx = write_tx(db)?;
            let mut old: Vec<KnownCluster> = {
                let mut st = tx.prepare("SELECT name, alias, members, claimed_alias, seen_at FROM clusters WHERE name <> ?1")?;
                let rows = st.query_map([&c.name], cluster_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
                rows
            };
            old.retain(|o| o.members.iter().any(|m| c.members.contains(m)));
            for o in old {
                tx.execute("DELETE FROM clusters WHERE name = ?1", [&o.name])?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO clusters (name, alias, members, seen_at, claimed_alias) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.name, c.alias, members, now_unix(), c.claimed_alias],
            )?;
            tx.commit()
        })
    }

    fn find_cluster(&self, hint: &str) -> Result<Option<KnownCluster>, StoreError> {
        self.with(|db| {
            db.query_row(
                "SELECT name, alias, members, claimed_alias, seen_at FROM clusters WHERE alias = ?1 OR name = ?1 ORDER BY seen_at DESC LIMIT 1",
                [hint],
                cluster_row,
            )
            .optional()
        })
    }

    fn cluster_of(&self, key: &InstanceKey) -> Result<Option<KnownCluster>, StoreError> {
        Ok(self.clusters()?.into_iter().find(|c| c.members.contains(key)))
    }

    fn clusters(&self) -> Result<Vec<KnownCluster>, StoreError> {
        self.with(|db| {
            let mut st =
                db.prepare("SELECT name, alias, members, claimed_alias, seen_at FROM clusters ORDER BY name")?;
            let rows = st.query_map([], cluster_row)?.collect();
            rows
        })
    }

    fn move_alias(&self, alias: &str, to: &str) -> Result<bool, StoreError> {
        self.with(|db| {
            let tx = write_tx(db)?;
            if tx.query_row("SELECT COUNT(*) FROM clusters WHERE name = ?1", [to], |r| r.get::<_, i64>(0))? == 0 {
                return Ok(false);
            }
            tx.execute("UPDATE clusters SET alias = NULL WHERE alias = ?1", [alias])?;
            tx.execute("UPDATE clusters SET claimed_alias = NULL WHERE claimed_alias = ?1 AND name = ?2", [alias, to])?;
            tx.execute("UPDATE clusters SET alias = ?1 WHERE name = ?2", [alias, to])?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn set_promotion_rule(&self, e: &RuleEntry) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute(
                "INSERT OR REPLACE INTO promotion_rules (instance, rule, until) VALUES (?1, ?2, ?3)",
                params![e.instance.to_string(), e.rule.to_string(), e.until],
            )
            .map(|_| ())
        })
    }

    fn clear_promotion_rule(&self, key: &InstanceKey) -> Result<(), StoreError> {
        self.with(|db| db.execute("DELETE FROM promotion_rules WHERE instance = ?1", [key.to_string()]).map(|_| ()))
    }

    fn promotion_rules(&self) -> Result<Vec<RuleEntry>, StoreError> {
        let rows: Vec<(String, String, Option<i64>)> = self.with(|db| {
            let mut st = db.prepare(
                "SELECT instance, rule, until FROM promotion_rules WHERE until IS NULL OR until > ?1 ORDER BY instance",
            )?;
            let rows = st.query_map([now_unix()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect();
            rows
        })?;
        rows.into_iter()
            .map(|(i, r, until)| {
                let instance = key_of(i)
                    .map_err(|e| StoreError::Corrupt { what: "promotion rule".into(), detail: e.to_string() })?;
                let rule: PromotionRule =
                    r.parse().map_err(|e: String| StoreError::Corrupt { what: "promotion rule".into(), detail: e })?;
                Ok(RuleEntry { instance, rule, until })
            })
            .collect()
    }

    fn begin_downtime(&self, d: &Downtime) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute(
                "INSERT OR REPLACE INTO downtimes (instance, owner, reason, until) VALUES (?1, ?2, ?3, ?4)",
                params![d.instance.to_string(), d.owner, d.reason, d.until],
            )
            .map(|_| ())
        })
    }

    fn end_downtime(&self, key: &InstanceKey) -> Result<bool, StoreError> {
        self.with(|db| db.execute("DELETE FROM downtimes WHERE instance = ?1", [key.to_string()]).map(|n| n > 0))
    }

    fn downtimes(&self) -> Result<Vec<Downtime>, StoreError> {
        self.with(|db| {
            let mut st =
                db.prepare("SELECT instance, owner, reason, until FROM downtimes WHERE until > ?1 ORDER BY instance")?;
            let rows = st
                .query_map([now_unix()], |r| {
                    Ok(Downtime { instance: key_of(r.get(0)?)?, owner: r.get(1)?, reason: r.get(2)?, until: r.get(3)? })
                })?
                .collect();
            rows
        })
    }

    fn lock_cluster(&self, cluster: &str, takeover_id: &str) -> Result<Option<String>, StoreError> {
        self.with(|db| {
            let tx = write_tx(db)?;
            let holder = take_lock(&tx, cluster, takeover_id)?;
            tx.commit()?;
            Ok(holder)
        })
    }

    fn unlock_cluster(&self, cluster: &str, takeover_id: &str) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute("DELETE FROM cluster_locks WHERE cluster = ?1 AND takeover_id = ?2", [cluster, takeover_id])
                .map(|_| ())
        })
    }

    fn lock_cluster_journaled(&self, cluster: &str, e: &AuditEntry) -> Result<Option<String>, StoreError> {
        self.with(|db| {
            let tx = write_tx(db)?;
            let holder = take_lock(&tx, cluster, &e.id)?;
            if holder.is_none() {
                insert_record(&tx, "takeovers", e)?;
                tx.commit()?;
            }
            Ok(holder)
        })
    }

    fn release_locks_of(&self, takeover_id: &str) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            let tx = write_tx(db)?;
            let clusters: Vec<String> = {
                let mut st = tx.prepare("SELECT cluster FROM cluster_locks WHERE takeover_id = ?1")?;
                let rows = st.query_map([takeover_id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
                rows
            };
            tx.execute("DELETE FROM cluster_locks WHERE takeover_id = ?1", [takeover_id])?;
            tx.commit()?;
            Ok(clusters)
        })
    }

    fn save_takeover(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.with(|db| insert_record(db, "takeovers", e))
    }

    fn forget_cluster(&self, hint: &str) -> Result<bool, StoreError> {
        self.with(|db| db.execute("DELETE FROM clusters WHERE name = ?1 OR alias = ?1", [hint]).map(|n| n > 0))
    }

    fn forget_member(&self, key: &InstanceKey) -> Result<bool, StoreError> {
        let Some(mut c) = self.cluster_of(key)? else { return Ok(false) };
        c.members.retain(|m| m != key);
        let members = serde_json::to_string(&c.members).expect("keys serialize");
        self.with(|db| {
            db.execute("UPDATE clusters SET members = ?1 WHERE name = ?2", params![members, c.name]).map(|_| true)
        })
    }

    fn save_operation(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.with(|db| insert_record(db, "operations", e))
    }

    fn operations(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|db| {
            let mut st = db.prepare(
                "SELECT id, cluster, status, started_at, record FROM operations ORDER BY started_at DESC LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], audit_row)?.collect::<rusqlite::Result<Vec<_>>>();
            rows
        })
        .map(|rows| readable("operations", rows))
    }

    fn takeover(&self, id: &str) -> Result<Option<AuditEntry>, StoreError> {
        let row = self.with(|db| {
            db.query_row("SELECT id, cluster, status, started_at, record FROM takeovers WHERE id = ?1", [id], audit_row)
                .optional()
        })?;
        row.transpose().map_err(|(id, detail)| StoreError::Corrupt { what: format!("takeover {id}"), detail })
    }

    fn takeovers(&self, cluster: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|db| {
            let mut st = db.prepare(
                "SELECT id, cluster, status, started_at, record FROM takeovers \
                 WHERE ?1 IS NULL OR cluster = ?1 ORDER BY started_at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![cluster, limit as i64], audit_row)?.collect::<rusqlite::Result<Vec<_>>>();
            rows
        })
        .map(|rows| readable("takeovers", rows))
    }

    fn unsettled_takeovers(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|db| {
            let mut st = db.prepare(
                "SELECT id, cluster, status, started_at, record FROM takeovers WHERE status IN ('running', 'needs_operator') ORDER BY rowid",
            )?;
            let rows = st.query_map([], audit_row)?.collect::<rusqlite::Result<Vec<_>>>();
            rows
        })
        .map(|rows| readable("takeovers", rows))
    }

    fn damaged(&self) -> Result<Vec<DamagedRecord>, StoreError> {
        let mut out = Vec::new();
        for table in ["takeovers", "operations"] {
            let rows: Vec<AuditRow> = self.with(|db| {
                let mut st = db.prepare(&format!("SELECT id, cluster, status, started_at, record FROM {table}"))?;
                let rows = st.query_map([], audit_row)?.collect::<rusqlite::Result<Vec<_>>>();
                rows
            })?;
            out.extend(rows.into_iter().filter_map(|r| r.err()).map(|(id, error)| DamagedRecord {
                table: table.into(),
                id,
                error,
            }));
        }
        Ok(out)
    }

    fn set_aside_damaged(&self) -> Result<usize, StoreError> {
        let damaged = self.damaged()?;
        self.with(|db| {
            let tx = write_tx(db)?;
            for d in &damaged {
                tx.execute(
                    &format!("INSERT INTO damaged_records (source, id, record, error, moved_at) SELECT ?1, id, CAST(record AS TEXT), ?2, ?3 FROM {} WHERE id = ?4", d.table),
                    params![d.table, d.error, now_unix(), d.id],
                )?;
                tx.execute(&format!("DELETE FROM {} WHERE id = ?1", d.table), [&d.id])?;
            }
            tx.commit()
        })?;
        Ok(damaged.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: SQLite's terse errors say what they mean; busy is told apart.
    #[test]
    fn store_errors_say_what_to_check() {
        let err = |code: i32| StoreError::Sqlite {
            path: "d/baton.db".into(),
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        };
        assert!(err(8).to_string().contains("read-only"), "{}", err(8)); // SQLITE_READONLY
        assert!(err(13).to_string().contains("full"), "{}", err(13)); // SQLITE_FULL
        assert!(err(10).to_string().contains("immutable"), "{}", err(10)); // SQLITE_IOERR
        assert!(err(5).is_busy() && err(6).is_busy() && !err(8).is_busy()); // BUSY, LOCKED
    }

    /// Issue 19: the lock and the first record in one transaction; a second lock gets the holder.
    #[test]
    fn lock_and_first_record_together() {
        let (s, dir) = store();
        let e = AuditEntry {
            id: "t1".into(),
            cluster: "c".into(),
            status: "running".into(),
            started_at: 1,
            record: serde_json::json!({}),
        };
        assert_eq!(s.lock_cluster_journaled("c", &e).unwrap(), None);
        assert!(s.takeover("t1").unwrap().is_some());
        let e2 = AuditEntry { id: "t2".into(), ..e.clone() };
        assert_eq!(s.lock_cluster_journaled("c", &e2).unwrap(), Some("t1".into()));
        assert!(s.takeover("t2").unwrap().is_none(), "no record without the lock");
        assert_eq!(s.release_locks_of("t1").unwrap(), vec!["c".to_string()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 19, items 2 and 4: one damaged record does not stop listing or recovery, it is named
    /// and can be set aside; an unsettled takeover is found whatever its age among newer ones.
    #[test]
    fn damaged_records_and_old_unsettled_takeovers() {
        let (s, dir) = store();
        let entry = |id: &str, status: &str, at: i64| AuditEntry {
            id: id.into(),
            cluster: "c".into(),
            status: status.into(),
            started_at: at,
            record: serde_json::json!({ "id": id }),
        };
        // An interrupted takeover written under a clock a year behind, then 1,000 newer ones.
        s.save_takeover(&entry("old-running", "running", 1_000)).unwrap();
        for i in 0..1000 {
            s.save_takeover(&entry(&format!("t{i}"), "promoted", 40_000_000_000 + i)).unwrap();
        }
        s.with(|db| db.execute("UPDATE takeovers SET record = '{not json' WHERE id = 't7'", [])).unwrap();
        assert_eq!(s.takeovers(None, 2000).unwrap().len(), 1000, "the damaged one is skipped, the rest listed");
        let unsettled: Vec<String> = s.unsettled_takeovers().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(unsettled, vec!["old-running".to_string()]);
        let damaged = s.damaged().unwrap();
        assert_eq!(damaged.len(), 1);
        assert_eq!((damaged[0].table.as_str(), damaged[0].id.as_str()), ("takeovers", "t7"));
        assert!(s.takeover("t7").unwrap_err().to_string().contains("takeover t7"));
        assert_eq!(s.set_aside_damaged().unwrap(), 1);
        assert!(s.damaged().unwrap().is_empty());
        assert!(s.takeover("t7").unwrap().is_none());
        let kept: i64 = s
            .with(|db| db.query_row("SELECT COUNT(*) FROM damaged_records WHERE id = 't7'", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(kept, 1, "set aside, not deleted");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("baton-store-{}", uuid::Uuid::new_v4()));
        (SqliteStore::open(&dir).unwrap(), dir)
    }

    #[test]
    fn clusters_rules_downtime_locks_audit() {
        let (s, dir) = store();
        let a: InstanceKey = "h:1".parse().unwrap();
        let b: InstanceKey = "h:2".parse().unwrap();
        s.remember_cluster(&KnownCluster {
            name: "h:1".into(),
            alias: Some("prod".into()),
            members: vec![a.clone(), b.clone()],
            claimed_alias: None,
            seen_at: 0,
        })
        .unwrap();
        assert_eq!(s.find_cluster("prod").unwrap().unwrap().name, "h:1");
        // After a takeover the cluster is renamed after its new master: the old entry goes.
        s.remember_cluster(&KnownCluster {
            name: "h:2".into(),
            alias: Some("prod".into()),
            members: vec![b.clone(), a.clone()],
            claimed_alias: None,
            seen_at: 0,
        })
        .unwrap();
        assert_eq!(s.clusters().unwrap().len(), 1);
        assert_eq!(s.cluster_of(&a).unwrap().unwrap().name, "h:2");

        s.set_promotion_rule(&RuleEntry { instance: a.clone(), rule: PromotionRule::MustNot, until: None }).unwrap();
        s.set_promotion_rule(&RuleEntry { instance: b.clone(), rule: PromotionRule::Prefer, until: Some(1) }).unwrap();
        assert_eq!(s.promotion_rules().unwrap().len(), 1, "expired rule is not in force");

        s.begin_downtime(&Downtime {
            instance: b.clone(),
            owner: "ops".into(),
            reason: "disk".into(),
            until: now_unix() + 60,
        })
        .unwrap();
        assert_eq!(s.downtimes().unwrap().len(), 1);
        assert!(s.end_downtime(&b).unwrap());
        assert!(s.downtimes().unwrap().is_empty());

        assert_eq!(s.lock_cluster("h:2", "t1").unwrap(), None);
        assert_eq!(s.lock_cluster("h:2", "t2").unwrap(), Some("t1".into()));
        s.unlock_cluster("h:2", "t2").unwrap(); // not the holder: no effect
        assert_eq!(s.lock_cluster("h:2", "t3").unwrap(), Some("t1".into()));
        s.unlock_cluster("h:2", "t1").unwrap();
        assert_eq!(s.lock_cluster("h:2", "t3").unwrap(), None);

        let e = AuditEntry {
            id: "t3".into(),
            cluster: "h:2".into(),
            status: "promoted".into(),
            started_at: 5,
            record: serde_json::json!({"x": 1}),
        };
        s.save_takeover(&e).unwrap();
        assert_eq!(s.takeover("t3").unwrap().unwrap(), e);
        assert_eq!(s.takeovers(Some("h:2"), 10).unwrap().len(), 1);
        assert!(s.takeovers(Some("other"), 10).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
