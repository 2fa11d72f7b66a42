//! A panic inside a takeover ends like any failure (issue 14): settled from the journal and the
//! live topology, locks released, report saved. Its own test binary: the fault is injected
//! through an environment variable read once per process.

mod common;

use std::sync::Arc;

use baton::engine::{Engine, NoScripts, Status, TakeoverRequest};
use baton::mysql::Connector;
use baton::store::{SqliteStore, Store};
use common::*;

#[tokio::test]
async fn a_panic_after_the_fence_is_rolled_back_and_releases_the_locks() {
    // SAFETY: set before any thread of this test binary reads the environment; the only test here.
    unsafe { std::env::set_var("BATON_FAULT_PANIC_AFTER", "fence") };
    let t = fresh(2).await;
    let cfg = t.cfg();
    let before = shape(&t).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir).unwrap());
    let e = Engine::new(Arc::new(cfg.clone()), Arc::new(Connector::new(&cfg)), store.clone(), Arc::new(NoScripts));
    let r1 = t.replicas()[0].clone();
    let req = TakeoverRequest {
        cluster_hint: t.master().to_string(),
        designated: Some(r1),
        start_replication: true,
        ..Default::default()
    };
    let rep = e.takeover(req, None).await;
    assert_eq!(rep.status, Status::RolledBack, "{:?}\n{:#?}", rep.errors, rep.phases);
    assert!(rep.errors[0].contains("panicked"), "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before, "the fence was undone");
    // The report is saved as settled, and the cluster is free for the next takeover.
    assert_eq!(store.takeover(&rep.id).unwrap().unwrap().status, "rolled_back");
    let c = live_cluster(&t).await;
    let lock = c.alias.clone().unwrap_or(c.name.clone());
    assert_eq!(store.lock_cluster(&lock, "next").unwrap(), None);
}
