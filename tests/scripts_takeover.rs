//! The Lua policy and hooks driving takeovers of real MariaDB topologies: vetoes leave the
//! topology as it was, a failing post hook is recorded, hooks see the real context, the shipped
//! policy chooses as documented, and a policy edited on disk changes the next takeover's choice.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton::config::Config;
use baton::engine::{Engine, Phase, Status, TakeoverReport, TakeoverRequest, Undo};
use baton::lua::{watch, Env, ReloadEvent, ScriptHost};
use baton::store::{PromotionRule, RuleEntry, SqliteStore, Store};
use baton::topology::InstanceKey;
use common::*;

/// An engine whose scripts are the Lua host over `scripts_dir` and `hooks_dir`.
async fn lua_engine(cfg: &Config) -> (Engine, Arc<ScriptHost>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir).unwrap());
    let env = Env::new(cfg, store);
    let host = ScriptHost::start(env.clone()).await.unwrap_or_else(|e| panic!("scripts: {e}"));
    (Engine::new(env.cfg.clone(), env.connector.clone(), env.store.clone(), host.clone()), host)
}

fn dir(t: &Topology, name: &str) -> PathBuf {
    let d = t.sandbox.dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn auto(hint: &InstanceKey) -> TakeoverRequest {
    TakeoverRequest { cluster_hint: hint.to_string(), auto: true, ..Default::default() }
}

fn status(rep: &TakeoverReport, want: Status) {
    assert_eq!(rep.status, want, "errors {:?}\nphases {:#?}", rep.errors, rep.phases);
}

#[tokio::test]
async fn pre_takeover_and_pre_fence_vetoes_leave_the_topology_as_it_was() {
    let t = fresh(3).await;
    let m = t.master();
    let mut cfg = t.cfg();
    cfg.scripts.policy = String::new();
    cfg.paths.scripts_dir = dir(&t, "scripts");
    cfg.paths.hooks_dir = dir(&t, "hooks");
    let before = shape(&t).await;

    write(
        &cfg.paths.hooks_dir.join("freeze.lua"),
        "return { pre_takeover = function(ctx) return false, 'change freeze until monday' end }",
    );
    let (e, _) = lua_engine(&cfg).await;
    let rep = e.takeover(auto(&m), None).await;
    status(&rep, Status::Refused);
    assert!(
        rep.errors[0].contains("pre_takeover_hooks: vetoed by hook")
            && rep.errors[0].contains("change freeze until monday"),
        "{:?}",
        rep.errors
    );
    assert_eq!(shape(&t).await, before);

    // pre_fence runs after the siblings moved below the successor: the veto rolls them back.
    std::fs::remove_file(cfg.paths.hooks_dir.join("freeze.lua")).unwrap();
    write(
        &cfg.paths.hooks_dir.join("proxy.lua"),
        "return { pre_fence = function(ctx)\n  error('proxy drain failed: 503')\nend }",
    );
    let (e, _) = lua_engine(&cfg).await;
    let rep = e.takeover(auto(&m), None).await;
    status(&rep, Status::RolledBack);
    assert!(
        rep.errors[0].contains("proxy drain failed: 503") && rep.errors[0].contains("proxy.lua:2"),
        "{:?}",
        rep.errors
    );
    assert_eq!(rep.siblings_moved.len(), 2, "the siblings had been moved before pre_fence");
    assert_eq!(shape(&t).await, before, "rolled back to the same shape");

    // Issue 13, item 3: a hook that would run away in C (a backtracking pattern) after the
    // siblings moved fails its call quickly; the takeover rolls back like any hook failure.
    write(
        &cfg.paths.hooks_dir.join("proxy.lua"),
        "return { pre_fence = function(ctx)\n  string.find(string.rep('a', 40), '.-.-.-.-.-.-.-.-b')\nend }",
    );
    let (e, _) = lua_engine(&cfg).await;
    let rep = e.takeover(auto(&m), None).await;
    status(&rep, Status::RolledBack);
    assert!(rep.errors[0].contains("backtracks"), "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before, "rolled back to the same shape");

    // A dry run calls no hook, not even on_failure.
    write(&cfg.paths.hooks_dir.join("proxy.lua"), "return { on_failure = function(ctx) error('must not run') end }");
    let (e, _) = lua_engine(&cfg).await;
    let rep = e.takeover(TakeoverRequest { dry_run: true, ..auto(&m) }, None).await;
    status(&rep, Status::Planned);
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    assert_eq!(rep.plan.unwrap().hooks["on_failure"].len(), 1);
    assert_eq!(shape(&t).await, before);

    // Issue 13, item 4: a hook's writes (with scripts.allow_writes) are recorded in their phase
    // and undone by the refusal or the rollback; without the switch they are refused.
    std::fs::remove_file(cfg.paths.hooks_dir.join("proxy.lua")).unwrap();
    let writer = "return {\n  pre_takeover = function(ctx) baton.read_only(ctx.replicas[1], false) end,\n  \
                  pre_fence = function(ctx) baton.stop_replication(ctx.replicas[2]) return false, 'vetoed after writing' end,\n}";
    write(&cfg.paths.hooks_dir.join("writer.lua"), writer);
    let (e, _) = lua_engine(&cfg).await;
    let rep = e.takeover(auto(&m), None).await;
    status(&rep, Status::Refused);
    assert!(rep.errors[0].contains("scripts.allow_writes"), "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before);
    let mut wcfg = cfg.clone();
    wcfg.scripts.allow_writes = true;
    let (e, _) = lua_engine(&wcfg).await;
    let rep = e.takeover(auto(&m), None).await;
    status(&rep, Status::RolledBack);
    assert!(rep.errors[0].contains("vetoed after writing"), "{:?}", rep.errors);
    let phase = |p: Phase| rep.phases.iter().find(|r| r.name == p).unwrap();
    let pre = &phase(Phase::PreTakeoverHooks).script_ops;
    assert_eq!(pre.len(), 1, "{pre:?}");
    assert_eq!((pre[0].primitive.as_str(), &pre[0].undo), ("read_only", &Undo::ReadOnly { on: true }));
    assert!(pre[0].statements.iter().any(|s| s.contains("read_only")), "{pre:?}");
    let fence = &phase(Phase::PreFenceHooks).script_ops;
    assert_eq!((fence[0].primitive.as_str(), &fence[0].undo), ("stop_replication", &Undo::StartReplication));
    let rollback = phase(Phase::Rollback);
    assert!(
        rollback.detail.contains("undoes stop_replication by") && rollback.detail.contains("undoes read_only by"),
        "{}",
        rollback.detail
    );
    // The undo plan in the report says the same, in the order it ran: the hooks' writes last,
    // newest first.
    let plan = rep.undo.describe();
    let n = plan.len();
    assert!(
        n >= 2 && plan[n - 2].contains("replication started again") && plan[n - 1].contains("read-only again"),
        "{plan:?}"
    );
    assert_eq!(shape(&t).await, before, "the hooks' writes were undone with the rest");
    // The audit has them too.
    let audit = SqliteStore::open(&cfg.paths.data_dir).unwrap().takeover(&rep.id).unwrap().unwrap();
    assert!(audit.record.to_string().contains("\"primitive\":\"stop_replication\""));

    // Issue 13, item 5: baton.query runs as scripts.query_user, and refuses file functions before
    // anything reaches the server.
    let conn = t.connector();
    exec(&conn, &m, "CREATE USER 'reader'@'%' IDENTIFIED BY 'reader-pw'").await;
    exec(&conn, &m, "GRANT SELECT ON meta.* TO 'reader'@'%'").await;
    let mut qcfg = cfg.clone();
    qcfg.scripts.query_user = "reader".into();
    qcfg.scripts.query_password = baton::config::Secret::new("reader-pw");
    let probe = "return { pre_takeover = function(ctx)\n  \
                 local rows = baton.query(ctx.old_master, 'SELECT CURRENT_USER() AS u, alias FROM meta.cluster WHERE anchor = ?', {1})\n  \
                 local ok, err = pcall(baton.query, ctx.old_master, \"SELECT LOAD_FILE('/etc/passwd') AS f\")\n  \
                 return false, rows[1].u .. '|' .. rows[1].alias .. '|' .. tostring(err)\nend }";
    write(&cfg.paths.hooks_dir.join("reader.lua"), probe);
    let (e, _) = lua_engine(&qcfg).await;
    let rep = e.takeover(auto(&m), None).await;
    status(&rep, Status::Refused);
    assert!(rep.errors[0].contains("reader@%|") && rep.errors[0].contains(&t.sandbox.alias), "{:?}", rep.errors);
    assert!(rep.errors[0].contains("load_file() is not allowed in baton.query"), "{:?}", rep.errors);
    std::fs::remove_file(cfg.paths.hooks_dir.join("reader.lua")).unwrap();
    assert_eq!(shape(&t).await, before);

    // A dry run whose policy tries to fence the master: refused, nothing changed.
    std::fs::remove_file(cfg.paths.hooks_dir.join("writer.lua")).unwrap();
    write(
        &cfg.paths.scripts_dir.join("policy.lua"),
        "return { choose = function(c, cands) baton.read_only(c.master, true) return cands[1].key, 'x' end }",
    );
    wcfg.scripts.policy = "policy.lua".into();
    let (e, _) = lua_engine(&wcfg).await;
    let rep = e.takeover(TakeoverRequest { dry_run: true, ..auto(&m) }, None).await;
    status(&rep, Status::Refused);
    assert!(rep.errors[0].contains("not available to the policy"), "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before);
}

#[tokio::test]
async fn lua_policy_chooses_hooks_see_the_context_and_reload_changes_the_next_choice() {
    let t = fresh(3).await;
    let m = t.master();
    let r = t.replicas();
    let mut cfg = t.cfg();
    cfg.paths.scripts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"); // the shipped policy.lua
    cfg.paths.hooks_dir = dir(&t, "hooks");
    cfg.scripts.allow_http = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ctx", listener.local_addr().unwrap());
    let server = tokio::spawn(one_http_request(listener));
    write(
        &cfg.paths.hooks_dir.join("10-ctx.lua"),
        &format!(
            "return {{\n  post_promote = function(ctx) error('switching the proxy writer failed') end,\n  \
             post_takeover = function(ctx) baton.http.post('{url}', ctx) end,\n}}"
        ),
    );
    SqliteStore::open(&cfg.paths.data_dir)
        .unwrap()
        .set_promotion_rule(&RuleEntry { instance: r[1].clone(), rule: PromotionRule::Prefer, until: None })
        .unwrap();
    let (e, host) = lua_engine(&cfg).await;
    let rep = e.takeover(auto(&m), None).await;

    // The shipped policy chose by the promotion rule; the post_promote error is recorded and
    // the promotion stands.
    status(&rep, Status::PromotedWithErrors);
    assert_eq!(rep.new_master.as_deref(), Some(r[1].to_string().as_str()));
    let choice = rep.choice.clone().unwrap();
    assert!(choice.starts_with(&format!("policy: {} chosen: rule prefer", r[1])), "{choice}");
    assert!(
        rep.errors
            .iter()
            .any(|e| e.contains("post_promote_hooks: hook failed") && e.contains("switching the proxy writer failed")),
        "{:?}",
        rep.errors
    );
    assert!(rep.old_master_repointed);
    let version = host.status().version;
    assert_eq!(rep.scripts.as_ref(), Some(&version), "the audit records the scripts version");
    let stored = SqliteStore::open(&cfg.paths.data_dir).unwrap().takeover(&rep.id).unwrap().unwrap();
    assert_eq!(stored.record["scripts"]["id"], version.id);

    // The context the post_takeover hook received, field by field.
    let (_, body) = tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
    let ctx: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ctx["takeover_id"], rep.id);
    assert_eq!(ctx["command"], "graceful-master-takeover-auto");
    assert_eq!(ctx["phase"], "post_takeover");
    assert_eq!(ctx["cluster"], m.to_string());
    assert_eq!(ctx["alias"], t.sandbox.alias);
    assert_eq!(ctx["old_master"], m.to_string());
    assert_eq!(ctx["successor"], r[1].to_string());
    let mut replicas: Vec<String> =
        ctx["replicas"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    replicas.sort();
    assert_eq!(replicas, r.iter().map(|k| k.to_string()).collect::<Vec<_>>());
    assert_eq!(ctx["lost_replicas"], serde_json::json!([]));
    let timed: Vec<&str> =
        ctx["phase_timings"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(timed.first(), Some(&"resolve"));
    assert_eq!(timed.last(), Some(&"repoint_old_master"));
    assert!(ctx["phase_timings"][0]["ms"].as_f64().unwrap() > 0.0);
    assert_eq!(ctx["dry_run"], false);
    assert_eq!(ctx["status"], "running");
    assert!(
        ctx["error"].as_str().unwrap().contains("switching the proxy writer failed"),
        "the first error so far: {}",
        ctx["error"]
    );
    assert_eq!(ctx["rolled_back"], serde_json::json!([]));
    assert_eq!(ctx["scripts_version"], version.id);

    // Hot reload: a policy that picks the highest port, then, edited on disk, the lowest.
    let mut cfg = cfg;
    cfg.paths.scripts_dir = dir(&t, "scripts");
    cfg.paths.hooks_dir = dir(&t, "no-hooks");
    let policy = cfg.paths.scripts_dir.join("policy.lua");
    let pick = |cmp: &str| {
        format!("return {{ choose = function(c, cands)\n  local best = cands[1]\n  for _, x in ipairs(cands) do if x.key {cmp} best.key then best = x end end\n  return best.key, 'picked'\nend }}")
    };
    write(&policy, &pick(">"));
    SqliteStore::open(&cfg.paths.data_dir).unwrap().clear_promotion_rule(&r[1]).unwrap();
    let (e, host) = lua_engine(&cfg).await;
    let mut events = host.subscribe();
    let _watch = watch::watch(host.clone()).unwrap();
    let rep = e.takeover(auto(&r[1]), None).await;
    status(&rep, Status::Promoted);
    assert_eq!(
        rep.new_master.as_deref(),
        Some(r[2].to_string().as_str()),
        "highest port among {m}, {}, {}",
        r[0],
        r[2]
    );

    write(&policy, &pick("<"));
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("reload within 10 s").unwrap();
    assert!(matches!(ev, ReloadEvent::Loaded { .. }), "{ev:?}");
    let rep2 = e.takeover(auto(&r[2]), None).await;
    status(&rep2, Status::Promoted);
    assert_eq!(rep2.new_master.as_deref(), Some(m.to_string().as_str()), "lowest port now");
    assert_ne!(rep.scripts.as_ref().unwrap().id, rep2.scripts.as_ref().unwrap().id);
    assert!(rep2.phase(Phase::ChooseDesignated).unwrap().detail.contains("policy: picked"));
}
