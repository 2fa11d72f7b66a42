//! Network faults, drilled: Baton reaches every `mariadbd` through a TCP fault proxy
//! (`common::netfault`, dialed through `topology.dial`), while replication and the application's
//! writer connect directly. Under a writer, each drill ends with the reliability drill's
//! assertions: no acknowledged write lost, never two writable instances, a writable master at
//! the end. docs/RELIABILITY.md has the rows.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use baton::config::Config;
use baton::engine::{Engine, EventSink, NoScripts, Phase, PhaseEvent, Status, TakeoverReport, TakeoverRequest};
use baton::mysql::workload::{Sampler, Writer};
use baton::mysql::Connector;
use baton::sandbox::APP_USER;
use baton::store::{SqliteStore, Store};
use baton::topology::InstanceKey;
use common::netfault::{Fault, FaultProxy};
use common::*;

/// A topology whose members Baton reaches through fault proxies.
struct Net {
    t: Topology,
    proxies: HashMap<InstanceKey, Arc<FaultProxy>>,
    cfg: Config,
}

async fn net(replicas: usize) -> Net {
    let t = fresh(replicas).await;
    let mut cfg = fast(&t.cfg());
    // Long enough to outlast N1's 1.5 s outage.
    cfg.takeover.unfence_retry_ms = 10_000;
    let mut proxies = HashMap::new();
    for k in t.sandbox.keys() {
        let p = Arc::new(FaultProxy::start(format!("{}:{}", k.host, k.port).parse().unwrap()).await);
        cfg.topology.dial.insert(k.to_string(), p.addr.to_string());
        proxies.insert(k, p);
    }
    cfg.validate().unwrap();
    Net { t, proxies, cfg }
}

impl Net {
    fn engine(&self, cfg: &Config) -> Engine {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.paths.data_dir).unwrap());
        Engine::new(Arc::new(cfg.clone()), Arc::new(Connector::new(cfg)), store, Arc::new(NoScripts))
    }

    fn proxy(&self, k: &InstanceKey) -> Arc<FaultProxy> {
        self.proxies[k].clone()
    }

    fn heal(&self) {
        for p in self.proxies.values() {
            p.set(Fault::Pass);
        }
    }

    fn request(&self, d: &InstanceKey) -> TakeoverRequest {
        TakeoverRequest {
            cluster_hint: self.t.master().to_string(),
            designated: Some(d.clone()),
            start_replication: true,
            ..Default::default()
        }
    }

    async fn writer(&self, id: i64) -> (Writer, Sampler) {
        let keys = self.t.sandbox.keys();
        let w = Writer::start(keys.clone(), APP_USER.0, APP_USER.1, id, Duration::from_millis(3), 1e9).await;
        let s = Sampler::start(
            keys,
            &self.cfg.topology.user,
            self.cfg.topology.password.expose(),
            Duration::from_millis(5),
        )
        .await;
        (w, s)
    }

    /// The drill's end: the network healed, one writable master (`want` when given), every
    /// acknowledged row on every instance, and never two writable instances meanwhile.
    async fn end(&self, w: Writer, s: Sampler, id: i64, want: Option<&InstanceKey>) -> InstanceKey {
        self.heal();
        let stats = w.stop().await;
        let (_, two_writable) = s.stop().await;
        assert_eq!(two_writable, 0, "two writable instances were seen");
        let master = assert_one_master_tree(&self.t).await;
        if let Some(want) = want {
            assert_eq!(&master, want);
        }
        assert_rows_everywhere(&self.t, &master, id, &stats.acked).await;
        master
    }
}

#[track_caller]
fn status(r: &TakeoverReport, want: &[Status]) {
    assert!(want.contains(&r.status), "{:?}: {:?}\n{:#?}", r.status, r.errors, r.phases);
}

/// N1. Baton cut off from the old master right after the fence, for 1.5 s. Expected: the fence
/// read the position the master stopped at in the same round trip as read_only, so the
/// designated replica executes it and is promoted: writes resume on it without waiting for the
/// network. The old master cannot be repointed while cut off, which the report says
/// (promoted_with_errors); it stays read-only, and once the network is back the operator points
/// it below the new master. Never two writable instances.
#[tokio::test]
async fn cut_off_from_the_old_master_after_the_fence() {
    let n = net(2).await;
    let (m, d) = (n.t.master(), n.t.replicas()[0].clone());
    let (w, s) = n.writer(401).await;
    let p = n.proxy(&m);
    let sink = at(Phase::Fence, true, move || {
        p.set(Fault::Blackhole);
        let p = p.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            p.set(Fault::Pass);
        });
    });
    let rep = n.engine(&n.cfg).takeover(n.request(&d), Some(sink)).await;
    status(&rep, &[Status::PromotedWithErrors]);
    assert_eq!(rep.new_master.as_deref(), Some(d.to_string().as_str()));
    assert!(
        rep.errors.iter().any(|e| e.starts_with("repoint_old_master") && e.contains(&m.to_string())),
        "{:?}",
        rep.errors
    );
    n.heal();
    let spec = baton::mysql::SourceSpec {
        host: d.host.clone(),
        port: d.port,
        user: n.cfg.replication.user.clone(),
        password: n.cfg.replication.password.clone(),
        position: baton::mysql::SourcePosition::GtidSlavePos,
        tls: false,
    };
    let conn = Connector::new(&n.cfg);
    wait_until("the old master answers again", Duration::from_secs(10), || async {
        baton::mysql::ops::repoint(&conn, &m, &spec, true).await.is_ok()
    })
    .await;
    n.end(w, s, 401, Some(&d)).await;
}

/// N2. Cut off from the designated replica during catch-up. Expected: the wait fails within its
/// bound; rollback (old master writable, the sibling back below it); the designated replica was
/// never changed.
#[tokio::test]
async fn cut_off_from_the_designated_during_catch_up() {
    let n = net(2).await;
    let (m, d) = (n.t.master(), n.t.replicas()[0].clone());
    let (w, s) = n.writer(402).await;
    let p = n.proxy(&d);
    let rep = n
        .engine(&n.cfg)
        .takeover(n.request(&d), Some(at(Phase::CatchUp, false, move || p.set(Fault::Blackhole))))
        .await;
    status(&rep, &[Status::RolledBack]);
    assert!(rep.errors[0].contains("catch_up"), "{:?}", rep.errors);
    n.end(w, s, 402, Some(&m)).await;
}

/// N3. Cut off from a sibling during relocation. Expected: its relocation fails, the takeover
/// stops before the fence (the master never stopped taking writes) and moves back what it moved;
/// the unreachable sibling cannot be moved back now: rolled back or failed, saying so. Its
/// statements never arrived: it still replicates from the master.
#[tokio::test]
async fn cut_off_from_a_sibling_during_relocation() {
    let n = net(3).await;
    let (m, d, sib) = (n.t.master(), n.t.replicas()[0].clone(), n.t.replicas()[1].clone());
    let (w, s) = n.writer(403).await;
    let p = n.proxy(&sib);
    let rep = n
        .engine(&n.cfg)
        .takeover(n.request(&d), Some(at(Phase::RelocateSiblings, false, move || p.set(Fault::Blackhole))))
        .await;
    status(&rep, &[Status::RolledBack, Status::Failed]);
    assert!(rep.errors.iter().any(|e| e.contains(&sib.to_string())), "{:?}", rep.errors);
    assert!(rep.write_unavailable_ms.is_none(), "never fenced");
    n.end(w, s, 403, Some(&m)).await;
}

/// N4. Cut off from a sibling during the rollback (the rollback itself caused by the designated
/// replica being cut off during catch-up). Expected: the old master is writable again first; the
/// sibling cannot be moved back and stays below the designated replica (a valid chain), and the
/// report says so (a warning when no connection could be made). Every write reaches it through
/// the chain.
#[tokio::test]
async fn cut_off_from_a_sibling_during_rollback() {
    let n = net(3).await;
    let (m, d, sib) = (n.t.master(), n.t.replicas()[0].clone(), n.t.replicas()[1].clone());
    let (w, s) = n.writer(404).await;
    let (pd, ps) = (n.proxy(&d), n.proxy(&sib));
    let to_d = at(Phase::CatchUp, false, move || pd.set(Fault::Blackhole));
    let to_sib = at(Phase::Rollback, false, move || ps.set(Fault::Blackhole));
    let sink: EventSink = Arc::new(move |ev: &PhaseEvent| {
        to_d(ev);
        to_sib(ev);
    });
    let rep = n.engine(&n.cfg).takeover(n.request(&d), Some(sink)).await;
    // Unreachable (no connection): a warning, the rollback stands; no answer on an open
    // connection: a failure of the rollback. Either way the report names the sibling.
    status(&rep, &[Status::RolledBack, Status::Failed]);
    let rollback = rep.phase(Phase::Rollback).unwrap();
    assert!(rollback.detail.contains(&format!("{m}: writable again")), "{}", rollback.detail);
    let said = rep.errors.iter().chain(&rep.warnings).any(|e| {
        e.contains(&format!("{sib} is unreachable")) || (e.starts_with("rollback:") && e.contains(&sib.to_string()))
    });
    assert!(said, "{:?} {:?}", rep.errors, rep.warnings);
    n.end(w, s, 404, Some(&m)).await;
}

/// N5. 200 ms more round-trip time to every instance (100 ms each way). Expected: the takeover
/// completes within its timeouts.
#[tokio::test]
async fn two_hundred_ms_more_to_every_instance() {
    let n = net(2).await;
    let (m, d) = (n.t.master(), n.t.replicas()[0].clone());
    let (w, s) = n.writer(405).await;
    for p in n.proxies.values() {
        p.set(Fault::Latency(Duration::from_millis(100)));
    }
    let mut cfg = n.cfg.clone();
    cfg.topology.read_timeout_ms = 5000;
    cfg.topology.connect_timeout_ms = 3000;
    cfg.takeover.catchup_timeout_ms = 5000;
    let rep = n.engine(&cfg).takeover(n.request(&d), None).await;
    status(&rep, &[Status::Promoted]);
    let new = n.end(w, s, 405, Some(&d)).await;
    assert_ne!(new, m);
}

/// N6. A connection reset in the middle of each phase that changes servers: the first statement
/// Baton sends, in that phase, to the instance the phase works on resets its connection, once
/// after reaching the server (it ran, its answer was lost) and once before (it never arrived).
/// One takeover each, back and forth. Expected: the broken connection's statements run again on a
/// new one (each is idempotent); every takeover is promoted.
#[tokio::test]
async fn a_reset_connection_in_each_phase() {
    let n = net(2).await;
    let (a, b) = (n.t.master(), n.t.replicas()[0].clone());
    let (w, s) = n.writer(406).await;
    let e = n.engine(&n.cfg);
    let phases = [Phase::RelocateSiblings, Phase::Fence, Phase::CatchUp, Phase::Promote, Phase::RepointOldMaster];
    let mut round = 0;
    for phase in phases {
        for deliver in [true, false] {
            let (from, to) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
            round += 1;
            // The instance the phase works on (relocation: the sibling first).
            let target = match phase {
                Phase::Fence | Phase::RepointOldMaster => from.clone(),
                Phase::RelocateSiblings => n.t.replicas()[1].clone(),
                _ => to.clone(),
            };
            let p = n.proxy(&target);
            let req = TakeoverRequest {
                cluster_hint: from.to_string(),
                designated: Some(to.clone()),
                start_replication: true,
                ..Default::default()
            };
            let rep = e.takeover(req, Some(at(phase, false, move || p.reset_next_statement(deliver)))).await;
            assert_eq!(
                rep.status,
                Status::Promoted,
                "reset in {phase} (delivered: {deliver}) on {target}: {:?}\n{:#?}",
                rep.errors,
                rep.phases
            );
        }
    }
    n.end(w, s, 406, None).await;
}

/// N7. A relocation that fails half-way with several siblings moving at once (1+4: three
/// siblings stopped together; one cut off mid-way, back by the time the rollback runs). Expected:
/// undone completely: every sibling replicates from the old master again, running; nothing fenced.
#[tokio::test]
async fn a_relocation_that_fails_half_way_is_undone_completely() {
    let n = net(4).await;
    let (m, d) = (n.t.master(), n.t.replicas()[0].clone());
    let cut = n.t.replicas()[3].clone();
    let (w, s) = n.writer(407).await;
    let (p1, p2) = (n.proxy(&cut), n.proxy(&cut));
    let cut_off = at(Phase::RelocateSiblings, false, move || p1.set(Fault::Blackhole));
    let heal = at(Phase::Rollback, false, move || p2.set(Fault::Pass));
    let sink: EventSink = Arc::new(move |ev: &PhaseEvent| {
        cut_off(ev);
        heal(ev);
    });
    let rep = n.engine(&n.cfg).takeover(n.request(&d), Some(sink)).await;
    status(&rep, &[Status::RolledBack]);
    assert!(rep.write_unavailable_ms.is_none(), "never fenced");
    let back = rep.undo.describe();
    assert_eq!(back.iter().filter(|l| l.contains(&format!("replicates from {m} again"))).count(), 3, "{back:?}");
    for r in n.t.replicas() {
        let c = live_cluster(&n.t).await;
        let i = c.instance(&r).unwrap();
        assert_eq!(i.source(), Some(&m), "{r}");
        assert!(i.replication.as_ref().unwrap().io_thread.running() || r == cut, "{r} runs");
    }
    n.end(w, s, 407, Some(&m)).await;
}
