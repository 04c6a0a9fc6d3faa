//! The proxy's own health, in Prometheus text form at the admin `/metrics`.
//!
//! Counters are updated once per request or per journal batch, never per
//! frame. Label values are bounded: route prefixes come from the config, and
//! statuses, providers, APIs and issue kinds are small closed sets.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::record::{Api, Interaction, Provider};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub provider: &'static str,
    pub api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    upstream_latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    request_bytes: Family<RouteLabel, Counter>,
    response_bytes: Family<RouteLabel, Counter>,
    in_flight: Gauge,
    interactions: Family<ApiLabels, Counter>,
    capture_errors: Family<KindLabel, Counter>,
    journal_write: Histogram,
    journal_entries: Counter,
    journal_lost: Counter,
    export_spans: Counter,
    export_batches: Counter,
    export_retries: Counter,
    export_rejected: Counter,
    export_lag_entries: Gauge,
    export_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sidetrace");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "requests",
            "Requests handled, by route prefix and the HTTP status returned to the agent",
            requests.clone(),
        );
        let upstream_latency =
            Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "upstream_latency_seconds",
            "Time from request to the upstream's response headers",
            upstream_latency.clone(),
        );
        let request_bytes = Family::<RouteLabel, Counter>::default();
        registry.register(
            "request_bytes",
            "Request body bytes forwarded upstream",
            request_bytes.clone(),
        );
        let response_bytes = Family::<RouteLabel, Counter>::default();
        registry.register(
            "response_bytes",
            "Response body bytes forwarded to agents",
            response_bytes.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being forwarded now",
            in_flight.clone(),
        );
        let interactions = Family::<ApiLabels, Counter>::default();
        registry.register(
            "interactions_captured",
            "Exchanges turned into interaction records",
            interactions.clone(),
        );
        let capture_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "capture_errors",
            "Problems met while recording (traffic unaffected), by kind",
            capture_errors.clone(),
        );
        let journal_write = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ]);
        registry.register(
            "journal_write_seconds",
            "Time to commit one batch of records to the journal",
            journal_write.clone(),
        );
        let journal_entries = Counter::default();
        registry.register(
            "journal_entries_written",
            "Records committed to the journal",
            journal_entries.clone(),
        );
        let journal_lost = Counter::default();
        registry.register(
            "journal_records_lost",
            "Records that could not be written to the journal",
            journal_lost.clone(),
        );
        let export_spans = Counter::default();
        registry.register(
            "export_spans",
            "Spans the OTLP collector accepted",
            export_spans.clone(),
        );
        let export_batches = Counter::default();
        registry.register(
            "export_batches",
            "Export requests the OTLP collector accepted",
            export_batches.clone(),
        );
        let export_retries = Counter::default();
        registry.register(
            "export_batches_retried",
            "Export requests retried after a retryable failure",
            export_retries.clone(),
        );
        let export_rejected = Counter::default();
        registry.register(
            "export_spans_rejected",
            "Spans the collector rejected (partial success or a permanent error)",
            export_rejected.clone(),
        );
        let export_lag_entries = Gauge::default();
        registry.register(
            "export_lag_entries",
            "Journal entries recorded but not yet exported",
            export_lag_entries.clone(),
        );
        let export_lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "export_lag_seconds",
            "Age of the oldest journal entry not yet exported",
            export_lag_seconds.clone(),
        );
        Self {
            registry,
            export_spans,
            export_batches,
            export_retries,
            export_rejected,
            export_lag_entries,
            export_lag_seconds,
            requests,
            upstream_latency,
            request_bytes,
            response_bytes,
            in_flight,
            interactions,
            capture_errors,
            journal_write,
            journal_entries,
            journal_lost,
        }
    }

    pub fn request_done(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    pub fn upstream_latency(&self, route: &str, latency: Duration) {
        self.upstream_latency
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    pub fn bytes(&self, route: &str, request: u64, response: u64) {
        let label = RouteLabel {
            route: route.to_owned(),
        };
        self.request_bytes.get_or_create(&label).inc_by(request);
        self.response_bytes.get_or_create(&label).inc_by(response);
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    pub fn interaction_captured(&self, it: &Interaction) {
        let provider = Provider::try_from(it.provider).unwrap_or(Provider::Unspecified);
        let api = Api::try_from(it.api).unwrap_or(Api::Unspecified);
        self.interactions
            .get_or_create(&ApiLabels {
                provider: provider.name(),
                api: api.name(),
            })
            .inc();
    }

    pub fn capture_error(&self, kind: &str) {
        self.capture_errors
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn journal_written(&self, entries: u64, took: Duration) {
        self.journal_entries.inc_by(entries);
        self.journal_write.observe(took.as_secs_f64());
    }

    pub fn journal_lost(&self, records: u64) {
        self.journal_lost.inc_by(records);
    }

    pub fn exported(&self, spans: u64) {
        self.export_batches.inc();
        self.export_spans.inc_by(spans);
    }

    pub fn export_retried(&self) {
        self.export_retries.inc();
    }

    pub fn export_rejected(&self, spans: u64) {
        self.export_rejected.inc_by(spans);
    }

    pub fn export_lag(&self, entries: u64, seconds: f64) {
        self.export_lag_entries.set(entries as i64);
        self.export_lag_seconds.set(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
