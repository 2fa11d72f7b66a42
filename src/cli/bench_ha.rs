//! `baton bench ha`: three `baton serve` nodes (this binary) on a 3-member etcd and a 1+2
//! sandbox. Measures a takeover called through a follower (307 to the leader) against one
//! called on the leader, in the same run, alternating; each node's memory idle and after the
//! takeovers; a graceful SIGTERM of the leader to a new leader; a SIGKILL of the leader to a new
//! leader (about the lease TTL, by design).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::bench::line;
use super::CliResult;
use crate::sandbox::etcd::EtcdCluster;
use crate::sandbox::{Sandbox, SandboxSpec, ADMIN_USER, REPL_USER};

pub struct HaBench {
    pub takeovers: usize,
    pub handovers: usize,
    pub lease_ttl_s: u64,
    pub base_port: u16,
}

struct Node {
    config: PathBuf,
    listen: String,
    base: String,
    child: Option<tokio::process::Child>,
}

impl Node {
    fn spawn(&mut self) -> Result<(), std::io::Error> {
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--config")
            .arg(&self.config)
            .args(["serve", "--listen", &self.listen])
            .env_remove("BATON_CONFIG")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Resident memory (MB), from /proc.
    fn rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
}

pub async fn run(b: HaBench) -> CliResult {
    let dir = std::env::temp_dir().join(format!("baton-bench-ha-{}", std::process::id()));
    let sb = Sandbox::up(&SandboxSpec { dir: dir.clone(), base_port: b.base_port, replicas: 2, alias: None }).await?;
    let etcd = EtcdCluster::start(&dir.join("etcd"), 3).await;
    let result = match etcd {
        Ok(etcd) => {
            let r = measure(&b, &sb, &etcd.endpoints()).await;
            drop(etcd);
            r
        }
        Err(e) => Err(e.into()),
    };
    sb.down().await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn node_config(dir: &Path, n: usize, endpoints: &[String], ttl: u64) -> Result<PathBuf, std::io::Error> {
    let list = endpoints.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "[topology]\nuser = \"{}\"\npassword = \"{}\"\n[replication]\nuser = \"{}\"\npassword = \"{}\"\n\
         [paths]\ndata_dir = \"{}\"\nscripts_dir = \"{}\"\nhooks_dir = \"{}\"\n[scripts]\npolicy = \"\"\n\
         [ha]\netcd_endpoints = [{list}]\nlease_ttl_s = {ttl}\nnode_id = \"node{n}\"\n",
        ADMIN_USER.0,
        ADMIN_USER.1,
        REPL_USER.0,
        REPL_USER.1,
        dir.join(format!("node{n}")).display(),
        dir.join("no-scripts").display(),
        dir.join("no-hooks").display(),
    );
    let path = dir.join(format!("node{n}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The nodes (by index) answering leader-check 200 now.
async fn leaders(http: &reqwest::Client, nodes: &[Node]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.child.is_none() {
            continue;
        }
        let r = http.get(format!("{}/api/leader-check", n.base)).timeout(Duration::from_millis(500)).send().await;
        if r.is_ok_and(|r| r.status().as_u16() == 200) {
            out.push(i);
        }
    }
    out
}

/// Waits (polling every `every`) until exactly one node leads and it is not `not`; which, and when.
async fn one_leader(
    http: &reqwest::Client,
    nodes: &[Node],
    not: Option<usize>,
    every: Duration,
    limit: Duration,
) -> Result<(usize, Instant), String> {
    let deadline = Instant::now() + limit;
    loop {
        let l = leaders(http, nodes).await;
        if l.len() == 1 && Some(l[0]) != not {
            return Ok((l[0], Instant::now()));
        }
        if Instant::now() > deadline {
            return Err(format!("no single new leader within {} s (leaders now: {l:?})", limit.as_secs()));
        }
        tokio::time::sleep(every).await;
    }
}

async fn measure(b: &HaBench, sb: &Sandbox, endpoints: &[String]) -> CliResult {
    let http = reqwest::Client::new();
    let mut nodes = Vec::new();
    for n in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let config = node_config(&sb.dir, n, endpoints, b.lease_ttl_s)?;
        let mut node = Node { config, base: format!("http://{listen}"), listen, child: None };
        node.spawn()?;
        nodes.push(node);
    }
    let limit = Duration::from_secs(b.lease_ttl_s + 15);
    let (leader, _) = one_leader(&http, &nodes, None, Duration::from_millis(50), limit).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle: Vec<f64> = nodes.iter().filter_map(Node::rss_mb).collect();

    // The takeover call, on the leader and through a follower (alternating, back and forth).
    let (a, c) = (sb.master(), sb.keys()[1].clone());
    let follower = (leader + 1) % 3;
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    let mut current = a.clone();
    let mut failures = 0;
    for round in 0..b.takeovers {
        let to = if current == a { c.clone() } else { a.clone() };
        let via = if round % 2 == 0 { leader } else { follower };
        let body = serde_json::json!({ "designated": to.to_string(), "start_replication": true });
        let t = Instant::now();
        let r = http.post(format!("{}/api/v1/clusters/{current}/takeover", nodes[via].base)).json(&body).send().await?;
        let answer: serde_json::Value = r.json().await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if answer["status"] == "promoted" {
            if via == leader {
                direct.push(ms)
            } else {
                proxied.push(ms)
            }
            current = to;
        } else {
            failures += 1;
            eprintln!("round {round}: {}", answer["error"]["message"]);
        }
    }
    let after: Vec<f64> = nodes.iter().filter_map(Node::rss_mb).collect();

    // Graceful handover, then crash, `handovers` times each; the stopped node is started again.
    let (mut graceful, mut crash) = (Vec::new(), Vec::new());
    for kill in [false, true] {
        for _ in 0..b.handovers {
            let (l, _) = one_leader(&http, &nodes, None, Duration::from_millis(20), limit).await?;
            let pid = nodes[l].pid().ok_or("the leader has no pid")?;
            let t = Instant::now();
            if kill {
                if let Some(mut ch) = nodes[l].child.take() {
                    ch.start_kill()?;
                    let _ = ch.wait().await;
                }
            } else {
                crate::process::send_signal(pid, libc::SIGTERM);
            }
            let (_, at) = one_leader(&http, &nodes, Some(l), Duration::from_millis(5), limit).await?;
            let ms = at.duration_since(t).as_secs_f64() * 1000.0;
            if kill {
                crash.push(ms)
            } else {
                graceful.push(ms)
            }
            if let Some(mut ch) = nodes[l].child.take() {
                let _ = ch.wait().await;
            }
            nodes[l].spawn()?;
            let base = nodes[l].base.clone();
            let deadline = Instant::now() + Duration::from_secs(15);
            while !http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                if Instant::now() > deadline {
                    return Err(format!("node {l} did not come back").into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    println!(
        "baton bench ha: 3 nodes on a 3-member etcd, lease TTL {} s, 1+2 sandbox; {} takeovers ({} failed)",
        b.lease_ttl_s, b.takeovers, failures
    );
    println!("{}", line("takeover call on the leader (ms)", direct.clone()));
    println!("{}", line("takeover call through a follower (307) (ms)", proxied.clone()));
    let (_, d, _) = super::bench::summary(direct);
    let (_, p, _) = super::bench::summary(proxied);
    println!("  follower overhead (median difference)             {:.1} ms", p - d);
    println!("{}", line("node RSS idle (MB)", idle));
    println!("{}", line(&format!("node RSS after {} takeovers (MB)", b.takeovers), after));
    println!("{}", line("leader SIGTERM -> new leader (ms)", graceful));
    println!("{}", line("leader SIGKILL -> new leader (ms)", crash));
    Ok(())
}
