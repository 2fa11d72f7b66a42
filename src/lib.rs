//! Baton: graceful master takeover for MySQL/MariaDB replication clusters.
//!
//! # Layout
//!
//! - [`topology`]: the pure model: instance keys, probed instances, GTID positions and sets, the
//!   cluster tree and its problems. No I/O.
//! - [`mysql`]: the only code that speaks SQL: pooled connections with timeouts, one dialect per
//!   server flavor, the probe of one instance, the write primitives.
//! - [`discovery`]: from any member, probe the whole cluster in parallel and build the tree.
//! - [`sandbox`] (feature `lab`): real `mariadbd` replication topologies on loopback ports, and a
//!   real HAProxy in front of one, for demos, tests and benchmarks.
//! - [`process`]: other processes: alive or not, signals, waiting for an exit.
//! - [`engine`]: the takeover as named phases with a journal; pure plan decisions in `plan`.
//! - [`lua`]: the Lua host: the operator's candidate policy and hooks, sandboxed, reloaded on change.
//! - [`http`]: `baton serve`: the native JSON API and orchestrator's routes, thin over the rest.
//! - [`store`]: the embedded store (SQLite) behind a small trait.
//! - [`config`]: the TOML configuration and its `BATON_*` environment overrides.
//! - [`migrate`]: an orchestrator configuration turned into a `baton.toml`.
//! - [`cli`]: the `baton` command line, a thin shell over the modules above.
//!
//! The feature `lab` (on by default) builds what a production service does not need: the sandbox,
//! the benchmarks and the demo, the workload writer, and fault injection (`BATON_FAULT_*`). A
//! production build (`cargo build --release --no-default-features`) has none of it: no
//! environment variable can make it kill itself.
//!
//! `docs/ARCHITECTURE.md` has the bird's-eye view and the invariants.

pub mod cli;
pub mod config;
pub mod discovery;
pub mod engine;
pub mod fleet;
pub mod ha;
pub mod http;
pub mod lua;
pub mod migrate;
pub mod mysql;
pub mod process;
#[cfg(feature = "lab")]
pub mod sandbox;
#[cfg(feature = "lab")]
pub mod sim;
pub mod store;
pub mod topology;

/// Installs the one TLS crypto provider (ring) the whole program uses. Idempotent.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
