//! The Lua host without MySQL: the sandbox and its limits, loading and validation, the shipped
//! policies on saved snapshots, hook chains and their context, the orchestrator compatibility
//! hook, and reloading on file change.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton::config::Config;
use baton::engine::{plan, Choice, HookContext, HookPhase, PhaseTiming, PlanInputs, PolicyInput};
use baton::lua::{watch, Env, LoadedScripts, ReloadEvent, ScriptError, ScriptHost, Sources};
use baton::store::{PromotionRule, SqliteStore, Store};
use baton::topology::{Cluster, InstanceKey};

/// A scripts and a hooks directory in a fresh temporary directory.
struct Dirs {
    root: PathBuf,
    cfg: Config,
}

impl Dirs {
    fn new() -> Dirs {
        let root = std::env::temp_dir().join(format!("baton-scripts-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join("scripts")).unwrap();
        std::fs::create_dir_all(root.join("hooks")).unwrap();
        let mut cfg = Config::default();
        cfg.paths.scripts_dir = root.join("scripts");
        cfg.paths.hooks_dir = root.join("hooks");
        cfg.scripts.policy = String::new();
        Dirs { root, cfg }
    }

    /// Writes `rel` (e.g. "hooks/a.lua") atomically, the way editors save.
    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    fn env(&self) -> Arc<Env> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        Env::new(&self.cfg, store)
    }

    async fn load(&self) -> Result<LoadedScripts, ScriptError> {
        LoadedScripts::load(&Sources::read(&self.cfg)?, self.env()).await
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn ctx(phase: HookPhase) -> HookContext {
    HookContext {
        takeover_id: "t-1".into(),
        command: "graceful-master-takeover-auto".into(),
        phase: phase.name().into(),
        cluster: "127.0.0.1:3306".into(),
        alias: Some("main".into()),
        old_master: Some("127.0.0.1:3306".into()),
        successor: Some("127.0.0.1:3307".into()),
        replicas: vec!["127.0.0.1:3307".into(), "127.0.0.1:3308".into()],
        lost_replicas: vec!["127.0.0.1:3309".into()],
        phase_timings: vec![PhaseTiming { phase: "resolve".into(), ms: 1.5 }],
        dry_run: false,
        status: "running".into(),
        error: None,
        rolled_back: vec![],
        scripts_version: Some("abc".into()),
        semi_sync: None,
    }
}

/// Loads one hook file with `body` as its pre_takeover hook and runs it.
async fn run_pre(d: &Dirs, body: &str) -> Result<String, String> {
    d.write("hooks/h.lua", &format!("return {{ pre_takeover = function(ctx)\n{body}\nend }}"));
    let s = d.load().await.map_err(|e| e.to_string())?;
    s.run_phase(HookPhase::PreTakeover, &ctx(HookPhase::PreTakeover)).await.result
}

#[tokio::test]
async fn sandbox_has_no_os_io_load_or_outside_require() {
    let d = Dirs::new();
    for (body, expect) in [
        ("os.execute('touch /tmp/baton-pwned')", "global 'os'"),
        ("io.open('/etc/passwd')", "global 'io'"),
        ("require 'os'", "the os library is not available"),
        ("require 'io'", "no module io.lua"),
        ("load('return 1')()", "global 'load'"),
        ("dofile('/etc/passwd')", "global 'dofile'"),
        ("loadfile('/etc/passwd')", "global 'loadfile'"),
        ("debug.traceback()", "global 'debug'"),
        ("package.loadlib('x', 'y')", "global 'package'"),
        ("collectgarbage('stop')", "global 'collectgarbage'"),
        ("require '../secret'", "not a module name"),
    ] {
        let err = run_pre(&d, body).await.unwrap_err();
        assert!(err.contains(expect), "{body}: {err}");
        assert!(err.contains("h.lua:2"), "{body}: the error names file:line: {err}");
    }
    assert!(!Path::new("/tmp/baton-pwned").exists());
    // What is there works.
    run_pre(&d, "assert(string.format('%d', 3) == '3' and math.max(1, 2) == 2 and utf8.char(72) == 'H')\nassert(coroutine.wrap(function() coroutine.yield(1) end)() == 1)").await.unwrap();
}

#[tokio::test]
async fn limits_stop_runaway_scripts_and_the_vm_keeps_working() {
    let mut d = Dirs::new();
    d.cfg.scripts.instruction_limit = 2_000_000;
    d.cfg.scripts.memory_limit_mb = 16;
    d.cfg.scripts.hook_timeout_ms = 2_000;
    d.write(
        "hooks/h.lua",
        r#"
        return {
          pre_takeover = function(ctx) while true do end end,
          pre_fence = function(ctx) while true do pcall(function() while true do end end) end end,
          post_promote = function(ctx) local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 4096) .. i end end,
          post_takeover = function(ctx) return true end,
          on_failure = function(ctx) baton.sleep(60000) end,
        }"#,
    );
    let s = d.load().await.unwrap();
    let c = ctx(HookPhase::PreTakeover);
    let e = s.run_phase(HookPhase::PreTakeover, &c).await.result.unwrap_err();
    assert!(e.contains("instruction limit exceeded"), "{e}");
    let e = s.run_phase(HookPhase::PreFence, &c).await.result.unwrap_err();
    assert!(e.contains("instruction limit exceeded"), "pcall cannot swallow the limit: {e}");
    let e = s.run_phase(HookPhase::PostPromote, &c).await.result.unwrap_err();
    assert!(e.contains("memory"), "{e}");
    let e = s.run_phase(HookPhase::OnFailure, &c).await.result.unwrap_err();
    assert!(e.contains("time limit exceeded (2000 ms per call)"), "{e}");
    // The VM is still usable after each of those.
    s.run_phase(HookPhase::PostTakeover, &c).await.result.unwrap();

    // A CPU loop under a large instruction budget is stopped by the time limit.
    let mut d = Dirs::new();
    d.cfg.scripts.instruction_limit = u64::MAX / 2;
    d.cfg.scripts.hook_timeout_ms = 300;
    let e = run_pre(&d, "while true do end").await.unwrap_err();
    assert!(e.contains("time limit exceeded (300 ms per call)"), "{e}");
    // So is a top-level loop while loading.
    d.write("hooks/loop.lua", "while true do end");
    let e = d.load().await.err().expect("refused").to_string();
    assert!(e.contains("loop.lua") && e.contains("time limit"), "{e}");
}

#[tokio::test]
async fn loading_validates_everything_and_names_the_file() {
    let d = Dirs::new();
    d.write("hooks/a.lua", "return { pre_takover = function() end }");
    let e = d.load().await.err().unwrap().to_string();
    assert!(e.contains("a.lua") && e.contains("unknown phase 'pre_takover'") && e.contains("pre_takeover"), "{e}");

    d.write("hooks/a.lua", "return { pre_fence = 'not a function' }");
    assert!(d.load().await.err().unwrap().to_string().contains("pre_fence must be a function, not a string"));

    d.write("hooks/a.lua", "return {\n  post_promote = function(ctx)\n    if ctx then\n  end\n}");
    let e = d.load().await.err().unwrap().to_string();
    assert!(e.contains("a.lua:5"), "syntax error with file:line: {e}");

    d.write("hooks/a.lua", "return 42");
    assert!(d.load().await.err().unwrap().to_string().contains("must return a table"));

    d.write("hooks/a.lua", "return {}");
    let mut d2 = Dirs::new();
    d2.cfg.scripts.policy = "policy.lua".into();
    let e = d2.load().await.err().unwrap().to_string();
    assert!(e.contains("policy.lua") && e.contains("does not exist"), "{e}");
    d2.write("scripts/policy.lua", "return { chose = function() end }");
    let e = d2.load().await.err().unwrap().to_string();
    assert!(e.contains("choose(cluster, candidates)"), "{e}");
    // The annotations file is never loaded (it assigns a global and returns nothing).
    d2.write("scripts/baton.d.lua", "---@meta\nerror('loaded!')");
    d2.write("scripts/policy.lua", "return { choose = function(c, cands) return cands[1].key, 'first' end }");
    d2.load().await.unwrap();
}

#[tokio::test]
async fn hooks_run_in_file_name_order_and_a_failure_stops_the_chain() {
    let d = Dirs::new();
    d.write("hooks/20-b.lua", "return { pre_takeover = function(ctx) return false, 'b vetoes' end }");
    d.write(
        "hooks/10-a.lua",
        "return { pre_takeover = function(ctx) return true end, post_promote = function() error('a broke') end }",
    );
    d.write("hooks/30-c.lua", "return { pre_takeover = function(ctx) error('c must not run') end }");
    let s = d.load().await.unwrap();
    let names = s.hook_names(HookPhase::PreTakeover);
    assert!(names[0].ends_with("10-a.lua: pre_takeover") && names[1].ends_with("20-b.lua: pre_takeover"), "{names:?}");
    let e = s.run_phase(HookPhase::PreTakeover, &ctx(HookPhase::PreTakeover)).await.result.unwrap_err();
    assert!(e.contains("20-b.lua: pre_takeover returned false: b vetoes"), "{e}");
    let e = s.run_phase(HookPhase::PostPromote, &ctx(HookPhase::PostPromote)).await.result.unwrap_err();
    assert!(e.contains("a broke") && e.contains("10-a.lua:1") && e.contains("traceback"), "{e}");
    assert_eq!(s.run_phase(HookPhase::PreFence, &ctx(HookPhase::PreFence)).await.result.unwrap(), "no hooks");
}

#[tokio::test]
async fn hooks_get_the_documented_context() {
    let d = Dirs::new();
    let r = run_pre(
        &d,
        r#"
        assert(ctx.takeover_id == "t-1", "takeover_id")
        assert(ctx.command == "graceful-master-takeover-auto", "command")
        assert(ctx.phase == "pre_takeover", "phase")
        assert(ctx.cluster == "127.0.0.1:3306", "cluster")
        assert(ctx.alias == "main", "alias")
        assert(ctx.old_master == "127.0.0.1:3306", "old_master")
        assert(ctx.successor == "127.0.0.1:3307", "successor")
        assert(#ctx.replicas == 2 and ctx.replicas[2] == "127.0.0.1:3308", "replicas")
        assert(#ctx.lost_replicas == 1 and ctx.lost_replicas[1] == "127.0.0.1:3309", "lost_replicas")
        assert(ctx.phase_timings[1].phase == "resolve" and ctx.phase_timings[1].ms == 1.5, "phase_timings")
        assert(ctx.dry_run == false, "dry_run")
        assert(ctx.status == "running", "status")
        assert(ctx.error == nil, "error is nil, not a placeholder")
        assert(type(ctx.rolled_back) == "table" and #ctx.rolled_back == 0, "rolled_back")
        assert(ctx.scripts_version == "abc", "scripts_version")
        "#,
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn capabilities_are_off_unless_configured() {
    let d = Dirs::new();
    let e = run_pre(&d, "baton.shell('true')").await.unwrap_err();
    assert!(e.contains("baton.shell is switched off: set scripts.allow_shell = true"), "{e}");
    let e = run_pre(&d, "baton.http.post('http://127.0.0.1:9/', 'x')").await.unwrap_err();
    assert!(e.contains("allow_http"), "{e}");
}

#[tokio::test]
async fn orchestrator_compat_expands_placeholders_and_sets_orc_variables() {
    let mut d = Dirs::new();
    let out = d.root.join("out.txt");
    d.cfg.scripts.allow_shell = true;
    let settings: toml::Table = toml::from_str(&format!(
        r#"[orchestrator]
        PreGracefulTakeoverProcesses = [
          "echo '{{failedHost}}:{{failedPort}} -> {{successorHost}}:{{successorPort}} {{failureClusterAlias}} {{countReplicas}} {{lostReplicas}} {{command}} {{unknownThing}}' > {out}",
          "echo \"$ORC_FAILED_HOST $ORC_SUCCESSOR_PORT $ORC_COMMAND $ORC_FAILURE_TYPE $ORC_REPLICA_HOSTS $ORC_RECOVERY_UID\" >> {out}",
        ]
        PostGracefulTakeoverProcesses = ["exit 3"]"#,
        out = out.display()
    ))
    .unwrap();
    d.cfg.scripts.settings = settings;
    let hook =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/orchestrator_compat.lua")).unwrap();
    d.write("hooks/orchestrator_compat.lua", &hook);
    let s = d.load().await.unwrap();
    s.run_phase(HookPhase::PreTakeover, &ctx(HookPhase::PreTakeover)).await.result.unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "127.0.0.1:3306 -> 127.0.0.1:3307 main 2 127.0.0.1:3309 graceful-master-takeover-auto {unknownThing}"
    );
    assert_eq!(lines[1], "127.0.0.1 3307 graceful-master-takeover-auto DeadMaster 127.0.0.1:3307,127.0.0.1:3308 t-1");
    let e = s.run_phase(HookPhase::PostTakeover, &ctx(HookPhase::PostTakeover)).await.result.unwrap_err();
    assert!(e.contains("PostGracefulTakeoverProcesses #1 failed (exit 3)"), "{e}");
}

#[tokio::test]
async fn webhook_hook_posts_the_context_as_json() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(common::one_http_request(listener));
    let mut d = Dirs::new();
    d.cfg.scripts.allow_http = true;
    d.cfg.scripts.settings =
        toml::from_str(&format!("[webhook]\nurl = \"{url}\"\nheaders = {{ Authorization = \"Bearer x\" }}")).unwrap();
    let hook = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/notify_webhook.lua")).unwrap();
    d.write("hooks/notify_webhook.lua", &hook);
    let s = d.load().await.unwrap();
    s.run_phase(HookPhase::PostPromote, &ctx(HookPhase::PostPromote)).await.result.unwrap();
    let (head, body) = server.await.unwrap();
    assert!(head.to_ascii_lowercase().contains("authorization: bearer x"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"], "post_promote");
    assert_eq!(v["takeover"]["successor"], "127.0.0.1:3307");
    assert_eq!(v["text"], "main: 127.0.0.1:3306 -> 127.0.0.1:3307 (post_promote)");
}

// ---- policies on saved snapshots -------------------------------------------------------------

fn snapshot(name: &str) -> Cluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The policy's input for a saved snapshot, with no promotion rules.
fn snapshot_input(name: &str) -> Arc<PolicyInput> {
    let c = snapshot(name);
    let master = c.master.clone().unwrap();
    let (candidates, excluded) = plan::candidates(&c, &master, &PlanInputs::default());
    Arc::new(PolicyInput { cluster: c, master, candidates, excluded })
}

fn key(s: &str) -> InstanceKey {
    s.parse().unwrap()
}

async fn shipped_policy(file: &str, settings: &str) -> (Dirs, LoadedScripts) {
    let mut d = Dirs::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    d.cfg.paths.scripts_dir = root.join("scripts");
    d.cfg.scripts.policy = file.into();
    d.cfg.scripts.settings = toml::from_str(settings).unwrap();
    let s = d.load().await.unwrap();
    (d, s)
}

async fn choose(s: &LoadedScripts, cluster: &Cluster, inputs: &PlanInputs) -> Choice {
    let master = cluster.master.clone().unwrap();
    let (candidates, excluded) = plan::candidates(cluster, &master, inputs);
    s.run_policy(Arc::new(PolicyInput { cluster: cluster.clone(), master, candidates, excluded })).await.unwrap()
}

#[tokio::test]
async fn default_lua_policy_matches_the_built_in_ordering() {
    let (_d, s) = shipped_policy("policy.lua", "").await;
    let prefer =
        |k: &str, r: PromotionRule| PlanInputs { rules: [(key(k), r)].into_iter().collect(), ..Default::default() };
    let cases = [
        ("mariadb_1_3.json", PlanInputs::default()),
        ("mariadb_1_3.json", prefer("127.0.0.1:24309", PromotionRule::Prefer)),
        ("mariadb_1_3.json", prefer("127.0.0.1:24307", PromotionRule::PreferNot)),
        ("mariadb_1_3.json", prefer("127.0.0.1:24307", PromotionRule::MustNot)),
        ("mariadb_1_3_uneven.json", PlanInputs::default()),
        ("mariadb_1_3_uneven.json", prefer("127.0.0.1:24308", PromotionRule::Prefer)),
        ("mariadb_1_3_uneven.json", prefer("127.0.0.1:24307", PromotionRule::MustNot)),
    ];
    for (file, inputs) in cases {
        let c = snapshot(file);
        let master = c.master.clone().unwrap();
        let (rust, rust_reason) = plan::choose_candidate(&c, &master, &inputs).unwrap();
        match choose(&s, &c, &inputs).await {
            Choice::Chosen { key, reason } => {
                assert_eq!(key, rust, "{file} {:?}: lua {reason} / rust {rust_reason}", inputs.rules);
                assert!(reason.starts_with(&format!("{key} chosen: rule")), "{reason}");
            }
            other => panic!("{file}: {other:?}"),
        }
    }
    // The documented choices.
    let c = snapshot("mariadb_1_3_uneven.json");
    assert_eq!(choose(&s, &c, &PlanInputs::default()).await, Choice::Chosen {
        key: key("127.0.0.1:24307"),
        reason: "127.0.0.1:24307 chosen: rule neutral, executed 5, lag 30s, version 10.11.19-MariaDB-0+deb12u1-log; ranked ahead of 127.0.0.1:24309, 127.0.0.1:24308".into()
    });
    // Everything excluded: a refusal naming why.
    let all_banned = PlanInputs {
        rules: ["127.0.0.1:24307", "127.0.0.1:24308", "127.0.0.1:24309"]
            .iter()
            .map(|k| (key(k), PromotionRule::MustNot))
            .collect(),
        ..Default::default()
    };
    match choose(&s, &c, &all_banned).await {
        Choice::Refused { reason } => assert!(reason.contains("127.0.0.1:24308 (promotion rule must_not)"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn prefer_dc_example_policy() {
    let settings = r#"[policy]
        prefer_dc = "east"
        max_lag_s = 5
        data_centers = { "127.0.0.1:24308" = "east", "127.0.0.1:24309" = "west" }"#;
    let (_d, s) = shipped_policy("examples/prefer_dc.lua", settings).await;
    let c = snapshot("mariadb_1_3_uneven.json");
    // 24307 is the most advanced but lags 30 s; of the others, 24308 is in the preferred DC.
    match choose(&s, &c, &PlanInputs::default()).await {
        Choice::Chosen { key: k, reason } => {
            assert_eq!(k, key("127.0.0.1:24308"));
            assert!(reason.contains("(in east)") && reason.contains("127.0.0.1:24307 (lag 30s)"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // No candidate in the DC: the best of the rest.
    let inputs = PlanInputs {
        rules: [(key("127.0.0.1:24308"), PromotionRule::MustNot)].into_iter().collect(),
        ..Default::default()
    };
    assert!(matches!(choose(&s, &c, &inputs).await, Choice::Chosen { key: k, .. } if k == key("127.0.0.1:24309")));
    // Everything lags too much: refused.
    let (_d, strict) = shipped_policy("examples/prefer_dc.lua", "[policy]\nmax_lag_s = 0\n").await;
    let inputs = PlanInputs {
        rules: [(key("127.0.0.1:24309"), PromotionRule::MustNot)].into_iter().collect(),
        ..Default::default()
    };
    match choose(&strict, &c, &inputs).await {
        Choice::Refused { reason } => assert!(reason.contains("no candidate within 0s of lag"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// The semi-sync example: an acknowledging replica wins over a more advanced one that does not.
#[tokio::test]
async fn prefer_semi_sync_example_policy() {
    let (_d, s) = shipped_policy("examples/prefer_semi_sync.lua", "").await;
    let mut c = snapshot("mariadb_1_3.json");
    let none = choose(&s, &c, &PlanInputs::default()).await;
    assert!(matches!(&none, Choice::Refused { reason } if reason.contains("no candidate acknowledges")), "{none:?}");
    let master = c.master.clone().unwrap();
    let replicas: Vec<InstanceKey> = c.replicas_of(&master).iter().map(|m| m.key.clone()).collect();
    let last = replicas.last().unwrap().clone();
    for m in c.members.iter_mut().filter(|m| m.key == last) {
        m.instance.as_mut().unwrap().semi_sync =
            Some(baton::topology::SemiSync { replica_enabled: true, replica_status: true, ..Default::default() });
    }
    match choose(&s, &c, &PlanInputs::default()).await {
        Choice::Chosen { key, reason } => {
            assert_eq!(key, last);
            assert!(reason.contains("acknowledging semi-sync replicas"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let (_d, fallback) = shipped_policy("examples/prefer_semi_sync.lua", "[policy]\nfallback = true\n").await;
    let c = snapshot("mariadb_1_3.json");
    assert!(matches!(choose(&fallback, &c, &PlanInputs::default()).await, Choice::Chosen { .. }));
}

#[tokio::test]
async fn a_policy_answer_that_breaks_the_contract_is_an_error() {
    let mut d = Dirs::new();
    d.cfg.scripts.policy = "policy.lua".into();
    let input = snapshot_input("mariadb_1_3.json");
    for (body, expect) in [
        ("return 42, 'x'", "must return a \"host:port\" string or nil, not a integer"),
        ("return 'nonsense', 'x'", "not host:port"),
        ("return cands[1].key, {}", "the reason must be a string"),
        ("error('policy bug')", "policy bug"),
    ] {
        d.write("scripts/policy.lua", &format!("return {{ choose = function(cluster, cands) {body} end }}"));
        let s = d.load().await.unwrap();
        let e = s.run_policy(input.clone()).await.unwrap_err().to_string();
        assert!(e.contains(expect) && e.contains("policy.lua: choose"), "{body}: {e}");
    }
    // The cluster table carries the master, the members and the excluded list.
    d.write(
        "scripts/policy.lua",
        "return { choose = function(cluster, cands)\n assert(cluster.master == '127.0.0.1:24306')\n assert(#cluster.members == 4)\n assert(type(cluster.excluded) == 'table')\n assert(cands[1].replication.source == '127.0.0.1:24306')\n local seen = {}\n for k in pairs(cands[2]) do seen[k] = true end\n assert(seen.gtid and seen.replication and seen.server_id and seen.lag_s, 'pairs lists every field')\n return nil, 'checked' end }",
    );
    let s = d.load().await.unwrap();
    assert_eq!(s.run_policy(input.clone()).await.unwrap(), Choice::Refused { reason: "checked".into() });
}

// ---- reload ----------------------------------------------------------------------------------

const PICK_MAX: &str = "return { choose = function(c, cands) local best = cands[1] for _, x in ipairs(cands) do if x.key > best.key then best = x end end return best.key, 'max' end }";
const PICK_MIN: &str = "return { choose = function(c, cands) local best = cands[1] for _, x in ipairs(cands) do if x.key < best.key then best = x end end return best.key, 'min' end }";

async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<ReloadEvent>) -> ReloadEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a reload event within 10 s").unwrap()
}

#[tokio::test]
async fn file_changes_reload_and_a_broken_file_keeps_the_running_version() {
    let mut d = Dirs::new();
    d.cfg.scripts.policy = "policy.lua".into();
    d.write("scripts/policy.lua", PICK_MAX);
    let host = ScriptHost::start(d.env()).await.unwrap();
    let mut events = host.subscribe();
    let _w = watch::watch(host.clone()).unwrap();
    let c = snapshot("mariadb_1_3.json");
    let v1 = host.status().version.id;
    assert!(
        matches!(choose(&host.loaded(), &c, &PlanInputs::default()).await, Choice::Chosen { key: k, .. } if k == key("127.0.0.1:24309"))
    );
    // A takeover that started with v1 keeps it.
    let in_flight = host.loaded();

    d.write("scripts/policy.lua", PICK_MIN);
    let ReloadEvent::Loaded { version, .. } = next_event(&mut events).await else { panic!("not loaded") };
    assert_ne!(version.id, v1);
    assert!(
        matches!(choose(&host.loaded(), &c, &PlanInputs::default()).await, Choice::Chosen { key: k, .. } if k == key("127.0.0.1:24307"))
    );
    assert!(
        matches!(choose(&in_flight, &c, &PlanInputs::default()).await, Choice::Chosen { key: k, .. } if k == key("127.0.0.1:24309"))
    );

    // A syntax error: refused as a whole, v2 keeps running, the error is reported.
    d.write("scripts/policy.lua", "return { choose = function(c, cands) return cands[1].key, 'x' }");
    let ReloadEvent::Failed { error, kept } = next_event(&mut events).await else { panic!("should fail") };
    assert_eq!(kept, version.id);
    assert!(error.contains("policy.lua:1"), "{error}");
    assert_eq!(host.status().version.id, version.id);
    assert!(host.status().last_error.unwrap().contains("policy.lua:1"));
    // A bad hook next to a good policy: also refused as a whole.
    d.write("scripts/policy.lua", PICK_MAX);
    let _ = next_event(&mut events).await;
    d.write("hooks/bad.lua", "return { pre_fense = function() end }");
    let ReloadEvent::Failed { error, .. } = next_event(&mut events).await else { panic!("should fail") };
    assert!(error.contains("unknown phase 'pre_fense'"), "{error}");
    assert!(
        matches!(choose(&host.loaded(), &c, &PlanInputs::default()).await, Choice::Chosen { key: k, .. } if k == key("127.0.0.1:24309"))
    );

    // SIGHUP reloads at once.
    std::fs::remove_file(d.root.join("hooks/bad.lua")).unwrap();
    let _ = next_event(&mut events).await;
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    assert!(matches!(next_event(&mut events).await, ReloadEvent::Loaded { .. }));
}

#[tokio::test]
async fn proxysql_hook_sends_the_writer_switch() {
    let mut d = Dirs::new();
    let out = d.root.join("admin.sql");
    d.cfg.scripts.allow_shell = true;
    // The admin "client" writes what it is given, as the mysql client would send it to ProxySQL.
    d.cfg.scripts.settings = toml::from_str(&format!(
        "[proxysql]\nadmin = \"cat >> {}\"\nwriter_hostgroup = 10\nreader_hostgroup = 20",
        out.display()
    ))
    .unwrap();
    let hook =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/proxysql_writer.lua")).unwrap();
    d.write("hooks/proxysql_writer.lua", &hook);
    let s = d.load().await.unwrap();
    s.run_phase(HookPhase::PreFence, &ctx(HookPhase::PreFence)).await.result.unwrap();
    s.run_phase(HookPhase::PostPromote, &ctx(HookPhase::PostPromote)).await.result.unwrap();
    let sql = std::fs::read_to_string(&out).unwrap();
    assert!(sql.contains("UPDATE mysql_servers SET status='OFFLINE_SOFT' WHERE hostgroup_id=10 AND hostname='127.0.0.1' AND port=3306;"), "{sql}");
    assert!(
        sql.contains("INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (10, '127.0.0.1', 3307);"),
        "{sql}"
    );
    assert!(
        sql.contains("REPLACE INTO mysql_servers (hostgroup_id, hostname, port) VALUES (20, '127.0.0.1', 3306);"),
        "{sql}"
    );
    assert_eq!(sql.matches("LOAD MYSQL SERVERS TO RUNTIME;").count(), 2);
    // A rolled-back takeover undoes the drain; after a promotion with errors nothing is undone.
    std::fs::remove_file(&out).unwrap();
    let failed = |status: &str| HookContext { status: status.into(), ..ctx(HookPhase::OnFailure) };
    s.run_phase(HookPhase::OnFailure, &failed("promoted_with_errors")).await.result.unwrap();
    assert!(!out.exists(), "nothing sent after a promotion with errors");
    s.run_phase(HookPhase::OnFailure, &failed("rolled_back")).await.result.unwrap();
    let sql = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        sql.trim(),
        "UPDATE mysql_servers SET status='ONLINE' WHERE hostgroup_id=10 AND hostname='127.0.0.1' AND port=3306;\nLOAD MYSQL SERVERS TO RUNTIME;"
    );
    // Unconfigured, it does nothing.
    let d2 = Dirs::new();
    d2.write("hooks/proxysql_writer.lua", &hook);
    let s2 = d2.load().await.unwrap();
    assert!(s2.run_phase(HookPhase::PostPromote, &ctx(HookPhase::PostPromote)).await.result.unwrap().contains("ok"));
}

/// Trust boundary (issue 13, item 4): the policy is pure, a file's top level and a hook without
/// `scripts.allow_writes` change nothing, and a coroutine the script made gets no writes. With
/// the switch on, the primitive is reached (here it fails at the probe of a closed port, after the
/// grant was found, and the attempt is recorded).
#[tokio::test]
async fn write_primitives_need_a_hook_and_allow_writes() {
    let mut d = Dirs::new();
    d.cfg.scripts.policy = "policy.lua".into();
    d.cfg.scripts.allow_shell = true;
    let input = snapshot_input("mariadb_1_3.json");
    for (call, expect) in [
        ("baton.read_only(cands[1].key, true)", "baton.read_only is not available to the policy"),
        ("baton.stop_replication(cands[1].key)", "baton.stop_replication is not available to the policy"),
        ("baton.repoint(cands[1].key, cands[2].key)", "baton.repoint is not available to the policy"),
        ("baton.kill_connections(cands[1].key)", "not available to the policy"),
        ("baton.shell('true')", "baton.shell is not available to the policy"),
        ("baton.http.post('http://127.0.0.1:9/', 'x')", "baton.http.post is not available to the policy"),
    ] {
        d.write(
            "scripts/policy.lua",
            &format!("return {{ choose = function(cluster, cands) {call} return cands[1].key, 'x' end }}"),
        );
        let s = d.load().await.unwrap();
        let e = s.run_policy(input.clone()).await.unwrap_err().to_string();
        assert!(e.contains(expect), "{call}: {e}");
    }
    d.write("scripts/policy.lua", "return { choose = function(cluster, cands) return cands[1].key, 'x' end }");

    // At load time.
    d.write("hooks/top.lua", "baton.read_only('127.0.0.1:1', true)\nreturn {}");
    let e = d.load().await.err().expect("a top-level write refuses the load").to_string();
    assert!(e.contains("is not available to") && e.contains("(loading)"), "{e}");
    std::fs::remove_file(d.root.join("hooks/top.lua")).unwrap();

    // A hook without the switch, and a coroutine inside a hook with it.
    let e = run_pre(&d, "baton.read_only('127.0.0.1:1', true)").await.unwrap_err();
    assert!(e.contains("only hooks change servers, with scripts.allow_writes = true"), "{e}");
    d.cfg.scripts.allow_writes = true;
    let e = run_pre(&d, "coroutine.wrap(function() baton.read_only('127.0.0.1:1', true) end)()").await.unwrap_err();
    assert!(e.contains("inside a coroutine the script created"), "{e}");
    // With it: the primitive runs (and fails to read the closed port's state: nothing is changed
    // whose undo is unknown). A dry run's context takes the writes away again.
    let e = run_pre(&d, "baton.read_only('127.0.0.1:1', true)").await.unwrap_err();
    assert!(e.contains("cannot read the state of 127.0.0.1:1 before changing it"), "{e}");
    d.write("hooks/h.lua", "return { pre_takeover = function(ctx) baton.read_only('127.0.0.1:1', true) end }");
    let s = d.load().await.unwrap();
    let mut dry = ctx(HookPhase::PreTakeover);
    dry.dry_run = true;
    let e = s.run_phase(HookPhase::PreTakeover, &dry).await.result.unwrap_err();
    assert!(e.contains("never in a dry run"), "{e}");
}

/// Item 9: what a script returns is capped (a 20 MB refusal reason becomes 4 KiB and says so),
/// and a policy that is a symbolic link to a file outside the scripts directory is not loaded.
#[tokio::test]
async fn script_answers_are_capped_and_links_are_not_followed() {
    let mut d = Dirs::new();
    d.cfg.scripts.policy = "policy.lua".into();
    let input = snapshot_input("mariadb_1_3.json");
    d.write(
        "scripts/policy.lua",
        "return { choose = function(c, cands) return nil, string.rep('x', 20 * 1024 * 1024) end }",
    );
    let s = d.load().await.unwrap();
    match s.run_policy(input.clone()).await.unwrap() {
        Choice::Refused { reason } => {
            assert!(reason.len() < 5000, "{}", reason.len());
            assert!(reason.contains("(cut: ") && reason.contains("more bytes)"), "{}", &reason[reason.len() - 60..]);
        }
        other => panic!("{other:?}"),
    }
    d.write("hooks/h.lua", "return { pre_takeover = function(ctx) return false, string.rep('y', 1e7) end }");
    let e = d
        .load()
        .await
        .unwrap()
        .run_phase(HookPhase::PreTakeover, &ctx(HookPhase::PreTakeover))
        .await
        .result
        .unwrap_err();
    assert!(e.len() < 5000 && e.contains("(cut: "), "{}", e.len());
    std::fs::remove_file(d.root.join("hooks/h.lua")).unwrap();

    // The policy as a link to a file elsewhere: refused, naming links.
    let outside = d.root.join("outside.lua");
    std::fs::write(&outside, "return { choose = function(c, cands) return cands[1].key, 'outside' end }").unwrap();
    std::fs::remove_file(d.root.join("scripts/policy.lua")).unwrap();
    std::os::unix::fs::symlink(&outside, d.root.join("scripts/policy.lua")).unwrap();
    let e = d.load().await.err().expect("a linked policy is not loaded").to_string();
    assert!(e.contains("symbolic links are not followed"), "{e}");
}
