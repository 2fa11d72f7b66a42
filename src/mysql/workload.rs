//! An application writer and a read_only sampler, for tests and benchmarks: the client's view of a
//! takeover. The writer inserts rows as the application user (no SUPER, so read_only stops it) into
//! whichever instance accepts them, with connections opened beforehand, and records every
//! acknowledged id and the longest gap between two acknowledgements.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

use crate::topology::InstanceKey;

/// What the writer saw.
#[derive(Debug, Clone, Default)]
pub struct WriterStats {
    pub acked: Vec<i64>,
    /// Longest time between two acknowledged writes, in ms, with when it ended (ms since start).
    pub max_gap_ms: f64,
    /// Every gap longer than `gap_threshold_ms`: (end ms since start, length ms).
    pub long_gaps: Vec<(f64, f64)>,
    pub errors: u64,
}

/// The writer's gaps since the last `take_window_gap`, in ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowGaps {
    /// The longest gap between two acknowledged writes.
    pub longest: f64,
    /// The longest gap in which a write was refused or failed: the one across a takeover's fence
    /// (0 when every write went through). The other gaps are the machine's own latency.
    pub across_refusal: f64,
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    window_gap: Arc<std::sync::Mutex<WindowGaps>>,
    task: tokio::task::JoinHandle<WriterStats>,
}

async fn connect(key: &InstanceKey, user: &str, password: &str) -> Option<Conn> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(key.host.clone())
        .tcp_port(key.port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .tcp_nodelay(true);
    tokio::time::timeout(Duration::from_secs(2), Conn::new(opts)).await.ok()?.ok()
}

/// One insert on one instance's connection (made if needed); true when acknowledged.
async fn insert(
    (key, conn): &mut (InstanceKey, Option<Conn>),
    user: &str,
    password: &str,
    id: i64,
    writer_id: i64,
    stats: &mut WriterStats,
) -> bool {
    if conn.is_none() {
        *conn = connect(key, user, password).await;
    }
    let Some(c) = conn.as_mut() else { return false };
    let q = c.exec_drop("INSERT INTO app.writes (id, writer) VALUES (?, ?)", (id, writer_id));
    match tokio::time::timeout(Duration::from_secs(2), q).await {
        Ok(Ok(())) => true,
        Ok(Err(mysql_async::Error::Server(_))) => {
            stats.errors += 1; // read-only, mostly
            false
        }
        _ => {
            stats.errors += 1;
            *conn = None;
            false
        }
    }
}

/// The writer's watches of every instance (`watch_writable`), each ending with its connection.
type Watches = futures::stream::FuturesUnordered<
    std::pin::Pin<Box<dyn std::future::Future<Output = (usize, Option<Conn>, bool)> + Send>>,
>;

/// Every instance watched at once for `read_only = 0`: each on its own connection, asking every
/// 1 ms (so the slowest server never holds up the others' next question) until it answers
/// writable, or `done` or the writer's `stop` is set.
fn watch_writable(
    conns: &mut [(InstanceKey, Option<Conn>)],
    user: &str,
    password: &str,
    done: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> Watches {
    conns
        .iter_mut()
        .enumerate()
        .map(|(i, (key, conn))| {
            let (key, mut conn, user, password) = (key.clone(), conn.take(), user.to_string(), password.to_string());
            let (done, stop) = (done.clone(), stop.clone());
            Box::pin(async move {
                while !done.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        conn = connect(&key, &user, &password).await;
                    }
                    if let Some(c) = conn.as_mut() {
                        let q = c.query_first::<u8, _>("SELECT @@global.read_only");
                        match tokio::time::timeout(Duration::from_secs(2), q).await {
                            Ok(Ok(Some(0))) => return (i, conn, true),
                            Ok(Ok(_)) => {}
                            // A connection that broke or hung is opened again (through a proxy,
                            // that reaches the server it now points at).
                            _ => conn = None,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (i, conn, false)
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        })
        .collect()
}

impl Writer {
    /// Starts writing ids `writer_id * 1e9 + n` into `app.writes` every `interval`.
    pub async fn start(
        instances: Vec<InstanceKey>,
        user: &str,
        password: &str,
        writer_id: i64,
        interval: Duration,
        gap_threshold_ms: f64,
    ) -> Writer {
        let mut conns: Vec<(InstanceKey, Option<Conn>)> = Vec::new();
        for k in &instances {
            conns.push((k.clone(), connect(k, user, password).await));
        }
        let (user, password) = (user.to_string(), password.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let window_gap = Arc::new(std::sync::Mutex::new(WindowGaps::default()));
        let window = window_gap.clone();
        let task = tokio::spawn(async move {
            let mut stats = WriterStats::default();
            let start = Instant::now();
            let mut last_ack = Instant::now();
            let mut current = 0usize;
            let mut n: i64 = 0;
            let mut refused_since_ack = false;
            while !flag.load(Ordering::Relaxed) {
                let id = writer_id * 1_000_000_000 + n;
                // The instance that last accepted; when it refuses, the failover below.
                let mut acked = insert(&mut conns[current], &user, &password, id, writer_id, &mut stats).await;
                let mut acked_at = Instant::now();
                if !acked {
                    refused_since_ack = true;
                    // Every instance is watched at once (the refusing one too: a takeover that
                    // rolls back makes it writable again), and the first to answer writable is
                    // written to at once, as an application's failover would (trying them one by
                    // one, or waiting for the slowest answer, would make the gap grow with the
                    // cluster). Each asks every 1 ms: back to back, the questions themselves
                    // weighed on the servers being promoted.
                    use futures::StreamExt;
                    while !acked && !flag.load(Ordering::Relaxed) {
                        let done = Arc::new(AtomicBool::new(false));
                        let mut watches = watch_writable(&mut conns, &user, &password, &done, &flag);
                        let mut found = None;
                        while let Some((i, conn, writable)) = watches.next().await {
                            conns[i].1 = conn;
                            if writable {
                                found = Some(i);
                                break;
                            }
                        }
                        done.store(true, Ordering::Relaxed);
                        let rest = tokio::spawn(async move { watches.collect::<Vec<_>>().await });
                        if let Some(idx) = found {
                            if insert(&mut conns[idx], &user, &password, id, writer_id, &mut stats).await {
                                acked = true;
                                acked_at = Instant::now();
                                current = idx;
                            }
                        }
                        for (i, conn, _) in rest.await.unwrap_or_default() {
                            conns[i].1 = conn;
                        }
                    }
                }
                if acked {
                    stats.acked.push(id);
                    n += 1;
                    let gap = (acked_at - last_ack).as_secs_f64() * 1000.0;
                    last_ack = acked_at;
                    let at = start.elapsed().as_secs_f64() * 1000.0;
                    if gap > stats.max_gap_ms {
                        stats.max_gap_ms = gap;
                    }
                    {
                        let mut w = window.lock().expect("gap mutex");
                        w.longest = w.longest.max(gap);
                        if std::mem::take(&mut refused_since_ack) {
                            w.across_refusal = w.across_refusal.max(gap);
                        }
                    }
                    if gap > gap_threshold_ms {
                        stats.long_gaps.push((at, gap));
                    }
                    tokio::time::sleep(interval).await;
                }
            }
            for (_, c) in conns {
                if let Some(c) = c {
                    let _ = c.disconnect().await;
                }
            }
            stats
        });
        Writer { stop, window_gap, task }
    }

    /// The gaps since the previous call, and starts a new window.
    pub fn take_window_gap(&self) -> WindowGaps {
        std::mem::take(&mut *self.window_gap.lock().expect("gap mutex"))
    }

    /// Stops and returns what it saw.
    pub async fn stop(self) -> WriterStats {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task")
    }
}

/// Samples `@@read_only` on every instance in parallel and counts moments where more than one
/// instance answered writable in two consecutive rounds (a single round can straddle a takeover
/// that takes a few milliseconds; a real split brain persists).
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Sampler {
    pub async fn start(instances: Vec<InstanceKey>, user: &str, password: &str, interval: Duration) -> Sampler {
        let mut conns = Vec::new();
        for k in &instances {
            conns.push(connect(k, user, password).await);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut rounds, mut double) = (0u64, 0u64);
            let mut previous_many = false;
            while !flag.load(Ordering::Relaxed) {
                let reads = conns.iter_mut().map(|c| async move {
                    let c = c.as_mut()?;
                    let q = c.query_first::<i64, _>("SELECT @@read_only");
                    tokio::time::timeout(Duration::from_millis(500), q).await.ok()?.ok()?
                });
                let writable = futures::future::join_all(reads).await.into_iter().filter(|r| *r == Some(0)).count();
                rounds += 1;
                let many = writable > 1;
                if many && previous_many {
                    double += 1;
                }
                previous_many = many;
                tokio::time::sleep(interval).await;
            }
            (rounds, double)
        });
        Sampler { stop, task }
    }

    /// Stops; returns (rounds, rounds with two writable instances confirmed).
    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler task")
    }
}

/// The ids of `writer_id` present on `key` (read as the admin connector).
pub async fn rows_of(conn: &super::Connector, key: &InstanceKey, writer_id: i64) -> Result<Vec<i64>, super::SqlError> {
    let rows = conn
        .query_params(key, "SELECT id FROM app.writes WHERE writer = ? ORDER BY id", vec![writer_id.into()])
        .await?;
    Ok(rows.iter().filter_map(|r| r.text(&["id"]).and_then(|v| v.parse().ok())).collect())
}
