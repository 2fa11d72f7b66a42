//! The cluster as text: one line per instance, replicas indented below their source. Pure.

use super::{Cluster, InstanceKey, Member};

/// The tree with a header line and the problems: `baton topology`.
pub fn render(cluster: &Cluster) -> String {
    let mut out = format!(
        "cluster {}{}\n",
        cluster.name,
        cluster.alias.as_ref().map(|a| format!(" (alias {a})")).unwrap_or_default()
    );
    out.push_str(&tree(cluster));
    if !cluster.problems.is_empty() {
        out.push_str("problems:\n");
        for p in &cluster.problems {
            out.push_str(&format!("  {} {:?}: {}\n", p.instance, p.kind, p.message));
        }
    }
    out
}

/// The tree, one line per instance, in the spirit of `orchestrator-client -c topology`.
pub fn tree(cluster: &Cluster) -> String {
    let mut out = String::new();
    let mut placed = std::collections::BTreeSet::new();
    if let Some(m) = &cluster.master {
        walk(cluster, m, 0, &mut out, &mut placed);
    }
    for m in cluster.members.iter().filter(|m| !placed.contains(&m.key)) {
        out.push_str(&format!("? {}\n", line(cluster, m)));
    }
    out
}

fn walk(
    cluster: &Cluster,
    key: &InstanceKey,
    depth: usize,
    out: &mut String,
    placed: &mut std::collections::BTreeSet<InstanceKey>,
) {
    if !placed.insert(key.clone()) {
        return;
    }
    let Some(m) = cluster.member(key) else { return };
    let prefix = if depth == 0 { String::new() } else { format!("{}+ ", "  ".repeat(depth - 1)) };
    out.push_str(&format!("{prefix}{}\n", line(cluster, m)));
    for r in cluster.replicas_of(key) {
        walk(cluster, &r.key, depth + 1, out, placed);
    }
}

fn line(cluster: &Cluster, m: &Member) -> String {
    let Some(i) = &m.instance else {
        return format!("{} [unreachable: {}]", m.key, m.error.as_deref().unwrap_or("?"));
    };
    let lag = match &i.replication {
        None => "0s".to_string(),
        Some(r) => r.seconds_behind.map(|s| format!("{s}s")).unwrap_or_else(|| "null".into()),
    };
    let state = match &i.replication {
        Some(r) if r.broken() => "broken",
        Some(r) if !r.running() => "stopped",
        _ => "ok",
    };
    let problems: Vec<String> = cluster.problems_of(&m.key).iter().map(|p| format!("{:?}", p.kind)).collect();
    format!(
        "{} [{lag},{state},{},{},{},{}]{}",
        m.key,
        i.version,
        if i.read_only { "ro" } else { "rw" },
        i.binlog_format,
        i.gtid.summary(),
        if problems.is_empty() { String::new() } else { format!(" problems: {}", problems.join(",")) }
    )
}
