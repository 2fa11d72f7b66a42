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
