//! Rental booking without double booking (issue 4): holds, confirmation, cancellation, expiry,
//! availability, and the Redis fast path in front of them.
//!
//! PostgreSQL decides ([`record`]): the `bookings_no_overlap` exclusion constraint over `HELD`
//! and `CONFIRMED` rows makes an overlapping booking impossible whatever else fails, and every
//! state change is a conditional `UPDATE` (a confirmation only while the hold is live). Redis
//! ([`calendar`]) is only a fast path: a bitmask calendar that answers availability and turns a
//! herd for one asset-day away before it reaches PostgreSQL. With Redis down or wiped, every
//! answer comes from PostgreSQL, slower but the same.
//!
//! Files by concern: [`types`] (`sentra_protocol::booking`: days, stays, tiers, asset refs),
//! [`record`] (PostgreSQL), [`calendar`] (Redis bitmask and its Lua scripts), [`lock`] (Redlock
//! on asset-days, the token stored on the hold for fencing), [`sweeper`] (due
//! holds and the side effects of ended bookings), [`waitlist`] (per SKU and day, head promoted
//! exactly once), [`offline`] (bookings a branch took offline, decided at ingest; the branch's
//! calendar snapshot), [`payments`] (gateway trait, sandbox, HMAC-verified webhook), [`settlements`] (captures and releases owed to the gateway, worked by the sweeper), [`metrics`] (Prometheus counters),
//! [`http`] (the `/v1/bookings`, `/v1/availability` handlers, completion included).
//!
//! Invariants:
//! - a slot is given only by a committed PostgreSQL row; Redis can only refuse early or be
//!   bypassed, never grant;
//! - a completed booking's capture and release are rows in PostgreSQL (`payment_settlements`)
//!   written with the completion, worked by the sweeper until the gateway did both;
//! - an ended booking (expired, cancelled) has its side effects (calendar release) done by
//!   whoever claims it with `FOR UPDATE SKIP LOCKED` and marks `released_at` in the same
//!   transaction, so a crash between the two just means they run again (they are idempotent).

pub mod calendar;
pub mod herd;
pub mod http;
pub mod lock;
pub mod metrics;
pub mod offline;
pub mod payments;
pub mod record;
pub mod settlements;
pub mod sweeper;
pub mod waitlist;

/// The booking vocabulary (days, stays, tiers, states) is the protocol's: both sides parse the
/// same way.
pub use sentra_protocol::booking as types;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::config::BookingConfig;
use crate::redis_conn::RedisConn;

/// What the booking handlers and the sweeper share. One per replica; cheap to clone.
#[derive(Clone)]
pub struct Booking {
    pub db: PgPool,
    pub calendar: calendar::Calendar,
    pub locks: lock::Locks,
    pub settings: Arc<Settings>,
    pub metrics: Arc<metrics::Metrics>,
    pub assets: Arc<http::AssetLists>,
    /// This replica's holds in flight to PostgreSQL when it decides alone (herd.rs).
    pub herds: Arc<herd::Herds>,
    /// The payment gateway; the sandbox until a real one is configured.
    pub gateway: Arc<dyn payments::PaymentGateway>,
    /// Identity checks: the gate a hold passes (issue 8).
    pub identity: Arc<dyn crate::standing::Standing>,
}

/// The booking part of the configuration, as the engine uses it.
#[derive(Debug)]
pub struct Settings {
    pub hold_window: Duration,
    pub turnover_buffer_days: u32,
    pub sweep_interval: Duration,
    pub release_delay: Duration,
    pub webhook_secret: Option<crate::config::Secret>,
}

impl Booking {
    /// `lock_nodes` empty: locks are taken on `redis` alone (a node or the cluster).
    pub fn new(
        db: PgPool,
        redis: RedisConn,
        lock_nodes: Vec<RedisConn>,
        config: &BookingConfig,
        identity: Arc<dyn crate::standing::Standing>,
    ) -> Booking {
        let lock_nodes = if lock_nodes.is_empty() {
            vec![redis.clone()]
        } else {
            lock_nodes
        };
        Booking {
            db,
            calendar: calendar::Calendar::new(redis),
            locks: lock::Locks::new(lock_nodes),
            settings: Arc::new(Settings {
                hold_window: config.hold_window,
                turnover_buffer_days: config.turnover_buffer_days,
                sweep_interval: config.sweep_interval,
                release_delay: config.release_delay,
                webhook_secret: config.webhook_secret.clone(),
            }),
            metrics: Arc::new(metrics::Metrics::default()),
            assets: Arc::new(http::AssetLists::default()),
            herds: Arc::new(herd::Herds::default()),
            identity,
            gateway: Arc::new(payments::SandboxGateway::default()),
        }
    }

    /// Loads the calendar's and the locks' scripts (best effort: a node that does not answer
    /// is left to `EVAL` on first use); whether the calendar's Redis took them, and how many
    /// lock nodes did.
    pub async fn load_scripts(&self) -> (bool, usize) {
        let (calendar, locks) =
            futures_util::future::join(self.calendar.load_scripts(), self.locks.load_scripts())
                .await;
        if let Err(error) = &calendar {
            tracing::debug!(%error, "loading the calendar's scripts");
        }
        (calendar.is_ok(), locks)
    }
}
