//! The store on etcd (issue 10, first part) against a real 3-member etcd (Debian's
//! `etcd-server`, started here on free loopback ports): the same contract as the SQLite store,
//! state shared between two stores (two Baton nodes), the lock and the first record in one
//! transaction, a damaged record skipped and set aside, an etcd member killed, and every member
//! down answered with a clear error.

mod common;

use std::time::Duration;

use baton::sandbox::etcd::EtcdCluster;
use baton::store::{AuditEntry, Downtime, EtcdStore, KnownCluster, PromotionRule, RuleEntry, SqliteStore, Store};
use baton::topology::InstanceKey;

fn k(p: u16) -> InstanceKey {
    InstanceKey::new("127.0.0.1", p)
}

fn entry(id: &str, cluster: &str, status: &str, at: i64) -> AuditEntry {
    AuditEntry {
        id: id.into(),
        cluster: cluster.into(),
        status: status.into(),
        started_at: at,
        record: serde_json::json!({ "id": id }),
    }
}

/// What every store must do, as the engine and the CLI rely on it.
fn contract(s: &dyn Store) {
    // Clusters: a member belongs to one cluster; aliases move only when asked.
    let c1 = KnownCluster {
        name: "a:1".into(),
        alias: Some("orders".into()),
        members: vec![k(1), k(2)],
        claimed_alias: None,
        seen_at: 0,
    };
    s.remember_cluster(&c1).unwrap();
    assert_eq!(s.find_cluster("orders").unwrap().unwrap().name, "a:1");
    assert_eq!(s.cluster_of(&k(2)).unwrap().unwrap().name, "a:1");
    // After a takeover the cluster is named after its new master: the old name goes.
    let c2 = KnownCluster { name: "a:2".into(), ..c1.clone() };
    s.remember_cluster(&c2).unwrap();
    let names: Vec<String> = s.clusters().unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["a:2"]);
    let other = KnownCluster { name: "b:9".into(), alias: None, members: vec![k(9)], claimed_alias: None, seen_at: 0 };
    s.remember_cluster(&other).unwrap();
    assert!(s.move_alias("orders", "b:9").unwrap());
    assert_eq!(s.find_cluster("orders").unwrap().unwrap().name, "b:9");
    assert!(!s.move_alias("orders", "nope").unwrap());
    assert!(s.forget_member(&k(1)).unwrap());
    assert_eq!(s.cluster_of(&k(2)).unwrap().unwrap().members, vec![k(2)]);
    assert!(s.forget_cluster("b:9").unwrap() && !s.forget_cluster("b:9").unwrap());

    // Rules and downtime, with expiry.
    let now = baton::store::now_unix();
    s.set_promotion_rule(&RuleEntry { instance: k(1), rule: PromotionRule::Prefer, until: None }).unwrap();
    s.set_promotion_rule(&RuleEntry { instance: k(2), rule: PromotionRule::MustNot, until: Some(now - 1) }).unwrap();
    let rules: Vec<InstanceKey> = s.promotion_rules().unwrap().into_iter().map(|r| r.instance).collect();
    assert_eq!(rules, vec![k(1)], "the expired rule is not in force");
    s.clear_promotion_rule(&k(1)).unwrap();
    assert!(s.promotion_rules().unwrap().is_empty());
    s.begin_downtime(&Downtime { instance: k(3), owner: "o".into(), reason: "r".into(), until: now + 60 }).unwrap();
    assert_eq!(s.downtimes().unwrap().len(), 1);
    assert!(s.end_downtime(&k(3)).unwrap() && !s.end_downtime(&k(3)).unwrap());

    // The lock and the first record together; a second takeover gets the holder, no record.
    assert_eq!(s.lock_cluster_journaled("orders", &entry("t1", "a:2", "running", 10)).unwrap(), None);
    assert_eq!(s.lock_cluster_journaled("orders", &entry("t2", "a:2", "running", 11)).unwrap(), Some("t1".into()));
    assert!(s.takeover("t2").unwrap().is_none(), "no record without the lock");
    assert_eq!(s.lock_cluster("orders", "t3").unwrap(), Some("t1".into()));
    s.unlock_cluster("orders", "t3").unwrap();
    assert_eq!(s.lock_cluster("orders", "t3").unwrap(), Some("t1".into()), "only the holder unlocks");
    assert_eq!(s.unsettled_takeovers().unwrap().len(), 1);
    s.save_takeover(&entry("t1", "a:2", "promoted", 10)).unwrap();
    assert!(s.unsettled_takeovers().unwrap().is_empty());
    assert_eq!(s.release_locks_of("t1").unwrap(), vec!["orders".to_string()]);
    assert_eq!(s.lock_cluster("orders", "t4").unwrap(), None);
    s.unlock_cluster("orders", "t4").unwrap();

    // Audit, newest first, per cluster; operations.
    s.save_takeover(&entry("t5", "other", "refused", 20)).unwrap();
    let ids: Vec<String> = s.takeovers(None, 10).unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["t5", "t1"]);
    assert_eq!(s.takeovers(Some("a:2"), 10).unwrap().len(), 1);
    assert_eq!(s.takeovers(None, 1).unwrap().len(), 1);
    s.save_operation(&entry("op1", "a:2", "ok", 5)).unwrap();
    assert_eq!(s.operations(10).unwrap()[0].id, "op1");
    assert!(s.damaged().unwrap().is_empty());
}

#[test]
fn the_sqlite_store_keeps_the_contract() {
    let dir = std::env::temp_dir().join(format!("baton-contract-{}", uuid::Uuid::new_v4().simple()));
    contract(&SqliteStore::open(&dir).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_keeps_the_contract_and_is_shared() {
    let dir = std::env::temp_dir().join(format!("baton-etcd-{}", uuid::Uuid::new_v4().simple()));
    let mut etcd = EtcdCluster::start(&dir, 3).await.unwrap();
    let endpoints = etcd.endpoints();
    let timeout = Duration::from_secs(3);
    let a = EtcdStore::connect(&endpoints, "/baton/test-a/", timeout).unwrap();
    contract(&a);

    // Two nodes on one prefix share everything: a rule set through one is read by the other,
    // audit written by one is listed by the other, and the lock is one.
    let n1 = EtcdStore::connect(&endpoints[..1], "/baton/v1/", timeout).unwrap();
    let n2 = EtcdStore::connect(&endpoints[1..], "/baton/v1/", timeout).unwrap();
    n1.set_promotion_rule(&RuleEntry { instance: k(7), rule: PromotionRule::Prefer, until: None }).unwrap();
    assert_eq!(n2.promotion_rules().unwrap()[0].instance, k(7));
    assert_eq!(n1.lock_cluster_journaled("c", &entry("x1", "c", "running", 1)).unwrap(), None);
    assert_eq!(n2.lock_cluster_journaled("c", &entry("x2", "c", "running", 2)).unwrap(), Some("x1".into()));
    assert_eq!(n2.unsettled_takeovers().unwrap()[0].id, "x1", "the other node's journal is readable");

    // Pruning: settled records older than the cut go (more than one etcd transaction's worth),
    // unsettled ones and newer ones stay.
    let p = EtcdStore::connect(&endpoints, "/baton/prune/", timeout).unwrap();
    for i in 0..150 {
        p.save_takeover(&entry(&format!("old{i}"), "c", "promoted", 1_000 + i)).unwrap();
    }
    p.save_takeover(&entry("old-running", "c", "running", 1_000)).unwrap();
    p.save_takeover(&entry("old-operator", "c", "needs_operator", 1_000)).unwrap();
    p.save_takeover(&entry("new", "c", "rolled_back", 50_000)).unwrap();
    p.save_operation(&entry("op-old", "c", "ok", 1_000)).unwrap();
    p.save_operation(&entry("op-new", "c", "ok", 50_000)).unwrap();
    assert_eq!(p.prune_audit(10_000).unwrap(), 151);
    let left: Vec<String> = p.takeovers(None, 1000).unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(left, ["new", "old-running", "old-operator"]);
    assert_eq!(p.operations(10).unwrap().len(), 1);
    assert_eq!(p.prune_audit(10_000).unwrap(), 0);
    // SQLite is the node's own archive: nothing is pruned.
    let sq = SqliteStore::in_memory().unwrap();
    sq.save_takeover(&entry("old", "c", "promoted", 1_000)).unwrap();
    assert_eq!(sq.prune_audit(10_000).unwrap(), 0);

    // A damaged record: skipped by listings, named, set aside.
    let mut raw = etcd_client::Client::connect(&endpoints, None).await.unwrap();
    raw.put("/baton/v1/takeovers/bad", "{not json", None).await.unwrap();
    assert_eq!(n1.takeovers(None, 10).unwrap().len(), 1);
    let damaged = n1.damaged().unwrap();
    assert_eq!((damaged.len(), damaged[0].id.as_str()), (1, "bad"));
    assert!(n1.takeover("bad").unwrap_err().to_string().contains("takeover bad"));
    assert_eq!(n1.set_aside_damaged().unwrap(), 1);
    assert!(n1.damaged().unwrap().is_empty());
    assert!(raw.get("/baton/v1/damaged/takeovers/bad", None).await.unwrap().count() == 1, "kept, not deleted");

    // Fenced by an election key: writes land while the key is there, and are refused once it is
    // gone (the lease behind it revoked: a deposed leader), locks included.
    let lease = raw.lease_grant(30, None).await.unwrap().id();
    let won = raw.campaign("/baton/v1/leader", "http://node-a", lease).await.unwrap();
    let key = won.leader().unwrap();
    let fence = baton::store::Fence::default();
    *fence.lock().unwrap() = Some((key.key().to_vec(), key.rev()));
    let fenced = EtcdStore::connect(&endpoints, "/baton/v1/", timeout).unwrap().fenced_by(fence);
    fenced.set_promotion_rule(&RuleEntry { instance: k(8), rule: PromotionRule::Prefer, until: None }).unwrap();
    assert_eq!(fenced.lock_cluster("d", "y1").unwrap(), None);
    assert_eq!(fenced.lock_cluster("d", "y2").unwrap(), Some("y1".into()), "the holder, not the election's value");
    raw.lease_revoke(lease).await.unwrap();
    let refused = fenced.save_takeover(&entry("y3", "d", "running", 3)).unwrap_err().to_string();
    assert!(refused.contains("no longer leads"), "{refused}");
    let refused = fenced.lock_cluster("e", "y4").unwrap_err().to_string();
    assert!(refused.contains("no longer leads"), "{refused}");
    assert!(n1.takeover("y3").unwrap().is_none(), "the deposed write did not land");

    // Owners on other hosts: a takeover whose node has no registration (its lease gone) is
    // interrupted; one whose node is registered is running; one with no node cannot be told and
    // counts as running.
    let engine = baton::engine::Engine::new(
        std::sync::Arc::new(baton::config::Config::default()),
        std::sync::Arc::new(baton::mysql::Connector::new(&baton::config::Config::default())),
        std::sync::Arc::new(EtcdStore::connect(&endpoints, "/baton/nodes-test/", timeout).unwrap()),
        std::sync::Arc::new(baton::engine::NoScripts),
    );
    let running = |id: &str, node: Option<&str>| {
        let mut owner = serde_json::json!({ "host": "elsewhere", "pid": 1, "started": 1 });
        if let Some(n) = node {
            owner["node"] = serde_json::json!(n);
        }
        let report = serde_json::json!({
            "id": id, "command": "graceful-master-takeover", "status": "running", "cluster": "c", "alias": null,
            "old_master": null, "new_master": null, "choice": null, "started_at": 1, "total_ms": 0.0,
            "write_unavailable_ms": null, "old_master_repointed": false, "siblings_moved": [], "phases": [],
            "errors": [], "warnings": [], "owner": owner,
        });
        AuditEntry { id: id.into(), cluster: "c".into(), status: "running".into(), started_at: 1, record: report }
    };
    engine.store.save_takeover(&running("on-dead-node", Some("ghost"))).unwrap();
    engine.store.save_takeover(&running("on-live-node", Some("alive"))).unwrap();
    engine.store.save_takeover(&running("no-node", None)).unwrap();
    let lease = raw.lease_grant(30, None).await.unwrap().id();
    raw.put("/baton/nodes-test/nodes/alive", "http://x", Some(etcd_client::PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let engine2 = engine.clone();
    let ids: Vec<String> = tokio::task::spawn_blocking(move || engine2.interrupted().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["on-dead-node"], "only the takeover whose node is gone");
    // Its lease revoked, the live node is gone too.
    raw.lease_revoke(lease).await.unwrap();
    let ids: Vec<String> = tokio::task::spawn_blocking(move || engine.interrupted().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(ids.contains(&"on-live-node".to_string()) && !ids.contains(&"no-node".to_string()), "{ids:?}");

    // One member killed (not the one n2 talks to, then that one too): the other answers stay.
    etcd.members[2].kill();
    n2.save_takeover(&entry("x1", "c", "rolled_back", 1)).unwrap();
    assert!(n1.unsettled_takeovers().unwrap().is_empty());
    // Every member down: a clear error, nothing hangs past the timeout.
    etcd.members[0].kill();
    etcd.members[1].kill();
    let err = tokio::task::spawn_blocking(move || n1.promotion_rules().unwrap_err().to_string()).await.unwrap();
    assert!(err.contains("store etcd (") && err.contains(&endpoints[0]), "{err}");
}

/// Two `baton` processes with their own data directories and one etcd: a promotion rule set
/// through one is used by a takeover the other runs, and the audit it writes is listed by the
/// first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_baton_processes_share_rules_and_audit_through_etcd() {
    let t = common::fresh(2).await;
    let dir = t.sandbox.dir.join("etcd");
    let etcd = EtcdCluster::start(&dir, 3).await.unwrap();
    let ha = format!(
        "[ha]\netcd_endpoints = [{}]\n",
        etcd.endpoints().iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ")
    );
    let node = |name: &str| {
        let base = std::fs::read_to_string(common::config_file(&t)).unwrap();
        let own = base
            .replace(&t.cfg().paths.data_dir.display().to_string(), &t.sandbox.dir.join(name).display().to_string());
        let path = t.sandbox.dir.join(format!("{name}.toml"));
        std::fs::write(&path, format!("{own}{ha}")).unwrap();
        path
    };
    let (a, b) = (node("node-a"), node("node-b"));
    let baton = |file: &std::path::Path, args: &[&str]| {
        std::process::Command::new(common::baton_bin())
            .arg("--config")
            .arg(file)
            .args(args)
            .env_remove("BATON_CONFIG")
            .output()
            .unwrap()
    };
    let (m, r1, r2) = (t.master(), t.replicas()[0].clone(), t.replicas()[1].clone());
    // Node B says r2 must never be promoted; node A's auto takeover picks r1.
    let out = baton(&b, &["promotion-rule", "set", &r2.to_string(), "must_not"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = baton(&a, &["takeover", &m.to_string(), "--auto", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let rep: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rep["new_master"], r1.to_string(), "{rep}");
    // Node B lists the takeover node A ran.
    let out = baton(&b, &["audit"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(rep["id"].as_str().unwrap()),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(etcd);
}
