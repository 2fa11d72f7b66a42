//! MySQL 8.0 and later (with the pre-8.0.22 spellings for older servers).
//!
//! Not run against a MySQL server here (none can be installed on these machines): the statements
//! are checked by the unit tests below against the MySQL reference manual's syntax.

use super::{quote, CredentialLimits, Dialect, SourcePosition, SourceSpec, Statement};
use crate::topology::{Flavor, Version};

pub struct MySql {
    pub version: Version,
}

impl MySql {
    /// `REPLICA`/`SOURCE` spellings: 8.0.22 (statements) and 8.0.23 (CHANGE REPLICATION SOURCE).
    fn new_terms(&self) -> bool {
        self.version >= Version(8, 0, 22)
    }
}

impl Dialect for MySql {
    fn flavor(&self) -> Flavor {
        Flavor::MySql
    }

    fn probe(&self) -> String {
        let log_updates =
            if self.version >= Version(8, 0, 26) { "@@log_replica_updates" } else { "@@log_slave_updates" };
        let binlog_status =
            if self.version >= Version(8, 2, 0) { "SHOW BINARY LOG STATUS" } else { "SHOW MASTER STATUS" };
        let (status, hosts) = if self.new_terms() {
            ("SHOW REPLICA STATUS", "SHOW REPLICAS")
        } else {
            ("SHOW SLAVE STATUS", "SHOW SLAVE HOSTS")
        };
        format!(
            "SELECT @@version AS version, @@version_comment AS version_comment, @@server_id AS server_id, \
             @@server_uuid AS server_uuid, @@read_only AS read_only, @@super_read_only AS super_read_only, \
             @@log_bin AS log_bin, {log_updates} AS log_slave_updates, @@binlog_format AS binlog_format, \
             @@gtid_mode AS gtid_mode, @@gtid_executed AS gtid_executed, UNIX_TIMESTAMP(NOW(6)) AS server_unix; \
             {binlog_status}; {status}; {hosts}; \
             SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'; SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'"
        )
    }

    fn set_read_only(&self, on: bool) -> Vec<Statement> {
        if on {
            // super_read_only=ON implies read_only=ON and also stops SUPER / CONNECTION_ADMIN users.
            vec![Statement::new("SET GLOBAL super_read_only = ON")]
        } else {
            vec![Statement::new("SET GLOBAL super_read_only = OFF"), Statement::new("SET GLOBAL read_only = OFF")]
        }
    }

    fn own_position(&self) -> String {
        let status = if self.version >= Version(8, 2, 0) { "SHOW BINARY LOG STATUS" } else { "SHOW MASTER STATUS" };
        format!("SELECT @@gtid_executed AS gtid; {status}")
    }

    fn executed_position(&self) -> &'static str {
        "SELECT @@gtid_executed AS gtid"
    }

    fn replicated_position(&self) -> &'static str {
        "SELECT @@gtid_executed AS gtid"
    }

    fn wait_for_gtid(&self, gtid: &str, timeout_s: f64) -> Statement {
        // 0: reached; 1: timed out. The timeout is in whole or fractional seconds.
        Statement::new(format!("SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {timeout_s:.3}) AS r", quote(gtid)))
    }

    fn wait_for_coordinates(&self, file: &str, pos: u64, timeout_s: f64) -> Statement {
        let f = if self.version >= Version(8, 0, 26) { "SOURCE_POS_WAIT" } else { "MASTER_POS_WAIT" };
        Statement::new(format!("SELECT {f}({}, {pos}, {timeout_s:.3}) AS r", quote(file)))
    }

    fn stop_replication(&self) -> Statement {
        Statement::new(if self.new_terms() { "STOP REPLICA" } else { "STOP SLAVE" })
    }

    fn start_replication(&self) -> Statement {
        Statement::new(if self.new_terms() { "START REPLICA" } else { "START SLAVE" })
    }

    /// MySQL 8: user names up to 32 characters, and `SOURCE_PASSWORD` up to 32 (a longer one is
    /// refused with ER_CHANGE_SOURCE_PASSWORD_LENGTH). From the manual; not run against MySQL.
    fn source_credential_limits(&self) -> CredentialLimits {
        CredentialLimits { user_chars: 32, password_chars: 32 }
    }

    fn change_source(&self, spec: &SourceSpec) -> Statement {
        let (head, p) = if self.version >= Version(8, 0, 23) {
            ("CHANGE REPLICATION SOURCE TO", "SOURCE")
        } else {
            ("CHANGE MASTER TO", "MASTER")
        };
        let position = match &spec.position {
            SourcePosition::Coordinates { file, pos } => {
                format!("{p}_AUTO_POSITION = 0, {p}_LOG_FILE = {}, {p}_LOG_POS = {pos}", quote(file))
            }
            _ => format!("{p}_AUTO_POSITION = 1"),
        };
        Statement::with_secret(
            format!(
                "{head} {p}_HOST = {}, {p}_PORT = {}, {p}_USER = {}, {p}_PASSWORD = {}, {p}_SSL = {}, \
                 {p}_CONNECT_RETRY = 1, GET_{p}_PUBLIC_KEY = 1, {position}",
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
        // The plugins' variables were renamed in 8.0.26 (rpl_semi_sync_source / _replica).
        if self.version >= Version(8, 0, 26) {
            super::semi_sync_statements(change, "rpl_semi_sync_source", "rpl_semi_sync_replica")
        } else {
            super::semi_sync_statements(change, "rpl_semi_sync_master", "rpl_semi_sync_slave")
        }
    }

    fn reset_replication(&self) -> Statement {
        Statement::new(if self.new_terms() { "RESET REPLICA ALL" } else { "RESET SLAVE ALL" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SourceSpec {
        SourceSpec {
            host: "10.0.0.2".into(),
            port: 3306,
            user: "repl".into(),
            password: crate::config::Secret::new("pw"),
            position: SourcePosition::AutoPosition,
            tls: true,
        }
    }

    #[test]
    fn mysql8_statements() {
        let d = MySql { version: Version(8, 0, 36) };
        assert_eq!(
            d.change_source(&spec()).sql,
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.2', SOURCE_PORT = 3306, SOURCE_USER = 'repl', \
             SOURCE_PASSWORD = 'pw', SOURCE_SSL = 1, SOURCE_CONNECT_RETRY = 1, GET_SOURCE_PUBLIC_KEY = 1, \
             SOURCE_AUTO_POSITION = 1"
        );
        assert_eq!(d.start_replication().sql, "START REPLICA");
        assert_eq!(d.stop_replication().sql, "STOP REPLICA");
        assert_eq!(d.reset_replication().sql, "RESET REPLICA ALL");
        assert_eq!(d.set_read_only(true)[0].sql, "SET GLOBAL super_read_only = ON");
        let off: Vec<String> = d.set_read_only(false).into_iter().map(|s| s.sql).collect();
        assert_eq!(off, ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"]);
        assert_eq!(
            d.wait_for_gtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", 1.0).sql,
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 1.000) AS r"
        );
        assert_eq!(
            d.wait_for_coordinates("binlog.000002", 157, 2.0).sql,
            "SELECT SOURCE_POS_WAIT('binlog.000002', 157, 2.000) AS r"
        );
        assert!(d.probe().contains("SHOW REPLICA STATUS; SHOW REPLICAS"));
        assert!(d.probe().contains("UNIX_TIMESTAMP(NOW(6)) AS server_unix"), "the clock, for the skew check");
        assert!(d.probe().contains("SHOW MASTER STATUS"));
        assert!(d.probe().contains("@@log_replica_updates"));
        assert!(d
            .probe()
            .ends_with("SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'; SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'"));
    }

    /// MySQL 8 semi-sync statements; generated text only (no MySQL server can run here).
    #[test]
    fn mysql8_semi_sync_statements() {
        let change = super::super::SemiSyncChange {
            master: Some(true),
            replica: Some(false),
            timeout_ms: Some(10_000),
            wait_point: Some("AFTER_SYNC".into()),
        };
        let sql =
            |v: Version| MySql { version: v }.set_semi_sync(&change).into_iter().map(|s| s.sql).collect::<Vec<_>>();
        assert_eq!(
            sql(Version(8, 0, 36)),
            [
                "SET GLOBAL rpl_semi_sync_source_timeout = 10000",
                "SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC",
                "SET GLOBAL rpl_semi_sync_source_enabled = ON",
                "SET GLOBAL rpl_semi_sync_replica_enabled = OFF",
            ]
        );
        assert_eq!(sql(Version(8, 0, 25))[2], "SET GLOBAL rpl_semi_sync_master_enabled = ON");
        assert_eq!(sql(Version(8, 0, 25))[3], "SET GLOBAL rpl_semi_sync_slave_enabled = OFF");
        // A wait point that is not one of the two is never written into SQL.
        let odd = super::super::SemiSyncChange { wait_point: Some("x'; DROP".into()), ..Default::default() };
        assert!(MySql { version: Version(8, 4, 0) }.set_semi_sync(&odd).is_empty());
    }

    /// The probe's semi-sync answers, both spellings.
    #[test]
    fn semi_sync_from_variables_and_status() {
        use crate::topology::SemiSync;
        let p = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let mysql = SemiSync::from_pairs(
            &p(&[
                ("rpl_semi_sync_source_enabled", "ON"),
                ("rpl_semi_sync_source_timeout", "10000"),
                ("rpl_semi_sync_source_wait_for_replica_count", "2"),
                ("rpl_semi_sync_source_wait_point", "AFTER_SYNC"),
                ("rpl_semi_sync_replica_enabled", "OFF"),
            ]),
            &p(&[("Rpl_semi_sync_source_status", "ON"), ("Rpl_semi_sync_source_clients", "3")]),
        )
        .unwrap();
        assert!(mysql.master_enabled && mysql.master_status && !mysql.replica_enabled);
        assert_eq!((mysql.master_clients, mysql.master_timeout_ms, mysql.wait_for_replica_count), (3, 10_000, 2));
        let mariadb = SemiSync::from_pairs(
            &p(&[("rpl_semi_sync_slave_enabled", "ON"), ("rpl_semi_sync_master_enabled", "OFF")]),
            &p(&[("Rpl_semi_sync_slave_status", "ON")]),
        )
        .unwrap();
        assert!(mariadb.replica_enabled && mariadb.replica_status && !mariadb.master_enabled);
        assert_eq!(mariadb.wait_for_replica_count, 1);
        assert_eq!(SemiSync::from_pairs(&[], &[]), None, "no plugin: no semi-sync");
    }

    #[test]
    fn mysql84_uses_binary_log_status() {
        let d = MySql { version: Version(8, 4, 0) };
        assert!(d.probe().contains("SHOW BINARY LOG STATUS"));
        assert!(d.own_position().contains("SHOW BINARY LOG STATUS"));
    }

    #[test]
    fn mysql57_keeps_old_spellings() {
        let d = MySql { version: Version(5, 7, 44) };
        let s = d.change_source(&SourceSpec {
            position: SourcePosition::Coordinates { file: "mysql-bin.000003".into(), pos: 4 },
            ..spec()
        });
        assert!(s.sql.starts_with("CHANGE MASTER TO MASTER_HOST = '10.0.0.2'"));
        assert!(s.sql.ends_with("MASTER_AUTO_POSITION = 0, MASTER_LOG_FILE = 'mysql-bin.000003', MASTER_LOG_POS = 4"));
        assert_eq!(d.start_replication().sql, "START SLAVE");
        assert!(d.probe().contains("SHOW SLAVE STATUS; SHOW SLAVE HOSTS"));
        assert_eq!(d.wait_for_coordinates("f", 1, 1.0).sql, "SELECT MASTER_POS_WAIT('f', 1, 1.000) AS r");
    }
}
