//! The fleet poller (issue 15) against the protocol simulator (`baton::sim`): 30 clusters of 10
//! simulated MariaDB servers on their own loopback addresses, polled every second. The view
//! groups them and judges each cluster's takeover readiness; a new replica, a moved replica and
//! someone else's takeover show within an interval or two; a hanging instance goes to the
//! back-off lane while every healthy instance stays fresh; a refusing master and lagging
//! replicas are refused with the check that refuses.

use std::sync::Arc;
use std::time::Duration;

mod common;
use common::wait_until;

use baton::config::Config;
use baton::fleet::{Lane, Poller};
use baton::sim::{Mode, Sim, SimSpec};
use baton::store::{KnownCluster, SqliteStore, Store};
use baton::topology::InstanceKey;

/// A /16 of 127.0.0.0/8 and a port no other test binary is likely to take at the same time.
fn spec(clusters: usize, size: usize) -> SimSpec {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let b = 2 + (std::process::id() % 200) as u8;
    SimSpec { clusters, cluster_size: size, first_ip: std::net::Ipv4Addr::new(127, b, 0, 1), port, wildcard: false }
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.topology.user = "baton".into();
    cfg.topology.password = baton::config::Secret::new("x");
    cfg.topology.connect_timeout_ms = 300;
    cfg.topology.read_timeout_ms = 300;
    cfg.discovery.poll_interval_s = 1;
    cfg.discovery.poll_backoff_max_s = 4;
    cfg
}

/// Every simulated cluster remembered, aliased c0, c1, ...
fn remember_all(sim: &Sim, store: &dyn Store) {
    for (i, members) in sim.clusters().into_iter().enumerate() {
        let k = KnownCluster {
            name: members[0].to_string(),
            alias: Some(format!("c{i}")),
            members,
            claimed_alias: None,
            seen_at: 0,
        };
        store.remember_cluster(&k).unwrap();
    }
}

async fn started(clusters: usize, size: usize) -> (Sim, Arc<dyn Store>, Poller) {
    baton::process::raise_fd_limit();
    let sim = Sim::start(&spec(clusters, size)).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    remember_all(&sim, store.as_ref());
    let poller = Poller::start(Arc::new(config()), store.clone());
    (sim, store, poller)
}

fn view_of(p: &Poller, alias: &str) -> baton::fleet::ClusterView {
    p.views().unwrap().iter().find(|v| v.alias.as_deref() == Some(alias)).cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_follows_the_fleet() {
    let (sim, _store, p) = started(30, 10).await;
    let clusters = sim.clusters();
    wait_until("every instance probed and every cluster ready", Duration::from_secs(10), || async {
        let v = p.views().unwrap();
        v.len() == 30 && v.iter().all(|c| c.members == 10 && c.readiness.ready)
    })
    .await;
    let c0 = view_of(&p, "c0");
    assert_eq!(c0.master.as_ref(), Some(&clusters[0][0]));
    assert_eq!(c0.problems, 0);
    assert!(c0.readiness.designated.is_some(), "{:?}", c0.readiness);

    // A new replica of c0's master, and a replica of c1 moved under a sibling.
    let added = sim.add_replica(&clusters[0][0]).await.unwrap();
    let (moved, under) = (clusters[1][9].clone(), clusters[1][1].clone());
    sim.move_under(&moved, &under).unwrap();
    wait_until("the new replica and the move show", Duration::from_secs(5), || async {
        let c0 = view_of(&p, "c0");
        let c1 = view_of(&p, "c1");
        let moved_ok = c1.cluster.member(&moved).and_then(|m| m.source.clone()) == Some(under.clone());
        c0.members == 11 && c0.cluster.has_member(&added) && moved_ok
    })
    .await;

    // Someone else's takeover on c2: the view follows the new master.
    let new_master = clusters[2][3].clone();
    sim.promote(&new_master).unwrap();
    wait_until("the new master of c2 shows", Duration::from_secs(5), || async {
        let c2 = view_of(&p, "c2");
        c2.master.as_ref() == Some(&new_master) && c2.readiness.ready && c2.members == 10
    })
    .await;

    // c3's master refuses connections: not ready, and why.
    sim.set_mode(&clusters[3][0], Mode::Refuse).await.unwrap();
    wait_until("c3 refused: its master is unreachable", Duration::from_secs(5), || async {
        let r = view_of(&p, "c3").readiness;
        !r.ready && r.refused.as_ref().is_some_and(|x| x.check == "master_reachable" || x.check == "one_master")
    })
    .await;

    // Every replica of c4 lags 100 s: the check that refuses names the lag.
    for r in &clusters[4][1..] {
        sim.set_lag(r, 100).unwrap();
    }
    wait_until("c4 refused for lag", Duration::from_secs(5), || async {
        let v = view_of(&p, "c4");
        let r = &v.readiness;
        !r.ready && v.worst_lag_s == Some(100) && r.refused.as_ref().is_some_and(|x| x.check == "lag_within_limit")
    })
    .await;
    drop(sim);
}

/// A hanging instance (accepts, never answers) moves to the back-off lane, its probes spaced out;
/// meanwhile every healthy instance's data stays fresh (at most about one interval old).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_instance_goes_to_the_backoff_lane() {
    let (sim, _store, p) = started(20, 10).await;
    wait_until("every instance probed", Duration::from_secs(10), || async {
        p.instances().iter().filter(|i| i.up).count() == 200
    })
    .await;
    let clusters = sim.clusters();
    // One replica in each of ten clusters hangs: 5% of the fleet.
    let hung: Vec<InstanceKey> = clusters.iter().take(10).map(|c| c[9].clone()).collect();
    for k in &hung {
        sim.set_mode(k, Mode::Hang).await.unwrap();
    }
    // New connections hang from the start; the kept-open ones hang on their next query.
    wait_until("the hanging instances are in the back-off lane", Duration::from_secs(10), || async {
        let all = p.instances();
        hung.iter().all(|k| all.iter().any(|i| &i.key == k && i.lane == Lane::Backoff && !i.up))
    })
    .await;
    assert_eq!(p.backoff_lane(), 10);
    let mut worst: f64 = 0.0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        worst = worst.max(p.stalest_healthy_s());
    }
    assert!(worst < 3.0, "a healthy instance's data got {worst:.2} s old with 1 s polling");
    // Answering again: back in the healthy lane (the back-off is at most 4 s here).
    for k in &hung {
        sim.set_mode(k, Mode::Normal).await.unwrap();
    }
    wait_until("back to the healthy lane", Duration::from_secs(10), || async { p.backoff_lane() == 0 }).await;
    p.stop();
}

/// The poller on real MariaDB (the shared 1+3 sandbox): the lean client logs in
/// (mysql_native_password) and its probe reads what the full probe reads; the view finds the
/// cluster ready for a takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lean_probe_reads_real_mariadb_as_the_full_probe_does() {
    let t = common::shared();
    let cfg = t.cfg();
    let creds = cfg.topology.credentials();
    for k in t.sandbox.keys() {
        let full = baton::mysql::probe(&t.connector(), &k).await.unwrap();
        let mut conn = baton::mysql::lean::LeanConn::connect(
            &k.to_string(),
            &creds.user,
            creds.password.expose().as_bytes(),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let (lean, _) = baton::mysql::probe::probe_lean(&mut conn, &k, None, Duration::from_secs(2)).await.unwrap();
        assert_eq!(lean.server_id, full.server_id, "{k}");
        assert_eq!(lean.read_only, full.read_only, "{k}");
        assert_eq!(lean.version, full.version, "{k}");
        assert_eq!(lean.source(), full.source(), "{k}");
        assert_eq!(lean.reported_replicas, full.reported_replicas, "{k}");
        assert_eq!(format!("{:?}", lean.gtid), format!("{:?}", full.gtid), "{k}");
        assert_eq!(lean.binlog.is_some(), full.binlog.is_some(), "{k}");
        // A statement after the first that fails: an error, and the connection answers the next
        // query with its own answer.
        let err = conn.query_sets("DO 1; SELECT * FROM nosuch_db.nosuch; SELECT 4", Duration::from_secs(2)).await;
        assert!(err.as_ref().is_err_and(|e| e.to_string().contains("nosuch")), "{k}: {err:?}");
        let rows = conn.query_sets("SELECT 7 AS n", Duration::from_secs(2)).await.unwrap();
        assert_eq!(rows[0][0].text(&["n"]), Some("7"), "{k}");
    }
    // A wrong password is refused by the server, named.
    let bad =
        baton::mysql::lean::LeanConn::connect(&t.master().to_string(), &creds.user, b"wrong", Duration::from_secs(2))
            .await
            .err()
            .expect("a wrong password is refused");
    assert!(bad.to_string().contains("1045"), "{bad}");

    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let members = t.sandbox.keys();
    let k = KnownCluster {
        name: t.master().to_string(),
        alias: Some("real".into()),
        members,
        claimed_alias: None,
        seen_at: 0,
    };
    store.remember_cluster(&k).unwrap();
    let mut pcfg = cfg.clone();
    pcfg.discovery.poll_interval_s = 1;
    let p = Poller::start(Arc::new(pcfg), store);
    wait_until("the real cluster is ready", Duration::from_secs(10), || async {
        p.views().unwrap().iter().any(|v| v.alias.as_deref() == Some("real") && v.members == 4 && v.readiness.ready)
    })
    .await;
    p.stop();
}

/// The service reads the fleet from the poller's cache: `GET /api/v1/fleet`, orchestrator's
/// `clusters-info` and `problems` (with the data's age in a header), and the fleet metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_answers_from_the_cache() {
    baton::init_crypto();
    let sim = Sim::start(&spec(3, 3)).await.unwrap();
    let dir = std::env::temp_dir().join(format!("baton-fleet-{}", uuid::Uuid::new_v4().simple()));
    let mut cfg = config();
    cfg.paths.data_dir = dir.join("data");
    cfg.paths.scripts_dir = dir.join("scripts");
    cfg.paths.hooks_dir = dir.join("hooks");
    cfg.scripts.policy = String::new();
    let mut state = baton::http::AppState::new(&cfg).await.unwrap();
    remember_all(&sim, state.engine.store.as_ref());
    let poller = Poller::start(state.cfg.clone(), state.engine.store.clone());
    state.fleet = Some(poller.clone());
    let broken = sim.clusters()[1][2].clone();
    sim.break_replication(&broken).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, baton::http::router(state)).await });
    let http = reqwest::Client::new();
    wait_until("every instance probed", Duration::from_secs(10), || async {
        poller.instances().iter().filter(|i| i.up).count() == 9
    })
    .await;
    wait_until("the fleet route: c0 ready, c1 with its problems", Duration::from_secs(10), || async {
        let v: serde_json::Value = http.get(format!("{base}/api/v1/fleet")).send().await.unwrap().json().await.unwrap();
        let list = v["clusters"].as_array().cloned().unwrap_or_default();
        let c = |a: &str| list.iter().find(|c| c["alias"] == a).cloned().unwrap_or_default();
        list.len() == 3 && c("c0")["readiness"]["ready"] == true && c("c1")["problems"].as_u64() >= Some(1)
    })
    .await;
    let r = http.get(format!("{base}/api/clusters-info")).send().await.unwrap();
    assert!(r.headers().get("x-baton-data-age-s").is_some(), "{:?}", r.headers());
    let info: serde_json::Value = r.json().await.unwrap();
    assert_eq!(info.as_array().map(Vec::len), Some(3), "{info}");
    let problems: serde_json::Value =
        http.get(format!("{base}/api/problems")).send().await.unwrap().json().await.unwrap();
    let hosts: Vec<String> = problems
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["Key"]["Hostname"].as_str().map(str::to_string))
        .collect();
    assert_eq!(hosts, std::slice::from_ref(&broken.host), "{problems}");
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("baton_fleet_instance_up{"), "{metrics}");
    assert!(metrics.contains("baton_fleet_cluster_takeover_ready{"), "{metrics}");
    assert!(metrics.matches("# EOF").count() <= 1);
    poller.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
