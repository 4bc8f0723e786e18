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
//!   refund, and the authorisation released at the gateway;
//! - capture and release carry an idempotency key (`capture:<booking>`, `release:<booking>`), as
//!   Xendit's `x-idempotency-key` and Midtrans's `Idempotency-Key`: the gateway answers a
//!   repeated key with the first answer, so a retry after a lost answer never moves money twice.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::Deserialize;
use sha2::Sha256;

use super::Booking;
use crate::web::{ApiError, parse_json};

pub const TIMESTAMP_HEADER: &str = "x-sentra-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-sentra-webhook-signature";
/// How old (or how far ahead) a webhook's timestamp may be: a captured webhook cannot be
/// replayed later, and redeliveries carry a fresh signature.
pub const WEBHOOK_TOLERANCE_SECONDS: u64 = 300;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// A definite no (unknown authorisation, amount over the authorised one).
    #[error("the gateway refused: {0}")]
    Refused(String),
    /// No answer that decides anything (timeout, 5xx): try again later.
    #[error("the gateway is unavailable: {0}")]
    Unavailable(String),
}

/// Payment references the sandbox fails once per idempotency key (as unavailable), then serves:
/// how tests and demos show a failing gateway being retried, like a gateway's test card numbers.
pub const SANDBOX_FLAKY_PREFIX: &str = "sandbox-flaky-";

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
/// The service captures and releases (completion, refused late payments); authorising happens at
/// the customer's checkout, between the customer and the gateway, which then sends the webhook.
pub trait PaymentGateway: Send + Sync {
    /// Holds `amount` on the customer's limit for `reference` (our booking id).
    fn authorise(&self, reference: &str, amount: i64) -> Result<Authorisation, GatewayError>;
    /// Takes `amount` (≤ the authorised amount) of an authorisation: damage, late return. The
    /// same `key` again gets the first answer.
    fn capture(&self, id: &str, amount: i64, key: &str) -> Result<Authorisation, GatewayError>;
    /// Gives back what is left of the authorisation (at most 24 h after `COMPLETED`, or at once
    /// for a refused late payment). Releasing twice is harmless; after a capture it releases
    /// the rest.
    fn release(&self, id: &str, key: &str) -> Result<Authorisation, GatewayError>;
}

/// The sandbox gateway for tests and demos: authorises anything positive, remembers every
/// authorisation in memory.
#[derive(Default)]
pub struct SandboxGateway {
    authorisations: Mutex<Vec<Authorisation>>,
    /// Answers by idempotency key; keys of flaky references seen once (and failed).
    answers: Mutex<std::collections::HashMap<String, Result<Authorisation, GatewayError>>>,
}

impl SandboxGateway {
    /// The first answer under `key`, or `call`'s (remembered unless it was `Unavailable`).
    fn keyed(
        &self,
        id: &str,
        key: &str,
        call: impl FnOnce() -> Result<Authorisation, GatewayError>,
    ) -> Result<Authorisation, GatewayError> {
        let mut answers = self
            .answers
            .lock()
            .map_err(|_| GatewayError::Unavailable("sandbox state poisoned".to_owned()))?;
        let flaky_key = format!("flaky\0{key}");
        if id.starts_with(SANDBOX_FLAKY_PREFIX) && !answers.contains_key(&flaky_key) {
            answers.insert(
                flaky_key,
                Err(GatewayError::Unavailable("sandbox: first try".to_owned())),
            );
            return Err(GatewayError::Unavailable(format!(
                "sandbox: {id} fails its first try"
            )));
        }
        if let Some(answer) = answers.get(key) {
            return answer.clone();
        }
        let answer = call();
        if !matches!(answer, Err(GatewayError::Unavailable(_))) {
            answers.insert(key.to_owned(), answer.clone());
        }
        answer
    }

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

    fn capture(&self, id: &str, amount: i64, key: &str) -> Result<Authorisation, GatewayError> {
        self.keyed(id, key, || {
            self.update(id, |auth| {
                // An authorisation made outside this process (amount unknown here) is taken to
                // cover the capture, as a real gateway's would have been checked at checkout.
                let known = auth.amount > 0;
                if amount <= 0
                    || auth.state != AuthorisationState::Authorised
                    || (known && amount > auth.amount)
                {
                    return Err(GatewayError::Refused(format!(
                        "cannot capture {amount} of {id}"
                    )));
                }
                auth.state = AuthorisationState::Captured;
                auth.amount = amount;
                Ok(())
            })
        })
    }

    fn release(&self, id: &str, key: &str) -> Result<Authorisation, GatewayError> {
        self.keyed(id, key, || {
            self.update(id, |auth| {
                auth.state = AuthorisationState::Released;
                Ok(())
            })
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

/// The longest `event_id` and `type` a webhook may carry.
pub const MAX_WEBHOOK_ID_LEN: usize = 128;

impl Webhook {
    /// Every field bounded and free of control characters before anything reaches PostgreSQL
    /// (whose text cannot hold NUL): a verified but malformed event is 422 and changes nothing.
    fn check(&self) -> Result<(), ApiError> {
        for (field, value) in [
            ("event_id", &self.event_id),
            ("type", &self.kind),
            ("booking_id", &self.booking_id),
        ] {
            if value.is_empty()
                || value.chars().count() > MAX_WEBHOOK_ID_LEN
                || value.chars().any(char::is_control)
            {
                return Err(ApiError::Invalid(format!(
                    "{field}: expected 1-{MAX_WEBHOOK_ID_LEN} characters without control characters"
                )));
            }
        }
        if self.kind == "payment.authorized" || !self.payment_ref.is_empty() {
            super::http::check_payment_ref(&self.payment_ref)?;
        }
        Ok(())
    }
}

/// The answer to a verified webhook: what it did, the first time or (`duplicate`) before.
#[derive(Debug, serde::Serialize)]
pub struct WebhookAnswer {
    event_id: String,
    outcome: String,
    duplicate: bool,
}

/// `POST /v1/payments/webhook`: see the module doc. 200 `{event_id, outcome, duplicate}` for
/// every verified event, so the gateway stops redelivering.
#[utoipa::path(post, path = "/v1/payments/webhook", tag = "bookings", request_body = crate::schemas::Webhook, params(("x-sentra-webhook-timestamp" = String, Header, description = "Unix seconds"), ("x-sentra-webhook-signature" = String, Header, description = "hex HMAC-SHA256, with payments.webhook_secret, of the timestamp, a dot and the body")), responses((status = 200, description = "done", body = Object), (status = 401, description = "unverified, or webhooks not configured", body = crate::schemas::ErrorEnvelope), (status = 404, description = "no such booking", body = crate::schemas::ErrorEnvelope), (status = 409, description = "conflict", body = crate::schemas::ErrorEnvelope)))]
pub async fn webhook(
    State(booking): State<Arc<Booking>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAnswer>, ApiError> {
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
    event.check()?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM payment_webhooks WHERE event_id = $1")
            .bind(&event.event_id)
            .fetch_optional(&booking.db)
            .await
            .map_err(|error| ApiError::database(&error))?;
    if let Some(outcome) = stored {
        return Ok(Json(WebhookAnswer {
            event_id: event.event_id,
            outcome,
            duplicate: true,
        }));
    }
    let outcome = match event.kind.as_str() {
        "payment.authorized" => {
            match super::http::confirm_payment(&booking, &event.booking_id, &event.payment_ref)
                .await
            {
                Ok(_) => "confirmed",
                Err(ApiError::Conflict {
                    code: "hold_expired",
                    ..
                }) => {
                    let key = format!("release-late:{}", event.event_id);
                    if let Err(error) = booking.gateway.release(&event.payment_ref, &key) {
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
    Ok(Json(WebhookAnswer {
        event_id: event.event_id,
        outcome: outcome.to_owned(),
        duplicate: false,
    }))
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
        assert!(gateway.capture(&auth.id, 600_000, "k0").is_err());
        let captured = gateway.capture(&auth.id, 100_000, "k1").expect("captured");
        assert_eq!(captured.state, AuthorisationState::Captured);
        assert_eq!(
            gateway.capture(&auth.id, 100_000, "k1").expect("same key"),
            captured,
            "a repeated key gets the first answer, not a second capture"
        );
        assert_eq!(
            gateway
                .release(&auth.id, "r1")
                .expect("the rest released")
                .state,
            AuthorisationState::Released
        );
        let other = gateway.authorise("b3", 1).expect("authorised");
        assert_eq!(
            gateway.release(&other.id, "r2").expect("released").state,
            AuthorisationState::Released
        );
        assert!(
            gateway.release(&other.id, "r3").is_ok(),
            "twice is harmless"
        );
        let flaky = format!("{SANDBOX_FLAKY_PREFIX}p1");
        assert!(matches!(
            gateway.release(&flaky, "r4"),
            Err(GatewayError::Unavailable(_))
        ));
        assert!(gateway.release(&flaky, "r4").is_ok(), "the retry succeeds");
    }
}
