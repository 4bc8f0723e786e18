//! Identity checks before a first rental (issue 8): the customer's KTP (Indonesian identity
//! card) read by the provider's OCR, their selfie matched against it with liveness, the outcome
//! stored with the customer, and the gate every booking path asks ([`Identity::cleared`]).
//!
//! Routes: `POST /v1/customers/{id}/identity` (`{ktp_image, selfie, branch?}`, base64) →
//! `{customer, state: "VERIFIED"|"REJECTED", reason, nik_last4, ...}`, and
//! `GET /v1/customers/{id}/identity[?branch=B]`. `{id}` is the customer reference bookings carry,
//! and it names a customer record of the caller's ([`owner`]): a device's branch's shared
//! customer record (`/v1/branches/{branch}/customers/{id}`), a portal token's own customer
//! (`PUT /v1/customers/{id}`), or, for an operator token, the record of the branch it names.
//!
//! Invariants:
//! - a check attaches to a customer record its caller owns; an unknown customer, or another
//!   branch's or portal's, is 404 (its existence is not revealed), and nothing is stored or sent
//!   to the provider. The standing is kept per owner and customer, only the owner reads it, and
//!   the booking gate asks for the booking's owner (the device's branch, the portal, or the
//!   branch an operator names), so one owner's check never clears another owner's customer who
//!   happens to share the reference;
//! - the name the provider reads off the KTP must match the record's name ([`same_name`]);
//! - provider calls are throttled per caller (device or token, `sentra_serve::Throttle`, per
//!   replica): past the limit, 429 `rate_limited` with `Retry-After`, and no provider call;
//! - the images are never stored and the NIK never in clear: `customer_identities` keeps an
//!   HMAC of it (key `identity.nik_secret`; none without it) and its last four digits;
//! - no image, NIK or name is ever logged: [`Nik`] and the request body redact themselves in
//!   `Debug`, and nothing here logs the provider's answer;
//! - a verified customer stays verified; a later failed attempt is only logged
//!   (`identity_checks`);
//! - with `identity.required` (the default), a hold for a customer who is not verified is
//!   refused with `identity_unverified`, online (after the Redis gate, so a herd turned away by
//!   the calendar does not reach this) and offline (at ingest, where the booking is rejected
//!   with that reason);
//! - a provider that fails or is not configured is 502/503 and changes nothing.

pub mod owner;
pub mod provider;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use futures_util::future::BoxFuture;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::{PgConnection, PgPool};

use self::provider::{CheckBody, IdentityProvider, ProviderError, Verihubs};
use crate::config::Secret;
use crate::devices::auth::Caller;
use crate::standing::{Owner, Standing};
use crate::ttl::TtlMap;
use crate::web::{ApiError, JsonBody};

/// What the identity handlers need of the application state.
#[derive(Clone)]
pub struct IdentityState {
    pub db: PgPool,
    pub identity: Arc<Identity>,
}

/// Least face similarity (0–1) that counts as the same person.
pub const MIN_FACE_SIMILARITY: f64 = 0.80;
/// Largest image accepted. The whole request is bounded by the API's 1 MiB body limit too, so
/// in practice a KTP photo (720×480) and a selfie (480×640) are sent as JPEGs of a few hundred
/// KB each; the provider's own limit is 5 MB.
pub const MAX_IMAGE_BYTES: usize = 768 * 1024;
/// How long a replica trusts that a customer is verified without asking PostgreSQL. Verified
/// never goes back by itself, so this only bounds how long an operator's manual revocation
/// (deleting the row) takes to reach every replica.
pub const VERIFIED_CACHE_TTL: Duration = Duration::from_secs(60);
const VERIFIED_CACHE_ENTRIES: usize = 100_000;

/// A NIK (Nomor Induk Kependudukan), 16 digits. `Debug` shows only the last four digits and
/// there is no `Display`: it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Nik(pub(crate) String);

impl std::fmt::Debug for Nik {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nik(************{})", self.last4())
    }
}

impl Nik {
    pub fn last4(&self) -> &str {
        let len = self.0.len();
        self.0.get(len.saturating_sub(4)..).unwrap_or_default()
    }

    /// The NIK's own rules: 16 digits, a province code (first two) from 11 to 94, a birth day
    /// (digits 7–8) of 01–31, or 41–71 for women, and a birth month (9–10) of 01–12.
    pub fn well_formed(&self) -> bool {
        let digits = self.0.as_bytes();
        if digits.len() != 16 || !digits.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let two = |at: usize| u32::from(digits[at] - b'0') * 10 + u32::from(digits[at + 1] - b'0');
        let (province, day, month) = (two(0), two(6), two(8));
        (11..=94).contains(&province)
            && ((1..=31).contains(&day) || (41..=71).contains(&day))
            && (1..=12).contains(&month)
    }
}

/// Names compared as staff would: case, spaces and punctuation do not matter, every letter and
/// digit does, in order. Deliberately no looser: KTPs print names in capitals, sometimes with
/// different spacing or an apostrophe dropped ("NUR'AINI" / "NURAINI"), and those must match;
/// but a fuzzy match (edit distance, initials, a missing word) would let the KTP of a
/// similarly named person clear someone else's record. A customer whose record spells their
/// name differently from the card has the record corrected (the edit is audited), then is
/// checked again.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    norm(a) == norm(b)
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Verified,
    Rejected(&'static str),
}

/// The identity service of a replica: the provider (if any), the NIK key, the gate's setting
/// and the cache of verified customers.
pub struct Identity {
    pub provider: Option<Verihubs>,
    pub nik_secret: Option<Secret>,
    pub required: bool,
    /// Verified customers, keyed by [`cache_key`] (owner and customer).
    verified: TtlMap<String, ()>,
    /// Provider calls per caller (device or token, by [`Caller::name`]), in this replica's
    /// memory: behind N replicas a caller gets at most N times the allowance.
    limiter: sentra_serve::Throttle<String>,
    /// The allowance, as the 429's message says it.
    allowance: String,
}

fn cache_key(owner: &str, customer: &str) -> String {
    format!("{owner}\u{0}{customer}")
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("provider", &self.provider)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn new(
        provider: Option<Verihubs>,
        nik_secret: Option<Secret>,
        required: bool,
        (checks_per_caller, window): (u32, std::time::Duration),
    ) -> Self {
        Identity {
            provider,
            nik_secret,
            required,
            verified: TtlMap::new(VERIFIED_CACHE_TTL, VERIFIED_CACHE_ENTRIES),
            limiter: sentra_serve::Throttle::new(checks_per_caller, window),
            allowance: format!(
                "{checks_per_caller} per {} s per device or token",
                window.as_secs()
            ),
        }
    }

    fn cached(&self, owner: &str, customer: &str) -> bool {
        self.verified.get(&cache_key(owner, customer)).is_some()
    }

    /// Whether `customer` of `owner` ([`Owner::key`]) may rent: verified, or the gate is off.
    pub async fn cleared(
        &self,
        db: &PgPool,
        owner: &str,
        customer: &str,
    ) -> Result<bool, sqlx::Error> {
        if !self.required || self.cached(owner, customer) {
            return Ok(true);
        }
        let mut conn = db.acquire().await?;
        self.cleared_in(&mut conn, owner, customer).await
    }

    /// [`Identity::cleared`] on the caller's connection (inside the ingest transaction).
    pub async fn cleared_in(
        &self,
        conn: &mut PgConnection,
        owner: &str,
        customer: &str,
    ) -> Result<bool, sqlx::Error> {
        if !self.required || self.cached(owner, customer) {
            return Ok(true);
        }
        let verified: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM customer_identities
                             WHERE owner = $1 AND customer = $2 AND state = 'VERIFIED')",
        )
        .bind(owner)
        .bind(customer)
        .fetch_one(&mut *conn)
        .await?;
        if verified {
            self.verified.put(cache_key(owner, customer), ());
        }
        Ok(verified)
    }

    fn nik_hmac(&self, nik: &Nik) -> Option<Vec<u8>> {
        let secret = self.nik_secret.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).ok()?;
        mac.update(nik.0.as_bytes());
        Some(mac.finalize().into_bytes().to_vec())
    }
}

impl Standing for Identity {
    fn cleared<'a>(
        &'a self,
        db: &'a PgPool,
        owner: &'a str,
        customer: &'a str,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
        Box::pin(Identity::cleared(self, db, owner, customer))
    }

    fn cleared_in<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        owner: &'a str,
        customer: &'a str,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
        Box::pin(Identity::cleared_in(self, conn, owner, customer))
    }
}

/// Runs the provider's checks against the customer record's name; `Err` only when the provider
/// could not answer.
pub async fn check(
    provider: &impl IdentityProvider,
    ktp_image: &[u8],
    selfie: &[u8],
    record_name: &str,
) -> Result<(Outcome, Option<Nik>, String), ProviderError> {
    let card = match provider.extract_ktp(ktp_image).await {
        Ok(card) => card,
        Err(ProviderError::Unreadable(_)) => {
            return Ok((Outcome::Rejected("ktp_unreadable"), None, String::new()));
        }
        Err(error) => return Err(error),
    };
    let reference = card.reference_id.clone();
    if !card.nik.well_formed() {
        return Ok((Outcome::Rejected("nik_invalid"), None, reference));
    }
    if !same_name(record_name, &card.full_name) {
        return Ok((
            Outcome::Rejected("name_mismatch"),
            Some(card.nik),
            reference,
        ));
    }
    let face = match provider.check_face(ktp_image, selfie).await {
        Ok(face) => face,
        Err(ProviderError::Unreadable(_)) => {
            return Ok((
                Outcome::Rejected("face_unreadable"),
                Some(card.nik),
                reference,
            ));
        }
        Err(error) => return Err(error),
    };
    let outcome = if !face.live {
        Outcome::Rejected("liveness_failed")
    } else if face.similarity < MIN_FACE_SIMILARITY {
        Outcome::Rejected("face_mismatch")
    } else {
        Outcome::Verified
    };
    Ok((outcome, Some(card.nik), reference))
}

fn reason_text(code: &str) -> &'static str {
    match code {
        "ktp_unreadable" => {
            "the KTP could not be read from the photo; take it again, flat and in good light"
        }
        "nik_invalid" => "the NIK read from the KTP is not a valid NIK; check the card",
        "name_mismatch" => {
            "the name on the KTP does not match the customer's record; correct the record if it is misspelt, then check again"
        }
        "face_unreadable" => "no face was found in the selfie; take it again",
        "liveness_failed" => {
            "the selfie did not pass the liveness check; take it of the customer in person"
        }
        "face_mismatch" => "the selfie does not match the KTP photo",
        _ => "rejected",
    }
}

fn decode(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| ApiError::Invalid(format!("{field}: expected base64 (standard alphabet)")))?;
    if bytes.is_empty() || bytes.len() > MAX_IMAGE_BYTES {
        return Err(ApiError::Invalid(format!(
            "{field}: expected an image of 1 byte to {MAX_IMAGE_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// `POST /v1/customers/{id}/identity`.
#[utoipa::path(post, path = "/v1/customers/{id}/identity", tag = "identity", params(("id" = String, Path, description = "the customer (1-200 characters, not blank, no control characters)", max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$")), request_body = crate::schemas::CheckBody, responses((status = 200, description = "done", body = Object), (status = 201, description = "checked", body = Object), (status = 429, description = "rate_limited: this caller's checks are used up for now (Retry-After)", body = crate::schemas::ErrorEnvelope), (status = 502, description = "provider_failed", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn post_check(
    State(state): State<IdentityState>,
    caller: Caller,
    Path(customer): Path<String>,
    JsonBody(body): JsonBody<CheckBody>,
) -> Result<Response, ApiError> {
    sentra_protocol::booking::check_customer(&customer)
        .map_err(|error| ApiError::Invalid(error.to_string()))?;
    let ktp = decode("ktp_image", &body.ktp_image)?;
    let selfie = decode("selfie", &body.selfie)?;
    let owner = Owner::of(&caller, body.branch.as_deref())?;
    let record_name = owner::record_name(&state.db, &owner, &customer).await?;
    let identity = &state.identity;
    let Some(provider) = &identity.provider else {
        return Err(ApiError::Upstream {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "identity_provider_unconfigured",
            message: "no identity provider is configured (identity.provider_url)".to_owned(),
        });
    };
    let checked_by = caller.name();
    if let Err(wait) = identity.limiter.check(&checked_by) {
        let what = format!(
            "too many identity checks from this caller ({}); nothing was sent to the provider",
            identity.allowance
        );
        return Ok(sentra_serve::too_many_requests(wait, &what));
    }
    let (outcome, nik, reference) =
        check(provider, &ktp, &selfie, &record_name)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "identity provider failed");
                ApiError::Upstream {
                    status: StatusCode::BAD_GATEWAY,
                    code: "identity_provider_unavailable",
                    message: "the identity provider did not answer; nothing was stored, try again"
                        .to_owned(),
                }
            })?;
    let (state_text, reason) = match outcome {
        Outcome::Verified => ("VERIFIED", None),
        Outcome::Rejected(code) => ("REJECTED", Some(code)),
    };
    let owner_key = owner.key();
    let nik_hmac = nik.as_ref().and_then(|nik| identity.nik_hmac(nik));
    let last4 = nik
        .as_ref()
        .filter(|nik| nik.well_formed())
        .map(|nik| nik.last4().to_owned());
    let reference = (!reference.is_empty()).then_some(reference);
    let mut tx = state.db.begin().await.map_err(|e| ApiError::database(&e))?;
    sqlx::query(
        "INSERT INTO identity_checks (owner, customer, outcome, reason, provider_ref, checked_by)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&owner_key)
    .bind(&customer)
    .bind(state_text)
    .bind(reason)
    .bind(&reference)
    .bind(&checked_by)
    .execute(&mut *tx)
    .await
    .map_err(|e| ApiError::database(&e))?;
    sqlx::query(
        "INSERT INTO customer_identities
             (owner, customer, state, reason, nik_hmac, nik_last4, provider_ref, checked_by, verified_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $3 = 'VERIFIED' THEN now() END)
         ON CONFLICT (owner, customer) DO UPDATE SET
             state = EXCLUDED.state, reason = EXCLUDED.reason, nik_hmac = EXCLUDED.nik_hmac,
             nik_last4 = EXCLUDED.nik_last4, provider_ref = EXCLUDED.provider_ref,
             checked_by = EXCLUDED.checked_by, verified_at = EXCLUDED.verified_at,
             checked_at = now()
         WHERE customer_identities.state <> 'VERIFIED'",
    )
    .bind(&owner_key)
    .bind(&customer)
    .bind(state_text)
    .bind(reason)
    .bind(nik_hmac)
    .bind(last4)
    .bind(&reference)
    .bind(&checked_by)
    .execute(&mut *tx)
    .await
    .map_err(|e| ApiError::database(&e))?;
    tx.commit().await.map_err(|e| ApiError::database(&e))?;
    tracing::info!(outcome = state_text, reason, "identity check recorded");
    let mut answer = standing(&state.db, &owner_key, &customer).await?;
    if let Some(code) = reason
        && let Some(object) = answer.as_object_mut()
    {
        object.insert(
            "attempt".to_owned(),
            json!({"state": "REJECTED", "reason": code, "message": reason_text(code)}),
        );
    }
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// `customer_identities` as answered: state, reason, last four, verified at, checked at.
type StandingRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

async fn standing(db: &PgPool, owner: &str, customer: &str) -> Result<Value, ApiError> {
    let row: Option<StandingRow> = sqlx::query_as(
        "SELECT state, reason, nik_last4,
                    to_char(verified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                    to_char(checked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
             FROM customer_identities WHERE owner = $1 AND customer = $2",
    )
    .bind(owner)
    .bind(customer)
    .fetch_optional(db)
    .await
    .map_err(|e| ApiError::database(&e))?;
    let (state, reason, nik_last4, verified_at, checked_at) = row.ok_or_else(|| {
        ApiError::NotFound(format!("customer {customer:?} has no identity check"))
    })?;
    Ok(json!({
        "customer": customer,
        "state": state,
        "reason": reason,
        "message": reason.as_deref().map(reason_text),
        "nik_last4": nik_last4,
        "verified_at": verified_at,
        "checked_at": checked_at,
    }))
}

/// The query of `GET /v1/customers/{id}/identity`: the branch an operator token reads for.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandingQuery {
    branch: Option<String>,
}

/// `GET /v1/customers/{id}/identity`: the standing of the caller's own customer; anyone else's
/// is 404.
#[utoipa::path(get, path = "/v1/customers/{id}/identity", tag = "identity", params(("id" = String, Path, description = "the customer (1-200 characters, not blank, no control characters)", max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"), ("branch" = Option<String>, Query, description = "the branch whose customer this is: required of an operator token, refused for a portal token", max_length = 64)), responses((status = 200, description = "done", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn get_check(
    State(state): State<IdentityState>,
    caller: Caller,
    Path(customer): Path<String>,
    query: Result<Query<StandingQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadQuery(rejection.body_text()))?;
    sentra_protocol::booking::check_customer(&customer)
        .map_err(|error| ApiError::Invalid(error.to_string()))?;
    let owner = Owner::of(&caller, query.branch.as_deref())?;
    Ok(Json(standing(&state.db, &owner.key(), &customer).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nik_rules() {
        assert!(Nik("3171014508900001".into()).well_formed()); // born 05-08-90, a woman (45)
        assert!(Nik("3171010508900001".into()).well_formed());
        for bad in [
            "317101050890000",  // 15 digits
            "0171010508900001", // province 01
            "3171013208900001", // day 32
            "3171010513900001", // month 13
            "31710105089000a1", // a letter
        ] {
            assert!(!Nik(bad.into()).well_formed(), "{bad}");
        }
    }

    #[test]
    fn nik_debug_shows_only_the_last_four_digits() {
        let shown = format!("{:?}", Nik("3171010508900001".into()));
        assert!(!shown.contains("317101050890"), "{shown}");
        assert!(shown.ends_with("0001)"), "{shown}");
    }

    #[test]
    fn names_compare_like_staff_read_them() {
        assert!(same_name("Budi Santoso", "BUDI  SANTOSO"));
        assert!(same_name("Siti Nur'aini", "SITI NURAINI"));
        assert!(!same_name("Budi Santoso", "Budi Susanto"));
    }
}
