//! `GET /metrics`: Prometheus text format (prometheus-client).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::{PhaseEvent, TakeoverReport};

type Labels = Vec<(String, String)>;

fn ms_histogram() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.5, 2.0, 18))
}

pub struct Metrics {
    registry: Registry,
    takeovers: Family<Labels, Counter>,
    phase_ms: Family<Labels, Histogram, fn() -> Histogram>,
    write_unavailable_ms: Histogram,
    script_reloads: Family<Labels, Counter>,
    probe_errors: Counter,
    requests: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("baton");
        let takeovers = Family::<Labels, Counter>::default();
        registry.register("takeovers", "Takeovers (and dry runs) by result", takeovers.clone());
        let phase_ms =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(ms_histogram as fn() -> Histogram);
        registry.register("phase_duration_ms", "Duration of each takeover phase, milliseconds", phase_ms.clone());
        let write_unavailable_ms = ms_histogram();
        registry.register(
            "write_unavailable_ms",
            "From the fence on the old master to the new master writable, milliseconds",
            write_unavailable_ms.clone(),
        );
        let script_reloads = Family::<Labels, Counter>::default();
        registry.register("script_reloads", "Script reloads by result (loaded, failed)", script_reloads.clone());
        let probe_errors = Counter::default();
        registry.register(
            "probe_errors",
            "Instances found unreachable while discovering a cluster",
            probe_errors.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status code", requests.clone());
        Metrics { registry, takeovers, phase_ms, write_unavailable_ms, script_reloads, probe_errors, requests }
    }

    pub fn takeover_finished(&self, r: &TakeoverReport) {
        let kind = if r.dry_run { "dry_run" } else { "takeover" };
        self.takeovers
            .get_or_create(&vec![("kind".into(), kind.into()), ("status".into(), r.status.as_str().into())])
            .inc();
        if let Some(w) = r.write_unavailable_ms {
            self.write_unavailable_ms.observe(w);
        }
    }

    pub fn phase(&self, ev: &PhaseEvent) {
        if let PhaseEvent::Finished { record, .. } = ev {
            self.phase_ms.get_or_create(&vec![("phase".into(), record.name.name().into())]).observe(record.duration_ms);
        }
    }

    pub fn script_reload(&self, ok: bool) {
        self.script_reloads.get_or_create(&vec![("result".into(), if ok { "loaded" } else { "failed" }.into())]).inc();
    }

    pub fn probe_errors(&self, n: usize) {
        self.probe_errors.inc_by(n as u64);
    }

    pub fn request(&self, route: &str, code: u16) {
        self.requests.get_or_create(&vec![("route".into(), route.into()), ("code".into(), code.to_string())]).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The fleet poller's view as metrics, built at each scrape (the label sets follow the fleet:
/// an instance no longer followed is no longer shown). Labels are bounded: cluster, instance,
/// role.
pub fn fleet(poller: &crate::fleet::Poller) -> String {
    use prometheus_client::metrics::gauge::Gauge;
    use std::sync::atomic::{AtomicU64, Ordering};
    type F64 = Gauge<f64, AtomicU64>;
    let mut registry = Registry::with_prefix("baton_fleet");
    let gauge = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Gauge>::default();
        r.register(name, help, f.clone());
        f
    };
    let up = gauge(&mut registry, "instance_up", "1 when the last probe of the instance succeeded");
    let read_only = gauge(&mut registry, "instance_read_only", "read_only of the instance (last successful probe)");
    let io = gauge(&mut registry, "instance_replication_io_running", "1 when the replication IO thread runs");
    let sql = gauge(&mut registry, "instance_replication_sql_running", "1 when the replication SQL thread runs");
    let behind = gauge(&mut registry, "instance_seconds_behind", "Seconds_Behind_Master (replicas that report one)");
    let latency = Family::<Labels, F64>::default();
    registry.register(
        "instance_probe_latency_ms",
        "Duration of the last successful probe, milliseconds",
        latency.clone(),
    );
    let last = Family::<Labels, F64>::default();
    registry.register(
        "instance_last_success_timestamp_seconds",
        "Unix time of the last successful probe",
        last.clone(),
    );
    let ready = gauge(&mut registry, "cluster_takeover_ready", "1 when a takeover --auto would go ahead now (cache)");
    let views = poller.views().unwrap_or_default();
    let mut role_of = std::collections::HashMap::new();
    for v in views.iter() {
        ready.get_or_create(&vec![("cluster".into(), v.name.clone())]).set(v.readiness.ready as i64);
        for m in &v.cluster.members {
            let role = if v.master.as_ref() == Some(&m.key) { "master" } else { "replica" };
            role_of.insert(m.key.clone(), (v.name.clone(), role));
        }
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    for i in poller.instances() {
        let (cluster, role) = role_of.get(&i.key).cloned().unwrap_or_else(|| (String::new(), "unknown"));
        let labels: Labels =
            vec![("cluster".into(), cluster), ("instance".into(), i.key.to_string()), ("role".into(), role.into())];
        up.get_or_create(&labels).set(i.up as i64);
        if let Some(age) = i.age_s {
            last.get_or_create(&labels).set(now - age);
        }
        if let Some(ms) = i.latency_ms {
            latency.get_or_create(&labels).set(ms);
        }
        if let Some(inst) = &i.instance {
            read_only.get_or_create(&labels).set(inst.read_only as i64);
            if let Some(r) = &inst.replication {
                use crate::topology::ThreadState;
                io.get_or_create(&labels).set((r.io_thread == ThreadState::Yes) as i64);
                sql.get_or_create(&labels).set((r.sql_thread == ThreadState::Yes) as i64);
                if let Some(b) = r.seconds_behind {
                    behind.get_or_create(&labels).set(b as i64);
                }
            }
        }
    }
    let stats = poller.stats();
    let probes = Counter::<u64>::default();
    probes.inc_by(stats.probes.load(Ordering::Relaxed));
    registry.register("probes", "Probes made by the poller", probes);
    let failures = Counter::<u64>::default();
    failures.inc_by(stats.failures.load(Ordering::Relaxed));
    registry.register("probe_failures", "Probes that failed (refused, reset, timed out)", failures);
    let queued = Gauge::<i64>::default();
    queued.set(stats.queued.load(Ordering::Relaxed) as i64);
    registry.register("queue_depth", "Probes due and waiting for a free slot", queued);
    let lane = Gauge::<i64>::default();
    lane.set(poller.backoff_lane() as i64);
    registry.register("backoff_lane_size", "Instances in the back-off lane (failing or hanging)", lane);
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String");
    out
}
