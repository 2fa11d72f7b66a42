//! Pictures for the console, as SVG (pure: a cluster or a report in, markup out): the topology as
//! a tree of boxes, and a takeover's phases on a time axis.

use maud::{html, Markup};

use crate::engine::{Outcome, TakeoverReport};
use crate::topology::{Cluster, GtidState, InstanceKey, Member, ThreadState};

const BOX_W: f64 = 200.0;
const BOX_H: f64 = 92.0;
const GAP_X: f64 = 16.0;
const GAP_Y: f64 = 44.0;
/// Children beyond this wrap onto another row under their source.
const PER_ROW: usize = 6;

/// How a member looks: the class a DBA reads at a glance.
pub fn state_class(c: &Cluster, m: &Member, downtimed: bool) -> &'static str {
    let Some(i) = &m.instance else { return "broken" };
    if downtimed {
        return "downtimed";
    }
    if c.master.as_ref() == Some(&m.key) {
        return if i.read_only { "lagging" } else { "master" };
    }
    match &i.replication {
        None if !i.read_only => "broken", // a second writable instance
        None => "lagging",
        Some(r) if r.io_thread != ThreadState::Yes || r.sql_thread != ThreadState::Yes => "broken",
        Some(r) if r.seconds_behind.unwrap_or(0) > 10 => "lagging",
        Some(_) if !i.read_only => "lagging",
        Some(_) => "replica",
    }
}

fn gtid_text(g: &GtidState) -> String {
    match g {
        GtidState::MariaDb { current_pos, .. } => current_pos.to_string(),
        GtidState::MySql { executed, .. } => executed.to_string(),
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// Where each member goes: rows by depth (members not attached to the master last), children
/// under their source, wrapped every `PER_ROW`. (row, column) per member, in `members` order.
fn place(c: &Cluster) -> Vec<(usize, usize)> {
    let mut pos = vec![(0, 0); c.members.len()];
    let mut row = 0;
    // Depth levels, in order; each level's members grouped by source (already sorted by key).
    let max_depth = c.members.iter().filter_map(|m| m.depth).max().unwrap_or(0);
    for depth in 0..=max_depth {
        let level: Vec<usize> = (0..c.members.len()).filter(|i| c.members[*i].depth == Some(depth)).collect();
        if level.is_empty() {
            continue;
        }
        let rows = place_level(&level, row, &mut pos);
        row += rows;
    }
    let loose: Vec<usize> = (0..c.members.len()).filter(|i| c.members[*i].depth.is_none()).collect();
    if !loose.is_empty() {
        place_level(&loose, row, &mut pos);
    }
    pos
}

fn place_level(level: &[usize], first_row: usize, pos: &mut [(usize, usize)]) -> usize {
    for (n, i) in level.iter().enumerate() {
        pos[*i] = (first_row + n / PER_ROW, n % PER_ROW);
    }
    level.len().div_ceil(PER_ROW)
}

/// The topology as an SVG tree: one box per instance (host:port, role, read_only, threads, lag,
/// GTID, version, promotion rule, downtime, problems), coloured by state, an arrow from each
/// source to its replicas. `rule_of`: the promotion rule and downtime shown for a member.
pub fn topology(c: &Cluster, extra: &dyn Fn(&InstanceKey) -> (Option<String>, bool)) -> Markup {
    let pos = place(c);
    let rows = pos.iter().map(|p| p.0 + 1).max().unwrap_or(1);
    let cols = pos.iter().map(|p| p.1 + 1).max().unwrap_or(1);
    let width = cols as f64 * (BOX_W + GAP_X) + GAP_X;
    let height = rows as f64 * (BOX_H + GAP_Y) + GAP_Y / 2.0;
    // Each row centred.
    let mut per_row = vec![0usize; rows];
    for p in &pos {
        per_row[p.0] = per_row[p.0].max(p.1 + 1);
    }
    let xy = |i: usize| {
        let (r, col) = pos[i];
        let offset = (width - per_row[r] as f64 * (BOX_W + GAP_X) - GAP_X) / 2.0;
        (offset + GAP_X + col as f64 * (BOX_W + GAP_X), GAP_Y / 2.0 + r as f64 * (BOX_H + GAP_Y))
    };
    html! {
        svg class="topology" xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {width:.0} {height:.0}"))
            width=(format!("{width:.0}")) role="img" aria-label=(format!("Topology of {}", c.name)) {
            @for (i, m) in c.members.iter().enumerate() {
                @if let Some(s) = m.source.as_ref().and_then(|s| c.members.iter().position(|x| &x.key == s)) {
                    @let (x1, y1) = xy(s);
                    @let (x2, y2) = xy(i);
                    path class="edge" d=(format!("M{:.0},{:.0} C{:.0},{:.0} {:.0},{:.0} {:.0},{:.0}",
                        x1 + BOX_W / 2.0, y1 + BOX_H, x1 + BOX_W / 2.0, y1 + BOX_H + GAP_Y / 2.0,
                        x2 + BOX_W / 2.0, y2 - GAP_Y / 2.0, x2 + BOX_W / 2.0, y2)) {}
                }
            }
            @for (i, m) in c.members.iter().enumerate() {
                @let (x, y) = xy(i);
                @let (rule, downtimed) = extra(&m.key);
                @let class = state_class(c, m, downtimed);
                @let is_master = c.master.as_ref() == Some(&m.key);
                @let problems = c.problems_of(&m.key).len();
                g class=(format!("instance {class}")) data-instance=(m.key.to_string()) data-role=(if is_master { "master" } else { "replica" })
                    transform=(format!("translate({x:.0},{y:.0})")) {
                    title { (m.key) ": " (class) @if problems > 0 { " (" (problems) " problems)" } }
                    rect width=(BOX_W) height=(BOX_H) rx="6" {}
                    text x="10" y="18" class="key" { (m.key) }
                    @match &m.instance {
                        Some(i) => {
                            text x="10" y="34" {
                                (if is_master { "master" } else { "replica" }) " · " (if i.read_only { "read-only" } else { "writable" })
                                " · " (short(i.version.split('-').next().unwrap_or(&i.version), 16))
                            }
                            text x="10" y="50" {
                                @match &i.replication {
                                    Some(r) => {
                                        "IO " (format!("{:?}", r.io_thread)) " · SQL " (format!("{:?}", r.sql_thread))
                                        " · lag " (r.seconds_behind.map(|s| format!("{s}s")).unwrap_or_else(|| "?".into()))
                                    }
                                    None => "no replication source"
                                }
                            }
                            text x="10" y="66" class="gtid" { "GTID " (short(&gtid_text(&i.gtid), 24)) }
                        }
                        None => {
                            text x="10" y="34" class="err" { "unreachable" }
                            text x="10" y="50" class="err" { (short(m.error.as_deref().unwrap_or(""), 30)) }
                        }
                    }
                    text x="10" y="82" class="meta" {
                        (rule.unwrap_or_else(|| "rule neutral".into()))
                        @if downtimed { " · downtimed" }
                        @if problems > 0 { " · " (problems) " problem" @if problems > 1 { "s" } }
                    }
                }
            }
        }
    }
}

/// A takeover's phases as bars on a time axis (ms from its start).
pub fn timeline(r: &TakeoverReport) -> Markup {
    let end = r.phases.iter().map(|p| p.start_ms + p.duration_ms).fold(r.total_ms, f64::max).max(1.0);
    let (label_w, bar_w, row_h) = (170.0, 560.0, 22.0);
    let height = r.phases.len() as f64 * row_h + 30.0;
    let x = |ms: f64| label_w + ms / end * bar_w;
    html! {
        svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {:.0} {height:.0}", label_w + bar_w + 70.0))
            role="img" aria-label="Phases on a time axis" {
            @for (n, p) in r.phases.iter().enumerate() {
                @let y = n as f64 * row_h + 4.0;
                @let class = match p.outcome { Outcome::Ok => "ok", Outcome::Refused => "refused", _ => "failed" };
                text x="0" y=(format!("{:.0}", y + 14.0)) class="label" { (p.name.name()) }
                rect class=(format!("bar {class}")) x=(format!("{:.1}", x(p.start_ms))) y=(format!("{y:.0}"))
                    width=(format!("{:.1}", (p.duration_ms / end * bar_w).max(1.5))) height=(row_h - 6.0) {
                    title { (p.name.name()) ": " (format!("{:.1}", p.duration_ms)) " ms, " (class) }
                }
                text x=(format!("{:.1}", x(p.start_ms + p.duration_ms) + 4.0)) y=(format!("{:.0}", y + 14.0)) class="ms" {
                    (format!("{:.1} ms", p.duration_ms))
                }
            }
            line x1=(label_w) x2=(label_w + bar_w) y1=(height - 20.0) y2=(height - 20.0) class="axis" {}
            text x=(label_w) y=(height - 6.0) class="ms" { "0" }
            text x=(label_w + bar_w) y=(height - 6.0) class="ms" text-anchor="end" { (format!("{end:.0} ms")) }
        }
    }
}
