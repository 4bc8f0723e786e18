//! Booking's Prometheus metrics, per replica (Prometheus sums replicas): counters of holds,
//! confirmations, expiries and conflicts, and a histogram of how long a hold waited at the gate
//! in front of PostgreSQL (the calendar reservation). Rendered in the text exposition format by
//! `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the gate wait histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    pub held: AtomicU64,
    pub confirmed: AtomicU64,
    pub expired: AtomicU64,
    pub completed: AtomicU64,
    /// Gateway settlement steps done after completion, and failed attempts (retried).
    pub captures: AtomicU64,
    pub releases: AtomicU64,
    pub settlement_failures: AtomicU64,
    /// Refused as taken, labelled by who said so.
    pub conflicts_redis: AtomicU64,
    pub conflicts_postgresql: AtomicU64,
    wait_buckets: [AtomicU64; BUCKETS.len()],
    wait_count: AtomicU64,
    wait_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn observe_lock_wait(&self, wait: Duration) {
        let seconds = wait.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.wait_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.wait_count.fetch_add(1, Ordering::Relaxed);
        self.wait_sum_micros.fetch_add(
            u64::try_from(wait.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The text exposition of every booking metric.
    pub fn render(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter("bookings_held_total", "Holds taken.", get(&self.held));
        counter(
            "bookings_confirmed_total",
            "Holds confirmed by a payment in time.",
            get(&self.confirmed),
        );
        counter(
            "holds_expired_total",
            "Holds expired by this replica's sweeper or booking path.",
            get(&self.expired),
        );
        counter(
            "bookings_completed_total",
            "Rentals completed (the asset came back).",
            get(&self.completed),
        );
        counter(
            "payment_captures_total",
            "Charges captured from pre-authorisations after completion.",
            get(&self.captures),
        );
        counter(
            "payment_releases_total",
            "Pre-authorisations released after completion.",
            get(&self.releases),
        );
        counter(
            "payment_settlement_failures_total",
            "Capture or release attempts the gateway failed (retried with backoff).",
            get(&self.settlement_failures),
        );
        let _ = writeln!(
            out,
            "# HELP booking_conflicts_total Bookings refused because the days were taken.\n\
             # TYPE booking_conflicts_total counter\n\
             booking_conflicts_total{{decided_by=\"redis\"}} {}\n\
             booking_conflicts_total{{decided_by=\"postgresql\"}} {}",
            get(&self.conflicts_redis),
            get(&self.conflicts_postgresql)
        );
        let _ = writeln!(
            out,
            "# HELP booking_lock_wait_seconds Time a hold spent at the Redis gate before PostgreSQL.\n\
             # TYPE booking_lock_wait_seconds histogram"
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.wait_buckets) {
            let _ = writeln!(
                out,
                "booking_lock_wait_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.wait_count);
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum of microseconds, shown in seconds"
        )]
        let sum = get(&self.wait_sum_micros) as f64 / 1e6;
        let _ = writeln!(
            out,
            "booking_lock_wait_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             booking_lock_wait_seconds_sum {sum}\n\
             booking_lock_wait_seconds_count {count}"
        );
        out
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
        let text = metrics.render();
        for line in [
            "bookings_held_total 1",
            "bookings_confirmed_total 0",
            "holds_expired_total 0",
            "bookings_completed_total 0",
            "payment_captures_total 0",
            "payment_releases_total 0",
            "booking_conflicts_total{decided_by=\"redis\"} 0",
            "booking_lock_wait_seconds_bucket{le=\"0.0025\"} 0",
            "booking_lock_wait_seconds_bucket{le=\"0.005\"} 1",
            "booking_lock_wait_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
