//! Connections: one small pool per instance, every network call bounded by a timeout, TCP always.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, SslOpts, Value};

use super::dialect::{self, Dialect};
use super::guard::Guard;
use super::SqlError;
use crate::config::{Config, Credentials, Secret};
use crate::topology::{Flavor, InstanceKey, Version};

/// One row as column name (lower case) -> text value (None for NULL). Reading by name keeps the
/// parsing independent of column order and tolerant of columns a version lacks.
#[derive(Debug, Clone, Default)]
pub struct RowMap(pub Vec<(String, Option<String>)>);

impl RowMap {
    pub(crate) fn from_row(row: Row) -> RowMap {
        let cols: Vec<String> = row.columns_ref().iter().map(|c| c.name_str().to_ascii_lowercase()).collect();
        let values = row.unwrap();
        RowMap(cols.into_iter().zip(values).map(|(c, v)| (c, value_text(v))).collect())
    }

    /// The first of `names` that is present and not NULL.
    pub fn text(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n).and_then(|v| v.as_deref()))
    }

    fn get(&self, name: &str) -> Option<&Option<String>> {
        self.0.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The first column's value.
    pub fn first(&self) -> Option<&str> {
        self.0.first().and_then(|(_, v)| v.as_deref())
    }

    pub fn string(&self, names: &[&str]) -> String {
        self.text(names).unwrap_or_default().to_string()
    }

    pub fn u64(&self, names: &[&str]) -> Option<u64> {
        self.text(names).and_then(|v| v.trim().parse().ok())
    }

    /// `1`/`ON`/`YES` as true; absent or NULL as false.
    pub fn flag(&self, names: &[&str]) -> bool {
        self.text(names).is_some_and(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

fn value_text(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true)),
    }
}

/// Opens and pools connections to any instance, with one set of credentials and timeouts. No
/// password leaves in a form the server can recover: connections are TLS with verified
/// certificates, or go through the `guard` relay (see `guard.rs`).
pub struct Connector {
    credentials: Credentials,
    /// TLS to the instances (verified), or None: plain TCP through the guard.
    tls: Option<SslOpts>,
    guard: Guard,
    /// `topology.dial`: where to connect for an instance reached through another address.
    dial: HashMap<InstanceKey, InstanceKey>,
    connect_timeout: Duration,
    read_timeout: Duration,
    pool_max: usize,
    /// Reset a connection's session when it returns to the pool (COM_RESET_CONNECTION).
    reset_on_return: bool,
    pools: Mutex<HashMap<InstanceKey, Pool>>,
    /// Flavor and version per instance, learned on first contact.
    servers: Mutex<HashMap<InstanceKey, (Flavor, Version)>>,
}

impl Connector {
    pub fn new(cfg: &Config) -> Connector {
        Connector::with_credentials(cfg, cfg.topology.credentials())
    }

    /// The fleet poller's connector: one connection per instance, kept open between probes, not
    /// reset on return (it only ever runs the probe, which leaves no session state): one round
    /// trip per probe.
    pub fn for_polling(cfg: &Config) -> Connector {
        let mut c = Connector::new(cfg);
        c.pool_max = 1;
        c.reset_on_return = false;
        c
    }

    /// A connector with another account (`baton.query`'s), the topology's timeouts and pool size.
    pub fn with_credentials(cfg: &Config, credentials: Credentials) -> Connector {
        let tls = cfg.topology.tls.then(|| {
            let roots = cfg.topology.tls_ca.iter().map(|p| p.clone().into()).collect();
            SslOpts::default().with_root_certs(roots)
        });
        // Read at validation already; a file that vanished since is no pinned key (refusal).
        let pinned = cfg
            .topology
            .pinned_rsa_keys
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), std::fs::read(p).ok()?)))
            .collect();
        // Validated at load: both sides are host:port.
        let dial: HashMap<InstanceKey, InstanceKey> =
            cfg.topology.dial.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?))).collect();
        Connector {
            credentials,
            tls,
            guard: Guard::new(cfg.connect_timeout(), pinned, dial.clone()),
            dial,
            connect_timeout: cfg.connect_timeout(),
            read_timeout: cfg.read_timeout(),
            pool_max: cfg.topology.pool_max,
            reset_on_return: true,
            pools: Mutex::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
        }
    }

    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Connection options for `key` as `user`: TCP always (never the Unix socket a server names),
    /// TLS with verified certificates, or else through the guard's relay for that instance.
    fn opts_as(&self, key: &InstanceKey, user: &str, password: &Secret) -> Result<OptsBuilder, SqlError> {
        let opts = OptsBuilder::default()
            .user(Some(user.to_string()))
            .pass(Some(password.expose().to_string()))
            // mysql_async would switch to the Unix socket for 127.0.0.1; Baton always
            // talks TCP so that what it measures is what a remote client sees.
            .prefer_socket(false)
            .tcp_nodelay(true);
        Ok(match &self.tls {
            Some(ssl) => match self.dial.get(key) {
                // Through another address, the certificate is still checked against the
                // instance's own name.
                Some(via) => opts
                    .ip_or_hostname(via.host.clone())
                    .tcp_port(via.port)
                    .ssl_opts(ssl.clone().with_danger_tls_hostname_override(Some(key.host.clone()))),
                None => opts.ip_or_hostname(key.host.clone()).tcp_port(key.port).ssl_opts(ssl.clone()),
            },
            None => {
                let addr = self.guard.relay(key, user, password).map_err(|e| SqlError::Unexpected {
                    instance: key.clone(),
                    what: "the password guard's relay".into(),
                    detail: e.to_string(),
                })?;
                opts.ip_or_hostname(addr.ip().to_string()).tcp_port(addr.port())
            }
        })
    }

    fn opts(&self, key: &InstanceKey) -> Result<OptsBuilder, SqlError> {
        self.opts_as(key, &self.credentials.user, &self.credentials.password)
    }

    fn pool(&self, key: &InstanceKey) -> Result<Pool, SqlError> {
        let mut pools = self.pools.lock().expect("pool map poisoned");
        if let Some(p) = pools.get(key) {
            return Ok(p.clone());
        }
        // The poller's pools keep their one connection open between probes (an idle connection
        // above the minimum is closed by the pool's periodic check).
        let min = if self.reset_on_return { 0 } else { self.pool_max.max(1) };
        let constraints = PoolConstraints::new(min, self.pool_max.max(1)).expect("min <= max");
        let opts = PoolOpts::default().with_constraints(constraints).with_reset_connection(self.reset_on_return);
        let pool = Pool::new(self.opts(key)?.pool_opts(opts));
        pools.insert(key.clone(), pool.clone());
        Ok(pool)
    }

    /// A connection of its own, outside the pool (for session state that must not be shared or
    /// outlive its holder, like a named lock), within the connect timeout.
    pub async fn dedicated(&self, key: &InstanceKey) -> Result<Conn, SqlError> {
        match tokio::time::timeout(self.connect_timeout, Conn::new(self.opts(key)?)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(SqlError::Connect { instance: key.clone(), source: e }),
            Err(_) => {
                Err(SqlError::ConnectTimeout { instance: key.clone(), ms: self.connect_timeout.as_millis() as u64 })
            }
        }
    }

    /// A connection to `key`, within the connect timeout. A pooled connection that turns out
    /// broken (reset while idle) costs the pool: a fresh connection is made instead.
    pub async fn conn(&self, key: &InstanceKey) -> Result<Conn, SqlError> {
        let pool = self.pool(key)?;
        match tokio::time::timeout(self.connect_timeout, pool.get_conn()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) if super::lost(&e) => {
                self.reconnect(key, &SqlError::Connect { instance: key.clone(), source: e }).await
            }
            Ok(Err(e)) => Err(SqlError::Connect { instance: key.clone(), source: e }),
            Err(_) => {
                Err(SqlError::ConnectTimeout { instance: key.clone(), ms: self.connect_timeout.as_millis() as u64 })
            }
        }
    }

    /// Runs `fut` (a query on a connection to `key`) within `limit`.
    pub async fn bounded<T, F>(&self, key: &InstanceKey, sql: &str, limit: Duration, fut: F) -> Result<T, SqlError>
    where
        F: Future<Output = Result<T, mysql_async::Error>>,
    {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SqlError::Query { instance: key.clone(), sql: sql.to_string(), source: e }),
            Err(_) => Err(SqlError::QueryTimeout {
                instance: key.clone(),
                sql: sql.to_string(),
                ms: limit.as_millis() as u64,
            }),
        }
    }

    /// Runs a text query (several statements allowed) and returns every result set.
    pub async fn query_sets(&self, key: &InstanceKey, sql: &str) -> Result<Vec<Vec<RowMap>>, SqlError> {
        self.query_sets_within(key, sql, self.read_timeout).await
    }

    pub async fn query_sets_within(
        &self,
        key: &InstanceKey,
        sql: &str,
        limit: Duration,
    ) -> Result<Vec<Vec<RowMap>>, SqlError> {
        let conn = self.conn(key).await?;
        match self.sets_on(conn, key, sql, limit).await {
            Err(e) if e.connection_lost() => {
                let conn = self.reconnect(key, &e).await?;
                self.sets_on(conn, key, sql, limit).await
            }
            r => r,
        }
    }

    /// After a connection broke under a statement: the instance's pooled connections (likely
    /// broken the same way) are dropped, and a fresh connection is returned for one more try.
    /// Every statement Baton runs may run twice: each is idempotent (read_only, replication
    /// stop/start/repoint, waits, reads).
    pub async fn reconnect(&self, key: &InstanceKey, lost: &SqlError) -> Result<Conn, SqlError> {
        tracing::info!(instance = %key, error = %lost, "the connection broke: retrying once on a new one");
        self.pools.lock().expect("pool map poisoned").remove(key);
        self.dedicated(key).await
    }

    async fn sets_on(
        &self,
        mut conn: Conn,
        key: &InstanceKey,
        sql: &str,
        limit: Duration,
    ) -> Result<Vec<Vec<RowMap>>, SqlError> {
        self.bounded(key, sql, limit, async {
            let mut result = conn.query_iter(sql).await?;
            let mut sets = Vec::new();
            loop {
                let rows: Vec<Row> = result.collect().await?;
                sets.push(rows.into_iter().map(RowMap::from_row).collect());
                if result.is_empty() {
                    break;
                }
            }
            // A statement after the first that failed: its error is still unread (mysql_async
            // says "empty" after the set before it), and would otherwise answer the next query.
            result.drop_result().await?;
            Ok(sets)
        })
        .await
    }

    /// Runs one statement that returns rows.
    pub async fn query(&self, key: &InstanceKey, sql: &str) -> Result<Vec<RowMap>, SqlError> {
        Ok(self.query_sets(key, sql).await?.into_iter().next().unwrap_or_default())
    }

    /// Runs a statement with positional parameters (a prepared statement): values never become SQL text.
    pub async fn query_params(
        &self,
        key: &InstanceKey,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<Vec<RowMap>, SqlError> {
        let mut conn = self.conn(key).await?;
        let rows: Vec<Row> = self.bounded(key, sql, self.read_timeout, conn.exec(sql, params)).await?;
        Ok(rows.into_iter().map(RowMap::from_row).collect())
    }

    /// The dialect of `key`, asking the server for its version on first contact.
    pub async fn dialect(&self, key: &InstanceKey) -> Result<Box<dyn Dialect>, SqlError> {
        let known = self.servers.lock().expect("server map poisoned").get(key).copied();
        let (flavor, version) = match known {
            Some(v) => v,
            None => {
                let rows = self.query(key, "SELECT @@version AS version, @@version_comment AS version_comment").await?;
                let row = rows.first().ok_or_else(|| SqlError::Unexpected {
                    instance: key.clone(),
                    what: "version query".into(),
                    detail: "no row".into(),
                })?;
                let version = row.string(&["version"]);
                let v = (Flavor::detect(&version, &row.string(&["version_comment"])), Version::parse(&version));
                self.servers.lock().expect("server map poisoned").insert(key.clone(), v);
                v
            }
        };
        Ok(dialect::for_server(flavor, version))
    }

    /// Records what `key` is (flavor, version), as a probe just read it. True when that differs
    /// from what this process believed (an in-place upgrade: its dialect changes from now on).
    pub fn learned(&self, key: &InstanceKey, flavor: Flavor, version: Version) -> bool {
        let mut servers = self.servers.lock().expect("server map poisoned");
        servers.insert(key.clone(), (flavor, version)) != Some((flavor, version))
    }

    /// Forgets what `key` is: the next statement asks it for its version again.
    pub fn forget_server(&self, key: &InstanceKey) {
        self.servers.lock().expect("server map poisoned").remove(key);
    }

    /// Logs in to `key` with other credentials (the replication account, say) and logs out: proves
    /// the account works there before anything depends on it.
    pub async fn try_login(&self, key: &InstanceKey, creds: &Credentials) -> Result<(), SqlError> {
        // Baton's own connection (its TLS settings, through the guard), with that account.
        let opts = self.opts_as(key, &creds.user, &creds.password)?;
        match tokio::time::timeout(self.connect_timeout, Conn::new(opts)).await {
            Ok(Ok(c)) => {
                // A server that stops answering after the login does not hold the caller.
                let _ = tokio::time::timeout(self.read_timeout, c.disconnect()).await;
                Ok(())
            }
            Ok(Err(e)) => Err(SqlError::Connect { instance: key.clone(), source: e }),
            Err(_) => {
                Err(SqlError::ConnectTimeout { instance: key.clone(), ms: self.connect_timeout.as_millis() as u64 })
            }
        }
    }

    /// Drops the pool of one instance (after it was restarted, say).
    pub fn forget(&self, key: &InstanceKey) {
        self.pools.lock().expect("pool map poisoned").remove(key);
        self.servers.lock().expect("server map poisoned").remove(key);
    }

    /// Closes every pooled connection cleanly.
    pub async fn close(&self) {
        let pools: Vec<Pool> = self.pools.lock().expect("pool map poisoned").drain().map(|(_, p)| p).collect();
        for p in pools {
            let _ = tokio::time::timeout(Duration::from_secs(2), p.disconnect()).await;
        }
    }
}
