//! `Store` on etcd v3: the state several Baton nodes share (issue 10, first part: the store).
//!
//! Every record is one JSON value under one prefix (`/baton/v1/` by default):
//!
//! ```text
//! clusters/{name}            KnownCluster
//! rules/{host:port}          RuleEntry
//! downtimes/{host:port}      Downtime
//! locks/{cluster}            the takeover id holding the cluster's lock
//! takeovers/{id}             AuditEntry (the takeover's journal, then its audit)
//! operations/{id}            AuditEntry (instance commands)
//! damaged/{table}/{id}       a record that could not be read, set aside
//! ```
//!
//! What must be atomic is one etcd transaction: the cluster lock with the takeover's first record
//! (created only if the lock key does not exist), a cluster with the older ones it replaces, an
//! alias move. The trait is synchronous (as SQLite's is): each call runs on the store's own
//! runtime thread, bounded by a timeout, so no caller's runtime is ever entered twice.

use std::sync::mpsc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, TxnOpResponse};

use super::{now_unix, AuditEntry, DamagedRecord, Downtime, KnownCluster, RuleEntry, Store, StoreError};
use crate::topology::InstanceKey;

type Job = Box<dyn FnOnce(&mut Clients, &tokio::runtime::Runtime) + Send>;

/// One client per etcd member, made when first needed and dropped when a call through it fails:
/// a dead member costs one try, and the next calls start with another member.
struct Clients {
    endpoints: Vec<String>,
    opts: ConnectOptions,
    timeout: Duration,
    clients: Vec<Option<Client>>,
    next: usize,
}

impl Clients {
    /// The client of member `i`, connected now if it was not.
    async fn get(&mut self, i: usize) -> Result<Client, etcd_client::Error> {
        if let Some(c) = &self.clients[i] {
            return Ok(c.clone());
        }
        let ep = vec![self.endpoints[i].clone()];
        match tokio::time::timeout(self.timeout, Client::connect(ep, Some(self.opts.clone()))).await {
            Ok(Ok(c)) => {
                self.clients[i] = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(etcd_client::Error::InvalidArgs(format!("no connection to {} in time", self.endpoints[i]))),
        }
    }

    fn failed(&mut self, i: usize) {
        self.clients[i] = None;
        self.next = (i + 1) % self.clients.len();
    }
}

/// Tries of one call (every call is idempotent).
const TRIES: u32 = 3;

/// The leader's election key (key, create revision) while this node leads: every write the store
/// makes then carries a compare on it, so a deposed leader's writes fail instead of landing.
pub type Fence = std::sync::Arc<std::sync::Mutex<Option<(Vec<u8>, i64)>>>;

/// The etcd store. Cheap to share; every method blocks its caller until etcd answers (or the
/// call's timeout).
pub struct EtcdStore {
    prefix: String,
    endpoints: String,
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
    fence: Fence,
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`), keys under `prefix`.
    pub fn connect(endpoints: &[String], prefix: &str, timeout: Duration) -> Result<EtcdStore, StoreError> {
        let shown = endpoints.join(",");
        let err = |message: String| StoreError::Etcd { endpoints: shown.clone(), message };
        // HTTP/2 keepalive at 10 s (etcd refuses less than 5 s); no global request timeout (each
        // call has its own).
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::channel::<Result<(), String>>();
        let mut clients =
            Clients { endpoints: endpoints.to_vec(), opts, timeout, clients: vec![None; endpoints.len()], next: 0 };
        // The clients live on a thread of their own with its own runtime: callers block on a
        // channel, never on a runtime (they may be inside one).
        std::thread::Builder::new()
            .name("baton-etcd".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(format!("cannot start the store's runtime: {e}")));
                        return;
                    }
                };
                // Connected when any member answers.
                let mut first_err = String::new();
                let mut any = false;
                for i in 0..clients.endpoints.len() {
                    match rt.block_on(clients.get(i)) {
                        Ok(_) => {
                            any = true;
                            clients.next = i;
                            break;
                        }
                        Err(e) => first_err = e.to_string(),
                    }
                }
                if !any {
                    let _ = ready.send(Err(first_err));
                    return;
                }
                let _ = ready.send(Ok(()));
                while let Ok(job) = queue.recv() {
                    job(&mut clients, &rt);
                }
            })
            .map_err(|e| err(format!("cannot start the store's thread: {e}")))?;
        match connected.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(err(e)),
            Err(_) => return Err(err(format!("no connection within {} ms", timeout.as_millis()))),
        }
        let store = EtcdStore {
            prefix: prefix.trim_end_matches('/').to_string() + "/",
            endpoints: shown,
            jobs,
            timeout,
            fence: Fence::default(),
        };
        // Prove it answers now rather than at the first takeover.
        store.call(|mut c| async move { c.status().await.map(|_| ()) })?;
        Ok(store)
    }

    /// Writes from now on carry the election key `fence` holds (set by `ha::Leadership` while this
    /// node leads).
    pub fn fenced_by(mut self, fence: Fence) -> EtcdStore {
        self.fence = fence;
        self
    }

    fn err(&self, message: impl Into<String>) -> StoreError {
        StoreError::Etcd { endpoints: self.endpoints.clone(), message: message.into() }
    }

    /// Runs `f` on the store's runtime and waits for it, each try within the timeout. A call that
    /// failed or got no answer (an etcd member that just died) is tried again: every call is
    /// idempotent (a lock taken by a lost try is found held by its own id).
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>> + Send,
    {
        let (tx, rx) = mpsc::channel();
        let limit = self.timeout;
        let job: Job = Box::new(move |clients, rt| {
            let r = rt.block_on(async move {
                // A broken connection shows as a transport error or as a gRPC status wrapping one
                // ("Unknown: transport error"), and the client may pick the dead member's channel
                // again: any failure is tried again, three tries in all.
                let mut last = None;
                let tries = TRIES.max(clients.endpoints.len() as u32 + 1);
                for attempt in 0..tries {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
                    }
                    let i = clients.next;
                    let client = match clients.get(i).await {
                        Ok(c) => c,
                        Err(e) => {
                            clients.failed(i);
                            last = Some(Ok(Err(e)));
                            continue;
                        }
                    };
                    match tokio::time::timeout(limit, f(client)).await {
                        Ok(Ok(v)) => return Ok(Ok(v)),
                        other => {
                            clients.failed(i);
                            last = Some(other);
                        }
                    }
                }
                last.expect("at least one try")
            });
            let _ = tx.send(r);
        });
        self.jobs.send(job).map_err(|_| self.err("the store's thread is gone"))?;
        match rx.recv_timeout(limit * (TRIES + 4) * 2 + Duration::from_secs(2)) {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(self.err(e.to_string())),
            Ok(Err(_)) | Err(_) => Err(self.err(format!("no answer within {} ms ({TRIES} tries)", limit.as_millis()))),
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        format!("{}{}", self.prefix, parts.join("/"))
    }

    /// Every (key without the prefix, value) under `dir/`.
    fn list(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let from = self.key(&[dir, ""]);
        let strip = self.prefix.len();
        self.call(move |mut c| {
            let from = from.clone();
            async move {
                let r = c.get(from, Some(GetOptions::new().with_prefix())).await?;
                Ok(r.kvs()
                    .iter()
                    .map(|kv| (String::from_utf8_lossy(&kv.key()[strip..]).into_owned(), kv.value().to_vec()))
                    .collect())
            }
        })
    }

    fn get_raw(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(move |mut c| {
            let key = key.clone();
            async move { Ok(c.get(key, None).await?.kvs().first().map(|kv| kv.value().to_vec())) }
        })
    }

    fn put(&self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.txn(vec![], vec![TxnOp::put(key, value, None)], vec![]).map(|_| ())
    }

    fn delete(&self, key: String) -> Result<bool, StoreError> {
        let r = self.txn(vec![], vec![TxnOp::delete(key, None)], vec![])?;
        Ok(r.op_responses().into_iter().any(|op| matches!(op, TxnOpResponse::Delete(d) if d.deleted() > 0)))
    }

    /// One transaction: `then` when every compare holds, else `otherwise`. While this node leads
    /// (`fence`), its election key must still be there too, or the write is refused: a deposed
    /// leader's writes never land.
    fn txn(
        &self,
        mut when: Vec<Compare>,
        then: Vec<TxnOp>,
        mut otherwise: Vec<TxnOp>,
    ) -> Result<etcd_client::TxnResponse, StoreError> {
        let fence = self.fence.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((key, rev)) = &fence {
            when.push(Compare::create_revision(key.clone(), CompareOp::Equal, *rev));
            otherwise.push(TxnOp::get(key.clone(), None));
        }
        let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
        let r = self.call(move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        if let (false, Some((_, rev))) = (r.succeeded(), &fence) {
            // The election key is answered last: gone, or another one, means this node lost.
            let still = r.op_responses().last().is_some_and(|op| {
                matches!(op, TxnOpResponse::Get(g) if g.kvs().first().is_some_and(|kv| kv.create_revision() == *rev))
            });
            if !still {
                return Err(self.err("this node no longer leads (its election key is gone): the write was refused"));
            }
        }
        Ok(r)
    }

    fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).expect("store records serialize")
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, what: &str, raw: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt { what: what.into(), detail: e.to_string() })
    }

    /// The readable records of a table, and the damaged ones by id.
    fn audit(&self, table: &str) -> Result<(Vec<AuditEntry>, Vec<DamagedRecord>), StoreError> {
        let (mut ok, mut damaged) = (Vec::new(), Vec::new());
        for (k, v) in self.list(table)? {
            let id = k.trim_start_matches(&format!("{table}/")).to_string();
            match serde_json::from_slice::<AuditEntry>(&v) {
                Ok(e) => ok.push(e),
                Err(e) => {
                    tracing::warn!(table, %id, error = %e, "a damaged record is skipped");
                    damaged.push(DamagedRecord { table: table.into(), id, error: e.to_string() });
                }
            }
        }
        Ok((ok, damaged))
    }

    fn newest_first(mut v: Vec<AuditEntry>, limit: usize) -> Vec<AuditEntry> {
        v.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.id.cmp(&a.id)));
        v.truncate(limit);
        v
    }

    /// Runs `then` if nobody holds `cluster`'s lock; the holder otherwise (None when it is `id`:
    /// a first try that took it and whose answer was lost).
    fn lock_txn(&self, cluster: &str, id: &str, then: Vec<TxnOp>) -> Result<Option<String>, StoreError> {
        let lock = self.key(&["locks", cluster]);
        let r = self.txn(
            vec![Compare::create_revision(lock.clone(), CompareOp::Equal, 0)],
            then,
            vec![TxnOp::get(lock, None)],
        )?;
        if r.succeeded() {
            return Ok(None);
        }
        // The lock's get is the first answer (the election key's, when fenced, comes last).
        let holder = r.op_responses().into_iter().next().and_then(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            _ => None,
        });
        Ok(match holder {
            Some(h) if h == id => None,
            Some(h) => Some(h),
            // The lock existed at the compare and is gone now: someone else held it.
            None => Some("(released meanwhile)".to_string()),
        })
    }
}

impl Store for EtcdStore {
    fn remember_cluster(&self, c: &KnownCluster) -> Result<(), StoreError> {
        // A member belongs to one cluster: the older clusters that claimed these members go, in
        // the same transaction.
        let mut ops: Vec<TxnOp> = self
            .clusters()?
            .into_iter()
            .filter(|o| o.name != c.name && o.members.iter().any(|m| c.members.contains(m)))
            .map(|o| TxnOp::delete(self.key(&["clusters", &o.name]), None))
            .collect();
        let mut c = c.clone();
        c.seen_at = now_unix();
        ops.push(TxnOp::put(self.key(&["clusters", &c.name]), Self::json(&c), None));
        self.txn(vec![], ops, vec![]).map(|_| ())
    }

    fn find_cluster(&self, hint: &str) -> Result<Option<KnownCluster>, StoreError> {
        Ok(self
            .clusters()?
            .into_iter()
            .filter(|c| c.name == hint || c.alias.as_deref() == Some(hint))
            .max_by_key(|c| c.seen_at))
    }

    fn cluster_of(&self, key: &InstanceKey) -> Result<Option<KnownCluster>, StoreError> {
        Ok(self.clusters()?.into_iter().find(|c| c.members.contains(key)))
    }

    fn clusters(&self) -> Result<Vec<KnownCluster>, StoreError> {
        let mut out: Vec<KnownCluster> =
            self.list("clusters")?.iter().map(|(_, v)| self.parse("cluster", v)).collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn move_alias(&self, alias: &str, to: &str) -> Result<bool, StoreError> {
        let all = self.clusters()?;
        if !all.iter().any(|c| c.name == to) {
            return Ok(false);
        }
        let mut ops = Vec::new();
        for mut c in all {
            let before = c.clone();
            if c.alias.as_deref() == Some(alias) {
                c.alias = None;
            }
            if c.name == to {
                c.alias = Some(alias.to_string());
                if c.claimed_alias.as_deref() == Some(alias) {
                    c.claimed_alias = None;
                }
            }
            if c != before {
                ops.push(TxnOp::put(self.key(&["clusters", &c.name]), Self::json(&c), None));
            }
        }
        self.txn(vec![], ops, vec![]).map(|_| true)
    }

    fn set_promotion_rule(&self, e: &RuleEntry) -> Result<(), StoreError> {
        self.put(self.key(&["rules", &e.instance.to_string()]), Self::json(e))
    }

    fn clear_promotion_rule(&self, key: &InstanceKey) -> Result<(), StoreError> {
        self.delete(self.key(&["rules", &key.to_string()])).map(|_| ())
    }

    fn promotion_rules(&self) -> Result<Vec<RuleEntry>, StoreError> {
        let now = now_unix();
        let rules: Vec<RuleEntry> =
            self.list("rules")?.iter().map(|(_, v)| self.parse("promotion rule", v)).collect::<Result<_, _>>()?;
        Ok(rules.into_iter().filter(|r| r.until.is_none_or(|u| u > now)).collect())
    }

    fn begin_downtime(&self, d: &Downtime) -> Result<(), StoreError> {
        self.put(self.key(&["downtimes", &d.instance.to_string()]), Self::json(d))
    }

    fn end_downtime(&self, key: &InstanceKey) -> Result<bool, StoreError> {
        self.delete(self.key(&["downtimes", &key.to_string()]))
    }

    fn downtimes(&self) -> Result<Vec<Downtime>, StoreError> {
        let now = now_unix();
        let all: Vec<Downtime> =
            self.list("downtimes")?.iter().map(|(_, v)| self.parse("downtime", v)).collect::<Result<_, _>>()?;
        Ok(all.into_iter().filter(|d| d.until > now).collect())
    }

    fn lock_cluster(&self, cluster: &str, takeover_id: &str) -> Result<Option<String>, StoreError> {
        let put = TxnOp::put(self.key(&["locks", cluster]), takeover_id, None);
        self.lock_txn(cluster, takeover_id, vec![put])
    }

    fn unlock_cluster(&self, cluster: &str, takeover_id: &str) -> Result<(), StoreError> {
        let lock = self.key(&["locks", cluster]);
        self.txn(
            vec![Compare::value(lock.clone(), CompareOp::Equal, takeover_id)],
            vec![TxnOp::delete(lock, None)],
            vec![],
        )
        .map(|_| ())
    }

    fn save_takeover(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.put(self.key(&["takeovers", &e.id]), Self::json(e))
    }

    fn takeover(&self, id: &str) -> Result<Option<AuditEntry>, StoreError> {
        match self.get_raw(self.key(&["takeovers", id]))? {
            None => Ok(None),
            Some(raw) => self.parse(&format!("takeover {id}"), &raw).map(Some),
        }
    }

    fn takeovers(&self, cluster: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let (all, _) = self.audit("takeovers")?;
        let all = all.into_iter().filter(|e| cluster.is_none_or(|c| e.cluster == c)).collect();
        Ok(Self::newest_first(all, limit))
    }

    fn lock_cluster_journaled(&self, cluster: &str, e: &AuditEntry) -> Result<Option<String>, StoreError> {
        let ops = vec![
            TxnOp::put(self.key(&["locks", cluster]), e.id.as_str(), None),
            TxnOp::put(self.key(&["takeovers", &e.id]), Self::json(e), None),
        ];
        self.lock_txn(cluster, &e.id, ops)
    }

    fn release_locks_of(&self, takeover_id: &str) -> Result<Vec<String>, StoreError> {
        let mut released = Vec::new();
        for (k, v) in self.list("locks")? {
            if v == takeover_id.as_bytes() {
                let cluster = k.trim_start_matches("locks/").to_string();
                self.unlock_cluster(&cluster, takeover_id)?;
                released.push(cluster);
            }
        }
        Ok(released)
    }

    fn unsettled_takeovers(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let (all, _) = self.audit("takeovers")?;
        let mut v: Vec<AuditEntry> =
            all.into_iter().filter(|e| e.status == "running" || e.status == "needs_operator").collect();
        v.sort_by_key(|e| e.started_at);
        Ok(v)
    }

    fn damaged(&self) -> Result<Vec<DamagedRecord>, StoreError> {
        let mut out = self.audit("takeovers")?.1;
        out.extend(self.audit("operations")?.1);
        Ok(out)
    }

    fn set_aside_damaged(&self) -> Result<usize, StoreError> {
        let damaged = self.damaged()?;
        for d in &damaged {
            let from = self.key(&[&d.table, &d.id]);
            let raw = self.get_raw(from.clone())?.unwrap_or_default();
            let aside = serde_json::json!({ "record": String::from_utf8_lossy(&raw), "error": d.error, "moved_at": now_unix() });
            let ops = vec![
                TxnOp::put(self.key(&["damaged", &d.table, &d.id]), Self::json(&aside), None),
                TxnOp::delete(from, None),
            ];
            self.txn(vec![], ops, vec![])?;
        }
        Ok(damaged.len())
    }

    fn forget_cluster(&self, hint: &str) -> Result<bool, StoreError> {
        let gone: Vec<String> = self
            .clusters()?
            .into_iter()
            .filter(|c| c.name == hint || c.alias.as_deref() == Some(hint))
            .map(|c| c.name)
            .collect();
        for name in &gone {
            self.delete(self.key(&["clusters", name]))?;
        }
        Ok(!gone.is_empty())
    }

    fn forget_member(&self, key: &InstanceKey) -> Result<bool, StoreError> {
        let Some(mut c) = self.cluster_of(key)? else { return Ok(false) };
        c.members.retain(|m| m != key);
        self.put(self.key(&["clusters", &c.name]), Self::json(&c)).map(|_| true)
    }

    fn save_operation(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.put(self.key(&["operations", &e.id]), Self::json(e))
    }

    fn live_nodes(&self) -> Result<Option<Vec<String>>, StoreError> {
        Ok(Some(self.list("nodes")?.into_iter().map(|(k, _)| k.trim_start_matches("nodes/").to_string()).collect()))
    }

    fn operations(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(Self::newest_first(self.audit("operations")?.0, limit))
    }

    fn prune_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut gone = 0;
        for table in ["takeovers", "operations"] {
            let old: Vec<String> = self
                .audit(table)?
                .0
                .into_iter()
                .filter(|e| e.started_at < before_ms && e.status != "running" && e.status != "needs_operator")
                .map(|e| self.key(&[table, &e.id]))
                .collect();
            // A batch per transaction (etcd limits the operations in one: 128 by default).
            for batch in old.chunks(64) {
                self.txn(vec![], batch.iter().map(|k| TxnOp::delete(k.as_str(), None)).collect(), vec![])?;
                gone += batch.len();
            }
        }
        Ok(gone)
    }
}
