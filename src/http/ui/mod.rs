//! The web console, served by `baton serve` itself: pages rendered on the server (maud), a small
//! script of our own for live updates, assets embedded in the binary (no CDN, no build step).
//! Same port and same auth as the API: every page is a read (role read); nothing that changes
//! state is reachable by GET.
//!
//! - `/`: every known cluster (the fleet poller's cache), filterable, refreshing itself;
//! - `/ui/clusters/{cluster}`: the live topology drawn as a tree (SVG), with its members' details;
//! - `/ui/takeovers`, `/ui/takeovers/{id}`: the history, and one takeover's phases on a time axis
//!   with the SQL per instance (followed live while it runs);
//! - for role admin, a takeover from the topology page: the dry-run plan first
//!   (`POST /ui/clusters/{cluster}/plan`), then a confirmation bound to its `plan_hash`
//!   (`POST /ui/clusters/{cluster}/takeover`). Both forms carry a CSRF token that must match the
//!   `baton_csrf` cookie (SameSite=Strict) the pages set, on top of the Origin and
//!   `Sec-Fetch-Site` checks every state-changing request passes (`browser.rs`);
//! - for role admin, on the topology page: each member's promotion rule and downtime, and the
//!   instance commands (start/stop/restart replication, read_only, relocate, move up), each
//!   confirmed first; the command's outcome is shown on the page it returns to;
//! - `/ui/login`: with auth `token`, a browser logs in by typing its token once; it is kept in an
//!   HttpOnly, SameSite=Strict cookie (`baton_token`) that counts for the console and for reads
//!   only (`auth.rs`). With auth `basic`, the browser's own prompt does the same.

mod draw;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::{html, Markup, DOCTYPE};

use super::{ApiError, AppState, Caller};
use crate::engine::TakeoverReport;

const CSS: &str = include_str!("assets/baton.css");
const JS: &str = include_str!("assets/baton.js");
const ICON: &str = include_str!("assets/baton.svg");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(clusters))
        .route("/ui", get(clusters))
        .route("/ui/fragments/clusters", get(clusters_rows))
        .route("/ui/clusters/{cluster}", get(topology))
        .route("/ui/clusters/{cluster}/plan", axum::routing::post(plan))
        .route("/ui/clusters/{cluster}/takeover", axum::routing::post(start_takeover))
        .route("/ui/takeovers", get(takeovers))
        .route("/ui/scripts", get(scripts))
        .route("/ui/instances/{host}/{port}/command", axum::routing::post(instance_command))
        .route("/ui/instances/{host}/{port}/{action}", axum::routing::post(instance_action))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/scripts/reload", axum::routing::post(reload_scripts))
        .route("/ui/scripts/try", axum::routing::post(try_policy))
        .route("/ui/takeovers/{id}", get(takeover))
        .route("/ui/assets/baton.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/ui/assets/baton.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .route("/ui/assets/baton.svg", get(|| async { asset("image/svg+xml", ICON) }))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// A page: the HTML, with a policy that lets only this origin's script and style run.
fn page(title: &str, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Baton" }
                link rel="stylesheet" href="/ui/assets/baton.css";
                link rel="icon" type="image/svg+xml" href="/ui/assets/baton.svg";
                script src="/ui/assets/baton.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "Baton" }
                    nav {
                        a href="/" { "Clusters" } a href="/ui/takeovers" { "Takeovers" } a href="/ui/scripts" { "Scripts" }
                        a.session href="/ui/login" { "Session" }
                    }
                }
                main { (body) }
            }
        }
    };
    let mut r = doc.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An error as a page (the API's errors are JSON).
struct UiError(ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let mut r = page(
            "Error",
            html! { h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } p.error { (self.0.to_string()) } },
        );
        *r.status_mut() = status;
        r
    }
}

type UiResult = Result<Response, UiError>;

const CSRF_COOKIE: &str = "baton_csrf";

/// The CSRF token of this browser: its cookie's, or a new one (then set by `with_csrf`).
fn csrf_of(headers: &axum::http::HeaderMap) -> (String, bool) {
    let cookie = super::auth::cookie(headers, CSRF_COOKIE)
        .filter(|v| v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_string);
    match cookie {
        Some(t) => (t, false),
        None => (uuid::Uuid::new_v4().simple().to_string(), true),
    }
}

fn with_csrf(r: Response, token: &str, new: bool) -> Response {
    if new {
        with_cookie(r, format!("{CSRF_COOKIE}={token}; Path=/ui"))
    } else {
        r
    }
}

/// `r` setting the cookie `cookie` (`name=value; attributes`), HttpOnly and SameSite=Strict like
/// every cookie of the console.
fn with_cookie(mut r: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("{cookie}; HttpOnly; SameSite=Strict")) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// A 303 to `location` (after a form: the browser GETs it).
fn see_other(location: &str) -> Response {
    (axum::http::StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Whether the caller may act, and this browser's CSRF token (new: to be set as its cookie).
fn who(caller: &Caller, headers: &axum::http::HeaderMap) -> (bool, String, bool) {
    let (token, new) = csrf_of(headers);
    (caller.role == crate::config::Role::Admin, token, new)
}

/// Refuses a form whose token is not this browser's cookie.
fn check_csrf(headers: &axum::http::HeaderMap, sent: &str) -> Result<(), UiError> {
    let (cookie, new) = csrf_of(headers);
    if new || cookie != sent {
        return Err(UiError(ApiError::Forbidden(
            "the form's token does not match this browser's: reload the page and try again".into(),
        )));
    }
    Ok(())
}

/// A running takeover's page: its phases appear as they end (the script reads the event stream
/// and reloads the page at the end).
fn live(id: &str) -> Markup {
    html! {
        h1 { "Takeover " span.mono { (id) } " " span.status.running { "running" } }
        ol.live #live data-events=(format!("/api/v1/takeovers/{id}/events")) {}
        noscript { p { "Reload the page to see its progress." } }
    }
}

#[derive(serde::Deserialize, Default)]
struct Filter {
    q: Option<String>,
}

fn ago(unix_ms: i64) -> String {
    let s = (crate::store::now_unix_ms() - unix_ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// The cluster table's rows (also the fragment the page's script fetches every few seconds).
fn cluster_rows(s: &AppState, q: Option<&str>) -> Result<(Markup, f64, usize), UiError> {
    let q = q.map(|q| q.trim().to_ascii_lowercase()).filter(|q| !q.is_empty());
    let Some(poller) = s.fleet.clone() else {
        // No poller: the remembered clusters, names only.
        let known = s.engine.store.clusters()?;
        let rows = html! {
            @for k in &known {
                tr { td { a href=(format!("/ui/clusters/{}", k.name)) { (k.name) } } td { (k.alias.as_deref().unwrap_or("")) }
                     td colspan="6" { "(the fleet poller is off: discovery.poll_interval_s = 0)" } }
            }
        };
        return Ok((rows, 0.0, known.len()));
    };
    let report = poller.report()?;
    let shown: Vec<&crate::fleet::FleetRow> = report
        .clusters
        .iter()
        .filter(|r| {
            q.as_ref().is_none_or(|q| {
                r.view.name.to_ascii_lowercase().contains(q)
                    || r.view.alias.as_deref().is_some_and(|a| a.to_ascii_lowercase().contains(q))
            })
        })
        .collect();
    let age = report.data_age_s;
    let markup = html! {
        @for r in &shown {
            @let v = &r.view;
            tr data-cluster=(v.name) {
                td { a href=(format!("/ui/clusters/{}", v.name)) { (v.name) } }
                td { (v.alias.as_deref().unwrap_or("")) }
                td { (v.master.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "none".into())) }
                td.num { (v.members) }
                td.num { (v.worst_lag_s.map(|l| format!("{l} s")).unwrap_or_else(|| "-".into())) }
                td.num class=(if v.problems > 0 { "num bad" } else { "num" }) { (v.problems) }
                @if v.readiness.ready {
                    td.ready { "ready → " (v.readiness.designated.as_ref().map(|d| d.to_string()).unwrap_or_default()) }
                } @else {
                    td.refused {
                        @if let Some(x) = &v.readiness.refused {
                            "refused: " (x.check) @if let Some(i) = &x.instance { " on " (i) }
                            br; span.why { (x.message) }
                        }
                    }
                }
                td {
                    @if let Some(t) = &r.last_takeover {
                        a href=(format!("/ui/takeovers/{}", t.id)) class=(format!("status {}", t.status)) { (t.status) }
                        " " span.muted { (ago(t.started_at)) }
                    } @else { span.muted { "none" } }
                }
            }
        }
    };
    Ok((markup, age, shown.len()))
}

async fn clusters(State(s): State<AppState>, Query(f): Query<Filter>) -> UiResult {
    let st = s.clone();
    let q = f.q.clone();
    let (rows, age, n) = tokio::task::spawn_blocking(move || cluster_rows(&st, q.as_deref()))
        .await
        .map_err(|e| UiError(ApiError::Internal(e.to_string())))??;
    Ok(page(
        "Clusters",
        html! {
            div.bar {
                h1 { "Clusters" }
                form.filter method="get" action="/" {
                    input type="search" name="q" placeholder="Filter by name or alias" value=(f.q.as_deref().unwrap_or("")) aria-label="Filter";
                }
            }
            p.muted #age data-refresh="/ui/fragments/clusters" {
                (n) @if n == 1 { " cluster" } @else { " clusters" } " · data at most " (format!("{age:.1}")) " s old"
            }
            div.scroll {
                table.clusters {
                    thead { tr { th { "Cluster" } th { "Alias" } th { "Master" } th { "Members" } th { "Worst lag" } th { "Problems" } th { "Takeover now" } th { "Last takeover" } } }
                    tbody #clusters { (rows) }
                }
            }
        },
    ))
}

/// `tbody` rows only, for the page's script.
async fn clusters_rows(State(s): State<AppState>, Query(f): Query<Filter>) -> UiResult {
    let (rows, age, n) = tokio::task::spawn_blocking(move || cluster_rows(&s, f.q.as_deref()))
        .await
        .map_err(|e| UiError(ApiError::Internal(e.to_string())))??;
    let mut r = rows.into_response();
    r.headers_mut().insert(
        "x-baton-data-age-s",
        HeaderValue::from_str(&format!("{age:.1}")).unwrap_or(HeaderValue::from_static("0")),
    );
    r.headers_mut().insert("x-baton-clusters", HeaderValue::from(n as u64));
    Ok(r)
}

#[derive(serde::Deserialize, Default)]
struct TopologyQuery {
    /// An instance command just run from this page: its outcome is shown.
    op: Option<String>,
}

/// An instance command's outcome, from the record the engine saved.
fn command_outcome(s: &AppState, id: &str) -> Result<Markup, UiError> {
    let found = s.engine.store.operations(200)?.into_iter().find(|e| e.id == id);
    let Some(r) = found.and_then(|e| serde_json::from_value::<crate::engine::CommandReport>(e.record).ok()) else {
        return Ok(html! { p.notice { "No command " span.mono { (id) } " on record." } });
    };
    let done = r.status == "done";
    Ok(html! {
        div.notice.(if done { "ok" } else { "bad" }) #outcome {
            b { (r.command.name()) " " (r.instance) ": " (r.status) } " in " (format!("{:.1} ms", r.ms))
            @if let Some(e) = &r.error { br; (e) }
            @for op in &r.ops { @for st in &op.statements { br; span.mono.small { (op.instance) ": " (st) } } }
        }
    })
}

async fn topology(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(hint): Path<String>,
    Query(q): Query<TopologyQuery>,
    headers: axum::http::HeaderMap,
) -> UiResult {
    let (admin, token, new) = who(&caller, &headers);
    let outcome = match q.op.as_deref() {
        Some(id) => Some(command_outcome(&s, id)?),
        None => None,
    };
    let c = super::native::discover(&s, caller, &hint).await?;
    let inputs = s.engine.plan_inputs()?;
    let extra = |k: &crate::topology::InstanceKey| {
        let rule = inputs.rules.get(k).map(|r| format!("rule {r}"));
        (rule, inputs.downtimed(k))
    };
    let picture = draw::topology(&c, &extra);
    let replicas: Vec<String> =
        c.master.as_ref().map(|m| c.replicas_of(m).iter().map(|r| r.key.to_string()).collect()).unwrap_or_default();
    let actions = html! {
        @if admin {
            form.takeover method="post" action=(format!("/ui/clusters/{}/plan", c.name)) {
                input type="hidden" name="csrf" value=(token);
                label { "Take over to " select name="designated" {
                    option value="" { "the best replica (auto)" }
                    @for r in &replicas { option value=(r) { (r) } }
                } }
                " " button type="submit" { "Plan the takeover" }
                span.muted { " a dry run first: nothing changes until you confirm" }
            }
        }
    };
    let r = page(
        &c.name,
        html! {
            h1 { "Cluster " (c.name) @if let Some(a) = &c.alias { " " span.alias { (a) } } }
            @if let Some(o) = &outcome { (o) }
            (actions)
            p.legend {
                span.key.master { "writable master" } span.key.replica { "healthy replica" }
                span.key.lagging { "lagging / not as expected" } span.key.broken { "broken / unreachable" } span.key.downtimed { "downtimed" }
            }
            div.scroll.picture { (picture) }
            @if !c.problems.is_empty() {
                h2 { "Problems" }
                ul.problems { @for p in &c.problems { li { b { (p.instance) } " " (format!("{:?}", p.kind)) ": " (p.message) } } }
            }
            h2 { "Members" }
            div.scroll {
                table {
                    thead { tr { th { "Instance" } th { "Source" } th { "read_only" } th { "IO / SQL" } th { "Lag" } th { "Version" } th { "Rule" } @if admin { th { "Actions" } } } }
                    tbody {
                        @for m in &c.members {
                            tr {
                                td { (m.key) } td { (m.source.as_ref().map(|x| x.to_string()).unwrap_or_default()) }
                                @match &m.instance {
                                    Some(i) => {
                                        td { (i.read_only) }
                                        td { @if let Some(r) = &i.replication { (format!("{:?} / {:?}", r.io_thread, r.sql_thread)) } }
                                        td { @if let Some(r) = &i.replication { (r.seconds_behind.map(|l| format!("{l} s")).unwrap_or_else(|| "?".into())) } }
                                        td { (i.version) }
                                    }
                                    None => { td colspan="4" .bad { "unreachable: " (m.error.as_deref().unwrap_or("")) } }
                                }
                                td { (inputs.rules.get(&m.key).map(|r| r.to_string()).unwrap_or_else(|| "neutral".into()))
                                     @if inputs.downtimed(&m.key) { br; span.muted { "downtimed" } } }
                                @if admin { td.actions {
                                    (instance_actions(&c.name, &m.key, inputs.downtimed(&m.key), &token))
                                    (instance_commands(&c, m, &token))
                                } }
                            }
                        }
                    }
                }
                // One list of the members for every relocation field (not one per member: the
                // page would grow with the square of the cluster).
                @if admin { datalist #members { @for m in &c.members { option value=(m.key) {} } } }
            }
        },
    );
    Ok(with_csrf(r, &token, new))
}

#[derive(serde::Deserialize)]
struct TakeoverForm {
    csrf: String,
    #[serde(default)]
    designated: String,
    #[serde(default)]
    plan_hash: String,
}

fn request(cluster: &str, f: &TakeoverForm, dry_run: bool) -> Result<crate::engine::TakeoverRequest, UiError> {
    let designated = match f.designated.trim() {
        "" => None,
        d => Some(d.parse().map_err(|e| UiError(ApiError::BadRequest(format!("designated '{d}': {e}"))))?),
    };
    Ok(crate::engine::TakeoverRequest {
        cluster_hint: cluster.to_string(),
        auto: designated.is_none(),
        designated,
        start_replication: true,
        expected_master: None,
        dry_run,
        plan_hash: (!dry_run && !f.plan_hash.is_empty()).then(|| f.plan_hash.clone()),
    })
}

/// The refusal of a takeover, in words: the check, the instance, why.
fn refusal(r: &TakeoverReport) -> Markup {
    html! {
        div.refusal {
            h2 { "Refused" }
            @if let Some(x) = &r.refusal {
                p { "The check " b { (x.check) } @if let Some(i) = &x.instance { " on " b { (i) } } " refused in phase " (x.phase.name()) "." }
            }
            ul.errors { @for e in &r.errors { li { (e) } } }
        }
    }
}

/// `POST /ui/clusters/{cluster}/plan`: the dry run, and a form to confirm it.
async fn plan(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    headers: axum::http::HeaderMap,
    Form(f): Form<TakeoverForm>,
) -> UiResult {
    check_csrf(&headers, &f.csrf)?;
    let req = request(&cluster, &f, true)?;
    let r = s.engine.takeover(req, None).await;
    let body = html! {
        h1 { "Plan: take over " (r.alias.as_deref().unwrap_or(&r.cluster)) }
        @if r.status != crate::engine::Status::Planned {
            (refusal(&r))
            p { a href=(format!("/ui/clusters/{cluster}")) { "Back to the topology" } }
        } @else {
            dl.summary {
                dt { "Old master" } dd { (r.old_master.as_deref().unwrap_or("?")) }
                dt { "New master" } dd { b { (r.designated.as_deref().unwrap_or("?")) } }
                dt { "Why" } dd { (r.choice.as_deref().unwrap_or("-")) }
                dt { "Plan hash" } dd.mono { (r.plan_hash.as_deref().unwrap_or("")) }
            }
            h2 { "Checks" }
            ul.checks {
                @for p in &r.phases { @for c in &p.checks {
                    li class=(if c.ok { "ok" } else { "bad" }) { (if c.ok { "✓ " } else { "✗ " }) b { (c.name) } " on " (c.instance) ": " (c.detail) }
                } }
            }
            @if let Some(plan) = &r.plan {
                h2 { "Statements, in order" }
                @for st in &plan.steps {
                    div.op { b { (st.phase.name()) } " · " span.mono { (st.instance) } " · " (st.action)
                        pre { @for x in &st.statements { (x) "\n" } } }
                }
                h2 { "Hooks" }
                @if plan.hooks.values().all(Vec::is_empty) { p.muted { "none" } }
                ul { @for (phase, hooks) in &plan.hooks { @if !hooks.is_empty() { li { b { (phase) } ": " (hooks.join(", ")) } } } }
            }
            form.confirm method="post" action=(format!("/ui/clusters/{cluster}/takeover")) {
                input type="hidden" name="csrf" value=(f.csrf);
                input type="hidden" name="designated" value=(r.designated.as_deref().unwrap_or(""));
                input type="hidden" name="plan_hash" value=(r.plan_hash.as_deref().unwrap_or(""));
                button type="submit" { "Confirm: take over to " (r.designated.as_deref().unwrap_or("?")) }
                span.muted { " runs only if the topology still matches this plan" }
            }
        }
    };
    Ok(page("Plan", body))
}

/// `POST /ui/clusters/{cluster}/takeover`: starts the confirmed takeover, bound to its plan, and
/// sends the browser to its page (followed live there).
async fn start_takeover(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    headers: axum::http::HeaderMap,
    Form(f): Form<TakeoverForm>,
) -> UiResult {
    check_csrf(&headers, &f.csrf)?;
    if f.plan_hash.is_empty() {
        return Err(UiError(ApiError::BadRequest("a takeover from the console needs its plan: plan it first".into())));
    }
    let req = request(&cluster, &f, false)?;
    let (id, _) = s.tracks.start(&s.engine, &s.metrics, req);
    Ok((axum::http::StatusCode::SEE_OTHER, [(header::LOCATION, format!("/ui/takeovers/{id}"))]).into_response())
}

async fn takeovers(State(s): State<AppState>) -> UiResult {
    let list = s.engine.store.takeovers(None, 200)?;
    let reports: Vec<TakeoverReport> =
        list.into_iter().filter_map(|e| serde_json::from_value::<TakeoverReport>(e.record).ok()).collect();
    Ok(page(
        "Takeovers",
        html! {
            h1 { "Takeovers" }
            div.scroll {
                table.takeovers {
                    thead { tr { th { "When" } th { "Cluster" } th { "From → to" } th { "Status" } th { "Writes unavailable" } th { "Total" } } }
                    tbody {
                        @for r in &reports {
                            tr {
                                td { a href=(format!("/ui/takeovers/{}", r.id)) { (ago(r.started_at)) } }
                                td { (r.alias.as_deref().unwrap_or(&r.cluster)) }
                                td { (r.old_master.as_deref().unwrap_or("?")) " → " (r.new_master.as_deref().or(r.designated.as_deref()).unwrap_or("?")) }
                                td { span class=(format!("status {}", r.status.as_str())) { (r.status.as_str()) } @if r.dry_run { " (plan)" } }
                                td.num { (r.write_unavailable_ms.map(|w| format!("{w:.1} ms")).unwrap_or_else(|| "-".into())) }
                                td.num { (format!("{:.0} ms", r.total_ms)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn takeover(State(s): State<AppState>, Path(id): Path<String>) -> UiResult {
    let r = match super::native::stored_report(&s, &id) {
        Ok(r) => r,
        // Just started: not journaled yet. The page follows it live.
        Err(ApiError::NotFound(_)) if s.tracks.is_running(&id) => {
            return Ok(page(&format!("Takeover {id}"), live(&id)));
        }
        Err(e) => return Err(e.into()),
    };
    if r.status == crate::engine::Status::Running {
        return Ok(page(&format!("Takeover {id}"), live(&id)));
    }
    Ok(page(
        &format!("Takeover {}", r.id),
        html! {
            h1 { "Takeover " span.mono { (r.id) } }
            dl.summary {
                dt { "Cluster" } dd { (r.alias.as_deref().unwrap_or(&r.cluster)) }
                dt { "Status" } dd { span class=(format!("status {}", r.status.as_str())) { (r.status.as_str()) } }
                dt { "From → to" } dd { (r.old_master.as_deref().unwrap_or("?")) " → " (r.new_master.as_deref().or(r.designated.as_deref()).unwrap_or("?")) }
                dt { "Writes unavailable" } dd { (r.write_unavailable_ms.map(|w| format!("{w:.1} ms")).unwrap_or_else(|| "never fenced".into())) }
                dt { "Total" } dd { (format!("{:.1} ms", r.total_ms)) }
                dt { "Why this replica" } dd { (r.choice.as_deref().unwrap_or("-")) }
                dt { "Scripts version" } dd.mono { (r.scripts.as_ref().map(|v| v.id.clone()).unwrap_or_else(|| "none".into())) }
                dt { "Run by" } dd.mono { @if let Some(o) = &r.started_by.as_ref().or(r.owner.as_ref()) { (o.host) ":" (o.pid) @if let Some(n) = &o.node { " (" (n) ")" } } }
            }
            @if !r.errors.is_empty() { h2 { "Errors" } ul.errors { @for e in &r.errors { li { (e) } } } }
            h2 { "Phases" }
            div.scroll.picture { (draw::timeline(&r)) }
            @for p in &r.phases {
                details.phase open[!p.ops.is_empty() || !p.script_ops.is_empty()] {
                    summary { b { (p.name.name()) } " · " (format!("{:.1} ms", p.duration_ms)) " · " (format!("{:?}", p.outcome).to_lowercase()) " · " (p.detail) }
                    @for op in &p.ops {
                        div.op { span.mono { (op.instance) } " " span.muted { (format!("{:.1} ms", op.ms)) }
                            pre { @for st in &op.statements { (st) "\n" } } }
                    }
                    @for op in &p.script_ops {
                        div.op { span.muted { "hook" } pre { (serde_json::to_string(op).unwrap_or_default()) } }
                    }
                }
            }
        },
    ))
}

/// `/ui/scripts`: the loaded version, the policy and the hooks per phase, the last reload and
/// its error; for an admin, a button that reloads and checks them, and a form that tries the
/// policy on a live cluster (a dry run, a POST: a dry run is recorded in the audit).
async fn scripts(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
) -> UiResult {
    let (admin, token, new) = who(&caller, &headers);
    Ok(with_csrf(scripts_page(&s, admin, &token, None), &token, new))
}

#[derive(serde::Deserialize)]
struct TryForm {
    csrf: String,
    cluster: String,
}

/// `POST /ui/scripts/try`: the policy's choice on a live cluster (a dry run), on the scripts page.
async fn try_policy(State(s): State<AppState>, headers: axum::http::HeaderMap, Form(f): Form<TryForm>) -> UiResult {
    check_csrf(&headers, &f.csrf)?;
    let form = TakeoverForm { csrf: f.csrf.clone(), designated: String::new(), plan_hash: String::new() };
    let r = s.engine.takeover(request(f.cluster.trim(), &form, true)?, None).await;
    Ok(scripts_page(&s, true, &f.csrf, Some((&f.cluster, &r))))
}

fn scripts_page(s: &AppState, admin: bool, token: &str, tried: Option<(&str, &TakeoverReport)>) -> Response {
    let st = s.scripts.status();
    let body = html! {
        h1 { "Scripts" }
        dl.summary {
            dt { "Version" } dd.mono { (st.version.id) }
            dt { "Loaded" } dd { (ago(st.version.loaded_at as i64)) }
            dt { "Policy" } dd.mono { (st.policy.as_deref().unwrap_or("built-in order (no policy script)")) }
            dt { "Files" } dd.mono { @if st.version.files.is_empty() { "none" } @for f in &st.version.files { (f) br; } }
            dt { "Last reload" } dd { @match &st.last_error { Some(e) => span.bad { "failed, the version above kept: " (e) }, None => "ok" } }
            @if let Some(f) = &st.failed { dt { "Stopped" } dd.bad { (f) } }
        }
        h2 { "Hooks per phase" }
        ul { @for (phase, hooks) in &st.hooks { li { b { (phase) } ": " @if hooks.is_empty() { span.muted { "none" } } @else { (hooks.join(", ")) } } } }
        @if admin {
            form.takeover method="post" action="/ui/scripts/reload" {
                input type="hidden" name="csrf" value=(token);
                button type="submit" { "Reload and check" }
                span.muted { " loads every file beside the running version; swaps only if all of them load" }
            }
            h2 { "Try the policy on a cluster" }
            form.try method="post" action="/ui/scripts/try" {
                input type="hidden" name="csrf" value=(token);
                input type="search" name="cluster" placeholder="alias or host:port" value=(tried.map(|t| t.0).unwrap_or("")) aria-label="Cluster";
                " " button type="submit" { "Try" }
                span.muted { " a dry run: the policy's choice on the live cluster; no server changes" }
            }
        }
        @if let Some((_, r)) = tried {
            @if r.status == crate::engine::Status::Planned {
                p { "The policy picks " b { (r.designated.as_deref().unwrap_or("?")) } ": " (r.choice.as_deref().unwrap_or("")) }
            } @else { (refusal(r)) }
        }
    };
    page("Scripts", body)
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /ui/scripts/reload`: loads the scripts again (kept only if every file loads).
async fn reload_scripts(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    Form(f): Form<CsrfForm>,
) -> UiResult {
    check_csrf(&headers, &f.csrf)?;
    let body = match s.scripts.reload().await {
        Ok(v) => {
            html! { h1 { "Scripts reloaded" } p { "Version " span.mono { (v.id) } " runs now." } p { a href="/ui/scripts" { "Back" } } }
        }
        Err(e) => html! {
            h1 { "Reload refused" }
            p.error { (e) }
            p { "The running version stays: " span.mono { (s.scripts.status().version.id) } }
            p { a href="/ui/scripts" { "Back" } }
        },
    };
    Ok(page("Scripts", body))
}

/// An admin's actions on one member: its promotion rule, and a downtime (begun or ended). Each
/// form asks for confirmation (the script) and carries the CSRF token.
fn instance_actions(cluster: &str, key: &crate::topology::InstanceKey, downtimed: bool, token: &str) -> Markup {
    let action = |what: &str| format!("/ui/instances/{}/{}/{what}", key.host, key.port);
    html! {
        form.inline method="post" action=(action("rule")) data-confirm=(format!("Set the promotion rule of {key}?")) {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="cluster" value=(cluster);
            select name="rule" aria-label="Promotion rule" {
                option value="neutral" { "neutral" } option value="prefer" { "prefer" }
                option value="prefer_not" { "prefer_not" } option value="must_not" { "must_not" }
            }
            " " button type="submit" { "Set rule" }
        }
        @if downtimed {
            form.inline method="post" action=(action("end-downtime")) data-confirm=(format!("End the downtime of {key}?")) {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="cluster" value=(cluster);
                button type="submit" { "End downtime" }
            }
        } @else {
            form.inline method="post" action=(action("downtime")) data-confirm=(format!("Downtime {key}? A takeover then leaves it behind.")) {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="cluster" value=(cluster);
                input type="number" name="hours" min="1" max="720" value="1" aria-label="Hours";
                input type="text" name="reason" placeholder="reason" required aria-label="Reason";
                " " button type="submit" { "Downtime" }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct InstanceForm {
    csrf: String,
    cluster: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    hours: Option<u64>,
    #[serde(default)]
    reason: String,
}

/// `POST /ui/instances/{host}/{port}/rule|downtime|end-downtime`, then back to the topology.
async fn instance_action(
    State(s): State<AppState>,
    Path((host, port, what)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    Form(f): Form<InstanceForm>,
) -> UiResult {
    check_csrf(&headers, &f.csrf)?;
    let key = super::error::key_from_parts(&host, &port)?;
    let bad = |m: String| UiError(ApiError::BadRequest(m));
    match what.as_str() {
        "rule" => {
            let rule: crate::store::PromotionRule = f.rule.parse().map_err(bad)?;
            if rule == crate::store::PromotionRule::Neutral {
                s.engine.store.clear_promotion_rule(&key)?;
            } else {
                s.engine.store.set_promotion_rule(&crate::store::RuleEntry { instance: key, rule, until: None })?;
            }
        }
        "downtime" => {
            if f.reason.trim().is_empty() {
                return Err(bad("a downtime needs a reason".into()));
            }
            let hours = f.hours.unwrap_or(1);
            let until = crate::store::expiry_after("hours", hours.saturating_mul(3600)).map_err(bad)?;
            let d = crate::store::Downtime {
                instance: key,
                owner: "console".into(),
                reason: f.reason.trim().into(),
                until,
            };
            s.engine.store.begin_downtime(&d)?;
        }
        "end-downtime" => {
            s.engine.store.end_downtime(&key)?;
        }
        other => return Err(UiError(ApiError::NotFound(format!("no instance action '{other}'")))),
    }
    Ok(back_to(&f.cluster, ""))
}

/// An admin's instance commands on one member, as one form: the commands that make sense for
/// its place (replication ones for a replica; relocation below another member, typed or picked
/// from the page's one list of members), each confirmed first. The engine's own checks refuse
/// the rest, in words.
fn instance_commands(c: &crate::topology::Cluster, m: &crate::topology::Member, token: &str) -> Markup {
    let key = &m.key;
    let replica = m.source.is_some();
    let below_source = m.source.as_ref().is_some_and(|s| Some(s) != c.master.as_ref());
    let has_others = c.members.len() > 1;
    html! {
        form.inline.command method="post" action=(format!("/ui/instances/{}/{}/command", key.host, key.port))
            data-confirm=(format!("Run this command on {key}?")) {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="cluster" value=(c.name);
            select name="command" aria-label=(format!("Command for {key}")) {
                @if replica {
                    option value="stop-replica" { "stop replication" }
                    option value="start-replica" { "start replication" }
                    option value="restart-replica" { "restart replication" }
                }
                option value="set-read-only" { "read_only on" }
                option value="set-writeable" { "read_only off" }
                @if below_source { option value="move-up" { "move up (below its source's source)" } }
                @if replica && has_others { option value="relocate" { "relocate below…" } }
            }
            @if replica && has_others {
                " " input type="text" name="below" list="members" placeholder="below host:port" size="16"
                    aria-label=(format!("Relocate {key} below"));
            }
            " " button type="submit" { "Run" }
        }
    }
}

#[derive(serde::Deserialize)]
struct CommandForm {
    csrf: String,
    cluster: String,
    command: String,
    #[serde(default)]
    below: String,
}

/// Back to a cluster's page (with `query`); a name that is not a plain cluster name goes to the
/// list.
fn back_to(cluster: &str, query: &str) -> Response {
    let plain = !cluster.is_empty() && cluster.chars().all(|c| c.is_ascii_alphanumeric() || "._:-[]".contains(c));
    see_other(&if plain { format!("/ui/clusters/{cluster}{query}") } else { "/".into() })
}

/// `POST /ui/instances/{host}/{port}/command`: runs the command (recorded like the API's), then
/// back to the cluster's page, which shows its outcome.
async fn instance_command(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((host, port)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Form(f): Form<CommandForm>,
) -> UiResult {
    use crate::engine::InstanceCommand;
    check_csrf(&headers, &f.csrf)?;
    let bad = |m: String| UiError(ApiError::BadRequest(m));
    let key = super::error::key_from_parts(&host, &port)?;
    let below = match f.below.trim() {
        "" => None,
        b => Some(b.parse::<crate::topology::InstanceKey>().map_err(|e| bad(format!("{b}: {e}")))?),
    };
    let cmd = InstanceCommand::parse(&f.command, below).map_err(|e| bad(e.to_string()))?;
    let (report, _) = s.engine.instance_command(&key, cmd, &format!("console {}", caller.who())).await;
    Ok(back_to(&f.cluster, &format!("?op={}", report.id)))
}

/// Where a browser without its token goes: the login page, then back.
pub fn to_login(path: &str) -> Response {
    let next = percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC);
    see_other(&format!("/ui/login?next={next}"))
}

#[derive(serde::Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
}

/// Only a path of this service: no scheme, no other host (`//host`), no backslash tricks.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && !p.contains("://") => p.into(),
        _ => "/".into(),
    }
}

async fn login_page(
    State(s): State<AppState>,
    Query(q): Query<LoginQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    use crate::config::AuthMode;
    let next = local_path(q.next.as_deref());
    let logged_in = super::auth::cookie(&headers, super::auth::TOKEN_COOKIE).is_some();
    let body = match s.auth.mode() {
        AuthMode::Token => html! {
            h1 { "Log in" }
            @if logged_in {
                p { "This browser holds a token. " }
                form method="post" action="/ui/logout" { button type="submit" { "Log out" } }
                h2 { "Another token" }
            }
            form.login method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label { "Token " input type="password" name="token" autocomplete="current-password" required autofocus; }
                " " button type="submit" { "Log in" }
            }
            p.muted { "The token is kept in an HttpOnly cookie of this site, for 12 hours or until you log out." }
        },
        AuthMode::Basic => html! {
            h1 { "Session" }
            p { "This service uses basic auth: the browser asked for your user and password, and keeps them until it is closed." }
            p { a href=(next) { "Back" } }
        },
        AuthMode::None => html! {
            h1 { "Session" }
            p { "This service needs no login (auth none: loopback callers only)." }
            p { a href=(next) { "Back" } }
        },
    };
    page("Log in", body)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /ui/login`: a token typed in; a good one is set as the `baton_token` cookie.
async fn login(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    Extension(client): Extension<super::ClientAddr>,
    Form(f): Form<LoginForm>,
) -> UiResult {
    // No credentials reach this route, so the cross-site checks the others get in the guard
    // happen here: another site cannot log this browser in.
    super::browser::check_state_changing(
        &axum::http::Method::POST,
        "/ui/login",
        &headers,
        &s.cfg.http.allowed_origins,
    )?;
    if s.auth.mode() != crate::config::AuthMode::Token {
        return Err(UiError(ApiError::BadRequest("this service does not use tokens (http.auth)".into())));
    }
    let token = f.token.trim();
    // A token is printable ASCII without separators: anything else cannot be one of ours, and
    // must never reach a header.
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',') {
        return Err(UiError(ApiError::Unauthorized));
    }
    s.auth.login_with_token(token, client.0)?;
    let https = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("https://"));
    let cookie =
        format!("{}={token}; Path=/; Max-Age=43200{}", super::auth::TOKEN_COOKIE, if https { "; Secure" } else { "" });
    Ok(with_cookie(see_other(&local_path(Some(&f.next))), cookie))
}

/// `POST /ui/logout`: the token cookie is dropped.
async fn logout(State(s): State<AppState>, headers: axum::http::HeaderMap) -> UiResult {
    // Like the login: another site cannot log this browser out either.
    super::browser::check_state_changing(
        &axum::http::Method::POST,
        "/ui/logout",
        &headers,
        &s.cfg.http.allowed_origins,
    )?;
    Ok(with_cookie(see_other("/ui/login"), format!("{}=; Path=/; Max-Age=0", super::auth::TOKEN_COOKIE)))
}
