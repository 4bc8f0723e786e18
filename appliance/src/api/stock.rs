//! Stock that matches the shelf: adjustments with a reason, cycle counts by scanning, and unused
//! parts returned from a work order. Rules in `domain::stock`, SQL in `store::stock`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{ApiError, AppState, Body, Caller, Fingerprint, IdempotencyKey, path_id};
use crate::domain::{Counted, Note, Qty, Role, Sku};
use crate::scanner::decode;
use crate::store::stock::{self, Adjusted, COUNT_SKUS_MAX, CountedPart, Returned, StockCount};
use sentra_protocol::workshop::StockAdjustment;

/// The longest barcode a counted line may carry, in bytes.
pub const BARCODE_MAX: usize = 128;

/// May this device change stock levels by hand (an adjustment, applying a count)? The
/// storekeeper's and the admin's devices; what they change needs a manager's approval besides
/// ([`super::Manager`], checked by the handler once the request has parsed).
pub(super) fn may_adjust_stock(caller: &Caller) -> Result<(), ApiError> {
    match caller.0.role {
        Role::Storekeeper | Role::Admin => Ok(()),
        other => Err(ApiError::forbidden(format!(
            "a {} device may not adjust stock; the storekeeper's terminal may, with a manager's approval",
            other.as_str()
        ))),
    }
}

/// The reasons a person gives for an adjustment (a work-order return has its own route).
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AdjustReason {
    Count,
    Damage,
    ReturnToSupplier,
}

impl From<AdjustReason> for StockAdjustment {
    fn from(r: AdjustReason) -> Self {
        match r {
            AdjustReason::Count => StockAdjustment::Count,
            AdjustReason::Damage => StockAdjustment::Damage,
            AdjustReason::ReturnToSupplier => StockAdjustment::ReturnToSupplier,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    #[schema(example = "BRK-PAD-FR")]
    pub sku: Sku,
    /// COUNT: set the level to `counted`; DAMAGE, RETURN_TO_SUPPLIER: take `qty` away.
    pub reason: AdjustReason,
    /// For DAMAGE and RETURN_TO_SUPPLIER: how many leave the shelf.
    #[schema(example = 1)]
    pub qty: Option<Qty>,
    /// For COUNT: how many the shelf holds.
    pub counted: Option<Counted>,
    #[schema(example = "Kardus basah, 1 pcs rusak")]
    pub note: Option<Note>,
}

#[utoipa::path(post, path = "/v1/stock/adjustments", tag = "stock", request_body = Adjust,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change"),
        ("Sentra-Manager" = Option<String>, Header, description = "<manager's staff id>:<PIN>, unless the staff session is a manager's", pattern = r"^[A-Za-z0-9_-]{1,64}:[0-9]{4,8}$")),
    responses((status = 201, body = Adjusted),
        (status = 401, description = "wrong manager PIN", body = super::error::ErrorBody),
        (status = 403, description = "manager_required: a manager must approve an adjustment", body = super::error::ErrorBody),
        (status = 429, description = "pin_locked", body = super::error::ErrorBody),
        (status = 409, description = "insufficient_stock (would go below zero) or no_difference (a COUNT that matches)", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn adjust(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    manager: Result<super::Manager, ApiError>,
    body: Body<Adjust>,
) -> Result<Response, ApiError> {
    may_adjust_stock(&caller)?;
    let Adjust {
        sku,
        reason,
        qty,
        counted,
        note,
    } = body.value;
    let amount = match (reason, qty, counted) {
        (AdjustReason::Count, None, Some(c)) => c.get(),
        (AdjustReason::Count, _, _) => {
            return Err(ApiError::field(
                "counted",
                "a COUNT gives `counted` (what the shelf holds) and no `qty`",
            ));
        }
        (_, Some(q), None) => q.get(),
        (_, _, _) => {
            return Err(ApiError::field(
                "qty",
                "DAMAGE and RETURN_TO_SUPPLIER give `qty` (how many leave the shelf) and no `counted`",
            ));
        }
    };
    manager?;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| stock::adjust(w, &d.id, &sku, reason.into(), amount, note.as_ref()),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnParts {
    #[schema(example = "BRK-PAD-FR")]
    pub sku: Sku,
    #[schema(example = 1)]
    pub qty: Qty,
}

#[utoipa::path(post, path = "/v1/work-orders/{id}/returns", tag = "stock", request_body = ReturnParts,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 201, body = Returned),
        (status = 409, description = "more_than_dispensed, or already_invoiced", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn return_parts(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<ReturnParts>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let ReturnParts { sku, qty } = body.value;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| stock::return_parts(w, &d.id, &id, &sku, qty),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCount {
    /// Only these SKUs (1-500); leave out to count every part.
    #[schema(max_items = 500, min_items = 1)]
    pub skus: Option<Vec<Sku>>,
    #[schema(example = "Rak A, oli")]
    pub note: Option<Note>,
}

#[utoipa::path(post, path = "/v1/stock-counts", tag = "stock", request_body = OpenCount,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 201, body = StockCount), (status = 409, description = "count_open: another count is open", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn open_count(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<OpenCount>,
) -> Result<Response, ApiError> {
    let OpenCount { skus, note } = body.value;
    if let Some(list) = &skus
        && (list.is_empty() || list.len() > COUNT_SKUS_MAX)
    {
        return Err(ApiError::field(
            "skus",
            format!("list 1 to {COUNT_SKUS_MAX} SKUs, or leave it out to count every part"),
        ));
    }
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| stock::open_count(w, &d.id, skus.as_deref(), note.as_ref()),
    )
    .await
}

#[utoipa::path(get, path = "/v1/stock-counts/{id}", tag = "stock",
    responses((status = 200, body = StockCount), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_count(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StockCount>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| stock::get_count(c, &id)).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountLineIn {
    /// The part by SKU; give this or `barcode`.
    #[schema(example = "OIL-10W40-1L")]
    pub sku: Option<Sku>,
    /// The part by its barcode as scanned (AIM prefix, GS1 and check digits as the scanner reads them).
    #[schema(example = "8991234567891", min_length = 1, max_length = 128)]
    pub barcode: Option<String>,
    /// How many to add to this part's count (default 1, one scan); 0 records "none on the shelf".
    pub qty: Option<Counted>,
}

#[utoipa::path(post, path = "/v1/stock-counts/{id}/lines", tag = "stock", request_body = CountLineIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 200, body = StockCount, description = "the count with its differences"),
        (status = 409, description = "count_closed", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn add_line(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<CountLineIn>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let CountLineIn { sku, barcode, qty } = body.value;
    let part = match (sku, barcode) {
        (Some(sku), None) => CountedPart::Sku(sku),
        (None, Some(code)) => {
            if code.is_empty() || code.len() > BARCODE_MAX {
                return Err(ApiError::field(
                    "barcode",
                    format!("a barcode is 1 to {BARCODE_MAX} bytes"),
                ));
            }
            let scan = decode::decode(code.as_bytes())
                .map_err(|e| ApiError::field("barcode", format!("{} ({})", e, e.code())))?;
            CountedPart::Barcode {
                code: decode::printable(code.as_bytes()),
                keys: scan.lookup_keys(),
            }
        }
        _ => {
            return Err(ApiError::field(
                "sku",
                "name the part by `sku` or by `barcode`, one of them",
            ));
        }
    };
    let qty = qty.map_or(1, Counted::get);
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, _| stock::add_count_line(w, &id, &part, qty),
    )
    .await
}

#[utoipa::path(post, path = "/v1/stock-counts/{id}/apply", tag = "stock",
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change"),
        ("Sentra-Manager" = Option<String>, Header, description = "<manager's staff id>:<PIN>, unless the staff session is a manager's", pattern = r"^[A-Za-z0-9_-]{1,64}:[0-9]{4,8}$")),
    responses((status = 200, body = StockCount, description = "APPLIED; applying an APPLIED count again changes nothing"),
        (status = 401, description = "wrong manager PIN", body = super::error::ErrorBody),
        (status = 403, description = "manager_required: a manager must approve applying a count", body = super::error::ErrorBody),
        (status = 429, description = "pin_locked", body = super::error::ErrorBody),
        (status = 409, description = "count_closed (cancelled) or count_stale", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn apply_count(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    fp: Fingerprint,
    Path(id): Path<String>,
    manager: Result<super::Manager, ApiError>,
) -> Result<Response, ApiError> {
    may_adjust_stock(&caller)?;
    let id = path_id(&id)?;
    manager?;
    s.write(&caller, key, fp, StatusCode::OK, move |w, d| {
        stock::apply_count(w, &d.id, &id)
    })
    .await
}

#[utoipa::path(post, path = "/v1/stock-counts/{id}/cancel", tag = "stock",
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 200, body = StockCount),
        (status = 409, description = "count_closed", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn cancel_count(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    fp: Fingerprint,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    s.write(&caller, key, fp, StatusCode::OK, move |w, d| {
        stock::cancel_count(w, &d.id, &id)
    })
    .await
}
