//! The web console, served by `baton serve` itself: pages rendered on the server (maud), a small
//! script of our own for live updates, assets embedded in the binary (no CDN, no build step).
//! Same port and same auth as the API: every page is a read (role read); nothing that changes
//! state is reachable by GET.
//!
//! - `/`: every known cluster (the fleet poller's cache), filterable, refreshing itself;
//! - `/ui/clusters/{cluster}`: the live topology drawn as a tree (SVG), with its members' details;
//! - `/ui/takeovers`, `/ui/takeovers/{id}`: the history, and one takeover's phases on a time axis
//!   with the SQL per instance.

mod draw;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::{html, Markup, DOCTYPE};

use super::{ApiError, AppState, Caller};
use crate::engine::TakeoverReport;

const CSS: &str = include_str!("assets/baton.css");
const JS: &str = include_str!("assets/baton.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(clusters))
        .route("/ui", get(clusters))
        .route("/ui/fragments/clusters", get(clusters_rows))
        .route("/ui/clusters/{cluster}", get(topology))
        .route("/ui/takeovers", get(takeovers))
        .route("/ui/takeovers/{id}", get(takeover))
        .route("/ui/assets/baton.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/ui/assets/baton.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
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
                script src="/ui/assets/baton.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "Baton" }
                    nav { a href="/" { "Clusters" } a href="/ui/takeovers" { "Takeovers" } }
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
    let views = poller.views()?;
    let rows = crate::fleet::rows(&views, &s.engine.store.takeovers(None, 500)?);
    let shown: Vec<&crate::fleet::FleetRow> = rows
        .iter()
        .filter(|r| {
            q.as_ref().is_none_or(|q| {
                r.view.name.to_ascii_lowercase().contains(q)
                    || r.view.alias.as_deref().is_some_and(|a| a.to_ascii_lowercase().contains(q))
            })
        })
        .collect();
    let age = rows.iter().map(|r| r.data_age_s).fold(0.0, f64::max);
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

async fn topology(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(hint): Path<String>,
) -> UiResult {
    let c = super::native::discover(&s, caller, &hint).await?;
    let inputs = s.engine.plan_inputs()?;
    let extra = |k: &crate::topology::InstanceKey| {
        let rule = inputs.rules.get(k).map(|r| format!("rule {r}"));
        (rule, inputs.downtimed(k))
    };
    let picture = draw::topology(&c, &extra);
    Ok(page(
        &c.name,
        html! {
            h1 { "Cluster " (c.name) @if let Some(a) = &c.alias { " " span.alias { (a) } } }
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
                    thead { tr { th { "Instance" } th { "Source" } th { "read_only" } th { "IO / SQL" } th { "Lag" } th { "Version" } th { "Rule" } } }
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
                                td { (inputs.rules.get(&m.key).map(|r| r.to_string()).unwrap_or_else(|| "neutral".into())) }
                            }
                        }
                    }
                }
            }
        },
    ))
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
    let r = super::native::stored_report(&s, &id)?;
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
