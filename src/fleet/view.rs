//! The fleet as the cache shows it: instances grouped into clusters (the remembered clusters, and
//! whatever replication links join), each cluster built with the same rules as a live discovery
//! (`Cluster::build`), and its takeover readiness judged with the engine's own checks
//! (`plan::check_master`, the built-in candidate order, `plan::check_designated`). Pure: no I/O.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::engine::plan::{self, PlanInputs, Refused};
use crate::store::KnownCluster;
use crate::topology::{BuildOptions, Cluster, Instance, InstanceKey, ProbeOutcome};

/// What the cache holds about one instance.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The last successful probe.
    pub instance: Option<std::sync::Arc<Instance>>,
    /// Why the last probe failed (None: it succeeded).
    pub error: Option<String>,
    /// Seconds since the last successful probe (None: never).
    pub age_s: Option<f64>,
}

/// Would `takeover --auto` go ahead now, and to whom; or the check that refuses.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The replica the built-in order picks (a Lua policy may pick another).
    pub designated: Option<InstanceKey>,
    pub refused: Option<Refused>,
}

/// One cluster of the fleet view.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub alias: Option<String>,
    pub master: Option<InstanceKey>,
    pub members: usize,
    /// The most seconds behind among replicating members (None: none reports a lag).
    pub worst_lag_s: Option<u64>,
    pub problems: usize,
    pub readiness: Readiness,
    /// Seconds since the oldest successful probe among its reachable members, when this view
    /// was built (`age_s` adds the time since).
    #[serde(skip)]
    pub data_age_s: f64,
    #[serde(skip)]
    pub built_at: std::time::Instant,
    /// The cluster as built from the cache (members, problems).
    #[serde(skip)]
    pub cluster: Cluster,
}

/// Groups `cache` into clusters and judges each. `known`: the remembered clusters (their
/// members belong together even when unreachable, and their alias names them).
pub fn build(
    cache: &HashMap<InstanceKey, Cached>,
    known: &[KnownCluster],
    inputs: &PlanInputs,
    opts: BuildOptions,
    max_clock_skew_s: u64,
) -> Vec<ClusterView> {
    let keys: Vec<&InstanceKey> = cache.keys().collect();
    let index: HashMap<&InstanceKey, usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut sets = UnionFind::new(keys.len());
    let mut alias_of: HashMap<usize, Option<String>> = HashMap::new();
    for k in known {
        let ids: Vec<usize> = k.members.iter().filter_map(|m| index.get(m).copied()).collect();
        for w in ids.windows(2) {
            sets.union(w[0], w[1]);
        }
        if let Some(first) = ids.first() {
            alias_of.insert(*first, k.alias.clone());
        }
    }
    for (k, c) in cache {
        if let Some(src) = c.instance.as_ref().and_then(|i| i.source()).and_then(|s| index.get(s)) {
            sets.union(index[k], *src);
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..keys.len() {
        groups.entry(sets.find(i)).or_default().push(i);
    }
    let aliases: HashMap<usize, Option<String>> =
        alias_of.into_iter().map(|(member, alias)| (sets.find(member), alias)).collect();
    let mut views: Vec<ClusterView> = groups
        .into_iter()
        .map(|(root, members)| {
            let mut probes: BTreeMap<InstanceKey, ProbeOutcome> = BTreeMap::new();
            let mut age: f64 = 0.0;
            for &m in &members {
                let c = &cache[keys[m]];
                let outcome = match (&c.instance, &c.error) {
                    (Some(i), None) => {
                        age = age.max(c.age_s.unwrap_or(0.0));
                        Ok((**i).clone())
                    }
                    (_, Some(e)) => Err(e.clone()),
                    (None, None) => Err("not probed yet".to_string()),
                };
                probes.insert(keys[m].clone(), outcome);
            }
            let seed = probes.keys().next().cloned().expect("a group has a member");
            let alias = aliases.get(&root).cloned().flatten();
            let cluster = Cluster::build(&seed, probes, alias, opts);
            view(cluster, inputs, max_clock_skew_s, age)
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

fn view(cluster: Cluster, inputs: &PlanInputs, max_clock_skew_s: u64, data_age_s: f64) -> ClusterView {
    let worst_lag_s =
        cluster.members.iter().filter_map(|m| m.instance.as_ref()?.replication.as_ref()?.seconds_behind).max();
    ClusterView {
        name: cluster.name.clone(),
        alias: cluster.alias.clone(),
        master: cluster.master.clone(),
        members: cluster.members.len(),
        worst_lag_s,
        problems: cluster.problems.len(),
        readiness: readiness(&cluster, inputs, max_clock_skew_s),
        data_age_s,
        built_at: std::time::Instant::now(),
        cluster,
    }
}

impl ClusterView {
    /// Seconds since the oldest successful probe among its reachable members, now.
    pub fn age_s(&self) -> f64 {
        self.data_age_s + self.built_at.elapsed().as_secs_f64()
    }
}

/// The engine's checks, in its order, on the cached cluster.
pub fn readiness(cluster: &Cluster, inputs: &PlanInputs, max_clock_skew_s: u64) -> Readiness {
    let refuse = |r: Refused| Readiness { ready: false, designated: None, refused: Some(r) };
    let master = match plan::check_master(cluster, inputs, max_clock_skew_s) {
        Ok(m) => m,
        Err(r) => return refuse(r),
    };
    let designated = match plan::choose_candidate(cluster, &master, inputs) {
        Ok((d, _)) => d,
        Err(message) => return refuse(Refused { check: "eligible_replica".into(), instance: Some(master), message }),
    };
    let checks = plan::check_designated(cluster, &master, &designated, inputs);
    match checks.into_iter().find(|c| !c.ok) {
        Some(c) => Readiness {
            ready: false,
            designated: Some(designated),
            refused: Some(Refused { check: c.name, instance: Some(c.instance), message: c.detail }),
        },
        None => Readiness { ready: true, designated: Some(designated), refused: None },
    }
}

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> UnionFind {
        UnionFind { parent: (0..n).collect() }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}
