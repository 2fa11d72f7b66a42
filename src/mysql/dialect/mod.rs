//! The SQL each server flavor speaks. Every statement Baton sends is written in this folder, one
//! file per flavor; the rest of `mysql/` chooses which to run and reads the answers.

mod mariadb;
mod mysql8;

use std::fmt;

pub use mariadb::MariaDb;
pub use mysql8::MySql;

use crate::config::Secret;
use crate::topology::{Flavor, Version};

/// One statement to run, with the text to show in logs and the journal (passwords masked).
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub shown: String,
    /// The secret `sql` carries, to mask in the server's error messages too (error 1470 quotes
    /// the start of a value that is too long).
    pub secret: Option<Secret>,
}

impl Statement {
    pub fn new(sql: impl Into<String>) -> Statement {
        let sql = sql.into();
        Statement { shown: sql.clone(), sql, secret: None }
    }
    /// A statement that carries a secret: `shown` has `secret` replaced by `***`.
    pub fn with_secret(sql: String, secret: &str) -> Statement {
        let quoted = quote(secret);
        let shown = if secret.is_empty() { sql.clone() } else { sql.replace(&quoted, "'***'") };
        let secret = (!secret.is_empty()).then(|| Secret::new(secret));
        Statement { sql, shown, secret }
    }

    /// A server's message about this statement, with anything that may quote its secret masked:
    /// every quoted string, and any run of 8 or more characters of the secret (or all of it).
    pub fn mask(&self, message: &str) -> String {
        let Some(secret) = &self.secret else { return message.to_string() };
        mask_secret(message, secret.expose())
    }
}

/// `message` with quoted strings and pieces of `secret` replaced by `***`.
pub fn mask_secret(message: &str, secret: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quote = false;
    for c in message.chars() {
        match (c, in_quote) {
            ('\'', false) => {
                in_quote = true;
                out.push_str("'***");
            }
            ('\'', true) => {
                in_quote = false;
                out.push('\'');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    let chars: Vec<char> = secret.chars().collect();
    let min = chars.len().min(8);
    for len in (min.max(1)..=chars.len()).rev() {
        for start in 0..=chars.len() - len {
            let piece: String = chars[start..start + len].iter().collect();
            if out.contains(&piece) {
                out = out.replace(&piece, "***");
            }
        }
    }
    out
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
/// Takes the named lock, waiting up to `wait_s` seconds for its holder to let go.
pub fn get_lock(name: &str, wait_s: u64) -> Statement {
    Statement::new(format!("SELECT GET_LOCK({}, {wait_s}) AS r", quote(name)))
}

pub fn release_lock(name: &str) -> Statement {
    Statement::new(format!("SELECT RELEASE_LOCK({}) AS r", quote(name)))
}

/// The connection id holding the named lock (NULL when free).
pub fn is_used_lock(name: &str) -> Statement {
    Statement::new(format!("SELECT IS_USED_LOCK({}) AS r", quote(name)))
}

/// Ends another session (same syntax on MySQL and MariaDB).
pub fn kill_connection(id: u64) -> Statement {
    Statement::new(format!("KILL CONNECTION {id}"))
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

/// What `CHANGE MASTER TO` / `CHANGE REPLICATION SOURCE TO` accepts as credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialLimits {
    pub user_chars: usize,
    pub password_chars: usize,
}

impl CredentialLimits {
    /// Why `user`/`password` do not fit, naming the limit (never the password), if they do not.
    pub fn check(&self, flavor: Flavor, user: &str, password: &str) -> Result<(), String> {
        let (u, p) = (user.chars().count(), password.chars().count());
        let flavor = match flavor {
            Flavor::MariaDb => "MariaDB",
            Flavor::MySql => "MySQL",
        };
        if u > self.user_chars {
            return Err(format!("the replication user name is {u} characters; {flavor} accepts at most {} when pointing a replica at its source", self.user_chars));
        }
        if p > self.password_chars {
            return Err(format!("the replication password is {p} characters; {flavor} accepts at most {} when pointing a replica at its source", self.password_chars));
        }
        Ok(())
    }
}

/// A change to a server's semi-sync settings (`Dialect::set_semi_sync`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SemiSyncChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_point: Option<String>,
}

impl SemiSyncChange {
    pub fn is_empty(&self) -> bool {
        *self == SemiSyncChange::default()
    }
}

/// The statements of a semi-sync change, with the variable names of one spelling.
pub(crate) fn semi_sync_statements(c: &SemiSyncChange, master: &str, replica: &str) -> Vec<Statement> {
    let on = |b: bool| if b { "ON" } else { "OFF" };
    let mut out = Vec::new();
    // Settings first: the master side starts waiting with the right ones.
    if let Some(t) = c.timeout_ms {
        out.push(Statement::new(format!("SET GLOBAL {master}_timeout = {t}")));
    }
    if let Some(w) = c.wait_point.as_deref().filter(|w| matches!(*w, "AFTER_SYNC" | "AFTER_COMMIT")) {
        out.push(Statement::new(format!("SET GLOBAL {master}_wait_point = {w}")));
    }
    if let Some(m) = c.master {
        out.push(Statement::new(format!("SET GLOBAL {master}_enabled = {}", on(m))));
    }
    if let Some(r) = c.replica {
        out.push(Statement::new(format!("SET GLOBAL {replica}_enabled = {}", on(r))));
    }
    out
}

/// Where a replica should replicate from, and how.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Never printed (`Debug` shows `***`); only the statement builders expose it.
    pub password: crate::config::Secret,
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
    /// The longest replication user name and password (in characters) `change_source` accepts.
    fn source_credential_limits(&self) -> CredentialLimits;
    /// Forget replication settings entirely (a promoted replica).
    fn reset_replication(&self) -> Statement;
    /// Semi-sync switched on or off, per side (None: left as it is); the master side's timeout
    /// and wait point when given. A replica side changed takes effect when its IO thread
    /// (re)starts.
    fn set_semi_sync(&self, change: &SemiSyncChange) -> Vec<Statement>;
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
    fn server_messages_about_a_secret_are_masked() {
        let pw = "Zq7777777777777777777777";
        let msg = "String 'Zq77777777777777777...' is too long for MASTER_PASSWORD (should be no longer than 96)";
        let masked = mask_secret(msg, pw);
        assert_eq!(masked, "String '***' is too long for MASTER_PASSWORD (should be no longer than 96)");
        // Unquoted pieces of 8 or more characters, and a short secret whole.
        assert!(!mask_secret("bad value Zq777777 here", pw).contains("Zq777777"));
        assert_eq!(mask_secret("user repl got repl", "repl"), "user *** got ***");
        let s = Statement::with_secret(format!("CHANGE MASTER TO MASTER_PASSWORD = {}", quote(pw)), pw);
        assert!(!format!("{s:?} {s}").contains(pw));
        assert!(!s.mask(msg).contains("Zq7777777"));
        assert_eq!(Statement::new("SELECT 1").mask("x 'y'"), "x 'y'");
        // What each flavor's CHANGE MASTER takes, checked without quoting the password.
        let maria = MariaDb.source_credential_limits();
        let e = maria.check(Flavor::MariaDb, "repl", &"p".repeat(97)).unwrap_err();
        assert!(e.contains("97 characters") && e.contains("at most 96") && !e.contains("ppp"), "{e}");
        assert!(maria.check(Flavor::MariaDb, "repl", &"p".repeat(96)).is_ok());
        assert!(maria.check(Flavor::MariaDb, &"u".repeat(129), "p").unwrap_err().contains("user name is 129"));
        let mysql = for_server(Flavor::MySql, Version(8, 0, 36)).source_credential_limits();
        assert!(mysql.check(Flavor::MySql, "repl", &"p".repeat(33)).unwrap_err().contains("at most 32"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a'b"), "'a''b'");
        assert_eq!(quote("a\\'; DROP TABLE t; --"), "'a\\\\''; DROP TABLE t; --'");
        let s = Statement::with_secret(format!("CHANGE MASTER TO MASTER_PASSWORD={}", quote("p'w")), "p'w");
        assert_eq!(s.shown, "CHANGE MASTER TO MASTER_PASSWORD='***'");
        assert!(s.sql.contains("'p''w'"));
    }
}
