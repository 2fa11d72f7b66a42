//! `baton-sim`: a simulated fleet of MariaDB servers on loopback addresses, for scale tests and
//! `baton bench fleet` (see `baton::sim`). Prints one line per cluster (its members, the master
//! first), then `ready N`, and runs until stdin closes or it is killed.

use std::time::Instant;

use clap::Parser;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "baton-sim", about = "Simulated MariaDB servers for Baton's scale tests")]
struct Args {
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    #[arg(long, default_value_t = 10)]
    cluster_size: usize,
    /// The first instance's address; the others follow it.
    #[arg(long, default_value = "127.1.0.1")]
    first_ip: std::net::Ipv4Addr,
    #[arg(long, default_value_t = 3306)]
    port: u16,
    /// Replicas (never masters) that hang: accept and never answer, in percent of all instances.
    #[arg(long, default_value_t = 0.0)]
    hanging_pct: f64,
    /// One listener on 0.0.0.0:PORT for every instance (large fleets: one file descriptor
    /// instead of one per instance).
    #[arg(long)]
    wildcard: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    baton::process::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let start = Instant::now();
        let spec = baton::sim::SimSpec {
            clusters: args.clusters,
            cluster_size: args.cluster_size,
            first_ip: args.first_ip,
            port: args.port,
            wildcard: args.wildcard,
        };
        let sim = match baton::sim::Sim::start(&spec).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("baton-sim: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let clusters = sim.clusters();
        let total: usize = clusters.iter().map(Vec::len).sum();
        let hang = ((total as f64) * args.hanging_pct / 100.0).round() as usize;
        // Spread over the clusters: the last replica of every k-th cluster.
        let replicas: Vec<_> = clusters.iter().filter(|c| c.len() > 1).map(|c| c[c.len() - 1].clone()).collect();
        if hang > replicas.len() {
            eprintln!(
                "baton-sim: --hanging-pct {} needs {hang} hanging replicas; at most {} (one per cluster)",
                args.hanging_pct,
                replicas.len()
            );
            return std::process::ExitCode::FAILURE;
        }
        let step = replicas.len().checked_div(hang).unwrap_or(1);
        for k in replicas.iter().step_by(step.max(1)).take(hang) {
            let _ = sim.set_mode(k, baton::sim::Mode::Hang).await;
        }
        for c in &clusters {
            let line: Vec<String> = c.iter().map(|k| k.to_string()).collect();
            println!("cluster {}", line.join(" "));
        }
        println!("ready {total} hanging {hang} in {} ms", start.elapsed().as_millis());
        // Until stdin closes (the parent went away) or a signal ends the process.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        })
        .await;
        drop(sim);
        std::process::ExitCode::SUCCESS
    })
}
