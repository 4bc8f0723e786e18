//! Prometheus metrics of the appliance, served at `/metrics`. Names follow Prometheus
//! conventions (`_total`, `_seconds`, `_bytes`); labels have few values (routes are the matched
//! path patterns, never raw URLs). One registry for the process.

use std::sync::OnceLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Counter>,
    http_duration: Family<Labels, Histogram, fn() -> Histogram>,
    store_commits: Family<Labels, Counter>,
    store_batch: Histogram,
    outbox_pending_events: Gauge,
    outbox_pending_bytes: Gauge,
    outbox_last_seq: Gauge,
    sync_link_up: Gauge,
    sync_events_pushed: Counter,
    sync_errors: Family<Labels, Counter>,
    scanner_connected: Gauge,
    scanner_scans: Family<Labels, Counter>,
    scanner_noise_bytes: Counter,
    blobs_bytes: Gauge,
    blobs_pending: Gauge,
    blobs_pending_bytes: Gauge,
    blobs_uploaded: Counter,
    blobs_upload_bytes: Counter,
    blobs_evicted: Counter,
    blobs_busy: Counter,
    blobs_expired: Counter,
    mqtt_dropped: Family<Labels, Counter>,
    mqtt_refused: Family<Labels, Counter>,
    mqtt_publish_waits: Counter,
    mqtt_stalled: Counter,
    mqtt_kept: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … 8 s: a local write is ~1 ms; past seconds something is wrong.
    Histogram::new([
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 8.0,
    ])
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut registry = Registry::with_prefix("sentra_edge");
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            http_requests.clone(),
        );
        let http_duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            http_duration.clone(),
        );
        let store_commits = Family::<Labels, Counter>::default();
        registry.register(
            "store_commits",
            "Store write transactions, by result",
            store_commits.clone(),
        );
        let store_batch = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]);
        registry.register(
            "store_batch_writes",
            "Writes committed together in one transaction (group commit)",
            store_batch.clone(),
        );
        let outbox_pending_events = Gauge::default();
        registry.register(
            "outbox_pending_events",
            "Outbox events not yet acknowledged by the cloud",
            outbox_pending_events.clone(),
        );
        let outbox_pending_bytes = Gauge::default();
        registry.register(
            "outbox_pending_bytes",
            "Payload bytes of outbox events not yet acknowledged",
            outbox_pending_bytes.clone(),
        );
        let outbox_last_seq = Gauge::default();
        registry.register(
            "outbox_last_seq",
            "Sequence number of the newest outbox event",
            outbox_last_seq.clone(),
        );
        let sync_link_up = Gauge::default();
        registry.register(
            "sync_link_up",
            "1 while the cloud link works, 0 while offline or refused",
            sync_link_up.clone(),
        );
        let sync_events_pushed = Counter::default();
        registry.register(
            "sync_events_pushed",
            "Outbox events the cloud acknowledged",
            sync_events_pushed.clone(),
        );
        let sync_errors = Family::<Labels, Counter>::default();
        registry.register(
            "sync_errors",
            "Failed sync attempts, by kind",
            sync_errors.clone(),
        );
        let scanner_connected = Gauge::default();
        registry.register(
            "scanner_connected",
            "1 while the barcode scanner's port is open, 0 while absent or failing",
            scanner_connected.clone(),
        );
        let scanner_scans = Family::<Labels, Counter>::default();
        registry.register(
            "scanner_scans",
            "Barcode scans applied, by result (ok: dispensed or looked up; rejected)",
            scanner_scans.clone(),
        );
        let scanner_noise_bytes = Counter::default();
        registry.register(
            "scanner_noise_bytes",
            "Bytes from the scanner dropped as noise (wrong baud rate, cut-off or over-long lines)",
            scanner_noise_bytes.clone(),
        );
        let blobs_bytes = Gauge::default();
        registry.register(
            "blobs_stored_bytes",
            "Bytes of inspection photos kept on the box (uploaded or not)",
            blobs_bytes.clone(),
        );
        let blobs_pending = Gauge::default();
        registry.register(
            "blobs_pending",
            "Inspection photos the cloud does not have yet",
            blobs_pending.clone(),
        );
        let blobs_pending_bytes = Gauge::default();
        registry.register(
            "blobs_pending_bytes",
            "Bytes of inspection photos the cloud does not have yet",
            blobs_pending_bytes.clone(),
        );
        let blobs_uploaded = Counter::default();
        registry.register(
            "blobs_uploaded",
            "Inspection photos the cloud verified and kept",
            blobs_uploaded.clone(),
        );
        let blobs_upload_bytes = Counter::default();
        registry.register(
            "blobs_upload_bytes",
            "Bytes of photo parts sent to the cloud",
            blobs_upload_bytes.clone(),
        );
        let blobs_evicted = Counter::default();
        registry.register(
            "blobs_evicted",
            "Uploaded photos deleted from the box to stay within blobs.max_bytes",
            blobs_evicted.clone(),
        );
        let blobs_busy = Counter::default();
        registry.register(
            "blobs_uploads_busy",
            "Photo uploads answered 503 uploads_busy: blobs.max_concurrent_uploads were arriving already",
            blobs_busy.clone(),
        );
        let blobs_expired = Counter::default();
        registry.register(
            "blobs_expired",
            "Photos deleted because no inspection referenced them within blobs.unreferenced_photo_hours",
            blobs_expired.clone(),
        );
        let mqtt_dropped = Family::<Labels, Counter>::default();
        registry.register(
            "mqtt_messages_dropped",
            "MQTT messages the broker dropped, by reason (queue_full: a client's queue held mqtt.max_queued_messages; expired; refused: a publish the ACL refused; other)",
            mqtt_dropped.clone(),
        );
        let mqtt_refused = Family::<Labels, Counter>::default();
        registry.register(
            "mqtt_connections_refused",
            "MQTT CONNECTs refused by the box's own rules, by reason (will_not_authorized, too_many_sessions, no_mqtt_credential)",
            mqtt_refused.clone(),
        );
        let mqtt_publish_waits = Counter::default();
        registry.register(
            "mqtt_publish_waits",
            "QoS 1/2 publishes the broker held back until an online subscriber's queue had room (the publisher was slowed down instead of a message dropped)",
            mqtt_publish_waits.clone(),
        );
        let mqtt_stalled = Counter::default();
        registry.register(
            "mqtt_stalled_subscribers",
            "MQTT subscribers disconnected because they accepted no message for mqtt.stalled_subscriber_secs while a publisher waited for room in their queue",
            mqtt_stalled.clone(),
        );
        let mqtt_kept = Gauge::default();
        registry.register(
            "mqtt_kept_messages",
            "QoS 1/2 messages kept in the store for persistent MQTT sessions until they acknowledge them (what a restart or a power cut would otherwise lose)",
            mqtt_kept.clone(),
        );
        Metrics {
            mqtt_kept,
            mqtt_dropped,
            mqtt_refused,
            mqtt_publish_waits,
            mqtt_stalled,
            blobs_bytes,
            blobs_pending,
            blobs_pending_bytes,
            blobs_uploaded,
            blobs_upload_bytes,
            blobs_evicted,
            blobs_busy,
            blobs_expired,
            scanner_connected,
            scanner_scans,
            scanner_noise_bytes,
            sync_link_up,
            sync_events_pushed,
            sync_errors,
            registry,
            http_requests,
            http_duration,
            store_commits,
            store_batch,
            outbox_pending_events,
            outbox_pending_bytes,
            outbox_last_seq,
        }
    })
}

pub fn http_request(route: &str, method: &str, status: u16, seconds: f64) {
    let m = metrics();
    m.http_requests
        .get_or_create(&vec![
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ])
        .inc();
    m.http_duration
        .get_or_create(&vec![("route", route.to_owned())])
        .observe(seconds);
}

pub fn store_batch(writes: usize) {
    metrics().store_batch.observe(writes as f64);
}

pub fn store_commit(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics()
        .store_commits
        .get_or_create(&vec![("result", result.to_owned())])
        .inc();
}

pub fn outbox(pending_events: u64, pending_bytes: u64, last_seq: u64) {
    let m = metrics();
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    m.outbox_pending_events.set(clamp(pending_events));
    m.outbox_pending_bytes.set(clamp(pending_bytes));
    m.outbox_last_seq.set(clamp(last_seq));
}

pub fn blobs(stats: &crate::store::blobs::BlobStats) {
    let m = metrics();
    m.blobs_bytes
        .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
    m.blobs_pending
        .set(i64::try_from(stats.pending_count).unwrap_or(i64::MAX));
    m.blobs_pending_bytes
        .set(i64::try_from(stats.pending_bytes).unwrap_or(i64::MAX));
}

pub fn blob_uploaded() {
    metrics().blobs_uploaded.inc();
}

pub fn blob_part_sent(bytes: u64) {
    metrics().blobs_upload_bytes.inc_by(bytes);
}

pub fn blobs_evicted(count: u64) {
    metrics().blobs_evicted.inc_by(count);
}

pub fn blob_upload_busy() {
    metrics().blobs_busy.inc();
}

pub fn blobs_expired(count: u64) {
    metrics().blobs_expired.inc_by(count);
}

pub fn sync_link(up: bool) {
    metrics().sync_link_up.set(i64::from(up));
}

pub fn sync_pushed(events: u64) {
    metrics().sync_events_pushed.inc_by(events);
}

pub fn sync_error(kind: &'static str) {
    metrics()
        .sync_errors
        .get_or_create(&vec![("kind", kind.to_owned())])
        .inc();
}

pub fn scanner_connected(up: bool) {
    metrics().scanner_connected.set(i64::from(up));
}

pub fn scanner_scan(result: &'static str) {
    metrics()
        .scanner_scans
        .get_or_create(&vec![("result", result.to_owned())])
        .inc();
}

pub fn scanner_noise(bytes: u64) {
    metrics().scanner_noise_bytes.inc_by(bytes);
}

/// The broker dropped a message (`reason` is one of a few fixed words).
pub fn mqtt_dropped(reason: &'static str) {
    metrics()
        .mqtt_dropped
        .get_or_create(&vec![("reason", reason.to_owned())])
        .inc();
}

/// The broker refused a CONNECT by one of our rules (`reason` is one of a few fixed words).
pub fn mqtt_refused(reason: &'static str) {
    metrics()
        .mqtt_refused
        .get_or_create(&vec![("reason", reason.to_owned())])
        .inc();
}

/// A QoS 1/2 publish waited for room in a subscriber's queue.
pub fn mqtt_publish_waited() {
    metrics().mqtt_publish_waits.inc();
}

/// A subscriber that took no message while a publisher waited for it was disconnected.
pub fn mqtt_stalled() {
    metrics().mqtt_stalled.inc();
}

/// Messages kept in the store for persistent MQTT sessions now.
pub fn mqtt_kept(n: u64) {
    metrics()
        .mqtt_kept
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// The text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    encode(&mut out, &metrics().registry).expect("writing to a String cannot fail");
    out
}
