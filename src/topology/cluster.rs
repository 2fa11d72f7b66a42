//! The cluster: members found by discovery, arranged as a replication tree, with its problems.
//!
//! `Cluster::build` is pure: discovery hands it what each probe returned and it decides who is the
//! master, the depth of every replica, and what is wrong.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::instance::Instance;
use super::key::InstanceKey;

/// What went wrong in a cluster, attached to the instance it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Unreachable,
    NoMaster,
    MultipleMasters,
    CoMaster,
    ReplicationStopped,
    ReplicationBroken,
    Lagging,
    SecondWritable,
    SourceOutsideCluster,
    ErrantGtid,
    /// The cluster's servers claim an alias another cluster owns (or another cluster claims its).
    AliasConflict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub instance: InstanceKey,
    pub kind: ProblemKind,
    pub message: String,
}

/// One member of the cluster: reachable (with its probe) or not (with the error).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub key: InstanceKey,
    /// 0 for the master, 1 for its direct replicas, ...; None when not attached to the master.
    pub depth: Option<u32>,
    /// Where it replicates from, when known.
    pub source: Option<InstanceKey>,
    pub instance: Option<Instance>,
    pub error: Option<String>,
}

impl Member {
    pub fn reachable(&self) -> bool {
        self.instance.is_some()
    }
}

/// Thresholds that turn observations into problems.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    pub lag_threshold_s: u64,
}

/// A replication cluster as seen at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    /// The master's `host:port` (orchestrator's cluster name), or the seed's when no master is known.
    pub name: String,
    pub alias: Option<String>,
    pub master: Option<InstanceKey>,
    /// Sorted by depth, then key; members not attached to the master come last.
    pub members: Vec<Member>,
    pub problems: Vec<Problem>,
}

/// What a probe of one key returned.
pub type ProbeOutcome = Result<Instance, String>;

impl Cluster {
    /// Builds the cluster from probe outcomes. `seed` names the cluster when no master is found;
    /// `reported_sources` are the sources other members say an unreachable key replicates from
    /// (unknown here, so unreachable members have no source).
    pub fn build(
        seed: &InstanceKey,
        probes: BTreeMap<InstanceKey, ProbeOutcome>,
        alias: Option<String>,
        opts: BuildOptions,
    ) -> Cluster {
        let mut problems = Vec::new();
        let source_of = |k: &InstanceKey| -> Option<InstanceKey> {
            probes.get(k).and_then(|p| p.as_ref().ok()).and_then(|i| i.source().cloned())
        };

        // Master candidates: reachable members without a source, and unreachable members that
        // others replicate from (we cannot tell where those replicate from).
        let mut roots: BTreeSet<InstanceKey> = BTreeSet::new();
        for (k, p) in &probes {
            match p {
                Ok(i) if i.replication.is_none() => {
                    roots.insert(k.clone());
                }
                Err(_) if probes.values().any(|o| o.as_ref().ok().and_then(|i| i.source()) == Some(k)) => {
                    roots.insert(k.clone());
                }
                _ => {}
            }
        }

        // Co-master rings: walking up from a member comes back to a member already on the path.
        let mut ring: BTreeSet<InstanceKey> = BTreeSet::new();
        for k in probes.keys() {
            let mut path = vec![k.clone()];
            let mut cur = k.clone();
            while let Some(s) = source_of(&cur) {
                if let Some(pos) = path.iter().position(|p| *p == s) {
                    ring.extend(path[pos..].iter().cloned());
                    break;
                }
                path.push(s.clone());
                cur = s;
            }
        }

        let master = if !ring.is_empty() {
            let names: Vec<String> = ring.iter().map(|k| k.to_string()).collect();
            for k in &ring {
                problems.push(Problem {
                    instance: k.clone(),
                    kind: ProblemKind::CoMaster,
                    message: format!("replication ring (co-masters): {}", names.join(" <-> ")),
                });
            }
            // A ring with exactly one writable member acts as a master with a standby.
            let writable: Vec<&InstanceKey> = ring
                .iter()
                .filter(|k| probes.get(*k).and_then(|p| p.as_ref().ok()).is_some_and(|i| i.writable()))
                .collect();
            if roots.is_empty() && writable.len() == 1 {
                Some(writable[0].clone())
            } else {
                None
            }
        } else {
            None
        };

        let master = match (master, roots.len()) {
            (Some(m), _) => Some(m),
            (None, 1) => roots.iter().next().cloned(),
            (None, 0) => {
                if ring.is_empty() {
                    problems.push(Problem {
                        instance: seed.clone(),
                        kind: ProblemKind::NoMaster,
                        message: "no member without a replication source was found".into(),
                    });
                }
                None
            }
            (None, _) => {
                let names: Vec<String> = roots.iter().map(|k| k.to_string()).collect();
                for k in &roots {
                    problems.push(Problem {
                        instance: k.clone(),
                        kind: ProblemKind::MultipleMasters,
                        message: format!("several members replicate from no one: {}", names.join(", ")),
                    });
                }
                None
            }
        };

        // Depth by breadth-first walk from the master along "replicates from".
        let mut depth: BTreeMap<InstanceKey, u32> = BTreeMap::new();
        if let Some(m) = &master {
            depth.insert(m.clone(), 0);
            let mut queue = VecDeque::from([m.clone()]);
            while let Some(parent) = queue.pop_front() {
                let d = depth[&parent];
                for k in probes.keys() {
                    if !depth.contains_key(k) && source_of(k).as_ref() == Some(&parent) {
                        depth.insert(k.clone(), d + 1);
                        queue.push_back(k.clone());
                    }
                }
            }
        }

        let master_inst = master.as_ref().and_then(|m| probes.get(m)).and_then(|p| p.as_ref().ok());
        let mut members = Vec::with_capacity(probes.len());
        for (k, p) in probes.iter() {
            let is_master = master.as_ref() == Some(k);
            match p {
                Err(e) => {
                    problems.push(Problem { instance: k.clone(), kind: ProblemKind::Unreachable, message: e.clone() })
                }
                Ok(i) => problems.extend(instance_problems(i, is_master, master_inst, &probes, &ring, opts)),
            }
            members.push(Member {
                key: k.clone(),
                depth: depth.get(k).copied(),
                source: source_of(k),
                instance: p.as_ref().ok().cloned(),
                error: p.as_ref().err().cloned(),
            });
        }
        members.sort_by(|a, b| (a.depth.unwrap_or(u32::MAX), &a.key).cmp(&(b.depth.unwrap_or(u32::MAX), &b.key)));

        Cluster { name: master.as_ref().unwrap_or(seed).to_string(), alias, master, members, problems }
    }

    pub fn member(&self, key: &InstanceKey) -> Option<&Member> {
        self.members.iter().find(|m| &m.key == key)
    }

    pub fn instance(&self, key: &InstanceKey) -> Option<&Instance> {
        self.member(key).and_then(|m| m.instance.as_ref())
    }

    /// Members whose source is `key`, sorted by key.
    pub fn replicas_of(&self, key: &InstanceKey) -> Vec<&Member> {
        self.members.iter().filter(|m| m.source.as_ref() == Some(key)).collect()
    }

    pub fn problems_of(&self, key: &InstanceKey) -> Vec<&Problem> {
        self.problems.iter().filter(|p| &p.instance == key).collect()
    }

    pub fn has_member(&self, key: &InstanceKey) -> bool {
        self.member(key).is_some()
    }

    /// Members that are writable (read_only off).
    pub fn writable_members(&self) -> Vec<&InstanceKey> {
        self.members.iter().filter(|m| m.instance.as_ref().is_some_and(|i| i.writable())).map(|m| &m.key).collect()
    }
}

fn instance_problems(
    i: &Instance,
    is_master: bool,
    master: Option<&Instance>,
    probes: &BTreeMap<InstanceKey, ProbeOutcome>,
    ring: &BTreeSet<InstanceKey>,
    opts: BuildOptions,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |kind, message: String| out.push(Problem { instance: i.key.clone(), kind, message });
    if let Some(r) = &i.replication {
        if !probes.contains_key(&r.source) {
            add(
                ProblemKind::SourceOutsideCluster,
                format!("replicates from {} which is not in this cluster", r.source),
            );
        }
        if let Some(e) = &r.last_io_error {
            add(ProblemKind::ReplicationBroken, format!("IO thread error {}: {}", e.errno, e.message));
        }
        if let Some(e) = &r.last_sql_error {
            add(ProblemKind::ReplicationBroken, format!("SQL thread error {}: {}", e.errno, e.message));
        }
        if !r.running() {
            add(
                ProblemKind::ReplicationStopped,
                format!("replication not running (IO {:?}, SQL {:?})", r.io_thread, r.sql_thread),
            );
        }
        if let Some(s) = r.seconds_behind.filter(|s| *s > opts.lag_threshold_s) {
            add(ProblemKind::Lagging, format!("{s} s behind its source (threshold {} s)", opts.lag_threshold_s));
        }
        if i.writable() && !is_master && !ring.contains(&i.key) {
            add(ProblemKind::SecondWritable, "replica is writable (read_only=OFF)".into());
        }
    }
    if !is_master {
        if let Some(errant) = master.and_then(|m| i.gtid.errant_against(&m.gtid, m.server_uuid.as_deref(), m.server_id))
        {
            add(ProblemKind::ErrantGtid, format!("transactions the master does not have: {errant}"));
        }
    }
    out
}
