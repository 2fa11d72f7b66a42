//! Configuration: `config/baton.toml` (or `--config FILE` / `BATON_CONFIG`), then `BATON_*`
//! environment variables on top, then validation. Every field has a default, so no file at all is a
//! valid configuration that matches `baton sandbox` topologies.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topology::{HostFilter, InstanceKey};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config {origin}: key '{key}': {message}")]
    Invalid { origin: String, key: String, message: String },
}

/// A password: never printed by `Debug` or `Display`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
    /// Use TLS for these connections.
    pub tls: bool,
    /// With `tls`, accept a server certificate that does not verify (self-signed lab setups).
    pub tls_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    pub user: String,
    pub password: Secret,
    /// Use TLS to the instances, with certificates verified (against `tls_ca`, else the system's
    /// roots). Then a server that asks for the password in full gets it over that TLS.
    pub tls: bool,
    /// Refused: a server that presents any certificate would read the password in clear. Kept so
    /// that older configurations get an error that says what to do instead (`tls_ca`).
    pub tls_skip_verify: bool,
    /// PEM file of the CA that signed the instances' certificates (a private CA).
    pub tls_ca: Option<PathBuf>,
    /// Without TLS: the RSA public keys (PEM files) of servers that use `caching_sha2_password`,
    /// by `host:port`, and `*` for every other server. A server that asks for the password in
    /// full gets it encrypted with its pinned key; without one Baton refuses to send it.
    pub pinned_rsa_keys: BTreeMap<String, PathBuf>,
    /// Baton's own connections to an instance (`host:port`, as the topology names it) go to
    /// another address: an SSH tunnel, a bastion's port forward, a TCP proxy. The instance keeps
    /// its name everywhere else (replication is pointed at it, TLS verifies it).
    pub dial: BTreeMap<String, String>,
    /// Bound on establishing one connection.
    pub connect_timeout_ms: u64,
    /// Bound on one query's answer (waits that the server bounds itself get their own limit).
    pub read_timeout_ms: u64,
    /// Connections kept per instance.
    pub pool_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Where a read-role caller's discovery may reach besides the members of known clusters:
    /// CIDRs (`10.0.0.0/8`) and host patterns (`*.db.example.com`). Reaching anything else is an
    /// admin action (the credentials go only where they belong).
    pub allowed: Vec<String>,
    /// A remembered cluster none of whose members has answered for this long (seconds) is
    /// forgotten when the clusters are next listed (orchestrator's UnseenInstanceForgetHours).
    /// 0: re-check every listing.
    pub forget_after_s: u64,
    /// How many instances are probed at once.
    pub max_parallel: usize,
    /// Replicas further behind than this are reported as lagging.
    pub lag_threshold_s: u64,
    /// A query run on the master whose first column of the first row is the cluster alias
    /// (orchestrator's DetectClusterAliasQuery). Empty: no query.
    pub alias_query: String,
    /// `baton serve` (and `baton watch`) probe every member of every known cluster this often
    /// (seconds), spread over the interval. 0: no background polling.
    pub poll_interval_s: u64,
    /// Probes of healthy instances in flight at once.
    pub poll_max_parallel: usize,
    /// Probes in flight at once of instances that failed (their own lane, with back-off: they
    /// never hold up healthy ones).
    pub poll_backoff_parallel: usize,
    /// The longest back-off (seconds) between probes of an instance that keeps failing.
    pub poll_backoff_max_s: u64,
    /// The most instances the poller follows (a server reporting thousands of fake replicas
    /// cannot grow it past this).
    pub poll_max_instances: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TakeoverConfig {
    /// Largest replication lag (seconds) the designated replica may have before a takeover starts.
    pub reasonable_lag_s: u64,
    /// How long the designated replica may take to execute the fenced master's last transaction.
    pub catchup_timeout_ms: u64,
    /// `lock_wait_timeout` for `SET GLOBAL read_only` (seconds), so a long transaction or a lock
    /// cannot hold the fence forever.
    pub fence_lock_wait_s: u64,
    /// After fencing, kill remaining client connections on the old master after this grace period
    /// (ms). None: never kill.
    pub kill_connections_after_ms: Option<u64>,
    /// Host name patterns (regular substrings) never promoted, like orchestrator's
    /// PromotionIgnoreHostnameFilters.
    pub promotion_ignore_hostname_filters: Vec<HostFilter>,
    /// Promote a MariaDB replica although it or the master runs with `gtid_strict_mode=OFF`
    /// (then a local write on it can go unnoticed: docs/RELIABILITY.md).
    pub allow_lax_gtid: bool,
    /// Refuse a takeover while Baton's clock is off from the master's by more than this many
    /// seconds: promotion rules and downtime expire by Baton's clock.
    pub max_clock_skew_s: u64,
    /// A rollback keeps trying to make the fenced old master writable again for this long (ms)
    /// when it cannot reach it (a network blip): writes come back as soon as it answers.
    pub unfence_retry_ms: u64,
    /// On a master running semi-sync: refuse unless the designated replica acknowledges now and
    /// the new master keeps as many semi-sync replicas as a commit waits for. Either way the
    /// takeover carries semi-sync over (the new master's master side, the demoted one's replica
    /// side).
    pub semi_sync_required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    pub scripts_dir: PathBuf,
    pub hooks_dir: PathBuf,
    pub data_dir: PathBuf,
}

/// The Lua host: which policy file, the limits of every script call, and the capabilities that
/// reach outside MySQL (off unless switched on).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    /// The candidate policy, relative to `paths.scripts_dir`. Empty: the built-in Rust ordering.
    pub policy: String,
    /// Memory one Lua VM (all scripts of one loaded version) may allocate, in MiB.
    pub memory_limit_mb: usize,
    /// Lua VM instructions one call (one hook, one policy choice) may execute.
    pub instruction_limit: u64,
    /// Wall-clock limit of one hook or policy call, waits included (ms).
    pub hook_timeout_ms: u64,
    /// Quiet time after the last change in the watched directories before reloading (ms).
    pub reload_debounce_ms: u64,
    /// `baton.shell(...)`: run commands with `sh -c`.
    pub allow_shell: bool,
    /// `baton.http.post(...)`: send HTTP requests.
    pub allow_http: bool,
    /// The write primitives for hooks (`baton.read_only`, `stop_replication`, `start_replication`,
    /// `repoint`, `kill_connections`): off unless switched on. The policy never has them, and no
    /// script has them during a dry run. Every call is recorded in the running phase.
    pub allow_writes: bool,
    /// The account `baton.query` runs as (a low-privilege one: SELECT and PROCESS, say). Empty:
    /// the topology account.
    pub query_user: String,
    pub query_password: Secret,
    /// Free-form settings handed to the scripts as `baton.settings` (e.g. the commands of
    /// `hooks/orchestrator_compat.lua`, a webhook URL, a data centre map).
    pub settings: toml::Table,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        ScriptsConfig {
            policy: "policy.lua".into(),
            memory_limit_mb: 64,
            instruction_limit: 100_000_000,
            hook_timeout_ms: 10_000,
            reload_debounce_ms: 200,
            allow_shell: false,
            allow_http: false,
            allow_writes: false,
            query_user: String::new(),
            query_password: Secret::default(),
            settings: toml::Table::new(),
        }
    }
}

/// `baton serve`: where it listens, who may call it, and the orchestrator-compatible routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// `none` (loopback only), `basic` (users) or `token` (bearer tokens).
    pub auth: AuthMode,
    /// Serve orchestrator's routes under `/api` (for `orchestrator-client`).
    pub orchestrator_routes: bool,
    pub max_body_bytes: usize,
    /// Whole-request limit; a takeover's own limits are far below it.
    pub request_timeout_ms: u64,
    /// A client must send a request's headers within this (a connection that never finishes
    /// them is closed).
    pub header_read_timeout_ms: u64,
    /// Connections open at once (event streams included); one more is closed at accept.
    pub max_connections: usize,
    /// Basic auth users: name = { password_hash = "$argon2id$...", role = "read" | "admin" }
    /// (`baton hash-password` makes the hash).
    pub users: BTreeMap<String, HttpUser>,
    /// Bearer tokens: name = { sha256 = "hex of the token", role = "read" | "admin" }
    /// (`baton hash-token` makes a token and its hash).
    pub tokens: BTreeMap<String, HttpToken>,
    /// Origins (`scheme://host[:port]`) besides this service's own whose browser requests may
    /// change state (the console behind a proxy under another name). Every other cross-site
    /// request to a state-changing route is refused.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    None,
    Basic,
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUser {
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToken {
    pub sha256: String,
    pub role: Role,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:3000".into(),
            auth: AuthMode::None,
            orchestrator_routes: true,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 120_000,
            header_read_timeout_ms: 10_000,
            max_connections: 256,
            users: BTreeMap::new(),
            tokens: BTreeMap::new(),
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub topology: TopologyConfig,
    pub replication: Credentials,
    pub discovery: DiscoveryConfig,
    pub takeover: TakeoverConfig,
    pub paths: PathsConfig,
    pub scripts: ScriptsConfig,
    pub http: HttpConfig,
    /// Several Baton nodes sharing one state (`[ha]`); absent: one node, SQLite.
    pub ha: HaConfig,
    /// Static cluster aliases: alias = "host:port" of any member.
    pub aliases: BTreeMap<String, String>,
    /// Where this configuration came from, for error messages.
    #[serde(skip)]
    pub origin: String,
}

/// `[ha]`: the state on etcd v3, shared by every Baton node that names the same endpoints and
/// prefix; one of them leads (an etcd election), the others send it what changes anything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaConfig {
    /// `http://host:port` of etcd members (`BATON_ETCD_ENDPOINTS`, comma-separated). Empty: SQLite.
    pub etcd_endpoints: Vec<String>,
    /// Every key under this prefix.
    pub prefix: String,
    /// Bound on one etcd request (ms); a request that gets no answer is tried once more.
    pub timeout_ms: u64,
    /// This node's name among the others (`BATON_NODE_ID`); empty: host name and listen port.
    pub node_id: String,
    /// The URL other nodes and clients reach this node's API at (`BATON_ADVERTISE_URL`); empty:
    /// `http://` and the listen address.
    pub advertise_url: String,
    /// The election lease (s): a leader that cannot renew it for this long stops leading, and
    /// another node is elected.
    pub lease_ttl_s: u64,
    /// Settled takeovers and instance commands older than this many days are deleted from etcd
    /// by the leader (etcd is not an archive; export the audit elsewhere to keep it longer).
    /// 0 keeps everything. SQLite keeps everything.
    pub audit_retention_days: u64,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            etcd_endpoints: Vec::new(),
            prefix: "/baton/v1/".into(),
            timeout_ms: 3000,
            node_id: String::new(),
            advertise_url: String::new(),
            lease_ttl_s: 5,
            audit_retention_days: 30,
        }
    }
}

impl Default for Credentials {
    /// The replication account of `baton sandbox` topologies.
    fn default() -> Self {
        Credentials { user: "repl".into(), password: Secret::new("repl"), tls: false, tls_skip_verify: false }
    }
}

impl ScriptsConfig {
    /// `baton.query`'s account, when one of its own is configured: TLS settings as the topology's.
    pub fn query_credentials(&self, topology: &TopologyConfig) -> Option<Credentials> {
        (!self.query_user.is_empty()).then(|| Credentials {
            user: self.query_user.clone(),
            password: self.query_password.clone(),
            ..topology.credentials()
        })
    }
}

impl TopologyConfig {
    pub fn credentials(&self) -> Credentials {
        Credentials {
            user: self.user.clone(),
            password: self.password.clone(),
            tls: self.tls,
            tls_skip_verify: self.tls_skip_verify,
        }
    }
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            user: "baton".into(),
            password: Secret::new("baton"),
            tls: false,
            tls_skip_verify: false,
            tls_ca: None,
            pinned_rsa_keys: BTreeMap::new(),
            dial: BTreeMap::new(),
            connect_timeout_ms: 1000,
            read_timeout_ms: 5000,
            pool_max: 4,
        }
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            allowed: Vec::new(),
            forget_after_s: 86_400,
            max_parallel: 64,
            lag_threshold_s: 10,
            alias_query: "SELECT alias FROM meta.cluster LIMIT 1".into(),
            poll_interval_s: 5,
            poll_max_parallel: 256,
            poll_backoff_parallel: 32,
            poll_backoff_max_s: 60,
            poll_max_instances: 20_000,
        }
    }
}

impl Default for TakeoverConfig {
    fn default() -> Self {
        TakeoverConfig {
            reasonable_lag_s: 10,
            catchup_timeout_ms: 10_000,
            fence_lock_wait_s: 2,
            kill_connections_after_ms: None,
            promotion_ignore_hostname_filters: Vec::new(),
            allow_lax_gtid: false,
            max_clock_skew_s: 60,
            unfence_retry_ms: 30_000,
            semi_sync_required: false,
        }
    }
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig { scripts_dir: "scripts".into(), hooks_dir: "hooks".into(), data_dir: "baton-data".into() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            topology: TopologyConfig::default(),
            replication: Credentials::default(),
            discovery: DiscoveryConfig::default(),
            takeover: TakeoverConfig::default(),
            paths: PathsConfig::default(),
            scripts: ScriptsConfig::default(),
            http: HttpConfig::default(),
            ha: HaConfig::default(),
            aliases: BTreeMap::new(),
            origin: "built-in defaults".into(),
        }
    }
}

/// The file used when none is named: `config/baton.toml` under the current directory.
pub const DEFAULT_PATH: &str = "config/baton.toml";

impl Config {
    /// Loads `path` if given, else `config/baton.toml` when it exists, else the defaults; then applies
    /// the environment and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("BATON_")).collect();
        Self::load_with_env(path, &env)
    }

    pub fn load_with_env(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let default_path = Path::new(DEFAULT_PATH);
        let path = path.or_else(|| default_path.exists().then_some(default_path));
        let mut cfg = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                Self::parse(&text, &p.display().to_string())?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string().trim().to_string() })?;
        cfg.origin = origin.to_string();
        Ok(cfg)
    }

    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (k, v) in env {
            let bad = |msg: &str| ConfigError::Invalid {
                origin: "environment".into(),
                key: k.clone(),
                message: format!("{msg} (got '{v}')"),
            };
            match k.as_str() {
                "BATON_TOPOLOGY_USER" => self.topology.user = v.clone(),
                "BATON_TOPOLOGY_PASSWORD" => self.topology.password = Secret::new(v.clone()),
                "BATON_REPLICATION_USER" => self.replication.user = v.clone(),
                "BATON_REPLICATION_PASSWORD" => self.replication.password = Secret::new(v.clone()),
                "BATON_DATA_DIR" => self.paths.data_dir = v.into(),
                "BATON_SCRIPTS_DIR" => self.paths.scripts_dir = v.into(),
                "BATON_HOOKS_DIR" => self.paths.hooks_dir = v.into(),
                "BATON_NODE_ID" => self.ha.node_id = v.clone(),
                "BATON_ADVERTISE_URL" => self.ha.advertise_url = v.clone(),
                "BATON_ETCD_ENDPOINTS" => {
                    self.ha.etcd_endpoints =
                        v.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect()
                }
                "BATON_POLICY" => self.scripts.policy = v.clone(),
                "BATON_SCRIPTS_QUERY_USER" => self.scripts.query_user = v.clone(),
                "BATON_SCRIPTS_QUERY_PASSWORD" => self.scripts.query_password = Secret::new(v.clone()),
                "BATON_LISTEN" => self.http.listen = v.clone(),
                "BATON_CONNECT_TIMEOUT_MS" => {
                    self.topology.connect_timeout_ms = v.parse().map_err(|_| bad("not a number of milliseconds"))?
                }
                "BATON_READ_TIMEOUT_MS" => {
                    self.topology.read_timeout_ms = v.parse().map_err(|_| bad("not a number of milliseconds"))?
                }
                "BATON_CATCHUP_TIMEOUT_MS" => {
                    self.takeover.catchup_timeout_ms = v.parse().map_err(|_| bad("not a number of milliseconds"))?
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Invalid {
            origin: self.origin.clone(),
            key: key.to_string(),
            message: message.to_string(),
        };
        if self.topology.user.is_empty() {
            return Err(bad("topology.user", "must not be empty"));
        }
        if self.replication.user.is_empty() {
            return Err(bad("replication.user", "must not be empty"));
        }
        for (key, v) in [
            ("topology.connect_timeout_ms", self.topology.connect_timeout_ms),
            ("topology.read_timeout_ms", self.topology.read_timeout_ms),
            ("takeover.catchup_timeout_ms", self.takeover.catchup_timeout_ms),
            ("takeover.fence_lock_wait_s", self.takeover.fence_lock_wait_s),
            ("scripts.instruction_limit", self.scripts.instruction_limit),
            ("scripts.hook_timeout_ms", self.scripts.hook_timeout_ms),
            ("scripts.memory_limit_mb", self.scripts.memory_limit_mb as u64),
        ] {
            if v == 0 {
                return Err(bad(key, "must be greater than 0"));
            }
        }
        if self.topology.pool_max == 0 {
            return Err(bad("topology.pool_max", "must be at least 1"));
        }
        if self.discovery.poll_max_parallel == 0 || self.discovery.poll_backoff_parallel == 0 {
            return Err(bad("discovery.poll_max_parallel", "and poll_backoff_parallel must be at least 1"));
        }
        if self.discovery.poll_interval_s > 3600 {
            return Err(bad("discovery.poll_interval_s", "at most 3600 (0 turns polling off)"));
        }
        if self.discovery.max_parallel == 0 {
            return Err(bad("discovery.max_parallel", "must be at least 1"));
        }
        if self.http.max_body_bytes == 0
            || self.http.request_timeout_ms == 0
            || self.http.header_read_timeout_ms == 0
            || self.http.max_connections == 0
        {
            return Err(bad(
                "http",
                "max_body_bytes, request_timeout_ms, header_read_timeout_ms and max_connections must be greater than 0",
            ));
        }
        for (name, t) in &self.http.tokens {
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(
                    &format!("http.tokens.{name}.sha256"),
                    "must be 64 hex digits (baton hash-token makes it)",
                ));
            }
        }
        for (name, u) in &self.http.users {
            if !u.password_hash.starts_with("$argon2") {
                return Err(bad(
                    &format!("http.users.{name}.password_hash"),
                    "must be an argon2 hash (baton hash-password makes it)",
                ));
            }
        }
        if self.topology.tls_skip_verify || self.replication.tls_skip_verify {
            let key =
                if self.topology.tls_skip_verify { "topology.tls_skip_verify" } else { "replication.tls_skip_verify" };
            return Err(bad(
                key,
                "is no longer accepted: a server that presents any certificate would read the password in clear; \
                 set topology.tls_ca to the CA that signed the servers' certificates",
            ));
        }
        if let Some(ca) = &self.topology.tls_ca {
            if !ca.is_file() {
                return Err(bad("topology.tls_ca", &format!("{} is not a readable file", ca.display())));
            }
        }
        for (who, path) in &self.topology.pinned_rsa_keys {
            let key = format!("topology.pinned_rsa_keys.{who}");
            if who != "*" {
                who.parse::<InstanceKey>()
                    .map_err(|e| bad(&key, &format!("'{who}' is neither host:port nor *: {e}")))?;
            }
            let pem = std::fs::read(path).map_err(|e| bad(&key, &format!("{}: {e}", path.display())))?;
            crate::mysql::guard::check_public_key(&pem).map_err(|e| bad(&key, &format!("{}: {e}", path.display())))?;
        }
        for e in &self.ha.etcd_endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < 10 {
                return Err(bad("ha.etcd_endpoints", &format!("'{e}' is not an http(s)://host:port URL")));
            }
        }
        if !self.ha.prefix.starts_with('/') {
            return Err(bad("ha.prefix", "must start with /"));
        }
        if self.ha.node_id.contains('/') || self.ha.node_id.chars().any(char::is_control) {
            return Err(bad("ha.node_id", "must not contain '/' or control characters"));
        }
        if !self.ha.etcd_endpoints.is_empty() && self.ha.lease_ttl_s < 2 {
            return Err(bad("ha.lease_ttl_s", "must be at least 2 seconds"));
        }
        if self.ha.timeout_ms == 0 {
            return Err(bad("ha.timeout_ms", "must be at least 1"));
        }
        for (instance, via) in &self.topology.dial {
            let key = format!("topology.dial.\"{instance}\"");
            instance.parse::<InstanceKey>().map_err(|e| bad(&key, &format!("'{instance}' is not host:port: {e}")))?;
            via.parse::<InstanceKey>().map_err(|e| bad(&key, &format!("'{via}' is not host:port: {e}")))?;
        }
        for pattern in &self.discovery.allowed {
            crate::discovery::Reach::parse_pattern(pattern).map_err(|e| bad("discovery.allowed", &e))?;
        }
        for (alias, target) in &self.aliases {
            target.parse::<InstanceKey>().map_err(|e| bad(&format!("aliases.{alias}"), &e.to_string()))?;
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.topology.connect_timeout_ms)
    }
    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.topology.read_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.topology.user, "baton");
        assert_eq!(c.replication.user, "repl");
    }

    #[test]
    fn env_overrides_file() {
        let mut c = Config::parse("[topology]\nuser = \"a\"\npassword = \"b\"\n", "x.toml").unwrap();
        c.apply_env(&[
            ("BATON_TOPOLOGY_USER".into(), "env-user".into()),
            ("BATON_REPLICATION_PASSWORD".into(), "pw".into()),
            ("BATON_DATA_DIR".into(), "/tmp/d".into()),
        ])
        .unwrap();
        assert_eq!(c.topology.user, "env-user");
        assert_eq!(c.topology.password.expose(), "b");
        assert_eq!(c.replication.password.expose(), "pw");
        assert_eq!(c.paths.data_dir, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let e = Config::parse("[topology]\nconnect_timeout_ms = \"soon\"\n", "conf/b.toml").unwrap_err().to_string();
        assert!(e.contains("conf/b.toml") && e.contains("connect_timeout_ms"), "{e}");
        let e = Config::parse("[topologie]\n", "b.toml").unwrap_err().to_string();
        assert!(e.contains("topologie"), "{e}");
        let c = Config::parse("[topology]\nread_timeout_ms = 0\n", "b.toml").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("b.toml") && e.contains("topology.read_timeout_ms"), "{e}");
        let c = Config::parse("[aliases]\nprod = \"db1\"\n", "b.toml").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("aliases.prod"));
        // A hostname filter that is not a regular expression: the file, the key and the pattern.
        let e = Config::parse("[takeover]\npromotion_ignore_hostname_filters = [\"^dev-\", \"([\"]\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("promotion_ignore_hostname_filters") && e.contains("'(['"), "{e}");
        let c = Config::parse("[takeover]\npromotion_ignore_hostname_filters = [\"^dev-\", \"10.0.0.3\"]\n", "c.toml")
            .unwrap();
        assert_eq!(c.takeover.promotion_ignore_hostname_filters.len(), 2);
    }

    #[test]
    fn passwords_are_not_printed() {
        let mut c = Config::default();
        c.topology.password = Secret::new("s3cr3t-xyz");
        c.replication.password = Secret::new("s3cr3t-xyz");
        assert!(!format!("{c:?}").contains("s3cr3t-xyz"));
    }

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../config/baton.toml");
        let c = Config::parse(text, "config/baton.toml").unwrap();
        c.validate().unwrap();
    }
}
