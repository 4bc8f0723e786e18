//! Head office's reads of one branch (operator token, JSON): sales per day, payments by method,
//! the days' closes (Z-reports), stock levels and open work orders, from the projections ingest keeps
//! (`GET /v1/branches/{branch}/reports/...`).
//!
//! Days are the branch's calendar days: the box knows its UTC offset, the cloud does not, so a
//! report takes `utc_offset` (default `+07:00`, WIB, where most branches are) and says in its
//! answer which one it used. A range is `from..=to`, at most [`MAX_RANGE_DAYS`] days, and every
//! day of it is in the answer, with zeros where nothing happened, so a chart needs no gap filling.
//! Lists are bounded ([`MAX_ROWS`]) and say when they were cut (`truncated`).
//!
//! Every query is one statement over the projections, so a report is consistent with itself even
//! while a branch pushes.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use sqlx::PgPool;
use time::Date;

use sentra_protocol::day::{format_day, parse_day};

use crate::branches::{self, BranchId};
use crate::devices::auth::Caller;
use crate::web::ApiError;

/// The longest range a day-by-day report covers.
pub const MAX_RANGE_DAYS: i64 = 366;
/// The most rows a list (stock levels, open work orders) returns.
pub const MAX_ROWS: i64 = 1000;
/// The offset a report uses unless `utc_offset` says otherwise: WIB.
pub const DEFAULT_UTC_OFFSET_SECS: i32 = 7 * 3600;
/// The widest UTC offset in use anywhere (UTC+14:00, UTC−12:00 are inside it).
const MAX_OFFSET_SECS: i32 = 14 * 3600;

/// The query string of every report: `from`, `to` (days), `utc_offset` (`±HH:MM`).
pub type RawQuery =
    Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// A checked day range in the branch's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: Date,
    pub to: Date,
    pub offset_secs: i32,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadQuery(message.into())
}

/// `+07:00`, `-03:30`, `+00:00`; at most 14 hours either way.
pub fn parse_offset(raw: &str) -> Result<i32, ApiError> {
    let expected = || {
        bad(format!(
            "utc_offset {:?}: expected ±HH:MM within ±14:00, e.g. +07:00 (WIB), +08:00 (WITA), +09:00 (WIT)",
            raw.chars().take(16).collect::<String>()
        ))
    };
    let bytes = raw.as_bytes();
    if bytes.len() != 6 || bytes[3] != b':' {
        return Err(expected());
    }
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(expected()),
    };
    let digits = |at: usize| -> Option<i32> {
        let (a, b) = (bytes[at], bytes[at + 1]);
        (a.is_ascii_digit() && b.is_ascii_digit())
            .then(|| i32::from(a - b'0') * 10 + i32::from(b - b'0'))
    };
    let (Some(hours), Some(minutes)) = (digits(1), digits(4)) else {
        return Err(expected());
    };
    let secs = hours * 3600 + minutes * 60;
    if minutes >= 60 || secs > MAX_OFFSET_SECS {
        return Err(expected());
    }
    Ok(sign * secs)
}

/// `+07:00` for 25 200.
pub fn format_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
}

impl Range {
    /// Checks a report's query: `from` and `to` required, `utc_offset` optional; an unknown or
    /// repeated parameter is refused, so a typo (`form=`) never silently reports something else.
    pub fn parse(pairs: &[(String, String)]) -> Result<Range, ApiError> {
        let (mut from, mut to, mut offset) = (None, None, None);
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "from" => &mut from,
                "to" => &mut to,
                "utc_offset" => &mut offset,
                _ => {
                    return Err(bad(format!(
                        "unknown parameter {:?}: a report takes from, to and utc_offset",
                        name.chars().take(32).collect::<String>()
                    )));
                }
            };
            if slot.replace(value.as_str()).is_some() {
                return Err(bad(format!("{name} is given twice")));
            }
        }
        let day = |name: &str, value: Option<&str>| -> Result<Date, ApiError> {
            let value = value.ok_or_else(|| bad(format!("{name} is missing (YYYY-MM-DD)")))?;
            parse_day(value).map_err(|error| bad(format!("{name}: {error}")))
        };
        let (from, to) = (day("from", from)?, day("to", to)?);
        if to < from {
            return Err(bad(format!(
                "to {} is before from {}",
                format_day(to),
                format_day(from)
            )));
        }
        if (to - from).whole_days() >= MAX_RANGE_DAYS {
            return Err(bad(format!(
                "from {} to {} is more than {MAX_RANGE_DAYS} days; ask in parts",
                format_day(from),
                format_day(to)
            )));
        }
        let offset_secs = match offset {
            Some(raw) if !raw.is_empty() => parse_offset(raw)?,
            _ => DEFAULT_UTC_OFFSET_SECS,
        };
        Ok(Range {
            from,
            to,
            offset_secs,
        })
    }

    fn from_query(query: RawQuery) -> Result<Range, ApiError> {
        let axum::extract::Query(pairs) = query.map_err(|rejection| bad(rejection.body_text()))?;
        Range::parse(&pairs)
    }
}

/// The branch of the path, which must exist (an unknown one is a 404, not an empty report).
async fn branch(db: &PgPool, raw: &str) -> Result<BranchId, ApiError> {
    let id = BranchId::parse(raw).map_err(|error| ApiError::NotFound(error.to_string()))?;
    let mut conn = db.acquire().await.map_err(|e| ApiError::database(&e))?;
    if !branches::exists(&mut conn, &id)
        .await
        .map_err(|e| ApiError::database(&e))?
    {
        return Err(ApiError::NotFound(format!(
            "branch {} does not exist",
            id.as_str()
        )));
    }
    Ok(id)
}

/// The range's bounds and days as SQL sees them: `$2` from, `$3` to (text days), `$4` the offset
/// in seconds. `lo`/`hi` are the instants the branch's first day starts and the day after its
/// last starts; `local(x)` is the branch's calendar day of instant `x`.
const BOUNDS: &str = "bounds AS (
    SELECT ($2::date::timestamp - make_interval(secs => $4)) AT TIME ZONE 'UTC' AS lo,
           (($3::date + 1)::timestamp - make_interval(secs => $4)) AT TIME ZONE 'UTC' AS hi),
    days AS (SELECT d::date AS day FROM generate_series($2::date, $3::date, interval '1 day') d)";

/// Runs a query written over [`BOUNDS`] (`$1` branch, `$2`/`$3` days, `$4` offset) for `range`.
async fn day_rows<T>(
    db: &PgPool,
    sql: String,
    branch: &BranchId,
    range: Range,
) -> Result<Vec<T>, ApiError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(branch.as_str())
        .bind(format_day(range.from))
        .bind(format_day(range.to))
        .bind(range.offset_secs)
        .fetch_all(db)
        .await
        .map_err(|e| ApiError::database(&e))
}

fn local(column: &str) -> String {
    format!("((({column}) AT TIME ZONE 'UTC') + make_interval(secs => $4))::date")
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Money {
    pub count: i64,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SalesDay {
    pub day: String,
    /// Workshop invoices issued that day.
    pub workshop: Money,
    /// Rental invoices issued at return that day.
    pub rental: Money,
    /// Credit notes issued that day (their amounts, tax included), whichever day their invoice was.
    pub credit_notes: i64,
    pub credit_note_count: i64,
    /// `workshop.total + rental.total - credit_notes`.
    pub net: i64,
}

#[derive(Debug, Serialize)]
pub struct SalesReport {
    pub branch: String,
    pub from: String,
    pub to: String,
    pub utc_offset: String,
    pub days: Vec<SalesDay>,
}

type SalesRow = (String, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);

/// `GET /v1/branches/{branch}/reports/sales` (operator): invoices and credit notes per day.
#[utoipa::path(get, path = "/v1/branches/{branch}/reports/sales", tag = "reports",
    params(("branch" = String, Path, description = "a branch id", pattern = "^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$"),
        ("from" = String, Query, description = "first day, YYYY-MM-DD in the branch's time", pattern = r"^\d{4}-\d{2}-\d{2}$"),
        ("to" = String, Query, description = "last day, YYYY-MM-DD, at most 366 days after from", pattern = r"^\d{4}-\d{2}-\d{2}$"),
        ("utc_offset" = Option<String>, Query, description = "the branch's UTC offset, default +07:00", pattern = r"^[+-]\d{2}:\d{2}$")),
    responses((status = 200, description = "every day of the range, zeros included", body = Object)),
    security(("bearer" = [])))]
pub async fn sales(
    State(db): State<PgPool>,
    caller: Caller,
    Path(branch_id): Path<String>,
    query: RawQuery,
) -> Result<Json<SalesReport>, ApiError> {
    caller.operator()?;
    let range = Range::from_query(query)?;
    let branch = branch(&db, &branch_id).await?;
    let sql = format!(
        "WITH {BOUNDS},
         sold AS (
            SELECT 'W' AS kind, {w} AS day, subtotal, tax, total FROM invoices, bounds
             WHERE branch_id = $1 AND issued_at >= lo AND issued_at < hi
            UNION ALL
            SELECT 'R', {r}, subtotal, tax, total FROM rental_invoices, bounds
             WHERE branch_id = $1 AND issued_at >= lo AND issued_at < hi
            UNION ALL
            SELECT 'C', {c}, 0, 0, amount FROM credit_notes, bounds
             WHERE branch_id = $1 AND issued_at >= lo AND issued_at < hi)
         SELECT to_char(days.day, 'YYYY-MM-DD'),
                count(s.kind) FILTER (WHERE s.kind = 'W'),
                coalesce(sum(s.subtotal) FILTER (WHERE s.kind = 'W'), 0)::bigint,
                coalesce(sum(s.tax) FILTER (WHERE s.kind = 'W'), 0)::bigint,
                coalesce(sum(s.total) FILTER (WHERE s.kind = 'W'), 0)::bigint,
                count(s.kind) FILTER (WHERE s.kind = 'R'),
                coalesce(sum(s.subtotal) FILTER (WHERE s.kind = 'R'), 0)::bigint,
                coalesce(sum(s.tax) FILTER (WHERE s.kind = 'R'), 0)::bigint,
                coalesce(sum(s.total) FILTER (WHERE s.kind = 'R'), 0)::bigint,
                count(s.kind) FILTER (WHERE s.kind = 'C'),
                coalesce(sum(s.total) FILTER (WHERE s.kind = 'C'), 0)::bigint
           FROM days LEFT JOIN sold s ON s.day = days.day
          GROUP BY days.day ORDER BY days.day",
        w = local("issued_at"),
        r = local("issued_at"),
        c = local("issued_at"),
    );
    let rows: Vec<SalesRow> = day_rows(&db, sql, &branch, range).await?;
    let days = rows
        .into_iter()
        .map(
            |(day, wc, ws, wt, wtotal, rc, rs, rt, rtotal, cc, camount)| SalesDay {
                day,
                workshop: Money {
                    count: wc,
                    subtotal: ws,
                    tax: wt,
                    total: wtotal,
                },
                rental: Money {
                    count: rc,
                    subtotal: rs,
                    tax: rt,
                    total: rtotal,
                },
                credit_notes: camount,
                credit_note_count: cc,
                net: wtotal.saturating_add(rtotal).saturating_sub(camount),
            },
        )
        .collect();
    Ok(Json(SalesReport {
        branch: branch.as_str().to_owned(),
        from: format_day(range.from),
        to: format_day(range.to),
        utc_offset: format_offset(range.offset_secs),
        days,
    }))
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MethodDay {
    pub day: String,
    /// CASH, EDC or QRIS.
    pub method: String,
    /// Payments against workshop invoices.
    pub workshop: i64,
    pub workshop_count: i64,
    /// Rental deposits and payments taken (positive).
    pub rental_in: i64,
    /// Rental deposits given back (negative or zero).
    pub rental_refunds: i64,
    pub rental_count: i64,
    /// What the method moved that day: `workshop + rental_in + rental_refunds`; for CASH, what the
    /// drawer should have gained.
    pub net: i64,
}

#[derive(Debug, Serialize)]
pub struct PaymentsReport {
    pub branch: String,
    pub from: String,
    pub to: String,
    pub utc_offset: String,
    /// Only the days and methods with money moved, by day then method.
    pub rows: Vec<MethodDay>,
    /// Per method over the whole range.
    pub totals: Vec<MethodTotal>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MethodTotal {
    pub method: String,
    pub net: i64,
}

type PaymentRow = (String, String, i64, i64, i64, i64, i64);

/// `GET /v1/branches/{branch}/reports/payments` (operator): money in and out per day and method,
/// workshop and rental alike; a payment voided at the branch is not counted.
#[utoipa::path(get, path = "/v1/branches/{branch}/reports/payments", tag = "reports",
    params(("branch" = String, Path, description = "a branch id", pattern = "^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$"),
        ("from" = String, Query, description = "first day, YYYY-MM-DD in the branch's time", pattern = r"^\d{4}-\d{2}-\d{2}$"),
        ("to" = String, Query, description = "last day, YYYY-MM-DD, at most 366 days after from", pattern = r"^\d{4}-\d{2}-\d{2}$"),
        ("utc_offset" = Option<String>, Query, description = "the branch's UTC offset, default +07:00", pattern = r"^[+-]\d{2}:\d{2}$")),
    responses((status = 200, description = "per day and method, and totals per method", body = Object)),
    security(("bearer" = [])))]
pub async fn payments(
    State(db): State<PgPool>,
    caller: Caller,
    Path(branch_id): Path<String>,
    query: RawQuery,
) -> Result<Json<PaymentsReport>, ApiError> {
    caller.operator()?;
    let range = Range::from_query(query)?;
    let branch = branch(&db, &branch_id).await?;
    let sql = format!(
        "WITH {BOUNDS},
         moved AS (
            SELECT 'W' AS kind, {p} AS day, method, amount FROM payments AS pay, bounds
             WHERE branch_id = $1 AND received_at >= lo AND received_at < hi
               AND NOT EXISTS (SELECT 1 FROM payment_voids AS v
                                WHERE v.branch_id = pay.branch_id AND v.payment_id = pay.id)
            UNION ALL
            SELECT 'R', {p}, method, amount FROM rental_payments, bounds
             WHERE branch_id = $1 AND received_at >= lo AND received_at < hi)
         SELECT to_char(day, 'YYYY-MM-DD'), method,
                coalesce(sum(amount) FILTER (WHERE kind = 'W'), 0)::bigint,
                count(*) FILTER (WHERE kind = 'W'),
                coalesce(sum(amount) FILTER (WHERE kind = 'R' AND amount > 0), 0)::bigint,
                coalesce(sum(amount) FILTER (WHERE kind = 'R' AND amount < 0), 0)::bigint,
                count(*) FILTER (WHERE kind = 'R')
           FROM moved GROUP BY day, method ORDER BY day, method",
        p = local("received_at"),
    );
    let rows: Vec<PaymentRow> = day_rows(&db, sql, &branch, range).await?;
    let rows: Vec<MethodDay> = rows
        .into_iter()
        .map(
            |(day, method, workshop, workshop_count, rental_in, rental_refunds, rental_count)| {
                MethodDay {
                    day,
                    method,
                    workshop,
                    workshop_count,
                    rental_in,
                    rental_refunds,
                    rental_count,
                    net: workshop
                        .saturating_add(rental_in)
                        .saturating_add(rental_refunds),
                }
            },
        )
        .collect();
    Ok(Json(PaymentsReport {
        branch: branch.as_str().to_owned(),
        from: format_day(range.from),
        to: format_day(range.to),
        utc_offset: format_offset(range.offset_secs),
        totals: totals_by_method(&rows),
        rows,
    }))
}

/// Sums `net` per method, in the methods' order of name.
fn totals_by_method(rows: &[MethodDay]) -> Vec<MethodTotal> {
    let mut totals: std::collections::BTreeMap<&str, i64> = Default::default();
    for row in rows {
        let sum = totals.entry(row.method.as_str()).or_default();
        *sum = sum.saturating_add(row.net);
    }
    totals
        .into_iter()
        .map(|(method, net)| MethodTotal {
            method: method.to_owned(),
            net,
        })
        .collect()
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ZReport {
    /// The branch's calendar day (the box's, whatever `utc_offset` was asked).
    pub day: String,
    /// CLOSED, or REOPENED (taking payments again until closed again).
    pub status: String,
    /// The manager who closed it.
    pub manager_id: String,
    pub closed_at: String,
    pub shifts: i64,
    /// The day's money by method: workshop and rental payments, refunds subtracted.
    pub cash: i64,
    pub edc: i64,
    pub qris: i64,
    pub expected_cash: i64,
    pub counted_cash: i64,
    /// `counted_cash - expected_cash`.
    pub difference: i64,
    pub reason: Option<String>,
    pub reopened_at: Option<String>,
    pub reopened_by: Option<String>,
    pub reopen_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ZReports {
    pub branch: String,
    pub from: String,
    pub to: String,
    /// The days closed in the range, by day; a day never closed is not listed.
    pub days: Vec<ZReport>,
}

/// `GET /v1/branches/{branch}/reports/z-reports` (operator): each closed day's Z-report, as the
/// box closed it (its last close when a day was reopened and closed again).
#[utoipa::path(get, path = "/v1/branches/{branch}/reports/z-reports", tag = "reports",
    params(("branch" = String, Path, description = "a branch id", pattern = "^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$"),
        ("from" = String, Query, description = "first day, YYYY-MM-DD", pattern = r"^\d{4}-\d{2}-\d{2}$"),
        ("to" = String, Query, description = "last day, YYYY-MM-DD, at most 366 days after from", pattern = r"^\d{4}-\d{2}-\d{2}$"),
        ("utc_offset" = Option<String>, Query, description = "accepted for symmetry; the days are the box's own", pattern = r"^[+-]\d{2}:\d{2}$")),
    responses((status = 200, description = "the closed days of the range", body = Object)),
    security(("bearer" = [])))]
pub async fn z_reports(
    State(db): State<PgPool>,
    caller: Caller,
    Path(branch_id): Path<String>,
    query: RawQuery,
) -> Result<Json<ZReports>, ApiError> {
    caller.operator()?;
    let range = Range::from_query(query)?;
    let branch = branch(&db, &branch_id).await?;
    let days: Vec<ZReport> = sqlx::query_as(
        "SELECT to_char(day, 'YYYY-MM-DD') AS day, status, manager_id,
                to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS closed_at,
                shifts, cash, edc, qris, expected_cash, counted_cash, difference, reason,
                to_char(reopened_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS reopened_at,
                reopened_by, reopen_reason
           FROM branch_days
          WHERE branch_id = $1 AND day BETWEEN $2::date AND $3::date
          ORDER BY day",
    )
    .bind(branch.as_str())
    .bind(format_day(range.from))
    .bind(format_day(range.to))
    .fetch_all(&db)
    .await
    .map_err(|e| ApiError::database(&e))?;
    Ok(Json(ZReports {
        branch: branch.as_str().to_owned(),
        from: format_day(range.from),
        to: format_day(range.to),
        days,
    }))
}

/// A query with no parameters but the branch: refuse any, so a filter nobody implements is not
/// silently ignored.
fn no_parameters(query: RawQuery) -> Result<(), ApiError> {
    let axum::extract::Query(pairs) = query.map_err(|rejection| bad(rejection.body_text()))?;
    match pairs.first() {
        None => Ok(()),
        Some((name, _)) => Err(bad(format!(
            "unknown parameter {:?}: this report takes none",
            name.chars().take(32).collect::<String>()
        ))),
    }
}

#[derive(Debug, Serialize)]
pub struct StockLevel {
    pub sku: String,
    /// The part's name from the catalogue; null for a SKU the catalogue no longer has.
    pub name: Option<String>,
    pub on_hand: i64,
    pub updated_at: String,
}

#[derive(Debug, Serialize)]
pub struct StockReport {
    pub branch: String,
    pub levels: Vec<StockLevel>,
    /// True when there were more than the 1000 SKUs listed (by SKU).
    pub truncated: bool,
}

/// `GET /v1/branches/{branch}/reports/stock` (operator): stock on hand per SKU, as the branch's
/// pushed movements left it.
#[utoipa::path(get, path = "/v1/branches/{branch}/reports/stock", tag = "reports",
    params(("branch" = String, Path, description = "a branch id", pattern = "^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")),
    responses((status = 200, description = "stock on hand by SKU, at most 1000", body = Object)),
    security(("bearer" = [])))]
pub async fn stock(
    State(db): State<PgPool>,
    caller: Caller,
    Path(branch_id): Path<String>,
    query: RawQuery,
) -> Result<Json<StockReport>, ApiError> {
    caller.operator()?;
    no_parameters(query)?;
    let branch = branch(&db, &branch_id).await?;
    let mut rows: Vec<(String, Option<String>, i64, String)> = sqlx::query_as(
        "SELECT s.sku, p.name, s.on_hand,
                to_char(s.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
           FROM stock_levels s LEFT JOIN parts p ON p.branch_id = s.branch_id AND p.sku = s.sku
          WHERE s.branch_id = $1 ORDER BY s.sku LIMIT $2",
    )
    .bind(branch.as_str())
    .bind(MAX_ROWS + 1)
    .fetch_all(&db)
    .await
    .map_err(|e| ApiError::database(&e))?;
    let truncated = cut(&mut rows);
    Ok(Json(StockReport {
        branch: branch.as_str().to_owned(),
        levels: rows
            .into_iter()
            .map(|(sku, name, on_hand, updated_at)| StockLevel {
                sku,
                name,
                on_hand,
                updated_at,
            })
            .collect(),
        truncated,
    }))
}

/// Keeps the first [`MAX_ROWS`] of rows fetched with `LIMIT MAX_ROWS + 1`; true if one was cut.
fn cut<T>(rows: &mut Vec<T>) -> bool {
    let limit = usize::try_from(MAX_ROWS).unwrap_or(usize::MAX);
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    truncated
}

#[derive(Debug, Serialize)]
pub struct OpenWorkOrder {
    pub id: String,
    pub status: String,
    pub customer_name: String,
    pub vehicle_plate: String,
    pub complaint: String,
    pub mechanic_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize)]
pub struct OpenWorkOrders {
    pub branch: String,
    /// Not invoiced and not cancelled (DONE ones wait for their invoice), oldest first.
    pub work_orders: Vec<OpenWorkOrder>,
    pub truncated: bool,
}

type WorkOrderRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
);

/// `GET /v1/branches/{branch}/reports/open-work-orders` (operator): the work orders not yet
/// invoiced or cancelled, oldest first.
#[utoipa::path(get, path = "/v1/branches/{branch}/reports/open-work-orders", tag = "reports",
    params(("branch" = String, Path, description = "a branch id", pattern = "^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")),
    responses((status = 200, description = "open work orders, oldest first, at most 1000", body = Object)),
    security(("bearer" = [])))]
pub async fn open_work_orders(
    State(db): State<PgPool>,
    caller: Caller,
    Path(branch_id): Path<String>,
    query: RawQuery,
) -> Result<Json<OpenWorkOrders>, ApiError> {
    caller.operator()?;
    no_parameters(query)?;
    let branch = branch(&db, &branch_id).await?;
    let mut rows: Vec<WorkOrderRow> = sqlx::query_as(
        "SELECT id, status, customer_name, vehicle_plate, complaint, mechanic_id,
                to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
           FROM work_orders
          WHERE branch_id = $1 AND status NOT IN ('INVOICED', 'CANCELLED')
          ORDER BY created_at, id LIMIT $2",
    )
    .bind(branch.as_str())
    .bind(MAX_ROWS + 1)
    .fetch_all(&db)
    .await
    .map_err(|e| ApiError::database(&e))?;
    let truncated = cut(&mut rows);
    Ok(Json(OpenWorkOrders {
        branch: branch.as_str().to_owned(),
        work_orders: rows
            .into_iter()
            .map(
                |(
                    id,
                    status,
                    customer_name,
                    vehicle_plate,
                    complaint,
                    mechanic_id,
                    created_at,
                    updated_at,
                )| {
                    OpenWorkOrder {
                        id,
                        status,
                        customer_name,
                        vehicle_plate,
                        complaint,
                        mechanic_id,
                        created_at,
                        updated_at,
                    }
                },
            )
            .collect(),
        truncated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn message(query: &str) -> String {
        Range::parse(&pairs(query)).expect_err(query).to_string()
    }

    #[test]
    fn a_range_takes_days_and_an_offset() {
        let range = Range::parse(&pairs("from=2026-11-01&to=2026-11-30&utc_offset=+08:00"))
            .expect("a range");
        assert_eq!(format_day(range.from), "2026-11-01");
        assert_eq!(format_day(range.to), "2026-11-30");
        assert_eq!(range.offset_secs, 8 * 3600);
        let wib = Range::parse(&pairs("to=2026-11-01&from=2026-11-01")).expect("one day");
        assert_eq!(wib.offset_secs, DEFAULT_UTC_OFFSET_SECS);
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        for (query, says) in [
            ("to=2026-11-01", "from is missing"),
            ("from=2026-11-01", "to is missing"),
            ("from=2026-11-02&to=2026-11-01", "is before from"),
            ("from=2024-01-01&to=2025-01-01", "more than 366 days"),
            ("from=2026-13-01&to=2026-12-01", "from:"),
            (
                "from=2026-11-01&to=2026-11-01&from=2026-11-01",
                "given twice",
            ),
            ("form=2026-11-01&to=2026-11-01", "unknown parameter"),
            (
                "from=2026-11-01&to=2026-11-01&utc_offset=+15:00",
                "utc_offset",
            ),
            (
                "from=2026-11-01&to=2026-11-01&utc_offset=07:00",
                "utc_offset",
            ),
            (
                "from=2026-11-01&to=2026-11-01&utc_offset=+07:60",
                "utc_offset",
            ),
            (
                "from=2026-11-01&to=2026-11-01&utc_offset=+0٧:00",
                "utc_offset",
            ),
        ] {
            let message = message(query);
            assert!(message.contains(says), "{query}: {message}");
        }
    }

    #[test]
    fn offsets_round_trip() {
        for raw in ["+07:00", "-03:30", "+00:00", "+14:00", "-12:00", "+05:45"] {
            assert_eq!(format_offset(parse_offset(raw).expect(raw)), raw);
        }
    }

    #[test]
    fn totals_add_up_per_method() {
        let row = |day: &str, method: &str, net: i64| MethodDay {
            day: day.into(),
            method: method.into(),
            workshop: net,
            workshop_count: 1,
            rental_in: 0,
            rental_refunds: 0,
            rental_count: 0,
            net,
        };
        let rows = [
            row("2026-11-01", "CASH", 100),
            row("2026-11-01", "QRIS", 50),
            row("2026-11-02", "CASH", -30),
        ];
        assert_eq!(
            totals_by_method(&rows),
            vec![
                MethodTotal {
                    method: "CASH".into(),
                    net: 70
                },
                MethodTotal {
                    method: "QRIS".into(),
                    net: 50
                }
            ]
        );
    }
}
