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
