//! Semi-synchronous clusters on real MariaDB 10.11 servers (semi-sync is built in), under a
//! writer: the takeover carries semi-sync over, refuses what `takeover.semi_sync_required` forbids,
//! and a fence behind a commit stuck waiting for an acknowledgement is a bounded refusal.

mod common;

use std::sync::Arc;
use std::time::Duration;

use baton::config::Config;
use baton::engine::{Engine, NoScripts, Status, TakeoverRequest};
use baton::mysql::workload::Writer;
use baton::mysql::{probe, Connector};
use baton::sandbox::APP_USER;
use baton::store::{SqliteStore, Store};
use baton::topology::{InstanceKey, SemiSync};
use common::*;

fn engine(cfg: &Config) -> Engine {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir).unwrap());
    Engine::new(Arc::new(cfg.clone()), Arc::new(Connector::new(cfg)), store, Arc::new(NoScripts))
}

fn request(m: &InstanceKey, d: &InstanceKey, start: bool) -> TakeoverRequest {
    TakeoverRequest {
        cluster_hint: m.to_string(),
        designated: Some(d.clone()),
        start_replication: start,
        ..Default::default()
    }
}

async fn semi(t: &Topology, k: &InstanceKey) -> SemiSync {
    probe(&t.connector(), k).await.unwrap().semi_sync.expect("MariaDB has semi-sync built in")
}

async fn status_u64(t: &Topology, k: &InstanceKey, name: &str) -> u64 {
    let rows = rows(&t.connector(), k, &format!("SHOW GLOBAL STATUS LIKE '{name}'")).await;
    rows[0].u64(&["Value"]).unwrap()
}

/// A semi-sync replica's replica side switched off (its IO thread restarted to take it).
async fn replica_side_off(t: &Topology, k: &InstanceKey) {
    let conn = t.connector();
    exec(&conn, k, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF").await;
    conn.query_sets(k, "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD").await.unwrap();
}

#[tokio::test]
async fn a_takeover_carries_semi_sync_over() {
    let t = fresh(2).await;
    t.sandbox.enable_semi_sync().await.unwrap();
    let (m, d, s) = (t.master(), t.replicas()[0].clone(), t.replicas()[1].clone());
    let w = Writer::start(t.sandbox.keys(), APP_USER.0, APP_USER.1, 601, Duration::from_millis(3), 1e9).await;
    wait_until("the replicas acknowledge", Duration::from_secs(10), || async {
        let ms = semi(&t, &m).await;
        ms.master_status && ms.master_clients == 2
    })
    .await;
    let cfg = t.cfg();
    // The dry run shows the semi-sync statements where they run.
    let plan = engine(&cfg).takeover(TakeoverRequest { dry_run: true, ..request(&m, &d, true) }, None).await;
    let text = serde_json::to_string(&plan.plan).unwrap();
    assert!(text.contains("SET GLOBAL rpl_semi_sync_master_enabled = ON"), "{text}");
    assert!(text.contains("SET GLOBAL rpl_semi_sync_slave_enabled = ON"), "{text}");

    let rep = engine(&cfg).takeover(request(&m, &d, true), None).await;
    assert_eq!(rep.status, Status::Promoted, "{:?}", rep.errors);
    // The new master waits for acknowledgements, and gets them: a commit there is acknowledged.
    let nd = semi(&t, &d).await;
    assert!(nd.master_enabled, "{nd:?}");
    wait_until("the new master's semi-sync replicas", Duration::from_secs(10), || async {
        let s = semi(&t, &d).await;
        s.master_status && s.master_clients == 2
    })
    .await;
    let yes = status_u64(&t, &d, "Rpl_semi_sync_master_yes_tx").await;
    exec(&t.connector(), &d, "INSERT INTO app.writes (id) VALUES (600000001)").await;
    assert!(status_u64(&t, &d, "Rpl_semi_sync_master_yes_tx").await > yes, "acknowledged by a replica");
    // The demoted master acknowledges as a replica; the sibling kept its replica side.
    let om = semi(&t, &m).await;
    assert!(!om.master_enabled && om.replica_enabled && om.replica_status, "{om:?}");
    assert!(semi(&t, &s).await.replica_enabled);
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &d, 601, &stats.acked).await;
}

#[tokio::test]
async fn semi_sync_required_refuses_what_would_downgrade_it() {
    let t = fresh(2).await;
    t.sandbox.enable_semi_sync().await.unwrap();
    let (m, r1, r2) = (t.master(), t.replicas()[0].clone(), t.replicas()[1].clone());
    let mut cfg = t.cfg();
    cfg.takeover.semi_sync_required = true;
    let before = shape(&t).await;
    // A designated replica that does not acknowledge.
    replica_side_off(&t, &r2).await;
    let rep = engine(&cfg).takeover(request(&m, &r2, true), None).await;
    assert_eq!(rep.status, Status::Refused, "{:?}", rep.errors);
    assert!(rep.errors[0].contains("semi_sync_replica"), "{:?}", rep.errors);
    // An acknowledging one, but the new master would be left with no semi-sync replica (the
    // sibling's replica side is off, the demoted master's replication not started).
    let rep = engine(&cfg).takeover(request(&m, &r1, false), None).await;
    assert_eq!(rep.status, Status::Refused, "{:?}", rep.errors);
    assert!(
        rep.errors[0].contains("semi_sync_replicas_after") && rep.errors[0].contains("a commit waits for 1"),
        "{:?}",
        rep.errors
    );
    assert_eq!(shape(&t).await, before, "nothing changed");
    // The only other semi-sync replica down (downtimed, so the takeover may leave it behind): the
    // same shortfall.
    exec(&t.connector(), &r2, "SET GLOBAL rpl_semi_sync_slave_enabled = ON").await;
    baton::sandbox::send_signal(t.sandbox.instance(r2.port).unwrap().pid, libc::SIGKILL);
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    let until = baton::store::now_unix() + 3600;
    store
        .begin_downtime(&baton::store::Downtime {
            instance: r2.clone(),
            owner: "test".into(),
            reason: "down".into(),
            until,
        })
        .unwrap();
    let rep = engine(&cfg).takeover(request(&m, &r1, false), None).await;
    assert_eq!(rep.status, Status::Refused, "{:?}", rep.errors);
    assert!(rep.errors[0].contains("semi_sync_replicas_after"), "{:?}", rep.errors);
    // With the demoted master replicating (and acknowledging), it goes ahead.
    let rep = engine(&cfg).takeover(request(&m, &r1, true), None).await;
    assert_eq!(rep.status, Status::Promoted, "{:?}", rep.errors);
}

/// Nobody acknowledges (every replica's replica side off, the master told to wait for a replica
/// regardless): a commit waits, holding the lock `read_only` needs. The fence waits at most
/// `fence_lock_wait_s`, the takeover rolls back saying why, the master is writable.
#[tokio::test]
async fn the_fence_behind_a_commit_waiting_for_an_ack_is_bounded() {
    let t = fresh(2).await;
    t.sandbox.enable_semi_sync().await.unwrap();
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let conn = t.connector();
    exec(&conn, &m, "SET GLOBAL rpl_semi_sync_master_timeout = 60000").await;
    exec(&conn, &m, "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON").await;
    for r in t.replicas() {
        replica_side_off(&t, &r).await;
    }
    // A commit that waits for an acknowledgement nobody sends.
    let stuck = {
        let m = m.clone();
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname(m.host.clone())
                .tcp_port(m.port)
                .user(Some(APP_USER.0))
                .pass(Some(APP_USER.1))
                .prefer_socket(false);
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let _ = c.query_drop("INSERT INTO app.writes (id) VALUES (600000002)").await;
        })
    };
    wait_until("the commit waits for an acknowledgement", Duration::from_secs(10), || async {
        status_u64(&t, &m, "Rpl_semi_sync_master_wait_sessions").await >= 1
    })
    .await;
    let mut cfg = t.cfg();
    cfg.takeover.fence_lock_wait_s = 1;
    cfg.takeover.catchup_timeout_ms = 2000;
    let rep = engine(&cfg).takeover(request(&m, &d, true), None).await;
    assert_eq!(rep.status, Status::RolledBack, "{:?}", rep.errors);
    assert!(rep.errors[0].starts_with("fence:"), "{:?}", rep.errors);
    let said = format!("{:?} {:?}", rep.errors, rep.phases.iter().map(|p| &p.detail).collect::<Vec<_>>());
    assert!(said.contains("runs semi-sync: a commit waiting for a replica's acknowledgement"), "{said}");
    assert_eq!(assert_one_master(&t, &[]).await, m, "the master is writable");
    // Acknowledgements again: the stuck commit completes.
    exec(&conn, &m, "SET GLOBAL rpl_semi_sync_master_enabled = OFF").await;
    tokio::time::timeout(Duration::from_secs(10), stuck).await.expect("the commit completed").unwrap();
}

/// A catch-up that fails inside the window (the designated replica blocked as the fence starts,
/// the master taking one more write) rolls back, and the semi-sync roles are as they were: the old
/// master's master side on and acknowledged again, the designated replica still a semi-sync
/// replica with its master side off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_the_semi_sync_roles() {
    let t = fresh(2).await;
    t.sandbox.enable_semi_sync().await.unwrap();
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let mut cfg = t.cfg();
    cfg.takeover.catchup_timeout_ms = 700;
    let block = FenceBlock::new(&cfg, &d).await;
    let rep = engine(&cfg).takeover(request(&m, &d, true), Some(block.sink(&cfg, &m, 600000003))).await;
    assert_eq!(rep.status, Status::RolledBack, "{:?}", rep.errors);
    // The promotion never ran: its semi-sync change (planned with it) was never made.
    assert!(!rep.undo.describe().iter().any(|l| l.contains("semi-sync")), "{:?}", rep.undo.describe());
    block.release().await;
    let (om, dm) = (semi(&t, &m).await, semi(&t, &d).await);
    assert!(om.master_enabled && !om.replica_enabled, "{om:?}");
    assert!(!dm.master_enabled && dm.replica_enabled, "{dm:?}");
    wait_until("the old master acknowledged again", Duration::from_secs(10), || async {
        semi(&t, &m).await.master_status
    })
    .await;
}
