//! `baton bench http`: the service's costs on a 1+3 sandbox. The takeover call over HTTP (the
//! native route and orchestrator's GET route, back and forth) against the same takeovers called
//! in-process in the same run; then read-route throughput with concurrent clients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bench::{line, summary};
use super::CliResult;
use crate::engine::{Status, TakeoverRequest};
use crate::http::{router, AppState};
use crate::sandbox::{Sandbox, SandboxSpec};
use crate::topology::InstanceKey;

pub async fn run(rounds: usize, base_port: u16, seconds: u64, clients: usize) -> CliResult {
    let dir = std::env::temp_dir().join(format!("baton-bench-http-{}", std::process::id()));
    let sb = Sandbox::up(&SandboxSpec { dir: dir.clone(), base_port, replicas: 3, alias: None }).await?;
    let result = measure(&sb, rounds, seconds, clients).await;
    sb.down().await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(sb: &Sandbox, rounds: usize, seconds: u64, clients: usize) -> CliResult {
    let mut cfg = sb.config();
    cfg.scripts.policy = String::new();
    cfg.paths.hooks_dir = sb.dir.join("no-hooks");
    let state = AppState::new(&cfg).await.map_err(|e| e.to_string())?;
    let engine = state.engine.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let http = reqwest::Client::new();
    let (a, b): (InstanceKey, InstanceKey) = (sb.master(), sb.keys()[1].clone());
    // Known to the store by its alias from here on.
    crate::discovery::discover_hint(&engine.connector, &cfg, engine.store.as_ref(), &a.to_string()).await?;
    let alias = sb.alias.clone();

    let (mut native, mut compat, mut local) = (Vec::new(), Vec::new(), Vec::new());
    let mut failures = 0;
    let mut current = a.clone();
    for round in 0..rounds * 3 {
        let to = if current == a { b.clone() } else { a.clone() };
        let t = Instant::now();
        let ok = match round % 3 {
            0 => {
                let body = serde_json::json!({ "designated": to.to_string(), "start_replication": true });
                let r = http.post(format!("{base}/api/v1/clusters/{alias}/takeover")).json(&body).send().await?;
                let answer: serde_json::Value = r.json().await?;
                native.push(t.elapsed().as_secs_f64() * 1000.0);
                let ok = answer["status"] == "promoted";
                if !ok {
                    eprintln!("round {round}: {}", answer["error"]["message"]);
                }
                ok
            }
            1 => {
                let r = http
                    .get(format!("{base}/api/graceful-master-takeover/{alias}/{}/{}", to.host, to.port))
                    .send()
                    .await?;
                let answer: serde_json::Value = r.json().await?;
                compat.push(t.elapsed().as_secs_f64() * 1000.0);
                let ok = answer["Code"] == "OK";
                if ok {
                    // orchestrator's route leaves the demoted master's replication stopped: start
                    // it, outside the measured call, so the next round starts from the same shape.
                    crate::mysql::ops::start_replication(&engine.connector, &current).await?;
                } else {
                    eprintln!("round {round}: {}", answer["Message"]);
                }
                ok
            }
            _ => {
                let req = TakeoverRequest {
                    cluster_hint: alias.clone(),
                    designated: Some(to.clone()),
                    start_replication: true,
                    ..Default::default()
                };
                let r = engine.takeover(req, None).await;
                local.push(t.elapsed().as_secs_f64() * 1000.0);
                if r.status != Status::Promoted {
                    eprintln!("round {round}: {:?}", r.errors);
                }
                r.status == Status::Promoted
            }
        };
        if ok {
            current = to;
        } else {
            failures += 1;
        }
    }
    println!("takeover call, {rounds} rounds each, 1+3 sandbox (ms):");
    println!("{}", line("POST /api/v1/clusters/{alias}/takeover", native));
    println!("{}", line("GET /api/graceful-master-takeover/{alias}/{h}/{p}", compat));
    println!("{}", line("baseline: the same takeover in-process", local));
    println!("  takeovers not promoted: {failures}");

    // Read throughput: concurrent clients for a fixed time on each route.
    println!("read routes, {clients} concurrent clients for {seconds} s each (requests/s, median latency ms):");
    for path in [
        "/healthz".to_string(),
        format!("/api/v1/clusters/{alias}"),
        format!("/api/cluster/alias/{alias}"),
        "/api/v1/takeovers".to_string(),
    ] {
        let count = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (http, url, count, errors) = (http.clone(), format!("{base}{path}"), count.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    match http.get(&url).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            count.fetch_add(1, Ordering::Relaxed);
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await?);
        }
        let (_, med, _) = summary(lat);
        let n = count.load(Ordering::Relaxed);
        println!(
            "  {path:<48} {:>8.0} req/s  median {med:>6.2} ms  errors {}",
            n as f64 / seconds as f64,
            errors.load(Ordering::Relaxed)
        );
    }
    engine.connector.close().await;
    if failures > 0 {
        return Err(format!("{failures} takeovers were not promoted").into());
    }
    Ok(())
}
