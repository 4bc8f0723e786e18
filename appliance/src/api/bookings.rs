//! Rental bookings at the counter: `POST /v1/bookings`, `GET /v1/bookings/{id}`,
//! `GET /v1/assets/{id}/availability`, and the counter's actions on a booking:
//! `POST /v1/bookings/{id}/confirm|cancel|complete` and `POST /v1/waitlist`.
//!
//! The actions are the cloud's to decide and are forwarded within the request (the signed
//! device client); the branch's copy follows the cloud's answer and is announced on MQTT.
//! Offline, confirm, complete and the waitlist answer 503 `cloud_unreachable` and change
//! nothing (a payment, a settlement and a queue position are the cloud's); cancel works offline:
//! the booking is `CANCELLED` here at once and a `booking:cancelled` event tells the cloud at sync.
//!
//! Online, a booking is the cloud's hold, answered within the request (`201`, `HELD` until
//! `expires_at`), and a taken slot is the cloud's `409` with its waitlist offer. When the cloud
//! cannot answer within `sync.booking_timeout_ms` the booking is `TENTATIVE` (`202`), its event
//! in the outbox, and the cloud decides it at sync. Availability comes from the cloud when it
//! answers (`"source": "cloud"`), else from the last pulled calendar (`"source": "cached"`,
//! `as_of`); the branch's own undecided bookings count as taken either way.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{ApiError, AppState, Body, Caller, IdempotencyKey, json_response, path_id};
use crate::domain::booking::{Stay, StayError, format_day, parse_tier};
use crate::domain::{Id, Name};
use crate::store::bookings::{self, Booking, Busy, NewBooking};
use crate::sync::booking::{self as cloud, Forwarded, HoldAnswer};
use sentra_protocol::booking::{BookingView, CompleteBody, ConfirmBody, WaitlistBody};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBooking {
    #[schema(example = "CAR-001")]
    pub asset_id: Id,
    /// First rental day, `YYYY-MM-DD`.
    #[schema(schema_with = super::schemas::day)]
    pub from: String,
    /// Last rental day (included), `YYYY-MM-DD`; the stay is at most `MAX_STAY_DAYS` days.
    #[schema(schema_with = super::schemas::day)]
    pub to: String,
    /// The customer's name or reference.
    #[schema(example = "Budi Santoso")]
    pub customer: Name,
    /// Membership tier: platinum, gold, silver or basic (default).
    #[schema(schema_with = super::schemas::tier)]
    pub tier: Option<String>,
}

/// The booking's id: derived from the device and its `Idempotency-Key` when there is one, so a
/// retry (even one racing the first attempt) asks the cloud with the same key and gets the same
/// hold back.
fn booking_id(device: &str, key: Option<&str>) -> String {
    let Some(key) = key else {
        return crate::store::new_id();
    };
    let digest = Sha256::digest(format!("booking\0{device}\0{key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn taken(new: &NewBooking, busy: &Busy) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "taken",
        format!(
            "asset {} is taken on some of the days {} to {} (booking {} of this branch, {}, {} to {}); choose other days or another asset",
            new.asset_id, new.from, new.to, busy.id, busy.state, busy.from, busy.to
        ),
    )
}

/// The SKU of this branch's asset `asset_id`, or the field error a counter can act on.
async fn branch_asset_sku(s: &AppState, asset_id: &str) -> Result<String, ApiError> {
    let id = asset_id.to_owned();
    s.store
        .read(move |c| bookings::asset_sku(c, &id))
        .await?
        .ok_or_else(|| {
            ApiError::field(
                "asset_id",
                format!("no asset {asset_id:?} at this branch; see GET /v1/assets"),
            )
        })
}

#[utoipa::path(post, path = "/v1/bookings", tag = "bookings", request_body = CreateBooking,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one booking")),
    responses(
        (status = 201, description = "the cloud's hold (state HELD, expires_at), answered within the request", body = Booking),
        (status = 202, description = "the cloud could not be asked: TENTATIVE, decided at sync", body = Booking),
        (status = 409, description = "taken (the cloud's answer carries its waitlist offer)", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<CreateBooking>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let stay = Stay::parse(&b.from, &b.to).map_err(|e| ApiError::field(e.field, e.problem))?;
    let tier = b
        .tier
        .as_deref()
        .map_or(Ok("basic"), parse_tier)
        .map_err(|e| ApiError::field("tier", e.0))?;
    let asset_id = String::from(b.asset_id);
    let sku = branch_asset_sku(&s, &asset_id).await?;
    let new = NewBooking {
        id: booking_id(&caller.0.id, key.0.as_deref()),
        asset_id,
        sku,
        from: format_day(stay.first),
        to: format_day(stay.last),
        customer: b.customer.into(),
        tier: tier.to_owned(),
    };

    // The branch's own undecided bookings: the cloud may not have heard of them yet (whatever
    // else takes the days, the cloud knows and answers; offline, `record_tentative` checks all).
    let (own, buffer) = {
        let (asset, id) = (new.asset_id.clone(), new.id.clone());
        s.store
            .read(move |c| {
                let (_, buffer) = bookings::calendar_state(c)?;
                let (start, end) = stay.taken_days(buffer).map_err(stay_refused)?;
                let now = crate::store::format_time(time::OffsetDateTime::now_utc());
                let own = bookings::busy(c, &asset, (&start, &end), buffer, &now, true)?;
                Ok((
                    own.into_iter()
                        .find(|b| b.id != id && b.state == "TENTATIVE"),
                    buffer,
                ))
            })
            .await?
    };
    if let Some(busy) = own {
        return Err(taken(&new, &busy));
    }

    let bound = Duration::from_millis(s.config.sync.booking_timeout_ms);
    match cloud::hold(&s.sync, bound, &new).await {
        HoldAnswer::Held(hold) => {
            s.write(
                &caller,
                key,
                body.fingerprint,
                StatusCode::CREATED,
                move |w, d| bookings::record_held(w, &d.id, &new, &hold),
            )
            .await
        }
        HoldAnswer::Refused { status, body } => {
            // The cloud's own words (a 409 carries its waitlist offer); nothing changed here.
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            Ok(json_response(status, body.to_string()))
        }
        HoldAnswer::Offline(why) => {
            tracing::info!(booking = %new.id, asset = %new.asset_id, reason = %why, "booking taken offline as TENTATIVE");
            let (start, end) = stay
                .taken_days(buffer)
                .map_err(|e| ApiError::field(e.field, e.problem))?;
            s.write(
                &caller,
                key,
                body.fingerprint,
                StatusCode::ACCEPTED,
                move |w, d| bookings::record_tentative(w, &d.id, &new, (&start, &end), buffer),
            )
            .await
        }
    }
}

#[utoipa::path(get, path = "/v1/bookings/{id}", tag = "bookings",
    responses((status = 200, body = Booking), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_booking(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Booking>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| bookings::get(c, &id)).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day (included), `YYYY-MM-DD`.
    pub to: String,
}

impl utoipa::IntoParams for AvailabilityQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        [
            ("from", "First day"),
            (
                "to",
                "Last day (included); the stay is at most MAX_STAY_DAYS (92) days",
            ),
        ]
        .map(|(name, description)| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(utoipa::openapi::Required::True)
                .description(Some(description))
                .schema(Some(super::schemas::day()))
                .build()
        })
        .to_vec()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Availability {
    pub asset_id: String,
    pub sku: String,
    pub from: String,
    pub to: String,
    pub free: bool,
    /// `cloud` (asked now) or `cached` (the calendar pulled at `as_of`; the link is down).
    pub source: String,
    /// When the answer was true: now for `cloud`, the last pull for `cached` (null: never pulled).
    pub as_of: Option<String>,
    /// What takes the days, as far as the branch knows (its own bookings; with `cached`, also
    /// the pulled calendar).
    pub busy: Vec<Busy>,
}

#[utoipa::path(get, path = "/v1/assets/{id}/availability", tag = "bookings", params(AvailabilityQuery),
    responses((status = 200, body = Availability), (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn availability(
    State(s): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<AvailabilityQuery>, QueryRejection>,
) -> Result<Json<Availability>, ApiError> {
    let id = path_id(&id)?;
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!("{}; expected ?from=YYYY-MM-DD&to=YYYY-MM-DD", e.body_text()),
        )
    })?;
    let stay = Stay::parse(&q.from, &q.to).map_err(|e| ApiError::field(e.field, e.problem))?;
    let (from, to) = (format_day(stay.first), format_day(stay.last));
    let sku = {
        let id = id.clone();
        s.store.read(move |c| bookings::asset_sku(c, &id)).await?
    }
    .ok_or_else(|| ApiError::not_found(format!("asset {id:?} not found at this branch")))?;

    let bound = Duration::from_millis(s.config.sync.booking_timeout_ms);
    let from_cloud = cloud::asset_free(&s.sync, bound, &id, &sku, &from, &to).await;
    let now = crate::store::format_time(time::OffsetDateTime::now_utc());
    let asset = id.clone();
    let own_only = from_cloud.is_some();
    let (busy, as_of) = {
        let now = now.clone();
        s.store
            .read(move |c| {
                let (as_of, buffer) = bookings::calendar_state(c)?;
                let (start, end) = stay.taken_days(buffer).map_err(stay_refused)?;
                let busy = bookings::busy(c, &asset, (&start, &end), buffer, &now, own_only)?;
                Ok((busy, as_of))
            })
            .await?
    };
    Ok(Json(match from_cloud {
        Some(free) => Availability {
            asset_id: id,
            sku,
            from,
            to,
            free: free && busy.is_empty(),
            source: "cloud".into(),
            as_of: Some(now),
            busy,
        },
        None => Availability {
            asset_id: id,
            sku,
            from,
            to,
            free: busy.is_empty(),
            source: "cached".into(),
            as_of,
            busy,
        },
    }))
}

/// The cloud booking behind the branch's booking `id`: its cloud id, or why there is none yet.
async fn cloud_booking(s: &AppState, id: &str) -> Result<(Booking, String), ApiError> {
    let b = {
        let id = id.to_owned();
        s.store.read(move |c| bookings::get(c, &id)).await?
    };
    match b.cloud_id.clone() {
        Some(cloud_id) => Ok((b, cloud_id)),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_decided",
            format!(
                "booking {id} is {}; the cloud has not decided it yet (it was taken offline); try again after the next sync",
                b.state
            ),
        )),
    }
}

fn cloud_unreachable(action: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "cloud_unreachable",
        format!(
            "cannot {action} now: it needs the cloud's decision and {why}; nothing was changed, try again when the link is back (GET /v1/sync/status)"
        ),
    )
}

/// Passes a counter action on booking `id` to the cloud and, when it succeeded, makes the
/// branch's copy follow the cloud's state. The cloud's refusals are passed on as they are.
async fn act<B: Serialize + Sync>(
    s: &AppState,
    id: &str,
    action: &'static str,
    body: Option<&B>,
) -> Result<Response, ApiError> {
    let (_, cloud_id) = cloud_booking(s, id).await?;
    let bound = Duration::from_millis(s.config.sync.booking_timeout_ms);
    let path = format!("/v1/bookings/{cloud_id}/{action}");
    match cloud::forward(&s.sync, bound, reqwest::Method::POST, &path, body).await {
        Forwarded::Answered { status, body } if (200..300).contains(&status) => {
            let view = match serde_json::from_value::<BookingView>(body.clone()) {
                Ok(view) => view,
                Err(e) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "cloud_answer_unreadable",
                        format!("the cloud's answer to {action} is not a booking ({e}): {body}"),
                    ));
                }
            };
            let id = id.to_owned();
            let local = s
                .store
                .write(move |w| {
                    bookings::record_cloud_state(
                        w,
                        &id,
                        view.state.as_str(),
                        Some(view.expires_at.as_str()),
                    )
                })
                .await?;
            let mut answer = serde_json::to_value(&local).expect("a booking always serialises");
            answer["cloud"] = body;
            Ok(json_response(StatusCode::OK, answer.to_string()))
        }
        Forwarded::Answered { status, body } => Ok(json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            body.to_string(),
        )),
        Forwarded::Offline(why) => Err(cloud_unreachable(&format!("{action} booking {id}"), &why)),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBooking {
    /// The payment gateway's reference of the authorised payment taken at the counter.
    #[schema(schema_with = super::schemas::payment_ref)]
    pub payment_ref: String,
}

#[utoipa::path(post, path = "/v1/bookings/{id}/confirm", tag = "bookings", request_body = ConfirmBooking,
    responses(
        (status = 200, description = "the cloud confirmed the hold; the branch's copy follows", body = Booking),
        (status = 409, description = "the cloud refused (hold_expired: flagged for refund; wrong_state) or the booking is not decided yet (not_decided)", body = super::error::ErrorBody),
        (status = 503, description = "cloud_unreachable: confirming needs the cloud; nothing changed", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn confirm(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Body<ConfirmBooking>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let payment_ref = body.value.payment_ref;
    if payment_ref.trim().is_empty()
        || payment_ref.chars().count() > super::schemas::MAX_PAYMENT_REF
        || payment_ref.chars().any(char::is_control)
    {
        return Err(ApiError::field(
            "payment_ref",
            format!(
                "expected 1-{} characters, no control characters",
                super::schemas::MAX_PAYMENT_REF
            ),
        ));
    }
    act(&s, &id, "confirm", Some(&ConfirmBody { payment_ref })).await
}

#[utoipa::path(post, path = "/v1/bookings/{id}/cancel", tag = "bookings",
    responses(
        (status = 200, description = "cancelled: by the cloud within the request, or (offline) here with a booking:cancelled event the cloud applies at sync", body = Booking),
        (status = 409, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let b = {
        let id = id.clone();
        s.store.read(move |c| bookings::get(c, &id)).await?
    };
    super::rentals::refuse_if_rented(&s, &id, "cancel").await?;
    // Online and known to the cloud: the cloud cancels, within the request.
    if b.cloud_id.is_some() {
        match act(&s, &id, "cancel", None::<&()>).await {
            Err(e) if e.code == "cloud_unreachable" => {}
            other => return other,
        }
    }
    // Not known to the cloud yet (TENTATIVE) or the cloud cannot be asked: cancelled here, and
    // the event tells the cloud at the next sync.
    tracing::info!(booking = %id, state = %b.state, "booking cancelled at the branch; the cloud applies it at sync");
    let b = s
        .store
        .write(move |w| bookings::cancel_offline(w, &id))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_string(&b).expect("a booking always serialises"),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBooking {
    /// When the asset came back, RFC 3339 with the branch's offset.
    #[schema(example = "2027-03-03T17:45:00+07:00")]
    pub returned_at: String,
    /// Rupiah to capture for damage.
    #[schema(schema_with = super::schemas::charge)]
    pub damage_charge: Option<i64>,
    /// Rupiah to capture for a late return.
    #[schema(schema_with = super::schemas::charge)]
    pub late_charge: Option<i64>,
}

#[utoipa::path(post, path = "/v1/bookings/{id}/complete", tag = "bookings", request_body = CompleteBooking,
    responses(
        (status = 200, description = "COMPLETED by the cloud: charges captured, the rest of the pre-authorisation released when due (the cloud's answer under `cloud`)", body = Booking),
        (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
        (status = 503, description = "cloud_unreachable: completion settles money through the cloud; nothing changed", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Body<CompleteBooking>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    super::rentals::refuse_if_rented(&s, &id, "complete").await?;
    let b = body.value;
    act(
        &s,
        &id,
        "complete",
        Some(&CompleteBody {
            returned_at: b.returned_at,
            damage_charge: b.damage_charge,
            late_charge: b.late_charge,
        }),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlist {
    #[schema(example = "CAR-001")]
    pub asset_id: Id,
    /// The day wanted, `YYYY-MM-DD`.
    #[schema(schema_with = super::schemas::day)]
    pub date: String,
    #[schema(example = "Budi Santoso")]
    pub customer: Name,
    /// Membership tier: platinum, gold, silver or basic (default).
    #[schema(schema_with = super::schemas::tier)]
    pub tier: Option<String>,
}

#[utoipa::path(post, path = "/v1/waitlist", tag = "bookings", request_body = JoinWaitlist,
    responses(
        (status = 201, description = "the cloud's waitlist entry `{id, state: WAITING, position}`"),
        (status = 422, body = super::error::ErrorBody),
        (status = 503, description = "cloud_unreachable: the waitlist is the cloud's; nothing changed", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn join_waitlist(
    State(s): State<AppState>,
    body: Body<JoinWaitlist>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let day = crate::domain::booking::Stay::parse(&b.date, &b.date)
        .map_err(|e| ApiError::field("date", e.problem))?;
    let tier = b
        .tier
        .as_deref()
        .map_or(Ok("basic"), parse_tier)
        .map_err(|e| ApiError::field("tier", e.0))?;
    let asset_id = String::from(b.asset_id);
    let sku = branch_asset_sku(&s, &asset_id).await?;
    let customer: String = b.customer.into();
    let body = WaitlistBody {
        sku,
        date: format_day(day.first),
        customer,
        tier: Some(tier.to_owned()),
    };
    let bound = Duration::from_millis(s.config.sync.booking_timeout_ms);
    match cloud::forward(
        &s.sync,
        bound,
        reqwest::Method::POST,
        "/v1/waitlist",
        Some(&body),
    )
    .await
    {
        Forwarded::Answered { status, body } => Ok(json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            body.to_string(),
        )),
        Forwarded::Offline(why) => Err(cloud_unreachable("join the waitlist", &why)),
    }
}

/// A stay whose taken days fall off the calendar, refused inside a store read (a 422 naming
/// the field, like any other bad stay).
fn stay_refused(e: StayError) -> crate::store::StoreError {
    crate::store::DomainError::invalid(e.field, e.problem).into()
}
