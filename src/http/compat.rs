//! orchestrator's HTTP routes under `/api`, answering in orchestrator's shapes (field names as
//! in the answers of orchestrator 3.2.6 captured in `shared/reference/orchestrator-api/`), so that
//! `orchestrator-client` and operators' scripts can point at Baton unchanged.
//!
//! Commands answer `{"Code": "OK"|"ERROR", "Message": ..., "Details": ...}` (ERROR with HTTP 500,
//! or 400 for a malformed path); reads answer the bare object or list, as orchestrator does.
//! Values orchestrator has and Baton does not track (uptime, semi-sync, data centre, ...) are
//! given their zero value.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};

use super::error::{key_from_parts, ApiError};
use super::native::{discover, hint};
use super::orc_shapes as shapes;
use super::AppState;
use super::Caller;
use crate::engine::{CommandError, InstanceCommand, PlanInputs, Status, TakeoverReport, TakeoverRequest};
use crate::store::{expiry_after, now_unix, Downtime, PromotionRule, RuleEntry};
use crate::topology::{Cluster, InstanceKey};

pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/api", get(|| async { Json("OK") }).head(|| async { StatusCode::OK }))
        .route("/api/leader-check", get(leader_check))
        .route("/api/leader-check/{code}", get(leader_check_with))
        .route("/api/routed-leader-check", get(leader_check))
        .route("/api/health", get(health))
        .route("/api/clusters", get(clusters))
        .route("/api/clusters-info", get(clusters_info))
        .route("/api/cluster/{hint}", get(cluster))
        .route("/api/cluster/alias/{alias}", get(cluster))
        .route("/api/cluster-info/{hint}", get(cluster_info_of))
        .route("/api/cluster-info/alias/{alias}", get(cluster_info_of))
        .route("/api/instance/{host}/{port}", get(instance))
        .route("/api/master/{hint}", get(master))
        .route("/api/instance-replicas/{host}/{port}", get(instance_replicas))
        .route("/api/topology/{hint}", get(topology))
        .route("/api/audit-recovery", get(audit_recovery))
        .route("/api/audit-recovery/{hint}", get(audit_recovery_of))
        .route("/api/audit-recovery-steps/{uid}", get(audit_recovery_steps))
        .route("/api/register-candidate/{host}/{port}/{rule}", get(register_candidate))
        .route("/api/begin-downtime/{host}/{port}/{owner}/{reason}", get(begin_downtime))
        .route("/api/begin-downtime/{host}/{port}/{owner}/{reason}/{duration}", get(begin_downtime))
        .route("/api/end-downtime/{host}/{port}", get(end_downtime));
    for name in [
        "start-replica",
        "start-slave",
        "stop-replica",
        "stop-slave",
        "restart-replica",
        "set-read-only",
        "set-writeable",
        "move-up",
    ] {
        let handler = move |State(s): State<AppState>, Extension(c): Extension<Caller>, Path(p): Path<Vec<String>>| {
            instance_command(s, c, p, name)
        };
        r = r.route(&format!("/api/{name}/{{host}}/{{port}}"), get(handler));
    }
    for name in ["relocate", "move-below"] {
        let handler = move |State(s): State<AppState>, Extension(c): Extension<Caller>, Path(p): Path<Vec<String>>| {
            instance_command(s, c, p, name)
        };
        r = r.route(&format!("/api/{name}/{{host}}/{{port}}/{{below_host}}/{{below_port}}"), get(handler));
    }
    r = r
        .route("/api/topology-tabulated/{hint}", get(topology_tabulated))
        .route("/api/all-instances", get(all_instances))
        .route("/api/problems", get(problems))
        .route("/api/masters", get(masters))
        .route("/api/cluster-osc-replicas/{hint}", get(cluster_osc_replicas))
        .route(
            "/api/replication-analysis",
            get(|State(s): State<AppState>, Extension(c): Extension<Caller>| async move {
                replication_analysis(&s, c, None).await
            }),
        )
        .route(
            "/api/replication-analysis/{hint}",
            get(|State(s): State<AppState>, Extension(c): Extension<Caller>, Path(h): Path<String>| async move {
                replication_analysis(&s, c, Some(&h)).await
            }),
        )
        .route("/api/relocate-replicas/{a}/{b}/{c}/{d}", get(relocate_replicas))
        .route("/api/forget/{host}/{port}", get(forget))
        .route("/api/forget-cluster/{hint}", get(forget_cluster))
        .route("/api/discover/{host}/{port}", get(discover_instance));
    for (cmd, auto) in [("graceful-master-takeover", false), ("graceful-master-takeover-auto", true)] {
        let handler = move |s: State<AppState>, p: Path<Vec<String>>| takeover(s, p, auto);
        r = r
            .route(&format!("/api/{cmd}/{{a}}"), get(handler))
            .route(&format!("/api/{cmd}/{{a}}/{{b}}"), get(handler))
            .route(&format!("/api/{cmd}/{{a}}/{{b}}/{{c}}"), get(handler))
            .route(&format!("/api/{cmd}/{{a}}/{{b}}/{{c}}/{{d}}"), get(handler));
    }
    r
}

// ---- the envelope -----------------------------------------------------------------------------

/// orchestrator's command answer.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Answer<T: serde::Serialize> {
    code: &'static str,
    message: String,
    details: T,
}

fn ok(message: impl Into<String>, details: impl serde::Serialize) -> Response {
    Json(Answer { code: "OK", message: message.into(), details }).into_response()
}

/// orchestrator's error answer. Bad input is a 400, anything else a 500 (what orchestrator sends).
struct OrcError(ApiError);

impl From<ApiError> for OrcError {
    fn from(e: ApiError) -> Self {
        OrcError(e)
    }
}

impl IntoResponse for OrcError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::Forbidden(_) => self.0.status(),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(Answer { code: "ERROR", message: self.0.to_string(), details: () })).into_response()
    }
}

type OrcResult = Result<Response, OrcError>;

/// The orchestrator commands Baton serves, with the argument forms it takes.
const SERVED: &[(&str, &str)] = &[
    ("clusters", "clusters"),
    ("clusters-info", "clusters-info"),
    ("cluster", "cluster/{hint} or cluster/alias/{alias}"),
    ("cluster-info", "cluster-info/{hint} or cluster-info/alias/{alias}"),
    ("instance", "instance/{host}/{port}"),
    ("master", "master/{hint}"),
    ("instance-replicas", "instance-replicas/{host}/{port}"),
    ("topology", "topology/{hint}"),
    ("audit-recovery", "audit-recovery[/{hint}]"),
    ("audit-recovery-steps", "audit-recovery-steps/{uid}"),
    ("register-candidate", "register-candidate/{host}/{port}/{rule}"),
    ("begin-downtime", "begin-downtime/{host}/{port}/{owner}/{reason}[/{duration}]"),
    ("end-downtime", "end-downtime/{host}/{port}"),
    ("graceful-master-takeover", "graceful-master-takeover/{cluster}[/{designated host}/{port}]"),
    ("graceful-master-takeover-auto", "graceful-master-takeover-auto/{cluster}[/{designated host}/{port}]"),
    ("start-replica", "start-replica/{host}/{port}"),
    ("start-slave", "start-slave/{host}/{port}"),
    ("stop-replica", "stop-replica/{host}/{port}"),
    ("stop-slave", "stop-slave/{host}/{port}"),
    ("restart-replica", "restart-replica/{host}/{port}"),
    ("set-read-only", "set-read-only/{host}/{port}"),
    ("set-writeable", "set-writeable/{host}/{port}"),
    ("relocate", "relocate/{host}/{port}/{below host}/{below port}"),
    ("move-below", "move-below/{host}/{port}/{below host}/{below port}"),
    ("move-up", "move-up/{host}/{port}"),
    ("relocate-replicas", "relocate-replicas/{host}/{port}/{below host}/{below port}"),
    ("forget", "forget/{host}/{port}"),
    ("forget-cluster", "forget-cluster/{cluster}"),
    ("discover", "discover/{host}/{port}"),
    ("topology-tabulated", "topology-tabulated/{hint}"),
    ("all-instances", "all-instances"),
    ("masters", "masters"),
    ("problems", "problems"),
    ("cluster-osc-replicas", "cluster-osc-replicas/{hint}"),
    ("replication-analysis", "replication-analysis[/{hint}]"),
    ("leader-check", "leader-check"),
    ("routed-leader-check", "routed-leader-check"),
    ("health", "health"),
];

/// orchestrator's failover commands: Baton does graceful takeovers only.
const FAILOVER_COMMANDS: &[&str] = &[
    "recover",
    "recover-lite",
    "force-master-failover",
    "force-master-takeover",
    "ack-cluster-recoveries",
    "ack-all-recoveries",
    "ack-recovery",
    "disable-global-recoveries",
    "enable-global-recoveries",
    "check-global-recoveries",
];

/// Any `/api/...` path Baton does not serve: an error in orchestrator's shape (HTTP 500, `Code`
/// `ERROR`), so that `orchestrator-client` prints the message and exits 1 instead of exiting 0
/// having done nothing.
pub async fn unsupported(uri: axum::http::Uri) -> Response {
    let command = uri.path().trim_start_matches("/api/").split('/').next().unwrap_or_default().to_string();
    let served = SERVED.iter().find(|(c, _)| *c == command);
    let message = if let Some((_, forms)) = served {
        format!("{command}: bad arguments (Baton serves it as {forms})")
    } else if FAILOVER_COMMANDS.contains(&command.as_str()) {
        format!("{command}: not supported by Baton, which does graceful master takeovers only (graceful-master-takeover, graceful-master-takeover-auto); see docs/ORCHESTRATOR.md")
    } else {
        format!("{command}: not supported by Baton (see docs/ORCHESTRATOR.md for the commands it serves)")
    };
    OrcError(ApiError::Internal(message)).into_response()
}

// ---- handlers ---------------------------------------------------------------------------------

/// `{a}`, `{host}/{port}`, `{hint}/{dhost}/{dport}`, `{host}/{port}/{dhost}/{dport}`.
async fn takeover(State(s): State<AppState>, Path(parts): Path<Vec<String>>, auto: bool) -> OrcResult {
    let (hint_text, designated) = match parts.as_slice() {
        [a] => (hint(a)?, None),
        [h, p] => (key_from_parts(h, p)?.to_string(), None),
        [a, dh, dp] => (hint(a)?, Some(key_from_parts(dh, dp)?)),
        [h, p, dh, dp] => (key_from_parts(h, p)?.to_string(), Some(key_from_parts(dh, dp)?)),
        _ => return Err(ApiError::BadRequest("unexpected path".into()).into()),
    };
    let req = TakeoverRequest { cluster_hint: hint_text, designated, auto, ..Default::default() };
    let (_, handle) = s.tracks.start(&s.engine, &s.metrics, req);
    let report = handle.await.map_err(|e| ApiError::Internal(format!("takeover task: {e}")))?;
    let command = if auto { "graceful-master-takeover-auto" } else { "graceful-master-takeover" };
    match report.status {
        Status::Promoted => Ok(ok(format!("{command}: successor promoted"), shapes::recovery(&report))),
        Status::PromotedWithErrors => {
            let body = Answer { code: "ERROR", message: report.errors.join("; "), details: shapes::recovery(&report) };
            Ok((StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response())
        }
        _ => {
            Err(ApiError::Internal(report.errors.first().cloned().unwrap_or_else(|| report.status.as_str().into()))
                .into())
        }
    }
}

/// 200 `"OK"` on the leader (and on a single node), 404 `"Not leader"` elsewhere, as orchestrator
/// answers (`/api/leader-check/{code}`: that status code instead of 404).
async fn leader_check(State(s): State<AppState>) -> Response {
    leader_answer(&s, StatusCode::NOT_FOUND)
}

async fn leader_check_with(State(s): State<AppState>, Path(code): Path<String>) -> Response {
    // An error status only: a caller-chosen 1xx or 2xx would tell a follower from a leader wrong.
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::NOT_FOUND);
    leader_answer(&s, status)
}

fn leader_answer(s: &AppState, not_leader: StatusCode) -> Response {
    match &s.ha {
        Some(ha) if !ha.is_leader() => (not_leader, Json("Not leader")).into_response(),
        _ => Json("OK").into_response(),
    }
}

async fn health() -> Response {
    ok("Application node is healthy", shapes::Health { healthy: true, is_active_node: true, error: None })
}

async fn clusters(State(s): State<AppState>) -> OrcResult {
    let names: Vec<String> = super::native::live_clusters(&s).await?.into_iter().map(|c| c.name).collect();
    Ok(Json(names).into_response())
}

async fn clusters_info(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> OrcResult {
    if s.fleet.is_some() {
        let (clusters, age) = all_live(&s, caller).await?;
        let list: Vec<shapes::ClusterInfo> =
            clusters.iter().map(|c| shapes::cluster_info(&c.name, c.alias.as_deref(), c.members.len())).collect();
        return Ok(with_age(Json(list).into_response(), age));
    }
    let list: Vec<shapes::ClusterInfo> = super::native::live_clusters(&s)
        .await?
        .iter()
        .map(|c| shapes::cluster_info(&c.name, c.alias.as_deref(), c.members.len()))
        .collect();
    Ok(Json(list).into_response())
}

/// Marks an answer served from the fleet poller's cache with the age of its oldest data.
fn with_age(mut r: Response, age_s: Option<f64>) -> Response {
    if let Some(age) = age_s {
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("{age:.1}")) {
            r.headers_mut().insert("x-baton-data-age-s", v);
        }
    }
    r
}

async fn live(s: &AppState, caller: Caller, h: &str) -> Result<(Cluster, PlanInputs), ApiError> {
    let c = discover(s, caller, &hint(h)?).await?;
    Ok((c, s.engine.plan_inputs()?))
}

async fn cluster(State(s): State<AppState>, Extension(caller): Extension<Caller>, Path(h): Path<String>) -> OrcResult {
    let (c, inp) = live(&s, caller, &h).await?;
    Ok(Json(c.members.iter().map(|m| shapes::instance(m, &c, &inp)).collect::<Vec<_>>()).into_response())
}

async fn cluster_info_of(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(h): Path<String>,
) -> OrcResult {
    let (c, _) = live(&s, caller, &h).await?;
    Ok(Json(shapes::cluster_info(&c.name, c.alias.as_deref(), c.members.len())).into_response())
}

async fn instance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port)): Path<(String, String)>,
) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    let (c, inp) = live(&s, caller, &k.to_string()).await?;
    let m = c.member(&k).ok_or_else(|| ApiError::NotFound(format!("{k} is not a member of {}", c.name)))?;
    Ok(Json(shapes::instance(m, &c, &inp)).into_response())
}

async fn master(State(s): State<AppState>, Extension(caller): Extension<Caller>, Path(h): Path<String>) -> OrcResult {
    let (c, inp) = live(&s, caller, &h).await?;
    let m = c
        .master
        .as_ref()
        .and_then(|k| c.member(k))
        .ok_or_else(|| ApiError::NotFound(format!("cluster {} has no single master", c.name)))?;
    Ok(Json(shapes::instance(m, &c, &inp)).into_response())
}

async fn instance_replicas(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port)): Path<(String, String)>,
) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    let (c, inp) = live(&s, caller, &k.to_string()).await?;
    Ok(Json(c.replicas_of(&k).iter().map(|m| shapes::instance(m, &c, &inp)).collect::<Vec<_>>()).into_response())
}

async fn topology(State(s): State<AppState>, Extension(caller): Extension<Caller>, Path(h): Path<String>) -> OrcResult {
    let (c, _) = live(&s, caller, &h).await?;
    let tree = crate::topology::render::tree(&c);
    Ok(ok(format!("Topology for cluster {}", c.name), tree.trim_end()))
}

async fn topology_tabulated(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(h): Path<String>,
) -> OrcResult {
    let (c, _) = live(&s, caller, &h).await?;
    let table = crate::topology::render::tabulated(&c);
    Ok(ok(format!("Topology for cluster {}", c.name), table.trim_end()))
}

/// Every known cluster: from the fleet poller's cache when it runs (with the age of its oldest
/// data), else each remembered cluster discovered live (a few at a time; clusters that cannot be
/// reached are left out: their members would be unreachable anyway).
async fn all_live(s: &AppState, caller: Caller) -> Result<(Vec<Cluster>, Option<f64>), ApiError> {
    use futures::stream::{self, StreamExt};
    if let Some(p) = s.fleet.clone() {
        let views =
            tokio::task::spawn_blocking(move || p.views()).await.map_err(|e| ApiError::Internal(e.to_string()))??;
        let age = crate::fleet::oldest_s(&views);
        return Ok((views.iter().map(|v| v.cluster.clone()).collect(), Some(age)));
    }
    let known = s.engine.store.clusters()?;
    let reach = &caller.reach(s)?;
    let found: Vec<Option<Cluster>> = stream::iter(known)
        .map(|k| async move { super::native::discover_within(s, &k.name, reach).await.ok() })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut clusters: Vec<Cluster> = found.into_iter().flatten().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((clusters, None))
}

async fn all_instances(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> OrcResult {
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let (clusters, age) = all_live(&s, caller).await?;
    let all: Vec<shapes::Instance> = clusters
        .iter()
        .flat_map(|c| c.members.iter().map(|m| shapes::instance(m, c, &inputs)).collect::<Vec<_>>())
        .collect();
    Ok(with_age(Json(all).into_response(), age))
}

/// orchestrator's `problems`: the instances that have a problem (every known cluster).
async fn problems(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> OrcResult {
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let (clusters, age) = all_live(&s, caller).await?;
    let all: Vec<shapes::Instance> = clusters
        .iter()
        .flat_map(|c| {
            c.members
                .iter()
                .filter(|m| c.problems.iter().any(|p| p.instance == m.key))
                .map(|m| shapes::instance(m, c, &inputs))
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(with_age(Json(all).into_response(), age))
}

async fn masters(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> OrcResult {
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let (clusters, age) = all_live(&s, caller).await?;
    let all: Vec<shapes::Instance> = clusters
        .iter()
        .filter_map(|c| c.master.as_ref().and_then(|k| c.member(k)).map(|m| shapes::instance(m, c, &inputs)))
        .collect();
    Ok(with_age(Json(all).into_response(), age))
}

/// The replicas an online schema change tool watches for lag: every reachable replica.
async fn cluster_osc_replicas(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(h): Path<String>,
) -> OrcResult {
    let (c, inputs) = live(&s, caller, &h).await?;
    let replicas: Vec<shapes::Instance> = c
        .members
        .iter()
        .filter(|m| Some(&m.key) != c.master.as_ref() && m.instance.is_some())
        .map(|m| shapes::instance(m, &c, &inputs))
        .collect();
    Ok(Json(replicas).into_response())
}

/// Baton's problems of every remembered cluster (or one) in orchestrator's `ReplicationAnalysis`
/// shape. The `Analysis` codes are Baton's problem kinds (orchestrator's failure-detection codes
/// belong to failover, which Baton does not do).
async fn replication_analysis(s: &AppState, caller: Caller, hint_text: Option<&str>) -> OrcResult {
    let (clusters, age) = match hint_text {
        Some(h) => (vec![live(s, caller, h).await?.0], None),
        None => all_live(s, caller).await?,
    };
    let entries: Vec<shapes::ProblemEntry> =
        clusters.iter().flat_map(|c| c.problems.iter().map(move |p| shapes::problem_entry(c, p))).collect();
    Ok(with_age(ok("Analysis", entries), age))
}

fn recoveries(s: &AppState, cluster: Option<&str>) -> Result<Vec<shapes::Recovery>, ApiError> {
    let entries = s.engine.store.takeovers(None, 1000)?;
    Ok(entries
        .into_iter()
        .filter_map(|e| serde_json::from_value::<TakeoverReport>(e.record).ok())
        .filter(|r| !r.dry_run && r.status != Status::Refused)
        .filter(|r| {
            cluster
                .is_none_or(|c| r.cluster == c || r.alias.as_deref() == Some(c) || r.new_master.as_deref() == Some(c))
        })
        .map(|r| shapes::recovery(&r))
        .collect())
}

async fn audit_recovery(State(s): State<AppState>) -> OrcResult {
    Ok(Json(recoveries(&s, None)?).into_response())
}

async fn audit_recovery_of(State(s): State<AppState>, Path(h): Path<String>) -> OrcResult {
    Ok(Json(recoveries(&s, Some(&hint(&h)?))?).into_response())
}

async fn audit_recovery_steps(State(s): State<AppState>, Path(uid): Path<String>) -> OrcResult {
    let r = super::native::stored_report(&s, &uid)?;
    let steps = shapes::recovery_steps(&r);
    Ok(Json(steps).into_response())
}

async fn register_candidate(
    State(s): State<AppState>,
    Path((host, port, rule)): Path<(String, String, String)>,
) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    let rule: PromotionRule = rule.parse().map_err(ApiError::BadRequest)?;
    // orchestrator's candidate registrations expire (CandidateInstanceExpireMinutes, 60 by default).
    let entry = RuleEntry { instance: k.clone(), rule, until: Some(now_unix() + 3600) };
    s.engine.store.set_promotion_rule(&entry).map_err(ApiError::from)?;
    Ok(ok("Registered candidate", shapes::key(Some(&k))))
}

/// `3600`, `90s`, `30m`, `2h`, `1d`, in seconds, checked by `expiry_after` when used.
fn duration_s(text: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::BadRequest(format!("duration '{text}': a number with an optional unit s, m, h or d"));
    let (num, unit) = text.find(|c: char| !c.is_ascii_digit()).map(|i| text.split_at(i)).unwrap_or((text, "s"));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).filter(|d| *d > 0).ok_or_else(bad)
}

async fn begin_downtime(State(s): State<AppState>, Path(parts): Path<Vec<String>>) -> OrcResult {
    let [host, port, owner, reason, rest @ ..] = parts.as_slice() else {
        return Err(ApiError::BadRequest("begin-downtime/{host}/{port}/{owner}/{reason}[/{duration}]".into()).into());
    };
    let k = key_from_parts(host, port)?;
    let secs = match rest.first() {
        Some(d) => duration_s(d)?,
        None => 3600,
    };
    let until = expiry_after("duration", secs).map_err(ApiError::BadRequest)?;
    let d = Downtime { instance: k.clone(), owner: owner.clone(), reason: reason.clone(), until };
    s.engine.store.begin_downtime(&d).map_err(ApiError::from)?;
    Ok(ok("Downtime begun", shapes::key(Some(&k))))
}

async fn end_downtime(State(s): State<AppState>, Path((host, port)): Path<(String, String)>) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    s.engine.store.end_downtime(&k).map_err(ApiError::from)?;
    Ok(ok("Downtime ended", shapes::key(Some(&k))))
}

// ---- instance commands ------------------------------------------------------------------------

/// `start-replica/{h}/{p}` and the like; `relocate`/`move-below` take the target as two more
/// segments. Answers the instance after the change, as orchestrator does.
async fn instance_command(s: AppState, caller: Caller, parts: Vec<String>, name: &str) -> OrcResult {
    let k = key_from_parts(&parts[0], &parts[1])?;
    let cmd = match name {
        "start-replica" | "start-slave" => InstanceCommand::StartReplica,
        "stop-replica" | "stop-slave" => InstanceCommand::StopReplica,
        "restart-replica" => InstanceCommand::RestartReplica,
        "set-read-only" => InstanceCommand::SetReadOnly,
        "set-writeable" => InstanceCommand::SetWriteable,
        "move-up" => InstanceCommand::MoveUp,
        _ => match parts.get(2..4) {
            Some([h, p]) => InstanceCommand::Relocate { below: key_from_parts(h, p)? },
            _ => {
                return Err(
                    ApiError::BadRequest(format!("{name}/{{host}}/{{port}}/{{below host}}/{{below port}}")).into()
                )
            }
        },
    };
    let (_, result) = s.engine.instance_command(&k, cmd, &caller.who()).await;
    let c = result.map_err(|e| match e {
        CommandError::Busy { .. } => ApiError::Conflict(e.to_string()),
        CommandError::Refused { .. } => ApiError::Refused(e.to_string()),
        CommandError::Failed { .. } => ApiError::Internal(e.to_string()),
    })?;
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let m = c.member(&k).ok_or_else(|| ApiError::NotFound(format!("{k} is not a member of {}", c.name)))?;
    Ok(ok(format!("{name}: {k}"), shapes::instance(m, &c, &inputs)))
}

/// `relocate-replicas/{h}/{p}/{below h}/{below p}`: every direct replica of the instance goes
/// below the target, one `relocate` each (each checked, locked and recorded on its own).
async fn relocate_replicas(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(parts): Path<Vec<String>>,
) -> OrcResult {
    let [h, p, th, tp] = parts.as_slice() else {
        return Err(ApiError::BadRequest("relocate-replicas/{host}/{port}/{below host}/{below port}".into()).into());
    };
    let (k, target) = (key_from_parts(h, p)?, key_from_parts(th, tp)?);
    let (c, _) = live(&s, caller, &k.to_string()).await?;
    let replicas: Vec<InstanceKey> = c.replicas_of(&k).iter().map(|m| m.key.clone()).filter(|r| *r != target).collect();
    let (mut moved, mut failed) = (Vec::new(), Vec::new());
    let mut last = None;
    for r in &replicas {
        let (_, result) =
            s.engine.instance_command(r, InstanceCommand::Relocate { below: target.clone() }, &caller.who()).await;
        match result {
            Ok(after) => {
                moved.push(r.clone());
                last = Some(after);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        let done: Vec<String> = moved.iter().map(|k| k.to_string()).collect();
        return Err(ApiError::Internal(format!(
            "relocate-replicas: moved [{}]; not moved: {}",
            done.join(", "),
            failed.join("; ")
        ))
        .into());
    }
    let inputs = s.engine.plan_inputs().map_err(ApiError::from)?;
    let details: Vec<shapes::Instance> = match &last {
        Some(c) => moved.iter().filter_map(|k| c.member(k)).map(|m| shapes::instance(m, c, &inputs)).collect(),
        None => Vec::new(),
    };
    Ok(ok(format!("Relocated {} replicas of {k} below {target}", moved.len()), details))
}

/// `forget/{h}/{p}`: drop an instance from its remembered cluster; `forget-cluster/{hint}`: drop
/// the cluster. Only Baton's memory changes.
async fn forget(State(s): State<AppState>, Path((host, port)): Path<(String, String)>) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    if !s.engine.store.forget_member(&k).map_err(ApiError::from)? {
        return Err(ApiError::NotFound(format!("{k} is not a member of a remembered cluster")).into());
    }
    Ok(ok(format!("Forgotten: {k}"), shapes::key(Some(&k))))
}

async fn forget_cluster(State(s): State<AppState>, Path(h): Path<String>) -> OrcResult {
    let h = hint(&h)?;
    if !s.engine.store.forget_cluster(&h).map_err(ApiError::from)? {
        return Err(ApiError::NotFound(format!("no remembered cluster is named or aliased {h}")).into());
    }
    Ok(ok(format!("Forgotten cluster: {h}"), ()))
}

/// `discover/{h}/{p}`: discover and remember the cluster of any member (an admin action: it may
/// reach a server Baton does not know yet).
async fn discover_instance(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port)): Path<(String, String)>,
) -> OrcResult {
    let k = key_from_parts(&host, &port)?;
    let (c, inputs) = live(&s, caller, &k.to_string()).await?;
    let m = c.member(&k).ok_or_else(|| ApiError::NotFound(format!("{k} is not a member of {}", c.name)))?;
    Ok(ok(format!("Instance discovered: {k}"), shapes::instance(m, &c, &inputs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(shapes::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(shapes::rfc3339(1_795_652_602), "2026-11-26T00:23:22Z");
        assert_eq!(shapes::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(duration_s("90").unwrap(), 90);
        assert_eq!(duration_s("30m").unwrap(), 1800);
        assert_eq!(duration_s("2h").unwrap(), 7200);
        assert!(duration_s("0").is_err() && duration_s("5y").is_err() && duration_s("m").is_err());
    }
}
