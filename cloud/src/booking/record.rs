//! The booking record in PostgreSQL, the truth every other part defers to.
//!
//! Invariants:
//! - a hold is one transaction: expire the asset's due holds that overlap (a conditional
//!   `UPDATE`, so an expired-but-unswept hold never blocks), then insert; the exclusion
//!   constraint refuses an overlap, and its violation (23P01) and the deadlock two racing inserts
//!   can cause (40P01) both mean "taken";
//! - a retry with the same `Idempotency-Key` (per caller) gets the first answer back, never a
//!   second hold; the same key with another body is refused;
//! - confirmation is a conditional `UPDATE` that succeeds only while the hold is live; a late
//!   confirmation is refused, the hold expired, and the payment flagged for refund;
//! - completion (`CONFIRMED → COMPLETED`) shrinks the row's period to end at the return (plus
//!   the turnover buffer), never beyond the booked days, and writes what the gateway is still
//!   owed (capture, release) in the same transaction; `COMPLETED` rows stay in the exclusion
//!   constraint, so the return day and its buffer stay taken;
//! - every time is PostgreSQL's `now()`, so replicas with skewed clocks agree on expiry.

use sqlx::{PgConnection, PgPool, Row as _};
use time::Date;

use super::types::{BookingView, State, Stay, Tier, day_range, format_day};

/// PostgreSQL error codes that mean "someone else has the slot".
const EXCLUSION_VIOLATION: &str = "23P01";
const DEADLOCK_DETECTED: &str = "40P01";
const UNIQUE_VIOLATION: &str = "23505";
const FOREIGN_KEY_VIOLATION: &str = "23503";

/// Timestamps as the API writes them.
pub(super) const TS: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("asset {asset} of SKU {sku} does not exist in branch {branch}")]
    NoSuchAsset {
        branch: String,
        asset: String,
        sku: String,
    },
    #[error("Idempotency-Key {0:?} was used before with a different request")]
    KeyReused(String),
    #[error(transparent)]
    Invalid(#[from] super::types::Invalid),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A booking row: what the API shows of it (the protocol's [`BookingView`], which it derefs to
/// and serialises as) and what only the service reads.
#[derive(Debug, Clone)]
pub struct BookingRow {
    pub view: BookingView,
    pub created_by: String,
    pub lock_token: Option<String>,
}

impl std::ops::Deref for BookingRow {
    type Target = BookingView;

    fn deref(&self) -> &BookingView {
        &self.view
    }
}

impl serde::Serialize for BookingRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.view.serialize(serializer)
    }
}

fn select_columns() -> String {
    format!(
        "id::text AS id, state, branch_id, asset_id, sku, first_day::text AS first_day,
         last_day::text AS last_day, upper(period)::text AS free_from, customer, tier,
         to_char(hold_expires_at AT TIME ZONE 'UTC', {TS}) AS expires_at, payment_ref,
         refund_due, created_by, lock_token,
         to_char(returned_at AT TIME ZONE 'UTC', {TS}) AS returned_at, damage_charge, late_charge"
    )
}

fn row_to_booking(row: &sqlx::postgres::PgRow) -> Result<BookingRow, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let state = State::parse(&state).ok_or_else(|| {
        sqlx::Error::Decode(format!("bookings.state {state:?} is not a booking state").into())
    })?;
    Ok(BookingRow {
        view: BookingView {
            id: row.try_get("id")?,
            state,
            branch: row.try_get("branch_id")?,
            asset_id: row.try_get("asset_id")?,
            sku: row.try_get("sku")?,
            from: row.try_get("first_day")?,
            to: row.try_get("last_day")?,
            free_from: row.try_get("free_from")?,
            customer: row.try_get("customer")?,
            tier: row.try_get("tier")?,
            expires_at: row.try_get("expires_at")?,
            payment_ref: row.try_get("payment_ref")?,
            refund_due: row.try_get("refund_due")?,
            returned_at: row.try_get("returned_at")?,
            damage_charge: row.try_get("damage_charge")?,
            late_charge: row.try_get("late_charge")?,
        },
        created_by: row.try_get("created_by")?,
        lock_token: row.try_get("lock_token")?,
    })
}

/// What a hold asks for, validated.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub branch: String,
    pub asset_id: String,
    pub sku: String,
    pub stay: Stay,
    pub customer: String,
    pub tier: Tier,
    pub created_by: String,
    pub idempotency_key: Option<String>,
    /// SHA-256 of the canonical request, to tell a retry from a reused key.
    pub digest: [u8; 32],
    pub lock_token: Option<String>,
}

#[derive(Debug)]
pub enum HoldOutcome {
    /// A new hold.
    Held(BookingRow),
    /// A retry of an earlier request with the same key: its booking, as it is now.
    Replayed(BookingRow),
    /// The days are taken by a live booking.
    Taken,
}

/// A booking that ended (expired or cancelled) and whose side effects are due.
#[derive(Debug, Clone)]
pub struct Ended {
    pub id: String,
    pub branch: String,
    pub asset_id: String,
    pub sku: String,
    /// The taken days, half-open.
    pub start: Date,
    pub end: Date,
    /// The rental days, both included (the days a waitlist is offered).
    pub first_day: Date,
    pub last_day: Date,
    pub lock_token: Option<String>,
}

fn db_code(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .map(|code| code.into_owned())
}

/// Takes a hold, or says the days are taken.
///
/// The common case costs one statement in its own transaction: the `INSERT`, which the
/// exclusion constraint refuses on any overlap with a held or confirmed row. Only when it is
/// refused and a lapsed hold (due, not yet swept) overlaps the days does the hold go the long
/// way: expire the lapsed holds and insert in one transaction, so a lapsed hold never keeps a
/// slot from a paying customer and is never expired without the slot being taken.
pub async fn hold(
    db: &PgPool,
    request: &HoldRequest,
    buffer_days: u32,
    hold_window: std::time::Duration,
) -> Result<(HoldOutcome, Vec<String>), RecordError> {
    if let Some(key) = &request.idempotency_key
        && let Some(outcome) = replay(db, &request.created_by, key, &request.digest).await?
    {
        return Ok((outcome, Vec::new()));
    }
    let (start, end) = request.stay.taken(buffer_days)?;
    let error = match insert(db, request, start, end, hold_window).await {
        Ok(row) => return Ok((HoldOutcome::Held(row), Vec::new())),
        Err(error) => error,
    };
    match db_code(&error).as_deref() {
        Some(EXCLUSION_VIOLATION) if !lapsed_overlap(db, request, start, end).await? => {
            classify(db, request, error).await
        }
        Some(EXCLUSION_VIOLATION | DEADLOCK_DETECTED) => {
            hold_replacing_lapsed(db, request, start, end, hold_window).await
        }
        _ => classify(db, request, error).await,
    }
}

/// Whether a lapsed hold (due, not yet expired) overlaps `[start, end)` of the asset.
async fn lapsed_overlap(
    db: &PgPool,
    request: &HoldRequest,
    start: Date,
    end: Date,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM bookings
             WHERE branch_id = $1 AND asset_id = $2 AND state = 'HELD' AND hold_expires_at <= now()
               AND period && $3::daterange)",
    )
    .bind(&request.branch)
    .bind(&request.asset_id)
    .bind(day_range(start, end))
    .fetch_one(db)
    .await
}

/// [`hold`]'s long way: in one transaction, expire the lapsed holds overlapping the days, then
/// insert; tried again when PostgreSQL picks it as a deadlock victim.
async fn hold_replacing_lapsed(
    db: &PgPool,
    request: &HoldRequest,
    start: Date,
    end: Date,
    hold_window: std::time::Duration,
) -> Result<(HoldOutcome, Vec<String>), RecordError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = db.begin().await?;
        let result = expire_then_insert(&mut tx, request, start, end, hold_window).await;
        let error = match result {
            Ok((row, expired)) => match tx.commit().await {
                Ok(()) => return Ok((HoldOutcome::Held(row), expired)),
                Err(error) => error,
            },
            Err(error) => {
                drop(tx);
                error
            }
        };
        // A deadlock victim does not know who won: the winner may not have committed yet, and
        // may be this caller's own first attempt. Trying again waits for it and then knows.
        if attempt < DEADLOCK_ATTEMPTS && db_code(&error).as_deref() == Some(DEADLOCK_DETECTED) {
            continue;
        }
        return classify(db, request, error).await;
    }
}

/// How often a hold is tried when PostgreSQL picks it as a deadlock victim.
const DEADLOCK_ATTEMPTS: u32 = 3;

/// SHA-256 of a hold's canonical request: a retry with the same key and this digest is the same
/// request; another digest under the same key is a reused key. Online holds and offline
/// (`booking:requested`) ones compute it alike, so either may find the other's booking.
pub fn request_digest(
    branch: &str,
    asset_id: &str,
    sku: &str,
    stay: Stay,
    customer: &str,
    tier: Tier,
) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    for part in [
        branch,
        asset_id,
        sku,
        &format_day(stay.first),
        &format_day(stay.last),
        customer,
        tier.as_str(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().into()
}

/// [`hold`] inside the caller's transaction (ingest of an offline booking): the same replay
/// check and insert, in a savepoint, so a taken slot rolls back only this attempt. A deadlock
/// or any other database error is returned as is: the caller's whole transaction is then
/// retried or fails.
pub async fn hold_in(
    conn: &mut PgConnection,
    request: &HoldRequest,
    buffer_days: u32,
    hold_window: std::time::Duration,
) -> Result<(HoldOutcome, Vec<String>), RecordError> {
    use sqlx::Connection as _;
    if let Some(key) = &request.idempotency_key
        && let Some(outcome) = replay(&mut *conn, &request.created_by, key, &request.digest).await?
    {
        return Ok((outcome, Vec::new()));
    }
    let (start, end) = request.stay.taken(buffer_days)?;
    let mut savepoint = conn.begin().await?;
    match expire_then_insert(&mut savepoint, request, start, end, hold_window).await {
        Ok((row, expired)) => {
            savepoint.commit().await?;
            Ok((HoldOutcome::Held(row), expired))
        }
        Err(error) => {
            savepoint.rollback().await?;
            let no_such_asset = || RecordError::NoSuchAsset {
                branch: request.branch.clone(),
                asset: request.asset_id.clone(),
                sku: request.sku.clone(),
            };
            if matches!(error, sqlx::Error::RowNotFound) {
                return Err(no_such_asset());
            }
            match db_code(&error).as_deref() {
                Some(EXCLUSION_VIOLATION) => Ok((HoldOutcome::Taken, Vec::new())),
                Some(FOREIGN_KEY_VIOLATION) => Err(no_such_asset()),
                _ => Err(RecordError::Db(error)),
            }
        }
    }
}

/// Confirms a live hold inside the caller's transaction, as a branch's counter booking (paid or
/// vouched for at the counter). Returns the row as it is afterwards: `CONFIRMED`, or whatever
/// state kept it from being confirmed.
pub async fn confirm_in(
    conn: &mut PgConnection,
    id: &str,
    payment_ref: &str,
) -> Result<Option<BookingRow>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE bookings SET state = 'CONFIRMED', confirmed_at = now(), payment_ref = $2
         WHERE id = $1::uuid AND state = 'HELD' AND hold_expires_at > now()
         RETURNING {}",
        select_columns()
    )))
    .bind(id)
    .bind(payment_ref)
    .fetch_optional(&mut *conn)
    .await?;
    let row = match row {
        Some(row) => Some(row),
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM bookings WHERE id = $1::uuid",
                select_columns()
            )))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    row.as_ref().map(row_to_booking).transpose()
}

/// The live bookings (held and unexpired, or confirmed) of `branch`'s assets that are not over
/// by `today`, at most `limit`, and PostgreSQL's `now()`: the calendar a branch keeps for when
/// its link is down.
pub async fn branch_calendar(
    db: &PgPool,
    branch: &str,
    limit: i64,
) -> Result<(String, Vec<BookingRow>), sqlx::Error> {
    let now: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_char(now() AT TIME ZONE 'UTC', {TS})"
    )))
    .fetch_one(db)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM bookings
         WHERE branch_id = $1
           AND (state IN ('CONFIRMED', 'COMPLETED') OR (state = 'HELD' AND hold_expires_at > now()))
           AND upper(period) > current_date
         ORDER BY asset_id, first_day
         LIMIT $2",
        select_columns()
    )))
    .bind(branch)
    .bind(limit)
    .fetch_all(db)
    .await?;
    let rows = rows.iter().map(row_to_booking).collect::<Result<_, _>>()?;
    Ok((now, rows))
}

/// A failed hold: taken, a raced retry, an unknown asset, or a real failure.
async fn classify(
    db: &PgPool,
    request: &HoldRequest,
    error: sqlx::Error,
) -> Result<(HoldOutcome, Vec<String>), RecordError> {
    if matches!(error, sqlx::Error::RowNotFound) {
        return Err(RecordError::NoSuchAsset {
            branch: request.branch.clone(),
            asset: request.asset_id.clone(),
            sku: request.sku.clone(),
        });
    }
    match db_code(&error).as_deref() {
        Some(EXCLUSION_VIOLATION | DEADLOCK_DETECTED) => {
            // A retry whose first attempt committed meanwhile gets that attempt's answer.
            if let Some(key) = &request.idempotency_key
                && let Some(outcome) = replay(db, &request.created_by, key, &request.digest).await?
            {
                return Ok((outcome, Vec::new()));
            }
            Ok((HoldOutcome::Taken, Vec::new()))
        }
        Some(UNIQUE_VIOLATION) => {
            // Two retries with one key raced: the other committed first.
            let key = request.idempotency_key.as_deref().unwrap_or_default();
            match replay(db, &request.created_by, key, &request.digest).await? {
                Some(outcome) => Ok((outcome, Vec::new())),
                None => Err(RecordError::Db(error)),
            }
        }
        Some(FOREIGN_KEY_VIOLATION) => Err(RecordError::NoSuchAsset {
            branch: request.branch.clone(),
            asset: request.asset_id.clone(),
            sku: request.sku.clone(),
        }),
        _ => Err(RecordError::Db(error)),
    }
}

/// The booking an earlier request with this caller's `key` made, if any (a retry's answer); the
/// key used for another request is an error.
pub async fn replayed(
    db: &PgPool,
    created_by: &str,
    key: &str,
    digest: &[u8; 32],
) -> Result<Option<BookingRow>, RecordError> {
    Ok(match replay(db, created_by, key, digest).await? {
        Some(HoldOutcome::Replayed(row)) => Some(row),
        _ => None,
    })
}

async fn replay<'e>(
    db: impl sqlx::PgExecutor<'e>,
    created_by: &str,
    key: &str,
    digest: &[u8; 32],
) -> Result<Option<HoldOutcome>, RecordError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {}, request_digest FROM bookings WHERE created_by = $1 AND idempotency_key = $2",
        select_columns()
    )))
    .bind(created_by)
    .bind(key)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stored: Vec<u8> = row.try_get("request_digest")?;
    if stored != digest {
        return Err(RecordError::KeyReused(key.to_owned()));
    }
    Ok(Some(HoldOutcome::Replayed(row_to_booking(&row)?)))
}

/// Inside the hold's transaction: expire the overlapping due holds, then insert. Returns the
/// new row and the ids of the holds it expired.
/// The seed of the advisory-lock key of an asset's inserts: keeps its keys apart from any other
/// user of `hashtextextended` keys in the same database.
const ASSET_LOCK_SEED: i64 = 0x5e47_b00c;

/// Expires the lapsed holds overlapping `[start, end)` (their days are taken over here, so they
/// are marked released: nothing is given back to the calendar or the waitlist), then inserts.
async fn expire_then_insert(
    tx: &mut PgConnection,
    request: &HoldRequest,
    start: Date,
    end: Date,
    hold_window: std::time::Duration,
) -> Result<(BookingRow, Vec<String>), sqlx::Error> {
    let range = day_range(start, end);
    let expired: Vec<String> = sqlx::query_scalar(
        "UPDATE bookings SET state = 'EXPIRED', ended_at = now(), released_at = now()
         WHERE branch_id = $1 AND asset_id = $2 AND state = 'HELD' AND hold_expires_at <= now()
           AND period && $3::daterange
         RETURNING id::text",
    )
    .bind(&request.branch)
    .bind(&request.asset_id)
    .bind(&range)
    .fetch_all(&mut *tx)
    .await?;
    let row = insert(&mut *tx, request, start, end, hold_window).await?;
    Ok((row, expired))
}

/// Inserts the hold row, if the asset exists with that SKU (else `RowNotFound`, answered like
/// the foreign key would be).
///
/// Inserts of one asset queue on a transaction-level advisory lock taken by the same statement
/// before its row exists. Without it, racing inserts each put their row in the exclusion
/// index and then wait for each other's transaction while checking it: a deadlock per pair,
/// each found only after `deadlock_timeout` (1 s), and a herd on PostgreSQL alone cascaded
/// into tens of seconds. Queued, each insert sees the one before it committed or gone.
async fn insert<'e>(
    db: impl sqlx::PgExecutor<'e>,
    request: &HoldRequest,
    start: Date,
    end: Date,
    hold_window: std::time::Duration,
) -> Result<BookingRow, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH queued AS MATERIALIZED (
             SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, {ASSET_LOCK_SEED}))
         )
         INSERT INTO bookings (id, branch_id, asset_id, sku, first_day, last_day, period, state,
                               customer, tier, created_by, idempotency_key, request_digest,
                               hold_expires_at, lock_token)
         SELECT gen_random_uuid(), a.branch_id, a.id, a.sku, $3::date, $4::date, $5::daterange,
                'HELD', $6, $7, $8, $9, $10, now() + make_interval(secs => $11), $12
         FROM queued, assets a WHERE a.branch_id = $1 AND a.id = $2 AND a.sku = $13
         RETURNING {}",
        select_columns()
    )))
    .bind(&request.branch)
    .bind(&request.asset_id)
    .bind(format_day(request.stay.first))
    .bind(format_day(request.stay.last))
    .bind(day_range(start, end))
    .bind(&request.customer)
    .bind(request.tier.as_str())
    .bind(&request.created_by)
    .bind(&request.idempotency_key)
    .bind(request.digest.as_slice())
    .bind(hold_window.as_secs_f64())
    .bind(&request.lock_token)
    .bind(&request.sku)
    .fetch_optional(db)
    .await?;
    match row {
        Some(row) => row_to_booking(&row),
        None => Err(sqlx::Error::RowNotFound),
    }
}

/// One booking by id.
pub async fn get(db: &PgPool, id: &str) -> Result<Option<BookingRow>, sqlx::Error> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM bookings WHERE id = $1::uuid",
        select_columns()
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(row_to_booking).transpose()
}

#[derive(Debug)]
pub enum ConfirmOutcome {
    Confirmed(BookingRow),
    /// Confirmed before with the same payment: the same answer.
    AlreadyConfirmed(BookingRow),
    /// The hold had lapsed: refused, the payment flagged for refund.
    Late(BookingRow),
    /// Cancelled or completed: refused.
    WrongState(BookingRow),
}

/// Confirms a live hold with the payment that paid for it.
pub async fn confirm(
    db: &PgPool,
    id: &str,
    payment_ref: &str,
) -> Result<Option<ConfirmOutcome>, sqlx::Error> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    let confirmed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE bookings SET state = 'CONFIRMED', confirmed_at = now(), payment_ref = $2
         WHERE id = $1::uuid AND state = 'HELD' AND hold_expires_at > now()
         RETURNING {}",
        select_columns()
    )))
    .bind(id)
    .bind(payment_ref)
    .fetch_optional(db)
    .await?;
    if let Some(row) = confirmed {
        return Ok(Some(ConfirmOutcome::Confirmed(row_to_booking(&row)?)));
    }
    // Not live: a lapsed hold (swept or not) is expired now and the payment flagged for refund;
    // the row is only touched if it is still HELD or EXPIRED, so a confirmed slot stays as is.
    let late = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE bookings
         SET state = 'EXPIRED', ended_at = coalesce(ended_at, now()), refund_due = true,
             payment_ref = coalesce(payment_ref, $2)
         WHERE id = $1::uuid
           AND (state = 'EXPIRED' OR (state = 'HELD' AND hold_expires_at <= now()))
         RETURNING {}",
        select_columns()
    )))
    .bind(id)
    .bind(payment_ref)
    .fetch_optional(db)
    .await?;
    if let Some(row) = late {
        return Ok(Some(ConfirmOutcome::Late(row_to_booking(&row)?)));
    }
    let Some(row) = get(db, id).await? else {
        return Ok(None);
    };
    if row.state == State::Confirmed && row.payment_ref.as_deref() == Some(payment_ref) {
        return Ok(Some(ConfirmOutcome::AlreadyConfirmed(row)));
    }
    Ok(Some(ConfirmOutcome::WrongState(row)))
}

#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(BookingRow),
    AlreadyCancelled(BookingRow),
    WrongState(BookingRow),
}

/// Cancels a held or confirmed booking.
pub async fn cancel(db: &PgPool, id: &str) -> Result<Option<CancelOutcome>, sqlx::Error> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    let cancelled = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE bookings SET state = 'CANCELLED', ended_at = now()
         WHERE id = $1::uuid AND state IN ('HELD', 'CONFIRMED')
         RETURNING {}",
        select_columns()
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    if let Some(row) = cancelled {
        return Ok(Some(CancelOutcome::Cancelled(row_to_booking(&row)?)));
    }
    let Some(row) = get(db, id).await? else {
        return Ok(None);
    };
    Ok(Some(if row.state == State::Cancelled {
        CancelOutcome::AlreadyCancelled(row)
    } else {
        CancelOutcome::WrongState(row)
    }))
}

/// Cancels, inside the caller's transaction, the held or confirmed booking `created_by` made
/// with `key` (a branch's `booking:cancelled` event). Returns whether one was cancelled; its
/// side effects are the sweeper's, as for every ended booking.
pub async fn cancel_by_key(
    conn: &mut PgConnection,
    created_by: &str,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let cancelled = sqlx::query(
        "UPDATE bookings SET state = 'CANCELLED', ended_at = now()
         WHERE created_by = $1 AND idempotency_key = $2 AND state IN ('HELD', 'CONFIRMED')",
    )
    .bind(created_by)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(cancelled.rows_affected() > 0)
}

/// Expires up to `limit` due holds, skipping rows another replica is working on. Returns how
/// many it expired.
pub async fn expire_due(db: &PgPool, limit: i64) -> Result<u64, sqlx::Error> {
    let expired = sqlx::query(
        "WITH due AS (
             SELECT id FROM bookings
             WHERE state = 'HELD' AND hold_expires_at <= now()
             ORDER BY hold_expires_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE bookings b SET state = 'EXPIRED', ended_at = now()
         FROM due WHERE b.id = due.id",
    )
    .bind(limit)
    .execute(db)
    .await?;
    Ok(expired.rows_affected())
}

/// Claims up to `limit` ended bookings whose side effects are due, inside `tx`: the rows stay
/// locked (others skip them) until the caller marks them released and commits.
pub async fn claim_ended(tx: &mut PgConnection, limit: i64) -> Result<Vec<Ended>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id::text AS id, branch_id, asset_id, sku, lower(period)::text AS start,
                upper(period)::text AS end_day, first_day::text AS first_day,
                last_day::text AS last_day, lock_token
         FROM bookings
         WHERE state IN ('EXPIRED', 'CANCELLED') AND released_at IS NULL
         ORDER BY ended_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            let day = |column: &str| -> Result<Date, sqlx::Error> {
                let text: String = row.try_get(column)?;
                super::types::parse_stored_day("period", &text)
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))
            };
            Ok(Ended {
                id: row.try_get("id")?,
                branch: row.try_get("branch_id")?,
                asset_id: row.try_get("asset_id")?,
                sku: row.try_get("sku")?,
                start: day("start")?,
                end: day("end_day")?,
                first_day: day("first_day")?,
                last_day: day("last_day")?,
                lock_token: row.try_get("lock_token")?,
            })
        })
        .collect()
}

pub async fn mark_released(tx: &mut PgConnection, ids: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE bookings SET released_at = now() WHERE id::text = ANY($1)")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// An asset of a SKU and whether it is free for the days `[start, end)` by PostgreSQL.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AssetAvailability {
    pub branch: String,
    pub asset_id: String,
    pub plate: String,
    pub free: bool,
}

/// The assets of `sku`, each with whether a live booking overlaps `[start, end)`. A due hold
/// does not count, swept or not.
pub async fn availability(
    db: &PgPool,
    sku: &str,
    start: Date,
    end: Date,
) -> Result<Vec<AssetAvailability>, sqlx::Error> {
    let range = day_range(start, end);
    sqlx::query_as(
        "SELECT a.branch_id AS branch, a.id AS asset_id, a.plate,
                NOT EXISTS (
                    SELECT 1 FROM bookings b
                    WHERE b.branch_id = a.branch_id AND b.asset_id = a.id
                      AND (b.state IN ('CONFIRMED', 'COMPLETED') OR (b.state = 'HELD' AND b.hold_expires_at > now()))
                      AND b.period && $2::daterange
                ) AS free
         FROM assets a WHERE a.sku = $1
         ORDER BY a.branch_id, a.id",
    )
    .bind(sku)
    .bind(&range)
    .fetch_all(db)
    .await
}

/// The assets of `sku` (branch, id, plate).
pub async fn assets_of(
    db: &PgPool,
    sku: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT branch_id, id, plate FROM assets WHERE sku = $1 ORDER BY branch_id, id")
        .bind(sku)
        .fetch_all(db)
        .await
}

/// Every live booking's taken days (of one asset, `(branch, asset id)`, if given): what the
/// calendar must show.
pub async fn live_periods(
    db: &PgPool,
    asset: Option<(&str, &str)>,
) -> Result<Vec<(String, String, String, Date, Date)>, sqlx::Error> {
    let (branch, asset_id) = asset.unzip();
    let rows = sqlx::query(
        "SELECT sku, branch_id, asset_id, lower(period)::text AS start, upper(period)::text AS end_day
         FROM bookings
         WHERE (state IN ('CONFIRMED', 'COMPLETED') OR (state = 'HELD' AND hold_expires_at > now()))
           AND ($1::text IS NULL OR (branch_id = $1 AND asset_id = $2))",
    )
    .bind(branch)
    .bind(asset_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            let day = |column: &str| -> Result<Date, sqlx::Error> {
                let text: String = row.try_get(column)?;
                super::types::parse_stored_day("period", &text)
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))
            };
            Ok((
                row.try_get("sku")?,
                row.try_get("branch_id")?,
                row.try_get("asset_id")?,
                day("start")?,
                day("end_day")?,
            ))
        })
        .collect()
}

/// Payment references a branch took at its counter (offline bookings): no gateway
/// authorisation stands behind them, so completion settles nothing with the gateway.
pub const COUNTER_PAYMENT_PREFIX: &str = "branch-counter:";

/// What the counter reports when the asset comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    /// RFC 3339, as sent; its own offset decides the return day (the counter's local day).
    pub returned_at: time::OffsetDateTime,
    pub damage_charge: i64,
    pub late_charge: i64,
}

#[derive(Debug)]
pub enum CompleteOutcome {
    /// Completed now (`free_from`: the first day the asset is free again).
    Completed(BookingRow),
    /// Completed before with the same facts: the same answer.
    AlreadyCompleted(BookingRow),
    /// Completed before with other facts, or not confirmed: refused.
    WrongState(BookingRow),
    /// Returned before the first rental day.
    ReturnedBeforeStart(BookingRow),
}

/// Completes a confirmed booking: the return facts, the period cut back to the return day (and
/// the turnover buffer after it; never past the booked days), and the gateway's due capture and
/// release, in one transaction.
pub async fn complete(
    db: &PgPool,
    id: &str,
    facts: &Return,
    release_delay: std::time::Duration,
) -> Result<Option<CompleteOutcome>, sqlx::Error> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    let mut tx = db.begin().await?;
    let completed = complete_in(&mut tx, Which::Id(id), facts, release_delay).await?;
    if let Some(row) = completed {
        tx.commit().await?;
        return Ok(Some(CompleteOutcome::Completed(row)));
    }
    drop(tx);
    let Some(row) = get(db, id).await? else {
        return Ok(None);
    };
    let same_facts = row.state == State::Completed
        && row.damage_charge == Some(facts.damage_charge)
        && row.late_charge == Some(facts.late_charge)
        && row.returned_at.as_deref().and_then(|at| {
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
        }) == Some(facts.returned_at);
    Ok(Some(if same_facts {
        CompleteOutcome::AlreadyCompleted(row)
    } else if row.state == State::Confirmed {
        CompleteOutcome::ReturnedBeforeStart(row)
    } else {
        CompleteOutcome::WrongState(row)
    }))
}

/// Which booking a completion is for: the cloud's id, or the device's idempotency key.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    Id(&'a str),
    /// A branch's `booking:completed` event: the booking `created_by` made with `key`.
    Key {
        created_by: &'a str,
        key: &'a str,
    },
}

/// Completes a confirmed booking inside the caller's transaction: the return facts, the period
/// cut back to the return day (and the turnover buffer after it; never past the booked days),
/// and what the gateway is still owed. None when no confirmed booking matched (or it came back
/// before its first day).
pub async fn complete_in(
    conn: &mut PgConnection,
    which: Which<'_>,
    facts: &Return,
    release_delay: std::time::Duration,
) -> Result<Option<BookingRow>, sqlx::Error> {
    let returned_day = format_day(facts.returned_at.date());
    let returned_at = facts
        .returned_at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    let (filter, first, key) = match which {
        Which::Id(id) => ("id = $1::uuid", id, None),
        Which::Key { created_by, key } => (
            "created_by = $1 AND idempotency_key = $6",
            created_by,
            Some(key),
        ),
    };
    let sql = format!(
        "UPDATE bookings
         SET state = 'COMPLETED', completed_at = now(), returned_at = $2::timestamptz,
             damage_charge = $3, late_charge = $4,
             period = daterange(first_day,
                                least(upper(period), $5::date + 1 + (upper(period) - last_day - 1)))
         WHERE {filter} AND state = 'CONFIRMED' AND first_day <= $5::date
         RETURNING {}",
        select_columns()
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(first)
        .bind(&returned_at)
        .bind(facts.damage_charge)
        .bind(facts.late_charge)
        .bind(&returned_day);
    if let Some(key) = key {
        query = query.bind(key);
    }
    let Some(row) = query.fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let row = row_to_booking(&row)?;
    if let Some(payment_ref) = &row.payment_ref
        && !payment_ref.starts_with(COUNTER_PAYMENT_PREFIX)
    {
        let charge = facts.damage_charge.saturating_add(facts.late_charge);
        sqlx::query(
            "INSERT INTO payment_settlements
                 (booking_id, payment_ref, capture_amount, capture_key, captured_at,
                  release_key, release_due_at)
             VALUES ($1::uuid, $2, $3, 'capture:' || $1, CASE WHEN $3 = 0 THEN now() END,
                     'release:' || $1, now() + make_interval(secs => $4))",
        )
        .bind(&row.id)
        .bind(payment_ref)
        .bind(charge)
        .bind(release_delay.as_secs_f64())
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some(row))
}
