//! An EDC payment taken by the box's card terminal: `POST /v1/invoices/{id}/payments` with method
//! `EDC` and no `reference` (`billing::pay` hands it here when `edc.device` is set).
//!
//! Order, so that a card is charged at most once per request and only what can be recorded:
//! 1. a retry with the same `Idempotency-Key` gets the stored answer and never reaches the
//!    terminal; the same key with another body is refused;
//! 2. the invoice must exist and owe at least the amount (404, 409 `overpayment`), checked before
//!    the card is charged;
//! 3. one sale at a time on the terminal (409 `edc_busy`);
//! 4. the sale runs on its own task, so a client that hangs up or a request timeout does not cut
//!    it: an approval is always recorded (the payment with the approval code as its reference,
//!    its outbox event, and the idempotent answer, in one transaction) and a retry with the key
//!    then gets it;
//! 5. declined: 402 `edc_declined`; no answer in time: 504 `edc_timeout`; terminal busy: 409
//!    `edc_busy`; not answering: 503 `edc_unavailable`; unreadable answer: 502 `edc_protocol`.
//!    Nothing is recorded in any of them; the cashier retries, or takes the card on the terminal
//!    by hand and types its approval code (the fallback).

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use super::{ApiError, AppState, Caller, Fingerprint, IdempotencyKey, json_response};
use crate::domain::{PaymentMethod, Rupiah, Text};
use crate::edc::{EdcError, SaleOutcome};
use crate::store::billing;
use crate::store::idempotency;

/// The route's path as axum matches it (its request timeout is stretched to the terminal's).
pub const PAY_ROUTE: &str = "/v1/invoices/{id}/payments";

/// 409 when the box has no terminal: the request is valid, the box cannot do it.
pub fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "edc_not_configured",
        "no card terminal is connected to this box (edc.device); take the card on the terminal and send its approval code as reference",
    )
}

pub async fn pay(
    s: AppState,
    caller: Caller,
    key: IdempotencyKey,
    fp: Fingerprint,
    invoice_id: String,
    amount: Rupiah,
) -> Result<Response, ApiError> {
    // 1. A retry of a request already answered.
    if let Some(k) = key.0.clone() {
        let (device, hash) = (caller.0.id.clone(), fp.0.clone());
        let stored = s
            .store
            .write(move |w| idempotency::replay(w, &device, &k, &hash))
            .await?;
        if let Some(a) = stored {
            let mut r = json_response(
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK),
                a.body,
            );
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(r);
        }
    }
    // 2. What the invoice owes, before any card is charged.
    let id = invoice_id.clone();
    let invoice = s.store.read(move |c| billing::get(c, &id)).await?;
    if amount.get() > invoice.balance {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "overpayment",
            format!(
                "invoice {} has {} rupiah outstanding; a payment of {} is more than that",
                invoice.number,
                invoice.balance.max(0),
                amount.get()
            ),
        ));
    }
    // 3. The terminal, if it is free.
    let Some((terminal, guard)) = s.edc.begin() else {
        return Err(busy(
            "the card terminal is taking another payment; wait for it to finish, then retry",
        ));
    };
    // 4. The sale and its record, on a task of their own.
    let reference = uuid::Uuid::now_v7().simple().to_string();
    let number = invoice.number.clone();
    let task = tokio::spawn(async move {
        let _guard = guard;
        tracing::info!(invoice = %number, amount = amount.get(), %reference, "EDC sale sent to the terminal");
        let outcome = terminal.sale(&reference, amount.get()).await;
        match outcome {
            Ok(SaleOutcome::Approved(a)) => {
                tracing::info!(invoice = %number, amount = amount.get(), approval = %a.approval_code, card = %a.masked_card, terminal = %a.terminal_id, "EDC sale approved");
                let code = Text::parse(a.approval_code.clone())
                    .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "edc_protocol", e.0))?;
                let written = s
                    .write(&caller, key, fp, StatusCode::CREATED, move |w, d| {
                        billing::pay(
                            w,
                            &d.id,
                            &invoice_id,
                            PaymentMethod::Edc,
                            amount,
                            Some(&code),
                        )
                    })
                    .await;
                if let Err(e) = &written {
                    // Charged but not recorded (the invoice changed meanwhile, or the store
                    // failed): the cashier must void it on the terminal.
                    tracing::error!(invoice = %number, approval = %a.approval_code, error = %e.message, "EDC sale approved but not recorded; void it on the terminal");
                    return Err(ApiError::new(
                        e.status,
                        e.code,
                        format!(
                            "{}; the terminal approved {} rupiah (approval code {}, card {}): void that sale on the terminal",
                            e.message,
                            amount.get(),
                            a.approval_code,
                            a.masked_card
                        ),
                    ));
                }
                written
            }
            Ok(SaleOutcome::Declined(d)) => {
                tracing::info!(invoice = %number, code = %d.code, "EDC sale declined");
                Err(ApiError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "edc_declined",
                    format!(
                        "the card was declined ({} {}); nothing was recorded; try another card or method",
                        d.code, d.message
                    ),
                ))
            }
            Err(e) => {
                tracing::warn!(invoice = %number, error = %e, "EDC sale without an answer");
                Err(error(&e))
            }
        }
    });
    match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "EDC sale task failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the payment could not be completed; check the terminal's last slip before retrying",
            ))
        }
    }
}

fn busy(message: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "edc_busy", message)
}

fn error(e: &EdcError) -> ApiError {
    match e {
        EdcError::Busy => busy(
            "the card terminal is busy with another transaction; finish it on the terminal, then retry",
        ),
        EdcError::Timeout(ms) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "edc_timeout",
            format!(
                "the card terminal gave no answer within {} s; nothing was recorded. If it printed an approval slip, send the payment with that approval code as reference; otherwise retry",
                ms / 1000
            ),
        ),
        EdcError::Unavailable(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "edc_unavailable",
            format!(
                "{why}; nothing was recorded. Take the card on the terminal by hand and send its approval code as reference"
            ),
        ),
        EdcError::Protocol(why) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "edc_protocol",
            format!(
                "the card terminal answered something unreadable ({why}); nothing was recorded. Check the terminal: if it printed an approval slip, send that approval code as reference"
            ),
        ),
    }
}
