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
//! - every time is PostgreSQL's `now()`, so replicas with skewed clocks agree on expiry.

use sqlx::{PgConnection, PgPool, Row as _};
use time::Date;

use super::types::{State, Stay, Tier, format_day};

/// PostgreSQL error codes that mean "someone else has the slot".
const EXCLUSION_VIOLATION: &str = "23P01";
const DEADLOCK_DETECTED: &str = "40P01";
const UNIQUE_VIOLATION: &str = "23505";
const FOREIGN_KEY_VIOLATION: &str = "23503";

/// Timestamps as the API writes them.
const TS: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

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
    Db(#[from] sqlx::Error),
}

/// A booking row as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BookingRow {
    pub id: String,
    pub state: String,
    pub branch: String,
    pub asset_id: String,
    pub sku: String,
    pub from: String,
    pub to: String,
    /// First day the asset is free again (after the turnover buffer).
    pub free_from: String,
    pub customer: String,
    pub tier: String,
    pub expires_at: String,
    pub payment_ref: Option<String>,
    pub refund_due: bool,
    #[serde(skip)]
    pub created_by: String,
    #[serde(skip)]
    pub lock_token: Option<String>,
}

impl BookingRow {
    pub fn state(&self) -> Option<State> {
        State::parse(&self.state)
    }
}

fn select_columns() -> String {
    format!(
        "id::text AS id, state, branch_id, asset_id, sku, first_day::text AS first_day,
         last_day::text AS last_day, upper(period)::text AS free_from, customer, tier,
         to_char(hold_expires_at AT TIME ZONE 'UTC', {TS}) AS expires_at, payment_ref,
         refund_due, created_by, lock_token"
    )
}

fn row_to_booking(row: &sqlx::postgres::PgRow) -> Result<BookingRow, sqlx::Error> {
    Ok(BookingRow {
        id: row.try_get("id")?,
        state: row.try_get("state")?,
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
    let (start, end) = request.stay.taken(buffer_days);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = db.begin().await?;
        let result = insert(&mut tx, request, start, end, hold_window).await;
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
    let (start, end) = request.stay.taken(buffer_days);
    let mut savepoint = conn.begin().await?;
    match insert(&mut savepoint, request, start, end, hold_window).await {
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
           AND (state = 'CONFIRMED' OR (state = 'HELD' AND hold_expires_at > now()))
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
async fn insert(
    tx: &mut PgConnection,
    request: &HoldRequest,
    start: Date,
    end: Date,
    hold_window: std::time::Duration,
) -> Result<(BookingRow, Vec<String>), sqlx::Error> {
    let range = format!("[{},{})", format_day(start), format_day(end));
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
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO bookings (id, branch_id, asset_id, sku, first_day, last_day, period, state,
                               customer, tier, created_by, idempotency_key, request_digest,
                               hold_expires_at, lock_token)
         SELECT gen_random_uuid(), a.branch_id, a.id, a.sku, $3::date, $4::date, $5::daterange,
                'HELD', $6, $7, $8, $9, $10, now() + make_interval(secs => $11), $12
         FROM assets a WHERE a.branch_id = $1 AND a.id = $2 AND a.sku = $13
         RETURNING {}",
        select_columns()
    )))
    .bind(&request.branch)
    .bind(&request.asset_id)
    .bind(format_day(request.stay.first))
    .bind(format_day(request.stay.last))
    .bind(&range)
    .bind(&request.customer)
    .bind(request.tier.as_str())
    .bind(&request.created_by)
    .bind(&request.idempotency_key)
    .bind(request.digest.as_slice())
    .bind(hold_window.as_secs_f64())
    .bind(&request.lock_token)
    .bind(&request.sku)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        Some(row) => Ok((row_to_booking(&row)?, expired)),
        // No such asset: answered like the foreign key would.
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
    if row.state() == Some(State::Confirmed) && row.payment_ref.as_deref() == Some(payment_ref) {
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
    Ok(Some(if row.state() == Some(State::Cancelled) {
        CancelOutcome::AlreadyCancelled(row)
    } else {
        CancelOutcome::WrongState(row)
    }))
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
                super::types::parse_day("period", &text)
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
#[derive(Debug, Clone, serde::Serialize)]
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
    let range = format!("[{},{})", format_day(start), format_day(end));
    let rows = sqlx::query(
        "SELECT a.branch_id, a.id, a.plate,
                NOT EXISTS (
                    SELECT 1 FROM bookings b
                    WHERE b.branch_id = a.branch_id AND b.asset_id = a.id
                      AND (b.state = 'CONFIRMED' OR (b.state = 'HELD' AND b.hold_expires_at > now()))
                      AND b.period && $2::daterange
                ) AS free
         FROM assets a WHERE a.sku = $1
         ORDER BY a.branch_id, a.id",
    )
    .bind(sku)
    .bind(&range)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AssetAvailability {
                branch: row.try_get("branch_id")?,
                asset_id: row.try_get("id")?,
                plate: row.try_get("plate")?,
                free: row.try_get("free")?,
            })
        })
        .collect()
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
         WHERE (state = 'CONFIRMED' OR (state = 'HELD' AND hold_expires_at > now()))
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
                super::types::parse_day("period", &text)
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
