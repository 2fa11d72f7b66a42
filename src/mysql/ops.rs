//! The write primitives of the takeover, one function each. Every one returns an `OpRecord`: the
//! statements it ran (passwords masked), on which instance, and how long it took, for the journal.
//! Waits are done by the server (`MASTER_GTID_WAIT`, `WAIT_FOR_EXECUTED_GTID_SET`,
//! `MASTER_POS_WAIT`): no polling loop.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::dialect::{Dialect, SourceSpec, Statement};
use super::{Connector, RowMap, SqlError};
use crate::topology::{BinlogCoordinates, GtidPos, InstanceKey};

/// What one primitive did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpRecord {
    pub instance: InstanceKey,
    pub statements: Vec<String>,
    pub ms: f64,
}

impl OpRecord {
    fn new(instance: &InstanceKey, stmts: &[Statement], elapsed: Duration) -> OpRecord {
        OpRecord {
            instance: instance.clone(),
            statements: stmts.iter().map(|s| s.shown.clone()).collect(),
            ms: elapsed.as_secs_f64() * 1000.0,
        }
    }
}

async fn run(
    conn: &Connector,
    key: &InstanceKey,
    stmts: Vec<Statement>,
    limit: Duration,
) -> Result<OpRecord, SqlError> {
    Ok(run_sets(conn, key, &stmts, limit).await?.0)
}

/// The statements in one round trip (one multi-statement query), with every result set. The
/// server stops at the first statement that fails, and the error names that one.
async fn run_sets(
    conn: &Connector,
    key: &InstanceKey,
    stmts: &[Statement],
    limit: Duration,
) -> Result<(OpRecord, Vec<Vec<RowMap>>), SqlError> {
    let start = Instant::now();
    let c = conn.conn(key).await?;
    // A connection that broke under the statements: all of them once more, on a new one (the
    // session settings among them must be on the connection that runs the rest).
    let sets = match run_on(conn, c, key, stmts, limit).await {
        Err(e) if e.connection_lost() => {
            let c = conn.reconnect(key, &e).await?;
            run_on(conn, c, key, stmts, limit).await?
        }
        r => r?,
    };
    Ok((OpRecord::new(key, stmts, start.elapsed()), sets))
}

async fn run_on(
    conn: &Connector,
    mut c: mysql_async::Conn,
    key: &InstanceKey,
    stmts: &[Statement],
    limit: Duration,
) -> Result<Vec<Vec<RowMap>>, SqlError> {
    use mysql_async::prelude::Queryable;
    let Some(last) = stmts.last() else { return Ok(Vec::new()) };
    let sql = stmts.iter().map(|s| s.sql.as_str()).collect::<Vec<_>>().join(";\n");
    let shown = stmts.iter().map(|s| s.shown.as_str()).collect::<Vec<_>>().join("; ");
    // Result sets read so far: the statement that failed is the next one (a statement of
    // several, like `own_position`'s, is the last of a batch).
    let mut done = 0usize;
    let sets = conn
        .bounded(key, &shown, limit, async {
            let mut result = c.query_iter(sql.as_str()).await?;
            let mut sets = Vec::new();
            loop {
                let rows: Vec<mysql_async::Row> = result.collect().await?;
                sets.push(rows.into_iter().map(RowMap::from_row).collect());
                done += 1;
                if result.is_empty() {
                    break;
                }
            }
            // A statement after the first that failed: its error is still unread (mysql_async
            // says "empty" after the set before it), and would otherwise answer the next query.
            result.drop_result().await?;
            Ok(sets)
        })
        .await;
    sets.map_err(|e| match e {
        // A broken connection carries no server message to mask (and `shown` is masked already).
        SqlError::Query { instance, source, .. } => {
            let s = stmts.get(done).unwrap_or(last);
            let e = SqlError::Query { instance, sql: s.shown.clone(), source };
            if e.connection_lost() {
                e
            } else {
                e.masked(s)
            }
        }
        other => other,
    })
}

pub async fn set_read_only(
    conn: &Connector,
    key: &InstanceKey,
    on: bool,
    lock_wait_s: u64,
) -> Result<OpRecord, SqlError> {
    let d = conn.dialect(key).await?;
    let stmts = statements::set_read_only(d.as_ref(), on, lock_wait_s);
    run(conn, key, stmts, Duration::from_secs(lock_wait_s) + conn.read_timeout()).await
}

/// Semi-sync switched per side (and the master side's settings), as `change` says.
pub async fn set_semi_sync(
    conn: &Connector,
    key: &InstanceKey,
    change: &super::dialect::SemiSyncChange,
) -> Result<OpRecord, SqlError> {
    let d = conn.dialect(key).await?;
    run(conn, key, d.set_semi_sync(change), conn.read_timeout()).await
}

/// A server's own executed position: its GTID position/set and binlog coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnPosition {
    pub gtid: String,
    pub coordinates: Option<BinlogCoordinates>,
}

pub async fn own_position(conn: &Connector, key: &InstanceKey) -> Result<OwnPosition, SqlError> {
    let d = conn.dialect(key).await?;
    Ok(position_from(&conn.query_sets(key, &d.own_position()).await?))
}

/// `own_position`'s two result sets: the GTID position, then the binlog status.
fn position_from(sets: &[Vec<RowMap>]) -> OwnPosition {
    let gtid = sets.first().and_then(|s| s.first()).map(|r| r.string(&["gtid"])).unwrap_or_default();
    let coordinates = sets
        .get(1)
        .and_then(|s| s.first())
        .and_then(|r| Some(BinlogCoordinates { file: r.text(&["File"])?.to_string(), pos: r.u64(&["Position"])? }));
    OwnPosition { gtid: gtid.replace('\n', ""), coordinates }
}

/// The fence: read_only on (with a bounded lock wait) and, in the same round trip, the position
/// the server stopped at.
pub async fn fence(conn: &Connector, key: &InstanceKey, lock_wait_s: u64) -> Result<(OpRecord, OwnPosition), SqlError> {
    let d = conn.dialect(key).await?;
    let stmts = statements::fence(d.as_ref(), lock_wait_s);
    let (op, sets) = run_sets(conn, key, &stmts, Duration::from_secs(lock_wait_s) + conn.read_timeout()).await?;
    // The position's two result sets are the last ones.
    let position = position_from(&sets[sets.len().saturating_sub(2)..]);
    Ok((op, position))
}

/// The promotion, in one round trip: replication stopped and forgotten, semi-sync's master side
/// as `semi_sync` says, then read_only off. The server stops at the first statement that fails.
pub async fn promote(
    conn: &Connector,
    key: &InstanceKey,
    semi_sync: Option<&super::dialect::SemiSyncChange>,
    lock_wait_s: u64,
) -> Result<OpRecord, SqlError> {
    let d = conn.dialect(key).await?;
    let stmts = statements::promote(d.as_ref(), semi_sync, lock_wait_s);
    run(conn, key, stmts, Duration::from_secs(lock_wait_s) + conn.read_timeout()).await
}

/// What a replica has executed of its source's transactions: MariaDB `@@gtid_slave_pos`, MySQL
/// `@@gtid_executed`.
pub async fn own_position_as_replica(conn: &Connector, key: &InstanceKey) -> Result<String, SqlError> {
    let d = conn.dialect(key).await?;
    let rows = conn.query(key, d.replicated_position()).await?;
    Ok(rows.first().map(|r| r.string(&["gtid"])).unwrap_or_default().replace('\n', ""))
}

/// Waits (in the server) until `key` has executed the GTID position/set `gtid`.
pub async fn wait_for_gtid(
    conn: &Connector,
    d: &dyn Dialect,
    key: &InstanceKey,
    gtid: &str,
    timeout: Duration,
) -> Result<OpRecord, SqlError> {
    wait_for_gtid_after(conn, d, key, gtid, None, timeout).await
}

/// What `key` has executed, its own transactions included (MariaDB `@@gtid_current_pos`).
pub async fn executed_gtid(conn: &Connector, d: &dyn Dialect, key: &InstanceKey) -> Result<String, SqlError> {
    let rows = conn.query(key, d.executed_position()).await?;
    Ok(rows.first().map(|r| r.string(&["gtid"])).unwrap_or_default())
}

/// `wait_for_gtid`, given what `key` had executed at some earlier moment (`executed_gtid`), which
/// spares reading it now: the wait is then one round trip. A read-only replica's executed
/// position only grows, so the domains it lacked then include every domain it lacks now, and
/// waiting on one it has since replicated returns at once.
pub async fn wait_for_gtid_after(
    conn: &Connector,
    d: &dyn Dialect,
    key: &InstanceKey,
    gtid: &str,
    had: Option<&str>,
    timeout: Duration,
) -> Result<OpRecord, SqlError> {
    let mut target = gtid.to_string();
    if d.flavor() == crate::topology::Flavor::MariaDb {
        // MASTER_GTID_WAIT watches gtid_slave_pos, which never holds what this server wrote itself
        // (a demoted master's own transactions): wait only for the domains it has not executed.
        let have = match had {
            Some(h) => h.to_string(),
            None => executed_gtid(conn, d, key).await?,
        };
        let have: GtidPos = have.parse().map_err(|e: crate::topology::GtidError| SqlError::Unexpected {
            instance: key.clone(),
            what: "gtid_current_pos".into(),
            detail: e.to_string(),
        })?;
        let want: GtidPos = gtid.parse().map_err(|e: crate::topology::GtidError| SqlError::Unexpected {
            instance: key.clone(),
            what: "wait target".into(),
            detail: e.to_string(),
        })?;
        let remaining = want.ahead_of(&have);
        if remaining.is_empty() {
            // Nothing to wait for (and nothing ran when the position was given).
            let read = if had.is_some() { vec![] } else { vec![Statement::new(d.executed_position())] };
            return Ok(OpRecord::new(key, &read, Duration::ZERO));
        }
        target = remaining.to_string();
    }
    let stmt = d.wait_for_gtid(&target, timeout.as_secs_f64());
    wait(conn, key, stmt, gtid, timeout, |r| r == Some(0)).await
}

/// Waits (in the server) until `key` has executed up to `coords` of its source's binlog.
pub async fn wait_for_coordinates(
    conn: &Connector,
    d: &dyn Dialect,
    key: &InstanceKey,
    coords: &BinlogCoordinates,
    timeout: Duration,
) -> Result<OpRecord, SqlError> {
    let stmt = d.wait_for_coordinates(&coords.file, coords.pos, timeout.as_secs_f64());
    wait(conn, key, stmt, &coords.to_string(), timeout, |r| r.is_some_and(|v| v >= 0)).await
}

async fn wait(
    conn: &Connector,
    key: &InstanceKey,
    stmt: Statement,
    target: &str,
    timeout: Duration,
    reached: impl Fn(Option<i64>) -> bool,
) -> Result<OpRecord, SqlError> {
    let start = Instant::now();
    // The server bounds the wait; the client allows it that long plus an ordinary read timeout.
    let rows = conn
        .query_sets_within(key, &stmt.sql, timeout + conn.read_timeout())
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let r = rows.first().and_then(|r| r.text(&["r"])).and_then(|v| v.trim().parse::<i64>().ok());
    if reached(r) {
        Ok(OpRecord::new(key, &[stmt], start.elapsed()))
    } else {
        Err(SqlError::WaitTimedOut {
            instance: key.clone(),
            target: target.to_string(),
            ms: timeout.as_millis() as u64,
        })
    }
}

pub async fn stop_replication(conn: &Connector, key: &InstanceKey) -> Result<OpRecord, SqlError> {
    let d = conn.dialect(key).await?;
    run(conn, key, vec![d.stop_replication()], conn.read_timeout()).await
}

pub async fn start_replication(conn: &Connector, key: &InstanceKey) -> Result<OpRecord, SqlError> {
    let d = conn.dialect(key).await?;
    run(conn, key, vec![d.start_replication()], conn.read_timeout()).await
}

/// Points `key` at a new source (replication must be stopped first; `repoint` does both).
pub async fn change_source(conn: &Connector, key: &InstanceKey, spec: &SourceSpec) -> Result<OpRecord, SqlError> {
    let d = conn.dialect(key).await?;
    run(conn, key, vec![d.change_source(spec)], conn.read_timeout()).await
}

/// Stop replication, change the source, and start again unless `start` is false.
pub async fn repoint(
    conn: &Connector,
    key: &InstanceKey,
    spec: &SourceSpec,
    start: bool,
) -> Result<OpRecord, SqlError> {
    let d = conn.dialect(key).await?;
    run(conn, key, statements::repoint(d.as_ref(), spec, start), conn.read_timeout()).await
}

/// Kills client connections (not replication, not system threads, not `own_user`'s).
pub async fn kill_client_connections(
    conn: &Connector,
    key: &InstanceKey,
    own_user: &str,
) -> Result<OpRecord, SqlError> {
    let d = conn.dialect(key).await?;
    let start = Instant::now();
    let list = d.client_connections(own_user);
    let rows = conn.query(key, &list.sql).await?;
    let mut stmts = vec![list];
    let mut c = conn.conn(key).await?;
    for id in rows.iter().filter_map(|r| r.u64(&["id"])) {
        let kill = d.kill_connection(id);
        use mysql_async::prelude::Queryable;
        // A connection that ended meanwhile is not an error (1094: unknown thread id).
        match conn.bounded(key, &kill.shown, conn.read_timeout(), c.query_drop(kill.sql.as_str())).await {
            Ok(()) => {}
            Err(SqlError::Query { source: mysql_async::Error::Server(e), .. }) if e.code == 1094 => {}
            Err(e) => return Err(e),
        }
        stmts.push(kill);
    }
    Ok(OpRecord::new(key, &stmts, start.elapsed()))
}

/// A named lock on a server (`GET_LOCK`), held on a connection of its own for as long as this
/// value lives. The server releases it when that connection ends, so a Baton process that dies
/// cannot leave it behind. Used as the cross-process takeover lock, taken on the cluster's master.
pub struct ServerLock {
    conn: Option<mysql_async::Conn>,
    pub instance: InstanceKey,
    pub name: String,
}

/// Server lock names are at most 64 characters: long names keep a prefix and gain a hash.
pub fn lock_name(cluster: &str) -> String {
    let name = format!("baton.takeover.{cluster}");
    if name.len() <= 64 {
        return name;
    }
    use sha2::{Digest, Sha256};
    let h: String = Sha256::digest(name.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut cut = 47;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}.{h}", &name[..cut])
}

/// Takes the lock without waiting: None when another session holds it.
pub async fn server_lock(conn: &Connector, key: &InstanceKey, name: &str) -> Result<Option<ServerLock>, SqlError> {
    server_lock_within(conn, key, name, 0).await
}

/// Takes the lock, waiting up to `wait_s` seconds in the server for its holder to let go.
pub async fn server_lock_within(
    conn: &Connector,
    key: &InstanceKey,
    name: &str,
    wait_s: u64,
) -> Result<Option<ServerLock>, SqlError> {
    use mysql_async::prelude::Queryable;
    let mut c = conn.dedicated(key).await?;
    let stmt = super::dialect::get_lock(name, wait_s);
    let limit = conn.read_timeout() + Duration::from_secs(wait_s);
    let r: Option<Option<i64>> = conn.bounded(key, &stmt.shown, limit, c.query_first(stmt.sql.as_str())).await?;
    match r.flatten() {
        Some(1) => Ok(Some(ServerLock { conn: Some(c), instance: key.clone(), name: name.to_string() })),
        _ => {
            let _ = tokio::time::timeout(conn.read_timeout(), c.disconnect()).await;
            Ok(None)
        }
    }
}

/// Ends the session that holds the named lock (a Baton node whose lease lapsed while it held it:
/// frozen, or cut off from etcd, its connection still open). The killed connection's id, None
/// when nobody held it.
pub async fn break_server_lock(conn: &Connector, key: &InstanceKey, name: &str) -> Result<Option<u64>, SqlError> {
    let held = super::dialect::is_used_lock(name);
    let rows = conn.query(key, &held.sql).await?;
    let Some(id) = rows.first().and_then(|r| r.u64(&["r"])) else { return Ok(None) };
    conn.query(key, &super::dialect::kill_connection(id).sql).await?;
    Ok(Some(id))
}

impl ServerLock {
    /// Releases the lock and closes its connection, within `limit`: a server that hangs (or
    /// died) cannot hold Baton here. Dropping the connection releases the lock in the server
    /// anyway, whenever it next looks.
    pub async fn release(mut self, limit: Duration) {
        if let Some(mut c) = self.conn.take() {
            use mysql_async::prelude::Queryable;
            let stmt = super::dialect::release_lock(&self.name);
            let polite = async move {
                let _ = c.query_drop(stmt.sql).await;
                let _ = c.disconnect().await;
            };
            let _ = tokio::time::timeout(limit, polite).await;
        }
    }
}

impl Drop for ServerLock {
    fn drop(&mut self) {
        // Dropped without `release` (a panic, a cancelled task): closing the connection releases
        // the lock in the server.
        if let Some(c) = self.conn.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), c.disconnect()).await;
                });
            }
        }
    }
}

/// The statements of the primitives that run several, built without running them: the
/// primitives above use these, and so do dry-run plans.
pub mod statements {
    use super::super::dialect::SemiSyncChange;
    use super::{Dialect, SourceSpec, Statement};

    pub fn set_read_only(d: &dyn Dialect, on: bool, lock_wait_s: u64) -> Vec<Statement> {
        let mut stmts = vec![d.lock_wait(lock_wait_s)];
        stmts.extend(d.set_read_only(on));
        stmts
    }

    pub fn repoint(d: &dyn Dialect, spec: &SourceSpec, start: bool) -> Vec<Statement> {
        let mut stmts = vec![d.stop_replication(), d.change_source(spec)];
        if start {
            stmts.push(d.start_replication());
        }
        stmts
    }

    pub fn reset_replication(d: &dyn Dialect) -> Vec<Statement> {
        vec![d.stop_replication(), d.reset_replication()]
    }

    /// read_only on, then the position the server stopped at (`own_position`'s statements).
    pub fn fence(d: &dyn Dialect, lock_wait_s: u64) -> Vec<Statement> {
        let mut stmts = set_read_only(d, true, lock_wait_s);
        stmts.push(Statement::new(d.own_position()));
        stmts
    }

    pub fn promote(d: &dyn Dialect, semi_sync: Option<&SemiSyncChange>, lock_wait_s: u64) -> Vec<Statement> {
        let mut stmts = reset_replication(d);
        if let Some(change) = semi_sync {
            stmts.extend(d.set_semi_sync(change));
        }
        stmts.extend(set_read_only(d, false, lock_wait_s));
        stmts
    }
}

/// A read-only query for operator scripts (`baton.query`): one `SELECT` or `SHOW` admitted by
/// `readonly::check` (parsed, no INTO, no file or lock functions, no locking reads), run in a
/// read-only transaction, with positional parameters bound by the server (never spliced into the
/// text). Rows come back as text.
pub async fn read_query(
    conn: &Connector,
    key: &InstanceKey,
    sql: &str,
    params: Vec<mysql_async::Value>,
) -> Result<Vec<super::RowMap>, SqlError> {
    super::readonly::check(sql).map_err(|detail| SqlError::Unexpected {
        instance: key.clone(),
        what: "baton.query".into(),
        detail,
    })?;
    let mut c = conn.conn(key).await?;
    use mysql_async::prelude::Queryable;
    let limit = conn.read_timeout();
    conn.bounded(key, "START TRANSACTION READ ONLY", limit, c.query_drop("START TRANSACTION READ ONLY")).await?;
    let rows = if params.is_empty() {
        conn.bounded(key, sql, limit, c.query::<mysql_async::Row, _>(sql)).await
    } else {
        conn.bounded(key, sql, limit, c.exec::<mysql_async::Row, _, _>(sql, params)).await
    };
    // Always end the transaction, even after an error, so the pooled connection is clean.
    let end = conn.bounded(key, "ROLLBACK", limit, c.query_drop("ROLLBACK")).await;
    let rows = rows?;
    end?;
    Ok(rows.into_iter().map(super::RowMap::from_row).collect())
}

#[cfg(test)]
mod tests {
    use super::super::dialect::{MariaDb, MySql, SemiSyncChange};
    use super::statements;
    use crate::topology::Version;

    fn sql(stmts: Vec<super::Statement>) -> Vec<String> {
        stmts.into_iter().map(|s| s.sql).collect()
    }

    /// The window's two batches (each sent as one round trip), per flavor. The MySQL text is
    /// checked here only: no MySQL server can run on these machines.
    #[test]
    fn fence_and_promote_batches() {
        assert_eq!(
            sql(statements::fence(&MariaDb, 5)),
            [
                "SET SESSION lock_wait_timeout = 5",
                "SET GLOBAL read_only = ON",
                "SELECT @@gtid_binlog_pos AS gtid; SHOW MASTER STATUS"
            ]
        );
        assert_eq!(
            sql(statements::promote(&MariaDb, None, 5)),
            ["STOP SLAVE", "RESET SLAVE ALL", "SET SESSION lock_wait_timeout = 5", "SET GLOBAL read_only = OFF"]
        );
        let mysql = MySql { version: Version(8, 4, 0) };
        assert_eq!(
            sql(statements::fence(&mysql, 5)),
            [
                "SET SESSION lock_wait_timeout = 5",
                "SET GLOBAL super_read_only = ON",
                "SELECT @@gtid_executed AS gtid; SHOW BINARY LOG STATUS"
            ]
        );
        let semi = SemiSyncChange { master: Some(true), ..Default::default() };
        assert_eq!(
            sql(statements::promote(&mysql, Some(&semi), 5)),
            [
                "STOP REPLICA",
                "RESET REPLICA ALL",
                "SET GLOBAL rpl_semi_sync_source_enabled = ON",
                "SET SESSION lock_wait_timeout = 5",
                "SET GLOBAL super_read_only = OFF",
                "SET GLOBAL read_only = OFF"
            ]
        );
    }
}
