//! Waits between attempts at something that keeps failing: the cloud link, a scanner's port, a
//! printer. Each wait doubles from a first wait to a ceiling and is a random point in the upper
//! half of its step, so a fleet coming back online (or a shop's devices after a power cut) does
//! not knock in step. The loops that use it also watch shutdown and other signals in a
//! `select!`, so this is a plain "how long next" and not a retry wrapper around a future.

use std::time::Duration;

use rand::RngExt as _;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `first` (at most `max`) and doubles up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        Self {
            first,
            next: first,
            max,
        }
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// How long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = u64::try_from(self.next.as_millis()).unwrap_or(u64::MAX);
        self.next = self.next.saturating_mul(2).min(self.max);
        Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_millis(4_000));
        let waits: Vec<u64> = (0..10).map(|_| b.next_wait().as_millis() as u64).collect();
        assert!(waits.iter().all(|w| *w <= 4_000), "{waits:?}");
        assert!(
            waits[6..].iter().all(|w| *w >= 2_000),
            "settles in the upper half of the cap: {waits:?}"
        );
        b.reset();
        assert!(b.next_wait().as_millis() <= 250);
    }
}
