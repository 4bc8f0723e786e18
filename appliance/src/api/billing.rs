//! Invoices, payments, credit notes and print requests.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{ApiError, AppState, Body, Caller, Fingerprint, IdempotencyKey, path_id};
use crate::domain::{Id, PaymentMethod, Rupiah, Text};
use crate::store::billing::{self, Invoice, LabourLine};
use crate::store::print_jobs::{self, PrintJob};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Labour {
    #[schema(example = "Ganti kampas rem depan")]
    pub description: Text,
    /// Rupiah, before PPN.
    #[schema(example = 150000)]
    pub amount: Rupiah,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueInvoice {
    pub work_order_id: Id,
    /// Labour lines; the parts dispensed to the work order are added automatically.
    #[serde(default)]
    pub labour: Vec<Labour>,
}

/// Lines on one invoice; a workshop invoice has a handful.
const MAX_LABOUR_LINES: usize = 50;

#[utoipa::path(post, path = "/v1/invoices", tag = "billing", request_body = IssueInvoice,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 201, body = Invoice), (status = 404, description = "no such work order", body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn issue(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<IssueInvoice>,
) -> Result<Response, ApiError> {
    let IssueInvoice {
        work_order_id,
        labour,
    } = body.value;
    if labour.len() > MAX_LABOUR_LINES {
        return Err(ApiError::field(
            "labour",
            format!("at most {MAX_LABOUR_LINES} lines"),
        ));
    }
    let labour: Vec<LabourLine> = labour
        .into_iter()
        .map(|l| LabourLine {
            description: l.description,
            amount: l.amount,
        })
        .collect();
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| billing::issue(w, &d.id, work_order_id.as_str(), &labour),
    )
    .await
}

#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "billing", responses((status = 200, body = Invoice), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_invoice(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Invoice>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| billing::get(c, &id)).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    /// CASH, EDC or QRIS.
    pub method: PaymentMethod,
    pub amount: Rupiah,
    /// The EDC approval code or QRIS transaction id. Required for QRIS; for EDC, leave it out
    /// and the box's card terminal takes the payment (`edc.device`), or type the code from the
    /// terminal's slip (the way while the terminal is down or not connected).
    pub reference: Option<Text>,
}

/// CASH needs no reference; QRIS needs its transaction id; EDC takes its approval code, or none
/// when the box's terminal is to take the payment.
impl utoipa::PartialSchema for Pay {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let amount = serde_json::json!({"$ref": "#/components/schemas/Rupiah"});
        let text = serde_json::json!({"$ref": "#/components/schemas/Text"});
        let optional = serde_json::json!({"oneOf": [{"type": "null"}, text]});
        super::schemas::from_json(serde_json::json!({"oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["method", "amount"],
                "properties": {"method": {"type": "string", "enum": [PaymentMethod::Cash.as_str()]}, "amount": amount,
                    "reference": optional}},
            {"type": "object", "additionalProperties": false, "required": ["method", "amount"],
                "properties": {"method": {"type": "string", "enum": [PaymentMethod::Edc.as_str()]}, "amount": amount,
                    "reference": optional},
                "description": "With reference: the approval code typed from the terminal's slip. Without: the box's card terminal (edc.device) takes the payment; 402 declined, 504 no answer in time, 503 terminal not answering, 502 unreadable answer, 409 edc_busy or edc_not_configured, nothing recorded in each."},
            {"type": "object", "additionalProperties": false, "required": ["method", "amount", "reference"],
                "properties": {"method": {"type": "string", "enum": [PaymentMethod::Qris.as_str()]}, "amount": amount,
                    "reference": text},
                "description": "The QRIS transaction id"},
        ]}))
    }
}
impl utoipa::ToSchema for Pay {}

#[utoipa::path(post, path = "/v1/invoices/{id}/payments", tag = "billing", request_body = Pay,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change (and one card charge)")),
    responses((status = 201, body = Invoice),
        (status = 402, description = "edc_declined: the card terminal declined the card; nothing recorded", body = super::error::ErrorBody),
        (status = 409, description = "more than the balance (overpayment); the card terminal busy (edc_busy) or not connected (edc_not_configured)", body = super::error::ErrorBody),
        (status = 502, description = "edc_protocol: the card terminal answered something unreadable; nothing recorded", body = super::error::ErrorBody),
        (status = 503, description = "edc_unavailable: the card terminal does not answer; nothing recorded", body = super::error::ErrorBody),
        (status = 504, description = "edc_timeout: no answer from the card terminal in edc.timeout_ms; nothing recorded", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn pay(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<Pay>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let Pay {
        method,
        amount,
        reference,
    } = body.value;
    if method == PaymentMethod::Edc && reference.is_none() {
        // The box's card terminal takes it (`api::edc`), when there is one.
        if !s.edc.configured() {
            return Err(super::edc::not_configured());
        }
        return super::edc::pay(s, caller, key, body.fingerprint, id, amount).await;
    }
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| billing::pay(w, &d.id, &id, method, amount, reference.as_ref()),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    #[schema(example = 50000)]
    pub amount: Rupiah,
    #[schema(example = "Diskon pelanggan tetap")]
    pub reason: Text,
}

#[utoipa::path(post, path = "/v1/invoices/{id}/credit-notes", tag = "billing", request_body = Credit,
    params(("Sentra-Manager" = Option<String>, Header, description = "<manager's staff id>:<PIN>, unless the staff session is a manager's", pattern = r"^[A-Za-z0-9_-]{1,64}:[0-9]{4,8}$")),
    responses((status = 201, body = Invoice),
        (status = 401, description = "wrong manager PIN", body = super::error::ErrorBody),
        (status = 403, description = "manager_required: a manager must approve a credit note", body = super::error::ErrorBody),
        (status = 409, description = "day_closed, over_credit", body = super::error::ErrorBody),
        (status = 429, description = "pin_locked", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn credit(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    manager: Result<super::Manager, ApiError>,
    body: Body<Credit>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    // A credit note is a manager's decision (the session's, or one approving on the spot).
    manager?;
    let Credit { amount, reason } = body.value;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| billing::credit(w, &d.id, &id, amount, &reason),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Void {
    #[schema(example = "Salah metode: pelanggan bayar QRIS, tercatat tunai")]
    pub reason: Text,
}

#[utoipa::path(post, path = "/v1/payments/{id}/void", tag = "billing", request_body = Void,
    params(("Sentra-Manager" = Option<String>, Header, description = "<manager's staff id>:<PIN>, unless the staff session is a manager's", pattern = r"^[A-Za-z0-9_-]{1,64}:[0-9]{4,8}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 200, description = "the payment's invoice, the payment under `voided`", body = Invoice),
        (status = 401, description = "wrong manager PIN", body = super::error::ErrorBody),
        (status = 403, description = "manager_required: a manager must approve a void", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "already_voided, day_closed, shift_closed (its shift's totals are final) or void_too_late (received on another day: issue a credit note)", body = super::error::ErrorBody),
        (status = 429, description = "pin_locked", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn void_payment(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    manager: Result<super::Manager, ApiError>,
    body: Body<Void>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    // A void is a manager's decision, like a credit note.
    let manager = manager?;
    let Void { reason } = body.value;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, d| billing::void_payment(w, &d.id, &id, &manager.staff_id, &reason),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PrintQuery {
    /// `invoice` (default), `receipt` (the payments and LUNAS when paid) or `delivery_note` (the
    /// surat jalan of the invoice's work order).
    #[param(schema_with = super::schemas::print_document)]
    pub document: Option<String>,
}

#[utoipa::path(post, path = "/v1/invoices/{id}/print", tag = "printing", params(PrintQuery),
    responses((status = 202, description = "queued; follow /v1/print-jobs/{id}", body = PrintJob)), security(("bearer" = [])))]
pub async fn print(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    fp: Fingerprint,
    Path(id): Path<String>,
    q: Result<Query<PrintQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(super::query_rejected)?;
    let id = path_id(&id)?;
    let (document, fp) = super::print_request(q.document, &super::schemas::PRINT_DOCUMENTS, fp)?;
    s.write(&caller, key, fp, StatusCode::ACCEPTED, move |w, _| {
        let invoice = billing::get(w.conn(), &id)?;
        if document == "delivery_note" {
            print_jobs::enqueue(w, "delivery_note", &invoice.work_order_id)
        } else {
            print_jobs::enqueue(w, &document, &id)
        }
    })
    .await
}

#[utoipa::path(get, path = "/v1/print-jobs/{id}", tag = "printing", responses((status = 200, body = PrintJob)), security(("bearer" = [])))]
pub async fn print_job(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PrintJob>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| print_jobs::get(c, &id)).await?))
}
