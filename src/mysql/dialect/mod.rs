//! The SQL each server flavor speaks. Every statement Baton sends is written in this folder, one
//! file per flavor; the rest of `mysql/` chooses which to run and reads the answers.

mod mariadb;
mod mysql8;

use std::fmt;

pub use mariadb::MariaDb;
pub use mysql8::MySql;

use crate::topology::{Flavor, Version};

/// One statement to run, with the text to show in logs and the journal (passwords masked).
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub shown: String,
}

impl Statement {
    pub fn new(sql: impl Into<String>) -> Statement {
        let sql = sql.into();
        Statement { shown: sql.clone(), sql }
    }
    /// A statement that carries a secret: `shown` has `secret` replaced by `***`.
    pub fn with_secret(sql: String, secret: &str) -> Statement {
        let quoted = quote(secret);
        let shown = if secret.is_empty() { sql.clone() } else { sql.replace(&quoted, "'***'") };
        Statement { sql, shown }
    }
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Takes a named server lock without waiting (both flavors): 1 taken, 0 held by another session.
pub fn get_lock(name: &str) -> Statement {
    Statement::new(format!("SELECT GET_LOCK({}, 0) AS r", quote(name)))
}

pub fn release_lock(name: &str) -> Statement {
    Statement::new(format!("SELECT RELEASE_LOCK({}) AS r", quote(name)))
}

/// A SQL string literal: single quotes, with `\` and `'` escaped. Safe for both flavors in their
/// default SQL mode (NO_BACKSLASH_ESCAPES off) and with it on (the doubled quote works there too,
/// and a backslash is then a plain character: we refuse backslashes where they could matter).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Where a replica should replicate from, and how.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// How to find the position on the new source.
    pub position: SourcePosition,
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePosition {
    /// MariaDB `MASTER_USE_GTID=slave_pos`: an ordinary replica moving to a new source.
    GtidSlavePos,
    /// MariaDB `MASTER_USE_GTID=current_pos`: a demoted master whose own writes are in its binlog.
    GtidCurrentPos,
    /// MySQL `SOURCE_AUTO_POSITION=1`.
    AutoPosition,
    /// Explicit binary log coordinates on the new source.
    Coordinates { file: String, pos: u64 },
}

/// The statements of one flavor.
pub trait Dialect: Send + Sync {
    fn flavor(&self) -> Flavor;
    /// One text query (several statements) that returns, in order: the variables row, the own
    /// binlog status, the replication status, the replicas that report here.
    fn probe(&self) -> String;
    /// Bounds how long the following statements of this session wait for locks.
    fn lock_wait(&self, seconds: u64) -> Statement {
        Statement::new(format!("SET SESSION lock_wait_timeout = {seconds}"))
    }
    fn set_read_only(&self, on: bool) -> Vec<Statement>;
    /// Returns one row: `gtid` (the executed position/set) and the own binlog coordinates as a second set.
    fn own_position(&self) -> String;
    /// One row, column `gtid`: what this server has executed, wherever it came from.
    fn executed_position(&self) -> &'static str;
    /// One row, column `gtid`: what this server has executed of what it replicated.
    fn replicated_position(&self) -> &'static str;
    /// One row, column `r`: 0 when reached, else timed out or failed (see `wait_result`).
    fn wait_for_gtid(&self, gtid: &str, timeout_s: f64) -> Statement;
    fn wait_for_coordinates(&self, file: &str, pos: u64, timeout_s: f64) -> Statement;
    fn stop_replication(&self) -> Statement;
    fn start_replication(&self) -> Statement;
    fn change_source(&self, spec: &SourceSpec) -> Statement;
    /// Forget replication settings entirely (a promoted replica).
    fn reset_replication(&self) -> Statement;
    /// Lists client connections that a fence may kill: not replication, not system threads, not
    /// this session, not `own_user`.
    fn client_connections(&self, own_user: &str) -> Statement {
        Statement::new(format!(
            "SELECT ID AS id, USER AS user FROM information_schema.PROCESSLIST \
             WHERE ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler', {}) \
             AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker')",
            quote(own_user)
        ))
    }
    fn kill_connection(&self, id: u64) -> Statement {
        Statement::new(format!("KILL CONNECTION {id}"))
    }
}

/// The dialect of a server, from its flavor and version.
pub fn for_server(flavor: Flavor, version: Version) -> Box<dyn Dialect> {
    match flavor {
        Flavor::MariaDb => Box::new(MariaDb),
        Flavor::MySql => Box::new(MySql { version }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a'b"), "'a''b'");
        assert_eq!(quote("a\\'; DROP TABLE t; --"), "'a\\\\''; DROP TABLE t; --'");
        let s = Statement::with_secret(format!("CHANGE MASTER TO MASTER_PASSWORD={}", quote("p'w")), "p'w");
        assert_eq!(s.shown, "CHANGE MASTER TO MASTER_PASSWORD='***'");
        assert!(s.sql.contains("'p''w'"));
    }
}
