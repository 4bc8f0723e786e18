//! The rental counter: `GET /v1/tariffs`, `POST /v1/bookings/{id}/handover`,
//! `POST /v1/bookings/{id}/return`, `GET /v1/bookings/{id}/rental` and
//! `POST /v1/bookings/{id}/print` (rules and the transaction in `store::rentals`).
//!
//! Both writes are the box's alone, online or not: they need no answer from the cloud, and their
//! events (the booking's completion included) reach it through the outbox, exactly once. Every
//! refusal (unknown booking, wrong state, handover twice, return before handover, an inspection
//! of another asset or already used, a short deposit, amounts out of bounds) changes nothing.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, Body, Caller, Fingerprint, IdempotencyKey, path_id};
use crate::domain::rental::Damage;
use crate::domain::{Id, PaymentMethod, Rupiah, Text};
use crate::store::print_jobs::PrintJob;
use crate::store::rentals::{self, Handover, MoneyIn, MoneyOut, Rental, Return, Tariff};
use sentra_protocol::rental::MAX_DAMAGE_LINES;

/// Money the counter takes: CASH needs no reference; EDC and QRIS need theirs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyBody {
    pub method: PaymentMethod,
    /// Rupiah; absent: exactly what is due.
    pub amount: Option<Rupiah>,
    /// The EDC approval code (typed from the terminal) or the QRIS transaction id.
    pub reference: Option<Text>,
}

/// How a refund leaves (absent: cash).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    pub method: PaymentMethod,
    pub reference: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DamageBody {
    pub description: Text,
    pub amount: Rupiah,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandOver {
    /// The HANDOVER inspection of the booked asset, recorded for this handover.
    pub inspection_id: Id,
    /// The deposit taken (required when the tariff asks one; at least that much).
    pub deposit: Option<MoneyBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeBack {
    /// The RETURN inspection of the asset, recorded after the handover.
    pub inspection_id: Id,
    /// When the asset came back (RFC 3339), between the handover and now; absent: now.
    pub returned_at: Option<String>,
    #[serde(default)]
    pub damage: Vec<DamageBody>,
    /// What the customer pays beyond the deposit (required when the invoice exceeds it).
    pub payment: Option<MoneyBody>,
    /// How what the deposit held beyond the invoice goes back (absent: cash).
    pub refund: Option<RefundBody>,
}

fn methods(need: bool) -> Vec<&'static str> {
    PaymentMethod::ALL
        .into_iter()
        .filter(|m| m.needs_reference() == need)
        .map(PaymentMethod::as_str)
        .collect()
}

fn nullable(v: serde_json::Value) -> serde_json::Value {
    json!({"oneOf": [{"type": "null"}, v]})
}

/// `MoneyBody` (with `amount`) or `RefundBody` (without), as `billing::Pay` describes a payment.
fn money_schema(with_amount: bool) -> serde_json::Value {
    let text = json!({"$ref": "#/components/schemas/Text"});
    let branch = |need: bool| {
        let mut properties = serde_json::Map::new();
        properties.insert(
            "method".into(),
            json!({"type": "string", "enum": methods(need)}),
        );
        if with_amount {
            properties.insert(
                "amount".into(),
                nullable(json!({"$ref": "#/components/schemas/Rupiah"})),
            );
        }
        properties.insert(
            "reference".into(),
            if need {
                text.clone()
            } else {
                nullable(text.clone())
            },
        );
        let required: Vec<&str> = if need {
            vec!["method", "reference"]
        } else {
            vec!["method"]
        };
        json!({"type": "object", "additionalProperties": false, "required": required,
               "properties": properties})
    };
    json!({"oneOf": [branch(false), branch(true)]})
}

impl utoipa::PartialSchema for HandOver {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schemas::from_json(json!({
            "type": "object", "additionalProperties": false, "required": ["inspection_id"],
            "properties": {
                "inspection_id": {"$ref": "#/components/schemas/Id"},
                "deposit": nullable(money_schema(true)),
            },
        }))
    }
}
impl utoipa::ToSchema for HandOver {}

impl utoipa::PartialSchema for TakeBack {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schemas::from_json(json!({
            "type": "object", "additionalProperties": false, "required": ["inspection_id"],
            "properties": {
                "inspection_id": {"$ref": "#/components/schemas/Id"},
                "returned_at": nullable(json!({"type": "string", "format": "date-time",
                    "description": "When the asset came back, between the handover and now"})),
                "damage": {"type": "array", "maxItems": MAX_DAMAGE_LINES, "items": {
                    "type": "object", "additionalProperties": false, "required": ["description", "amount"],
                    "properties": {"description": {"$ref": "#/components/schemas/Text"},
                                   "amount": {"$ref": "#/components/schemas/Rupiah"}}}},
                "payment": nullable(money_schema(true)),
                "refund": nullable(money_schema(false)),
            },
        }))
    }
}
impl utoipa::ToSchema for TakeBack {}

fn money(m: MoneyBody) -> MoneyIn {
    MoneyIn {
        method: m.method,
        amount: m.amount.map(Rupiah::get),
        reference: m.reference.map(String::from),
    }
}

#[utoipa::path(get, path = "/v1/tariffs", tag = "rentals",
    responses((status = 200, description = "what renting each SKU costs here, as the cloud set it", body = Vec<Tariff>)),
    security(("bearer" = [])))]
pub async fn tariffs(State(s): State<AppState>) -> Result<Json<Vec<Tariff>>, ApiError> {
    Ok(Json(s.store.read(rentals::tariffs).await?))
}

#[utoipa::path(post, path = "/v1/bookings/{id}/handover", tag = "rentals", request_body = HandOver,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one handover")),
    responses(
        (status = 201, description = "handed over: the deposit taken, the agreement recorded, the rental agreement and surat jalan queued on the printer", body = Rental),
        (status = 409, description = "already_handed_over, wrong_state (HELD: confirm first), too_early, no_tariff, inspection_used", body = super::error::ErrorBody),
        (status = 422, description = "the inspection (unknown, not a handover, another asset's, older than the booking) or the deposit (missing, short, no reference)", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn hand_over(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<HandOver>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let HandOver {
        inspection_id,
        deposit,
    } = body.value;
    let handover = Handover {
        inspection_id: inspection_id.into(),
        deposit: deposit.map(money),
    };
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| rentals::hand_over(w, &d.id, &id, &handover),
    )
    .await
}

#[utoipa::path(post, path = "/v1/bookings/{id}/return", tag = "rentals", request_body = TakeBack,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one return")),
    responses(
        (status = 201, description = "returned: the rental invoice issued (PPN), the deposit settled against it, the booking COMPLETED", body = Rental),
        (status = 409, description = "not_handed_over, already_returned, inspection_used", body = super::error::ErrorBody),
        (status = 422, description = "the inspection, returned_at, damage, or the payment (missing, a wrong amount, no reference)", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn take_back(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<TakeBack>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let b = body.value;
    if b.damage.len() > MAX_DAMAGE_LINES {
        return Err(ApiError::field(
            "damage",
            format!("at most {MAX_DAMAGE_LINES} lines"),
        ));
    }
    let returned_at = b
        .returned_at
        .map(|raw| {
            time::OffsetDateTime::parse(&raw, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    ApiError::field(
                        "returned_at",
                        format!("{raw:?} is not an RFC 3339 time, e.g. 2027-03-03T17:45:00+07:00"),
                    )
                })
        })
        .transpose()?;
    let ret = Return {
        inspection_id: b.inspection_id.into(),
        returned_at,
        damage: b
            .damage
            .into_iter()
            .map(|d| Damage {
                description: d.description.into(),
                amount: d.amount.get(),
            })
            .collect(),
        payment: b.payment.map(money),
        refund: b.refund.map(|r| MoneyOut {
            method: r.method,
            reference: r.reference.map(String::from),
        }),
    };
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| rentals::take_back(w, &d.id, &id, &ret),
    )
    .await
}

#[utoipa::path(get, path = "/v1/bookings/{id}/rental", tag = "rentals",
    responses((status = 200, body = Rental), (status = 404, description = "no such booking, or it was never handed over", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_rental(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Rental>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| rentals::get(c, &id)).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RentalPrintQuery {
    /// `rental_agreement` (default), `rental_delivery_note` (the surat jalan) or
    /// `rental_invoice` (once returned).
    #[param(schema_with = super::schemas::rental_print_document)]
    pub document: Option<String>,
}

#[utoipa::path(post, path = "/v1/bookings/{id}/print", tag = "rentals", params(RentalPrintQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Same key: the same job, printed once")),
    responses((status = 202, description = "queued; follow /v1/print-jobs/{id}", body = PrintJob),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "not_handed_over (no papers yet) or not_returned (no invoice yet)", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn print(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    fp: Fingerprint,
    Path(id): Path<String>,
    q: Result<Query<RentalPrintQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(super::query_rejected)?;
    let id = path_id(&id)?;
    let (document, fp) =
        super::print_request(q.document, &super::schemas::RENTAL_PRINT_DOCUMENTS, fp)?;
    s.write(&caller, key, fp, StatusCode::ACCEPTED, move |w, _| {
        rentals::reprint(w, &id, &document)
    })
    .await
}

/// A booking handed over at the counter ends at the counter (`POST .../return`): cancelling or
/// completing it through the cloud's path is refused while it has a rental.
pub(super) async fn refuse_if_rented(s: &AppState, id: &str, action: &str) -> Result<(), ApiError> {
    let booking = id.to_owned();
    let status = s
        .store
        .read(move |c| rentals::status_of(c, &booking))
        .await?;
    match status {
        None => Ok(()),
        Some(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "rented",
            format!(
                "booking {id} was handed over at the rental counter (its rental is {status}); it ends with POST /v1/bookings/{id}/return, not {action}"
            ),
        )),
    }
}
