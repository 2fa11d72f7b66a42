//! Three `baton serve` processes on one real 3-member etcd (issue 10): exactly one leads
//! (`leader-check` 200, the others 404); state written through one node is seen by the others; a
//! takeover sent to a follower, or by `orchestrator-client` and `baton takeover` given every
//! node's URL, runs on the leader under a writer and loses nothing; a killed leader is replaced
//! within the lease TTL plus a few seconds, and one shut down gracefully hands over at once; a
//! leader frozen mid-takeover (SIGSTOP) is settled by the next leader and does nothing after it
//! wakes; etcd members dying one by one cost nothing until quorum is gone, and then takeovers
//! refuse and nothing is changed.

mod common;

use std::time::{Duration, Instant};

use baton::sandbox::etcd::EtcdCluster;
use baton::sandbox::APP_USER;
use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The indexes of the nodes answering `leader-check` 200.
async fn leaders(http: &reqwest::Client, bases: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, b) in bases.iter().enumerate() {
        if let Ok(r) = http.get(format!("{b}/api/leader-check")).timeout(Duration::from_secs(2)).send().await {
            if r.status().as_u16() == 200 {
                out.push(i);
            }
        }
    }
    out
}

/// `baton serve` nodes on one sandbox and one etcd.
struct Nodes {
    children: Vec<Option<tokio::process::Child>>,
    bases: Vec<String>,
    http: reqwest::Client,
    lease_ttl_s: u64,
}

impl Nodes {
    fn new(lease_ttl_s: u64) -> Nodes {
        Nodes { children: Vec::new(), bases: Vec::new(), http: reqwest::Client::new(), lease_ttl_s }
    }

    /// Starts node `n` (its own data dir) with these endpoints; `env`: extra variables (fault points).
    fn start(&mut self, t: &Topology, endpoints: &[String], env: &[(&str, &str)]) -> usize {
        let n = self.children.len();
        let port = free_port();
        let base_cfg = std::fs::read_to_string(config_file(t)).unwrap();
        let own = base_cfg.replace(
            &t.cfg().paths.data_dir.display().to_string(),
            &t.sandbox.dir.join(format!("node{n}")).display().to_string(),
        );
        let list = endpoints.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
        let file = t.sandbox.dir.join(format!("node{n}.toml"));
        std::fs::write(
            &file,
            format!(
                "{own}[ha]\netcd_endpoints = [{list}]\nlease_ttl_s = {}\nnode_id = \"node{n}\"\n",
                self.lease_ttl_s
            ),
        )
        .unwrap();
        let mut c = tokio::process::Command::new(baton_bin());
        c.arg("--config")
            .arg(&file)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("BATON_CONFIG");
        for (k, v) in env {
            c.env(k, v);
        }
        self.children.push(Some(c.kill_on_drop(true).spawn().unwrap()));
        self.bases.push(format!("http://127.0.0.1:{port}"));
        n
    }

    fn pid(&self, n: usize) -> i32 {
        self.children[n].as_ref().unwrap().id().unwrap() as i32
    }

    /// The one leader among `among`, once there is exactly one.
    async fn leader_among(&self, among: &[usize], within: Duration) -> usize {
        let bases: Vec<String> = among.iter().map(|i| self.bases[*i].clone()).collect();
        wait_until("exactly one leader", within, || async { leaders(&self.http, &bases).await.len() == 1 }).await;
        among[leaders(&self.http, &bases).await[0]]
    }

    async fn get(&self, n: usize, path: &str) -> serde_json::Value {
        self.http.get(format!("{}{path}", self.bases[n])).send().await.unwrap().json().await.unwrap()
    }

    async fn takeover(
        &self,
        n: usize,
        cluster: &impl std::fmt::Display,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/clusters/{cluster}/takeover", self.bases[n]))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// The leader dies right after fencing the master (the crash point): the next leader, once
/// elected, settles the takeover from the shared journal (rolled back: writes resume on the old
/// master), with nobody asking, and says which node settled it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_leader_settles_a_takeover_its_leader_left() {
    let t = fresh(2).await;
    let etcd = EtcdCluster::start(&t.sandbox.dir.join("etcd"), 3).await.unwrap();
    let mut nodes = Nodes::new(2);
    let a = nodes.start(&t, &etcd.endpoints(), &[("BATON_FAULT_CRASH_AFTER", "fence")]);
    assert_eq!(nodes.leader_among(&[a], Duration::from_secs(15)).await, a);
    let b = nodes.start(&t, &etcd.endpoints(), &[]);
    wait_until("node1 is up", Duration::from_secs(15), || async {
        nodes.http.get(format!("{}/healthz", nodes.bases[b])).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let m = t.master();
    let body = serde_json::json!({ "designated": t.replicas()[0].to_string(), "wait": false });
    let (status, started) = nodes.takeover(a, &m, body).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    wait_until("node1 leads and settled it", Duration::from_secs(20), || async {
        nodes.get(b, &format!("/api/v1/takeovers/{id}")).await["status"] == "rolled_back"
    })
    .await;
    let settled = nodes.get(b, &format!("/api/v1/takeovers/{id}")).await;
    let rec = &settled["recoveries"][0];
    assert!(rec["by"]["node"].as_str().is_some_and(|n| n.starts_with("node1/")), "{rec}");
    assert!(settled["started_by"]["node"].as_str().is_some_and(|n| n.starts_with("node0/")), "{settled}");
    assert_eq!(assert_one_master(&t, &[]).await, m, "writes resume on the old master");
    drop(etcd);
}

/// One leader; state shared through etcd; every way in reaches the leader; failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_shared_state_and_failover() {
    let t = fresh(2).await;
    let etcd = EtcdCluster::start(&t.sandbox.dir.join("etcd"), 3).await.unwrap();
    let mut nodes = Nodes::new(2);
    for _ in 0..3 {
        nodes.start(&t, &etcd.endpoints(), &[]);
    }
    let http = nodes.http.clone();
    let leader = nodes.leader_among(&[0, 1, 2], Duration::from_secs(15)).await;
    let (b, c) = ((leader + 1) % 3, (leader + 2) % 3);
    let r = http.get(format!("{}/api/leader-check", nodes.bases[b])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<String>().await.unwrap(), "Not leader");
    let r = http.get(format!("{}/api/leader-check/503", nodes.bases[b])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    wait_until("the followers know the leader", Duration::from_secs(5), || async {
        let (hb, hc) = (nodes.get(b, "/api/v1/ha").await, nodes.get(c, "/api/v1/ha").await);
        hb["leader_url"] == nodes.bases[leader] && hc["leader_url"] == nodes.bases[leader] && hb["leader"] == false
    })
    .await;

    // `baton ha status` asks every node for its view.
    let out = std::process::Command::new(baton_bin())
        .args(["ha", "status", "--api", &nodes.bases.join(",")])
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(said.lines().filter(|l| l.contains(" leader ")).count(), 1, "{said}");
    assert!(said.contains(&format!("node{leader}/")) && !said.contains("warning"), "{said}");

    // A rule set through node B (a follower: it goes to the leader) is in the shared store: C
    // lists it, and the leader's auto takeover obeys it.
    let (m, r0, r1) = (t.master(), t.replicas()[0].clone(), t.replicas()[1].clone());
    let r = http
        .put(format!("{}/api/v1/instances/{}/{}/promotion-rule", nodes.bases[b], r0.host, r0.port))
        .json(&serde_json::json!({ "rule": "must_not" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let rules = nodes.get(c, &format!("/api/v1/instances/{}/{}", r0.host, r0.port)).await;
    assert_eq!(rules["promotion_rule"]["rule"], "must_not", "node C does not see the rule: {rules}");
    let body = serde_json::json!({ "auto": true });
    let r = http.post(format!("{}/api/v1/clusters/{m}/takeover", nodes.bases[b])).json(&body).send().await.unwrap();
    assert!(r.url().as_str().starts_with(&nodes.bases[leader]), "answered by {}", r.url());
    let rep: serde_json::Value = r.json().await.unwrap();
    assert_eq!(rep["status"], "promoted", "{rep}");
    assert_eq!(rep["new_master"], r1.to_string(), "the rule set through B: {rep}");
    // The audit written by the leader is listed by C.
    let listed = nodes.get(c, "/api/v1/takeovers").await;
    assert!(listed.to_string().contains(rep["id"].as_str().unwrap()), "C does not list the takeover: {listed}");

    // `baton takeover --api u1,u2,u3` and orchestrator's own client in list mode reach the leader
    // and take over under a writer: nothing acknowledged is lost.
    let writer = baton::mysql::workload::Writer::start(
        t.sandbox.keys(),
        APP_USER.0,
        APP_USER.1,
        31,
        Duration::from_millis(3),
        1e9,
    )
    .await;
    let apis = nodes.bases.join(",");
    let out = std::process::Command::new(baton_bin())
        .args(["takeover", "--api", &apis, &r1.to_string(), "--to", &m.to_string()])
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "baton takeover --api {apis}: {said}");
    assert_eq!(assert_one_master(&t, &[&r1]).await, m, "{said}");
    let client =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/orchestrator/orchestrator-client");
    let tools = ["bash", "curl", "jq"]
        .iter()
        .all(|t| std::process::Command::new("which").arg(t).output().is_ok_and(|o| o.status.success()));
    if client.is_file() && tools {
        let list = nodes.bases.iter().map(|b| format!("{b}/api")).collect::<Vec<_>>().join(" ");
        let orc = |args: &[&str]| {
            let out = std::process::Command::new("bash")
                .arg(&client)
                .args(args)
                .env("ORCHESTRATOR_API", &list)
                .output()
                .unwrap();
            (
                out.status.success(),
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            )
        };
        let (ok, out) = orc(&["-c", "which-api"]);
        assert!(ok && out.trim() == format!("{}/api", nodes.bases[leader]), "{out}");
        let hp = |k: &baton::topology::InstanceKey| format!("{}:{}", k.host, k.port);
        let (ok, out) = orc(&["-c", "graceful-master-takeover", "-i", &hp(&m), "-d", &hp(&r1)]);
        assert!(ok, "{out}");
        assert_eq!(
            assert_one_master(&t, &[&m, &r1]).await,
            r1,
            "the demoted master is left stopped, as orchestrator does"
        );
    } else {
        eprintln!("SKIPPED orchestrator-client in list mode: needs ../shared/reference/orchestrator/orchestrator-client and bash, curl, jq");
    }
    let stats = writer.stop().await;
    let now = assert_one_master(&t, &[&m, &r1]).await;
    exec(&t.connector(), &m, "START SLAVE").await;
    assert_rows_everywhere(&t, &now, 31, &stats.acked).await;

    // The leader killed: another leads within the lease TTL (2 s) plus 3 s.
    let killed = Instant::now();
    nodes.children[leader].take().unwrap().start_kill().unwrap();
    let next = nodes.leader_among(&[b, c], Duration::from_secs(5)).await;
    eprintln!("leader killed -> new leader: {} ms", killed.elapsed().as_millis());

    // A graceful stop hands over without waiting for the lease.
    let last = if next == b { c } else { b };
    let stopped = Instant::now();
    baton::sandbox::send_signal(nodes.pid(next) as u32, libc::SIGTERM);
    nodes.leader_among(&[last], Duration::from_secs(5)).await;
    eprintln!("leader stopped (SIGTERM) -> new leader: {} ms", stopped.elapsed().as_millis());
    drop(etcd);
}

/// The leader freezes (SIGSTOP) right after fencing the master, still holding its connections
/// and the server lock. The next leader settles the takeover (rolled back: it ends the frozen
/// node's session to take the lock). Woken (SIGCONT), the old leader finds its lease lapsed and
/// changes nothing: the designated replica is not promoted, the settled record stays as the new
/// leader wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_does_not_act_after_waking() {
    let t = fresh(2).await;
    let etcd = EtcdCluster::start(&t.sandbox.dir.join("etcd"), 3).await.unwrap();
    let mut nodes = Nodes::new(2);
    let a = nodes.start(&t, &etcd.endpoints(), &[("BATON_FAULT_STOP_AFTER", "fence")]);
    assert_eq!(nodes.leader_among(&[a], Duration::from_secs(15)).await, a);
    let b = nodes.start(&t, &etcd.endpoints(), &[]);
    wait_until("node1 is up", Duration::from_secs(15), || async {
        nodes.http.get(format!("{}/healthz", nodes.bases[b])).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let body = serde_json::json!({ "designated": d.to_string(), "wait": false });
    let (status, started) = nodes.takeover(a, &m, body).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    wait_until("node1 settled the frozen leader's takeover", Duration::from_secs(20), || async {
        nodes.get(b, &format!("/api/v1/takeovers/{id}")).await["status"] == "rolled_back"
    })
    .await;
    let settled = nodes.get(b, &format!("/api/v1/takeovers/{id}")).await;
    assert!(settled["recoveries"][0]["by"]["node"].as_str().is_some_and(|n| n.starts_with("node1/")), "{settled}");
    assert_eq!(assert_one_master(&t, &[]).await, m, "writes resume on the old master");

    baton::sandbox::send_signal(nodes.pid(a) as u32, libc::SIGCONT);
    // Give the woken node time to do whatever it would do next (catch up, promote).
    wait_until("node0 answers again", Duration::from_secs(10), || async {
        nodes.http.get(format!("{}/healthz", nodes.bases[a])).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(assert_one_master(&t, &[]).await, m, "the woken node promoted nothing");
    let after = nodes.get(b, &format!("/api/v1/takeovers/{id}")).await;
    assert_eq!(after["status"], "rolled_back", "the woken node overwrote the record: {after}");
    assert!(!after.to_string().contains("\"promote\""), "no promote phase recorded: {after}");
    assert_eq!(nodes.leader_among(&[a, b], Duration::from_secs(5)).await, b, "node1 still leads");
    drop(etcd);
}

/// etcd members (five) killed one at a time: one the node does not talk to first, then the one
/// it does: leadership holds and takeovers run. Quorum gone (a third member): a takeover is
/// refused with a clear error and nothing is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_members_dying_and_quorum_lost() {
    let t = fresh(1).await;
    let mut etcd = EtcdCluster::start(&t.sandbox.dir.join("etcd"), 5).await.unwrap();
    // A 5 s lease, as in production: an etcd raft leader election (1 s timeout) fits in it.
    let mut nodes = Nodes::new(5);
    let a = nodes.start(&t, &etcd.endpoints(), &[]);
    assert_eq!(nodes.leader_among(&[a], Duration::from_secs(15)).await, a);
    let (m, d) = (t.master(), t.replicas()[0].clone());
    let mut masters = [m.clone(), d.clone()];
    for member in [4, 0] {
        etcd.members[member].kill();
        let body = serde_json::json!({ "designated": masters[1].to_string(), "start_replication": true });
        let (status, rep) = nodes.takeover(a, &masters[0], body).await;
        assert_eq!((status, rep["status"].as_str()), (200, Some("promoted")), "etcd member {member} down: {rep}");
        masters.swap(0, 1);
        assert_eq!(nodes.leader_among(&[a], Duration::from_secs(1)).await, a, "the leader kept its lease");
    }
    etcd.members[1].kill();
    // Three of five gone: no quorum. The lease cannot be renewed: within the TTL the node stops leading.
    wait_until("node0 no longer leads", Duration::from_secs(8), || async {
        leaders(&nodes.http, &nodes.bases).await.is_empty()
    })
    .await;
    let body = serde_json::json!({ "designated": masters[1].to_string() });
    let (status, rep) = nodes.takeover(a, &masters[0], body).await;
    assert_eq!(status, 503, "{rep}");
    assert!(rep.to_string().contains("etcd cannot be reached"), "{rep}");
    assert_eq!(assert_one_master(&t, &[]).await, masters[0], "nothing changed");
}

/// `baton sandbox etcd up` leaves a healthy etcd running (what the README's 3-node recipe uses);
/// `down` stops it and removes its directory.
#[tokio::test]
async fn sandbox_etcd_up_and_down() {
    let d = std::env::temp_dir().join(format!("baton-etcd-{}", uuid::Uuid::new_v4().simple()));
    let run = |args: &[&str]| {
        let out = std::process::Command::new(baton_bin()).args(args).env_remove("BATON_CONFIG").output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), said)
    };
    let dir_s = d.display().to_string();
    let (ok, said) = run(&["sandbox", "etcd", "up", "--dir", &dir_s]);
    assert!(ok, "{said}");
    let urls: Vec<String> = said
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).filter(|u| u.starts_with("http://")).map(str::to_string))
        .collect();
    assert_eq!(urls.len(), 3, "{said}");
    for u in &urls {
        let health = reqwest::get(format!("{u}/health")).await.unwrap().text().await.unwrap();
        assert!(health.contains("true"), "{u}: {health}");
    }
    let (ok, again) = run(&["sandbox", "etcd", "up", "--dir", &dir_s]);
    assert!(!ok && again.contains("already there"), "{again}");
    let (ok, said) = run(&["sandbox", "etcd", "down", "--dir", &dir_s]);
    assert!(ok && said.contains("3 members were running"), "{said}");
    assert!(!d.exists());
    assert!(reqwest::get(format!("{}/health", urls[0])).await.is_err(), "a member still answers");
}
