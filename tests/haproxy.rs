//! The shipped HAProxy writer hook against a real `haproxy` (Debian's package) started here, with
//! the application writing **through** HAProxy: the writer moves with the takeover and no
//! acknowledged write is lost; a takeover that rolls back gives the writer back to the old master.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use baton::config::Config;
use baton::engine::{Engine, Status, TakeoverReport, TakeoverRequest};
use baton::lua::{Env, ScriptHost};
use baton::mysql::workload::Writer;
use baton::sandbox::haproxy::Haproxy;
use baton::sandbox::APP_USER;
use baton::store::{SqliteStore, Store};
use common::*;

async fn lua_engine(cfg: &Config) -> (Engine, Arc<ScriptHost>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir).unwrap());
    let env = Env::new(cfg, store);
    let host = ScriptHost::start(env.clone()).await.unwrap_or_else(|e| panic!("scripts: {e}"));
    (Engine::new(env.cfg.clone(), env.connector.clone(), env.store.clone(), host.clone()), host)
}

fn status(rep: &TakeoverReport, want: Status) {
    assert_eq!(rep.status, want, "errors {:?}\nphases {:#?}", rep.errors, rep.phases);
}

fn haproxy_available() -> bool {
    std::process::Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success())
        && std::process::Command::new("socat").arg("-V").output().is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn the_writer_moves_through_haproxy_and_comes_back_on_rollback() {
    if !haproxy_available() {
        panic!("haproxy and socat are needed (apt-get install haproxy socat; .ci/run installs them)");
    }
    let t = fresh(2).await;
    let m = t.master();
    let members = t.sandbox.keys();
    let h = Haproxy::start(&t.sandbox.dir.join("haproxy"), &members, &m).await.unwrap();
    assert_eq!(h.ready_servers().await.unwrap(), vec![m.clone()]);

    let mut cfg = t.cfg();
    cfg.scripts.policy = String::new();
    cfg.scripts.allow_shell = true;
    cfg.paths.hooks_dir = t.sandbox.dir.join("hooks");
    std::fs::create_dir_all(&cfg.paths.hooks_dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/haproxy_writer.lua");
    std::fs::copy(&shipped, cfg.paths.hooks_dir.join("haproxy_writer.lua")).unwrap();
    cfg.scripts.settings =
        toml::from_str(&format!("[haproxy]\nadmin = \"{}\"\nbackend = \"mysql_writer\"", h.admin_command())).unwrap();

    // The application knows only HAProxy's address.
    let w = Writer::start(vec![h.key()], APP_USER.0, APP_USER.1, 301, Duration::from_millis(2), 1e9).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // 1. A takeover: the writer follows the new master.
    let (e, _host) = lua_engine(&cfg).await;
    let rep = e.takeover(TakeoverRequest { cluster_hint: m.to_string(), auto: true, ..Default::default() }, None).await;
    status(&rep, Status::Promoted);
    let new: baton::topology::InstanceKey = rep.new_master.as_ref().unwrap().parse().unwrap();
    assert_eq!(h.ready_servers().await.unwrap(), vec![new.clone()], "only the new master takes connections");
    let n = w.take_window_gap();
    assert!(n.longest > 0.0, "the writer acknowledged writes");
    // Writes flow again, to the new master, through HAProxy.
    let before = rows_acked(&t, &new, 301).await;
    wait_until("writes through HAProxy", Duration::from_secs(10), || async {
        rows_acked(&t, &new, 301).await > before
    })
    .await;

    // 2. A takeover that rolls back after the drain (another hook vetoes later in pre_fence): the
    // old master (now `new`) is ready again, the writer writes there.
    std::fs::write(
        cfg.paths.hooks_dir.join("zz_veto.lua"),
        "return { pre_fence = function(ctx) return false, 'vetoed after the drain' end }",
    )
    .unwrap();
    let (e, _host2) = lua_engine(&cfg).await;
    let rep =
        e.takeover(TakeoverRequest { cluster_hint: new.to_string(), auto: true, ..Default::default() }, None).await;
    status(&rep, Status::RolledBack);
    let pre_fence = rep.phases.iter().find(|p| p.name == baton::engine::Phase::PreFenceHooks).unwrap();
    assert!(pre_fence.detail.contains("vetoed after the drain"), "{}", pre_fence.detail);
    assert_eq!(h.ready_servers().await.unwrap(), vec![new.clone()], "on_failure undid the drain");
    let before = rows_acked(&t, &new, 301).await;
    wait_until("writes through HAProxy", Duration::from_secs(10), || async {
        rows_acked(&t, &new, 301).await > before
    })
    .await;

    let stats = w.stop().await;
    let master = assert_one_master(&t, &[]).await;
    assert_eq!(master, new);
    assert_rows_everywhere(&t, &master, 301, &stats.acked).await;
}

async fn rows_acked(t: &common::Topology, k: &baton::topology::InstanceKey, writer: i64) -> usize {
    let conn = t.connector();
    let n = baton::mysql::workload::rows_of(&conn, k, writer).await.unwrap().len();
    conn.close().await;
    n
}
