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
    lines(cluster, Style::Tree)
}

/// The tree with `|` between the columns (`orchestrator-client -c topology-tabulated`).
pub fn tabulated(cluster: &Cluster) -> String {
    lines(cluster, Style::Tabulated)
}

#[derive(Clone, Copy)]
enum Style {
    Tree,
    Tabulated,
}

fn lines(cluster: &Cluster, style: Style) -> String {
    let mut out = String::new();
    let mut placed = std::collections::BTreeSet::new();
    if let Some(m) = &cluster.master {
        walk(cluster, m, 0, style, &mut out, &mut placed);
    }
    for m in cluster.members.iter().filter(|m| !placed.contains(&m.key)) {
        out.push_str(&format!("? {}\n", line(cluster, m, style)));
    }
    out
}

fn walk(
    cluster: &Cluster,
    key: &InstanceKey,
    depth: usize,
    style: Style,
    out: &mut String,
    placed: &mut std::collections::BTreeSet<InstanceKey>,
) {
    if !placed.insert(key.clone()) {
        return;
    }
    let Some(m) = cluster.member(key) else { return };
    let prefix = if depth == 0 { String::new() } else { format!("{}+ ", "  ".repeat(depth - 1)) };
    out.push_str(&format!("{prefix}{}\n", line(cluster, m, style)));
    for r in cluster.replicas_of(key) {
        walk(cluster, &r.key, depth + 1, style, out, placed);
    }
}

fn line(cluster: &Cluster, m: &Member, style: Style) -> String {
    let Some(i) = &m.instance else {
        let why = m.error.as_deref().unwrap_or("?");
        return match style {
            Style::Tree => format!("{} [unreachable: {why}]", m.key),
            Style::Tabulated => format!("{}|unreachable|{why}", m.key),
        };
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
    let cols = [
        lag,
        state.to_string(),
        i.version.clone(),
        (if i.read_only { "ro" } else { "rw" }).to_string(),
        i.binlog_format.clone(),
        i.gtid.summary(),
    ];
    match style {
        Style::Tree => format!(
            "{} [{}]{}{}",
            m.key,
            cols.join(","),
            match &i.semi_sync {
                Some(s) if s.master_enabled => {
                    format!(
                        " semi-sync master ({}, {} clients)",
                        if s.master_status { "on" } else { "off" },
                        s.master_clients
                    )
                }
                Some(s) if s.replica_enabled => {
                    format!(
                        " semi-sync replica ({})",
                        if s.replica_status { "acknowledging" } else { "not acknowledging" }
                    )
                }
                _ => String::new(),
            },
            if problems.is_empty() { String::new() } else { format!(" problems: {}", problems.join(",")) }
        ),
        Style::Tabulated => format!("{}|{}|{}", m.key, cols.join("|"), problems.join(",")),
    }
}
