//! The HTTP service end to end: a real listening server over a real MariaDB topology. Takeovers
//! over the native API with their event stream, dry runs that change nothing, plan hashes, 409
//! for a busy cluster, and orchestrator's routes answered with every field name orchestrator's
//! own answers carry.

mod common;

use std::path::Path;
use std::time::Duration;

use baton::config::Config;
use baton::http::{router, AppState};
use baton::store::{SqliteStore, Store};
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

/// Starts `baton serve`'s router on a free loopback port; returns its base URL.
async fn serve(cfg: &Config) -> String {
    let state = AppState::new(cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    base
}

fn config(t: &Topology) -> Config {
    let mut cfg = t.cfg();
    cfg.scripts.policy = String::new(); // the built-in ordering; the Lua host has its own tests
    cfg.paths.hooks_dir = t.sandbox.dir.join("no-hooks");
    cfg
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{base}{path}")).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Who replicates from whom and who is writable, from the server itself.
async fn shape(base: &str, hint: &str) -> Vec<(String, Value, Value, bool)> {
    let (status, c) = get(base, &format!("/api/v1/clusters/{hint}")).await;
    assert_eq!(status, 200, "{c}");
    let mut v: Vec<_> = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let r = &m["instance"]["replication"];
            // Replicating (the IO thread may still be connecting right after a START SLAVE).
            let running = r["io_thread"] != "no" && r["sql_thread"] == "yes" && r["last_io_error"].is_null();
            (m["key"].as_str().unwrap().to_string(), m["source"].clone(), m["instance"]["read_only"].clone(), running)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Reads an event stream to its `done` event: (phase events, final report).
async fn events(base: &str, id: &str) -> (Vec<Value>, Value) {
    let r = reqwest::get(format!("{base}/api/v1/takeovers/{id}/events")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut stream = eventsource_stream::Eventsource::eventsource(r.bytes_stream());
    let mut phases = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("an event within 30 s");
        let ev = ev.expect("stream open").unwrap();
        match ev.event.as_str() {
            "phase" => phases.push(serde_json::from_str(&ev.data).unwrap()),
            "done" => return (phases, serde_json::from_str(&ev.data).unwrap()),
            _ => {}
        }
    }
}

/// `http::run` in-process, on a listener and a shutdown future of the test's: a takeover
/// interrupted by a crash after the fence (a `baton` process killed there) is settled before the
/// service answers, and a shutdown waits for a running takeover to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_settles_interrupted_takeovers_at_startup_and_drains_at_shutdown() {
    let t = fresh(2).await;
    let cfg = config(&t);
    let m = t.master();
    let out = tokio::process::Command::new(baton_bin())
        .arg("--config")
        .arg(config_file(&t))
        .args(["takeover", &m.to_string(), "--auto"])
        .env_remove("BATON_CONFIG")
        .env("BATON_FAULT_CRASH_AFTER", "fence")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "killed after the fence");
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    let crashed = store.takeovers(None, 1).unwrap()[0].clone();
    assert_eq!(crashed.status, "running");
    assert!(rows(&t.connector(), &m, "SELECT @@read_only AS ro").await[0].flag(&["ro"]), "left fenced");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run_cfg = cfg.clone();
    let server = tokio::spawn(async move {
        baton::http::run(&run_cfg, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap()
    });
    // Answering means startup recovery is over: the fenced master is writable again.
    let (status, _) = get(&base, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(store.takeover(&crashed.id).unwrap().unwrap().status, "rolled_back");
    assert_eq!(assert_one_master(&t, &[]).await, m);

    // A takeover answered at once, then a shutdown: the service returns only once it is over.
    let (status, started) =
        post(&base, &format!("/api/v1/clusters/{m}/takeover"), json!({ "auto": true, "wait": false })).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), server).await.expect("drained within 60 s").unwrap();
    assert_eq!(store.takeover(&id).unwrap().unwrap().status, "promoted");
    assert_ne!(assert_one_master(&t, &[]).await, m);
}

#[tokio::test]
async fn native_api_dry_run_plan_hash_event_stream_and_conflict() {
    let t = fresh(3).await;
    let cfg = config(&t);
    let base = serve(&cfg).await;
    let alias = t.sandbox.alias.clone();
    let path = format!("/api/v1/clusters/{alias}/takeover");
    // The first discovery (by a member) makes the alias known.
    let before = shape(&base, &t.master().to_string()).await;

    // A dry run: the plan, nothing changed.
    let (status, plan) = post(&base, &path, json!({ "auto": true, "dry_run": true })).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["status"], "planned");
    let hash = plan["plan_hash"].as_str().unwrap().to_string();
    let steps = plan["plan"]["steps"].as_array().unwrap();
    let phases: Vec<&str> = steps.iter().map(|s| s["phase"].as_str().unwrap()).collect();
    assert_eq!(phases.first(), Some(&"relocate_siblings"));
    assert!(
        phases.contains(&"fence") && phases.contains(&"promote") && phases.last() == Some(&"repoint_old_master"),
        "{phases:?}"
    );
    let fence = steps.iter().find(|s| s["phase"] == "fence").unwrap();
    assert_eq!(fence["instance"], t.master().to_string());
    assert!(fence["statements"].to_string().contains("SET GLOBAL read_only = ON"), "{fence}");
    assert!(
        plan.to_string().contains("MASTER_PASSWORD = '***'") && !plan.to_string().contains("PASSWORD = 'repl'"),
        "passwords masked"
    );
    let checks: Vec<&Value> = plan["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["checks"].as_array().cloned().unwrap_or_default().leak().iter())
        .collect();
    assert!(checks.iter().any(|c| c["name"] == "replication_credentials" && c["ok"] == true));
    assert_eq!(shape(&base, &alias).await, before, "a dry run changes nothing");

    // The topology changes: the plan no longer applies.
    let r3 = t.replicas()[2].clone();
    let conn = t.connector();
    exec(&conn, &r3, "STOP SLAVE").await;
    let (status, body) = post(&base, &path, json!({ "auto": true, "plan_hash": hash })).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["check"], "plan_hash");
    assert!(body["error"]["message"].as_str().unwrap().contains("the topology changed since the plan was made"));
    exec(&conn, &r3, "START SLAVE").await;
    assert_eq!(shape(&base, &alias).await, before);

    // Busy: another takeover holds the cluster.
    let store = SqliteStore::open(&cfg.paths.data_dir).unwrap();
    store.lock_cluster(&alias, "other").unwrap();
    let (status, body) = post(&base, &path, json!({ "auto": true })).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["check"], "busy");
    store.unlock_cluster(&alias, "other").unwrap();

    // The reviewed plan runs, answered at once, followed live on the event stream.
    let (status, started) = post(&base, &path, json!({ "auto": true, "plan_hash": hash, "wait": false })).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let (phase_events, done) = events(&base, &id).await;
    assert_eq!(done["status"], "promoted", "{done}");
    let finished: Vec<&str> = phase_events
        .iter()
        .filter(|e| e["event"] == "finished")
        .map(|e| e["record"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(finished.len(), 13, "{finished:?}");
    assert_eq!(phase_events.iter().filter(|e| e["event"] == "started").count(), 13);
    assert_eq!(done["new_master"], t.replicas()[0].to_string(), "the plan's choice");

    // Replayed from the audit once finished; the audit lists it.
    let (replayed, again) = events(&base, &id).await;
    assert_eq!(replayed.len(), 13);
    assert_eq!(again["id"], id);
    let (_, list) = get(&base, "/api/v1/takeovers").await;
    assert!(list.as_array().unwrap().iter().any(|e| e["id"] == id));
    let (status, metrics) = (200, reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap());
    assert_eq!(status, 200);
    assert!(metrics.contains("baton_takeovers_total{kind=\"takeover\",status=\"promoted\"} 1"), "{metrics}");
    assert!(metrics.contains("baton_takeovers_total{kind=\"dry_run\",status=\"planned\"} 1"));
    assert!(metrics.contains("baton_write_unavailable_ms_count 1"));

    // The CLI as a client: the leader is found among several URLs (the first is down), the
    // phases are shown live, the exit status is the takeover's.
    let api = format!("http://127.0.0.1:1,{base}");
    let out = tokio::process::Command::new(baton_bin())
        .args(["takeover", &alias, "--auto", "--api", &api])
        .env_remove("BATON_CONFIG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("  fence ") && stdout.contains("): promoted"), "{stdout}");
    let out = tokio::process::Command::new(baton_bin())
        .args(["takeover", &alias, "--auto", "--dry-run", "--api", &base])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("plan (nothing was changed)") && stdout.contains("plan_hash:"),
        "{stdout}"
    );
    let out =
        tokio::process::Command::new(baton_bin()).args(["topology", &alias, "--api", &base]).output().await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("(alias {alias})")));
}

/// The object keys (recursively, first element of arrays) `want` has and `got` lacks.
fn missing(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    None => out.push(format!("{path}.{k}")),
                    Some(gv) => missing(wv, gv, &format!("{path}.{k}"), out),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if let (Some(w0), Some(g0)) = (w.first(), g.first()) {
                missing(w0, g0, &format!("{path}[0]"), out);
            }
        }
        _ => {}
    }
}

fn capture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/orchestrator-captures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn same_shape(route: &str, file: &str, ours: &Value) {
    let want = capture(file);
    assert_eq!(std::mem::discriminant(&want), std::mem::discriminant(ours), "{route}: {ours}");
    let mut out = Vec::new();
    missing(&want, ours, "", &mut out);
    assert!(out.is_empty(), "{route} lacks orchestrator's fields {out:?}");
}

#[tokio::test]
async fn orchestrator_routes_answer_in_orchestrators_shapes() {
    let t = fresh(3).await;
    let cfg = config(&t);
    let base = serve(&cfg).await;
    let (m, r) = (t.master(), t.replicas());
    let alias = t.sandbox.alias.clone();
    let hp = |k: &baton::topology::InstanceKey| format!("{}/{}", k.host, k.port);

    let (status, leader) = get(&base, "/api/leader-check").await;
    assert_eq!((status, leader), (200, capture("pre_leader-check.json")));
    let (_, v) = get(&base, &format!("/api/instance/{}", hp(&r[0]))).await;
    same_shape("instance", "pre_instance_127.0.0.1_23307.json", &v);
    assert_eq!(v["Key"], json!({"Hostname": r[0].host, "Port": r[0].port}));
    assert_eq!(v["MasterKey"], json!({"Hostname": m.host, "Port": m.port}));
    assert_eq!(
        (v["ReadOnly"].clone(), v["ReplicationDepth"].clone(), v["ClusterName"].clone()),
        (json!(true), json!(1), json!(m.to_string()))
    );
    assert_eq!(v["SecondsBehindMaster"], json!({"Int64": 0, "Valid": true}));
    assert_eq!((v["Slave_IO_Running"].clone(), v["Slave_SQL_Running"].clone()), (json!(true), json!(true)));
    let (_, v) = get(&base, &format!("/api/master/{alias}")).await;
    same_shape("master", "pre_master_peers-23306.json", &v);
    assert_eq!(v["Key"]["Port"], m.port);
    let (_, v) = get(&base, &format!("/api/cluster/alias/{alias}")).await;
    same_shape("cluster/alias", "pre_cluster_alias_peers-23306.json", &v);
    assert_eq!(v.as_array().unwrap().len(), 4);
    let (_, v) = get(&base, &format!("/api/instance-replicas/{}", hp(&m))).await;
    same_shape("instance-replicas", "pre_instance-replicas_127.0.0.1_23306.json", &v);
    let (_, v) = get(&base, &format!("/api/cluster-info/{m}")).await;
    same_shape("cluster-info", "pre_cluster-info_127.0.0.1_23306.json", &v);
    assert_eq!(v["ClusterAlias"], alias);
    let (_, v) = get(&base, &format!("/api/topology/{alias}")).await;
    same_shape("topology", "pre_topology_peers-23306.json", &v);
    assert!(v["Details"].as_str().unwrap().starts_with(&m.to_string()));
    let (_, v) = get(&base, "/api/clusters").await;
    same_shape("clusters", "pre_clusters.json", &v);
    let (_, v) = get(&base, "/api/clusters-info").await;
    same_shape("clusters-info", "pre_clusters-info.json", &v);

    // What orchestrator-client sends for `-c graceful-master-takeover` with no designated replica
    // among several: an ERROR answer, HTTP 500, and a message.
    let (status, v) = get(&base, &format!("/api/graceful-master-takeover/{alias}")).await;
    assert_eq!(status, 500);
    same_shape("takeover error", "err_graceful-master-takeover_no-designated.json", &v);
    assert!(v["Message"].as_str().unwrap().contains("name one, or ask for auto"), "{v}");

    // -auto on host/port, then an explicit one back by alias and designated host/port.
    let (status, v) = get(&base, &format!("/api/graceful-master-takeover-auto/{}", hp(&m))).await;
    assert_eq!(status, 200, "{v}");
    same_shape("graceful-master-takeover-auto", "api_graceful-master-takeover-auto_127.0.0.1_23306.json", &v);
    assert_eq!(v["Code"], "OK");
    assert_eq!(v["Details"]["SuccessorKey"], json!({"Hostname": r[0].host, "Port": r[0].port}));
    assert_eq!(v["Details"]["IsSuccessful"], true);
    assert_eq!(v["Details"]["AnalysisEntry"]["AnalyzedInstanceKey"], json!({"Hostname": m.host, "Port": m.port}));
    let uid = v["Details"]["UID"].as_str().unwrap().to_string();
    let (status, v) = get(&base, &format!("/api/graceful-master-takeover/{alias}/{}", hp(&m))).await;
    assert_eq!(status, 200, "{v}");
    same_shape("graceful-master-takeover", "api_graceful-master-takeover_127.0.0.1_23307_127.0.0.1_23306.json", &v);
    assert_eq!(v["Details"]["SuccessorKey"]["Port"], m.port);

    let (_, v) = get(&base, "/api/audit-recovery").await;
    same_shape("audit-recovery", "post_audit-recovery.json", &v);
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = get(&base, &format!("/api/audit-recovery-steps/{uid}")).await;
    same_shape("audit-recovery-steps", "post_audit-recovery-steps.json", &v);
    assert_eq!(v[0]["RecoveryUID"], uid);
}
