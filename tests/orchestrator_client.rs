//! orchestrator's own `orchestrator-client` (read from ../shared, never copied into the project)
//! driving Baton's instance commands on a real topology, checked on the servers afterwards:
//! orchestrator's documented routine of a non-auto graceful takeover followed by `start-replica`
//! on the demoted master, stop/start/restart, read-only, relocate and move-up, forget, and a
//! command Baton does not serve failing loudly.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton::http::{router, AppState};
use baton::topology::InstanceKey;
use common::*;

fn client() -> Option<PathBuf> {
    let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/orchestrator/orchestrator-client");
    let tools = ["bash", "curl", "jq"]
        .iter()
        .all(|t| std::process::Command::new("which").arg(t).output().is_ok_and(|o| o.status.success()));
    (c.is_file() && tools).then_some(c)
}

/// Runs `orchestrator-client ARGS`: (exit ok, stdout + stderr).
async fn orc(client: &Path, api: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("bash")
        .arg(client)
        .args(args)
        .env("ORCHESTRATOR_API", api)
        .output()
        .await
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

async fn replicating(t: &Topology, k: &InstanceKey) -> (Option<InstanceKey>, bool, bool) {
    let i = baton::mysql::probe(&t.connector(), k).await.unwrap();
    let r = i.replication.as_ref();
    (
        r.map(|r| r.source.clone()),
        r.is_some_and(|r| r.sql_thread.running() && !matches!(r.io_thread, baton::topology::ThreadState::No)),
        i.read_only,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_client_drives_instance_commands() {
    let Some(client) = client() else {
        eprintln!("SKIPPED: needs ../shared/reference/orchestrator/orchestrator-client and bash, curl, jq");
        return;
    };
    let t = fresh(3).await;
    let cfg = t.cfg();
    let (m, r1, r2, r3) = (t.master(), t.replicas()[0].clone(), t.replicas()[1].clone(), t.replicas()[2].clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}/api", listener.local_addr().unwrap());
    let limits = baton::http::listen::ConnLimits { max_connections: 64, header_read_timeout: Duration::from_secs(10) };
    tokio::spawn(baton::http::listen::serve(
        listener,
        router(AppState::new(&cfg).await.unwrap()),
        limits,
        std::future::pending(),
    ));
    let hp = |k: &InstanceKey| k.to_string();

    // Remember the cluster, then orchestrator's routine: a non-auto takeover leaves the demoted
    // master stopped below the new one; start-replica makes the cluster healthy.
    let (ok, out) = orc(&client, &api, &["-c", "discover", "-i", &hp(&m)]).await;
    assert!(ok, "{out}");
    let (ok, out) = orc(&client, &api, &["-c", "graceful-master-takeover", "-i", &hp(&m), "-d", &hp(&r1)]).await;
    assert!(ok && out.contains(&hp(&r1)), "{out}");
    let (src, running, _) = replicating(&t, &m).await;
    assert_eq!((src.as_ref(), running), (Some(&r1), false), "the demoted master waits below the new one");
    let (ok, out) = orc(&client, &api, &["-c", "start-replica", "-i", &hp(&m)]).await;
    assert!(ok && out.contains(&hp(&m)), "{out}");
    assert!(replicating(&t, &m).await.1);
    assert_eq!(assert_one_master_tree(&t).await, r1);

    // stop / start / restart, read-only on and off.
    let (ok, out) = orc(&client, &api, &["-c", "stop-replica", "-i", &hp(&r2)]).await;
    assert!(ok, "{out}");
    assert!(!replicating(&t, &r2).await.1);
    assert!(orc(&client, &api, &["-c", "restart-replica", "-i", &hp(&r2)]).await.0);
    assert!(replicating(&t, &r2).await.1);
    assert!(orc(&client, &api, &["-c", "set-writeable", "-i", &hp(&r3)]).await.0);
    assert!(!replicating(&t, &r3).await.2);
    assert!(orc(&client, &api, &["-c", "set-read-only", "-i", &hp(&r3)]).await.0);
    assert!(replicating(&t, &r3).await.2);

    // relocate r3 below r2, then move it back up below the master.
    let (ok, out) = orc(&client, &api, &["-c", "relocate", "-i", &hp(&r3), "-d", &hp(&r2)]).await;
    assert!(ok, "{out}");
    assert_eq!(replicating(&t, &r3).await.0.as_ref(), Some(&r2));
    let (ok, out) = orc(&client, &api, &["-c", "move-up", "-i", &hp(&r3)]).await;
    assert!(ok, "{out}");
    assert_eq!(replicating(&t, &r3).await.0.as_ref(), Some(&r1));
    // relocate-replicas: both other replicas of r1 below r2, then back.
    let (ok, out) = orc(&client, &api, &["-c", "relocate-replicas", "-i", &hp(&r1), "-d", &hp(&r2)]).await;
    assert!(ok, "{out}");
    assert_eq!((replicating(&t, &m).await.0, replicating(&t, &r3).await.0), (Some(r2.clone()), Some(r2.clone())));
    let (ok, out) = orc(&client, &api, &["-c", "relocate-replicas", "-i", &hp(&r2), "-d", &hp(&r1)]).await;
    assert!(ok, "{out}");
    assert_eq!((replicating(&t, &m).await.0, replicating(&t, &r3).await.0), (Some(r1.clone()), Some(r1.clone())));
    // A loop is refused, and says why; nothing changed.
    let (ok, out) = orc(&client, &api, &["-c", "relocate", "-i", &hp(&r1), "-d", &hp(&r3)]).await;
    assert!(!ok && out.contains("loop"), "{out}");
    assert_eq!(assert_one_master_tree(&t).await, r1);

    // Unknown instances are refused; a command Baton does not serve fails loudly.
    let (ok, out) = orc(&client, &api, &["-c", "stop-replica", "-i", "127.0.0.1:1"]).await;
    assert!(!ok && out.contains("not a member of a cluster Baton knows"), "{out}");
    let (ok, out) = orc(&client, &api, &["-c", "make-co-master", "-i", &hp(&r2)]).await;
    assert!(!ok && out.contains("not supported by Baton"), "{out}");

    // The reads that printed null before.
    let (ok, out) = orc(&client, &api, &["-c", "all-instances"]).await;
    assert!(ok && [&m, &r1, &r2, &r3].iter().all(|k| out.contains(&hp(k))), "{out}");
    let (ok, out) = orc(&client, &api, &["-c", "all-clusters-masters"]).await;
    assert!(ok && out.trim() == hp(&r1), "{out}");
    let (ok, out) = orc(&client, &api, &["-c", "topology-tabulated", "-i", &hp(&r1)]).await;
    assert!(ok && out.lines().count() == 4 && out.contains(&format!("{}|", hp(&r1))), "{out}");
    let (ok, out) = orc(&client, &api, &["-c", "which-cluster-osc-replicas", "-i", &hp(&r1)]).await;
    assert!(ok && out.lines().count() == 3 && !out.contains(&hp(&r1)), "{out}");
    exec(&t.connector(), &r2, "STOP SLAVE").await;
    let (ok, out) = orc(&client, &api, &["-c", "replication-analysis"]).await;
    assert!(ok && out.contains(&hp(&r2)) && out.contains("ReplicationStopped"), "{out}");
    exec(&t.connector(), &r2, "START SLAVE").await;

    // Every change is on record, with who asked and the statements.
    let store = baton::store::SqliteStore::open(&cfg.paths.data_dir).unwrap();
    use baton::store::Store;
    let ops = store.operations(100).unwrap();
    assert!(
        ops.iter().any(|o| o.record["command"]["command"] == "relocate"
            && o.record["ops"][0]["statements"].to_string().contains("CHANGE MASTER")),
        "{ops:?}"
    );
    assert!(ops.iter().all(|o| o.record["by"].as_str().unwrap().starts_with("http:admin@127.0.0.1")));

    // forget an instance, then the cluster.
    assert!(orc(&client, &api, &["-c", "forget", "-i", &hp(&r3)]).await.0);
    assert!(store.cluster_of(&r3).unwrap().is_none());
    let name = store.cluster_of(&r1).unwrap().unwrap().name;
    let (ok, out) = orc(&client, &api, &["-c", "forget-cluster", "-i", &name]).await;
    assert!(ok || out.is_empty(), "{out}");
    assert!(store.cluster_of(&r1).unwrap().is_none());
}

/// The same commands natively: `POST /api/v1/instances/{h}/{p}/{command}` and the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_commands_natively_and_from_the_cli() {
    use tower::ServiceExt;
    let t = fresh(2).await;
    let cfg = t.cfg();
    let (m, r1, r2) = (t.master(), t.replicas()[0].clone(), t.replicas()[1].clone());
    let app = router(AppState::new(&cfg).await.unwrap());
    let call = |uri: String, body: &'static str| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::post(uri)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let r = app.oneshot(req).await.unwrap();
            let status = r.status().as_u16();
            let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
        }
    };
    let path = |k: &InstanceKey, c: &str| format!("/api/v1/instances/{}/{}/{c}", k.host, k.port);
    // Unknown until discovered.
    let (status, v) = call(path(&r2, "stop-replica"), "").await;
    assert_eq!(status, 422, "{v}");
    baton::discovery::discover_hint(
        &t.connector(),
        &cfg,
        &baton::store::SqliteStore::open(&cfg.paths.data_dir).unwrap(),
        &m.to_string(),
    )
    .await
    .unwrap();
    let (status, v) =
        call(path(&r2, "relocate"), r#"{"below": "BELOW"}"#.replace("BELOW", &r1.to_string()).leak()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["operation"]["status"], "done");
    assert_eq!(replicating(&t, &r2).await.0.as_ref(), Some(&r1));
    let (status, v) = call(path(&r2, "relocate"), "{}").await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = call(path(&r2, "nonsense"), "").await;
    assert_eq!(status, 404, "{v}");

    // The CLI: move-up, then stop and start replication.
    let baton = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
        c.args(args).env("BATON_DATA_DIR", &cfg.paths.data_dir);
        c.output().unwrap()
    };
    let out = baton(&["move-up", &r2.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(replicating(&t, &r2).await.0.as_ref(), Some(&m));
    let out = baton(&["replica", "stop", &r2.to_string()]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("STOP SLAVE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!replicating(&t, &r2).await.1);
    assert!(baton(&["replica", "start", &r2.to_string()]).status.success());
    assert!(replicating(&t, &r2).await.1);
    let out = baton(&["operations"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("move-up") && text.contains("relocate") && text.contains("by cli:"), "{text}");
    assert_eq!(assert_one_master_tree(&t).await, m);
}
