//! MariaDB (10.5 and later; tested against 10.11).

use super::{quote, CredentialLimits, Dialect, SourcePosition, SourceSpec, Statement};
use crate::topology::Flavor;

pub struct MariaDb;

impl Dialect for MariaDb {
    fn flavor(&self) -> Flavor {
        Flavor::MariaDb
    }

    fn probe(&self) -> String {
        "SELECT @@version AS version, @@version_comment AS version_comment, @@server_id AS server_id, \
         @@read_only AS read_only, @@log_bin AS log_bin, @@log_slave_updates AS log_slave_updates, \
         @@binlog_format AS binlog_format, @@gtid_binlog_pos AS gtid_binlog_pos, \
         @@gtid_current_pos AS gtid_current_pos, @@gtid_slave_pos AS gtid_slave_pos, \
         @@gtid_strict_mode AS gtid_strict_mode, UNIX_TIMESTAMP(NOW(6)) AS server_unix; \
         SHOW MASTER STATUS; SHOW SLAVE STATUS; SHOW SLAVE HOSTS; \
         SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'; SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'"
            .to_string()
    }

    fn set_read_only(&self, on: bool) -> Vec<Statement> {
        vec![Statement::new(format!("SET GLOBAL read_only = {}", if on { "ON" } else { "OFF" }))]
    }

    fn own_position(&self) -> String {
        "SELECT @@gtid_binlog_pos AS gtid; SHOW MASTER STATUS".to_string()
    }

    fn executed_position(&self) -> &'static str {
        "SELECT @@gtid_current_pos AS gtid"
    }

    fn replicated_position(&self) -> &'static str {
        "SELECT @@gtid_slave_pos AS gtid"
    }

    fn wait_for_gtid(&self, gtid: &str, timeout_s: f64) -> Statement {
        // 0: reached; -1: timed out.
        Statement::new(format!("SELECT MASTER_GTID_WAIT({}, {timeout_s:.3}) AS r", quote(gtid)))
    }

    fn wait_for_coordinates(&self, file: &str, pos: u64, timeout_s: f64) -> Statement {
        // >= 0: events waited for; -1: timed out; NULL: SQL thread not running.
        Statement::new(format!("SELECT MASTER_POS_WAIT({}, {pos}, {timeout_s:.3}) AS r", quote(file)))
    }

    fn stop_replication(&self) -> Statement {
        Statement::new("STOP SLAVE")
    }

    fn start_replication(&self) -> Statement {
        Statement::new("START SLAVE")
    }

    /// MariaDB 10.11 answers error 1470 past these (measured: 128 and 96).
    fn source_credential_limits(&self) -> CredentialLimits {
        CredentialLimits { user_chars: 128, password_chars: 96 }
    }

    fn change_source(&self, spec: &SourceSpec) -> Statement {
        let position = match &spec.position {
            SourcePosition::GtidSlavePos | SourcePosition::AutoPosition => "MASTER_USE_GTID = slave_pos".to_string(),
            SourcePosition::GtidCurrentPos => "MASTER_USE_GTID = current_pos".to_string(),
            SourcePosition::Coordinates { file, pos } => {
                format!("MASTER_USE_GTID = no, MASTER_LOG_FILE = {}, MASTER_LOG_POS = {pos}", quote(file))
            }
        };
        Statement::with_secret(
            format!(
                "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, \
                 MASTER_SSL = {}, MASTER_CONNECT_RETRY = 1, {position}",
                quote(&spec.host),
                spec.port,
                quote(&spec.user),
                quote(spec.password.expose()),
                u8::from(spec.tls),
            ),
            spec.password.expose(),
        )
    }

    fn set_semi_sync(&self, change: &super::SemiSyncChange) -> Vec<Statement> {
        super::semi_sync_statements(change, "rpl_semi_sync_master", "rpl_semi_sync_slave")
    }

    fn reset_replication(&self) -> Statement {
        Statement::new("RESET SLAVE ALL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        let d = MariaDb;
        assert_eq!(d.set_read_only(true)[0].sql, "SET GLOBAL read_only = ON");
        assert_eq!(d.wait_for_gtid("0-1-5", 2.5).sql, "SELECT MASTER_GTID_WAIT('0-1-5', 2.500) AS r");
        let spec = SourceSpec {
            host: "db2".into(),
            port: 3307,
            user: "repl".into(),
            password: crate::config::Secret::new("s3cret"),
            position: SourcePosition::GtidCurrentPos,
            tls: false,
        };
        let s = d.change_source(&spec);
        assert_eq!(
            s.sql,
            "CHANGE MASTER TO MASTER_HOST = 'db2', MASTER_PORT = 3307, MASTER_USER = 'repl', \
             MASTER_PASSWORD = 's3cret', MASTER_SSL = 0, MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = current_pos"
        );
        assert!(s.shown.contains("MASTER_PASSWORD = '***'") && !s.shown.contains("s3cret"));
        assert!(!format!("{spec:?}").contains("s3cret"), "a spec's Debug never shows the password");
        assert_eq!(d.reset_replication().sql, "RESET SLAVE ALL");
    }
}
