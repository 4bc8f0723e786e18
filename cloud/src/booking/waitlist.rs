//! Waitlists per SKU and day: `POST /v1/waitlist`, `GET /v1/waitlist/{id}`, and the promotion
//! of a list's head when a booking of that SKU lapses or is cancelled.
//!
//! Order is membership tier, then arrival. PostgreSQL (`waitlist_entries`) is the record; the
//! Redis sorted set `waitlist:<SKU>:<YYYY-MM-DD>` (score `tier_rank · 10¹³ + arrival ms`) mirrors
//! it so a position is answered without PostgreSQL, and is rebuilt from it when missing.
//!
//! Invariant: a head is promoted exactly once. Promotion runs inside the sweeper's transaction
//! that claims the ended booking (`FOR UPDATE SKIP LOCKED`) and marks it released: the entry's
//! conditional `WAITING → OFFERED`, and its offer (a hold of its own window on the freed asset),
//! commit together with that mark or not at all; replicas sweeping at once skip each other's
//! rows. An offer the exclusion constraint refuses (someone booked the day first) leaves the
//! entry waiting.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use sqlx::{Connection as _, PgConnection, Row as _};
use time::Date;

use super::Booking;
use super::calendar::AssetKey;
use super::record::Ended;
use super::types::{
    self, Tier, WaitlistBody, WaitlistJoined, WaitlistState, WaitlistView, format_day,
};
use crate::devices::auth::Caller;
use crate::devices::tokens::Role;
use crate::web::{ApiError, JsonBody};

/// Score weight of the tier: above any arrival time in milliseconds.
const TIER_WEIGHT: f64 = 1e13;

pub fn key(sku: &str, day: Date) -> String {
    format!("waitlist:{sku}:{}", format_day(day))
}

/// `POST /v1/waitlist` `{sku, date, customer, tier}` → 201 `{id, state: "WAITING", position}`.
#[utoipa::path(post, path = "/v1/waitlist", tag = "bookings", request_body = crate::schemas::JoinBody, responses((status = 201, description = "waiting", body = Object), (status = 409, description = "conflict", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn join(
    State(booking): State<Arc<Booking>>,
    caller: Caller,
    JsonBody(body): JsonBody<WaitlistBody>,
) -> Result<impl IntoResponse, ApiError> {
    let invalid = |error: types::Invalid| ApiError::Invalid(error.to_string());
    let day = types::parse_day("date", &body.date).map_err(invalid)?;
    let tier = body
        .tier
        .as_deref()
        .map_or(Ok(Tier::Basic), Tier::parse)
        .map_err(invalid)?;
    types::check_customer(&body.customer).map_err(invalid)?;
    types::check_id("sku", &body.sku, types::MAX_ID_LEN).map_err(invalid)?;
    let (id, arrival_ms): (String, i64) = sqlx::query_as(
        "INSERT INTO waitlist_entries (id, sku, day, customer, tier, tier_rank, created_by)
         SELECT gen_random_uuid(), $1, $2::date, $3, $4, $5, $6
         WHERE EXISTS (SELECT 1 FROM assets WHERE sku = $1)
         RETURNING id::text, (extract(epoch FROM created_at) * 1000)::bigint",
    )
    .bind(&body.sku)
    .bind(format_day(day))
    .bind(&body.customer)
    .bind(tier.as_str())
    .bind(i16::from(tier.rank()))
    .bind(caller.name())
    .fetch_optional(&booking.db)
    .await
    .map_err(|error| ApiError::database(&error))?
    .ok_or_else(|| ApiError::NotFound(format!("no asset has SKU {:?}", body.sku)))?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "milliseconds since 1970 fit in 2^53"
    )]
    let score = f64::from(tier.rank()) * TIER_WEIGHT + arrival_ms as f64;
    let mut redis = booking.calendar.connection();
    let rank: Option<u64> = redis::pipe()
        .cmd("ZADD")
        .arg(key(&body.sku, day))
        .arg(score)
        .arg(&id)
        .ignore()
        .cmd("ZRANK")
        .arg(key(&body.sku, day))
        .arg(&id)
        .query_async::<(Option<u64>,)>(&mut redis)
        .await
        .ok()
        .and_then(|(rank,)| rank);
    Ok((
        StatusCode::CREATED,
        Json(WaitlistJoined {
            id,
            state: WaitlistState::Waiting,
            sku: body.sku,
            date: format_day(day),
            tier: tier.as_str().to_owned(),
            position: rank.map(|rank| rank + 1),
        }),
    ))
}

/// `GET /v1/waitlist/{id}`: the entry, and its offer (a booking id) once promoted.
#[utoipa::path(get, path = "/v1/waitlist/{id}", tag = "bookings", params(("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), responses((status = 200, description = "done", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn get(
    State(booking): State<Arc<Booking>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WaitlistView>, ApiError> {
    let not_found = || ApiError::NotFound(format!("waitlist entry {id:?} does not exist"));
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(not_found());
    }
    let (entry_id, sku, date, tier, state, created_by, offer_booking): EntryRow = sqlx::query_as(
        "SELECT id::text, sku, day::text, tier, state, created_by, offer_booking::text
         FROM waitlist_entries WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_optional(&booking.db)
    .await
    .map_err(|error| ApiError::database(&error))?
    .ok_or_else(not_found)?;
    let visible = match &caller {
        Caller::Client(client) if client.role == Role::Operator => true,
        _ => created_by == caller.name(),
    };
    if !visible {
        return Err(not_found());
    }
    let state = WaitlistState::parse(&state).ok_or_else(|| {
        ApiError::database(&sqlx::Error::Decode(
            format!("waitlist_entries.state {state:?} is not a waitlist state").into(),
        ))
    })?;
    Ok(Json(WaitlistView {
        id: entry_id,
        sku,
        date,
        tier,
        state,
        offer_booking,
    }))
}

/// `id, sku, day, tier, state, created_by, offer_booking` of a `waitlist_entries` row.
type EntryRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
);

/// An offer made: the entry, its new hold, and the days to mark in the calendar.
#[derive(Debug)]
pub struct Offer {
    pub entry_id: String,
    pub booking_id: String,
    pub asset: AssetKey,
    pub day: Date,
    pub start: Date,
    pub end: Date,
}

/// Inside the sweeper's release transaction: for each rental day of `ended`, offers the freed
/// asset to the head of that day's waitlist (see the module doc).
pub async fn promote(
    tx: &mut PgConnection,
    ended: &Ended,
    buffer_days: u32,
    offer_window: std::time::Duration,
) -> Result<Vec<Offer>, sqlx::Error> {
    let mut offers = Vec::new();
    let mut day = Some(ended.first_day);
    while let Some(current) = day.filter(|day| *day <= ended.last_day) {
        day = current.next_day();
        let head = sqlx::query(
            "SELECT id::text AS id, customer, tier, created_by FROM waitlist_entries
             WHERE sku = $1 AND day = $2::date AND state = 'WAITING'
             ORDER BY tier_rank, created_at
             LIMIT 1
             FOR UPDATE SKIP LOCKED",
        )
        .bind(&ended.sku)
        .bind(format_day(current))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(head) = head else {
            continue;
        };
        let entry_id: String = head.try_get("id")?;
        let stay = types::Stay {
            first: current,
            last: current,
        };
        // A day whose turnover buffer runs off the calendar cannot be offered (the same
        // refusal a booking request for it gets).
        let Ok((start, end)) = stay.taken(buffer_days) else {
            continue;
        };
        let mut savepoint = tx.begin().await?;
        let inserted = sqlx::query_scalar::<_, String>(
            "INSERT INTO bookings (id, branch_id, asset_id, sku, first_day, last_day, period, state,
                                   customer, tier, created_by, idempotency_key, request_digest,
                                   hold_expires_at)
             VALUES (gen_random_uuid(), $1, $2, $3, $4::date, $4::date, $5::daterange, 'HELD',
                     $6, $7, $8, 'waitlist:' || $9, sha256(convert_to($9, 'UTF8')),
                     now() + make_interval(secs => $10))
             RETURNING id::text",
        )
        .bind(&ended.branch)
        .bind(&ended.asset_id)
        .bind(&ended.sku)
        .bind(format_day(current))
        .bind(types::day_range(start, end))
        .bind(head.try_get::<String, _>("customer")?)
        .bind(head.try_get::<String, _>("tier")?)
        .bind(head.try_get::<String, _>("created_by")?)
        .bind(&entry_id)
        .bind(offer_window.as_secs_f64())
        .fetch_one(&mut *savepoint)
        .await;
        let booking_id = match inserted {
            Ok(id) => id,
            Err(error) => {
                let code = error
                    .as_database_error()
                    .and_then(|error| error.code())
                    .map(|code| code.into_owned());
                if matches!(code.as_deref(), Some("23P01" | "40P01" | "23505")) {
                    // The day was booked again first: the entry keeps waiting.
                    savepoint.rollback().await?;
                    continue;
                }
                return Err(error);
            }
        };
        sqlx::query(
            "UPDATE waitlist_entries SET state = 'OFFERED', offer_booking = $2::uuid, offered_at = now()
             WHERE id = $1::uuid AND state = 'WAITING'",
        )
        .bind(&entry_id)
        .bind(&booking_id)
        .execute(&mut *savepoint)
        .await?;
        savepoint.commit().await?;
        offers.push(Offer {
            entry_id,
            booking_id,
            asset: AssetKey {
                sku: ended.sku.clone(),
                branch: ended.branch.clone(),
                asset_id: ended.asset_id.clone(),
            },
            day: current,
            start,
            end,
        });
    }
    Ok(offers)
}
