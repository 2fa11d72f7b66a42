//! The native JSON API under `/api/v1`, and `/healthz`, `/metrics`.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;

use super::error::{key_from_parts, ApiError};
use super::track::TrackEvent;
use super::{AppState, Caller};
use crate::discovery;
use crate::engine::{PhaseEvent, RefusalKind, Status, TakeoverReport, TakeoverRequest};
use crate::store::{expiry_after, Downtime, PromotionRule, RuleEntry};
use crate::topology::InstanceKey;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/ha", get(ha_status))
        .route("/metrics", get(metrics))
        .route("/api/v1/clusters", get(clusters))
        .route("/api/v1/fleet", get(fleet))
        .route("/api/v1/clusters/{cluster}", get(cluster))
        .route("/api/v1/clusters/{cluster}/takeover", post(takeover))
        .route("/api/v1/instances/{host}/{port}", get(instance))
        .route("/api/v1/instances/{host}/{port}/promotion-rule", put(set_rule).delete(clear_rule))
        .route("/api/v1/instances/{host}/{port}/downtime", put(begin_downtime).delete(end_downtime))
        .route("/api/v1/instances/{host}/{port}/{command}", post(instance_command))
        .route("/api/v1/operations", get(operations))
        .route("/api/v1/takeovers", get(takeovers))
        .route("/api/v1/takeovers/{id}", get(takeover_record))
        .route("/api/v1/takeovers/{id}/events", get(events))
        .route("/api/v1/takeovers/{id}/{action}", post(settle))
        .route("/api/v1/aliases/{alias}", put(move_alias))
        .route("/api/v1/scripts", get(scripts))
        .route("/api/v1/scripts/reload", post(reload))
}

/// A JSON body; an empty body is `{}`. Errors name the field.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) { b"{}" } else { bytes };
    serde_json::from_slice(text).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
}

/// A cluster hint from the path: an alias, a cluster name or `host:port`.
pub fn hint(s: &str) -> Result<String, ApiError> {
    let ok = !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric() || "._:-[]".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(ApiError::BadRequest(format!(
            "cluster '{s}': an alias, a cluster name or host:port (letters, digits, . _ : - only)"
        )))
    }
}

fn key_field(field: &str, v: &Option<String>) -> Result<Option<InstanceKey>, ApiError> {
    v.as_deref()
        .map(|s| s.parse::<InstanceKey>().map_err(|e| ApiError::BadRequest(format!("{field}: {e}"))))
        .transpose()
}

async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "scripts_version": s.scripts.status().version.id }))
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut text = s.metrics.render();
    if let Some(f) = s.fleet.clone() {
        let fleet = tokio::task::spawn_blocking(move || super::metrics::fleet(&f)).await.unwrap_or_default();
        // One exposition: the first part's end marker goes.
        if let Some(cut) = text.rfind("# EOF") {
            text.truncate(cut);
        }
        text.push_str(&fleet);
    }
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// `GET /api/v1/fleet`: every cluster as the poller's cache shows it, with its takeover
/// readiness and the age of its data; 503 when the poller is off.
async fn fleet(State(s): State<AppState>) -> Result<Json<crate::fleet::FleetReport>, ApiError> {
    let Some(poller) = s.fleet.clone() else {
        return Err(ApiError::Unavailable("the fleet poller is off (discovery.poll_interval_s = 0)".into()));
    };
    let report =
        tokio::task::spawn_blocking(move || poller.report()).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(report))
}

async fn clusters(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(live_clusters(&s).await?).expect("clusters serialize")))
}

/// The remembered clusters, after forgetting those none of whose members has answered for
/// `discovery.forget_after_s` (only their own members are probed again).
pub async fn live_clusters(s: &AppState) -> Result<Vec<crate::store::KnownCluster>, ApiError> {
    discovery::forget_unseen(&s.engine.connector, &s.cfg, s.engine.store.as_ref()).await?;
    Ok(s.engine.store.clusters()?)
}

/// A live discovery, reaching only what the caller may reach; counts unreachable members for
/// /metrics.
pub async fn discover(s: &AppState, caller: Caller, hint: &str) -> Result<crate::topology::Cluster, ApiError> {
    discover_within(s, hint, &caller.reach(s)?).await
}

/// `discover` with the caller's reach computed once (for listings over many clusters).
pub async fn discover_within(
    s: &AppState,
    hint: &str,
    reach: &discovery::Reach,
) -> Result<crate::topology::Cluster, ApiError> {
    let c = discovery::discover_hint_within(&s.engine.connector, &s.cfg, s.engine.store.as_ref(), hint, reach).await?;
    s.metrics.probe_errors(c.members.iter().filter(|m| m.instance.is_none()).count());
    Ok(c)
}

async fn cluster(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
) -> Result<Json<crate::topology::Cluster>, ApiError> {
    Ok(Json(discover(&s, caller, &hint(&c)?).await?))
}

async fn instance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let key = key_from_parts(&host, &port)?;
    if !caller.reach(&s)?.permits(&key) {
        return Err(discovery::DiscoveryError::NotAllowed(key).into());
    }
    // The instance could not be probed (down, or refusing Baton's account): 503 naming why.
    match crate::mysql::probe(&s.engine.connector, &key).await {
        Ok(i) => {
            // What Baton keeps about it (shared by every node on etcd): its rule and downtime.
            let mut v = serde_json::to_value(&i).map_err(|e| ApiError::Internal(e.to_string()))?;
            let rule = s.engine.store.promotion_rules()?.into_iter().find(|r| r.instance == key);
            let downtime = s.engine.store.downtimes()?.into_iter().find(|d| d.instance == key);
            v["promotion_rule"] = json!(rule.map(|r| json!({ "rule": r.rule, "until": r.until })));
            v["downtime"] = json!(downtime);
            Ok(Json(v).into_response())
        }
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeoverBody {
    designated: Option<String>,
    #[serde(default)]
    auto: bool,
    #[serde(default)]
    start_replication: bool,
    expected_master: Option<String>,
    #[serde(default)]
    dry_run: bool,
    plan_hash: Option<String>,
    /// false: answer 202 with the id at once; follow `/takeovers/{id}/events`.
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// The answer to a finished takeover: 200 when it ran (whatever its outcome; read `status`),
/// 409 when another one holds the cluster, 422 when a check or a hook refused, 404 for an
/// unknown cluster, 503 when the topology could not be read.
pub fn takeover_answer(report: TakeoverReport) -> Response {
    let Some(refusal) = report.refusal.clone().filter(|_| report.status == Status::Refused) else {
        return (StatusCode::OK, Json(report)).into_response();
    };
    let (status, code) = match refusal.kind {
        RefusalKind::Busy => (StatusCode::CONFLICT, "conflict"),
        RefusalKind::UnknownCluster => (StatusCode::NOT_FOUND, "not_found"),
        RefusalKind::Check | RefusalKind::Veto => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        RefusalKind::Error => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let body = json!({
        "error": {
            "code": code,
            "message": report.errors.first().cloned().unwrap_or_default(),
            "phase": refusal.phase,
            "check": refusal.check,
            "instance": refusal.instance,
        },
        "takeover": report,
    });
    (status, Json(body)).into_response()
}

async fn takeover(State(s): State<AppState>, Path(c): Path<String>, bytes: Bytes) -> Result<Response, ApiError> {
    let b: TakeoverBody = body(&bytes)?;
    let req = TakeoverRequest {
        cluster_hint: hint(&c)?,
        designated: key_field("designated", &b.designated)?,
        auto: b.auto,
        start_replication: b.start_replication,
        expected_master: key_field("expected_master", &b.expected_master)?,
        dry_run: b.dry_run,
        plan_hash: b.plan_hash,
    };
    let (id, handle) = s.tracks.start(&s.engine, &s.metrics, req);
    if !b.wait {
        let body = json!({ "id": id, "status": "running", "events": format!("/api/v1/takeovers/{id}/events") });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let report = handle.await.map_err(|e| ApiError::Internal(format!("takeover task: {e}")))?;
    Ok(takeover_answer(report))
}

async fn takeovers(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit '{l}': a number from 1 to 1000")))?,
        None => 50,
    };
    let list = s.engine.store.takeovers(q.get("cluster").map(String::as_str), limit)?;
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|e| json!({ "id": e.id, "cluster": e.cluster, "status": e.status, "started_at": e.started_at }))
        .collect();
    Ok(Json(json!(rows)))
}

/// A stored takeover's full report.
pub fn stored_report(s: &AppState, id: &str) -> Result<TakeoverReport, ApiError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::BadRequest(format!("takeover id '{id}': letters and digits only")));
    }
    let e = s.engine.store.takeover(id)?.ok_or_else(|| ApiError::NotFound(format!("no takeover with id {id}")))?;
    serde_json::from_value(e.record).map_err(|e| ApiError::Internal(format!("stored takeover {id}: {e}")))
}

/// `POST /takeovers/{id}/recover|resume|abort`: settle an interrupted takeover.
async fn settle(State(s): State<AppState>, Path((id, action)): Path<(String, String)>) -> Result<Response, ApiError> {
    use crate::engine::{RecoverError, RecoverMode};
    let mode = match action.as_str() {
        "recover" => RecoverMode::Auto,
        "resume" => RecoverMode::Resume,
        "abort" => RecoverMode::Abort,
        other => return Err(ApiError::NotFound(format!("no action '{other}' (recover, resume, abort)"))),
    };
    stored_report(&s, &id)?; // validates the id
    match s.engine.recover(&id, mode).await {
        Ok(r) => {
            s.metrics.takeover_finished(&r);
            Ok(Json(r).into_response())
        }
        Err(e @ RecoverError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ (RecoverError::Finished { .. } | RecoverError::StillRunning { .. })) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(e @ RecoverError::Refused { .. }) => Err(ApiError::Refused(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

async fn takeover_record(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<TakeoverReport>, ApiError> {
    Ok(Json(stored_report(&s, &id)?))
}

fn sse_event(ev: &TrackEvent) -> Event {
    let (name, data) = match ev {
        TrackEvent::Phase(p) => ("phase", serde_json::to_string(p)),
        TrackEvent::Done(r) => ("done", serde_json::to_string(r)),
    };
    Event::default().event(name).data(data.expect("events serialize"))
}

/// Server-sent events: one `phase` event per phase start and end, then `done` with the report.
/// A running takeover is replayed from its start and then followed; a finished one is replayed
/// from the audit.
async fn events(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    if let Some(track) = s.tracks.get(&id) {
        let (past, mut live) = track.follow();
        tokio::spawn(async move {
            for ev in &past {
                if tx.send(Ok(sse_event(ev))).await.is_err() || matches!(ev, TrackEvent::Done(_)) {
                    return;
                }
            }
            while let Ok(ev) = live.recv().await {
                if tx.send(Ok(sse_event(&ev))).await.is_err() || matches!(ev, TrackEvent::Done(_)) {
                    return;
                }
            }
        });
    } else {
        let report = stored_report(&s, &id)?;
        let mut evs: Vec<TrackEvent> = report
            .phases
            .iter()
            .map(|p| TrackEvent::Phase(PhaseEvent::Finished { id: report.id.clone(), record: p.clone() }))
            .collect();
        evs.push(TrackEvent::Done(Box::new(report)));
        tokio::spawn(async move {
            for ev in &evs {
                if tx.send(Ok(sse_event(ev))).await.is_err() {
                    return;
                }
            }
        });
    }
    let stream: ReceiverStream<Result<Event, Infallible>> = ReceiverStream::new(rx);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    /// For `relocate`: the member to replicate from.
    below: Option<String>,
}

/// `POST /api/v1/instances/{host}/{port}/{command}`: start-replica, stop-replica,
/// restart-replica, set-read-only, set-writeable, relocate (`{"below": "host:port"}`), move-up.
/// 200 with the record and the instance after; 409 busy, 422 refused, 500 failed.
async fn instance_command(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port, command)): Path<(String, String, String)>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    use crate::engine::{CommandError, CommandNameError, InstanceCommand};
    let key = key_from_parts(&host, &port)?;
    let b: CommandBody = body(&bytes)?;
    let cmd = InstanceCommand::parse(&command, key_field("below", &b.below)?).map_err(|e| match e {
        CommandNameError::NeedsBelow => ApiError::BadRequest("relocate needs {\"below\": \"host:port\"}".into()),
        e @ CommandNameError::Unknown(_) => ApiError::NotFound(e.to_string()),
    })?;
    let (report, result) = s.engine.instance_command(&key, cmd, &caller.who()).await;
    match result {
        Ok(c) => Ok(Json(json!({ "operation": report, "instance": c.instance(&key) })).into_response()),
        Err(e @ CommandError::Busy { .. }) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ CommandError::Refused { .. }) => Err(ApiError::Refused(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// The instance commands on record, newest first.
async fn operations(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let list: Vec<serde_json::Value> = s.engine.store.operations(500)?.into_iter().map(|e| e.record).collect();
    Ok(Json(serde_json::Value::Array(list)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    /// The remembered cluster (its name) that gets the alias.
    cluster: String,
}

/// Moving an alias is an admin action (discovery never moves one).
async fn move_alias(
    State(s): State<AppState>,
    Path(alias): Path<String>,
    bytes: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let alias = hint(&alias)?;
    let b: AliasBody = body(&bytes)?;
    if s.cfg.aliases.contains_key(&alias) {
        return Err(ApiError::Conflict(format!(
            "alias '{alias}' is configured in [aliases]: change it in the configuration"
        )));
    }
    if !s.engine.store.move_alias(&alias, &b.cluster)? {
        return Err(ApiError::NotFound(format!("no remembered cluster is named '{}'", b.cluster)));
    }
    Ok(Json(json!({ "alias": alias, "cluster": b.cluster })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    rule: String,
    /// Expires after this many seconds; absent: until cleared.
    duration_s: Option<u64>,
}

async fn set_rule(
    State(s): State<AppState>,
    Path((host, port)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = key_from_parts(&host, &port)?;
    let b: RuleBody = body(&bytes)?;
    let rule: PromotionRule = b.rule.parse().map_err(ApiError::BadRequest)?;
    let until = b.duration_s.map(|d| expiry_after("duration_s", d)).transpose().map_err(ApiError::BadRequest)?;
    s.engine.store.set_promotion_rule(&RuleEntry { instance: key.clone(), rule, until })?;
    Ok(Json(json!({ "instance": key, "rule": rule, "until": until })))
}

async fn clear_rule(
    State(s): State<AppState>,
    Path((host, port)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let key = key_from_parts(&host, &port)?;
    s.engine.store.clear_promotion_rule(&key)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DowntimeBody {
    owner: String,
    reason: String,
    duration_s: u64,
}

async fn begin_downtime(
    State(s): State<AppState>,
    Path((host, port)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<Downtime>, ApiError> {
    let key = key_from_parts(&host, &port)?;
    let b: DowntimeBody = body(&bytes)?;
    if b.owner.trim().is_empty() || b.reason.trim().is_empty() {
        return Err(ApiError::BadRequest("owner and reason must not be empty".into()));
    }
    let until = expiry_after("duration_s", b.duration_s).map_err(ApiError::BadRequest)?;
    let d = Downtime { instance: key, owner: b.owner, reason: b.reason, until };
    s.engine.store.begin_downtime(&d)?;
    Ok(Json(d))
}

async fn end_downtime(
    State(s): State<AppState>,
    Path((host, port)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let key = key_from_parts(&host, &port)?;
    if s.engine.store.end_downtime(&key)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("{key} is not downtimed")))
    }
}

async fn scripts(State(s): State<AppState>) -> Json<crate::lua::ScriptStatus> {
    Json(s.scripts.status())
}

async fn reload(State(s): State<AppState>) -> Response {
    match s.scripts.reload().await {
        Ok(v) => (StatusCode::OK, Json(json!({ "version": v }))).into_response(),
        Err(e) => {
            let kept = s.scripts.status().version;
            let body = json!({ "error": { "code": "refused", "message": e.to_string() }, "kept": kept });
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
    }
}

/// `GET /api/v1/ha`: this node, whether it leads, the leader's URL, the lease; a single node
/// (no `[ha]`) says it leads alone.
async fn ha_status(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(match &s.ha {
        Some(ha) => {
            let mut status = ha.status();
            let store = s.engine.store.clone();
            status.nodes = tokio::task::spawn_blocking(move || store.live_nodes())
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??
                .unwrap_or_default();
            serde_json::to_value(status).map_err(|e| ApiError::Internal(e.to_string()))?
        }
        None => json!({ "leader": true, "single_node": true }),
    }))
}
