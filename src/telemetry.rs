//! Logging and metrics setup: `tracing` with a `RUST_LOG` filter, pretty for people or
//! JSON for log collectors (`BRIDGE_LOG_FORMAT`); a Prometheus recorder for `metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber once, with the `RUST_LOG` filter `filter` (a malformed
/// one is reported and the default used); later calls (tests) are ignored.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("dolphin-bridge: RUST_LOG={filter:?} is not a log filter ({e}); using info");
        EnvFilter::new("info,sqlx=warn")
    });
    // Colours only for a terminal: a file or a log collector gets plain text it can search.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_target(false).with_ansi(colours).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Latency buckets (seconds) for request and delivery-attempt histograms.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process-wide Prometheus recorder, installed on first use. One per process: the
/// `metrics` facade has a single global recorder.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; ours then stays unused.
        let _ = metrics::set_global_recorder(recorder);
        metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Metric names, in one place so dashboards and code agree.
pub mod names {
    /// Gauge, always 1: the running `version` (to tell which build a process runs).
    pub const BUILD_INFO: &str = "bridge_build_info";
    /// Counter: HTTP requests by `route`, `method`, `status`.
    pub const HTTP_REQUESTS: &str = "bridge_http_requests_total";
    /// Histogram: HTTP request duration by `route`.
    pub const HTTP_DURATION: &str = "bridge_http_request_duration_seconds";
    /// Counter: events accepted (committed) by `kind`.
    pub const EVENTS_ACCEPTED: &str = "bridge_events_accepted_total";
    /// Counter: payload warnings on accepted 3Dolphins events by documented `field`.
    pub const PAYLOAD_WARNINGS: &str = "bridge_payload_warnings_total";
    /// Counter: delivery attempts by `target` and `outcome` (delivered, failed, dead).
    pub const DELIVERY_ATTEMPTS: &str = "bridge_delivery_attempts_total";
    /// Histogram: delivery attempt duration by `target`.
    pub const ATTEMPT_DURATION: &str = "bridge_delivery_attempt_duration_seconds";
    /// Counter: claims that ran out before their outcome was recorded, by `reason`
    /// (`waited_for_worker`, `expired_before_record`); 0 in a healthy bridge.
    pub const LEASES_LOST: &str = "bridge_delivery_leases_lost_total";
    /// Gauge: deliveries waiting (pending or failed) by `target`.
    pub const QUEUE_DEPTH: &str = "bridge_delivery_queue_depth";
    /// Gauge: age of the oldest waiting delivery by `target`.
    pub const OLDEST_PENDING: &str = "bridge_delivery_oldest_pending_age_seconds";
    /// Gauge: endpoints by `target` and breaker `state` (open, half_open), and paused ones.
    pub const BREAKERS: &str = "bridge_endpoint_breakers";
    pub const PAUSED: &str = "bridge_endpoints_paused";
    /// Counter: times the writing pools moved to another host of `DATABASE_URL`.
    pub const DATABASE_FAILOVERS: &str = "bridge_database_failovers_total";
    /// Gauge: 1 for the host of `DATABASE_URL` in use (`host` label), 0 for the others.
    pub const DATABASE_PRIMARY: &str = "bridge_database_primary";
    /// Gauge: how far the host of `BRIDGE_READ_DATABASE_URL` in use trails its primary, in
    /// seconds (0 when it has replayed everything it received, or is a primary).
    pub const READ_REPLICA_LAG: &str = "bridge_read_replica_lag_seconds";
}
