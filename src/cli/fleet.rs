//! `baton fleet` and `baton watch`: every known cluster at a glance (members, worst lag,
//! problems, takeover readiness, last takeover), from a server's poller (`--api`) or from a
//! poller run here against the local store.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::CliResult;
use crate::config::Config;

#[derive(Args)]
pub struct FleetArgs {
    /// Ask Baton servers (their poller's cache) instead of polling from here (comma-separated URLs).
    #[arg(long, env = "BATON_API", value_delimiter = ',')]
    pub api: Vec<String>,
    #[arg(long)]
    pub json: bool,
    /// Only clusters whose name or alias contains this.
    #[arg(long)]
    pub filter: Option<String>,
}

/// One table row's fields, from the JSON of `GET /api/v1/fleet` (the same whether it came from a
/// server or from the poller here).
fn table(v: &serde_json::Value, filter: Option<&str>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<14} {:<22} {:>7} {:>9} {:>8}  {:<44} LAST TAKEOVER",
        "CLUSTER", "ALIAS", "MASTER", "MEMBERS", "WORST LAG", "PROBLEMS", "TAKEOVER"
    );
    let text = |j: &serde_json::Value| j.as_str().unwrap_or("-").to_string();
    for c in v["clusters"].as_array().into_iter().flatten() {
        let (name, alias) = (text(&c["name"]), text(&c["alias"]));
        if filter.is_some_and(|f| !name.contains(f) && !alias.contains(f)) {
            continue;
        }
        let r = &c["readiness"];
        let ready = if r["ready"] == true {
            format!("ready: to {}", text(&r["designated"]))
        } else {
            let x = &r["refused"];
            let on = x["instance"].as_str().map(|i| format!(" on {i}")).unwrap_or_default();
            format!("refused: {}{on}", text(&x["check"]))
        };
        let lag = c["worst_lag_s"].as_u64().map(|l| format!("{l}s")).unwrap_or_else(|| "-".into());
        let last = match c["last_takeover"].as_object() {
            Some(t) => format!("{} {}", t["status"].as_str().unwrap_or("?"), t["id"].as_str().unwrap_or("?")),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "{name:<24} {alias:<14} {:<22} {:>7} {lag:>9} {:>8}  {ready:<44} {last}",
            text(&c["master"]),
            c["members"].to_string(),
            c["problems"].to_string()
        );
    }
    let _ = writeln!(
        out,
        "data at most {:.1} s old (polled every {} s)",
        v["data_age_s"].as_f64().unwrap_or(0.0),
        v["poll_interval_s"]
    );
    out
}

/// The fleet as the poller `p` sees it now, in the route's JSON shape.
fn snapshot(p: &crate::fleet::Poller) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    Ok(serde_json::to_value(p.report()?)?)
}

fn print(v: &serde_json::Value, args: &FleetArgs) -> CliResult {
    if args.json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{}", table(v, args.filter.as_deref()));
    }
    Ok(())
}

/// Starts a poller here and waits until every followed instance has been probed once (or has
/// failed once), at most two intervals.
async fn local(cfg: &Config) -> Result<crate::fleet::Poller, Box<dyn std::error::Error>> {
    crate::process::raise_fd_limit();
    let store = crate::store::open(cfg)?;
    if store.clusters()?.is_empty() {
        return Err("no cluster is known yet: `baton topology HOST:PORT` remembers one".into());
    }
    let mut cfg = cfg.clone();
    if cfg.discovery.poll_interval_s == 0 {
        cfg.discovery.poll_interval_s = 5;
    }
    // Everything probed at once: this is one look, not a steady load.
    let p = crate::fleet::Poller::start_with(
        Arc::new(cfg),
        store.clone(),
        crate::fleet::Options { spread: false, ..Default::default() },
    );
    let deadline = tokio::time::Instant::now() + p.interval() * 2 + Duration::from_secs(1);
    // Every instance has an outcome once none is waiting for its first probe.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while tokio::time::Instant::now() < deadline {
        let all = p.instances();
        if !all.is_empty() && all.iter().all(|i| i.age_s.is_some() || i.error.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(p)
}

pub async fn fleet(cfg: &Config, args: FleetArgs) -> CliResult {
    if !args.api.is_empty() {
        return print(&super::client::fleet(&args.api).await?, &args);
    }
    let p = local(cfg).await?;
    let v = snapshot(&p)?;
    p.stop();
    print(&v, &args)
}

/// `baton watch`: the fleet table again every interval, until Ctrl-C.
pub async fn watch(cfg: &Config, args: FleetArgs) -> CliResult {
    let every = Duration::from_secs(cfg.discovery.poll_interval_s.max(1));
    let local = if args.api.is_empty() { Some(local(cfg).await?) } else { None };
    loop {
        let v = match &local {
            Some(p) => snapshot(p)?,
            None => super::client::fleet(&args.api).await?,
        };
        if !args.json {
            // Clear the screen and go home (a terminal's watch view).
            print!("\x1b[2J\x1b[H");
        }
        print(&v, &args)?;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
