//! Provider calls throttled per caller: a token bucket per device or API token (by
//! [`Caller::name`](crate::devices::auth::Caller::name)), in this replica's memory.
//!
//! Each caller may make `capacity` checks at once, refilled evenly over `window`; past that a
//! check is answered 429 `rate_limited` with `Retry-After`, before the provider is called. Callers
//! are authenticated (only enrolled devices and issued tokens reach here), so the map is bounded
//! by them; it is also capped at [`MAX_CALLERS`], dropping full buckets (callers at rest) first.
//! Per replica: behind N replicas a caller gets at most N times the limit, which still bounds
//! what a stolen device or token can spend.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde_json::json;

/// Most callers remembered at once.
pub const MAX_CALLERS: usize = 10_000;

/// Token buckets per caller.
#[derive(Debug)]
pub struct CallerLimiter {
    capacity: f64,
    window: Duration,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl CallerLimiter {
    /// `capacity` calls per `window` per caller (at least one of each).
    pub fn new(capacity: u32, window: Duration) -> Self {
        CallerLimiter {
            capacity: f64::from(capacity.max(1)),
            window: window.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn per_sec(&self) -> f64 {
        self.capacity / self.window.as_secs_f64()
    }

    fn refilled(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        (tokens + elapsed * self.per_sec()).min(self.capacity)
    }

    /// Takes one call for `caller`; `Err(seconds to wait)` when none is left.
    pub fn take(&self, caller: &str) -> Result<(), u64> {
        self.take_at(caller, Instant::now())
    }

    fn take_at(&self, caller: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CALLERS && !buckets.contains_key(caller) {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.capacity);
            if buckets.len() >= MAX_CALLERS {
                buckets.clear();
            }
        }
        let tokens = buckets
            .get(caller)
            .map_or(self.capacity, |bucket| self.refilled(*bucket, now));
        if tokens >= 1.0 {
            buckets.insert(caller.to_owned(), (tokens - 1.0, now));
            Ok(())
        } else {
            buckets.insert(caller.to_owned(), (tokens, now));
            let wait = (1.0 - tokens) / self.per_sec();
            // At least one second, at most the window; a float that is not finite waits the window.
            let wait = if wait.is_finite() {
                wait.ceil()
                    .clamp(1.0, self.window.as_secs_f64().ceil().max(1.0))
            } else {
                self.window.as_secs_f64().ceil().max(1.0)
            };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(wait as u64)
        }
    }

    /// The limit, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} identity checks per {} s per device or token",
            self.capacity,
            self.window.as_secs()
        )
    }
}

/// The 429 answer: the error envelope and `Retry-After` (seconds).
pub fn too_many(retry_after: u64, limit: String) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": {
            "code": "rate_limited",
            "message": format!(
                "too many identity checks from this caller ({limit}); nothing was sent to the provider, retry after {retry_after} s"
            ),
        }})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_capacity_then_waits_for_a_refill() {
        let limiter = CallerLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(limiter.take_at("device:a", t0), Ok(()));
        assert_eq!(limiter.take_at("device:a", t0), Ok(()));
        assert_eq!(limiter.take_at("device:a", t0), Err(30));
        // Another caller is not affected.
        assert_eq!(limiter.take_at("token:b", t0), Ok(()));
        // Half a window refills one call.
        assert_eq!(
            limiter.take_at("device:a", t0 + Duration::from_secs(30)),
            Ok(())
        );
        assert!(
            limiter
                .take_at("device:a", t0 + Duration::from_secs(30))
                .is_err()
        );
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = CallerLimiter::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for n in 0..(MAX_CALLERS + 10) {
            let _ = limiter.take_at(&format!("token:{n}"), t0);
        }
        let len = limiter
            .buckets
            .lock()
            .map(|buckets| buckets.len())
            .unwrap_or(usize::MAX);
        assert!(len <= MAX_CALLERS, "{len}");
    }
}
