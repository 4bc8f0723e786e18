//! The booking API (docs/cloud.md): `GET /v1/availability`, `POST /v1/bookings`,
//! `GET /v1/bookings/{id}`, `POST /v1/bookings/{id}/confirm`, `POST /v1/bookings/{id}/cancel`,
//! `POST /v1/bookings/{id}/complete`, and booking's part of `GET /metrics`. Callers are enrolled devices (signed requests) or API
//! tokens (the customer portal, operators), authenticated by `devices::auth`.
//!
//! Who sees what: an operator every booking; a device the bookings of its own branch (it may only
//! book its own branch's assets); a portal token the bookings it made. Anything else is 404, so
//! ids of others' bookings are not confirmed to exist.
//!
//! The hold path: the calendar answers a taken slot from Redis alone, the Redlock on the
//! asset-days lets one request of a herd through (so a herd costs about one PostgreSQL
//! transaction), then PostgreSQL decides, and only then is the calendar marked (Lua, the whole
//! range at once). If Redis is down or the calendar is not built, PostgreSQL alone decides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::Date;

use super::calendar::AssetKey;
use super::herd::{Decided, HerdKey, Joined};
use super::lock::{self, Acquired};
use super::metrics::Metrics;
use super::record::{
    self, BookingRow, CancelOutcome, CompleteOutcome, ConfirmOutcome, HoldOutcome, HoldRequest,
};
use super::types::{
    self, CompleteBody, ConfirmBody, HoldBody, Stay, Tier, WaitlistOffer, format_day,
};
use super::{Booking, settlements, sweeper};
use crate::devices::auth::Caller;
use crate::devices::tokens::Role;
use crate::ttl::TtlMap;
use crate::web::{ApiError, JsonBody};

/// The header a client names its retry with (the contract).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest payment reference accepted.
pub const MAX_PAYMENT_REF_LEN: usize = 128;
/// The largest charge (damage, late return) accepted, in rupiah: more is a typo, not a bill.
pub const MAX_CHARGE: i64 = 1_000_000_000;
/// How long a replica trusts its list of a SKU's assets (master data, changed rarely). Only the
/// list of assets is cached; whether they are free always comes from Redis or PostgreSQL.
pub const ASSET_LIST_TTL: Duration = Duration::from_secs(5);
/// Most SKUs whose lists a replica keeps at once (bounds memory whatever SKUs callers ask for).
pub const ASSET_LIST_ENTRIES: usize = 1024;

fn invalid(error: types::Invalid) -> ApiError {
    ApiError::Invalid(error.to_string())
}

fn visible(caller: &Caller, row: &BookingRow) -> bool {
    match caller {
        Caller::Client(client) if client.role == Role::Operator => true,
        Caller::Client(_) => row.created_by == caller.name(),
        Caller::Device(device) => row.branch == device.branch_id,
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("booking {id:?} does not exist"))
}

fn record_error(error: record::RecordError) -> ApiError {
    match error {
        record::RecordError::NoSuchAsset { .. } => ApiError::NotFound(error.to_string()),
        record::RecordError::KeyReused(_) => ApiError::Conflict {
            code: "idempotency_key_reused",
            message: error.to_string(),
            details: None,
        },
        record::RecordError::Invalid(error) => invalid(error),
        record::RecordError::Db(error) => ApiError::database(&error),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    #[param(min_length = 1, max_length = 64)]
    sku: String,
    /// First day, `YYYY-MM-DD`.
    #[param(pattern = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    from: String,
    /// Last day (included), `YYYY-MM-DD`.
    #[param(pattern = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    to: String,
}

/// A SKU's assets: (branch, asset id, plate).
type AssetList = Arc<Vec<(String, String, String)>>;

/// In-process lists of SKUs' assets, each trusted for [`ASSET_LIST_TTL`].
pub struct AssetLists(TtlMap<String, AssetList>);

impl Default for AssetLists {
    fn default() -> Self {
        AssetLists(TtlMap::new(ASSET_LIST_TTL, ASSET_LIST_ENTRIES))
    }
}

impl AssetLists {
    async fn get(&self, db: &sqlx::PgPool, sku: &str) -> Result<AssetList, sqlx::Error> {
        if let Some(list) = self.0.get(sku) {
            return Ok(list);
        }
        let list = Arc::new(record::assets_of(db, sku).await?);
        self.0.put(sku.to_owned(), Arc::clone(&list));
        Ok(list)
    }
}

/// `GET /v1/availability?sku=&from=&to=`: every asset of the SKU and whether it is free for
/// those days (turnover buffer included), from the calendar, or PostgreSQL when Redis cannot
/// answer.
#[utoipa::path(get, path = "/v1/availability", tag = "bookings", params(AvailabilityQuery), responses((status = 200, description = "done", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn availability(
    State(booking): State<Arc<Booking>>,
    _caller: Caller,
    query: Result<Query<AvailabilityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::BadQuery(format!(
            "{}; expected ?sku=&from=YYYY-MM-DD&to=YYYY-MM-DD",
            rejection.body_text()
        ))
    })?;
    // The SKU keys the asset cache: bounded like every id (1 to 64 characters), or a stranger
    // could fill the cache with SKUs of a megabyte each (found by the contract fuzzer).
    // No control characters either: PostgreSQL refuses a NUL in text, which was a 500 (found by
    // the contract fuzzer again).
    let sku_len = query.sku.chars().count();
    if sku_len == 0
        || sku_len > sentra_protocol::booking::MAX_ID_LEN
        || query.sku.chars().any(char::is_control)
    {
        return Err(ApiError::BadQuery(format!(
            "sku: expected 1 to {} characters without control characters, got {sku_len}",
            sentra_protocol::booking::MAX_ID_LEN
        )));
    }
    let stay = Stay::parse(&query.from, &query.to).map_err(invalid)?;
    let (start, end) = stay
        .taken(booking.settings.turnover_buffer_days)
        .map_err(invalid)?;
    let assets = booking
        .assets
        .get(&booking.db, &query.sku)
        .await
        .map_err(|error| ApiError::database(&error))?;
    let keys: Vec<AssetKey> = assets
        .iter()
        .map(|(branch, asset_id, _)| AssetKey {
            sku: query.sku.clone(),
            branch: branch.clone(),
            asset_id: asset_id.clone(),
        })
        .collect();
    let from_redis = booking
        .calendar
        .free(&keys, start, end)
        .await
        .ok()
        .flatten();
    let from_postgresql;
    let (source, list): (_, Vec<AssetFree<'_>>) = match from_redis {
        Some(free) => (
            "redis",
            assets
                .iter()
                .zip(free)
                .map(|((branch, asset_id, plate), free)| AssetFree {
                    branch,
                    asset_id,
                    plate,
                    free,
                })
                .collect(),
        ),
        None => {
            from_postgresql = record::availability(&booking.db, &query.sku, start, end)
                .await
                .map_err(|error| ApiError::database(&error))?;
            (
                "postgresql",
                from_postgresql
                    .iter()
                    .map(|asset| AssetFree {
                        branch: &asset.branch,
                        asset_id: &asset.asset_id,
                        plate: &asset.plate,
                        free: asset.free,
                    })
                    .collect(),
            )
        }
    };
    // Serialized straight from borrowed fields: this is the hottest read of the service.
    Ok(Json(Availability {
        sku: &query.sku,
        from: format_day(stay.first),
        to: format_day(stay.last),
        source,
        assets: list,
    })
    .into_response())
}

/// The answer of `GET /v1/availability`.
#[derive(Serialize)]
struct Availability<'a> {
    sku: &'a str,
    from: String,
    to: String,
    /// `redis` (the calendar) or `postgresql` (Redis could not answer).
    source: &'static str,
    assets: Vec<AssetFree<'a>>,
}

#[derive(Serialize)]
struct AssetFree<'a> {
    branch: &'a str,
    asset_id: &'a str,
    plate: &'a str,
    free: bool,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::Invalid(format!(
            "Idempotency-Key: expected 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))),
    }
}

/// The details of a `409 taken`: the waitlist's offer.
#[derive(Serialize)]
struct Taken {
    waitlist: WaitlistOffer,
}

/// The details of a `409` about a booking in the wrong state: the booking as it is.
fn as_it_is(row: &BookingRow) -> Option<Value> {
    #[derive(Serialize)]
    struct Details<'a> {
        booking: &'a BookingRow,
    }
    serde_json::to_value(Details { booking: row }).ok()
}

fn taken(body: &HoldBody, stay: Stay) -> ApiError {
    ApiError::Conflict {
        code: "taken",
        message: format!(
            "asset {} is taken on some of the days {} to {}; join the waitlist to be offered it if it frees up",
            body.asset_id,
            format_day(stay.first),
            format_day(stay.last)
        ),
        details: serde_json::to_value(Taken {
            waitlist: WaitlistOffer {
                offer: true,
                join: "POST /v1/waitlist".to_owned(),
                sku: body.sku.clone(),
                from: format_day(stay.first),
                to: format_day(stay.last),
            },
        })
        .ok(),
    }
}

/// `POST /v1/bookings`: a hold (201 `{id, state: "HELD", expires_at, ...}`) or 409 `taken`.
#[utoipa::path(post, path = "/v1/bookings", tag = "bookings", request_body = crate::schemas::HoldBody, params(("Idempotency-Key" = Option<String>, Header, max_length = 128, description = "same key and body: same answer, one booking")), responses((status = 201, description = "held", body = Object), (status = 200, description = "the same request again", body = Object), (status = 409, description = "taken (with the waitlist offer), or the key was used for another body", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn hold(
    State(booking): State<Arc<Booking>>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<HoldBody>,
) -> Result<impl IntoResponse, ApiError> {
    let booking: &Booking = &booking;
    let branch = match (&caller, &body.branch) {
        (Caller::Device(device), None) => device.branch_id.clone(),
        (Caller::Device(device), Some(branch)) if *branch == device.branch_id => branch.clone(),
        (Caller::Device(device), Some(branch)) => {
            return Err(ApiError::Forbidden(format!(
                "device {} serves branch {}; it cannot book for branch {branch}",
                device.id, device.branch_id
            )));
        }
        (Caller::Client(_), Some(branch)) => branch.clone(),
        (Caller::Client(_), None) => {
            return Err(ApiError::Invalid("branch: required".to_owned()));
        }
    };
    let stay = Stay::parse(&body.from, &body.to).map_err(invalid)?;
    let tier = body
        .tier
        .as_deref()
        .map_or(Ok(Tier::Basic), Tier::parse)
        .map_err(invalid)?;
    types::check_customer(&body.customer).map_err(invalid)?;
    types::check_id("asset_id", &body.asset_id, types::MAX_ID_LEN).map_err(invalid)?;
    types::check_id("sku", &body.sku, types::MAX_ID_LEN).map_err(invalid)?;
    let key = idempotency_key(&headers)?;
    let created_by = caller.name();
    let digest = record::request_digest(
        &branch,
        &body.asset_id,
        &body.sku,
        stay,
        &body.customer,
        tier,
    );
    let asset = AssetKey {
        sku: body.sku.clone(),
        branch: branch.clone(),
        asset_id: body.asset_id.clone(),
    };
    let (start, end) = stay
        .taken(booking.settings.turnover_buffer_days)
        .map_err(invalid)?;

    let Some(gate) = pass_gate(booking, &asset, start, end, key.as_deref(), &created_by).await
    else {
        return Err(taken(&body, stay));
    };

    // PostgreSQL decides alone: one request of this replica's herd goes on, the others wait
    // for its answer (herd.rs).
    let herd = match gate.lock_token {
        Some(_) => None,
        None => Some(booking.herds.join(
            HerdKey {
                branch: branch.clone(),
                sku: body.sku.clone(),
                asset_id: body.asset_id.clone(),
                start,
                end,
            },
            &created_by,
            key.as_deref(),
        )),
    };
    let leader = match herd {
        Some(Joined::Waiter(waiter)) => match waiter.outcome().await {
            Decided::Taken => {
                if let Some(key) = &key
                    && let Some(row) = record::replayed(&booking.db, &created_by, key, &digest)
                        .await
                        .map_err(record_error)?
                {
                    return Ok((StatusCode::CREATED, Json(row)));
                }
                Metrics::inc(&booking.metrics.conflicts_herd);
                return Err(taken(&body, stay));
            }
            Decided::Undecided => None,
        },
        Some(Joined::Leader(leader)) => Some(leader),
        None => None,
    };

    let owner = crate::standing::Owner::of_booking(&caller, &branch).key();
    let request = HoldRequest {
        branch,
        asset_id: body.asset_id.clone(),
        sku: body.sku.clone(),
        stay,
        customer: body.customer.clone(),
        tier,
        created_by: created_by.clone(),
        idempotency_key: key.clone(),
        digest,
        lock_token: gate.lock_token.clone(),
    };
    let placed = place(booking, &owner, &request).await;
    // The one place the lock is let go: a hold just placed keeps it (its token on the row fences
    // later writers until the lock lapses with the hold window); every other ending, refusals and
    // errors included, releases it now.
    if !matches!(placed, Ok((HoldOutcome::Held(_), _)))
        && let Some(token) = &gate.lock_token
    {
        booking.locks.release(&gate.lock_keys, token).await;
    }
    if let Some(leader) = leader {
        leader.done(match &placed {
            Ok((HoldOutcome::Held(_) | HoldOutcome::Taken, _)) => Decided::Taken,
            _ => Decided::Undecided,
        });
    }
    let (outcome, expired) = placed?;
    if !expired.is_empty() {
        Metrics::add(&booking.metrics.expired, expired.len() as u64);
    }
    match outcome {
        HoldOutcome::Held(row) => {
            Metrics::inc(&booking.metrics.held);
            if let Some(key) = &key {
                let _ = booking
                    .calendar
                    .remember_booking(&created_by, key, &row.id)
                    .await;
            }
            if gate.calendar_built {
                let marked = booking.calendar.reserve(&asset, start, end).await;
                if matches!(marked, Ok(false)) || !expired.is_empty() {
                    // Days already marked, or expired holds left behind: recompute this asset.
                    repair(booking, &asset).await;
                }
            }
            Ok((StatusCode::CREATED, Json(row)))
        }
        HoldOutcome::Replayed(row) => Ok((StatusCode::CREATED, Json(row))),
        HoldOutcome::Taken => {
            Metrics::inc(&booking.metrics.conflicts_postgresql);
            if gate.calendar_built && gate.lock_token.is_some() {
                // The calendar said free and PostgreSQL said taken: it drifted.
                repair(booking, &asset).await;
            }
            Err(taken(&body, stay))
        }
    }
}

/// What a request that passed the gate carries on to PostgreSQL.
struct Gate {
    lock_keys: Vec<String>,
    /// The lock on the asset-days, if the lock nodes answered; None: PostgreSQL decides alone
    /// (nodes unavailable, or this caller's own retry).
    lock_token: Option<String>,
    /// The calendar answered, so it is to be kept in step with what PostgreSQL decides.
    calendar_built: bool,
}

/// The gate, Redis only: the calendar says whether the days are taken, then the lock on the
/// asset-days lets one request of a herd through to PostgreSQL. None: taken, counted. The
/// calendar is written only after PostgreSQL committed, so a request that dies on the way
/// leaves nothing behind but a lock that lapses with its TTL.
async fn pass_gate(
    booking: &Booking,
    asset: &AssetKey,
    start: Date,
    end: Date,
    key: Option<&str>,
    created_by: &str,
) -> Option<Gate> {
    let gate_started = Instant::now();
    // Taken by this caller's own retry (it won first): PostgreSQL has the answer.
    let own = || async {
        match key {
            Some(key) => booking.calendar.key_made_booking(created_by, key).await,
            None => false,
        }
    };
    let retry = match key {
        Some(key) => !booking
            .calendar
            .first_use_of_key(created_by, key)
            .await
            .unwrap_or(false),
        None => false,
    };
    let free = booking
        .calendar
        .free(std::slice::from_ref(asset), start, end)
        .await
        .ok()
        .flatten();
    let mut gate = Gate {
        lock_keys: lock::keys(asset, start, end),
        lock_token: None,
        calendar_built: free.is_some(),
    };
    let refused = || {
        booking.metrics.observe_lock_wait(gate_started.elapsed());
        Metrics::inc(&booking.metrics.conflicts_redis);
        None
    };
    let retry = retry || (free.as_deref() == Some(&[false]) && own().await);
    if !retry {
        if free.as_deref() == Some(&[false]) {
            return refused();
        }
        match booking
            .locks
            .acquire(&gate.lock_keys, booking.settings.hold_window)
            .await
        {
            Acquired::Held { token, .. } => gate.lock_token = Some(token),
            Acquired::Contended if own().await => {}
            Acquired::Contended => return refused(),
            Acquired::Unavailable => {
                tracing::debug!("lock nodes unavailable; PostgreSQL decides alone");
            }
        }
    }
    booking.metrics.observe_lock_wait(gate_started.elapsed());
    Some(gate)
}

/// Past the gate: the identity check, then PostgreSQL's decision.
async fn place(
    booking: &Booking,
    owner: &str,
    request: &HoldRequest,
) -> Result<(HoldOutcome, Vec<String>), ApiError> {
    // Identity (issue 8): asked only of the request the gate let through, so a herd turned away
    // by the calendar or the lock never reaches it; verified customers are cached per replica.
    // The standing asked is the booking's owner's (the device's branch, the portal, the branch
    // an operator books for): another owner's check of the same reference does not count.
    match booking
        .identity
        .cleared(&booking.db, owner, &request.customer)
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err(crate::standing::unverified(&request.customer)),
        Err(error) => return Err(ApiError::database(&error)),
    }
    record::hold(
        &booking.db,
        request,
        booking.settings.turnover_buffer_days,
        booking.settings.hold_window,
    )
    .await
    .map_err(record_error)
}

async fn repair(booking: &Booking, asset: &AssetKey) {
    if let Err(error) = booking.calendar.repair(&booking.db, asset).await {
        tracing::warn!(error = %crate::web::error_chain(&error), asset = %asset.tag(), "calendar repair failed");
    }
}

/// `GET /v1/bookings/{id}`.
#[utoipa::path(get, path = "/v1/bookings/{id}", tag = "bookings", params(("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), responses((status = 200, description = "done", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn get(
    State(booking): State<Arc<Booking>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BookingRow>, ApiError> {
    match record::get(&booking.db, &id).await {
        Ok(Some(row)) if visible(&caller, &row) => Ok(Json(row)),
        Ok(_) => Err(not_found(&id)),
        Err(error) => Err(ApiError::database(&error)),
    }
}

async fn check_visible(booking: &Booking, caller: &Caller, id: &str) -> Result<(), ApiError> {
    match record::get(&booking.db, id).await {
        Ok(Some(row)) if visible(caller, &row) => Ok(()),
        Ok(_) => Err(not_found(id)),
        Err(error) => Err(ApiError::database(&error)),
    }
}

/// `POST /v1/bookings/{id}/confirm` `{payment_ref}`: confirms a live hold. A lapsed hold is
/// refused (409 `hold_expired`) and its payment flagged for refund.
#[utoipa::path(post, path = "/v1/bookings/{id}/confirm", tag = "bookings", params(("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), request_body = crate::schemas::ConfirmBody, responses((status = 200, description = "done", body = Object), (status = 409, description = "hold_expired or wrong_state", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn confirm(
    State(booking): State<Arc<Booking>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ConfirmBody>,
) -> Result<Json<BookingRow>, ApiError> {
    check_payment_ref(&body.payment_ref)?;
    check_visible(&booking, &caller, &id).await?;
    confirm_payment(&booking, &id, &body.payment_ref).await
}

/// A gateway's payment reference, from a confirm or a webhook: 1-[`MAX_PAYMENT_REF_LEN`] characters,
/// not blank, no control characters (PostgreSQL text cannot hold NUL).
pub fn check_payment_ref(raw: &str) -> Result<(), ApiError> {
    if raw.trim().is_empty()
        || raw.chars().count() > MAX_PAYMENT_REF_LEN
        || raw.chars().any(char::is_control)
    {
        return Err(ApiError::Invalid(format!(
            "payment_ref: expected 1-{MAX_PAYMENT_REF_LEN} characters without control characters"
        )));
    }
    Ok(())
}

/// Confirms booking `id` with payment `payment_ref`: the API's and the webhook's shared path.
pub async fn confirm_payment(
    booking: &Booking,
    id: &str,
    payment_ref: &str,
) -> Result<Json<BookingRow>, ApiError> {
    let outcome = record::confirm(&booking.db, id, payment_ref)
        .await
        .map_err(|error| ApiError::database(&error))?;
    match outcome {
        None => Err(not_found(id)),
        Some(ConfirmOutcome::Confirmed(row)) => {
            Metrics::inc(&booking.metrics.confirmed);
            // The slot is the booking's now; the lock has done its work.
            if let Some(token) = &row.lock_token
                && let Ok((start, end)) = row_days(&row)
            {
                let asset = AssetKey {
                    sku: row.sku.clone(),
                    branch: row.branch.clone(),
                    asset_id: row.asset_id.clone(),
                };
                booking
                    .locks
                    .release(&lock::keys(&asset, start, end), token)
                    .await;
            }
            Ok(Json(row))
        }
        Some(ConfirmOutcome::AlreadyConfirmed(row)) => Ok(Json(row)),
        Some(ConfirmOutcome::Late(row)) => {
            tracing::warn!(booking = %row.id, payment_ref, "payment arrived after the hold lapsed; refused and flagged for refund");
            let _ = sweeper::release_ended(booking).await;
            Err(ApiError::Conflict {
                code: "hold_expired",
                message: format!(
                    "the hold on booking {} lapsed at {}; the payment {payment_ref} is flagged for refund",
                    row.id, row.expires_at
                ),
                details: as_it_is(&row),
            })
        }
        Some(ConfirmOutcome::WrongState(row)) => Err(ApiError::Conflict {
            code: "wrong_state",
            message: format!(
                "booking {} is {}; only a live hold can be confirmed",
                row.id, row.state
            ),
            details: as_it_is(&row),
        }),
    }
}

/// The taken days `[start, end)` of a row.
fn row_days(row: &BookingRow) -> Result<(time::Date, time::Date), types::Invalid> {
    Ok((
        types::parse_stored_day("from", &row.from)?,
        types::parse_stored_day("free_from", &row.free_from)?,
    ))
}

/// `POST /v1/bookings/{id}/cancel`: cancels a held or confirmed booking; again is harmless.
#[utoipa::path(post, path = "/v1/bookings/{id}/cancel", tag = "bookings", params(("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), responses((status = 200, description = "done", body = Object), (status = 409, description = "wrong_state", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn cancel(
    State(booking): State<Arc<Booking>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BookingRow>, ApiError> {
    check_visible(&booking, &caller, &id).await?;
    let outcome = record::cancel(&booking.db, &id)
        .await
        .map_err(|error| ApiError::database(&error))?;
    match outcome {
        None => Err(not_found(&id)),
        Some(CancelOutcome::Cancelled(row)) => {
            if let Err(error) = sweeper::release_ended(&booking).await {
                tracing::debug!(%error, "releasing the cancelled booking now failed; the sweeper will");
            }
            Ok(Json(row))
        }
        Some(CancelOutcome::AlreadyCancelled(row)) => Ok(Json(row)),
        Some(CancelOutcome::WrongState(row)) => Err(ApiError::Conflict {
            code: "wrong_state",
            message: format!(
                "booking {} is {}; it cannot be cancelled",
                row.id, row.state
            ),
            details: as_it_is(&row),
        }),
    }
}

/// `200` to complete: the booking, and where its settlement with the gateway stands.
#[derive(Serialize)]
pub struct Completed {
    #[serde(flatten)]
    booking: BookingRow,
    settlement: Option<settlements::Settlement>,
}

fn parse_return(body: &CompleteBody) -> Result<record::Return, ApiError> {
    use time::format_description::well_known::Rfc3339;
    let returned_at = time::OffsetDateTime::parse(&body.returned_at, &Rfc3339).map_err(|_| {
        ApiError::Invalid(format!(
            "returned_at: {:?} is not an RFC 3339 time (e.g. 2027-03-04T10:30:00+07:00)",
            body.returned_at
        ))
    })?;
    if returned_at.date() < sentra_protocol::day::FIRST_DAY {
        // Its day is written into a daterange: keep it in the protocol's range (year 0 is no
        // PostgreSQL date at all).
        return Err(ApiError::Invalid(format!(
            "returned_at: {} is before 2000-01-01; send the time the asset came back",
            body.returned_at
        )));
    }
    if returned_at > time::OffsetDateTime::now_utc() + time::Duration::days(1) {
        return Err(ApiError::Invalid(format!(
            "returned_at: {} is in the future; send the time the asset came back",
            body.returned_at
        )));
    }
    let charge = |field: &str, value: Option<i64>| match value {
        None => Ok(0),
        Some(amount) if (0..=MAX_CHARGE).contains(&amount) => Ok(amount),
        Some(amount) => Err(ApiError::Invalid(format!(
            "{field}: {amount} is not a charge; expected whole rupiah from 0 to {MAX_CHARGE}"
        ))),
    };
    Ok(record::Return {
        returned_at,
        damage_charge: charge("damage_charge", body.damage_charge)?,
        late_charge: charge("late_charge", body.late_charge)?,
    })
}

/// `POST /v1/bookings/{id}/complete` `{returned_at, damage_charge?, late_charge?}`: the asset
/// came back. A confirmed booking becomes `COMPLETED`, the days after the return (and its
/// turnover buffer) are free again, and the gateway is settled: the charges captured, the rest
/// of the pre-authorisation released after `booking.release_delay_secs`. The same facts again
/// get the same answer; other facts for a completed booking are 409 `wrong_state`.
#[utoipa::path(post, path = "/v1/bookings/{id}/complete", tag = "bookings", params(("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), request_body = crate::schemas::CompleteBody, responses((status = 200, description = "done", body = Object), (status = 409, description = "wrong_state", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn complete(
    State(booking): State<Arc<Booking>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CompleteBody>,
) -> Result<Json<Completed>, ApiError> {
    let facts = parse_return(&body)?;
    check_visible(&booking, &caller, &id).await?;
    let outcome = record::complete(&booking.db, &id, &facts, booking.settings.release_delay)
        .await
        .map_err(|error| ApiError::database(&error))?;
    let row = match outcome {
        None => return Err(not_found(&id)),
        Some(CompleteOutcome::Completed(row)) => {
            Metrics::inc(&booking.metrics.completed);
            let asset = AssetKey {
                sku: row.sku.clone(),
                branch: row.branch.clone(),
                asset_id: row.asset_id.clone(),
            };
            // The days after the return are free: recompute the asset's calendar from
            // PostgreSQL (the periodic rebuild catches it if Redis is down now).
            repair(&booking, &asset).await;
            // Settle now if it is due now; whatever fails here the sweeper does later.
            if let Err(error) = sweeper::settle(&booking).await {
                tracing::debug!(%error, "settling the completed booking now failed; the sweeper will");
            }
            row
        }
        Some(CompleteOutcome::AlreadyCompleted(row)) => row,
        Some(CompleteOutcome::ReturnedBeforeStart(row)) => {
            return Err(ApiError::Invalid(format!(
                "returned_at: {} is before the rental's first day {}; cancel a rental that never started",
                body.returned_at, row.from
            )));
        }
        Some(CompleteOutcome::WrongState(row)) => {
            return Err(ApiError::Conflict {
                code: "wrong_state",
                message: format!(
                    "booking {} is {}; only a confirmed booking can be completed, once, with the same return facts",
                    row.id, row.state
                ),
                details: as_it_is(&row),
            });
        }
    };
    let settlement = settlements::settlement(&booking.db, &row.id)
        .await
        .map_err(|error| ApiError::database(&error))?;
    Ok(Json(Completed {
        booking: row,
        settlement,
    }))
}
