//! Handover inspections and their verification.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{ApiError, AppState, Body, Caller, IdempotencyKey, path_id};
use crate::domain::inspection::{ChecklistItem, Signature};
use crate::domain::{Digest, Id, Name, Text};
use crate::store::inspections::{self, Inspection, NewInspection, Verification};

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    /// The asset leaves with the customer.
    Handover,
    /// The asset comes back.
    Return,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckItem {
    #[schema(example = "Lampu depan")]
    pub item: Name,
    pub ok: bool,
    pub note: Option<Text>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureIn {
    #[schema(example = "Budi Santoso")]
    pub signer: Name,
    /// SHA-256 of the signature image.
    pub digest: Digest,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInspection {
    #[schema(example = "CAR-001")]
    pub asset_id: Id,
    pub kind: Kind,
    #[schema(schema_with = checklist_schema)]
    pub checklist: Vec<CheckItem>,
    /// SHA-256 digests of the photos taken.
    #[serde(default)]
    #[schema(schema_with = photos_schema)]
    pub photos: Vec<Digest>,
    pub signature: SignatureIn,
    #[schema(maximum = 10_000_000)]
    pub odometer_km: Option<u32>,
    #[schema(maximum = 100)]
    pub fuel_percent: Option<u8>,
    pub remarks: Option<Text>,
}

/// Bounds that keep one inspection a few kilobytes.
const MAX_ITEMS: usize = 100;
const MAX_PHOTOS: usize = 64;
/// The highest odometer reading taken, as a vehicle record's `odometer_km`.
const MAX_ODOMETER_KM: u32 = 10_000_000;

fn checklist_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    super::schemas::array_of("CheckItem", 1, MAX_ITEMS)
}

fn photos_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    super::schemas::array_of("Digest", 0, MAX_PHOTOS)
}

#[utoipa::path(post, path = "/v1/inspections", tag = "inspections", request_body = CreateInspection,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 201, body = Inspection), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<CreateInspection>,
) -> Result<Response, ApiError> {
    let b = body.value;
    if b.checklist.is_empty() || b.checklist.len() > MAX_ITEMS {
        return Err(ApiError::field(
            "checklist",
            format!("expected 1 to {MAX_ITEMS} items"),
        ));
    }
    if b.photos.len() > MAX_PHOTOS {
        return Err(ApiError::field(
            "photos",
            format!("at most {MAX_PHOTOS} photos"),
        ));
    }
    if b.odometer_km.is_some_and(|km| km > MAX_ODOMETER_KM) {
        return Err(ApiError::field(
            "odometer_km",
            format!("expected 0 to {MAX_ODOMETER_KM}"),
        ));
    }
    if b.fuel_percent.is_some_and(|f| f > 100) {
        return Err(ApiError::field("fuel_percent", "expected 0 to 100"));
    }
    let new = NewInspection {
        asset_id: b.asset_id.into(),
        kind: match b.kind {
            Kind::Handover => "HANDOVER".into(),
            Kind::Return => "RETURN".into(),
        },
        checklist: b
            .checklist
            .into_iter()
            .map(|c| ChecklistItem {
                item: c.item.into(),
                ok: c.ok,
                note: c.note.map(String::from),
            })
            .collect(),
        photos: b.photos.into_iter().map(String::from).collect(),
        signature: Signature {
            signer: b.signature.signer.into(),
            digest: b.signature.digest.into(),
        },
        odometer_km: b.odometer_km.map(i64::from),
        fuel_percent: b.fuel_percent.map(i64::from),
        remarks: b.remarks.map(String::from),
    };
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| inspections::create(w, &d.id, new),
    )
    .await
}

#[utoipa::path(get, path = "/v1/inspections/{id}", tag = "inspections", responses((status = 200, body = Inspection)), security(("bearer" = [])))]
pub async fn get_inspection(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Inspection>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| inspections::get(c, &id)).await?))
}

#[utoipa::path(get, path = "/v1/inspections/{id}/verify", tag = "inspections",
    responses((status = 200, description = "valid tells whether the chain up to this record is intact", body = Verification)), security(("bearer" = [])))]
pub async fn verify(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Verification>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(
        s.store.read(move |c| inspections::verify(c, &id)).await?,
    ))
}
