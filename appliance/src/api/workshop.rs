//! Work orders, parts dispensing, stock and the catalogue.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{ApiError, AppState, Body, Caller, IdempotencyKey, path_id};
use crate::domain::work_order::Status;
use crate::domain::{Id, Name, Phone, Plate, Qty, Sku, Text};
use crate::store::master::{self, Asset, Mechanic, Part};
use crate::store::vehicles::Party;
use crate::store::workshop::{self, Dispensed, NewWorkOrder, StockLevel, WorkOrder};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkOrder {
    /// Needed unless `customer_id` (or a known vehicle's customer) names the customer.
    #[schema(example = "Budi Santoso")]
    pub customer_name: Option<Name>,
    /// Finds the customer with this phone, or is stored on the new one.
    #[schema(example = "0812 3456 7890")]
    pub customer_phone: Option<Phone>,
    /// Finds the vehicle with this plate (however typed), or makes one. Needed unless
    /// `vehicle_id` is given.
    #[schema(example = "B 1234 XYZ")]
    pub vehicle_plate: Option<Plate>,
    /// An existing vehicle record (instead of, or beside, `vehicle_plate`).
    pub vehicle_id: Option<Id>,
    /// An existing customer record (instead of finding one by phone).
    pub customer_id: Option<Id>,
    #[schema(example = "Rem bunyi saat mengerem")]
    pub complaint: Text,
    #[schema(example = "M1")]
    pub mechanic_id: Option<Id>,
}

#[utoipa::path(post, path = "/v1/work-orders", tag = "work orders", request_body = CreateWorkOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 201, body = WorkOrder), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create_work_order(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<CreateWorkOrder>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let new = NewWorkOrder {
        party: Party {
            vehicle_id: b.vehicle_id,
            customer_id: b.customer_id,
            customer_name: b.customer_name,
            customer_phone: b.customer_phone,
            vehicle_plate: b.vehicle_plate,
        },
        complaint: b.complaint,
        mechanic_id: b.mechanic_id,
    };
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| workshop::create(w, &d.id, &new),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only work orders in this status.
    #[param(schema_with = super::schemas::work_order_status)]
    pub status: Option<String>,
    /// At most this many, newest first (default 100, at most 500).
    #[param(schema_with = super::schemas::list_limit)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/work-orders", tag = "work orders", params(ListQuery),
    responses((status = 200, body = Vec<WorkOrder>)), security(("bearer" = [])))]
pub async fn list_work_orders(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<WorkOrder>>, ApiError> {
    let Query(q) = q.map_err(super::query_rejected)?;
    let status = q
        .status
        .as_deref()
        .map(|v| Status::parse(v).ok_or_else(|| ApiError::field("status", format!("{v:?} is not a status; expected OPEN, IN_PROGRESS, WAITING_PARTS, DONE, INVOICED or CANCELLED"))))
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=super::schemas::MAX_LIST).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("expected 1 to {}", super::schemas::MAX_LIST),
        ));
    }
    Ok(Json(
        s.store
            .read(move |c| workshop::list(c, status, limit))
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/work-orders/{id}", tag = "work orders", responses((status = 200, body = WorkOrder), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_work_order(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkOrder>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| workshop::get(c, &id)).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStatus {
    /// IN_PROGRESS, WAITING_PARTS, DONE or CANCELLED.
    #[schema(example = "IN_PROGRESS")]
    pub status: Status,
}

#[utoipa::path(post, path = "/v1/work-orders/{id}/status", tag = "work orders", request_body = SetStatus,
    responses((status = 200, body = WorkOrder), (status = 409, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn set_status(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<SetStatus>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let to = body.value.status;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, _| workshop::set_status(w, &id, to),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    #[schema(example = "M2")]
    pub mechanic_id: Id,
}

#[utoipa::path(post, path = "/v1/work-orders/{id}/assign", tag = "work orders", request_body = Assign,
    responses((status = 200, body = WorkOrder), (status = 409, description = "the work order is closed", body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn assign(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<Assign>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let m = body.value.mechanic_id;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, _| workshop::assign(w, &id, &m),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dispense {
    #[schema(example = "BRK-PAD-FR")]
    pub sku: Sku,
    #[schema(example = 1)]
    pub qty: Qty,
}

#[utoipa::path(post, path = "/v1/work-orders/{id}/parts", tag = "stock", request_body = Dispense,
    responses((status = 201, body = Dispensed), (status = 409, description = "would take stock below zero", body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn dispense(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<Dispense>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let Dispense { sku, qty } = body.value;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| workshop::dispense(w, &d.id, &id, &sku, qty),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    #[schema(example = "OIL-10W40-1L")]
    pub sku: Sku,
    #[schema(example = 24)]
    pub qty: Qty,
    /// Supplier's delivery note or PO number.
    #[schema(example = "SJ-2026-0113")]
    pub reference: Option<Text>,
}

#[utoipa::path(post, path = "/v1/stock/receipts", tag = "stock", request_body = Receipt,
    responses((status = 201, body = StockLevel), (status = 422, description = "invalid_field sku: no such part in the catalogue", body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn receive(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<Receipt>,
) -> Result<Response, ApiError> {
    let Receipt {
        sku,
        qty,
        reference,
    } = body.value;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| workshop::receive(w, &d.id, &sku, qty, reference.as_ref()),
    )
    .await
}

#[utoipa::path(get, path = "/v1/stock/{sku}", tag = "stock", responses((status = 200, body = StockLevel), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn stock(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<StockLevel>, ApiError> {
    let sku = Sku::parse(sku).map_err(|e| ApiError::field("sku", e.0))?;
    Ok(Json(
        s.store
            .read(move |c| workshop::stock_level(c, sku.as_str()))
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/parts", tag = "catalogue", responses((status = 200, body = Vec<Part>)), security(("bearer" = [])))]
pub async fn parts(State(s): State<AppState>) -> Result<Json<Vec<Part>>, ApiError> {
    Ok(Json(s.store.read(master::parts).await?))
}

#[utoipa::path(get, path = "/v1/mechanics", tag = "catalogue", responses((status = 200, body = Vec<Mechanic>)), security(("bearer" = [])))]
pub async fn mechanics(State(s): State<AppState>) -> Result<Json<Vec<Mechanic>>, ApiError> {
    Ok(Json(s.store.read(master::mechanics).await?))
}

#[utoipa::path(get, path = "/v1/assets", tag = "catalogue", responses((status = 200, body = Vec<Asset>)), security(("bearer" = [])))]
pub async fn assets(State(s): State<AppState>) -> Result<Json<Vec<Asset>>, ApiError> {
    Ok(Json(s.store.read(master::assets).await?))
}
