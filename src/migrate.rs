//! Coming from orchestrator: `baton import-orchestrator-config orchestrator.conf.json` turns an
//! orchestrator configuration into a `baton.toml` for the same setup, then lists, as comments,
//! every setting it did not carry over and why.
//!
//! Pure: text in, text out (plus reading the credentials file orchestrator names, by the caller).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::topology::HostFilter;

/// Why a setting has no place in Baton, by the setting's name.
fn not_carried(key: &str) -> &'static str {
    let k = key;
    let failover =
        ["Recover", "Failover", "FailureDetection", "OnFailure", "PostUnsuccessful", "PreFailover", "PostFailover"];
    if failover.iter().any(|p| k.contains(p))
        || matches!(
            k,
            "RecoveryPeriodBlockSeconds"
                | "RecoveryIgnoreHostnameFilters"
                | "CoMasterRecoveryMustPromoteOtherCoMaster"
                | "DetachLostSlavesAfterMasterFailover"
                | "ApplyMySQLPromotionAfterMasterFailover"
                | "PreventCrossDataCenterMasterFailover"
                | "PreventCrossRegionMasterFailover"
                | "FailMasterPromotionOnLagMinutes"
                | "PostponeReplicaRecoveryOnLagMinutes"
                | "PostIntermediateMasterFailoverProcesses"
        )
    {
        return "failover-only: Baton does graceful takeovers only";
    }
    if k.starts_with("MySQLOrchestrator") || k.starts_with("Raft") || matches!(k, "BackendDB" | "SQLite3DataFile") {
        return "orchestrator's backend: Baton keeps its state in paths.data_dir (several nodes on etcd: the HA issue)";
    }
    if k.starts_with("Agent") || k.starts_with("Agents") || k == "ServeAgentsHttp" || k == "UnseenAgentForgetHours" {
        return "orchestrator agents: no equivalent";
    }
    if k.contains("PseudoGTID") || k == "SkipBinlogEventsContaining" || k == "BinlogEventsChunkSize" {
        return "Pseudo-GTID: Baton relocates replicas with GTID only";
    }
    if k.contains("HostnameResolve")
        || k == "RejectHostnameResolvePattern"
        || k == "ExpiryHostnameResolvesMinutes"
        || k == "SkipBinlogServerUnresolveCheck"
    {
        return "hostname resolution: Baton uses host names as the servers report them";
    }
    if k.starts_with("Consul") || k.starts_with("Zk") || k.starts_with("KV") || k.starts_with("Graphite") {
        return "external stores and metrics: Baton serves /metrics (Prometheus)";
    }
    if matches!(
        k,
        "UseSSL"
            | "UseMutualTLS"
            | "SSLCertFile"
            | "SSLPrivateKeyFile"
            | "SSLCAFile"
            | "SSLSkipVerify"
            | "SSLValidOUs"
            | "StatusOUVerify"
    ) {
        return "TLS of orchestrator's own HTTP: run Baton behind a TLS proxy (http.allowed_origins for its origin)";
    }
    if k.starts_with("Detect") || k.ends_with("Pattern") {
        return "metadata detection: Baton has no data centre / region model (a Lua policy can use baton.query)";
    }
    if matches!(
        k,
        "InstancePollSeconds"
            | "DiscoverySeeds"
            | "DiscoverByShowSlaveHosts"
            | "UnseenInstanceForgetHours"
            | "SnapshotTopologiesIntervalHours"
    ) {
        return "continuous discovery: Baton discovers a cluster when asked (the fleet issue adds polling)";
    }
    if matches!(k, "Debug" | "EnableSyslog" | "AuditToSyslog" | "AuditLogFile") {
        return "logging: Baton logs to stderr (RUST_LOG, --log-json) and audits every takeover in its store";
    }
    if matches!(k, "StatusEndpoint" | "StatusSimpleHealth") {
        return "health: Baton answers GET /healthz (and orchestrator's /api/health)";
    }
    if k == "DefaultInstancePort" {
        return "Baton always takes host:port";
    }
    "no equivalent in Baton"
}

/// A TOML value for `v` (strings quoted and escaped the TOML way).
fn toml_value(v: &toml::Value) -> String {
    v.to_string()
}

fn text(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.trim().is_empty())
}

/// The `[client]` user and password of a my.cnf-style credentials file.
pub fn credentials_file(text: &str) -> (Option<String>, Option<String>) {
    let (mut user, mut password, mut in_client) = (None, None, false);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_client = line.eq_ignore_ascii_case("[client]");
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        if !in_client {
            continue;
        }
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        match k.trim() {
            "user" => user = Some(v),
            "password" => password = Some(v),
            _ => {}
        }
    }
    (user, password)
}

/// The `baton.toml` for orchestrator's configuration `json`. `read_file` reads a file the
/// configuration names (`MySQLTopologyCredentialsConfigFile`); `hash` makes a password hash for
/// `[http.users]`.
pub fn from_orchestrator(
    json: &str,
    read_file: &dyn Fn(&str) -> Option<String>,
    hash: &dyn Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    let conf: BTreeMap<String, Value> =
        serde_json::from_str(json).map_err(|e| format!("not an orchestrator JSON configuration: {e}"))?;
    let get = |k: &str| conf.get(k).unwrap_or(&Value::Null);
    let mut used: Vec<&str> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut out =
        String::from("# baton.toml made by `baton import-orchestrator-config` from an orchestrator configuration.\n");
    let s = |v: &str| toml_value(&toml::Value::String(v.to_string()));

    // [topology]
    out.push_str("\n[topology]\n");
    let (mut user, mut password) =
        (text(get("MySQLTopologyUser")).map(str::to_string), text(get("MySQLTopologyPassword")).map(str::to_string));
    used.extend(["MySQLTopologyUser", "MySQLTopologyPassword", "MySQLTopologyCredentialsConfigFile"]);
    if let Some(file) = text(get("MySQLTopologyCredentialsConfigFile")) {
        match read_file(file) {
            Some(t) => {
                let (u, p) = credentials_file(&t);
                user = u.or(user);
                password = p.or(password);
                let _ = writeln!(out, "# user and password read from {file}");
            }
            None => notes.push(format!("MySQLTopologyCredentialsConfigFile {file} could not be read: set topology.user and topology.password (or BATON_TOPOLOGY_USER / BATON_TOPOLOGY_PASSWORD)")),
        }
    }
    if let Some(u) = &user {
        let _ = writeln!(out, "user = {}  # MySQLTopologyUser", s(u));
    }
    if let Some(p) = &password {
        let _ = writeln!(
            out,
            "password = {}  # MySQLTopologyPassword (or BATON_TOPOLOGY_PASSWORD, kept out of the file)",
            s(p)
        );
    }
    if let Some(secs) = get("MySQLConnectTimeoutSeconds").as_u64() {
        let _ = writeln!(out, "connect_timeout_ms = {}  # MySQLConnectTimeoutSeconds", secs.max(1) * 1000);
    }
    used.push("MySQLConnectTimeoutSeconds");
    let ca = text(get("MySQLTopologySSLCAFile"));
    let mutual = get("MySQLTopologyUseMutualTLS").as_bool().unwrap_or(false)
        || get("MySQLTopologyUseMixedTLS").as_bool().unwrap_or(false);
    used.extend([
        "MySQLTopologySSLCAFile",
        "MySQLTopologyUseMutualTLS",
        "MySQLTopologyUseMixedTLS",
        "MySQLTopologySSLSkipVerify",
    ]);
    if let Some(ca) = ca {
        let _ = writeln!(out, "tls = true\ntls_ca = {}  # MySQLTopologySSLCAFile", s(ca));
    }
    if mutual {
        notes.push("MySQLTopologyUseMutualTLS/UseMixedTLS: Baton verifies the servers' certificates (tls, tls_ca) but presents no client certificate".into());
    }
    if get("MySQLTopologySSLSkipVerify").as_bool() == Some(true) {
        notes.push("MySQLTopologySSLSkipVerify: Baton always verifies certificates (a server presenting any certificate would read the password): set topology.tls_ca for a private CA".into());
    }
    for k in ["MySQLTopologySSLCertFile", "MySQLTopologySSLPrivateKeyFile"] {
        if text(get(k)).is_some() {
            notes.push(format!("{k}: Baton presents no client certificate"));
        }
        used.push(k);
    }

    // [replication]
    out.push_str("\n[replication]\n");
    out.push_str("# orchestrator keeps the replicas' own replication credentials; Baton sets them when it repoints\n# a replica, so they must be given here (or BATON_REPLICATION_USER / BATON_REPLICATION_PASSWORD).\n");
    match text(get("ReplicationCredentialsQuery")) {
        Some(q) => {
            let _ = writeln!(out, "# orchestrator read them with ReplicationCredentialsQuery: {q}");
        }
        None => out.push_str("# user = \"repl\"\n# password = \"...\"\n"),
    }
    used.push("ReplicationCredentialsQuery");

    // [discovery]
    out.push_str("\n[discovery]\n");
    if let Some(q) = text(get("DetectClusterAliasQuery")) {
        let _ = writeln!(out, "alias_query = {}  # DetectClusterAliasQuery", s(q));
    }
    used.push("DetectClusterAliasQuery");
    if let Some(map) = get("ClusterNameToAlias").as_object().filter(|m| !m.is_empty()) {
        let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k} -> {}", v.as_str().unwrap_or("?"))).collect();
        notes.push(format!(
            "ClusterNameToAlias ({}): put each in [aliases] as alias = \"host:port of a member\"",
            pairs.join(", ")
        ));
    }
    used.push("ClusterNameToAlias");

    // [takeover]
    out.push_str("\n[takeover]\n");
    if let Some(lag) = get("ReasonableMaintenanceReplicationLagSeconds").as_u64() {
        let _ = writeln!(out, "reasonable_lag_s = {lag}  # ReasonableMaintenanceReplicationLagSeconds");
    }
    used.extend(["ReasonableMaintenanceReplicationLagSeconds", "PromotionIgnoreHostnameFilters"]);
    let mut filters = Vec::new();
    for f in get("PromotionIgnoreHostnameFilters").as_array().into_iter().flatten().filter_map(Value::as_str) {
        match HostFilter::parse(f) {
            Ok(_) => filters.push(s(f)),
            Err(e) => notes.push(format!("PromotionIgnoreHostnameFilters: {e}: left out")),
        }
    }
    let _ = writeln!(
        out,
        "promotion_ignore_hostname_filters = [{}]  # PromotionIgnoreHostnameFilters, same meaning",
        filters.join(", ")
    );

    // [scripts]: orchestrator's graceful-takeover hooks run by hooks/orchestrator_compat.lua.
    let processes = |k: &str| -> Vec<String> {
        get(k).as_array().into_iter().flatten().filter_map(Value::as_str).map(&s).collect()
    };
    let (pre, post) = (processes("PreGracefulTakeoverProcesses"), processes("PostGracefulTakeoverProcesses"));
    used.extend(["PreGracefulTakeoverProcesses", "PostGracefulTakeoverProcesses"]);
    out.push_str("\n[scripts]\n");
    if !pre.is_empty() || !post.is_empty() {
        out.push_str(
            "# hooks/orchestrator_compat.lua runs the graceful-takeover processes below with sh.\nallow_shell = true\n",
        );
    }
    out.push_str("\n[scripts.settings.orchestrator]\n");
    let _ = writeln!(out, "PreGracefulTakeoverProcesses = [{}]", pre.join(", "));
    let _ = writeln!(out, "PostGracefulTakeoverProcesses = [{}]", post.join(", "));

    // [http]
    out.push_str("\n[http]\n");
    let method = text(get("AuthenticationMethod")).unwrap_or("").to_ascii_lowercase();
    let basic = matches!(method.as_str(), "basic" | "multi");
    used.extend([
        "ListenAddress",
        "AuthenticationMethod",
        "HTTPAuthUser",
        "HTTPAuthPassword",
        "PowerAuthUsers",
        "AuthUserHeader",
    ]);
    if let Some(listen) = text(get("ListenAddress")) {
        let (host, port) = listen.rsplit_once(':').unwrap_or(("", listen));
        let host = match host {
            "" if basic => "0.0.0.0",
            "" => "127.0.0.1",
            h => h,
        };
        let _ = writeln!(out, "listen = {}  # ListenAddress", s(&format!("{host}:{port}")));
        if !basic && host != "127.0.0.1" && host != "localhost" {
            notes.push(format!("ListenAddress {listen} without authentication: Baton's auth = \"none\" serves loopback only; configure basic or token auth to listen on {host}"));
        } else if !basic {
            notes.push(format!("ListenAddress {listen}: without authentication Baton listens on loopback only (configure basic or token auth to open it)"));
        }
    }
    if basic {
        out.push_str("auth = \"basic\"  # AuthenticationMethod\n");
        if let (Some(u), Some(p)) = (text(get("HTTPAuthUser")), text(get("HTTPAuthPassword"))) {
            let h = hash(p)?;
            let _ = writeln!(out, "\n# HTTPAuthUser and HTTPAuthPassword (stored hashed)\n[http.users.{}]\npassword_hash = {}\nrole = \"admin\"", s(u), s(&h));
        }
        if method == "multi" {
            notes.push("AuthenticationMethod multi: orchestrator's read-only users (any name, password \"readonly\") have no equivalent; add [http.users.NAME] with role = \"read\"".into());
        }
    } else if !method.is_empty() {
        notes.push(format!("AuthenticationMethod {method}: not supported; use basic or token auth"));
    }
    if get("PowerAuthUsers").as_array().is_some_and(|a| a.iter().any(|u| u.as_str() != Some("*"))) {
        notes.push("PowerAuthUsers: Baton's role admin is the equivalent".into());
    }
    if text(get("AuthUserHeader")).is_some() {
        notes.push("AuthUserHeader: Baton does not trust a proxy's user header; use basic or token auth".into());
    }
    used.extend(["CandidateInstanceExpireMinutes", "URLPrefix", "ReadOnly", "ReasonableReplicationLagSeconds"]);
    if get("CandidateInstanceExpireMinutes").as_u64().is_some_and(|m| m != 60) {
        notes.push("CandidateInstanceExpireMinutes: register-candidate rules last 60 minutes in Baton; use PUT /api/v1/instances/{host}/{port}/promotion-rule with duration_s for another length".into());
    }
    if text(get("URLPrefix")).is_some() {
        notes.push("URLPrefix: Baton serves at the root; put a proxy in front for a prefix".into());
    }
    if get("ReadOnly").as_bool() == Some(true) {
        notes.push("ReadOnly: give callers role read instead".into());
    }
    if let Some(lag) = get("ReasonableReplicationLagSeconds").as_u64() {
        notes.push(format!("ReasonableReplicationLagSeconds {lag}: discovery.lag_threshold_s is Baton's threshold for reporting a lagging replica"));
    }

    // Settings read whose value had nothing to carry over, named so that every setting is
    // accounted for.
    let silent: Vec<&str> = conf
        .keys()
        .map(String::as_str)
        .filter(|k| used.contains(k) && !out.contains(k) && !notes.iter().any(|n| n.contains(k)))
        .collect();
    if !silent.is_empty() {
        let _ = writeln!(out, "\n# Read, empty or at their default (nothing to carry over): {}", silent.join(", "));
    }

    // What was not carried over.
    out.push_str("\n# Not carried over:\n");
    for n in &notes {
        let _ = writeln!(out, "# - {n}");
    }
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for k in conf.keys().filter(|k| !used.contains(&k.as_str()) && !k.starts_with('#')) {
        by_reason.entry(not_carried(k)).or_default().push(k);
    }
    for (reason, keys) in by_reason {
        let _ = writeln!(out, "# - {}: {reason}", keys.join(", "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_files() {
        let (u, p) = credentials_file("[mysql]\nuser=x\n[client]\nuser = orc\npassword = \"s3cr3t\"\n");
        assert_eq!((u.as_deref(), p.as_deref()), (Some("orc"), Some("s3cr3t")));
    }

    #[test]
    fn a_minimal_configuration() {
        let json = r#"{"MySQLTopologyUser":"u","MySQLTopologyPassword":"p","AuthenticationMethod":"basic","HTTPAuthUser":"ops",
            "HTTPAuthPassword":"pw","ListenAddress":":3000","PromotionIgnoreHostnameFilters":["^dev-","(["],
            "RecoverMasterClusterFilters":["*"],"RaftEnabled":true}"#;
        let out = from_orchestrator(json, &|_| None, &|p| Ok(format!("$argon2id$hash-of-{}", p.len()))).unwrap();
        assert!(
            out.contains("user = \"u\"")
                && out.contains("listen = \"0.0.0.0:3000\"")
                && out.contains("auth = \"basic\""),
            "{out}"
        );
        assert!(out.contains("[http.users.\"ops\"]") && out.contains("$argon2id$hash-of-2"), "{out}");
        assert!(
            out.contains("promotion_ignore_hostname_filters = [\"^dev-\"]")
                && out.contains("'([' is not a valid regular expression"),
            "{out}"
        );
        assert!(out.contains("RecoverMasterClusterFilters: failover-only"), "{out}");
        assert!(out.contains("RaftEnabled: orchestrator's backend"), "{out}");
        assert!(!out.contains("\"pw\""), "the HTTP password is stored hashed: {out}");
    }
}
