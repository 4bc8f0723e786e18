//! Staff on shared devices and the cash drawer's day: `POST /v1/staff/sessions` (a staff
//! member's PIN, verified on the box, offline too), `DELETE /v1/staff/sessions/current`,
//! shifts (`POST /v1/shifts`, `POST /v1/shifts/{id}/close`, `GET /v1/shifts/{id}`) and the branch
//! day (`GET /v1/days/{date}`, `POST /v1/days/{date}/close`, `POST /v1/days/{date}/reopen`).
//!
//! A session is the daemon's memory only (see docs/decisions.md): bound to the device that
//! opened it, ended by `DELETE`, by [`SESSION_IDLE`] without use, or by a restart. Wrong PINs are
//! throttled per staff member ([`MAX_PIN_FAILURES`] then [`LOCKOUT`]), for sessions and manager
//! approvals alike. [`Manager`] is the one manager gate every route that needs one extracts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sentra_protocol::staff::{StaffRole, check_pin};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Body, Caller, IdempotencyKey, path_id};
use crate::domain::Text;
use crate::store::staff::{self, Day, Shift};

/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Wrong PINs in a row that lock a staff member out ...
pub const MAX_PIN_FAILURES: u32 = 5;
/// ... for this long.
pub const LOCKOUT: Duration = Duration::from_secs(5 * 60);
/// Live sessions the box holds; past it the longest idle one ends.
pub const MAX_SESSIONS: usize = 1000;
/// The headers: a staff session's token, and a manager's on-the-spot approval `<staff id>:<PIN>`.
pub const STAFF_HEADER: &str = "sentra-staff";
pub const MANAGER_HEADER: &str = "sentra-manager";

/// The staff member whose session a request carries.
#[derive(Debug, Clone)]
pub struct StaffSession {
    pub staff_id: String,
    pub name: String,
    pub role: StaffRole,
    pub device_id: String,
    last_used: Instant,
}

/// Live sessions (by token hash) and PIN failures (by staff id).
#[derive(Debug, Clone, Default)]
pub struct Sessions(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, StaffSession>,
    failures: HashMap<String, (u32, Option<Instant>)>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session behind `token` for `device`, refreshed; None when unknown, ended, idle too
    /// long or opened on another device.
    pub fn touch(&self, token: &str, device: &str) -> Option<StaffSession> {
        let key = crate::store::devices::sha256_hex(token);
        let mut inner = self.lock();
        let live = match inner.sessions.get_mut(&key) {
            Some(s) if s.last_used.elapsed() < SESSION_IDLE && s.device_id == device => {
                s.last_used = Instant::now();
                Some(s.clone())
            }
            Some(s) if s.device_id == device => None,
            _ => return None,
        };
        if live.is_none() {
            inner.sessions.remove(&key);
        }
        live
    }

    fn open(&self, session: StaffSession) -> String {
        let token = format!("st_{}", hex::encode(rand::random::<[u8; 24]>()));
        let mut inner = self.lock();
        inner
            .sessions
            .retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        if inner.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = inner
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            inner.sessions.remove(&oldest);
        }
        inner
            .sessions
            .insert(crate::store::devices::sha256_hex(&token), session);
        token
    }

    fn end(&self, token: &str) -> bool {
        let key = crate::store::devices::sha256_hex(token);
        self.lock().sessions.remove(&key).is_some()
    }

    /// Refuses while `staff_id` is locked out.
    fn check_lock(&self, staff_id: &str) -> Result<(), ApiError> {
        let inner = self.lock();
        if let Some((_, Some(until))) = inner.failures.get(staff_id)
            && Instant::now() < *until
        {
            let secs = until.saturating_duration_since(Instant::now()).as_secs() + 1;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "pin_locked",
                format!("too many wrong PINs for {staff_id}; try again in {secs} s"),
            ));
        }
        Ok(())
    }

    fn record(&self, staff_id: &str, ok: bool) {
        let mut inner = self.lock();
        if ok {
            inner.failures.remove(staff_id);
            return;
        }
        if inner.failures.len() >= MAX_SESSIONS * 10 {
            // Keep the lockouts still running; a count under the limit or an expired lock goes.
            let now = Instant::now();
            inner
                .failures
                .retain(|_, (_, until)| until.is_some_and(|u| now < u));
        }
        let entry = inner.failures.entry(staff_id.to_owned()).or_default();
        if entry.1.is_some_and(|u| Instant::now() >= u) {
            *entry = (0, None);
        }
        entry.0 += 1;
        if entry.0 >= MAX_PIN_FAILURES {
            entry.1 = Some(Instant::now() + LOCKOUT);
        }
    }
}

/// Checks `pin` against `staff_id`'s hash (argon2, off the runtime), throttled.
async fn verify(s: &AppState, staff_id: &str, pin: &str) -> Result<staff::Staff, ApiError> {
    let wrong = || ApiError::unauthorized("unknown staff member or wrong PIN");
    if check_pin(pin).is_err() || crate::domain::Id::parse(staff_id).is_err() {
        return Err(wrong());
    }
    s.staff.check_lock(staff_id)?;
    let id = staff_id.to_owned();
    let member = s.store.read(move |c| staff::get_staff(c, &id)).await?;
    // Failures are counted for the branch's own staff only: an id nobody has has no PIN to guess,
    // and counting every id a device makes up would grow the count without bound.
    let Some(member) = member else {
        return Err(wrong());
    };
    if !member.active {
        s.staff.record(staff_id, false);
        return Err(wrong());
    }
    let (hash, pin) = (member.pin_hash.clone(), pin.to_owned());
    let ok = tokio::task::spawn_blocking(move || sentra_protocol::staff::pin_matches(&pin, &hash))
        .await
        .unwrap_or(false);
    s.staff.record(staff_id, ok);
    if ok { Ok(member) } else { Err(wrong()) }
}

/// A manager's approval: the session's staff member is a MANAGER, or the request carries
/// `Sentra-Manager: <manager's staff id>:<PIN>` (verified and throttled like a session's PIN).
/// Refused: 401 for a wrong approval, 403 when none was given. Handlers take it as
/// `Result<Manager, ApiError>` and check it after the body parsed, so bad input is a 400 first.
#[derive(Debug, Clone)]
pub struct Manager {
    pub staff_id: String,
}

impl FromRequestParts<AppState> for Manager {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, s).await?;
        if let Some(h) = parts.headers.get(MANAGER_HEADER) {
            let (id, pin) = h
                .to_str()
                .ok()
                .and_then(|v| v.split_once(':'))
                // A malformed approval is an approval that does not verify: 401, like a wrong
                // PIN (an HTTP client sending an empty optional header as "null" gets the same).
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_manager_header",
                        "Sentra-Manager is <manager's staff id>:<PIN>",
                    )
                })?;
            let member = verify(s, id.trim(), pin.trim()).await?;
            if member.role != StaffRole::Manager {
                return Err(ApiError::forbidden(format!(
                    "{} is not a manager; a manager must approve this",
                    member.id
                )));
            }
            return Ok(Manager {
                staff_id: member.id,
            });
        }
        match caller.1 {
            Some(session) if session.role == StaffRole::Manager => Ok(Manager {
                staff_id: session.staff_id,
            }),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "manager_required",
                "a manager must approve this: a manager's staff session, or Sentra-Manager: <staff id>:<PIN>",
            )),
        }
    }
}

/// The staff session a route needs (401 without one).
pub fn session(caller: &Caller) -> Result<&StaffSession, ApiError> {
    caller.1.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "staff_session_required",
            "this needs a staff session: POST /v1/staff/sessions, then send its token in Sentra-Staff",
        )
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSession {
    #[schema(example = "kasir-budi", min_length = 1, max_length = 64)]
    pub staff_id: String,
    /// 4 to 8 digits.
    #[schema(example = "1357", pattern = "^[0-9]{4,8}$")]
    pub pin: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionOpened {
    /// Send it as `Sentra-Staff` with this device's requests.
    pub token: String,
    pub staff_id: String,
    pub name: String,
    /// CASHIER, STOREKEEPER, MECHANIC_LEAD or MANAGER.
    pub role: String,
    /// The session ends after this many seconds unused.
    pub idle_timeout_secs: u64,
}

#[utoipa::path(post, path = "/v1/staff/sessions", tag = "staff", request_body = OpenSession,
    responses((status = 201, body = SessionOpened),
        (status = 401, description = "unknown staff member or wrong PIN", body = super::error::ErrorBody),
        (status = 429, description = "pin_locked: too many wrong PINs", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn open_session(
    State(s): State<AppState>,
    caller: Caller,
    body: Body<OpenSession>,
) -> Result<Response, ApiError> {
    let OpenSession { staff_id, pin } = body.value;
    let member = verify(&s, &staff_id, &pin).await?;
    let token = s.staff.open(StaffSession {
        staff_id: member.id.clone(),
        name: member.name.clone(),
        role: member.role,
        device_id: caller.0.id.clone(),
        last_used: Instant::now(),
    });
    Ok((
        StatusCode::CREATED,
        Json(SessionOpened {
            token,
            staff_id: member.id,
            name: member.name,
            role: member.role.as_str().to_owned(),
            idle_timeout_secs: SESSION_IDLE.as_secs(),
        }),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/v1/staff/sessions/current", tag = "staff",
    responses((status = 204, description = "ended (or none was sent)"), (status = 401, description = "staff_session_invalid: the Sentra-Staff token is unknown or already ended", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn end_session(
    State(s): State<AppState>,
    parts: axum::http::HeaderMap,
) -> Result<StatusCode, ApiError> {
    // Idempotent: without a session (or with one already ended: the auth layer says 401 for
    // an unknown token) there is nothing to end.
    let token = parts
        .get(STAFF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    s.staff.end(token);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenShift {
    /// Cash in the drawer at the start (rupiah).
    #[schema(example = 500000)]
    pub opening_float: Cash,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseShift {
    /// Cash counted in the drawer at the end (rupiah).
    #[schema(example = 777000)]
    pub counted_cash: Cash,
    /// Why the count differs from what was expected (required then).
    pub reason: Option<Text>,
}

/// Rupiah in a drawer: 0 up to `sentra_protocol::staff::MAX_DRAWER_CASH`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct Cash(pub i64);

impl TryFrom<i64> for Cash {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        let max = sentra_protocol::staff::MAX_DRAWER_CASH;
        if (0..=max).contains(&v) {
            Ok(Cash(v))
        } else {
            Err(format!("whole rupiah from 0 to {max}"))
        }
    }
}

impl utoipa::PartialSchema for Cash {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schemas::from_json(serde_json::json!({"type": "integer", "minimum": 0,
            "maximum": sentra_protocol::staff::MAX_DRAWER_CASH}))
    }
}
impl utoipa::ToSchema for Cash {}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseDay {
    /// Why the day's cash differs from what was expected (required then).
    pub reason: Option<Text>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenDay {
    pub reason: Text,
}

#[utoipa::path(post, path = "/v1/shifts", tag = "staff", request_body = OpenShift,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 201, body = Shift),
        (status = 401, description = "staff_session_required", body = super::error::ErrorBody),
        (status = 409, description = "shift_open (this device has one) or day_closed", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn open_shift(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Body<OpenShift>,
) -> Result<Response, ApiError> {
    let staff_id = session(&caller)?.staff_id.clone();
    let float = body.value.opening_float.0;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::CREATED,
        move |w, d| staff::open_shift(w, &staff_id, &d.id, float),
    )
    .await
}

#[utoipa::path(post, path = "/v1/shifts/{id}/close", tag = "staff", request_body = CloseShift,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body: same answer, one change")),
    responses((status = 200, body = Shift),
        (status = 400, description = "reason missing while the count differs", body = super::error::ErrorBody),
        (status = 401, description = "staff_session_required", body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "shift_closed", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn close_shift(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Body<CloseShift>,
) -> Result<Response, ApiError> {
    session(&caller)?;
    let id = path_id(&id)?;
    let CloseShift {
        counted_cash,
        reason,
    } = body.value;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, _| staff::close_shift(w, &id, counted_cash.0, reason.as_ref().map(Text::as_str)),
    )
    .await
}

#[utoipa::path(get, path = "/v1/shifts/{id}", tag = "staff", responses((status = 200, body = Shift), (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_shift(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Shift>, ApiError> {
    let id = path_id(&id)?;
    Ok(Json(s.store.read(move |c| staff::get_shift(c, &id)).await?))
}

fn day_param(date: &str) -> Result<time::Date, ApiError> {
    staff::parse_day(date).map_err(ApiError::from)
}

#[utoipa::path(get, path = "/v1/days/{date}", tag = "staff", params(("date" = String, Path, description = "YYYY-MM-DD, the branch's day", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")),
    responses((status = 200, body = Day), (status = 400, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_day(
    State(s): State<AppState>,
    Path(date): Path<String>,
) -> Result<Json<Day>, ApiError> {
    let day = day_param(&date)?;
    let offset = s.store.ctx().utc_offset;
    Ok(Json(
        s.store
            .read(move |c| staff::get_day(c, offset, day))
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/days/{date}/close", tag = "staff", request_body = CloseDay,
    params(("date" = String, Path, description = "YYYY-MM-DD, the branch's day", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
        ("Sentra-Manager" = Option<String>, Header, description = "<manager's staff id>:<PIN>, unless the session is a manager's", pattern = r"^[A-Za-z0-9_-]{1,64}:[0-9]{4,8}$")),
    responses((status = 200, body = Day),
        (status = 400, description = "reason missing while the count differs; a future day", body = super::error::ErrorBody),
        (status = 401, description = "wrong manager PIN", body = super::error::ErrorBody),
        (status = 403, description = "manager_required", body = super::error::ErrorBody),
        (status = 409, description = "shift_open, day_closed", body = super::error::ErrorBody),
        (status = 429, description = "pin_locked", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn close_day(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(date): Path<String>,
    manager: Result<Manager, ApiError>,
    body: Body<CloseDay>,
) -> Result<Response, ApiError> {
    let day = day_param(&date)?;
    let manager = manager?;
    let reason = body.value.reason;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, _| staff::close_day(w, day, &manager.staff_id, reason.as_ref().map(Text::as_str)),
    )
    .await
}

#[utoipa::path(post, path = "/v1/days/{date}/reopen", tag = "staff", request_body = ReopenDay,
    params(("date" = String, Path, description = "YYYY-MM-DD, the branch's day", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
        ("Sentra-Manager" = Option<String>, Header, description = "<manager's staff id>:<PIN>, unless the session is a manager's", pattern = r"^[A-Za-z0-9_-]{1,64}:[0-9]{4,8}$")),
    responses((status = 200, body = Day),
        (status = 401, description = "wrong manager PIN", body = super::error::ErrorBody),
        (status = 403, description = "manager_required", body = super::error::ErrorBody),
        (status = 409, description = "day_not_closed", body = super::error::ErrorBody),
        (status = 429, description = "pin_locked", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn reopen_day(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(date): Path<String>,
    manager: Result<Manager, ApiError>,
    body: Body<ReopenDay>,
) -> Result<Response, ApiError> {
    let day = day_param(&date)?;
    let manager = manager?;
    let reason = body.value.reason;
    s.write(
        &caller,
        key,
        body.fingerprint,
        StatusCode::OK,
        move |w, _| staff::reopen_day(w, day, &manager.staff_id, reason.as_str()),
    )
    .await
}
