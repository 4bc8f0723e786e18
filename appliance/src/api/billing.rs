//! Invoices, payments, credit notes and print requests.

use axum::Json;
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
    #[schema(value_type = String, example = "Ganti kampas rem depan")]
    pub description: Text,
    /// Rupiah, before PPN.
    #[schema(value_type = i64, example = 150000)]
    pub amount: Rupiah,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueInvoice {
    #[schema(value_type = String)]
    pub work_order_id: Id,
    /// Labour lines; the parts dispensed to the work order are added automatically.
    #[serde(default)]
    pub labour: Vec<Labour>,
}

/// Lines on one invoice; a workshop invoice has a handful.
const MAX_LABOUR_LINES: usize = 50;

#[utoipa::path(post, path = "/v1/invoices", tag = "billing", request_body = IssueInvoice,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 201, body = Invoice), (status = 409, body = super::error::ErrorBody)), security(("bearer" = [])))]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    /// CASH, EDC or QRIS.
    #[schema(value_type = String, example = "QRIS")]
    pub method: PaymentMethod,
    #[schema(value_type = i64, example = 266400)]
    pub amount: Rupiah,
    /// The EDC approval code or QRIS transaction id (required for both).
    #[schema(value_type = Option<String>, example = "QR-20261122-000123")]
    pub reference: Option<Text>,
}

#[utoipa::path(post, path = "/v1/invoices/{id}/payments", tag = "billing", request_body = Pay,
    responses((status = 201, body = Invoice), (status = 409, description = "more than the balance", body = super::error::ErrorBody)), security(("bearer" = [])))]
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
    #[schema(value_type = i64, example = 50000)]
    pub amount: Rupiah,
    #[schema(value_type = String, example = "Diskon pelanggan tetap")]
    pub reason: Text,
}

#[utoipa::path(post, path = "/v1/invoices/{id}/credit-notes", tag = "billing", request_body = Credit,
    responses((status = 201, body = Invoice)), security(("bearer" = [])))]
pub async fn credit(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<Credit>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PrintQuery {
    /// `invoice` (default), `receipt` (the payments and LUNAS when paid) or `delivery_note` (the
    /// surat jalan of the invoice's work order).
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
    Query(q): Query<PrintQuery>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let document = q.document.unwrap_or_else(|| "invoice".into());
    if !["invoice", "receipt", "delivery_note"].contains(&document.as_str()) {
        return Err(ApiError::field(
            "document",
            format!("{document:?} is not a document; expected invoice, receipt or delivery_note"),
        ));
    }
    // The fingerprint covers the path only; the document is part of what was asked.
    let fp = Fingerprint(format!("{}:{document}", fp.0));
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
