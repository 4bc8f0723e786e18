//! The cloud's Prometheus metrics: ONE prometheus-client registry, every name under
//! `sentra_cloud_`, served by `GET /metrics` (`app.rs`). Names follow Prometheus conventions
//! (`_total`, `_seconds`); labels have few values (routes are axum's matched route templates,
//! never raw paths; methods outside the standard few are "other").
//!
//! This file owns the process's own metrics: HTTP requests (counted and timed by [`track`], one
//! middleware layer on the router), ingest batches and events, and the build. The domains own
//! theirs (`booking::metrics`, `notify::Metrics`, `fleet::metrics`) and register them into the
//! registry [`registry`] starts at each scrape: the metrics themselves live for the process (they
//! are atomics and mutex-guarded histograms behind `Arc`s; a scrape registers clones sharing
//! them), while the fleet's gauges are a reading of PostgreSQL taken in the background (at most
//! `fleet.gauges_refresh_secs` old) and so never show a label value that no longer exists.
//!
//! Ground floor: imports nothing from the crate.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Every metric name starts with `sentra_cloud_`.
pub const PREFIX: &str = "sentra_cloud";

/// What prometheus-client's text encoder writes: OpenMetrics text (`_total` counters, `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of a request no route matched (unknown paths, probes, scanners).
pub const UNMATCHED: &str = "unmatched";

/// A request's route: the template axum matched (`/v1/bookings/{id}`), shared with the router
/// (cloning it is a reference count, not an allocation), or none.
#[derive(Clone, Debug)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or(UNMATCHED, MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimingLabels {
    route: Route,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type Timings = Family<TimingLabels, Histogram, fn() -> Histogram>;

/// The metrics that belong to the process rather than to one domain.
struct Process {
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Timings,
    ingest_batches: Counter,
    ingest_events: Family<OutcomeLabels, Counter>,
    /// `ingest_events` by outcome, resolved once so counting is one atomic add.
    events_applied: Counter,
    events_duplicate: Counter,
    events_parked: Counter,
    build_info: Family<BuildLabels, Gauge>,
    ingest_lag: Histogram,
    api_token_lookups: Counter,
}

fn latency_histogram() -> Histogram {
    // 1 ms … 10 s: a hold or an availability read takes a few ms; a push of a full batch tens
    // of ms; past seconds something waits (a lock, a pool, the gateway).
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn lag_histogram() -> Histogram {
    // 1 s … 1 day: a box online pushes within seconds of a change; minutes mean a slow link or a
    // busy cloud; hours, a branch that was offline (or a cloud that fell behind).
    Histogram::new([
        1.0,
        5.0,
        15.0,
        60.0,
        300.0,
        900.0,
        3600.0,
        4.0 * 3600.0,
        86_400.0,
    ])
}

static PROCESS: LazyLock<Process> = LazyLock::new(|| {
    let ingest_events = Family::<OutcomeLabels, Counter>::default();
    let outcome = |outcome| ingest_events.get_or_create_owned(&OutcomeLabels { outcome });
    let (events_applied, events_duplicate, events_parked) =
        (outcome("applied"), outcome("duplicate"), outcome("parked"));
    let build_info = Family::<BuildLabels, Gauge>::default();
    build_info
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
    Process {
        http_requests: Family::default(),
        http_duration: Timings::new_with_constructor(latency_histogram),
        ingest_batches: Counter::default(),
        ingest_events,
        events_applied,
        events_duplicate,
        events_parked,
        build_info,
        ingest_lag: lag_histogram(),
        api_token_lookups: Counter::default(),
    }
});

/// A fresh registry holding the process's metrics; the domains add theirs, then [`encode`].
pub fn registry() -> Registry {
    let process = &*PROCESS;
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register(
        "build_info",
        "The running build: always 1, its version as a label",
        process.build_info.clone(),
    );
    registry.register(
        "http_requests",
        "HTTP requests answered, by route template (\"unmatched\": no route), method and status",
        process.http_requests.clone(),
    );
    registry.register(
        "http_request_duration_seconds",
        "Time from a request's arrival to its response head, by route template and method",
        process.http_duration.clone(),
    );
    registry.register(
        "ingest_batches",
        "Push batches received from devices (refused and malformed ones included)",
        process.ingest_batches.clone(),
    );
    registry.register(
        "ingest_events",
        "Pushed events by outcome once their batch committed (applied; duplicate: already in the record; parked: refused with a reason)",
        process.ingest_events.clone(),
    );
    registry.register(
        "ingest_lag_seconds",
        "Per committed push batch, the age of its oldest new event (the box's HLC wall time to the commit): how far the cloud's record trails the branches",
        process.ingest_lag.clone(),
    );
    registry.register(
        "api_token_lookups",
        "API tokens looked up in PostgreSQL (not found in the replica's cache, which keeps a valid one for 5 s; concurrent requests with one token share a lookup)",
        process.api_token_lookups.clone(),
    );
    registry
}

/// The registry in the text exposition format (OpenMetrics, see [`CONTENT_TYPE`]).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// An API token was looked up in PostgreSQL.
pub fn api_token_lookup() {
    PROCESS.api_token_lookups.inc();
}

/// A push batch arrived.
pub fn ingest_batch() {
    PROCESS.ingest_batches.inc();
}

/// A push batch committed with these outcomes.
pub fn ingest_events(applied: u64, duplicates: u64, parked: u64) {
    let process = &*PROCESS;
    process.events_applied.inc_by(applied);
    process.events_duplicate.inc_by(duplicates);
    process.events_parked.inc_by(parked);
}

/// A push batch committed new events, the oldest stamped `lag_ms` before the commit.
pub fn ingest_lag(lag_ms: u64) {
    PROCESS.ingest_lag.observe(lag_ms as f64 / 1000.0);
}

/// A standard method's name; anything else is "other", so a client cannot make label values.
fn method(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Middleware (`Router::layer`, so the matched route is known): counts and times every request.
/// No allocation once a route/method/status has been seen: the labels are a shared route
/// template, static strings and a number, and the series are found under a read lock.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = Route(request.extensions().get::<MatchedPath>().cloned());
    let method = method(request.method());
    let response = next.run(request).await;
    record(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn record(route: Route, method: &'static str, status: u16, seconds: f64) {
    let process = &*PROCESS;
    process
        .http_duration
        .get_or_create(&TimingLabels {
            route: route.clone(),
            method,
        })
        .observe(seconds);
    process
        .http_requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status,
        })
        .inc();
}

/// One request (unmatched, 404) in the HTTP metrics: a family without series is not encoded.
#[cfg(test)]
pub fn record_a_request() {
    record(Route(None), "GET", 404, 0.000_1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_encode_with_their_labels() {
        record_a_request();
        ingest_batch();
        ingest_events(3, 1, 0);
        let text = encode(&registry());
        for line in [
            "# HELP sentra_cloud_build_info ",
            &format!(
                "sentra_cloud_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "# TYPE sentra_cloud_http_requests counter",
            "# TYPE sentra_cloud_http_request_duration_seconds histogram",
            "sentra_cloud_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} ",
            "sentra_cloud_http_request_duration_seconds_bucket{le=\"0.001\",route=\"unmatched\",method=\"GET\"} ",
            "# TYPE sentra_cloud_ingest_batches counter",
            "sentra_cloud_ingest_events_total{outcome=\"parked\"} ",
            "# TYPE sentra_cloud_ingest_lag_seconds histogram",
            "sentra_cloud_ingest_lag_seconds_bucket{le=\"86400.0\"} ",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn methods_outside_the_standard_few_share_one_label() {
        assert_eq!(method(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"BREW").expect("a token");
        assert_eq!(method(&made_up), "other");
        assert_eq!(Route(None).as_str(), UNMATCHED);
    }
}
