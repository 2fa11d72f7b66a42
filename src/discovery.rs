//! Discovery: from any member, find the whole cluster by walking to sources and reported replicas,
//! probing in parallel (bounded), each instance with its own timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use futures::stream::{self, StreamExt};
use tracing::debug;

use crate::config::Config;
use crate::mysql::{self, Connector, SqlError};
use crate::store::{KnownCluster, Store, StoreError};
use crate::topology::{BuildOptions, Cluster, InstanceKey, KeyError, ProbeOutcome, Problem, ProblemKind};

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot discover a cluster from {seed}: {source}")]
    SeedUnreachable { seed: InstanceKey, source: Box<SqlError> },
    #[error("'{0}' is neither host:port nor a known cluster alias or name")]
    UnknownHint(String),
    #[error(transparent)]
    BadKey(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a member of a cluster Baton knows, nor in discovery.allowed: reaching a new server is an admin action")]
    NotAllowed(InstanceKey),
}

/// Where a discovery may connect (and so send Baton's credentials): anywhere, for an admin, the
/// CLI and the engine; or only to members of clusters Baton already knows and to what
/// `discovery.allowed` lists, for a read-role caller.
#[derive(Debug, Clone)]
pub enum Reach {
    Any,
    Known { known: BTreeSet<InstanceKey>, allowed: Vec<HostPattern> },
}

/// One entry of `discovery.allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// An address block; matches hosts written as addresses in it.
    Cidr(IpAddr, u8),
    /// A host name with `*` wildcards, matched case-insensitively against the host as written.
    Host(String),
}

impl Reach {
    /// A read-role caller's reach: the members of remembered clusters, the configured alias
    /// targets, and `discovery.allowed`.
    pub fn known(cfg: &Config, store: &dyn Store) -> Result<Reach, DiscoveryError> {
        let mut known: BTreeSet<InstanceKey> = store.clusters()?.into_iter().flat_map(|c| c.members).collect();
        known.extend(cfg.aliases.values().filter_map(|t| t.parse().ok()));
        let allowed = cfg.discovery.allowed.iter().filter_map(|p| Reach::parse_pattern(p).ok()).collect();
        Ok(Reach::Known { known, allowed })
    }

    pub fn parse_pattern(text: &str) -> Result<HostPattern, String> {
        let t = text.trim();
        if let Some((ip, bits)) = t.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|e| format!("'{text}': {e}"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {max}"))?;
            return Ok(HostPattern::Cidr(ip, bits));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(HostPattern::Cidr(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        let ok = !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || "-._*".contains(c)) && t != "*";
        if !ok {
            return Err(format!(
                "'{text}' is neither a CIDR nor a host pattern (letters, digits, - . _ and *; not * alone)"
            ));
        }
        Ok(HostPattern::Host(t.to_ascii_lowercase()))
    }

    pub fn permits(&self, key: &InstanceKey) -> bool {
        match self {
            Reach::Any => true,
            Reach::Known { known, allowed } => known.contains(key) || allowed.iter().any(|p| p.matches(&key.host)),
        }
    }
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Cidr(net, bits) => {
                let Ok(ip) = host.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() else { return false };
                match (net, ip) {
                    (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
                    (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
                    _ => false,
                }
            }
            HostPattern::Host(p) => glob(p.as_bytes(), host.to_ascii_lowercase().as_bytes()),
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (full, rest) = ((bits / 8) as usize, bits % 8);
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// `*` matches any run of characters (iterative, no backtracking blow-up).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// Where to start discovering a cluster named by a hint: a configured alias, an alias or cluster
/// name remembered from an earlier discovery, or `host:port` of any member. The first key is the
/// one the hint names; the others are remembered members (so that a replica whose replication is
/// stopped, and which its master therefore no longer lists, is still found).
pub fn resolve_hint(hint: &str, cfg: &Config, store: &dyn Store) -> Result<Vec<InstanceKey>, DiscoveryError> {
    let hint = hint.trim();
    let mut seeds: Vec<InstanceKey> = Vec::new();
    let remembered = if let Some(target) = cfg.aliases.get(hint) {
        let key: InstanceKey = target.parse()?;
        seeds.push(key.clone());
        store.cluster_of(&key)?
    } else if let Some(known) = store.find_cluster(hint)? {
        if let Ok(k) = known.name.parse::<InstanceKey>() {
            seeds.push(k);
        }
        Some(known)
    } else if hint.contains(':') {
        let key: InstanceKey = hint.parse()?;
        seeds.push(key.clone());
        store.cluster_of(&key)?
    } else {
        return Err(DiscoveryError::UnknownHint(hint.to_string()));
    };
    for m in remembered.map(|k| k.members).unwrap_or_default() {
        if !seeds.contains(&m) {
            seeds.push(m);
        }
    }
    if seeds.is_empty() {
        return Err(DiscoveryError::UnknownHint(hint.to_string()));
    }
    Ok(seeds)
}

/// Resolves `hint`, discovers the cluster, and remembers it (name, alias, members) for next time.
pub async fn discover_hint(
    connector: &Connector,
    cfg: &Config,
    store: &dyn Store,
    hint: &str,
) -> Result<Cluster, DiscoveryError> {
    discover_hint_within(connector, cfg, store, hint, &Reach::Any).await
}

/// `discover_hint`, connecting only where `reach` permits.
pub async fn discover_hint_within(
    connector: &Connector,
    cfg: &Config,
    store: &dyn Store,
    hint: &str,
    reach: &Reach,
) -> Result<Cluster, DiscoveryError> {
    let seeds = resolve_hint(hint, cfg, store)?;
    let mut cluster = discover_within(connector, cfg, &seeds, reach).await?;
    remember(store, cfg, &mut cluster)?;
    Ok(cluster)
}

/// Records what discovery found, so the alias and the members can be found again.
///
/// An alias belongs to one cluster: the one `[aliases]` names, else the first remembered with it.
/// A cluster whose servers claim an alias another cluster owns (a staging clone restored from a
/// production backup answers the alias query with production's alias) keeps no alias: the claim
/// is a problem on it, and on the owner when it is discovered next; only `move_alias` (an admin
/// action) moves the alias.
pub fn remember(store: &dyn Store, cfg: &Config, cluster: &mut Cluster) -> Result<(), StoreError> {
    let Some(master) = cluster.master.clone() else {
        return Ok(()); // nothing stable to name it by
    };
    let members: Vec<InstanceKey> = cluster.members.iter().map(|m| m.key.clone()).collect();
    // The servers named no alias (no alias query, or its row is missing): the alias the cluster
    // owns already stays with it (only an admin moves an alias).
    if cluster.alias.is_none() {
        cluster.alias = store.cluster_of(&master)?.and_then(|k| k.alias);
    }
    let mut claimed_alias = None;
    if let Some(alias) = cluster.alias.clone() {
        let owner = match cfg.aliases.get(&alias) {
            Some(target) => Some((target.clone(), target.parse::<InstanceKey>().is_ok_and(|k| members.contains(&k)))),
            None => store
                .find_cluster(&alias)?
                .filter(|o| o.alias.as_deref() == Some(alias.as_str()))
                .map(|o| (o.name.clone(), o.name == cluster.name || o.members.iter().any(|m| members.contains(m)))),
        };
        if let Some((owner, false)) = owner {
            cluster.problems.push(Problem {
                instance: master.clone(),
                kind: ProblemKind::AliasConflict,
                message: format!(
                    "this cluster's servers claim alias '{alias}', which belongs to cluster {owner}; the alias still resolves there \
                     (an admin moves it: baton alias move {alias} {})",
                    cluster.name
                ),
            });
            cluster.alias = None;
            claimed_alias = Some(alias);
        }
    }
    if let Some(alias) = &cluster.alias {
        for other in store
            .clusters()?
            .into_iter()
            .filter(|o| o.claimed_alias.as_deref() == Some(alias) && o.name != cluster.name)
        {
            cluster.problems.push(Problem {
                instance: master.clone(),
                kind: ProblemKind::AliasConflict,
                message: format!(
                    "cluster {} claims this cluster's alias '{alias}' too (a clone of it?); the alias stays here",
                    other.name
                ),
            });
        }
    }
    store.remember_cluster(&KnownCluster {
        name: cluster.name.clone(),
        alias: cluster.alias.clone(),
        members,
        claimed_alias,
        seen_at: 0,
    })
}

/// Forgets remembered clusters none of whose members has answered for
/// `discovery.forget_after_s`: each one not seen for that long is discovered again from its
/// members; found, it is remembered anew, not found, it is dropped. The names of those dropped.
pub async fn forget_unseen(
    connector: &Connector,
    cfg: &Config,
    store: &dyn Store,
) -> Result<Vec<String>, DiscoveryError> {
    let now = crate::store::now_unix();
    let stale: Vec<KnownCluster> =
        store.clusters()?.into_iter().filter(|c| now - c.seen_at >= cfg.discovery.forget_after_s as i64).collect();
    let checks = stale.iter().map(|c| async move { (c, discover(connector, cfg, &c.members).await) });
    let mut forgotten = Vec::new();
    for (c, found) in futures::future::join_all(checks).await {
        match found {
            Ok(mut live) if live.members.iter().any(|m| m.instance.is_some()) => remember(store, cfg, &mut live)?,
            _ => {
                debug!(cluster = %c.name, "no member answers: forgotten");
                store.forget_cluster(&c.name)?;
                forgotten.push(c.name.clone());
            }
        }
    }
    Ok(forgotten)
}

/// Discovers the cluster that `seeds[0]` belongs to; the other seeds are probed too and kept when
/// they are connected to it by replication. An unreachable member is reported in the cluster's
/// problems; only a first seed that cannot be probed, with nothing else found, is an error.
pub async fn discover(connector: &Connector, cfg: &Config, seeds: &[InstanceKey]) -> Result<Cluster, DiscoveryError> {
    discover_within(connector, cfg, seeds, &Reach::Any).await
}

/// `discover`, connecting only where `reach` permits: a first seed outside it is an error; any
/// other server outside it (a replica some member reports) is listed unprobed, with why.
pub async fn discover_within(
    connector: &Connector,
    cfg: &Config,
    seeds: &[InstanceKey],
    reach: &Reach,
) -> Result<Cluster, DiscoveryError> {
    let Some(first) = seeds.first().cloned() else {
        return Err(DiscoveryError::UnknownHint(String::new()));
    };
    if !reach.permits(&first) {
        return Err(DiscoveryError::NotAllowed(first));
    }
    let mut probes: BTreeMap<InstanceKey, ProbeOutcome> = BTreeMap::new();
    let mut first_error: Option<SqlError> = None;
    let mut seen: BTreeSet<InstanceKey> = seeds.iter().cloned().collect();
    let mut frontier: Vec<InstanceKey> = seeds.to_vec();

    while !frontier.is_empty() {
        let (outside, inside): (Vec<InstanceKey>, Vec<InstanceKey>) =
            frontier.drain(..).partition(|k| !reach.permits(k));
        for k in outside {
            let why = format!("not probed: {k} is not a member of a cluster Baton knows, nor in discovery.allowed (an admin's discovery reaches it)");
            probes.insert(k, Err(why));
        }
        let results: Vec<(InstanceKey, Result<_, SqlError>)> = stream::iter(inside)
            .map(|k| async move {
                let r = mysql::probe(connector, &k).await;
                (k, r)
            })
            .buffer_unordered(cfg.discovery.max_parallel)
            .collect()
            .await;
        for (key, result) in results {
            match result {
                Ok(inst) => {
                    debug!(instance = %key, ms = inst.probe_ms, "probed");
                    let next = inst.source().into_iter().chain(inst.reported_replicas.iter());
                    for k in next {
                        if seen.insert(k.clone()) {
                            frontier.push(k.clone());
                        }
                    }
                    probes.insert(key, Ok(inst));
                }
                Err(e) => {
                    debug!(instance = %key, error = %e, "probe failed");
                    probes.insert(key.clone(), Err(e.to_string()));
                    if key == first && first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
    }

    if probes.values().all(|p| p.is_err()) {
        if let Some(e) = first_error {
            return Err(DiscoveryError::SeedUnreachable { seed: first, source: Box::new(e) });
        }
    }

    keep_connected(&mut probes, &first);
    let opts = BuildOptions { lag_threshold_s: cfg.discovery.lag_threshold_s };
    let mut cluster = Cluster::build(&first, probes, None, opts);
    cluster.alias = find_alias(connector, cfg, &cluster).await;
    Ok(cluster)
}

/// The cluster's alias: a configured alias naming one of its members, else the answer of the
/// alias query on the master.
async fn find_alias(connector: &Connector, cfg: &Config, cluster: &Cluster) -> Option<String> {
    for (alias, target) in &cfg.aliases {
        if target.parse::<InstanceKey>().is_ok_and(|k| cluster.has_member(&k)) {
            return Some(alias.clone());
        }
    }
    let query = cfg.discovery.alias_query.trim();
    let master = cluster.master.as_ref().filter(|m| cluster.instance(m).is_some())?;
    if query.is_empty() {
        return None;
    }
    match connector.query(master, query).await {
        Ok(rows) => rows.first().and_then(|r| r.first()).filter(|a| !a.is_empty()).map(str::to_string),
        Err(e) => {
            debug!(instance = %master, error = %e, "alias query failed; no alias");
            None
        }
    }
}

/// Drops reachable instances that are not connected by replication (in either direction) to `first`
/// or to an unreachable member: remembered members that have left the cluster since. An unreachable
/// remembered member stays (nothing shows it left), and so does whatever replicates from it.
fn keep_connected(probes: &mut BTreeMap<InstanceKey, ProbeOutcome>, first: &InstanceKey) {
    let edges: Vec<(InstanceKey, InstanceKey)> =
        probes.iter().filter_map(|(k, p)| Some((k.clone(), p.as_ref().ok()?.source()?.clone()))).collect();
    let mut keep: BTreeSet<InstanceKey> = BTreeSet::from([first.clone()]);
    keep.extend(probes.iter().filter(|(_, p)| p.is_err()).map(|(k, _)| k.clone()));
    loop {
        let before = keep.len();
        for (a, b) in &edges {
            if keep.contains(a) || keep.contains(b) {
                keep.insert(a.clone());
                keep.insert(b.clone());
            }
        }
        if keep.len() == before {
            break;
        }
    }
    probes.retain(|k, _| keep.contains(k));
}
