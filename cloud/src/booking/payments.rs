//! Payments: the gateway trait for card and e-wallet pre-authorisation (Xendit / Midtrans shape:
//! authorise a hold on the customer's limit, capture on damage or late return, release the rest),
//! its sandbox implementation, and `POST /v1/payments/webhook`, where the gateway tells us a
//! payment was authorised.
//!
//! Invariants:
//! - a webhook is acted on only if its HMAC-SHA256 (over `timestamp.body`, key
//!   `payments.webhook_secret`) verifies in constant time and its timestamp is within
//!   [`WEBHOOK_TOLERANCE_SECONDS`]; anything else is 401 and changes nothing; with no secret configured
//!   every webhook is refused;
//! - a webhook is idempotent by the gateway's `event_id`: a redelivery gets the stored outcome;
//! - an authorisation for a lapsed hold never takes the slot: the hold is refused, flagged for
//!   refund, and the authorisation released at the gateway.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::http::{ApiError, AppState, parse_json};

pub const TIMESTAMP_HEADER: &str = "x-sentra-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-sentra-webhook-signature";
/// How old (or how far ahead) a webhook's timestamp may be: a captured webhook cannot be
/// replayed later, and redeliveries carry a fresh signature.
pub const WEBHOOK_TOLERANCE_SECONDS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway refused: {0}")]
    Refused(String),
}

/// A pre-authorisation as the gateways describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorisation {
    pub id: String,
    pub amount: i64,
    pub state: AuthorisationState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorisationState {
    Authorised,
    Captured,
    Released,
}

/// Card and e-wallet pre-authorisation, as Xendit and Midtrans offer it. Amounts are rupiah.
/// Only `release` is called by the service so far (a refused late payment): authorising at
/// checkout and capturing after `COMPLETED` belong to the rental-completion flow, not built yet.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "authorise and capture await the rental-completion flow"
    )
)]
pub trait PaymentGateway: Send + Sync {
    /// Holds `amount` on the customer's limit for `reference` (our booking id).
    fn authorise(&self, reference: &str, amount: i64) -> Result<Authorisation, GatewayError>;
    /// Takes `amount` (≤ the authorised amount) of an authorisation: damage, late return.
    fn capture(&self, id: &str, amount: i64) -> Result<Authorisation, GatewayError>;
    /// Gives the authorisation back (at most 24 h after `COMPLETED`, or at once for a refused
    /// late payment). Releasing twice is harmless.
    fn release(&self, id: &str) -> Result<Authorisation, GatewayError>;
}

/// The sandbox gateway for tests and demos: authorises anything positive, remembers every
/// authorisation in memory.
#[derive(Default)]
pub struct SandboxGateway {
    authorisations: Mutex<Vec<Authorisation>>,
}

impl SandboxGateway {
    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Authorisation) -> Result<(), GatewayError>,
    ) -> Result<Authorisation, GatewayError> {
        let mut all = self
            .authorisations
            .lock()
            .map_err(|_| GatewayError::Refused("sandbox state poisoned".to_owned()))?;
        match all.iter_mut().find(|auth| auth.id == id) {
            Some(auth) => {
                change(auth)?;
                Ok(auth.clone())
            }
            None => {
                // A payment the gateway made outside this process (a real webhook's payment):
                // the sandbox accepts releasing it.
                let mut auth = Authorisation {
                    id: id.to_owned(),
                    amount: 0,
                    state: AuthorisationState::Authorised,
                };
                change(&mut auth)?;
                all.push(auth.clone());
                Ok(auth)
            }
        }
    }
}

impl PaymentGateway for SandboxGateway {
    fn authorise(&self, reference: &str, amount: i64) -> Result<Authorisation, GatewayError> {
        if amount <= 0 {
            return Err(GatewayError::Refused(format!(
                "amount {amount} must be positive"
            )));
        }
        let auth = Authorisation {
            id: format!("sandbox-{reference}"),
            amount,
            state: AuthorisationState::Authorised,
        };
        self.authorisations
            .lock()
            .map_err(|_| GatewayError::Refused("sandbox state poisoned".to_owned()))?
            .push(auth.clone());
        Ok(auth)
    }

    fn capture(&self, id: &str, amount: i64) -> Result<Authorisation, GatewayError> {
        self.update(id, |auth| {
            if auth.state != AuthorisationState::Authorised || amount > auth.amount {
                return Err(GatewayError::Refused(format!(
                    "cannot capture {amount} of {id}"
                )));
            }
            auth.state = AuthorisationState::Captured;
            auth.amount = amount;
            Ok(())
        })
    }

    fn release(&self, id: &str) -> Result<Authorisation, GatewayError> {
        self.update(id, |auth| {
            if auth.state == AuthorisationState::Captured {
                return Err(GatewayError::Refused(format!("{id} was captured")));
            }
            auth.state = AuthorisationState::Released;
            Ok(())
        })
    }
}

fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized(format!("header {name} is missing")))
    };
    let timestamp = header(TIMESTAMP_HEADER)?;
    let signature = header(SIGNATURE_HEADER)?;
    let seconds: u64 = timestamp
        .parse()
        .map_err(|_| ApiError::Unauthorized(format!("{TIMESTAMP_HEADER} is not Unix seconds")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    if now.abs_diff(seconds) > WEBHOOK_TOLERANCE_SECONDS {
        return Err(ApiError::Unauthorized(format!(
            "webhook timestamp {seconds} is more than {WEBHOOK_TOLERANCE_SECONDS} s from now"
        )));
    }
    let signature = hex::decode(signature)
        .map_err(|_| ApiError::Unauthorized("webhook signature is not hex".to_owned()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| ApiError::Unauthorized("webhook signature does not verify".to_owned()))
}

#[derive(Debug, Deserialize)]
struct Webhook {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    booking_id: String,
    payment_ref: String,
}

/// `POST /v1/payments/webhook`: see the module doc. 200 `{event_id, outcome, duplicate}` for
/// every verified event, so the gateway stops redelivering.
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let booking = &state.booking;
    let Some(secret) = &booking.settings.webhook_secret else {
        return Err(ApiError::Unauthorized(
            "payment webhooks are not configured (payments.webhook_secret)".to_owned(),
        ));
    };
    if let Err(error) = verify(secret.expose(), &headers, &body) {
        tracing::warn!(%error, "payment webhook refused");
        return Err(error);
    }
    let event: Webhook = parse_json(&body)?;
    if event.event_id.is_empty() || event.event_id.len() > 128 {
        return Err(ApiError::Invalid(
            "event_id: expected 1-128 characters".to_owned(),
        ));
    }
    let stored: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM payment_webhooks WHERE event_id = $1")
            .bind(&event.event_id)
            .fetch_optional(&booking.db)
            .await
            .map_err(|error| ApiError::database(&error))?;
    if let Some(outcome) = stored {
        return Ok(Json(
            json!({"event_id": event.event_id, "outcome": outcome, "duplicate": true}),
        ));
    }
    let outcome = match event.kind.as_str() {
        "payment.authorized" => {
            match super::http::confirm_payment(booking, &event.booking_id, &event.payment_ref).await
            {
                Ok(_) => "confirmed",
                Err(ApiError::Conflict {
                    code: "hold_expired",
                    ..
                }) => {
                    if let Err(error) = booking.gateway.release(&event.payment_ref) {
                        tracing::error!(%error, payment_ref = %event.payment_ref, "releasing a late payment failed; refund it by hand");
                    }
                    "refund_due"
                }
                Err(ApiError::Conflict { .. } | ApiError::NotFound(_)) => "refused",
                Err(error) => return Err(error),
            }
        }
        _ => "ignored",
    };
    let booking_id = uuid::Uuid::parse_str(&event.booking_id)
        .ok()
        .map(|id| id.hyphenated().to_string());
    sqlx::query(
        "INSERT INTO payment_webhooks (event_id, booking_id, kind, outcome)
         VALUES ($1, $2::uuid, $3, $4) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event.event_id)
    .bind(booking_id)
    .bind(&event.kind)
    .bind(outcome)
    .execute(&booking.db)
    .await
    .map_err(|error| ApiError::database(&error))?;
    Ok(Json(
        json!({"event_id": event.event_id, "outcome": outcome, "duplicate": false}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hex(HMAC-SHA256(secret, timestamp "." body))`: what the gateway sends in
    /// [`SIGNATURE_HEADER`].
    fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_verify_only_with_the_secret_body_and_time() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            .to_string();
        let body = br#"{"event_id":"e1"}"#;
        let headers = |timestamp: &str, signature: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(TIMESTAMP_HEADER, timestamp.parse().expect("ascii"));
            headers.insert(SIGNATURE_HEADER, signature.parse().expect("ascii"));
            headers
        };
        let good = sign(b"s3cret", &now, body);
        assert!(verify(b"s3cret", &headers(&now, &good), body).is_ok());
        assert!(verify(b"other", &headers(&now, &good), body).is_err());
        assert!(verify(b"s3cret", &headers(&now, &good), b"{}").is_err());
        let old = "1000";
        assert!(verify(b"s3cret", &headers(old, &sign(b"s3cret", old, body)), body).is_err());
        assert!(verify(b"s3cret", &headers(&now, "zz"), body).is_err());
    }

    #[test]
    fn sandbox_authorises_captures_and_releases() {
        let gateway = SandboxGateway::default();
        let auth = gateway.authorise("b1", 500_000).expect("authorised");
        assert!(gateway.authorise("b2", 0).is_err());
        assert!(gateway.capture(&auth.id, 600_000).is_err());
        let captured = gateway.capture(&auth.id, 100_000).expect("captured");
        assert_eq!(captured.state, AuthorisationState::Captured);
        assert!(gateway.release(&auth.id).is_err());
        let other = gateway.authorise("b3", 1).expect("authorised");
        assert_eq!(
            gateway.release(&other.id).expect("released").state,
            AuthorisationState::Released
        );
        assert!(gateway.release(&other.id).is_ok(), "twice is harmless");
    }
}
