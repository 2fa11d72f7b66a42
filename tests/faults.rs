//! The reliability drill: faults injected for real (SIGSTOP/SIGCONT, SIGKILL, a killed Baton
//! process, two Baton processes racing) during takeovers of real MariaDB topologies with an
//! application writer. Each test states the expected end state next to it and checks the
//! topology, the writer's acknowledged rows on every instance, the audit and the caller's answer.
//! docs/RELIABILITY.md is the table of these tests.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use baton::config::Config;
use baton::engine::{Engine, NoScripts, Phase, Status, TakeoverReport, TakeoverRequest};
use baton::mysql::workload::Writer;
use baton::mysql::{ops, Connector};
use baton::sandbox::{send_signal, APP_USER};
use baton::store::{SqliteStore, Store};
use baton::topology::InstanceKey;
use common::storefault::{Immutable, Tmpfs};
use common::*;

fn engine(cfg: &Config) -> Engine {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir).unwrap());
    Engine::new(Arc::new(cfg.clone()), Arc::new(Connector::new(cfg)), store, Arc::new(NoScripts))
}

fn to(t: &Topology, d: &InstanceKey) -> TakeoverRequest {
    TakeoverRequest {
        cluster_hint: t.master().to_string(),
        designated: Some(d.clone()),
        start_replication: true,
        ..Default::default()
    }
}

fn pid(t: &Topology, k: &InstanceKey) -> u32 {
    t.sandbox.instance(k.port).unwrap().pid
}

async fn writer(t: &Topology, id: i64) -> Writer {
    let w = Writer::start(t.sandbox.keys(), APP_USER.0, APP_USER.1, id, Duration::from_millis(3), 1e9).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    w
}

/// The `baton` binary on this sandbox's config file; `crash`: the phase after which it kills itself.
fn baton_cmd<S: AsRef<std::ffi::OsStr>>(
    file: &std::path::Path,
    args: &[S],
    crash: Option<&str>,
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(baton_bin());
    c.arg("--config").arg(file).args(args).env_remove("BATON_CONFIG");
    if let Some(p) = crash {
        c.env("BATON_FAULT_CRASH_AFTER", p);
    }
    c
}

#[track_caller]
fn status(r: &TakeoverReport, s: Status) {
    assert_eq!(r.status, s, "{}", serde_json::to_string_pretty(r).unwrap());
}

fn audited(cfg: &Config, id: &str) -> String {
    SqliteStore::open(&cfg.paths.data_dir).unwrap().takeover(id).unwrap().unwrap().status
}

/// 1. The designated replica hangs (SIGSTOP) during the catch-up wait.
/// Expected: the wait times out; the old master is writable again first. The siblings go back
/// below it (rolled_back), unless a sibling's STOP SLAVE blocks behind its IO thread's read from
/// the hung replica: then it stays below the designated replica, a valid chain, and the status is
/// failed naming it. Either way one writable master, every member replicating towards it after
/// SIGCONT, and no write lost.
#[tokio::test]
async fn designated_hangs_during_catch_up() {
    let t = fresh(3).await;
    let cfg = fast(&t.cfg());
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let w = writer(&t, 101).await;
    let p = pid(&t, &d);
    let rep = engine(&cfg)
        .takeover(
            to(&t, &d),
            Some(at(Phase::CatchUp, false, move || {
                send_signal(p, libc::SIGSTOP);
            })),
        )
        .await;
    send_signal(p, libc::SIGCONT);
    assert!(rep.errors[0].contains("catch_up"), "{:?}", rep.errors);
    match rep.status {
        Status::RolledBack => {}
        Status::Failed => assert!(rep.errors.iter().any(|e| e.starts_with("rollback:")), "{:?}", rep.errors),
        _ => panic!("{rep:#?}"),
    }
    assert_eq!(audited(&cfg, &rep.id), rep.status.as_str());
    if rep.status == Status::Failed {
        // The operator's part, as the report asks: the sibling whose STOP SLAVE was stuck behind
        // the hung replica ran it once that replica resumed; point it back at the old master.
        let conn = t.connector();
        let spec = baton::mysql::SourceSpec {
            host: m.host.clone(),
            port: m.port,
            user: cfg.replication.user.clone(),
            password: cfg.replication.password.clone(),
            position: baton::mysql::SourcePosition::GtidSlavePos,
            tls: false,
        };
        for s in &t.replicas()[1..] {
            ops::repoint(&conn, s, &spec, true).await.unwrap();
        }
    }
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &m, 101, &stats.acked).await;
    assert_eq!(assert_one_master_tree(&t).await, m);
    assert_eq!(assert_one_master(&t, &[]).await, m);
}

/// 2. The designated replica crashes (SIGKILL) during the catch-up wait.
/// Expected: rolled_back; the old master writable, the siblings back below it. Restarted, the
/// designated replica replicates from the old master again. No write lost.
#[tokio::test]
async fn designated_crashes_during_catch_up() {
    let mut t = fresh(3).await;
    let cfg = fast(&t.cfg());
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let w = writer(&t, 102).await;
    let p = pid(&t, &d);
    let rep = engine(&cfg)
        .takeover(
            to(&t, &d),
            Some(at(Phase::CatchUp, false, move || {
                send_signal(p, libc::SIGKILL);
            })),
        )
        .await;
    // The designated replica is gone: the rollback moves the siblings back and says it could not
    // reach the designated one (it still replicates from the old master: nothing to undo there).
    status(&rep, Status::RolledBack);
    t.sandbox.restart_instance(d.port).await.unwrap();
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &m, 102, &stats.acked).await;
    assert_eq!(assert_one_master(&t, &[]).await, m);
}

/// 3. The designated replica crashes right after promotion, before the old master is repointed.
/// Expected: promoted (the new master took over) with the repointing done against a dead server
/// or reported; the cluster then has no running writable master: a failover, not a graceful
/// takeover. Restarted, the new master comes back read-only (read_only=ON in its my.cnf, as
/// operators configure); once made writable by the operator, the cluster is whole and no
/// acknowledged write is lost.
#[tokio::test]
async fn designated_crashes_right_after_promotion() {
    let mut t = fresh(3).await;
    let cfg = fast(&t.cfg());
    let d = t.replicas()[0].clone();
    let w = writer(&t, 103).await;
    let p = pid(&t, &d);
    let rep = engine(&cfg)
        .takeover(
            to(&t, &d),
            Some(at(Phase::Promote, true, move || {
                send_signal(p, libc::SIGKILL);
            })),
        )
        .await;
    assert!(matches!(rep.status, Status::Promoted | Status::PromotedWithErrors), "{rep:#?}");
    assert_eq!(rep.new_master.as_deref(), Some(d.to_string().as_str()));
    t.sandbox.restart_instance(d.port).await.unwrap();
    let conn = t.connector();
    ops::set_read_only(&conn, &d, false, 1).await.unwrap();
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &d, 103, &stats.acked).await;
    assert_eq!(assert_one_master(&t, &[]).await, d);
}

/// 4. The old master hangs (SIGSTOP) while being fenced: `SET GLOBAL read_only` cannot finish.
/// Expected: the fence times out and the takeover does not promote; the rollback's `read_only =
/// OFF` queues behind the fence in the hung server. After SIGCONT both run in order: the old
/// master ends writable, every replica below it, no write lost. The audit says rolled_back or
/// failed (whether the rollback statement answered within its own timeout).
#[tokio::test]
async fn old_master_hangs_while_fenced() {
    let t = fresh(3).await;
    let cfg = fast(&t.cfg());
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let w = writer(&t, 104).await;
    let p = pid(&t, &m);
    let rep = engine(&cfg)
        .takeover(
            to(&t, &d),
            Some(at(Phase::Fence, false, move || {
                send_signal(p, libc::SIGSTOP);
            })),
        )
        .await;
    send_signal(p, libc::SIGCONT);
    assert!(matches!(rep.status, Status::RolledBack | Status::Failed), "{rep:#?}");
    assert!(rep.new_master.is_none());
    assert!(rep.errors.iter().any(|e| e.contains("fence")), "{:?}", rep.errors);
    // The queued statements ran once it resumed. A rollback that timed out left the siblings where
    // the takeover moved them: below the designated replica (a valid chain, reported).
    wait_until("the old master writable, alone", Duration::from_secs(10), || async {
        live_cluster(&t).await.writable_members() == vec![&m]
    })
    .await;
    let stats = w.stop().await;
    if rep.status == Status::RolledBack {
        assert_eq!(assert_one_master(&t, &[]).await, m);
    }
    assert_rows_everywhere(&t, &m, 104, &stats.acked).await;
}

/// 5. The old master crashes (SIGKILL) after the fence.
/// Expected: the fence read the position the master stopped at in the same round trip as
/// read_only, so every write it acknowledged is known, and the designated replica executes it:
/// promoted, with the repoint of the dead old master reported (promoted_with_errors). One
/// writable master throughout. Restarted, the old master comes back read-only (my.cnf) and is
/// pointed below the new master by the operator; no acknowledged write is lost.
#[tokio::test]
async fn old_master_crashes_after_fence() {
    let mut t = fresh(3).await;
    let cfg = fast(&t.cfg());
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let w = writer(&t, 105).await;
    let p = pid(&t, &m);
    let rep = engine(&cfg)
        .takeover(
            to(&t, &d),
            Some(at(Phase::Fence, true, move || {
                send_signal(p, libc::SIGKILL);
            })),
        )
        .await;
    status(&rep, Status::PromotedWithErrors);
    assert_eq!(rep.new_master.as_deref(), Some(d.to_string().as_str()));
    let repoint = rep.phases.iter().find(|p| p.name == Phase::RepointOldMaster).expect("a repoint phase");
    assert!(repoint.detail.contains(&m.to_string()), "{}", repoint.detail);
    t.sandbox.restart_instance(m.port).await.unwrap();
    let spec = baton::mysql::SourceSpec {
        host: d.host.clone(),
        port: d.port,
        user: cfg.replication.user.clone(),
        password: cfg.replication.password.clone(),
        position: baton::mysql::SourcePosition::GtidSlavePos,
        tls: false,
    };
    ops::repoint(&t.connector(), &m, &spec, true).await.unwrap();
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &d, 105, &stats.acked).await;
    assert_eq!(assert_one_master(&t, &[]).await, d);
}

/// 6. A sibling replica crashes while the siblings are relocated.
/// Expected: its relocation fails; rolled_back (the crashed sibling is reported, not counted as a
/// failed rollback); restarted, it replicates from the old master. No write lost.
#[tokio::test]
async fn sibling_crashes_while_relocated() {
    let mut t = fresh(3).await;
    let cfg = fast(&t.cfg());
    let (m, d, s) = (t.master(), t.replicas()[0].clone(), t.replicas()[1].clone());
    let w = writer(&t, 106).await;
    let p = pid(&t, &s);
    let rep = engine(&cfg)
        .takeover(
            to(&t, &d),
            Some(at(Phase::RelocateSiblings, false, move || {
                send_signal(p, libc::SIGKILL);
            })),
        )
        .await;
    status(&rep, Status::RolledBack);
    assert!(rep.warnings.iter().any(|w| w.contains(&s.to_string())), "{:?}", rep.warnings);
    t.sandbox.restart_instance(s.port).await.unwrap();
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &m, 106, &stats.acked).await;
    assert_eq!(assert_one_master(&t, &[]).await, m);
}

/// 10a. A write reaches the old master after the fence (a SUPER user ignores read_only), after the
/// designated replica caught up. Expected: the promotion stands (writes already go to the new
/// master); repoint_old_master detects that the old master's position moved and the takeover ends
/// promoted_with_errors naming the transactions, in the audit and the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_the_fence_is_reported() {
    let t = fresh(3).await;
    let cfg = fast(&t.cfg());
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let (conn, mk) = (Arc::new(t.connector()), m.clone());
    let sink = at(Phase::CatchUp, true, move || {
        let (conn, mk) = (conn.clone(), mk.clone());
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                exec(&conn, &mk, "INSERT INTO app.writes (id, writer) VALUES (999000001, 999)").await;
            })
        });
    });
    let rep = engine(&cfg).takeover(to(&t, &d), Some(sink)).await;
    status(&rep, Status::PromotedWithErrors);
    assert!(rep.errors.iter().any(|e| e.contains("a write got through the fence")), "{:?}", rep.errors);
    assert_eq!(audited(&cfg, &rep.id), "promoted_with_errors");
}

/// 10b. The designated replica has an errant GTID (a write made directly on it).
/// Expected: refused by check no_errant_gtid before anything changes.
#[tokio::test]
async fn errant_gtid_on_designated_is_refused() {
    let t = fresh(2).await;
    let cfg = fast(&t.cfg());
    let (m, d) = (t.master(), t.replicas()[0].clone());
    exec(&t.connector(), &d, "INSERT INTO app.writes (id, writer) VALUES (998000001, 998)").await;
    let rep = engine(&cfg).takeover(to(&t, &d), None).await;
    status(&rep, Status::Refused);
    assert!(rep.errors[0].contains("no_errant_gtid"), "{:?}", rep.errors);
    assert_eq!(live_cluster(&t).await.writable_members(), vec![&m]);
}

/// 9. Two Baton processes that share nothing but the cluster (separate stores) take over at the
/// same moment. Expected: exactly one fences the master (the server lock on the master); the other
/// is refused (busy, or the master changed while it took its locks); one master at the end.
#[tokio::test]
async fn two_processes_with_separate_stores_fence_once() {
    let t = fresh(3).await;
    let w = writer(&t, 109).await;
    let (m, r) = (t.master(), t.replicas());
    let mut a = fast(&t.cfg());
    a.paths.data_dir = t.sandbox.dir.join("store-a");
    let mut b = a.clone();
    b.paths.data_dir = t.sandbox.dir.join("store-b");
    for round in 0..3 {
        let master = assert_one_master(&t, &[]).await;
        let others: Vec<&InstanceKey> = r.iter().chain([&m]).filter(|k| **k != master).collect();
        let req = |d: &InstanceKey| TakeoverRequest {
            cluster_hint: master.to_string(),
            designated: Some(d.clone()),
            start_replication: true,
            ..Default::default()
        };
        let (ea, eb) = (engine(&a), engine(&b));
        let (ra, rb) = tokio::join!(ea.takeover(req(others[0]), None), eb.takeover(req(others[1]), None));
        let fenced = [&ra, &rb].iter().filter(|r| r.phase(Phase::Fence).is_some()).count();
        assert_eq!(
            fenced,
            1,
            "round {round}: {} / {}",
            serde_json::to_string(&ra).unwrap(),
            serde_json::to_string(&rb).unwrap()
        );
        let promoted = [&ra, &rb].iter().filter(|r| r.status == Status::Promoted).count();
        assert_eq!(promoted, 1);
        let loser = if ra.status == Status::Promoted { &rb } else { &ra };
        assert_eq!(loser.status, Status::Refused, "{loser:#?}");
    }
    let stats = w.stop().await;
    let master = assert_one_master(&t, &[]).await;
    assert_rows_everywhere(&t, &master, 109, &stats.acked).await;
}

/// 8. The Baton process is killed (SIGKILL) right after each phase is journaled, under a writer.
/// `baton takeover recover` then settles it from the live topology. Expected per phase:
/// up to pre_takeover_hooks nothing changed (refused, nothing to undo); from relocate_siblings to
/// catch_up not promoted (rolled back); from promote on promoted (finished: the old master
/// repointed, replication started as requested). Always one writable master, every replica
/// below it, no acknowledged write lost, and the audit names the phase it was interrupted after.
#[tokio::test]
async fn baton_killed_at_every_phase_boundary_then_recovered() {
    let t = fresh(3).await;
    let cfg = t.cfg();
    let file = config_file(&t);
    let w = writer(&t, 108).await;
    let phases = [
        "resolve",
        "check_master",
        "choose_designated",
        "check_designated",
        "pre_takeover_hooks",
        "relocate_siblings",
        "pre_fence_hooks",
        "fence",
        "catch_up",
        "promote",
        "post_promote_hooks",
        "repoint_old_master",
        "post_takeover_hooks",
    ];
    let baton = |args: Vec<String>, crash: Option<&str>| baton_cmd(&file, &args, crash);
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    for (i, phase) in phases.iter().enumerate() {
        let before = assert_one_master(&t, &[]).await;
        let out =
            baton(vec!["takeover".into(), before.to_string(), "--auto".into()], Some(phase)).output().await.unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{phase}: {}", String::from_utf8_lossy(&out.stderr));
        // The store shows it unfinished; a new takeover is refused and told how to settle it.
        let id = store.takeovers(None, 1).unwrap()[0].id.clone();
        assert_eq!(store.takeover(&id).unwrap().unwrap().status, "running", "{phase}");
        if i >= 4 {
            let out = baton(vec!["takeover".into(), before.to_string(), "--auto".into()], None).output().await.unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && err.contains(&format!("baton takeover recover {id}")), "{phase}: {err}");
        }
        let out = baton(vec!["takeover".into(), "recover".into()], None).output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{phase}: {text}\n{}", String::from_utf8_lossy(&out.stderr));
        // Inside the write-unavailable window nothing is journaled (nothing waits on the store
        // there): a crash after the fence or the catch-up finds pre_fence_hooks, with the fence
        // recorded as in progress.
        let journaled = if matches!(*phase, "fence" | "catch_up") { "pre_fence_hooks" } else { phase };
        assert!(text.contains(&format!("last journaled phase {journaled}")), "{phase}: {text}");
        let rec: TakeoverReport = serde_json::from_value(store.takeover(&id).unwrap().unwrap().record).unwrap();
        let want = match i {
            0..=4 => Status::Refused,
            5..=8 => Status::RolledBack,
            _ => Status::Promoted,
        };
        assert_eq!(rec.status, want, "{phase}: {}", serde_json::to_string_pretty(&rec).unwrap());
        assert_eq!(rec.recoveries.len(), 1);
        // A rollback ran the undo plan recovery built from the live topology: the fenced master
        // writable first (after the fence), the replicas found below the designated back.
        if want == Status::RolledBack {
            let plan = rec.undo.describe();
            assert_eq!(plan.first().is_some_and(|s| s.contains("writable again")), i >= 7, "{phase}: {plan:?}");
            assert!(plan.iter().any(|s| s.contains("replicates from") && s.contains("again")), "{phase}: {plan:?}");
        }
        let after = assert_one_master(&t, &[]).await;
        if want == Status::Promoted {
            assert_ne!(after, before, "{phase}");
        } else {
            assert_eq!(after, before, "{phase}");
        }
        // The lock is free again: nothing is reported interrupted.
        let out = baton(vec!["takeover".into(), "recover".into()], None).output().await.unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("no interrupted takeover"));
    }
    let stats = w.stop().await;
    let master = assert_one_master(&t, &[]).await;
    assert_rows_everywhere(&t, &master, 108, &stats.acked).await;
}

/// 8b. Interrupted after promotion, and then the old master was made writable again (by hand, or
/// a script): two writable masters. Expected: `recover` refuses to choose (needs_operator, and the
/// cluster stays locked); `abort` fences the new master and puts it and its siblings back below
/// the old one, since it has nothing the old one lacks; with a write only the new master has,
/// `abort` refuses to throw it away and `resume` keeps it instead.
#[tokio::test]
async fn two_writable_masters_wait_for_an_operator() {
    let t = fresh(3).await;
    let cfg = t.cfg();
    let file = config_file(&t);
    let conn = t.connector();
    let baton = |args: &[&str], crash: Option<&str>| baton_cmd(&file, args, crash);
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    for round in 0..2 {
        let master = assert_one_master(&t, &[]).await;
        let out = baton(&["takeover", &master.to_string(), "--auto"], Some("promote")).output().await.unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGKILL));
        let id = store.takeovers(None, 1).unwrap()[0].id.clone();
        let rec: TakeoverReport = serde_json::from_value(store.takeover(&id).unwrap().unwrap().record).unwrap();
        let d: InstanceKey = rec.designated.unwrap().parse().unwrap();
        ops::set_read_only(&conn, &master, false, 1).await.unwrap();
        if round == 1 {
            // A write only the new master has.
            exec(&conn, &d, "INSERT INTO app.writes (id, writer) VALUES (997000001, 997)").await;
        }
        let out = baton(&["takeover", "recover", &id], None).output().await.unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("left for an operator"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(store.takeover(&id).unwrap().unwrap().status, "needs_operator");
        // Still locked: a new takeover is refused.
        let out = baton(&["takeover", &master.to_string(), "--auto"], None).output().await.unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("already running"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if round == 0 {
            let out = baton(&["takeover", "abort", &id], None).output().await.unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            assert_eq!(store.takeover(&id).unwrap().unwrap().status, "rolled_back");
            assert_eq!(assert_one_master(&t, &[]).await, master);
        } else {
            let out = baton(&["takeover", "abort", &id], None).output().await.unwrap();
            assert!(!out.status.success());
            assert!(String::from_utf8_lossy(&out.stdout).contains("lacks"), "{}", String::from_utf8_lossy(&out.stdout));
            assert_eq!(store.takeover(&id).unwrap().unwrap().status, "needs_operator");
            // abort fenced the new master and refused to repoint it: a second decision is needed.
            ops::set_read_only(&conn, &d, false, 1).await.unwrap();
            ops::set_read_only(&conn, &master, false, 1).await.unwrap();
            let out = baton(&["takeover", "resume", &id], None).output().await.unwrap_or_else(|e| panic!("{e}"));
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("promoted"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(assert_one_master(&t, &[]).await, d);
        }
    }
}

/// 7. Hooks that time out or fail, on a real topology. Expected: a pre_fence hook over its
/// time limit is a veto after the siblings moved (rolled_back); a post_takeover hook over its
/// limit is recorded (promoted_with_errors); an on_failure hook that raises is a warning; the
/// cluster always ends with one master and every replica below it.
#[tokio::test]
async fn hooks_that_time_out_or_fail() {
    use baton::lua::{Env, ScriptHost};
    let t = fresh(3).await;
    let mut cfg = fast(&t.cfg());
    cfg.scripts.policy = String::new();
    cfg.scripts.hook_timeout_ms = 300;
    cfg.paths.hooks_dir = t.sandbox.dir.join("hooks");
    std::fs::create_dir_all(&cfg.paths.hooks_dir).unwrap();
    let lua_engine = |cfg: &Config| {
        let cfg = cfg.clone();
        async move {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir).unwrap());
            let env = Env::new(&cfg, store);
            let host = ScriptHost::start(env.clone()).await.unwrap();
            Engine::new(env.cfg.clone(), env.connector.clone(), env.store.clone(), host)
        }
    };
    let w = writer(&t, 107).await;
    let hook = |body: &str| std::fs::write(cfg.paths.hooks_dir.join("h.lua"), body).unwrap();

    hook("return { pre_fence = function(ctx) baton.sleep(5000) end, on_failure = function(ctx) error('pager down') end }");
    let rep = lua_engine(&cfg).await.takeover(to(&t, &t.replicas()[0]), None).await;
    status(&rep, Status::RolledBack);
    assert!(rep.errors[0].contains("time limit exceeded (300 ms per call)"), "{:?}", rep.errors);
    assert!(rep.warnings.iter().any(|w| w.contains("on_failure") && w.contains("pager down")), "{:?}", rep.warnings);
    assert_eq!(assert_one_master(&t, &[]).await, t.master());

    hook("return { post_takeover = function(ctx) while true do end end }");
    let d = t.replicas()[0].clone();
    let rep = lua_engine(&cfg).await.takeover(to(&t, &d), None).await;
    status(&rep, Status::PromotedWithErrors);
    assert!(
        rep.errors.iter().any(|e| e.contains("post_takeover_hooks") && e.contains("limit exceeded")),
        "{:?}",
        rep.errors
    );

    hook("return { pre_takeover = function(ctx) error('boom') end }");
    let rep = lua_engine(&cfg)
        .await
        .takeover(
            TakeoverRequest {
                cluster_hint: d.to_string(),
                designated: Some(t.master()),
                start_replication: true,
                ..Default::default()
            },
            None,
        )
        .await;
    status(&rep, Status::Refused);
    assert!(rep.errors[0].contains("boom") && rep.errors[0].contains("h.lua:1"), "{:?}", rep.errors);
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &d, 107, &stats.acked).await;
    assert_eq!(assert_one_master(&t, &[]).await, d);
}

/// 8c. `baton serve` itself is killed mid-takeover (after the fence: writes are blocked), and
/// started again. Expected: at startup it finds the interrupted takeover, rolls it back (writes
/// resume on the old master) and the audit answers rolled_back with the phase it reached; the
/// caller of the killed server saw its connection end.
#[tokio::test]
async fn baton_serve_killed_mid_takeover_recovers_at_restart() {
    let t = fresh(3).await;
    let file = config_file(&t);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    let serve = |crash: Option<&str>| {
        baton_cmd(&file, &["serve", "--listen", &listen], crash).kill_on_drop(true).spawn().unwrap()
    };
    let http = reqwest::Client::new();
    let ready = |http: reqwest::Client, base: String| async move {
        for _ in 0..200 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("baton serve did not start");
    };
    let w = writer(&t, 110).await;
    let m = t.master();
    let mut first = serve(Some("fence"));
    ready(http.clone(), base.clone()).await;
    let body = serde_json::json!({ "designated": t.replicas()[0].to_string() });
    let answer = http.post(format!("{base}/api/v1/clusters/{m}/takeover")).json(&body).send().await;
    assert!(answer.is_err(), "the server died mid-request: {answer:?}");
    assert_eq!(first.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    // Fenced, nothing promoted: no writable instance until the restart settles it.
    assert!(live_cluster(&t).await.writable_members().is_empty());
    let _second = serve(None);
    ready(http.clone(), base.clone()).await;
    let list: serde_json::Value =
        http.get(format!("{base}/api/v1/takeovers")).send().await.unwrap().json().await.unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    let rec: serde_json::Value =
        http.get(format!("{base}/api/v1/takeovers/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(rec["status"], "rolled_back", "{rec}");
    // The crash came after the fence, inside the window where nothing is journaled.
    assert_eq!(rec["recoveries"][0]["last_phase"], "pre_fence_hooks");
    assert_eq!(rec["in_progress"], serde_json::Value::Null, "settled: nothing in progress any more");
    assert_eq!(rec["recoveries"][0]["mode"], "auto");
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &m, 110, &stats.acked).await;
    assert_eq!(assert_one_master(&t, &[]).await, m);
}

/// Issue 13, item 9: a takeover still owned by a process that is exiting (a previous `baton
/// serve`) is not given up on: it is listed as owned by a live process, recover refuses while that
/// process runs, and once it is gone the takeover is interrupted like any other and recover acts.
#[tokio::test]
async fn a_takeover_whose_owner_is_still_exiting_is_settled_once_it_is_gone() {
    let mut cfg = Config::default();
    cfg.paths.data_dir = std::env::temp_dir().join(format!("baton-exiting-{}", uuid::Uuid::new_v4().simple()));
    cfg.scripts.policy = String::new();
    let e = engine(&cfg);
    let mut rep = e
        .takeover(TakeoverRequest { cluster_hint: "127.0.0.1:1".into(), dry_run: true, ..Default::default() }, None)
        .await;
    let mut child = tokio::process::Command::new("sleep").arg("1").spawn().unwrap();
    let pid = child.id().unwrap();
    rep.status = Status::Running;
    rep.owner = baton::engine::report::Owner::of_pid(pid);
    let entry = baton::store::AuditEntry {
        id: rep.id.clone(),
        cluster: rep.cluster.clone(),
        status: "running".into(),
        started_at: rep.started_at,
        record: serde_json::to_value(&rep).unwrap(),
    };
    e.store.save_takeover(&entry).unwrap();
    assert_eq!(e.owned_by_live_process().unwrap(), vec![(rep.id.clone(), pid)]);
    assert!(e.interrupted().unwrap().is_empty());
    let r = e.recover(&rep.id, baton::engine::RecoverMode::Auto).await;
    assert!(matches!(r, Err(baton::engine::RecoverError::StillRunning { .. })), "{r:?}");
    child.wait().await.unwrap();
    assert!(baton::sandbox::wait_exit(pid, Duration::from_secs(5)).await);
    assert!(e.owned_by_live_process().unwrap().is_empty());
    assert_eq!(e.interrupted().unwrap().len(), 1);
    let r = e.recover(&rep.id, baton::engine::RecoverMode::Auto).await;
    assert!(!matches!(r, Err(baton::engine::RecoverError::StillRunning { .. })), "{r:?}");
    let _ = std::fs::remove_dir_all(&cfg.paths.data_dir);
}

/// A store whose journal writes fail once a report holds a given phase (a filesystem that
/// fills mid-takeover), and that can be made to fail every write.
struct FailingJournal {
    inner: SqliteStore,
    /// Fail `save_takeover` for a record that contains this phase (`"fence"`), or every write.
    after_phase: Option<&'static str>,
    all: bool,
    /// The last phase of every record written, in order.
    written: std::sync::Mutex<Vec<String>>,
}

impl FailingJournal {
    fn fails(&self, e: &baton::store::AuditEntry) -> bool {
        self.all
            || self
                .after_phase
                .is_some_and(|p| e.record["phases"].as_array().is_some_and(|ps| ps.iter().any(|x| x["name"] == p)))
    }
}

macro_rules! delegate {
    ($($name:ident($($a:ident: $t:ty),*) -> $r:ty;)*) => {
        $(fn $name(&self, $($a: $t),*) -> Result<$r, baton::store::StoreError> { self.inner.$name($($a),*) })*
    };
}

impl Store for FailingJournal {
    delegate! {
        remember_cluster(c: &baton::store::KnownCluster) -> ();
        find_cluster(h: &str) -> Option<baton::store::KnownCluster>;
        cluster_of(k: &InstanceKey) -> Option<baton::store::KnownCluster>;
        clusters() -> Vec<baton::store::KnownCluster>;
        move_alias(a: &str, t: &str) -> bool;
        set_promotion_rule(e: &baton::store::RuleEntry) -> ();
        clear_promotion_rule(k: &InstanceKey) -> ();
        promotion_rules() -> Vec<baton::store::RuleEntry>;
        begin_downtime(d: &baton::store::Downtime) -> ();
        end_downtime(k: &InstanceKey) -> bool;
        downtimes() -> Vec<baton::store::Downtime>;
        lock_cluster(c: &str, id: &str) -> Option<String>;
        unlock_cluster(c: &str, id: &str) -> ();
        takeover(id: &str) -> Option<baton::store::AuditEntry>;
        takeovers(c: Option<&str>, l: usize) -> Vec<baton::store::AuditEntry>;
        release_locks_of(id: &str) -> Vec<String>;
        unsettled_takeovers() -> Vec<baton::store::AuditEntry>;
        damaged() -> Vec<baton::store::DamagedRecord>;
        set_aside_damaged() -> usize;
        forget_cluster(h: &str) -> bool;
        forget_member(k: &InstanceKey) -> bool;
        save_operation(e: &baton::store::AuditEntry) -> ();
        operations(l: usize) -> Vec<baton::store::AuditEntry>;
    }
    fn lock_cluster_journaled(
        &self,
        c: &str,
        e: &baton::store::AuditEntry,
    ) -> Result<Option<String>, baton::store::StoreError> {
        if self.all {
            return Err(baton::store::StoreError::Corrupt {
                what: "baton.db".into(),
                detail: "No space left on device (injected)".into(),
            });
        }
        self.inner.lock_cluster_journaled(c, e)
    }
    fn save_takeover(&self, e: &baton::store::AuditEntry) -> Result<(), baton::store::StoreError> {
        let last =
            e.record["phases"].as_array().and_then(|p| p.last()).map(|p| p["name"].as_str().unwrap_or("").to_string());
        self.written.lock().unwrap().push(last.unwrap_or_default());
        if self.fails(e) {
            return Err(baton::store::StoreError::Corrupt {
                what: "baton.db".into(),
                detail: "No space left on device (injected)".into(),
            });
        }
        self.inner.save_takeover(e)
    }
}

fn failing_store(cfg: &Config, after_phase: Option<&'static str>, all: bool) -> Arc<FailingJournal> {
    Arc::new(FailingJournal {
        inner: SqliteStore::open(&cfg.paths.data_dir).unwrap(),
        after_phase,
        all,
        written: Default::default(),
    })
}

fn failing_engine(cfg: &Config, after_phase: Option<&'static str>, all: bool) -> Engine {
    let store: Arc<dyn Store> = failing_store(cfg, after_phase, all);
    Engine::new(Arc::new(cfg.clone()), Arc::new(Connector::new(cfg)), store, Arc::new(NoScripts))
}

/// Issue 19, items 1 and 3: a journal that cannot be written stops the takeover before anything
/// changes (write-ahead), rolls it back when it fails after the siblings moved, is not written
/// inside the write-unavailable window at all, and after the promotion the answer says so instead
/// of a silent "promoted"; the lock never stays behind, and a lock without a record is released
/// by recover.
#[tokio::test]
async fn journal_failures_stop_or_undo_the_takeover_and_are_never_silent() {
    let t = fresh(2).await;
    let cfg = t.cfg();
    let (m, r1) = (t.master(), t.replicas()[0].clone());
    let before = shape(&t).await;

    // Nothing can be written: refused before any change.
    let rep = failing_engine(&cfg, None, true).takeover(to(&t, &r1), None).await;
    assert_eq!(rep.status, Status::Refused, "{:?}", rep.errors);
    assert!(rep.errors.iter().any(|e| e.contains("No space left")), "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before);

    // The journal fails once the siblings moved: rolled back before any fence.
    let rep = failing_engine(&cfg, Some("relocate_siblings"), false).takeover(to(&t, &r1), None).await;
    assert_eq!(rep.status, Status::RolledBack, "{:?} {:#?}", rep.errors, rep.phases);
    assert!(rep.errors.iter().any(|e| e.contains("No space left")), "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before);

    // Inside the write-unavailable window nothing is written (nothing waits on the store there);
    // the first write after the fence comes after the promotion: the new master stands, and the
    // answer says the record is missing.
    let rep = failing_engine(&cfg, Some("fence"), false).takeover(to(&t, &r1), None).await;
    assert_eq!(rep.status, Status::PromotedWithErrors, "{:?}", rep.errors);
    assert!(rep.errors.iter().any(|e| e.contains("journal")), "{:?}", rep.errors);
    assert_eq!(assert_one_master_tree(&t).await, r1);
    // No lock stayed behind: the next takeover (back) runs.
    let back = TakeoverRequest {
        cluster_hint: r1.to_string(),
        designated: Some(m.clone()),
        start_replication: true,
        ..Default::default()
    };
    let rep = engine(&cfg).takeover(back, None).await;
    assert_eq!(rep.status, Status::Promoted, "{:?}", rep.errors);

    // Between the fence and the promotion nothing is written: the window never waits on the
    // store (a busy or slow store cannot lengthen it).
    let recording = failing_store(&cfg, None, false);
    let e = Engine::new(Arc::new(cfg.clone()), Arc::new(Connector::new(&cfg)), recording.clone(), Arc::new(NoScripts));
    let rep = e
        .takeover(
            TakeoverRequest {
                cluster_hint: m.to_string(),
                designated: Some(r1.clone()),
                start_replication: true,
                ..Default::default()
            },
            None,
        )
        .await;
    assert_eq!(rep.status, Status::Promoted, "{:?}", rep.errors);
    let written = recording.written.lock().unwrap().clone();
    assert!(!written.iter().any(|p| p == "fence" || p == "catch_up"), "written inside the window: {written:?}");
    assert!(written.iter().any(|p| p == "promote"), "{written:?}");
    let back = TakeoverRequest {
        cluster_hint: r1.to_string(),
        designated: Some(m.clone()),
        start_replication: true,
        ..Default::default()
    };
    assert_eq!(engine(&cfg).takeover(back, None).await.status, Status::Promoted);

    // A lock whose takeover has no record: recover releases it and says so.
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    let c = live_cluster(&t).await;
    let lock = c.alias.clone().unwrap_or(c.name.clone());
    store.lock_cluster(&lock, "ghost").unwrap();
    let e = engine(&cfg).recover("ghost", baton::engine::RecoverMode::Auto).await.unwrap_err().to_string();
    assert!(e.contains("released the lock it held on") && e.contains(&lock), "{e}");
    assert_eq!(store.lock_cluster(&lock, "next").unwrap(), None);
    store.unlock_cluster(&lock, "next").unwrap();
}

/// Issue 19: a process that dies in the middle of the post-promotion hooks (here a hook kills it)
/// may have run some of them; recover runs again only the hooks declared `idempotent = true`,
/// names the others in the report, and each hook phase says which process ran it.
#[tokio::test]
async fn recover_does_not_rerun_hooks_that_may_have_run() {
    let t = fresh(2).await;
    let cfg = t.cfg();
    let hooks = t.sandbox.dir.join("hooks-crash");
    std::fs::create_dir_all(&hooks).unwrap();
    let log = t.sandbox.dir.join("hooks.log");
    let marker = t.sandbox.dir.join("killed-once");
    std::fs::write(
        hooks.join("a_switch.lua"),
        format!(
            "return {{ post_promote = function(ctx)\n  baton.shell('echo a >> {log}')\n  baton.shell('[ -e {marker} ] || {{ touch {marker}; kill -9 $PPID; sleep 5; }}')\nend }}",
            log = log.display(),
            marker = marker.display()
        ),
    )
    .unwrap();
    std::fs::write(
        hooks.join("b_notify.lua"),
        format!(
            "return {{ idempotent = true, post_promote = function(ctx) baton.shell('echo b >> {}') end }}",
            log.display()
        ),
    )
    .unwrap();
    let file = config_file(&t);
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .replace(&t.sandbox.dir.join("no-hooks").display().to_string(), &hooks.display().to_string())
        .replace("[scripts]\n", "[scripts]\nallow_shell = true\n");
    std::fs::write(&file, text).unwrap();

    let r1 = t.replicas()[0].clone();
    let out = baton_cmd(&file, &["takeover".to_string(), t.master().to_string(), "--to".into(), r1.to_string()], None)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\n", "the switch hook ran, then the process died");
    let out = baton_cmd(&file, &["takeover", "recover"], None).output().await.unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\n", "the idempotent hook ran once more, the other not");
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    let rec: TakeoverReport = serde_json::from_value(store.takeovers(None, 1).unwrap()[0].record.clone()).unwrap();
    assert!(
        rec.warnings.iter().any(|w| w.contains("not run again") && w.contains("a_switch.lua")),
        "{:?}",
        rec.warnings
    );
    let hook_phase =
        rec.phases.iter().rev().find(|p| p.name == Phase::PostPromoteHooks).expect("the recovery ran the phase");
    assert!(hook_phase.by.as_deref().is_some_and(|b| b.contains(':')), "{:?}", hook_phase.by);
    assert_eq!(assert_one_master_tree(&t).await, r1);
}

#[tokio::test]
async fn a_full_filesystem_stops_the_takeover_before_anything_changes() {
    let Some(fs) = Tmpfs::mount(3) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let t = fresh(2).await;
    let mut cfg = t.cfg();
    cfg.paths.data_dir = fs.0.join("data");
    let before = shape(&t).await;
    let e = engine(&cfg);
    // The store exists and knows the cluster; then the filesystem fills up.
    baton::discovery::discover_hint(&t.connector(), &cfg, e.store.as_ref(), &t.master().to_string()).await.unwrap();
    let filler = common::storefault::fill(&fs.0);
    let rep = e.takeover(to(&t, &t.replicas()[0]), None).await;
    assert!(matches!(rep.status, Status::Refused | Status::RolledBack), "{:?} {:?}", rep.status, rep.errors);
    assert!(rep.errors.iter().any(|x| x.contains("full") || x.contains("I/O")), "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before, "nothing changed");
    std::fs::remove_file(&filler).unwrap();
    let rep = e.takeover(to(&t, &t.replicas()[0]), None).await;
    assert_eq!(rep.status, Status::Promoted, "{:?}", rep.errors);
    drop(e);
    drop(fs);
}

/// Issue 19 on a real filesystem: `baton.db` and its -wal made immutable under a running store
/// (not the -shm, which SQLite maps in memory: writing to an immutable mapping is a SIGBUS). The takeover stops before anything changes and says why; made writable again,
/// the same takeover runs.
#[tokio::test]
async fn an_immutable_store_stops_the_takeover_before_anything_changes() {
    let t = fresh(2).await;
    let cfg = t.cfg();
    let before = shape(&t).await;
    let e = engine(&cfg);
    baton::discovery::discover_hint(&t.connector(), &cfg, e.store.as_ref(), &t.master().to_string()).await.unwrap();
    let files: Vec<_> =
        ["baton.db", "baton.db-wal"].iter().map(|f| cfg.paths.data_dir.join(f)).filter(|p| p.exists()).collect();
    let Some(guard) = Immutable::set(files) else {
        eprintln!("SKIPPED: chattr +i does not work here");
        return;
    };
    let rep = e.takeover(to(&t, &t.replicas()[0]), None).await;
    assert!(matches!(rep.status, Status::Refused | Status::RolledBack), "{:?} {:?}", rep.status, rep.errors);
    assert!(!rep.errors.is_empty() && rep.errors.iter().any(|x| x.contains("store")), "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before, "nothing changed");
    drop(guard);
    let rep = e.takeover(to(&t, &t.replicas()[0]), None).await;
    assert_eq!(rep.status, Status::Promoted, "{:?}", rep.errors);
}
