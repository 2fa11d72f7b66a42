//! Leadership among Baton nodes on etcd (issue 10): one node leads, by an etcd election on a
//! session lease. The leader answers `leader-check` 200; the others answer 404 and send the
//! requests that change anything to the leader (307).
//!
//! The etcd client's streams never reconnect by themselves: the lease keepalive, the campaign and
//! the leader lookups are each re-opened by the loop here, every receive is under a timeout, and a
//! node that cannot renew its lease within the TTL stops being the leader at once (before etcd
//! expires the lease, so two nodes never both believe they lead for longer than the margin).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use tracing::{info, warn};

/// The election's name under the store's prefix.
const ELECTION: &str = "leader";

/// How long this node may act as the leader: until its lease's last renewal (the time the
/// keepalive was sent) plus the TTL less a margin, by this machine's monotonic clock. A node that
/// was frozen (SIGSTOP, a stalled VM) wakes past its deadline and stops acting at once, before it
/// hears from etcd; etcd expires the lease no earlier than the TTL after that same renewal, so
/// a new leader is elected only once the old one has stopped. Cheap to clone and to ask.
#[derive(Clone, Default)]
pub struct Lease(Arc<Mutex<Option<Instant>>>);

impl Lease {
    /// Whether this node leads now (its deadline not passed).
    pub fn acting(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|until| Instant::now() < until)
    }

    /// How long this node may still act (None: it does not lead).
    pub fn remaining(&self) -> Option<Duration> {
        let until = (*self.0.lock().unwrap_or_else(|e| e.into_inner()))?;
        until.checked_duration_since(Instant::now())
    }

    /// A renewal while leading moves the deadline on (a node that does not lead stays so).
    fn renewed(&self, until: Instant) {
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if d.is_some() {
            *d = Some(until);
        }
    }

    fn lead_until(&self, until: Option<Instant>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

/// The part of the TTL a leader gives up, so that it stops before etcd expires its lease.
fn margin(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_millis(500))
}

pub struct Leadership {
    state: Arc<State>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct State {
    /// Set while leading, to the deadline of the last renewal.
    lease: Lease,
    /// The advertised URL of the node that leads, as last seen.
    leader_url: Mutex<Option<String>>,
    node_id: String,
    advertise_url: String,
    ttl_s: i64,
}

/// What `GET /api/v1/ha` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HaStatus {
    pub node_id: String,
    pub advertise_url: String,
    pub leader: bool,
    pub leader_url: Option<String>,
    pub lease_ttl_s: i64,
    /// While leading: how long it may act before its lease must have been renewed (ms).
    pub acting_for_ms: Option<u64>,
    /// The node sessions registered now (`node_id/lease`), from the shared store.
    pub nodes: Vec<String>,
}

/// Who campaigns, where.
pub struct Candidate {
    pub endpoints: Vec<String>,
    /// The store's key prefix (the election and node registrations live under it).
    pub prefix: String,
    pub node_id: String,
    pub advertise_url: String,
    pub ttl_s: i64,
}

impl Leadership {
    /// Starts campaigning: the node leads once the election picks it, until its lease is lost
    /// or it stops. `fence` gets this node's election key while it leads (the store's writes
    /// carry it); `lease` says until when it may act; `on_elected` runs each time it is elected.
    pub fn start(
        who: Candidate,
        fence: crate::store::Fence,
        lease: Lease,
        on_elected: Arc<dyn Fn() + Send + Sync>,
    ) -> Leadership {
        let Candidate { endpoints, prefix, node_id, advertise_url, ttl_s } = who;
        lease.lead_until(None);
        let state =
            Arc::new(State { lease, leader_url: Mutex::new(None), node_id, advertise_url, ttl_s: ttl_s.max(2) });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let name = format!("{}{ELECTION}", prefix.trim_end_matches('/').to_string() + "/");
        let task = tokio::spawn(campaign_loop(endpoints, name, state.clone(), stopped, fence, on_elected));
        Leadership { state, stop, task: Mutex::new(Some(task)) }
    }

    pub fn is_leader(&self) -> bool {
        self.state.lease.acting()
    }

    /// The leader's URL when another node leads (as last seen). Never this node's own URL while
    /// it does not lead (its lease lapsed): a follower must not send clients back to itself.
    pub fn leader_url(&self) -> Option<String> {
        let url = self.state.leader_url.lock().unwrap_or_else(|e| e.into_inner()).clone();
        url.filter(|u| self.is_leader() || *u != self.state.advertise_url)
    }

    pub fn status(&self) -> HaStatus {
        HaStatus {
            node_id: self.state.node_id.clone(),
            advertise_url: self.state.advertise_url.clone(),
            leader: self.is_leader(),
            leader_url: self.leader_url(),
            lease_ttl_s: self.state.ttl_s,
            acting_for_ms: self.state.lease.remaining().map(|d| d.as_millis() as u64),
            nodes: Vec::new(),
        }
    }

    /// Graceful shutdown: stop leading now (resign, revoke the lease) so that another node
    /// takes over without waiting for the lease to expire.
    pub async fn resign(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}

async fn connect(endpoints: &[String]) -> Option<Client> {
    // HTTP/2 keepalive at 10 s (etcd refuses less than 5 s); no global request timeout: it would
    // cancel the campaign, which blocks until this node is elected.
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    match tokio::time::timeout(Duration::from_secs(3), Client::connect(endpoints, Some(opts))).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            warn!(error = %e, "etcd: cannot connect for the election");
            None
        }
        Err(_) => None,
    }
}

async fn campaign_loop(
    endpoints: Vec<String>,
    name: String,
    state: Arc<State>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    fence: crate::store::Fence,
    on_elected: Arc<dyn Fn() + Send + Sync>,
) {
    let ttl = Duration::from_secs(state.ttl_s as u64);
    loop {
        if *stopped.borrow() {
            return;
        }
        let Some(client) = connect(&endpoints).await else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                _ = stopped.changed() => return,
            }
        };
        let mut c = client.clone();
        let granted = Instant::now();
        let lease = match tokio::time::timeout(ttl, c.lease_grant(state.ttl_s, None)).await {
            Ok(Ok(l)) => l.id(),
            _ => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // This node's session, alive while its lease is: how another node tells that a takeover
        // in the shared journal lost its owner (a node back on a new lease is a new session).
        let mut reg = client.clone();
        let session = format!("{}/{lease:x}", state.node_id);
        crate::engine::report::set_node_session(&session);
        let node_key = format!("{}nodes/{session}", name.trim_end_matches(ELECTION));
        let opts = etcd_client::PutOptions::new().with_lease(lease);
        let registered = tokio::time::timeout(ttl, reg.put(node_key, state.advertise_url.clone(), Some(opts))).await;
        if !matches!(registered, Ok(Ok(_))) {
            warn!(node = %state.node_id, "etcd: cannot register this node");
        }
        // The send time of the last renewal etcd acknowledged: the leader's deadline counts from it.
        let renewed = Arc::new(Mutex::new(granted));
        let mut keep = client.clone();
        let (rn, lease_of, eps) = (renewed.clone(), state.lease.clone(), endpoints.clone());
        let keepalive = async move {
            // The stream is re-opened when it breaks (an etcd member died: another one answers),
            // for as long as etcd may still hold the lease; a renewal answered with TTL 0 means
            // the lease is gone.
            loop {
                if Instant::now() >= *rn.lock().unwrap_or_else(|e| e.into_inner()) + ttl {
                    return;
                }
                let Ok(Ok((mut keeper, mut stream))) =
                    tokio::time::timeout(ttl / 3, keep.lease_keep_alive(lease)).await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Some(fresh) = connect(&eps).await {
                        keep = fresh;
                    }
                    continue;
                };
                loop {
                    let sent = Instant::now();
                    if keeper.keep_alive().await.is_err() {
                        break;
                    }
                    // An answer must come well within the TTL.
                    match tokio::time::timeout(ttl / 3, stream.message()).await {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => {
                            *rn.lock().unwrap_or_else(|e| e.into_inner()) = sent;
                            lease_of.renewed(sent + ttl - margin(ttl));
                        }
                        Ok(Ok(Some(_))) => return,
                        _ => break,
                    }
                    // Renew at a third of the TTL.
                    tokio::time::sleep(ttl / 3).await;
                }
            }
        };
        let mut camp = client.clone();
        let (value, st, nm, fc) = (state.advertise_url.clone(), state.clone(), name.clone(), fence.clone());
        let elected = on_elected.clone();
        let rn = renewed.clone();
        let campaign = async move {
            // Campaigning blocks until elected; a failed call (the member it went to died) is
            // made again on the same lease (etcd finds this node's key and keeps its place).
            loop {
                match camp.campaign(nm.as_str(), value.clone(), lease).await {
                    Ok(r) => {
                        if let Some(k) = r.leader() {
                            *fc.lock().unwrap_or_else(|e| e.into_inner()) = Some((k.key().to_vec(), k.rev()));
                        }
                        let last = *rn.lock().unwrap_or_else(|e| e.into_inner());
                        st.lease.lead_until(Some(last + ttl - margin(ttl)));
                        *st.leader_url.lock().unwrap_or_else(|e| e.into_inner()) = Some(st.advertise_url.clone());
                        info!(node = %st.node_id, "this node leads");
                        elected();
                        // Leads until the lease is lost or the node stops (the other branches).
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        warn!(error = %e, "etcd: the campaign call failed; campaigning again");
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        };
        let mut look = client.clone();
        let (st, nm) = (state.clone(), name.clone());
        let observe = async move {
            // Who leads, for followers' redirects: asked every second (a lookup, not a stream).
            // Unknown once etcd has not answered for a TTL (a follower then answers 503, rather
            // than sending clients to a node that may no longer lead).
            let mut answered = Instant::now();
            loop {
                if !st.lease.acting() {
                    match tokio::time::timeout(Duration::from_secs(1), look.leader(nm.as_str())).await {
                        Ok(Ok(r)) => {
                            answered = Instant::now();
                            let url = r.kv().map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                            *st.leader_url.lock().unwrap_or_else(|e| e.into_inner()) = url;
                        }
                        _ if answered.elapsed() > ttl => {
                            *st.leader_url.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        }
                        _ => {}
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::select! {
            _ = keepalive => warn!(node = %state.node_id, "etcd: the lease could not be renewed: not leading"),
            _ = campaign => {}
            _ = observe => {}
            _ = stopped.changed() => {
                state.lease.lead_until(None);
                // Revoking the lease deletes the election key: the next node is elected now.
                let mut c = client.clone();
                let _ = tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(lease)).await;
                info!(node = %state.node_id, "resigned");
                return;
            }
        }
        state.lease.lead_until(None);
        *state.leader_url.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut c = client.clone();
        let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(lease)).await;
        // Deposed: the stale election key stays the fence for two TTLs, so that whatever this node
        // was doing fails its next write; then, a follower, it writes unfenced again.
        let stale = fence.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if stale.is_some() {
            let fence = fence.clone();
            tokio::spawn(async move {
                tokio::time::sleep(ttl * 2).await;
                let mut f = fence.lock().unwrap_or_else(|e| e.into_inner());
                if *f == stale {
                    *f = None;
                }
            });
        }
    }
}
