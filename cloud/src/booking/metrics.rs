//! Booking's Prometheus metrics, per replica (Prometheus sums replicas): counters of holds,
//! confirmations, expiries and conflicts, and a histogram of how long a hold waited at the gate
//! in front of PostgreSQL (the calendar reservation). prometheus-client types (an atomic add per
//! count); `GET /metrics` registers them into the cloud's registry ([`Metrics::register`]).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the gate wait histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecidedBy {
    decided_by: &'static str,
}

pub struct Metrics {
    pub held: Counter,
    pub confirmed: Counter,
    pub expired: Counter,
    pub completed: Counter,
    /// Gateway settlement steps done after completion, and failed attempts (retried).
    pub captures: Counter,
    pub releases: Counter,
    pub settlement_failures: Counter,
    /// Refused as taken, labelled by who said so: the two series of `conflicts`, resolved once.
    pub conflicts_redis: Counter,
    pub conflicts_postgresql: Counter,
    /// Refused as taken because this replica's request for the same days, in flight at the same
    /// moment, was just decided by PostgreSQL (herd.rs; Redis down).
    pub conflicts_herd: Counter,
    conflicts: Family<DecidedBy, Counter>,
    lock_wait: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let conflicts = Family::<DecidedBy, Counter>::default();
        let decided_by = |decided_by| conflicts.get_or_create_owned(&DecidedBy { decided_by });
        Metrics {
            held: Counter::default(),
            confirmed: Counter::default(),
            expired: Counter::default(),
            completed: Counter::default(),
            captures: Counter::default(),
            releases: Counter::default(),
            settlement_failures: Counter::default(),
            conflicts_redis: decided_by("redis"),
            conflicts_postgresql: decided_by("postgresql"),
            conflicts_herd: decided_by("herd"),
            conflicts,
            lock_wait: Histogram::new(BUCKETS),
        }
    }
}

impl Metrics {
    pub fn inc(counter: &Counter) {
        counter.inc();
    }

    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    pub fn observe_lock_wait(&self, wait: Duration) {
        self.lock_wait.observe(wait.as_secs_f64());
    }

    /// Adds every booking metric to `registry` (clones share the counts).
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            ("bookings_held", "Holds taken", &self.held),
            (
                "bookings_confirmed",
                "Holds confirmed by a payment in time",
                &self.confirmed,
            ),
            (
                "holds_expired",
                "Holds expired by this replica's sweeper or booking path",
                &self.expired,
            ),
            (
                "bookings_completed",
                "Rentals completed (the asset came back)",
                &self.completed,
            ),
            (
                "payment_captures",
                "Charges captured from pre-authorisations after completion",
                &self.captures,
            ),
            (
                "payment_releases",
                "Pre-authorisations released after completion",
                &self.releases,
            ),
            (
                "payment_settlement_failures",
                "Capture or release attempts the gateway failed (retried with backoff)",
                &self.settlement_failures,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "booking_conflicts",
            "Bookings refused because the days were taken, by who decided (redis, postgresql)",
            self.conflicts.clone(),
        );
        registry.register(
            "booking_lock_wait_seconds",
            "Time a hold spent at the Redis gate before PostgreSQL",
            self.lock_wait.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_metric() {
        let metrics = Metrics::default();
        Metrics::inc(&metrics.held);
        metrics.observe_lock_wait(Duration::from_millis(3));
        let mut registry = Registry::with_prefix("sentra_cloud");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for line in [
            "sentra_cloud_bookings_held_total 1",
            "sentra_cloud_bookings_confirmed_total 0",
            "sentra_cloud_holds_expired_total 0",
            "sentra_cloud_bookings_completed_total 0",
            "sentra_cloud_payment_captures_total 0",
            "sentra_cloud_payment_releases_total 0",
            "sentra_cloud_booking_conflicts_total{decided_by=\"redis\"} 0",
            "sentra_cloud_booking_conflicts_total{decided_by=\"herd\"} 0",
            "sentra_cloud_booking_lock_wait_seconds_bucket{le=\"0.0025\"} 0",
            "sentra_cloud_booking_lock_wait_seconds_bucket{le=\"0.005\"} 1",
            "sentra_cloud_booking_lock_wait_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
