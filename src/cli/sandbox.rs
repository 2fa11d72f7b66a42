use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;

use super::CliResult;
use crate::sandbox::{Sandbox, SandboxSpec, ADMIN_USER, APP_USER, REPL_USER};

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// Start a master and N replicas on 127.0.0.1 ports P..P+N.
    Up {
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        #[arg(long, default_value_t = 23306)]
        base_port: u16,
        #[arg(long, default_value = "sandbox")]
        dir: PathBuf,
        /// Cluster alias written to the replicated meta.cluster row.
        #[arg(long)]
        alias: Option<String>,
        /// Semi-synchronous replication on (the master waits for one replica's acknowledgement).
        #[arg(long)]
        semi_sync: bool,
    },
    /// Stop the sandbox's own processes.
    Down {
        #[arg(long, default_value = "sandbox")]
        dir: PathBuf,
    },
    /// Show the sandbox's instances and whether they run.
    Status {
        #[arg(long, default_value = "sandbox")]
        dir: PathBuf,
    },
    /// An etcd cluster on free loopback ports, for several Baton nodes (`[ha]`).
    #[command(subcommand)]
    Etcd(EtcdCmd),
}

#[derive(Subcommand)]
pub enum EtcdCmd {
    /// Start N members (fresh data directories, one cluster token per run) and leave them running.
    Up {
        #[arg(long, default_value_t = 3)]
        members: usize,
        #[arg(long, default_value = "sandbox-etcd")]
        dir: PathBuf,
    },
    /// Stop the members and remove their directory.
    Down {
        #[arg(long, default_value = "sandbox-etcd")]
        dir: PathBuf,
    },
}

pub async fn run(cmd: SandboxCmd) -> CliResult {
    match cmd {
        SandboxCmd::Up { replicas, base_port, dir, alias, semi_sync } => {
            let start = Instant::now();
            let sb = Sandbox::up(&SandboxSpec { dir, base_port, replicas, alias }).await?;
            if semi_sync {
                sb.enable_semi_sync().await?;
                println!("semi-synchronous replication on");
            }
            println!("sandbox up in {} ms: {}", start.elapsed().as_millis(), sb.dir.display());
            for (i, inst) in sb.instances.iter().enumerate() {
                let role = if i == 0 { "master " } else { "replica" };
                println!("  {role} 127.0.0.1:{}  server_id {}  pid {}", inst.port, inst.server_id, inst.pid);
            }
            println!("alias: {}", sb.alias);
            println!(
                "users: admin {}/{}  replication {}/{}  application {}/{} (no SUPER: read_only stops it)",
                ADMIN_USER.0, ADMIN_USER.1, REPL_USER.0, REPL_USER.1, APP_USER.0, APP_USER.1
            );
            println!("next:");
            println!("  baton topology {}", sb.master());
            println!("  baton topology {} --json", sb.alias);
            println!("  baton sandbox status --dir {}", sb.dir.display());
            println!("  baton sandbox down --dir {}", sb.dir.display());
            Ok(())
        }
        SandboxCmd::Down { dir } => {
            let sb = Sandbox::load(&dir)?;
            sb.down().await?;
            println!("sandbox in {} stopped", sb.dir.display());
            Ok(())
        }
        SandboxCmd::Etcd(EtcdCmd::Up { members, dir }) => {
            use crate::sandbox::etcd::EtcdCluster;
            if dir.join("etcd.json").exists() {
                return Err(format!(
                    "{}: an etcd sandbox is already there; `baton sandbox etcd down --dir {}` first",
                    dir.display(),
                    dir.display()
                )
                .into());
            }
            if !(1..=9).contains(&members) {
                return Err(format!("--members {members}: from 1 to 9").into());
            }
            let start = Instant::now();
            let etcd = EtcdCluster::start(&dir, members).await?;
            let endpoints = etcd.endpoints().join(",");
            println!("etcd up in {} ms: {} members in {}", start.elapsed().as_millis(), members, dir.display());
            for m in &etcd.members {
                println!("  {}  {}", m.name, m.client_url);
            }
            etcd.detach()?;
            println!("next: three Baton nodes on it (one terminal each, or add &):");
            for (n, port) in [(1, 3001), (2, 3002), (3, 3003)] {
                println!(
                    "  BATON_ETCD_ENDPOINTS={endpoints} BATON_NODE_ID=node{n} baton serve --listen 127.0.0.1:{port}"
                );
            }
            println!("  BATON_API=http://127.0.0.1:3001,http://127.0.0.1:3002,http://127.0.0.1:3003 baton ha status");
            println!("  baton sandbox etcd down --dir {}", dir.display());
            Ok(())
        }
        SandboxCmd::Etcd(EtcdCmd::Down { dir }) => {
            let stopped = crate::sandbox::etcd::EtcdCluster::stop_detached(&dir).await?;
            println!("etcd sandbox in {} stopped ({stopped} members were running) and removed", dir.display());
            Ok(())
        }
        SandboxCmd::Status { dir } => {
            let sb = Sandbox::load(&dir)?;
            println!("sandbox {} (alias {})", sb.dir.display(), sb.alias);
            for (inst, alive) in sb.status() {
                let state = if alive { "running" } else { "stopped" };
                println!("  127.0.0.1:{}  pid {}  {state}", inst.port, inst.pid);
            }
            Ok(())
        }
    }
}
