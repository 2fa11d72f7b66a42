//! Probe and discovery against real MariaDB topologies.

mod common;

use baton::discovery;
use baton::mysql::probe;
use baton::store::SqliteStore;
use baton::topology::{Flavor, GtidMode, GtidState, ProblemKind, ThreadState, Version};
use common::*;

#[tokio::test]
async fn probe_fields_match_what_the_server_says() {
    let t = shared();
    let conn = t.connector();
    let m = t.master();
    let r = &t.replicas()[0];

    let mi = probe(&conn, &m).await.unwrap();
    let vars = &rows(&conn, &m, "SELECT @@server_id AS id, @@gtid_binlog_pos AS pos, @@read_only AS ro").await[0];
    assert_eq!(mi.server_id as u64, vars.u64(&["id"]).unwrap());
    assert!(!mi.read_only);
    assert!(mi.log_bin && mi.log_slave_updates);
    assert_eq!(mi.binlog_format, "ROW");
    assert!(mi.replication.is_none());
    // The server's clock, read with the probe: the same machine here, so within a second.
    assert!(mi.clock_skew_s.is_some_and(|s| s.abs() < 1.0), "{:?}", mi.clock_skew_s);
    let status = &rows(&conn, &m, "SHOW MASTER STATUS").await[0];
    let coords = mi.binlog.as_ref().unwrap();
    assert_eq!(coords.file, status.string(&["File"]));
    assert_eq!(coords.pos, status.u64(&["Position"]).unwrap());
    match &mi.gtid {
        GtidState::MariaDb { binlog_pos, strict_mode, .. } => {
            assert_eq!(binlog_pos.to_string(), vars.string(&["pos"]));
            assert!(*strict_mode);
        }
        other => panic!("expected MariaDB GTID state, got {other:?}"),
    }
    let mut reported = mi.reported_replicas.clone();
    reported.sort();
    assert_eq!(reported, t.replicas());

    let ri = probe(&conn, r).await.unwrap();
    assert!(ri.read_only);
    let rep = ri.replication.as_ref().unwrap();
    assert_eq!(rep.source, m);
    assert_eq!(rep.io_thread, ThreadState::Yes);
    assert_eq!(rep.sql_thread, ThreadState::Yes);
    assert_eq!(rep.gtid_mode, GtidMode::SlavePos);
    assert_eq!(rep.seconds_behind, Some(0));
    assert!(rep.last_io_error.is_none() && rep.last_sql_error.is_none());
    assert!(ri.probe_ms > 0.0);
    conn.close().await;
}

/// A long-running Baton believed a server was MySQL 8.4 (say it was upgraded, or replaced, in
/// place): the probe in the wrong dialect fails, the version is read again, and the probe answers
/// with the right one; what it learned is kept.
#[tokio::test]
async fn a_server_that_changed_in_place_is_probed_in_its_new_dialect() {
    let t = shared();
    let conn = t.connector();
    let m = t.master();
    probe(&conn, &m).await.unwrap();
    assert!(conn.learned(&m, Flavor::MySql, Version(8, 4, 0)), "a different belief is a change");
    assert_eq!(conn.dialect(&m).await.unwrap().flavor(), Flavor::MySql);
    let i = probe(&conn, &m).await.unwrap();
    assert_eq!(i.flavor, Flavor::MariaDb);
    assert_eq!(conn.dialect(&m).await.unwrap().flavor(), Flavor::MariaDb);
    assert!(!conn.learned(&m, Flavor::MariaDb, i.version_number()), "the new belief was kept");
}

#[tokio::test]
async fn discovery_from_master_and_from_replica_agree() {
    let t = shared();
    let cfg = t.cfg();
    let conn = t.connector();
    let from_master = discovery::discover(&conn, &cfg, &[t.master()]).await.unwrap();
    let from_replica = discovery::discover(&conn, &cfg, &[t.replicas()[2].clone()]).await.unwrap();
    for c in [&from_master, &from_replica] {
        assert_eq!(c.name, t.master().to_string());
        assert_eq!(c.master.as_ref(), Some(&t.master()));
        assert_eq!(c.alias.as_deref(), Some(t.sandbox.alias.as_str()));
        assert_eq!(c.members.len(), 4);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
    }
    let shape = |c: &baton::topology::Cluster| -> Vec<(String, Option<u32>)> {
        c.members.iter().map(|m| (m.key.to_string(), m.depth)).collect()
    };
    assert_eq!(shape(&from_master), shape(&from_replica));
    assert_eq!(from_master.members[0].depth, Some(0));
    assert!(from_master.members[1..].iter().all(|m| m.depth == Some(1)));
    conn.close().await;
}

#[tokio::test]
async fn alias_is_remembered_and_resolves() {
    let t = shared();
    let mut cfg = t.cfg();
    cfg.paths.data_dir = t.sandbox.dir.join(format!("data-{}", uuid::Uuid::new_v4().simple()));
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    let conn = t.connector();
    let alias = t.sandbox.alias.clone();
    let err = discovery::discover_hint(&conn, &cfg, &store, &alias).await.unwrap_err().to_string();
    assert!(err.contains(&alias), "unknown alias before any discovery: {err}");
    discovery::discover_hint(&conn, &cfg, &store, &t.master().to_string()).await.unwrap();
    let c = discovery::discover_hint(&conn, &cfg, &store, &alias).await.unwrap();
    assert_eq!(c.master, Some(t.master()));
    conn.close().await;
}

#[tokio::test]
async fn stopped_sql_thread_and_chained_replica() {
    let t = fresh(3).await;
    let cfg = t.cfg();
    let conn = t.connector();
    let m = t.master();
    let (r1, r2, r3) = (t.replicas()[0].clone(), t.replicas()[1].clone(), t.replicas()[2].clone());
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    discovery::discover_hint(&conn, &cfg, &store, &m.to_string()).await.unwrap();

    // r1: SQL thread stopped; lag must read NULL, not 0, and it is a problem.
    exec(&conn, &r1, "STOP SLAVE SQL_THREAD").await;
    // r2: replica of r1 (chained, depth 2).
    exec(&conn, &r2, "STOP SLAVE").await;
    exec(
        &conn,
        &r2,
        &format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos",
            r1.port
        ),
    )
    .await;
    exec(&conn, &r2, "START SLAVE").await;
    // r3: fully stopped: the master no longer lists it; the remembered membership finds it.
    exec(&conn, &r3, "STOP SLAVE").await;

    let c = discovery::discover_hint(&conn, &cfg, &store, &m.to_string()).await.unwrap();
    let i1 = c.instance(&r1).unwrap();
    let rep = i1.replication.as_ref().unwrap();
    assert_eq!(rep.sql_thread, ThreadState::No);
    assert_eq!(rep.io_thread, ThreadState::Yes);
    assert_eq!(rep.seconds_behind, None);
    assert!(c.problems_of(&r1).iter().any(|p| p.kind == ProblemKind::ReplicationStopped));
    assert_eq!(c.member(&r2).unwrap().depth, Some(2));
    assert_eq!(c.member(&r2).unwrap().source.as_ref(), Some(&r1));
    assert!(c.has_member(&r3), "stopped replica found through remembered membership");
    assert!(c.problems_of(&r3).iter().any(|p| p.kind == ProblemKind::ReplicationStopped));

    // A writable replica is a second writable instance.
    exec(&conn, &r3, "SET GLOBAL read_only = OFF").await;
    let c = discovery::discover(&conn, &cfg, std::slice::from_ref(&r3)).await.unwrap();
    assert!(c.problems_of(&r3).iter().any(|p| p.kind == ProblemKind::SecondWritable));

    // An errant transaction on a replica.
    exec(&conn, &r3, "INSERT INTO app.writes (id) VALUES (999999)").await;
    let c = discovery::discover(&conn, &cfg, std::slice::from_ref(&m)).await.unwrap();
    assert!(c.problems_of(&r3).iter().any(|p| p.kind == ProblemKind::ErrantGtid), "{:?}", c.problems);

    // Killing a replica: reported unreachable, not fatal.
    let pid = t.sandbox.instance(r1.port).unwrap().pid;
    baton::sandbox::send_signal(pid, libc::SIGKILL);
    baton::sandbox::wait_exit(pid, std::time::Duration::from_secs(10)).await;
    conn.forget(&r1);
    let c = discovery::discover_hint(&conn, &cfg, &store, &m.to_string()).await.unwrap();
    assert!(c.problems_of(&r1).iter().any(|p| p.kind == ProblemKind::Unreachable), "{:?}", c.problems);
    conn.close().await;
}

#[test]
fn cli_bad_input_gives_one_clear_line() {
    let t = shared();
    let dir = t.sandbox.dir.join(format!("cli-{}", uuid::Uuid::new_v4().simple()));
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(baton_bin());
        cmd.args(args).env("BATON_DATA_DIR", &dir).env_remove("BATON_CONFIG").current_dir(&t.sandbox.dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let master = t.master().to_string();
    /// (CLI arguments, environment, a piece of the expected error)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["topology", "foo"], vec![], "'foo' is neither host:port nor a known cluster alias"),
        (vec!["topology", "host:notaport"], vec![], "'notaport' is not a port number"),
        (vec!["topology", "nosuchalias"], vec![], "nosuchalias"),
        (vec!["topology", "127.0.0.1:1"], vec![], "127.0.0.1:1: cannot connect"),
        (vec!["topology", master.as_str()], vec![("BATON_TOPOLOGY_PASSWORD", "wrong")], "Access denied"),
    ];
    for (args, env, expect) in cases {
        let (code, _out, err) = run(&args, &env);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got: {err}");
    }
    let (code, out, err) = run(&["topology", &master, "--json"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["master"], master.as_str());
    assert_eq!(v["members"].as_array().unwrap().len(), 4);
    let (code, out, _) = run(&["topology", &t.sandbox.alias], &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("+ {}", t.replicas()[0])), "{out}");
}

/// Trust boundary (issue 13, item 2): a server that claims an alias in use (a clone restored from
/// the cluster's backup) does not take it over by being discovered; both clusters show the claim,
/// and only an admin's move gives it the alias.
#[tokio::test]
async fn a_second_cluster_claiming_an_alias_does_not_rebind_it() {
    let real = shared();
    let clone = fresh(0).await;
    let cfg = real.cfg();
    let conn = real.connector();
    let dir = std::env::temp_dir().join(format!("baton-alias-{}", uuid::Uuid::new_v4().simple()));
    let store = SqliteStore::open(&dir).unwrap();
    let alias = real.sandbox.alias.clone();
    let first = discovery::discover_hint(&conn, &cfg, &store, &real.master().to_string()).await.unwrap();
    assert_eq!(first.alias.as_deref(), Some(alias.as_str()));

    let cm = clone.master();
    exec(&conn, &cm, &format!("UPDATE meta.cluster SET alias = '{alias}'")).await;
    // A read of the clone (what a read-role caller may do).
    let impostor = discovery::discover_hint(&conn, &cfg, &store, &cm.to_string()).await.unwrap();
    assert_eq!(impostor.alias, None);
    let p = impostor.problems.iter().find(|p| p.kind == ProblemKind::AliasConflict).expect("the claim is a problem");
    assert!(p.message.contains(&alias) && p.message.contains(&first.name), "{}", p.message);
    // The alias still resolves to the real cluster, which now shows the claim too.
    let again = discovery::discover_hint(&conn, &cfg, &store, &alias).await.unwrap();
    assert_eq!(again.name, first.name);
    assert_eq!(again.alias.as_deref(), Some(alias.as_str()));
    let p = again.problems.iter().find(|p| p.kind == ProblemKind::AliasConflict).expect("the owner shows the claim");
    assert!(p.message.contains(&impostor.name), "{}", p.message);

    // An admin moves it.
    use baton::store::Store;
    assert!(!store.move_alias(&alias, "nosuch:1").unwrap());
    assert!(store.move_alias(&alias, &impostor.name).unwrap());
    let moved = discovery::discover_hint(&conn, &cfg, &store, &alias).await.unwrap();
    assert_eq!(moved.name, impostor.name);
    assert_eq!(moved.alias.as_deref(), Some(alias.as_str()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 11, item 4: a remembered cluster none of whose members answers any more is forgotten
/// once it has not been seen for `discovery.forget_after_s`; a live one stays (and is seen again).
#[tokio::test]
async fn clusters_nobody_answers_for_are_forgotten() {
    use baton::store::{KnownCluster, Store};
    let t = shared();
    let mut cfg = t.cfg();
    let conn = t.connector();
    let dir = std::env::temp_dir().join(format!("baton-forget-{}", uuid::Uuid::new_v4().simple()));
    let store = SqliteStore::open(&dir).unwrap();
    let live = discovery::discover_hint(&conn, &cfg, &store, &t.master().to_string()).await.unwrap();
    let gone: baton::topology::InstanceKey = "127.0.0.1:1".parse().unwrap();
    store
        .remember_cluster(&KnownCluster {
            name: gone.to_string(),
            alias: Some("decommissioned".into()),
            members: vec![gone.clone()],
            claimed_alias: None,
            seen_at: 0,
        })
        .unwrap();
    // Not stale yet: nothing is probed or dropped.
    assert!(discovery::forget_unseen(&conn, &cfg, &store).await.unwrap().is_empty());
    assert_eq!(store.clusters().unwrap().len(), 2);
    cfg.discovery.forget_after_s = 0;
    assert_eq!(discovery::forget_unseen(&conn, &cfg, &store).await.unwrap(), vec![gone.to_string()]);
    let left = store.clusters().unwrap();
    assert_eq!(left.iter().map(|c| c.name.clone()).collect::<Vec<_>>(), vec![live.name.clone()]);
    let _ = std::fs::remove_dir_all(&dir);
}
