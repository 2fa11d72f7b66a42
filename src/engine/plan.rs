//! Pure decisions of the takeover: which replica to promote, and whether the designated one may
//! be promoted. No I/O: everything comes from the cluster snapshot and the stored rules.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::store::{Downtime, PromotionRule};
use crate::topology::{Cluster, HostFilter, Instance, InstanceKey, ProblemKind};

/// What the decisions look at besides the cluster.
#[derive(Debug, Clone, Default)]
pub struct PlanInputs {
    pub rules: HashMap<InstanceKey, PromotionRule>,
    pub downtimes: HashMap<InstanceKey, Downtime>,
    pub ignore_hostname_filters: Vec<HostFilter>,
    pub reasonable_lag_s: u64,
    /// `takeover.allow_lax_gtid`: promote a MariaDB replica although it or the master runs with
    /// `gtid_strict_mode=OFF`.
    pub allow_lax_gtid: bool,
    /// `takeover.semi_sync_required`: on a semi-sync master, the designated replica must be an
    /// acknowledging semi-sync replica, and the new master must keep enough of them.
    pub semi_sync_required: bool,
}

impl PlanInputs {
    pub fn rule(&self, key: &InstanceKey) -> PromotionRule {
        self.rules.get(key).copied().unwrap_or(PromotionRule::Neutral)
    }
    pub fn downtimed(&self, key: &InstanceKey) -> bool {
        self.downtimes.contains_key(key)
    }
    /// Why a MariaDB cluster's GTID positions cannot be trusted for promoting `i`, if they cannot:
    /// `gtid_strict_mode=OFF` on it or on the master lets a local write go unnoticed.
    fn lax_gtid(&self, cluster: &Cluster, master: &InstanceKey, i: &Instance) -> Option<String> {
        if self.allow_lax_gtid {
            return None;
        }
        let lax: Vec<String> = [Some(i), cluster.instance(master)]
            .into_iter()
            .flatten()
            .filter(|x| !x.gtid.strict())
            .map(|x| x.key.to_string())
            .collect();
        (!lax.is_empty()).then(|| {
            format!(
                "gtid_strict_mode=OFF on {}: a local write on a replica can go unnoticed (set takeover.allow_lax_gtid = true to promote anyway)",
                lax.join(", ")
            )
        })
    }

    fn filtered(&self, key: &InstanceKey) -> Option<String> {
        self.ignore_hostname_filters.iter().find(|f| f.matches(key)).map(HostFilter::as_str)
    }
}

/// One check on the designated replica, with its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub instance: InstanceKey,
    pub ok: bool,
    pub detail: String,
}

/// Why a replica cannot be a candidate at all; None when it can.
pub fn exclusion(cluster: &Cluster, master: &InstanceKey, i: &Instance, inputs: &PlanInputs) -> Option<String> {
    if inputs.rule(&i.key) == PromotionRule::MustNot {
        return Some("promotion rule must_not".into());
    }
    if let Some(f) = inputs.filtered(&i.key) {
        return Some(format!("host matches promotion_ignore_hostname_filters '{f}'"));
    }
    if inputs.downtimed(&i.key) {
        return Some("downtimed".into());
    }
    if !i.can_be_master() {
        return Some(format!("log_bin={} log_slave_updates={}: cannot serve replicas", i.log_bin, i.log_slave_updates));
    }
    match &i.replication {
        None => return Some("does not replicate".into()),
        Some(r) if r.source != *master => return Some(format!("replicates from {}, not from the master", r.source)),
        Some(r) if r.broken() => return Some("replication broken".into()),
        Some(r) if !r.running() => {
            return Some(format!("replication not running (IO {:?}, SQL {:?})", r.io_thread, r.sql_thread))
        }
        _ => {}
    }
    if let Some(errant) =
        cluster.instance(master).and_then(|m| i.gtid.errant_against(&m.gtid, m.server_uuid.as_deref(), m.server_id))
    {
        return Some(format!("errant GTIDs {errant}"));
    }
    inputs.lax_gtid(cluster, master, i)
}

/// A replica that passed the safety rules, with what a policy ranks by. Serialized, it is the
/// instance's probed fields (as in `baton topology --json`) plus these.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    #[serde(flatten)]
    pub instance: Instance,
    pub promotion_rule: PromotionRule,
    /// Seconds_Behind_Master; None when unknown.
    pub lag_s: Option<u64>,
    /// Transactions executed (sum of GTID sequence numbers per domain on MariaDB, count of the
    /// executed set on MySQL): bigger is more advanced.
    pub executed_progress: f64,
    /// Relay-log execution position in the master's binlog (for clusters without GTID): the
    /// file's sequence number (`BinlogCoordinates::file_index`), then the position in it.
    pub exec_file_index: u64,
    pub exec_pos: u64,
    /// A newer server version than some sibling: those siblings might not replicate from it.
    pub newer_than_siblings: bool,
}

/// A replica the safety rules ruled out.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    pub key: InstanceKey,
    pub reason: String,
}

/// Splits the master's direct replicas into candidates and excluded ones (both in key order).
pub fn candidates(cluster: &Cluster, master: &InstanceKey, inputs: &PlanInputs) -> (Vec<Candidate>, Vec<Excluded>) {
    let replicas: Vec<&Instance> =
        cluster.replicas_of(master).into_iter().filter_map(|m| m.instance.as_ref()).collect();
    let min_version = replicas.iter().map(|i| i.version_number()).min().unwrap_or_default();
    let mut eligible = Vec::new();
    let mut excluded = Vec::new();
    for i in replicas {
        let exec = i.replication.as_ref().and_then(|r| r.exec_coordinates.as_ref());
        match exclusion(cluster, master, i, inputs) {
            Some(reason) => excluded.push(Excluded { key: i.key.clone(), reason }),
            None => eligible.push(Candidate {
                promotion_rule: inputs.rule(&i.key),
                lag_s: i.replication.as_ref().and_then(|r| r.seconds_behind),
                executed_progress: i.gtid.progress() as f64,
                exec_file_index: exec.map(|c| c.file_index()).unwrap_or(0),
                exec_pos: exec.map(|c| c.pos).unwrap_or(0),
                newer_than_siblings: i.version_number() > min_version,
                instance: i.clone(),
            }),
        }
    }
    eligible.sort_by(|a, b| a.instance.key.cmp(&b.instance.key));
    excluded.sort_by(|a, b| a.key.cmp(&b.key));
    (eligible, excluded)
}

/// The built-in ordering: `Less` when `a` ranks ahead of `b`. Promotion rule `prefer` first,
/// then the most advanced executed position, then the least lag, then a version not newer than
/// its siblings (so they can replicate from it), then the key.
pub fn rank_order(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    let exec = |c: &Candidate| (c.instance.gtid.progress(), c.exec_file_index, c.exec_pos);
    let lag = |c: &Candidate| c.lag_s.unwrap_or(u64::MAX);
    a.promotion_rule
        .cmp(&b.promotion_rule)
        .then(exec(b).cmp(&exec(a)))
        .then(lag(a).cmp(&lag(b)))
        .then(a.newer_than_siblings.cmp(&b.newer_than_siblings))
        .then(a.instance.key.cmp(&b.instance.key))
}

/// Runners-up named in a reason; the rest are counted.
pub const RUNNERS_UP_SHOWN: usize = 5;

/// The built-in candidate policy, used when no Lua policy is configured (`scripts/policy.lua`
/// ships the same ordering, `rank_order`). Returns the choice and why.
pub fn choose_candidate(
    cluster: &Cluster,
    master: &InstanceKey,
    inputs: &PlanInputs,
) -> Result<(InstanceKey, String), String> {
    let (eligible, excluded) = candidates(cluster, master, inputs);
    choose_among(master, &eligible, &excluded)
}

/// The built-in choice among prepared candidates.
pub fn choose_among(
    master: &InstanceKey,
    eligible: &[Candidate],
    excluded: &[Excluded],
) -> Result<(InstanceKey, String), String> {
    let excluded: Vec<String> = excluded.iter().map(|e| format!("{} ({})", e.key, e.reason)).collect();
    let mut order: Vec<&Candidate> = eligible.iter().collect();
    if order.is_empty() {
        return Err(format!("no eligible replica of {master}: {}", excluded.join("; ")));
    }
    order.sort_by(|a, b| rank_order(a, b));
    let best = order[0];
    let lag = best.lag_s.map(|l| l.to_string()).unwrap_or_else(|| "unknown ".into());
    let mut reason = format!(
        "{} chosen: rule {}, executed {}, lag {lag}s, version {}",
        best.instance.key, best.promotion_rule, best.executed_progress, best.instance.version
    );
    if order.len() > 1 {
        let others: Vec<String> =
            order[1..].iter().take(RUNNERS_UP_SHOWN).map(|c| c.instance.key.to_string()).collect();
        reason.push_str(&format!("; ranked ahead of {}", others.join(", ")));
        if order.len() - 1 > RUNNERS_UP_SHOWN {
            reason.push_str(&format!(" and {} more", order.len() - 1 - RUNNERS_UP_SHOWN));
        }
    }
    if !excluded.is_empty() {
        reason.push_str(&format!("; excluded: {}", excluded.join("; ")));
    }
    Ok((best.instance.key.clone(), reason))
}

/// Why Baton's clock cannot be trusted against `master`'s, if it cannot: promotion rules and
/// downtime expire by Baton's clock, so a clock off by more than `max_s` could end a `must_not`
/// early (or keep a downtime for ever). The skew includes the probe's round trip.
pub fn clock_skew(master: &Instance, max_s: u64) -> Option<String> {
    let skew = master.clock_skew_s?;
    (skew.abs() > max_s as f64).then(|| {
        format!(
            "Baton's clock is {:.0} s {} {}'s: promotion rules and downtime expire by Baton's clock (fix the time, or raise takeover.max_clock_skew_s)",
            skew.abs(),
            if skew > 0.0 { "behind" } else { "ahead of" },
            master.key
        )
    })
}

/// A check that refuses, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub check: String,
    pub instance: Option<InstanceKey>,
    pub message: String,
}

/// The checks on the cluster's master a takeover makes first (`check_master`; the fleet view's
/// readiness asks the same): exactly one master, reachable, the only writable member, writable,
/// with a trustworthy clock, with replicas, every replica reachable or downtimed. The master, or
/// the check that refuses.
pub fn check_master(c: &Cluster, inputs: &PlanInputs, max_clock_skew_s: u64) -> Result<InstanceKey, Refused> {
    let refused = |check: &str, instance: Option<&InstanceKey>, message: String| Refused {
        check: check.into(),
        instance: instance.cloned(),
        message,
    };
    let Some(master) = c.master.clone() else {
        let names: Vec<String> = c
            .problems
            .iter()
            .filter(|p| matches!(p.kind, ProblemKind::MultipleMasters | ProblemKind::CoMaster | ProblemKind::NoMaster))
            .map(|p| p.message.clone())
            .collect();
        return Err(refused("one_master", None, format!("cannot tell the master: {}", names.join("; "))));
    };
    let Some(mi) = c.instance(&master) else {
        return Err(refused(
            "master_reachable",
            Some(&master),
            "the master is unreachable (a graceful takeover needs it; this is a failover)".into(),
        ));
    };
    let writable = c.writable_members();
    if writable.len() > 1 {
        let names: Vec<String> = writable.iter().map(|k| k.to_string()).collect();
        return Err(refused("one_writable", None, format!("several writable instances: {}", names.join(", "))));
    }
    if mi.read_only {
        return Err(refused("master_writable", Some(&master), "the master is read-only already".into()));
    }
    if let Some(why) = clock_skew(mi, max_clock_skew_s) {
        return Err(refused("clock_skew", Some(&master), why));
    }
    if c.replicas_of(&master).is_empty() {
        return Err(refused("has_replicas", Some(&master), "the master has no replicas".into()));
    }
    // Every member must be reachable, or downtimed (then it is left behind).
    for r in c.members.iter().filter(|m| m.key != master) {
        if !r.reachable() && !inputs.downtimed(&r.key) {
            return Err(refused(
                "replicas_reachable",
                Some(&r.key),
                format!(
                    "replica unreachable ({}); downtime it to take over without it",
                    r.error.as_deref().unwrap_or("?")
                ),
            ));
        }
    }
    Ok(master)
}

/// The checks on the designated replica before anything changes. All are returned, failing or not.
pub fn check_designated(
    cluster: &Cluster,
    master: &InstanceKey,
    designated: &InstanceKey,
    inputs: &PlanInputs,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut add = |name: &str, ok: bool, detail: String| {
        checks.push(Check { name: name.into(), instance: designated.clone(), ok, detail })
    };
    let Some(i) = cluster.instance(designated) else {
        let why = cluster
            .member(designated)
            .and_then(|m| m.error.clone())
            .unwrap_or_else(|| "not a member of the cluster".into());
        add("reachable", false, why);
        return checks;
    };
    add("reachable", true, format!("probed in {:.1} ms", i.probe_ms));
    let rule = inputs.rule(designated);
    let banned = rule == PromotionRule::MustNot || inputs.filtered(designated).is_some();
    add(
        "not_banned",
        !banned,
        match inputs.filtered(designated) {
            Some(f) => format!("host matches promotion_ignore_hostname_filters '{f}'"),
            None => format!("promotion rule {rule}"),
        },
    );
    let source = i.source();
    add(
        "replicates_from_master",
        source == Some(master),
        match source {
            Some(s) => format!("source {s}"),
            None => "no replication configured".into(),
        },
    );
    add("can_be_master", i.can_be_master(), format!("log_bin={} log_slave_updates={}", i.log_bin, i.log_slave_updates));
    if let Some(r) = &i.replication {
        let errors: Vec<String> = [&r.last_io_error, &r.last_sql_error]
            .into_iter()
            .flatten()
            .map(|e| format!("{}: {}", e.errno, e.message))
            .collect();
        add(
            "replication_running",
            r.running() && errors.is_empty(),
            format!(
                "IO {:?}, SQL {:?}{}",
                r.io_thread,
                r.sql_thread,
                if errors.is_empty() { String::new() } else { format!(", errors: {}", errors.join("; ")) }
            ),
        );
        // A stopped SQL thread reads as NULL lag: that is not "no lag".
        let lag_ok = r.seconds_behind.is_some_and(|s| s <= inputs.reasonable_lag_s) && r.sql_thread.running();
        add(
            "lag_within_limit",
            lag_ok,
            match r.seconds_behind {
                Some(s) => format!("{s} s behind (limit {} s)", inputs.reasonable_lag_s),
                None => "lag unknown (NULL): the SQL thread is not running".into(),
            },
        );
    }
    let errant =
        cluster.instance(master).and_then(|m| i.gtid.errant_against(&m.gtid, m.server_uuid.as_deref(), m.server_id));
    add("no_errant_gtid", errant.is_none(), errant.map(|e| format!("errant: {e}")).unwrap_or_else(|| "none".into()));
    // Baton moves replicas by GTID only (nothing builds a file/position takeover): a MySQL member
    // without gtid_mode=ON is refused here, before anything changes.
    let off: Vec<String> = cluster
        .members
        .iter()
        .filter_map(|m| m.instance.as_ref())
        .filter_map(|m| match &m.gtid {
            crate::topology::GtidState::MySql { mode, .. } if !m.gtid.enabled() => {
                Some(format!("{} (gtid_mode={mode})", m.key))
            }
            _ => None,
        })
        .collect();
    add(
        "gtid_enabled",
        off.is_empty(),
        if off.is_empty() {
            "GTID replication possible on every member".into()
        } else {
            format!(
                "gtid_mode is not ON on {}: Baton moves replicas by GTID only (file/position takeovers are not supported)",
                off.join(", ")
            )
        },
    );
    let lax = inputs.lax_gtid(cluster, master, i);
    add(
        "gtid_strict_mode",
        lax.is_none(),
        lax.unwrap_or_else(|| "on (or allowed off by takeover.allow_lax_gtid)".into()),
    );
    checks
}

/// With semi-sync required on a master that runs it: the designated replica acknowledges now
/// (replica side on and running), and after the takeover the new master has as many semi-sync
/// replicas as a commit waits for (its siblings with the replica side on, and the demoted master
/// when its replication is started). Empty when semi-sync is not required or the master has it off.
pub fn semi_sync_checks(
    cluster: &Cluster,
    master: &InstanceKey,
    designated: &InstanceKey,
    inputs: &PlanInputs,
    old_master_replicates: bool,
) -> Vec<Check> {
    let Some(ms) = cluster.instance(master).and_then(|m| m.semi_sync.as_ref()).filter(|s| s.master_enabled) else {
        return Vec::new();
    };
    if !inputs.semi_sync_required {
        return Vec::new();
    }
    let ds = cluster.instance(designated).and_then(|d| d.semi_sync.clone()).unwrap_or_default();
    let acknowledging = ds.replica_enabled && ds.replica_status;
    let mut checks = vec![Check {
        name: "semi_sync_replica".into(),
        instance: designated.clone(),
        ok: acknowledging,
        detail: if acknowledging {
            "acknowledges as a semi-sync replica".into()
        } else {
            format!(
                "not an acknowledging semi-sync replica (replica side {}, status {}); semi-sync is required \
                 (takeover.semi_sync_required)",
                if ds.replica_enabled { "on" } else { "off" },
                if ds.replica_status { "on" } else { "off" }
            )
        },
    }];
    let siblings: Vec<String> = cluster
        .replicas_of(master)
        .iter()
        .filter(|m| m.key != *designated)
        .filter(|m| m.instance.as_ref().and_then(|i| i.semi_sync.as_ref()).is_some_and(|s| s.replica_enabled))
        .map(|m| m.key.to_string())
        .collect();
    let after = siblings.len() + usize::from(old_master_replicates);
    let need = ms.wait_for_replica_count.max(1) as usize;
    checks.push(Check {
        name: "semi_sync_replicas_after".into(),
        instance: designated.clone(),
        ok: after >= need,
        detail: format!(
            "{after} semi-sync replica(s) of {designated} after the takeover ({}{}), a commit waits for {need}",
            if siblings.is_empty() { "no sibling".to_string() } else { siblings.join(", ") },
            if old_master_replicates { format!(", and the demoted {master}") } else { String::new() }
        ),
    });
    checks
}

/// The hash a plan is pinned to: the cluster's shape (members, who replicates from whom, who
/// is writable, whose threads run, versions), not its positions, which move with every write.
pub fn topology_hash(cluster: &Cluster) -> String {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = cluster
        .members
        .iter()
        .map(|m| match &m.instance {
            Some(i) => {
                let r = i.replication.as_ref();
                format!(
                    "{} src={} ro={} io={} sql={} v={}",
                    m.key,
                    m.source.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                    i.read_only,
                    r.is_some_and(|r| r.io_thread.running()),
                    r.is_some_and(|r| r.sql_thread.running()),
                    i.version
                )
            }
            None => format!("{} unreachable", m.key),
        })
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    h.update(format!("master={:?}\n", cluster.master.as_ref().map(|k| k.to_string())));
    for l in lines {
        h.update(l);
        h.update("\n");
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::topology::*;

    fn inst(port: u16, source: Option<u16>, seq: u64, lag: Option<u64>) -> Instance {
        Instance {
            key: InstanceKey::new("h", port),
            flavor: Flavor::MariaDb,
            version: "10.11.6-MariaDB".into(),
            version_comment: String::new(),
            server_id: port as u32,
            server_uuid: None,
            read_only: source.is_some(),
            super_read_only: None,
            log_bin: true,
            log_slave_updates: true,
            binlog_format: "ROW".into(),
            gtid: GtidState::MariaDb {
                binlog_pos: format!("0-1-{seq}").parse().unwrap(),
                current_pos: format!("0-1-{seq}").parse().unwrap(),
                slave_pos: format!("0-1-{seq}").parse().unwrap(),
                strict_mode: true,
            },
            binlog: None,
            replication: source.map(|s| ReplicationStatus {
                source: InstanceKey::new("h", s),
                io_thread: ThreadState::Yes,
                sql_thread: ThreadState::Yes,
                seconds_behind: lag,
                read_coordinates: None,
                exec_coordinates: None,
                gtid_mode: GtidMode::SlavePos,
                last_io_error: None,
                last_sql_error: None,
                sql_delay: 0,
                ssl: false,
            }),
            reported_replicas: vec![],
            probe_ms: 1.0,
            clock_skew_s: None,
            semi_sync: None,
        }
    }

    fn cluster(list: Vec<Instance>) -> Cluster {
        let probes: BTreeMap<_, _> = list.into_iter().map(|i| (i.key.clone(), Ok(i))).collect();
        Cluster::build(&InstanceKey::new("h", 1), probes, None, BuildOptions { lag_threshold_s: 10 })
    }

    fn inputs() -> PlanInputs {
        PlanInputs { reasonable_lag_s: 10, ..Default::default() }
    }

    #[test]
    fn most_advanced_then_least_lag() {
        let c = cluster(vec![
            inst(1, None, 100, None),
            inst(2, Some(1), 90, Some(0)),
            inst(3, Some(1), 99, Some(1)),
            inst(4, Some(1), 99, Some(0)),
        ]);
        let m = InstanceKey::new("h", 1);
        let (k, reason) = choose_candidate(&c, &m, &inputs()).unwrap();
        assert_eq!(k, InstanceKey::new("h", 4), "{reason}");
        assert!(reason.contains("ranked ahead of h:3, h:2"), "{reason}");
    }

    #[test]
    fn binlog_file_before_position() {
        // Without GTID progress to tell them apart, a replica a whole binlog file ahead wins even
        // with a smaller position in that file (and file 1000000 comes after 999999).
        let at = |port: u16, file: &str, pos: u64| {
            let mut i = inst(port, Some(1), 100, Some(0));
            i.replication.as_mut().unwrap().exec_coordinates = Some(BinlogCoordinates { file: file.into(), pos });
            i
        };
        let c = cluster(vec![
            inst(1, None, 100, None),
            at(2, "mysql-bin.000001", 9_000_000),
            at(3, "mysql-bin.000002", 400),
            at(4, "mysql-bin.1000000", 4),
            at(5, "mysql-bin.999999", 8_000),
        ]);
        let (k, reason) = choose_candidate(&c, &InstanceKey::new("h", 1), &inputs()).unwrap();
        assert_eq!(k, InstanceKey::new("h", 4), "{reason}");
        assert!(reason.contains("ranked ahead of h:5, h:3, h:2"), "{reason}");
    }

    #[test]
    fn rules_and_exclusions() {
        let mut s = inst(3, Some(1), 100, Some(0));
        s.replication.as_mut().unwrap().sql_thread = ThreadState::No;
        let mut nb = inst(5, Some(1), 100, Some(0));
        nb.log_slave_updates = false;
        let c = cluster(vec![
            inst(1, None, 100, None),
            inst(2, Some(1), 50, Some(3)),
            s,
            inst(4, Some(1), 100, Some(0)),
            nb,
        ]);
        let m = InstanceKey::new("h", 1);
        let mut i = inputs();
        i.rules.insert(InstanceKey::new("h", 2), PromotionRule::Prefer);
        i.rules.insert(InstanceKey::new("h", 4), PromotionRule::MustNot);
        let (k, reason) = choose_candidate(&c, &m, &i).unwrap();
        assert_eq!(k, InstanceKey::new("h", 2), "prefer wins over position: {reason}");
        assert!(
            reason.contains("h:4 (promotion rule must_not)") && reason.contains("h:3 (replication not running"),
            "{reason}"
        );
        assert!(reason.contains("h:5 (log_bin=true log_slave_updates=false"), "{reason}");
        i.rules.insert(InstanceKey::new("h", 2), PromotionRule::MustNot);
        let err = choose_candidate(&c, &m, &i).unwrap_err();
        assert!(err.starts_with("no eligible replica of h:1"), "{err}");
    }

    #[test]
    fn stopped_sql_thread_is_not_zero_lag() {
        let mut d = inst(2, Some(1), 100, None);
        d.replication.as_mut().unwrap().sql_thread = ThreadState::No;
        let c = cluster(vec![inst(1, None, 100, None), d]);
        let checks = check_designated(&c, &InstanceKey::new("h", 1), &InstanceKey::new("h", 2), &inputs());
        let lag = checks.iter().find(|c| c.name == "lag_within_limit").unwrap();
        assert!(!lag.ok && lag.detail.contains("NULL"), "{lag:?}");
        assert!(!checks.iter().find(|c| c.name == "replication_running").unwrap().ok);
    }

    #[test]
    fn errant_and_banned_designated() {
        let mut d = inst(2, Some(1), 100, Some(0));
        d.gtid = GtidState::MariaDb {
            binlog_pos: "0-2-101".parse().unwrap(),
            current_pos: "0-2-101".parse().unwrap(),
            slave_pos: "0-1-100".parse().unwrap(),
            strict_mode: true,
        };
        let c = cluster(vec![inst(1, None, 100, None), d]);
        let mut i = inputs();
        i.ignore_hostname_filters = vec![HostFilter::parse("^h:").unwrap()];
        let checks = check_designated(&c, &InstanceKey::new("h", 1), &InstanceKey::new("h", 2), &i);
        let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["not_banned", "no_errant_gtid"]);
    }

    #[test]
    fn mysql_without_gtid_is_refused_up_front() {
        let mysql = |port: u16, source: Option<u16>, mode: &str| {
            let mut i = inst(port, source, 100, Some(0));
            i.flavor = Flavor::MySql;
            i.gtid = GtidState::MySql { mode: mode.into(), executed: GtidSet::default() };
            i
        };
        let c = cluster(vec![mysql(1, None, "ON"), mysql(2, Some(1), "ON"), mysql(3, Some(1), "OFF_PERMISSIVE")]);
        let checks = check_designated(&c, &InstanceKey::new("h", 1), &InstanceKey::new("h", 2), &inputs());
        let g = checks.iter().find(|c| c.name == "gtid_enabled").unwrap();
        assert!(!g.ok && g.detail.contains("h:3 (gtid_mode=OFF_PERMISSIVE)"), "{g:?}");
        let c = cluster(vec![mysql(1, None, "ON"), mysql(2, Some(1), "ON")]);
        let checks = check_designated(&c, &InstanceKey::new("h", 1), &InstanceKey::new("h", 2), &inputs());
        assert!(checks.iter().find(|c| c.name == "gtid_enabled").unwrap().ok);
    }

    #[test]
    fn clock_skew_refuses_past_the_limit() {
        let mut m = inst(1, None, 100, None);
        assert_eq!(clock_skew(&m, 60), None, "unknown skew: no refusal");
        m.clock_skew_s = Some(12.0);
        assert_eq!(clock_skew(&m, 60), None);
        m.clock_skew_s = Some(-3600.0);
        let why = clock_skew(&m, 60).unwrap();
        assert!(why.contains("3600 s ahead of") && why.contains("max_clock_skew_s"), "{why}");
        m.clock_skew_s = Some(90.0);
        assert!(clock_skew(&m, 60).unwrap().contains("behind"));
    }
}
