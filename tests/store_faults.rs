//! Faults in Baton's own store (issue 19), on a real topology under a writer, with a `baton`
//! process killed right after the fence: the store full, `baton.db` immutable, a write lock held
//! by another connection, a damaged record, the interrupted record written under a clock a year
//! behind among 1,000 newer ones. Each ends with exactly one writable master (the old one: the
//! takeover had not promoted), no acknowledged row lost, and a store that `recover` and `audit`
//! read once the fault is gone. And a held write lock never lengthens the write-unavailable window.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use baton::engine::{Phase, Status};
use baton::mysql::workload::Writer;
use baton::sandbox::APP_USER;
use baton::store::{AuditEntry, SqliteStore, Store};
use common::storefault::{fill, Immutable, Tmpfs};
use common::*;

/// A config file for the `baton` binary with its data directory in `data`.
fn config_in(t: &Topology, data: &Path) -> PathBuf {
    let base = std::fs::read_to_string(config_file(t)).unwrap();
    let cfg = t.cfg();
    let text = base.replace(&cfg.paths.data_dir.display().to_string(), &data.display().to_string());
    let path = t.sandbox.dir.join(format!("baton-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).unwrap();
    path
}

async fn baton(file: &Path, args: &[&str], crash: Option<&str>) -> Output {
    let mut c = tokio::process::Command::new(baton_bin());
    c.arg("--config").arg(file).args(args).env_remove("BATON_CONFIG");
    if let Some(p) = crash {
        c.env("BATON_FAULT_CRASH_AFTER", p);
    }
    c.output().await.unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Another connection holds `BEGIN EXCLUSIVE` on `db` until the returned sender is dropped or
/// sent to; returns once the lock is held.
fn hold_write_lock(db: &Path) -> mpsc::Sender<()> {
    let (release, wait) = mpsc::channel::<()>();
    let (held, is_held) = mpsc::channel::<()>();
    let db = db.to_path_buf();
    std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        held.send(()).unwrap();
        let _ = wait.recv();
        let _ = c.execute_batch("ROLLBACK");
    });
    is_held.recv().unwrap();
    release
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StoreFault {
    Full,
    Immutable,
    WriteLockHeld,
    DamagedRecord,
    SkewedAmongNewer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_fence_with_each_store_fault_is_settled() {
    let t = fresh(2).await;
    let m = t.master();
    let fs = Tmpfs::mount(8);
    if fs.is_none() {
        eprintln!("SKIPPED (full filesystem, immutable store): cannot mount a tmpfs here (needs root)");
    }
    let w = Writer::start(t.sandbox.keys(), APP_USER.0, APP_USER.1, 501, Duration::from_millis(3), 1e9).await;
    let faults = [
        StoreFault::Full,
        StoreFault::Immutable,
        StoreFault::WriteLockHeld,
        StoreFault::DamagedRecord,
        StoreFault::SkewedAmongNewer,
    ];
    for (round, fault) in faults.into_iter().enumerate() {
        let root = match &fs {
            Some(fs) => fs.0.clone(),
            None if matches!(fault, StoreFault::Full | StoreFault::Immutable) => continue,
            None => t.sandbox.dir.clone(),
        };
        let data = root.join(format!("data-{round}"));
        let file = config_in(&t, &data);
        // A finished takeover in the store first (a record to damage, an older history).
        let out = baton(&file, &["takeover", "recover"], None).await;
        assert!(out.status.success(), "{fault:?}: {}", text(&out));
        let store = SqliteStore::open(&data).unwrap();
        store
            .save_takeover(&AuditEntry {
                id: "older".into(),
                cluster: "elsewhere".into(),
                status: "promoted".into(),
                started_at: 1_000,
                record: serde_json::json!({ "id": "older" }),
            })
            .unwrap();

        // Killed right after the fence: the master is read-only, the journal says fence.
        let out = baton(&file, &["takeover", &m.to_string(), "--auto"], Some("fence")).await;
        assert!(!out.status.success(), "{fault:?}: killed: {}", text(&out));
        let id = store.unsettled_takeovers().unwrap()[0].id.clone();
        assert!(rows(&t.connector(), &m, "SELECT @@read_only AS ro").await[0].flag(&["ro"]), "{fault:?}: fenced");

        // The fault, then recover.
        let db = data.join("baton.db");
        let mut filler = None;
        let mut immutable = None;
        let mut lock = None;
        match fault {
            StoreFault::Full => filler = Some(fill(&root)),
            StoreFault::Immutable => {
                immutable = Immutable::set(vec![db.clone(), data.join("baton.db-wal")]);
                if immutable.is_none() {
                    eprintln!("SKIPPED immutable: chattr does not work here");
                }
            }
            StoreFault::WriteLockHeld => lock = Some(hold_write_lock(&db)),
            StoreFault::DamagedRecord => {
                let c = rusqlite::Connection::open(&db).unwrap();
                c.execute("UPDATE takeovers SET record = '{not json' WHERE id = 'older'", []).unwrap();
            }
            StoreFault::SkewedAmongNewer => {
                let c = rusqlite::Connection::open(&db).unwrap();
                c.execute("UPDATE takeovers SET started_at = started_at - 31536000000 WHERE id = ?1", [&id]).unwrap();
                let tx = c.unchecked_transaction().unwrap();
                for i in 0..1000 {
                    tx.execute(
                        "INSERT INTO takeovers (id, cluster, status, started_at, record) VALUES (?1, 'c', 'promoted', ?2, ?3)",
                        rusqlite::params![format!("newer{i}"), 40_000_000_000i64 + i, format!("{{\"id\":\"newer{i}\"}}")],
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
            }
        }
        let out = baton(&file, &["takeover", "recover"], None).await;
        let said = text(&out);
        // The servers are settled whatever the store does: the old master takes writes again.
        assert_eq!(assert_one_master(&t, &[]).await, m, "{fault:?}: {said}");
        match fault {
            StoreFault::DamagedRecord | StoreFault::SkewedAmongNewer => {
                assert!(out.status.success(), "{fault:?}: {said}");
                assert!(said.contains("rolled back") || said.contains("rolled_back"), "{fault:?}: {said}");
            }
            // A store that cannot be written is said, and is not a success (a full filesystem may
            // still take the write: SQLite's WAL keeps the space it had).
            _ => {
                let written = store.takeover(&id).ok().flatten().is_some_and(|e| e.status != "running");
                assert!(out.status.success() == written, "{fault:?}: written {written}: {said}");
                if !written {
                    assert!(said.contains("journal"), "{fault:?}: {said}");
                }
            }
        }

        // The fault gone: recover and audit read the store, nothing is left unsettled.
        if let Some(f) = filler {
            std::fs::remove_file(f).unwrap();
        }
        drop(immutable);
        drop(lock);
        let out = baton(&file, &["takeover", "recover"], None).await;
        assert!(out.status.success(), "{fault:?}: {}", text(&out));
        let out = baton(&file, &["takeover", "recover"], None).await;
        assert!(text(&out).contains("no interrupted takeover"), "{fault:?}: {}", text(&out));
        let out = baton(&file, &["audit", "--limit", "2000"], None).await;
        assert!(out.status.success() && text(&out).contains(&id), "{fault:?}: {}", text(&out));
        let settled = store.takeover(&id).unwrap().unwrap().status;
        assert!(settled == "rolled_back" || settled == "refused", "{fault:?}: {settled}");
    }
    let stats = w.stop().await;
    assert_rows_everywhere(&t, &m, 501, &stats.acked).await;
}

/// Another connection holds the store's write lock through the write-unavailable window (from
/// right after the fence until 300 ms after the promotion): the window never waits on the store
/// (nothing is journaled inside it), so it stays far below the store's 5 s busy timeout; the
/// takeover is promoted and journaled once the lock is gone. With the lock held before the takeover, the
/// takeover is refused as busy and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_lock_never_lengthens_the_write_window() {
    let t = fresh(2).await;
    let cfg = t.cfg();
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(SqliteStore::open(&cfg.paths.data_dir).unwrap());
    let e = baton::engine::Engine::new(
        std::sync::Arc::new(cfg.clone()),
        std::sync::Arc::new(baton::mysql::Connector::new(&cfg)),
        store,
        std::sync::Arc::new(baton::engine::NoScripts),
    );
    let db = cfg.paths.data_dir.join("baton.db");
    let req = || baton::engine::TakeoverRequest {
        cluster_hint: t.master().to_string(),
        designated: Some(t.replicas()[0].clone()),
        start_replication: true,
        ..Default::default()
    };
    let before = shape(&t).await;
    let lock = hold_write_lock(&db);
    let rep = e.takeover(req(), None).await;
    assert_eq!(rep.status, Status::Refused, "{:?}", rep.errors);
    assert_eq!(rep.refusal.as_ref().unwrap().kind, baton::engine::RefusalKind::Busy, "{:?}", rep.errors);
    assert_eq!(shape(&t).await, before, "nothing changed");
    drop(lock);

    let held = std::sync::Arc::new(std::sync::Mutex::new(None::<mpsc::Sender<()>>));
    let (take, give) = (held.clone(), held.clone());
    let db2 = db.clone();
    // Taken once the fence is done (its write-ahead record written before it: a lock held then
    // would stop the takeover before the fence, as the first half shows).
    let take_at_fence = at(Phase::Fence, true, move || *take.lock().unwrap() = Some(hold_write_lock(&db2)));
    let give_after_promotion = at(Phase::Promote, true, move || {
        let lock = give.lock().unwrap().take();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(lock);
        });
    });
    let sink: baton::engine::EventSink = std::sync::Arc::new(move |ev| {
        take_at_fence(ev);
        give_after_promotion(ev);
    });
    let rep = e.takeover(req(), Some(sink)).await;
    assert_eq!(rep.status, Status::Promoted, "{:?}", rep.errors);
    let window = rep.write_unavailable_ms.unwrap();
    eprintln!("write-unavailable window with the store's write lock held: {window:.1} ms");
    assert!(window < 5000.0, "the window waited on the store: {window} ms");
    let saved = SqliteStore::open(&cfg.paths.data_dir).unwrap().takeover(&rep.id).unwrap().unwrap();
    assert_eq!(saved.status, "promoted");
}
