//! The probe of one instance: everything Baton needs to know about a server, in one round trip
//! (two on first contact, to learn the flavor).

use std::time::Instant;

use super::conn::RowMap;
use super::{Connector, SqlError};
use crate::topology::{
    BinlogCoordinates, Flavor, GtidMode, GtidPos, GtidSet, GtidState, Instance, InstanceKey, ReplicationStatus,
    ThreadError, ThreadState,
};

/// Probes `key`: variables, own binlog status, replication status, reporting replicas.
///
/// The dialect used is the one this process believes the server speaks; when the probe shows the
/// server changed (an in-place upgrade: MySQL 8.4 no longer has `SHOW MASTER STATUS`), or a
/// statement of the probe is refused, the version is read again and the probe runs once more
/// with the right dialect.
pub async fn probe(connector: &Connector, key: &InstanceKey) -> Result<Instance, SqlError> {
    let first = probe_once(connector, key).await;
    let stale = match &first {
        Err(SqlError::Query { .. }) => true,
        Ok(i) => connector.learned(key, Flavor::detect(&i.version, &i.version_comment), i.version_number()),
        Err(_) => false,
    };
    if !stale {
        return first;
    }
    connector.forget_server(key);
    probe_once(connector, key).await
}

async fn probe_once(connector: &Connector, key: &InstanceKey) -> Result<Instance, SqlError> {
    let start = Instant::now();
    let dialect = connector.dialect(key).await?;
    let sets = connector.query_sets(key, &dialect.probe()).await?;
    from_sets(key, dialect.as_ref(), sets, start)
}

/// The probe over the fleet poller's lean connection (`lean::LeanConn`): the server's flavor and
/// version are read first when not known yet (`known`), and returned with the instance.
pub async fn probe_lean(
    conn: &mut super::lean::LeanConn,
    key: &InstanceKey,
    known: Option<(Flavor, crate::topology::Version)>,
    limit: std::time::Duration,
) -> Result<(Instance, (Flavor, crate::topology::Version)), super::lean::LeanError> {
    let start = Instant::now();
    let (flavor, version) = match known {
        Some(v) => v,
        None => {
            let sets =
                conn.query_sets("SELECT @@version AS version, @@version_comment AS version_comment", limit).await?;
            let row = sets.into_iter().next().and_then(|s| s.into_iter().next()).unwrap_or_default();
            let version = row.string(&["version"]);
            (Flavor::detect(&version, &row.string(&["version_comment"])), crate::topology::Version::parse(&version))
        }
    };
    let dialect = super::dialect::for_server(flavor, version);
    let sets = conn.query_sets(&dialect.probe(), limit).await?;
    let inst =
        from_sets(key, dialect.as_ref(), sets, start).map_err(|e| super::lean::LeanError::Protocol(e.to_string()))?;
    // A server changed in place (an upgrade) is read again next time.
    let now = (Flavor::detect(&inst.version, &inst.version_comment), inst.version_number());
    Ok((inst, now))
}

/// The probe's result sets as an `Instance` (`start`: when the probe began, for `probe_ms`).
fn from_sets(
    key: &InstanceKey,
    dialect: &dyn super::dialect::Dialect,
    sets: Vec<Vec<RowMap>>,
    start: Instant,
) -> Result<Instance, SqlError> {
    let mut sets = sets.into_iter();
    let mut next = || sets.next().unwrap_or_default();
    let (vars, master_status, slave_status, hosts) = (next(), next(), next(), next());
    let pairs = |rows: Vec<RowMap>| -> Vec<(String, String)> {
        rows.iter().map(|r| (r.string(&["Variable_name"]), r.string(&["Value"]))).collect()
    };
    let (semi_vars, semi_status) = (pairs(next()), pairs(next()));
    let vars = vars.into_iter().next().ok_or_else(|| SqlError::Unexpected {
        instance: key.clone(),
        what: "probe".into(),
        detail: "the variables query returned no row".into(),
    })?;
    let mut inst = parse(key, dialect.flavor(), &vars, master_status.first(), slave_status.first(), &hosts)?;
    inst.semi_sync = crate::topology::SemiSync::from_pairs(&semi_vars, &semi_status);
    inst.probe_ms = start.elapsed().as_secs_f64() * 1000.0;
    let local =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    inst.clock_skew_s =
        vars.text(&["server_unix"]).and_then(|t| t.trim().parse::<f64>().ok()).map(|server| server - local);
    Ok(inst)
}

fn bad(key: &InstanceKey, detail: String) -> SqlError {
    SqlError::Unexpected { instance: key.clone(), what: "probe".into(), detail }
}

/// Turns the probe's result sets into an `Instance`. Pure, so it is unit-tested without a server.
pub fn parse(
    key: &InstanceKey,
    flavor: Flavor,
    vars: &RowMap,
    master_status: Option<&RowMap>,
    slave_status: Option<&RowMap>,
    hosts: &[RowMap],
) -> Result<Instance, SqlError> {
    let gtid = match flavor {
        Flavor::MariaDb => {
            let pos = |name: &str| -> Result<GtidPos, SqlError> {
                vars.string(&[name]).parse().map_err(|e| bad(key, format!("{name}: {e}")))
            };
            GtidState::MariaDb {
                binlog_pos: pos("gtid_binlog_pos")?,
                current_pos: pos("gtid_current_pos")?,
                slave_pos: pos("gtid_slave_pos")?,
                strict_mode: vars.flag(&["gtid_strict_mode"]),
            }
        }
        Flavor::MySql => GtidState::MySql {
            mode: vars.string(&["gtid_mode"]),
            executed: vars
                .string(&["gtid_executed"])
                .parse::<GtidSet>()
                .map_err(|e| bad(key, format!("gtid_executed: {e}")))?,
        },
    };
    let binlog = master_status
        .and_then(|r| Some(BinlogCoordinates { file: r.text(&["File"])?.to_string(), pos: r.u64(&["Position"])? }));
    let replication = slave_status.and_then(parse_replication);
    let reported_replicas = hosts
        .iter()
        .filter_map(|h| {
            let host = h.text(&["Host"]).filter(|h| !h.is_empty())?;
            let port = h.u64(&["Port"]).and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)?;
            Some(InstanceKey::new(host, port))
        })
        .collect();
    Ok(Instance {
        key: key.clone(),
        flavor,
        version: vars.string(&["version"]),
        version_comment: vars.string(&["version_comment"]),
        server_id: vars.u64(&["server_id"]).unwrap_or(0) as u32,
        server_uuid: vars.text(&["server_uuid"]).map(str::to_string),
        read_only: vars.flag(&["read_only"]),
        super_read_only: vars.has("super_read_only").then(|| vars.flag(&["super_read_only"])),
        log_bin: vars.flag(&["log_bin"]),
        log_slave_updates: vars.flag(&["log_slave_updates"]),
        binlog_format: vars.string(&["binlog_format"]),
        gtid,
        binlog,
        replication,
        reported_replicas,
        probe_ms: 0.0,
        clock_skew_s: None,
        semi_sync: None,
    })
}

fn thread_error(r: &RowMap, errno: &[&str], error: &[&str]) -> Option<ThreadError> {
    let n = r.u64(errno).unwrap_or(0);
    (n != 0).then(|| ThreadError { errno: n as u32, message: r.string(error) })
}

fn coords(r: &RowMap, file: &[&str], pos: &[&str]) -> Option<BinlogCoordinates> {
    let f = r.text(file).filter(|f| !f.is_empty())?;
    Some(BinlogCoordinates { file: f.to_string(), pos: r.u64(pos)? })
}

/// `SHOW SLAVE STATUS` (MariaDB, MySQL < 8.0.22) or `SHOW REPLICA STATUS` (MySQL 8.0.22+).
fn parse_replication(r: &RowMap) -> Option<ReplicationStatus> {
    let host = r.text(&["Source_Host", "Master_Host"]).filter(|h| !h.is_empty())?;
    let port = r.u64(&["Source_Port", "Master_Port"]).and_then(|p| u16::try_from(p).ok())?;
    let gtid_mode = if let Some(using) = r.text(&["Using_Gtid"]) {
        match using.to_ascii_lowercase().as_str() {
            "slave_pos" => GtidMode::SlavePos,
            "current_pos" => GtidMode::CurrentPos,
            _ => GtidMode::No,
        }
    } else if r.flag(&["Auto_Position"]) {
        GtidMode::AutoPosition
    } else {
        GtidMode::No
    };
    Some(ReplicationStatus {
        source: InstanceKey::new(host, port),
        io_thread: ThreadState::parse(r.text(&["Replica_IO_Running", "Slave_IO_Running"]).unwrap_or("No")),
        sql_thread: ThreadState::parse(r.text(&["Replica_SQL_Running", "Slave_SQL_Running"]).unwrap_or("No")),
        seconds_behind: r.u64(&["Seconds_Behind_Source", "Seconds_Behind_Master"]),
        read_coordinates: coords(
            r,
            &["Source_Log_File", "Master_Log_File"],
            &["Read_Source_Log_Pos", "Read_Master_Log_Pos"],
        ),
        exec_coordinates: coords(
            r,
            &["Relay_Source_Log_File", "Relay_Master_Log_File"],
            &["Exec_Source_Log_Pos", "Exec_Master_Log_Pos"],
        ),
        gtid_mode,
        last_io_error: thread_error(r, &["Last_IO_Errno"], &["Last_IO_Error"]),
        last_sql_error: thread_error(r, &["Last_SQL_Errno"], &["Last_SQL_Error"]),
        sql_delay: r.u64(&["SQL_Delay"]).unwrap_or(0),
        ssl: r.flag(&["Source_SSL_Allowed", "Master_SSL_Allowed"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Option<&str>)]) -> RowMap {
        RowMap(pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.map(str::to_string))).collect())
    }

    #[test]
    fn mysql8_replica_status_by_name() {
        let key = InstanceKey::new("db1", 3306);
        let vars = row(&[
            ("version", Some("8.0.36")),
            ("server_id", Some("2")),
            ("server_uuid", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562")),
            ("read_only", Some("1")),
            ("super_read_only", Some("1")),
            ("log_bin", Some("1")),
            ("gtid_mode", Some("ON")),
            ("gtid_executed", Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10")),
        ]);
        let status = row(&[
            ("Source_Host", Some("db0")),
            ("Source_Port", Some("3306")),
            ("Replica_IO_Running", Some("Yes")),
            ("Replica_SQL_Running", Some("No")),
            ("Seconds_Behind_Source", None),
            ("Auto_Position", Some("1")),
            ("Last_SQL_Errno", Some("1062")),
            ("Last_SQL_Error", Some("Duplicate entry")),
        ]);
        let i = parse(&key, Flavor::MySql, &vars, None, Some(&status), &[]).unwrap();
        let r = i.replication.unwrap();
        assert_eq!(r.source, InstanceKey::new("db0", 3306));
        assert_eq!(r.sql_thread, ThreadState::No);
        assert_eq!(r.seconds_behind, None);
        assert_eq!(r.gtid_mode, GtidMode::AutoPosition);
        assert_eq!(r.last_sql_error.unwrap().errno, 1062);
        assert_eq!(i.super_read_only, Some(true));
        assert!(!i.log_slave_updates); // missing column: false, not a panic
    }

    #[test]
    fn bad_gtid_is_an_error_naming_the_instance() {
        let key = InstanceKey::new("db1", 3306);
        let vars = row(&[("gtid_binlog_pos", Some("garbage"))]);
        let e = parse(&key, Flavor::MariaDb, &vars, None, None, &[]).unwrap_err().to_string();
        assert!(e.contains("db1:3306") && e.contains("gtid_binlog_pos"), "{e}");
    }
}
