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
        // Every read is bounded: the event stream sends a keep-alive every 15 s, and the CLI
        // never waits on a response that stays silent for the whole takeover.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(READ_TIMEOUT_S))
            .build()?;
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

/// How long the CLI waits for the next bytes of an answer.
const READ_TIMEOUT_S: u64 = 60;

/// One path segment, percent-encoded (everything but unreserved characters).
fn path_part(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// A takeover (or dry run) on the server, followed on its event stream (so that no read waits
/// for the whole takeover). With `live`, the phases are printed as they end; the report is the
/// `done` event's.
pub async fn takeover(urls: &[String], req: &TakeoverRequest, live: bool) -> Result<TakeoverReport, Error> {
    let api = Api::leader(urls).await?;
    let body = json!({
        "designated": req.designated.as_ref().map(|k| k.to_string()),
        "auto": req.auto,
        "start_replication": req.start_replication,
        "expected_master": req.expected_master.as_ref().map(|k| k.to_string()),
        "dry_run": req.dry_run,
        "plan_hash": req.plan_hash,
        "wait": false,
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
        return follow(&api, &id, live).await;
    }
    match serde_json::from_value::<TakeoverReport>(report) {
        Ok(rep) => Ok(rep),
        Err(_) => Err(format!("{url}: {}", message(status, &answer)).into()),
    }
}

/// Reads the event stream of takeover `id` until its `done` event (printing the phases with `live`).
async fn follow(api: &Api, id: &str, live: bool) -> Result<TakeoverReport, Error> {
    use eventsource_stream::Eventsource;
    let url = format!("{}/api/v1/takeovers/{}/events", api.base, path_part(id));
    let r = credentials(api.http.get(&url)).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        let status = r.status();
        return Err(format!("{url}: {}", message(status, &r.json().await.unwrap_or_default())).into());
    }
    let mut events = r.bytes_stream().eventsource();
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| format!("{url}: {e}"))?;
        match ev.event.as_str() {
            "phase" if live => {
                if let Ok(ev) = serde_json::from_str::<PhaseEvent>(&ev.data) {
                    super::takeover::print_event(&ev);
                }
            }
            "done" => return Ok(serde_json::from_str(&ev.data).map_err(|e| format!("{url}: the final report: {e}"))?),
            _ => {}
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
                path.push_str(&format!("&cluster={}", path_part(c)));
            }
            api.get_json(&path).await
        }
    }
}

/// `GET /api/v1/fleet` (any node answers from its own poller's cache).
pub async fn fleet(urls: &[String]) -> Result<serde_json::Value, Error> {
    let api = Api::leader(urls).await?;
    api.get_json("/api/v1/fleet").await
}

/// `GET /api/v1/ha` of every node in `urls` (each node's own view; an unreachable node is an
/// error in its place).
pub async fn ha_status(urls: &[String]) -> Vec<(String, Result<serde_json::Value, String>)> {
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(h) => h,
        Err(e) => return urls.iter().map(|u| (u.clone(), Err(e.to_string()))).collect(),
    };
    let asks = urls.iter().map(|u| u.trim().trim_end_matches('/').to_string()).map(|base| {
        let http = http.clone();
        async move {
            let api = Api { base: base.clone(), http };
            let r = api.get_json("/api/v1/ha").await.map_err(|e| e.to_string());
            (base, r)
        }
    });
    futures::future::join_all(asks).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_parts_are_percent_encoded() {
        assert_eq!(super::path_part("db1.example.com:3306"), "db1.example.com%3A3306");
        assert_eq!(super::path_part("a/b?c#d e%"), "a%2Fb%3Fc%23d%20e%25");
        assert_eq!(super::path_part("ålias"), "%C3%A5lias");
    }
}
