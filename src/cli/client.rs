//! The CLI as a client of `baton serve` (`--api URL[,URL...]` or `BATON_API`). With several URLs
//! the leader is the first that answers `GET /api/leader-check` with 200, as `orchestrator-client`
//! finds it. Credentials come from `BATON_API_TOKEN` (bearer), or `BATON_API_USER` and
//! `BATON_API_PASSWORD` (basic; `ORCHESTRATOR_AUTH_USER`/`_PASSWORD` work too).

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::engine::{PhaseEvent, TakeoverReport, TakeoverRequest};

type Error = Box<dyn std::error::Error>;

struct Api {
    base: String,
    http: reqwest::Client,
}

fn credentials(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let var = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
    if let Some(t) = var(&["BATON_API_TOKEN"]) {
        return req.bearer_auth(t);
    }
    match (
        var(&["BATON_API_USER", "ORCHESTRATOR_AUTH_USER"]),
        var(&["BATON_API_PASSWORD", "ORCHESTRATOR_AUTH_PASSWORD"]),
    ) {
        (Some(u), p) => req.basic_auth(u, p),
        _ => req,
    }
}

/// The answer's error message, from `{"error": {"message"}}` or orchestrator's `Message`.
fn message(status: reqwest::StatusCode, body: &serde_json::Value) -> String {
    let m = body["error"]["message"].as_str().or(body["Message"].as_str()).unwrap_or("");
    format!("HTTP {}{}{m}", status.as_u16(), if m.is_empty() { "" } else { ": " })
}

impl Api {
    async fn leader(urls: &[String]) -> Result<Api, Error> {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build()?;
        let urls: Vec<String> =
            urls.iter().map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()).collect();
        if urls.len() == 1 {
            return Ok(Api { base: urls[0].clone(), http });
        }
        let mut tried = Vec::new();
        for u in &urls {
            match credentials(http.get(format!("{u}/api/leader-check"))).timeout(Duration::from_secs(5)).send().await {
                Ok(r) if r.status().is_success() => return Ok(Api { base: u.clone(), http }),
                Ok(r) => tried.push(format!("{u}: HTTP {}", r.status().as_u16())),
                Err(e) => tried.push(format!("{u}: {e}")),
            }
        }
        Err(format!("no leader among the API servers ({})", tried.join("; ")).into())
    }

    async fn get_json(&self, path: &str) -> Result<serde_json::Value, Error> {
        let r = credentials(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .map_err(|e| format!("{}{path}: {e}", self.base))?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{}{path}: {}", self.base, message(status, &body)).into())
        }
    }
}

fn path_part(s: &str) -> String {
    s.replace('/', "%2F")
}

/// A takeover (or dry run) on the server. With `live`, the phases are printed as they end,
/// from the event stream; the report is the `done` event's.
pub async fn takeover(urls: &[String], req: &TakeoverRequest, live: bool) -> Result<TakeoverReport, Error> {
    let api = Api::leader(urls).await?;
    let body = json!({
        "designated": req.designated.as_ref().map(|k| k.to_string()),
        "auto": req.auto,
        "start_replication": req.start_replication,
        "expected_master": req.expected_master.as_ref().map(|k| k.to_string()),
        "dry_run": req.dry_run,
        "plan_hash": req.plan_hash,
        "wait": !live,
    });
    let url = format!("{}/api/v1/clusters/{}/takeover", api.base, path_part(&req.cluster_hint));
    let r = credentials(api.http.post(&url).json(&body)).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    let answer: serde_json::Value =
        r.json().await.map_err(|e| format!("{url}: HTTP {}: not JSON: {e}", status.as_u16()))?;
    // A takeover that ran or was refused comes back as a report (alone, or beside the error).
    let report = if answer.get("takeover").is_some() { answer["takeover"].clone() } else { answer.clone() };
    if status == reqwest::StatusCode::ACCEPTED {
        let id = answer["id"].as_str().ok_or("202 without an id")?.to_string();
        return follow(&api, &id).await;
    }
    match serde_json::from_value::<TakeoverReport>(report) {
        Ok(rep) => Ok(rep),
        Err(_) => Err(format!("{url}: {}", message(status, &answer)).into()),
    }
}

/// Reads the event stream of takeover `id` until its `done` event.
async fn follow(api: &Api, id: &str) -> Result<TakeoverReport, Error> {
    let url = format!("{}/api/v1/takeovers/{id}/events", api.base);
    let r = credentials(api.http.get(&url)).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        let status = r.status();
        return Err(format!("{url}: {}", message(status, &r.json().await.unwrap_or_default())).into());
    }
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.map_err(|e| format!("{url}: {e}"))?));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            match event.as_str() {
                "phase" => {
                    if let Ok(ev) = serde_json::from_str::<PhaseEvent>(&data) {
                        super::takeover::print_event(&ev);
                    }
                }
                "done" => return Ok(serde_json::from_str(&data).map_err(|e| format!("{url}: the final report: {e}"))?),
                _ => {}
            }
        }
    }
    Err(format!("{url}: the event stream ended before the takeover did").into())
}

/// `GET /api/v1/clusters/{hint}`: the live cluster, from the server.
pub async fn cluster(urls: &[String], hint: &str) -> Result<crate::topology::Cluster, Error> {
    let api = Api::leader(urls).await?;
    Ok(serde_json::from_value(api.get_json(&format!("/api/v1/clusters/{}", path_part(hint))).await?)?)
}

/// `GET /api/v1/takeovers[/{id}]`.
pub async fn audit(
    urls: &[String],
    id: Option<&str>,
    cluster: Option<&str>,
    limit: usize,
) -> Result<serde_json::Value, Error> {
    let api = Api::leader(urls).await?;
    match id {
        Some(id) => api.get_json(&format!("/api/v1/takeovers/{}", path_part(id))).await,
        None => {
            let mut path = format!("/api/v1/takeovers?limit={limit}");
            if let Some(c) = cluster {
                path.push_str(&format!("&cluster={}", path_part(c).replace(':', "%3A")));
            }
            api.get_json(&path).await
        }
    }
}
