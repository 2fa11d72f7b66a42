use clap::Args;

use super::CliResult;
use crate::config::Config;
use crate::discovery;
use crate::mysql::Connector;

#[derive(Args)]
pub struct TopologyArgs {
    /// host:port of any member, or a cluster alias.
    pub hint: String,
    /// Print the full model as JSON.
    #[arg(long)]
    pub json: bool,
    /// Ask Baton servers instead of discovering from here (comma-separated URLs).
    #[arg(long, env = "BATON_API", value_delimiter = ',')]
    pub api: Vec<String>,
}

pub async fn run(cfg: &Config, args: TopologyArgs) -> CliResult {
    let cluster = if args.api.is_empty() {
        let store = crate::store::open(cfg)?;
        let conn = Connector::new(cfg);
        let cluster = discovery::discover_hint(&conn, cfg, store.as_ref(), &args.hint).await;
        conn.close().await;
        cluster?
    } else {
        super::client::cluster(&args.api, &args.hint).await?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cluster)?);
    } else {
        print!("{}", render(&cluster));
    }
    Ok(())
}

pub use crate::topology::render::render;
