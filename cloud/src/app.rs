//! The top floor of the HTTP service: the router every endpoint is mounted on, the application
//! state, and how each handler gets only the part of it it needs (axum's [`FromRef`]: a handler
//! asks for `State<PgPool>`, `State<Arc<Booking>>`, `State<FleetState>`… and never sees
//! [`AppState`]), plus `GET /metrics`, which assembles the domains' metrics into one registry.
//!
//! Invariants:
//! - every `/v1` route but `/v1/enroll` and the payment webhook sits behind
//!   [`auth::authenticate`]; which caller a route accepts (device, operator token) is decided in
//!   its handler through [`auth::Caller`];
//! - nothing below this file imports it: domains know their own state types and the ground floor.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use sentra_protocol::sync::MAX_PUSH_BYTES;
use sqlx::PgPool;

use crate::devices::{self, auth};
use crate::redis_conn::RedisConn;
use crate::web::{self, ApiError};
use crate::{
    blobs, booking, changes, fleet, health, ingest, master, releases, reports, shared, successor,
};

/// What handlers share, behind one `Arc`: axum clones the state for every request (and again
/// for the authentication middleware), and one reference count is all that clone should cost.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The handles [`AppState`] shares: pools, settings, caches.
pub struct Services {
    pub db: PgPool,
    pub redis: RedisConn,
    pub booking: Arc<booking::Booking>,
    /// KTP checks; booking holds the same service as its `Standing` gate.
    pub identity: Arc<crate::identity::Identity>,
    pub fleet: crate::config::FleetConfig,
    /// The fleet gauges `/metrics` serves, read in the background (`fleet::metrics::refresh`).
    pub fleet_gauges: Arc<fleet::metrics::Cache>,
    /// API tokens this replica recently found valid.
    pub tokens: Arc<devices::auth::TokenCache>,
    /// Customer notifications: what ingest needs to schedule service reminders.
    pub notify: Arc<crate::notify::Settings>,
    /// The photo store; None when it could not be opened at start (its routes answer 503).
    pub blobs: Option<crate::blobs::Blobs>,
    /// Handed to every box at enrolment (`releases.public_key`).
    pub release_public_key: Option<Arc<str>>,
}

// The parts handlers take (`State<T>` for each `T` below): each domain names what it needs and
// never sees the whole state, so no domain imports this file.

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> PgPool {
        state.db.clone()
    }
}

impl FromRef<AppState> for RedisConn {
    fn from_ref(state: &AppState) -> RedisConn {
        state.redis.clone()
    }
}

impl FromRef<AppState> for Arc<booking::Booking> {
    fn from_ref(state: &AppState) -> Arc<booking::Booking> {
        state.booking.clone()
    }
}

impl FromRef<AppState> for Arc<crate::notify::Settings> {
    fn from_ref(state: &AppState) -> Arc<crate::notify::Settings> {
        state.notify.clone()
    }
}

impl FromRef<AppState> for auth::AuthState {
    fn from_ref(state: &AppState) -> auth::AuthState {
        auth::AuthState {
            db: state.db.clone(),
            tokens: state.tokens.clone(),
        }
    }
}

impl FromRef<AppState> for devices::EnrollState {
    fn from_ref(state: &AppState) -> devices::EnrollState {
        devices::EnrollState {
            db: state.db.clone(),
            release_public_key: state.release_public_key.clone(),
        }
    }
}

impl FromRef<AppState> for fleet::FleetState {
    fn from_ref(state: &AppState) -> fleet::FleetState {
        fleet::FleetState {
            db: state.db.clone(),
            fleet: state.fleet.clone(),
        }
    }
}

impl FromRef<AppState> for blobs::BlobsState {
    fn from_ref(state: &AppState) -> blobs::BlobsState {
        blobs::BlobsState {
            db: state.db.clone(),
            blobs: state.blobs.clone(),
        }
    }
}

impl FromRef<AppState> for crate::identity::IdentityState {
    fn from_ref(state: &AppState) -> crate::identity::IdentityState {
        crate::identity::IdentityState {
            db: state.db.clone(),
            identity: state.identity.clone(),
        }
    }
}

/// Enrolments a minute from one peer address. A token is 256 random bits, so the throttle is not
/// what stops guessing; it keeps one address from making the replica hash and look up tokens
/// without end. Behind a load balancer every client shares the balancer's address, so this is
/// also the replica's rate for the door: a burst of 300 lets a provisioning day (or the fleet
/// test's 120 boxes at once) through.
const ENROLL_PER_MINUTE: u32 = 300;

/// Fleet sign-ins (login page, login links) a minute from one peer address.
const FLEET_LOGIN_PER_MINUTE: u32 = 30;

pub fn router(state: AppState) -> Router {
    // A per-peer-address throttle in front of a route: past the allowance `429 rate_limited`
    // with `Retry-After`, and the handler is not called.
    let throttled = |per_minute| {
        middleware::from_fn_with_state(
            sentra_serve::Throttle::per_minute(per_minute),
            sentra_serve::throttle,
        )
    };
    let authenticated = Router::new()
        .route("/v1/sync/push", post(ingest::push))
        .route("/v1/sync/pull", get(changes::pull))
        .route("/v1/sync/calendar", get(booking::offline::calendar))
        .route("/v1/sync/successor", get(successor::snapshot))
        .route("/v1/devices/{id}/revoke", post(devices::revoke))
        .route("/v1/branches/{branch}/parts/{sku}", put(master::put_part))
        .route(
            "/v1/branches/{branch}/mechanics/{id}",
            put(master::put_mechanic),
        )
        .route("/v1/branches/{branch}/assets/{id}", put(master::put_asset))
        .route(
            "/v1/branches/{branch}/tariffs/{sku}",
            put(master::put_tariff),
        )
        .route("/v1/branches/{branch}/reports/sales", get(reports::sales))
        .route(
            "/v1/branches/{branch}/reports/payments",
            get(reports::payments),
        )
        .route(
            "/v1/branches/{branch}/reports/z-reports",
            get(reports::z_reports),
        )
        .route("/v1/branches/{branch}/reports/stock", get(reports::stock))
        .route(
            "/v1/branches/{branch}/reports/open-work-orders",
            get(reports::open_work_orders),
        )
        .route("/v1/branches/{branch}/staff/{id}", put(master::put_staff))
        .route(
            "/v1/branches/{branch}/customers/{id}",
            get(shared::get_customer).patch(shared::patch_customer),
        )
        .route(
            "/v1/branches/{branch}/vehicles/{id}",
            get(shared::get_vehicle).patch(shared::patch_vehicle),
        )
        .route(
            "/v1/branches/{branch}/documents/{record}/{id}",
            get(shared::get_document).put(shared::put_document),
        )
        .route("/v1/availability", get(booking::http::availability))
        .route("/v1/bookings", post(booking::http::hold))
        .route("/v1/bookings/{id}", get(booking::http::get))
        .route("/v1/bookings/{id}/confirm", post(booking::http::confirm))
        .route("/v1/bookings/{id}/cancel", post(booking::http::cancel))
        .route("/v1/bookings/{id}/complete", post(booking::http::complete))
        .route("/v1/waitlist", post(booking::waitlist::join))
        .route(
            "/v1/customers/{id}",
            put(crate::identity::owner::put_customer).get(crate::identity::owner::get_customer),
        )
        .route(
            "/v1/customers/{id}/identity",
            post(crate::identity::post_check).get(crate::identity::get_check),
        )
        .route("/v1/waitlist/{id}", get(booking::waitlist::get))
        .route("/v1/backups", post(blobs::backups::record))
        .route("/v1/blobs/{sha256}", get(blobs::get))
        .route("/v1/blobs/{sha256}/uploads", post(blobs::start))
        .route(
            "/v1/blobs/{sha256}/uploads/{id}/parts/{n}",
            put(blobs::put_part),
        )
        .route(
            "/v1/blobs/{sha256}/uploads/{id}/complete",
            post(blobs::complete),
        )
        .route("/v1/devices/heartbeat", post(fleet::http::heartbeat))
        .route("/v1/devices/{id}/channel", put(fleet::http::put_channel))
        .route("/v1/fleet", get(fleet::http::get_fleet))
        .route("/v1/fleet/devices/{id}", get(fleet::http::get_device))
        .route("/v1/fleet/rollouts/{id}", get(fleet::http::get_rollout))
        .route(
            "/v1/fleet/rollouts/{id}/{action}",
            post(fleet::http::post_rollout_action),
        )
        .route(
            "/v1/fleet/login-links",
            post(fleet::page::make_login_link).route_layer(throttled(FLEET_LOGIN_PER_MINUTE)),
        )
        .route(
            "/v1/releases/{version}/manifest",
            get(releases::get_manifest),
        )
        .route(
            "/v1/releases/{version}/artifact",
            get(releases::get_artifact),
        )
        .route("/v1/openapi.json", get(crate::openapi::serve))
        // Prometheus scrapes with an operator token (`authorization` in the scrape config): the
        // counters and the fleet's gauges say how the business runs and are nobody else's.
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            auth::AuthState::from_ref(&state),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        // The fleet page authenticates by operator token or its own session cookie.
        .route("/fleet", get(fleet::page::overview))
        .route("/fleet/live", get(fleet::page::live))
        .route("/fleet/devices/{id}", get(fleet::page::device))
        .route("/fleet/rollouts/{id}", get(fleet::page::rollout))
        .route(
            "/fleet/rollouts/{id}/{action}",
            post(fleet::page::rollout_action),
        )
        .route(
            "/fleet/login",
            get(fleet::page::login_link)
                .post(fleet::page::login)
                .route_layer(throttled(FLEET_LOGIN_PER_MINUTE)),
        )
        .route("/fleet/logout", post(fleet::page::logout))
        .route(
            "/fleet/phone-link",
            post(fleet::page::phone_link).route_layer(throttled(FLEET_LOGIN_PER_MINUTE)),
        )
        .route(
            "/v1/enroll",
            post(devices::enroll).route_layer(throttled(ENROLL_PER_MINUTE)),
        )
        // Verified by its HMAC, not by the device or token middleware.
        .route("/v1/payments/webhook", post(booking::payments::webhook))
        .merge(authenticated)
        .fallback(web::not_found)
        .method_not_allowed_fallback(web::method_not_allowed)
        .layer(middleware::map_response(web::stamp_server_time))
        .layer(DefaultBodyLimit::max(MAX_PUSH_BYTES))
        // Outermost of the per-route layers, so the count and the time include the rest; a
        // `Router::layer`, so the matched route template is known (the fallbacks have none).
        .layer(middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

/// `GET /metrics` (operator token): the cloud's one registry (`sentra_cloud_*`): this process's
/// requests, ingest and build, this replica's booking and notification counters, and the fleet's
/// gauges (read from PostgreSQL in the background; without a recent reading,
/// `sentra_cloud_fleet_scrape_ok 0` says so and the rest is still served).
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: auth::Caller,
) -> Result<Response, ApiError> {
    caller.operator()?;
    let registry = registry(&state.booking.metrics, state.fleet_gauges.current());
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        crate::metrics::encode(&registry),
    )
        .into_response())
}

/// Every metric the cloud shows, in one registry.
fn registry(
    booking: &booking::metrics::Metrics,
    fleet: Option<(fleet::metrics::Gauges, std::time::Duration)>,
) -> prometheus_client::registry::Registry {
    let mut registry = crate::metrics::registry();
    booking.register(&mut registry);
    crate::notify::METRICS.register(&mut registry);
    fleet::metrics::register(&mut registry, fleet);
    registry
}

#[cfg(test)]
mod tests {
    /// Every family the cloud shows, with its HELP, under the one prefix; the text parses.
    #[test]
    fn metrics_registry_encodes_every_family_with_its_help() {
        // Families without series are left out of the text: give each one.
        crate::metrics::record_a_request();
        let booking = crate::booking::metrics::Metrics::default();
        let text = crate::metrics::encode(&super::registry(
            &booking,
            Some((
                crate::fleet::metrics::Gauges::one_of_each(),
                std::time::Duration::from_secs(3),
            )),
        ));
        for family in [
            "build_info",
            "http_requests",
            "http_request_duration_seconds",
            "ingest_batches",
            "ingest_events",
            "ingest_lag_seconds",
            "api_token_lookups",
            "bookings_held",
            "bookings_confirmed",
            "holds_expired",
            "bookings_completed",
            "payment_captures",
            "payment_releases",
            "payment_settlement_failures",
            "booking_conflicts",
            "booking_lock_wait_seconds",
            "notifications_published",
            "notifications_sent",
            "notifications_failed",
            "notifications_dead",
            "fleet_scrape_ok",
            "fleet_gauges_age_seconds",
            "fleet_devices",
            "fleet_devices_by_update_state",
            "fleet_devices_needing_attention",
            "fleet_sync_backlog_events",
            "fleet_sync_backlog_bytes",
            "fleet_sync_backlog_oldest_seconds",
            "fleet_rollouts",
            "fleet_rollout_devices",
        ] {
            let help = format!("# HELP sentra_cloud_{family} ");
            assert!(
                text.lines().any(|line| line.starts_with(&help)),
                "{help:?} missing from:\n{text}"
            );
        }
        let families = text
            .lines()
            .filter(|line| line.starts_with("# HELP "))
            .count();
        assert_eq!(families, 30, "a family without a test line:\n{text}");
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            assert!(line.starts_with("sentra_cloud_"), "{line}");
        }
        prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .expect("valid Prometheus text");
        assert!(text.contains("sentra_cloud_fleet_scrape_ok 1\n"), "{text}");
    }

    #[test]
    fn metrics_without_a_recent_fleet_reading_say_the_fleet_scrape_failed() {
        let booking = crate::booking::metrics::Metrics::default();
        let text = crate::metrics::encode(&super::registry(&booking, None));
        assert!(text.contains("sentra_cloud_fleet_scrape_ok 0\n"), "{text}");
        assert!(
            text.contains("# HELP sentra_cloud_bookings_held "),
            "{text}"
        );
        assert!(!text.contains("sentra_cloud_fleet_devices"), "{text}");
    }
}
