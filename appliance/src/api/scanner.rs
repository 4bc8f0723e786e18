//! Pick slips (the storekeeper's scan-to-dispense session) and the scanner's live state.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Body, Caller, Fingerprint, IdempotencyKey, path_id};
use crate::domain::Id;
use crate::scanner::ScannerStatus;
use crate::store::pick_slips::{self, PickSlip, ScanNotice};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenPickSlip {
    #[schema(example = "0190f5a2-7b7e-7c3d-9a51-3c1c2f0e4b11")]
    pub work_order_id: Id,
}

#[utoipa::path(post, path = "/v1/pick-slips", tag = "scanner", request_body = OpenPickSlip,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 201, description = "open: each scan now dispenses one unit to the work order", body = PickSlip),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "another slip is open, or the work order takes no parts", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn open(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<OpenPickSlip>,
) -> Result<Response, ApiError> {
    let wo = String::from(body.value.work_order_id);
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| pick_slips::open(w, &d.id, &wo),
    )
    .await
}

#[utoipa::path(post, path = "/v1/pick-slips/{id}/close", tag = "scanner",
    responses((status = 200, body = PickSlip), (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "already closed", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn close(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    fp: Fingerprint,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    s.write(&caller, key, fp, StatusCode::OK, move |w, d| {
        pick_slips::close(w, &d.id, &id)
    })
    .await
}

#[utoipa::path(get, path = "/v1/pick-slips/{id}", tag = "scanner",
    responses((status = 200, body = PickSlip), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_pick_slip(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PickSlip>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| pick_slips::get(c, &id)).await?))
}

/// The scanner's port state and counters, and its latest scans (newest first).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScannerView {
    #[serde(flatten)]
    pub status: ScannerStatus,
    pub recent: Vec<ScanNotice>,
}

#[utoipa::path(get, path = "/v1/scanner", tag = "scanner",
    responses((status = 200, body = ScannerView)), security(("bearer" = [])))]
pub async fn scanner(State(s): State<AppState>) -> Json<ScannerView> {
    Json(ScannerView {
        status: s.scanner.status(),
        recent: s.scanner.recent(),
    })
}
