//! Records both sides edit: customers and vehicles (fields merged with the cloud by
//! last-writer-wins), and the shared documents — work-order notes and inspection remarks —
//! merged with the cloud's edits by automerge. The rules are in `store::shared`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use sentra_protocol::doc::{DocEdit, DocRecord, DocView};
use sentra_protocol::record::RecordKind;

use super::{ApiError, AppState, Body, Caller, IdempotencyKey, path_id};
use crate::store::shared::{self, Record};

/// The fields of a customer (`name`, `phone`, `email`, `address`; `membership_tier` is the
/// cloud's) or a vehicle (`plate`, `customer_id`, `make`, `model`, `color`, `year`,
/// `odometer_km`); `null` clears a field.
type Fields = BTreeMap<String, serde_json::Value>;

/// The document's name for a customer's fields (see `schemas::record_fields`).
pub struct CustomerFields;
impl utoipa::PartialSchema for CustomerFields {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schemas::customer_fields()
    }
}
impl utoipa::ToSchema for CustomerFields {}

/// The document's name for a vehicle's fields (see `schemas::record_fields`).
pub struct VehicleFields;
impl utoipa::PartialSchema for VehicleFields {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schemas::vehicle_fields()
    }
}
impl utoipa::ToSchema for VehicleFields {}

async fn create(
    s: AppState,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<Fields>,
    kind: RecordKind,
) -> Result<Response, ApiError> {
    let fields = body.value;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, _| shared::set_fields(w, kind, None, fields),
    )
    .await
}

async fn update(
    s: AppState,
    caller: Caller,
    key: IdempotencyKey,
    id: String,
    body: Body<Fields>,
    kind: RecordKind,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let fields = body.value;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, _| shared::set_fields(w, kind, Some(&id), fields),
    )
    .await
}

async fn read(s: AppState, id: String, kind: RecordKind) -> Result<Json<Record>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(
        s.store.read(move |c| shared::get(c, kind, &id)).await?,
    ))
}

#[utoipa::path(post, path = "/v1/customers", tag = "customers", request_body(content = CustomerFields, description = "fields: name, phone, email, address"),
    responses((status = 201, body = Record), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create_customer(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<Fields>,
) -> Result<Response, ApiError> {
    create(s, caller, key, body, RecordKind::Customer).await
}

#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers", responses((status = 200, body = Record)), security(("bearer" = [])))]
pub async fn get_customer(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Record>, ApiError> {
    read(s, id, RecordKind::Customer).await
}

#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers", request_body(content = CustomerFields, description = "the fields to set; null clears one"),
    responses((status = 200, body = Record), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn patch_customer(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<Fields>,
) -> Result<Response, ApiError> {
    update(s, caller, key, id, body, RecordKind::Customer).await
}

#[utoipa::path(post, path = "/v1/vehicles", tag = "vehicles", request_body(content = VehicleFields, description = "fields: plate, customer_id, make, model, color, year, odometer_km"),
    responses((status = 201, body = Record), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create_vehicle(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<Fields>,
) -> Result<Response, ApiError> {
    create(s, caller, key, body, RecordKind::Vehicle).await
}

#[utoipa::path(get, path = "/v1/vehicles/{id}", tag = "vehicles", responses((status = 200, body = Record)), security(("bearer" = [])))]
pub async fn get_vehicle(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Record>, ApiError> {
    read(s, id, RecordKind::Vehicle).await
}

#[utoipa::path(patch, path = "/v1/vehicles/{id}", tag = "vehicles", request_body(content = VehicleFields, description = "the fields to set; null clears one"),
    responses((status = 200, body = Record), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn patch_vehicle(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<Fields>,
) -> Result<Response, ApiError> {
    update(s, caller, key, id, body, RecordKind::Vehicle).await
}

/// What a document edit carries: the whole new notes text (merged into the shared text as the
/// difference from what this box has), and checklist items to set or (with `null`) remove.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditDocument {
    pub notes: Option<String>,
    #[serde(default)]
    pub checklist: BTreeMap<String, Option<bool>>,
}

impl utoipa::PartialSchema for EditDocument {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schemas::edit_document()
    }
}
impl utoipa::ToSchema for EditDocument {}

/// A document as this box renders it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DocumentView {
    pub notes: String,
    #[schema(value_type = Object)]
    pub checklist: BTreeMap<String, bool>,
}

impl From<DocView> for DocumentView {
    fn from(v: DocView) -> Self {
        DocumentView {
            notes: v.notes,
            checklist: v.checklist,
        }
    }
}

async fn read_document(
    s: AppState,
    id: String,
    record: DocRecord,
) -> Result<Json<DocumentView>, ApiError> {
    let id = path_id(&id)?;
    let view = s
        .store
        .read(move |c| shared::document(c, record, &id))
        .await?;
    Ok(Json(view.into()))
}

async fn write_document(
    s: AppState,
    caller: Caller,
    key: IdempotencyKey,
    id: String,
    body: Body<EditDocument>,
    record: DocRecord,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let edit = DocEdit {
        notes: body.value.notes,
        checklist: body.value.checklist,
    };
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, _| shared::edit_document(w, record, &id, &edit).map(DocumentView::from),
    )
    .await
}

#[utoipa::path(get, path = "/v1/work-orders/{id}/notes", tag = "work orders", responses((status = 200, body = DocumentView)), security(("bearer" = [])))]
pub async fn get_notes(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DocumentView>, ApiError> {
    read_document(s, id, DocRecord::WorkOrder).await
}

#[utoipa::path(put, path = "/v1/work-orders/{id}/notes", tag = "work orders", request_body = EditDocument,
    responses((status = 200, body = DocumentView), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn put_notes(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<EditDocument>,
) -> Result<Response, ApiError> {
    write_document(s, caller, key, id, body, DocRecord::WorkOrder).await
}

#[utoipa::path(get, path = "/v1/inspections/{id}/remarks", tag = "inspections", responses((status = 200, body = DocumentView)), security(("bearer" = [])))]
pub async fn get_remarks(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DocumentView>, ApiError> {
    read_document(s, id, DocRecord::Inspection).await
}

#[utoipa::path(put, path = "/v1/inspections/{id}/remarks", tag = "inspections", request_body = EditDocument,
    responses((status = 200, body = DocumentView), (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn put_remarks(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<EditDocument>,
) -> Result<Response, ApiError> {
    write_document(s, caller, key, id, body, DocRecord::Inspection).await
}
