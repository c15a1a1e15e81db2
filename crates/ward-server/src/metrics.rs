//! Prometheus metrics at `/metrics`. Labels never carry ids or content.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of HTTP request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Method.
    pub method: String,
    /// Status class (`2xx`, `4xx`, `5xx`).
    pub status: String,
}

/// Label of envelope counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Envelope kind.
    pub kind: String,
}

/// Label of login counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success` or `failure`.
    pub outcome: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by method and status class.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Envelopes accepted by kind.
    pub envelopes_accepted: Family<KindLabels, Counter>,
    /// Envelope bytes accepted.
    pub envelope_bytes: Counter,
    /// Logins by outcome.
    pub logins: Family<OutcomeLabels, Counter>,
    /// Open WebSocket connections.
    pub websockets: Gauge,
    /// Requests refused by the rate limiter.
    pub rate_limited: Counter,
    /// Cross-node fan-out counters (zero on a single node).
    pub cluster: crate::cluster::ClusterMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ward");
        let m = Metrics {
            http_requests: Family::default(),
            envelopes_accepted: Family::default(),
            envelope_bytes: Counter::default(),
            logins: Family::default(),
            websockets: Gauge::default(),
            rate_limited: Counter::default(),
            cluster: crate::cluster::ClusterMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests handled",
            m.http_requests.clone(),
        );
        registry.register(
            "envelopes_accepted",
            "MLS envelopes accepted",
            m.envelopes_accepted.clone(),
        );
        registry.register(
            "envelope_bytes",
            "MLS envelope payload bytes accepted",
            m.envelope_bytes.clone(),
        );
        registry.register("logins", "Login attempts", m.logins.clone());
        registry.register(
            "websocket_connections",
            "Open WebSocket connections",
            m.websockets.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the rate limiter",
            m.rate_limited.clone(),
        );
        m.cluster.register(&mut registry);
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}
