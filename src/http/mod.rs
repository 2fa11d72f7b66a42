//! `baton serve`: the HTTP service (axum). Thin: it parses requests, checks auth, calls the
//! engine, discovery, the store and the Lua host, and shapes answers.
//!
//! - `native`: the JSON API under `/api/v1` (takeovers with dry runs and plan hashes, the event
//!   stream, audit, promotion rules, downtime, scripts) and `/healthz`, `/metrics`.
//! - `compat`: orchestrator's routes under `/api`, answering in orchestrator's shapes so that
//!   `orchestrator-client` can point at Baton.
//! - `auth`, `error`, `metrics`, `track` (takeovers in flight and their events).
//!
//! Architecture invariant: only this module knows routes and JSON shapes of the service; it holds
//! no takeover logic.

pub mod auth;
pub mod browser;
pub mod compat;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod native;
pub mod orc_shapes;
pub mod track;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::{info, warn};

use crate::config::{AuthMode, Config, Role};
use crate::engine::Engine;
use crate::lua::{Env, ReloadEvent, ScriptHost};
use crate::store::Store;
use auth::Auth;
use error::ApiError;
use metrics::Metrics;
use track::Tracks;

/// Everything a handler reaches.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub engine: Engine,
    pub scripts: Arc<ScriptHost>,
    pub metrics: Arc<Metrics>,
    pub tracks: Arc<Tracks>,
    pub auth: Arc<Auth>,
    /// Several nodes on etcd: this node's part in the election. None: one node, always leads.
    pub ha: Option<Arc<crate::ha::Leadership>>,
    /// The fleet poller (`discovery.poll_interval_s` > 0 under `baton serve`): the fleet view,
    /// the orchestrator listing routes and the fleet metrics read its cache. None: those
    /// discover live (the listing routes) or are unavailable (the fleet view).
    pub fleet: Option<crate::fleet::Poller>,
}

impl AppState {
    /// Builds the state from the config: store, connector, scripts (which must load).
    pub async fn new(cfg: &Config) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
        AppState::new_fenced(cfg, crate::store::Fence::default()).await
    }

    /// `new`, the store's writes fenced by this node's election key while it leads.
    pub async fn new_fenced(
        cfg: &Config,
        fence: crate::store::Fence,
    ) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
        let store: Arc<dyn Store> = crate::store::open_fenced(cfg, fence)?;
        let env = Env::new(cfg, store);
        let scripts = ScriptHost::start(env.clone()).await?;
        let engine = Engine::new(env.cfg.clone(), env.connector.clone(), env.store.clone(), scripts.clone());
        Ok(AppState {
            cfg: env.cfg.clone(),
            engine,
            scripts,
            metrics: Arc::new(Metrics::new()),
            tracks: Arc::new(Tracks::default()),
            auth: Arc::new(Auth::new(&cfg.http)),
            ha: None,
            fleet: None,
        })
    }
}

/// The whole service: native routes, orchestrator routes (unless switched off), auth, limits,
/// request metrics, JSON 404s.
pub fn router(state: AppState) -> Router {
    let mut app = native::routes().merge(ui::routes());
    if state.cfg.http.orchestrator_routes {
        app = app.merge(compat::routes());
    }
    let timeout = Duration::from_millis(state.cfg.http.request_timeout_ms);
    let orchestrator = state.cfg.http.orchestrator_routes;
    app.fallback(move |uri: axum::http::Uri| async move {
        let path = uri.path();
        if orchestrator && path.starts_with("/api/") && path != "/api/v1" && !path.starts_with("/api/v1/") {
            compat::unsupported(uri).await
        } else {
            ApiError::NotFound("no such route".into()).into_response()
        }
    })
    .layer(middleware::from_fn_with_state(state.clone(), guard))
    .layer(RequestBodyLimitLayer::new(state.cfg.http.max_body_bytes))
    .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
    .with_state(state)
}

/// The role of the request's caller, for handlers whose reach depends on it (a read-role caller's
/// discovery reaches only servers Baton knows: `discovery::Reach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The caller's address, when the connection loop knows it.
    pub client: Option<std::net::IpAddr>,
}

impl Caller {
    /// Who asked, for the record of a change: `http:<role>@<address>`.
    pub fn who(&self) -> String {
        let role = match self.role {
            Role::Admin => "admin",
            Role::Read => "read",
        };
        format!("http:{role}@{}", self.client.map(|c| c.to_string()).unwrap_or_else(|| "local".into()))
    }

    /// Where this caller's reads may connect.
    pub fn reach(&self, s: &AppState) -> Result<crate::discovery::Reach, ApiError> {
        match self.role {
            Role::Admin => Ok(crate::discovery::Reach::Any),
            Role::Read => Ok(crate::discovery::Reach::known(&s.cfg, s.engine.store.as_ref())?),
        }
    }
}

/// The caller's address on the routes that need no credentials (the login form's back-off).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

/// Auth first (and the cross-site refusal for changes), then the handler; every answer is
/// counted by route and status code.
async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let path = req.uri().path().to_string();
    // The console's login page and its assets need no credentials (the login form passes the
    // cross-site checks in its handler).
    let open = matches!(path.as_str(), "/healthz" | "/metrics" | "/ui/login" | "/ui/logout")
        || path.starts_with("/ui/assets/");
    let resp = match open {
        true => {
            let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
            req.extensions_mut().insert(ClientAddr(client));
            next.run(req).await
        }
        false => {
            let needed = Auth::needed(req.method(), &path);
            let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
            let checked = state.auth.check(req.headers(), needed, client, &path).await.and_then(|role| match needed {
                Role::Admin => {
                    browser::check_state_changing(req.method(), &path, req.headers(), &state.cfg.http.allowed_origins)
                        .map(|()| role)
                }
                Role::Read => Ok(role),
            });
            match checked {
                // A follower sends what changes anything to the leader (307: same method, same
                // body), so that any node's URL works for clients.
                Ok(_) if needed == Role::Admin && state.ha.as_ref().is_some_and(|h| !h.is_leader()) => {
                    follower_redirect(&state, &req)
                }
                Ok(role) => {
                    req.extensions_mut().insert(Caller { role, client });
                    next.run(req).await
                }
                // A browser without its token cookie is sent to the console's login page.
                Err(ApiError::Unauthorized)
                    if state.auth.mode() == crate::config::AuthMode::Token
                        && req.method() == axum::http::Method::GET
                        && auth::is_console(&path) =>
                {
                    ui::to_login(&path)
                }
                Err(e) => e.into_response(),
            }
        }
    };
    state.metrics.request(&route, resp.status().as_u16());
    resp
}

/// What a node does while it leads (started each time it is elected, ends when it stops
/// leading): settles the interrupted takeovers in the shared journal (a node that died, or whose
/// lease lapsed, mid-takeover) by the usual recovery rules, trying again with back-off those that
/// cannot be settled yet (a server unreachable for a moment), and prunes the audit past
/// `ha.audit_retention_days`.
fn lead_while_elected(engine: crate::engine::Engine) -> Arc<dyn Fn() + Send + Sync> {
    use std::sync::atomic::Ordering::SeqCst;
    let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Arc::new(move || {
        if running.swap(true, SeqCst) {
            return; // the previous term's loop is still running: it carries on
        }
        let (engine, running) = (engine.clone(), running.clone());
        tokio::spawn(async move {
            loop {
                lead(&engine).await;
                running.store(false, SeqCst);
                // Elected again while winding down: this loop goes on (the election saw it running).
                if !engine.may_act() || running.swap(true, SeqCst) {
                    return;
                }
            }
        });
    })
}

/// One term of leadership's background work (see `lead_while_elected`).
async fn lead(engine: &crate::engine::Engine) {
    use tokio::time::Instant;
    let retention_ms = engine.cfg.ha.audit_retention_days as i64 * 86_400_000;
    let (mut next_scan, mut next_prune) = (Instant::now(), Instant::now());
    // Takeovers that could not be settled yet: when to try again, and the back-off.
    let mut retry: std::collections::HashMap<String, (Instant, Duration)> = Default::default();
    while engine.may_act() {
        // The journal is read in full on election and every minute after (only the leader runs
        // takeovers, so new interrupted ones are rare: a `baton takeover` CLI process that died).
        if Instant::now() >= next_scan {
            match tokio::task::block_in_place(|| engine.interrupted()) {
                Ok(list) => {
                    for r in list {
                        retry.entry(r.id).or_insert((Instant::now(), Duration::from_secs(1)));
                    }
                }
                Err(e) => warn!(error = %e, "leading, but the journal cannot be read"),
            }
            next_scan = Instant::now() + Duration::from_secs(60);
        }
        let due: Vec<String> =
            retry.iter().filter(|(_, (at, _))| *at <= Instant::now()).map(|(id, _)| id.clone()).collect();
        for id in due {
            match engine.recover(&id, crate::engine::RecoverMode::Auto).await {
                Ok(done) => {
                    retry.remove(&id);
                    warn!(id = %done.id, status = done.status.as_str(), "the leader settled an interrupted takeover");
                }
                Err(e @ (crate::engine::RecoverError::Finished { .. } | crate::engine::RecoverError::NotFound(_))) => {
                    retry.remove(&id);
                    info!(%id, error = %e, "nothing to settle");
                }
                Err(e) => {
                    let wait =
                        retry.get(&id).map_or(Duration::from_secs(2), |(_, d)| (*d * 2).min(Duration::from_secs(60)));
                    warn!(%id, error = %e, retry_in_s = wait.as_secs(), "the leader could not settle an interrupted takeover yet");
                    retry.insert(id, (Instant::now() + wait, wait));
                }
            }
        }
        if retention_ms > 0 && Instant::now() >= next_prune {
            let before = crate::store::now_unix_ms() - retention_ms;
            match tokio::task::block_in_place(|| engine.store.prune_audit(before)) {
                Ok(0) => {}
                Ok(n) => info!(records = n, days = engine.cfg.ha.audit_retention_days, "pruned the audit"),
                Err(e) => warn!(error = %e, "cannot prune the audit"),
            }
            next_prune = Instant::now() + Duration::from_secs(3600);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Settles each interrupted takeover the safe way (`engine::recover`); those that need an
/// operator stay listed in the audit. `when` says what prompted it, in the log.
async fn settle(engine: &crate::engine::Engine, interrupted: Vec<crate::engine::TakeoverReport>, when: &str) {
    for r in interrupted {
        match engine.recover(&r.id, crate::engine::RecoverMode::Auto).await {
            Ok(done) => warn!(id = %done.id, status = done.status.as_str(), %when, "settled an interrupted takeover"),
            Err(e) => warn!(id = %r.id, error = %e, %when, "could not settle an interrupted takeover"),
        }
    }
}

/// 307 to the same path on the leader; 503 while no leader is known (an election under way).
fn follower_redirect(state: &AppState, req: &Request) -> Response {
    let leader = state.ha.as_ref().and_then(|h| h.leader_url());
    match leader {
        Some(url) => {
            let target = format!(
                "{}{}",
                url.trim_end_matches('/'),
                req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            (axum::http::StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, target)]).into_response()
        }
        None => ApiError::Unavailable(
            "this node does not lead, and no leader is known: an election is under way, or etcd cannot be reached \
             (GET /api/v1/ha shows this node's view); nothing was changed"
                .into(),
        )
        .into_response(),
    }
}

/// Runs the service until Ctrl-C or SIGTERM. Scripts reload on change and SIGHUP.
pub async fn serve(cfg: &Config, listen: Option<&str>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listen = listen.unwrap_or(&cfg.http.listen);
    let addr: SocketAddr = listen.parse().map_err(|e| format!("http.listen '{listen}': {e}"))?;
    // Refuse before binding what `run` would refuse after.
    check_auth(cfg, addr)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    run(cfg, listener, shutdown()).await
}

fn check_auth(cfg: &Config, addr: SocketAddr) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if cfg.http.auth == AuthMode::None && !addr.ip().is_loopback() {
        return Err(format!(
            "http.auth = \"none\" is allowed only on a loopback address, not {addr}: configure basic or token auth"
        )
        .into());
    }
    Ok(())
}

/// The service on `listener` until `shutdown` resolves (as mini-redis's `server::run`): settles
/// interrupted takeovers, watches the scripts, serves, then lets running takeovers finish (a
/// takeover is never cut short by a shutdown) before it returns.
pub async fn run(
    cfg: &Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = listener.local_addr()?;
    check_auth(cfg, addr)?;
    let fence = crate::store::Fence::default();
    let mut state = AppState::new_fenced(cfg, fence.clone()).await?;
    if !cfg.ha.etcd_endpoints.is_empty() {
        let node_id = if cfg.ha.node_id.is_empty() {
            format!("{}:{}", crate::engine::report::host_name(), addr.port())
        } else {
            cfg.ha.node_id.clone()
        };
        let advertise =
            if cfg.ha.advertise_url.is_empty() { format!("http://{addr}") } else { cfg.ha.advertise_url.clone() };
        info!(%node_id, %advertise, "campaigning for leadership on etcd");
        let lease = crate::ha::Lease::default();
        state.engine = state.engine.clone().leading_by(lease.clone());
        let who = crate::ha::Candidate {
            endpoints: cfg.ha.etcd_endpoints.clone(),
            prefix: cfg.ha.prefix.clone(),
            node_id,
            advertise_url: advertise,
            ttl_s: cfg.ha.lease_ttl_s as i64,
        };
        state.ha =
            Some(Arc::new(crate::ha::Leadership::start(who, fence, lease, lead_while_elected(state.engine.clone()))));
    }
    if cfg.discovery.poll_interval_s > 0 {
        state.fleet = Some(crate::fleet::Poller::start(state.cfg.clone(), state.engine.store.clone()));
    }
    let fleet = state.fleet.clone();
    let ha = state.ha.clone();
    // Records that cannot be read are skipped everywhere; say which, so an operator can look.
    for d in state.engine.store.damaged()? {
        warn!(table = %d.table, id = %d.id, error = %d.error, "a damaged record needs an operator (baton store check / repair)");
    }
    // With several nodes on etcd, the leader settles interrupted takeovers, each time it is
    // elected (see the election below); a single node does it now.
    if ha.is_some() {
        info!("interrupted takeovers are settled by the leader");
    } else {
        // Takeovers whose process died (this server, killed mid-takeover): settle them now, the safe
        // way (see engine::recover); those that need an operator stay listed in the audit.
        settle(&state.engine, state.engine.interrupted()?, "startup").await;
        // A takeover whose owner is still exiting (a previous process on this host): settle it as
        // soon as that process is gone, without holding up the start.
        for (id, pid) in state.engine.owned_by_live_process()? {
            let engine = state.engine.clone();
            tokio::spawn(async move {
                info!(%id, pid, "waiting for the previous owner of a running takeover to exit");
                if !crate::process::wait_exit(pid, Duration::from_secs(300)).await {
                    warn!(%id, pid, "the takeover's owner is still running after 5 minutes; settle it with baton takeover recover");
                    return;
                }
                match engine.recover(&id, crate::engine::RecoverMode::Auto).await {
                    Ok(done) => {
                        warn!(id = %done.id, status = done.status.as_str(), "settled a takeover after its owner exited")
                    }
                    Err(crate::engine::RecoverError::Finished { .. }) => {
                        info!(%id, "the takeover's owner finished it before exiting")
                    }
                    Err(e) => warn!(%id, error = %e, "could not settle a takeover after its owner exited"),
                }
            });
        }
    }
    let _watch = crate::lua::watch::watch(state.scripts.clone())?;
    // Count reloads for /metrics.
    let (mut reloads, metrics) = (state.scripts.subscribe(), state.metrics.clone());
    tokio::spawn(async move {
        while let Ok(ev) = reloads.recv().await {
            metrics.script_reload(matches!(ev, ReloadEvent::Loaded { .. }));
        }
    });
    info!(%addr, auth = ?cfg.http.auth, orchestrator_routes = cfg.http.orchestrator_routes, "baton serve listening");
    let tracks = state.tracks.clone();
    let limits = listen::ConnLimits {
        max_connections: cfg.http.max_connections,
        header_read_timeout: Duration::from_millis(cfg.http.header_read_timeout_ms),
    };
    listen::serve(listener, router(state), limits, shutdown).await;
    if let Some(f) = fleet {
        f.stop();
    }
    // A takeover started with wait=false is never cut short by a shutdown.
    tracks.wait_idle().await;
    // Then let another node lead at once.
    if let Some(ha) = ha {
        ha.resign().await;
    }
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no SIGTERM handler");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
}
