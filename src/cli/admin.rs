//! Audit history, promotion rules and downtime.

use clap::{Args, Subcommand};

use super::CliResult;
use crate::config::Config;
use crate::store::{expiry_after, Downtime, PromotionRule, RuleEntry};
use crate::topology::InstanceKey;

#[derive(Args)]
pub struct AuditArgs {
    /// One takeover in full.
    pub id: Option<String>,
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    /// Ask Baton servers instead of the local store (comma-separated URLs).
    #[arg(long, env = "BATON_API", value_delimiter = ',')]
    pub api: Vec<String>,
}

pub async fn audit(cfg: &Config, args: AuditArgs) -> CliResult {
    if !args.api.is_empty() {
        let v = super::client::audit(&args.api, args.id.as_deref(), args.cluster.as_deref(), args.limit).await?;
        match (&args.id, args.json) {
            (Some(_), false) => {
                let r: crate::engine::TakeoverReport = serde_json::from_value(v)?;
                print!("{}", super::takeover::timeline(&r));
            }
            (None, false) => {
                for row in v.as_array().into_iter().flatten() {
                    println!(
                        "{}  {}  {}",
                        row["id"].as_str().unwrap_or("?"),
                        row["cluster"].as_str().unwrap_or("?"),
                        row["status"].as_str().unwrap_or("?")
                    );
                }
            }
            (_, true) => println!("{}", serde_json::to_string_pretty(&v)?),
        }
        return Ok(());
    }
    let store = crate::store::open(cfg)?;
    if let Some(id) = args.id {
        let e = store.takeover(&id)?.ok_or_else(|| format!("no takeover with id '{id}'"))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&e.record)?);
        } else {
            let r: crate::engine::TakeoverReport = serde_json::from_value(e.record)?;
            print!("{}", super::takeover::timeline(&r));
            for p in &r.phases {
                for op in &p.ops {
                    for s in &op.statements {
                        println!("  {:<20} {} {}", p.name.name(), op.instance, s);
                    }
                }
            }
        }
        return Ok(());
    }
    let list = store.takeovers(args.cluster.as_deref(), args.limit)?;
    if args.json {
        let v: Vec<&serde_json::Value> = list.iter().map(|e| &e.record).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for e in list {
        let r = &e.record;
        println!(
            "{}  {}  {:<21} {} -> {}  unavailable {} ms",
            e.id,
            e.cluster,
            e.status,
            r["old_master"].as_str().unwrap_or("-"),
            r["new_master"].as_str().unwrap_or("-"),
            r["write_unavailable_ms"].as_f64().map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum RuleCmd {
    /// Set a rule: prefer, neutral, prefer_not, must_not.
    Set {
        instance: InstanceKey,
        rule: PromotionRule,
        /// Expire after this many seconds (leave out for no expiry).
        #[arg(long)]
        duration_s: Option<u64>,
    },
    Clear {
        instance: InstanceKey,
    },
    List,
}

pub fn rule(cfg: &Config, cmd: RuleCmd) -> CliResult {
    let store = crate::store::open(cfg)?;
    match cmd {
        RuleCmd::Set { instance, rule, duration_s } => {
            let until = duration_s.map(|d| expiry_after("--duration-s", d)).transpose()?;
            store.set_promotion_rule(&RuleEntry { instance, rule, until })?
        }
        RuleCmd::Clear { instance } => store.clear_promotion_rule(&instance)?,
        RuleCmd::List => {
            for r in store.promotion_rules()? {
                println!("{}  {}  {}", r.instance, r.rule, r.until.map(|u| format!("until {u}")).unwrap_or_default());
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum DowntimeCmd {
    Begin {
        instance: InstanceKey,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = 3600)]
        duration_s: u64,
    },
    End {
        instance: InstanceKey,
    },
    List,
}

pub fn downtime(cfg: &Config, cmd: DowntimeCmd) -> CliResult {
    let store = crate::store::open(cfg)?;
    match cmd {
        DowntimeCmd::Begin { instance, owner, reason, duration_s } => {
            let until = expiry_after("--duration-s", duration_s)?;
            store.begin_downtime(&Downtime { instance, owner, reason, until })?
        }
        DowntimeCmd::End { instance } => {
            if !store.end_downtime(&instance)? {
                return Err(format!("{instance} was not downtimed").into());
            }
        }
        DowntimeCmd::List => {
            for d in store.downtimes()? {
                println!("{}  owner {}  until {}  {}", d.instance, d.owner, d.until, d.reason);
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum AliasCmd {
    /// Every remembered cluster with the alias it owns and any alias it claims without owning.
    List,
    /// Give ALIAS to the remembered cluster CLUSTER (its name: the master's host:port), taking it
    /// from the cluster that owns it now.
    Move { alias: String, cluster: String },
}

pub fn alias(cfg: &Config, cmd: AliasCmd) -> CliResult {
    let store = crate::store::open(cfg)?;
    match cmd {
        AliasCmd::List => {
            for c in store.clusters()? {
                let claim =
                    c.claimed_alias.map(|a| format!("  (claims '{a}', owned by another cluster)")).unwrap_or_default();
                println!("{}  {}{claim}", c.name, c.alias.unwrap_or_else(|| "-".into()));
            }
        }
        AliasCmd::Move { alias, cluster } => {
            if cfg.aliases.contains_key(&alias) {
                return Err(
                    format!("alias '{alias}' is configured in [aliases] of {}: change it there", cfg.origin).into()
                );
            }
            if !store.move_alias(&alias, &cluster)? {
                return Err(format!("no remembered cluster is named {cluster} (baton alias list shows them)").into());
            }
            println!("alias '{alias}' now names {cluster}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Verify the store: name every record that cannot be read (listings and recovery skip them).
    Check,
    /// Move the damaged records aside (into the table damaged_records: kept, not deleted).
    Repair,
}

pub fn store_cmd(cfg: &Config, cmd: StoreCmd) -> CliResult {
    let store = crate::store::open(cfg)?;
    let damaged = store.damaged()?;
    match cmd {
        StoreCmd::Check => {
            for d in &damaged {
                println!("damaged: {} {}: {}", d.table, d.id, d.error);
            }
            if !damaged.is_empty() {
                return Err(
                    format!("{} damaged record(s); `baton store repair` moves them aside", damaged.len()).into()
                );
            }
            println!("store {}: every record reads", cfg.paths.data_dir.display());
        }
        StoreCmd::Repair => {
            let n = store.set_aside_damaged()?;
            println!("{n} damaged record(s) moved aside");
        }
    }
    Ok(())
}
