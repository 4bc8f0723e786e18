//! `GET /v1/sync/successor` (device): the branch's open state for a box enrolled to replace a
//! dead one (`POST /v1/enroll` with `replaces`, see [`crate::devices`]), one section a page:
//! the parts catalogue and mechanics, the work orders not yet invoiced or cancelled with the part
//! lines dispensed to them, and each part's stock level. The box loads it into its fresh store
//! in one transaction, without outbox events (the cloud already holds every row of it).
//!
//! Invariants:
//! - only a device enrolled as a successor may ask, and only about its own branch (the device
//!   row's, never anything sent);
//! - every page is bounded: at most [`MAX_PAGE`] rows, and at most [`MAX_PAGE_LINES`] part lines
//!   (past that `422 snapshot_too_large`, to be asked again with a smaller `limit`);
//! - pages are keyed (`after`), so a box that asks again from where it stopped misses nothing:
//!   the dead box is revoked, and nothing else in the branch writes these rows until the
//!   successor itself pushes, which it does only after loading the snapshot.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use sentra_protocol::successor::{
    DEFAULT_PAGE, MAX_ID_LEN, MAX_PAGE, MAX_PAGE_LINES, OpenWorkOrder, OpenWorkOrderPart, Section,
    StockOnHand, SuccessorPage,
};
use sentra_protocol::sync::{MechanicRecord, PartRecord};
use serde::Deserialize;
use sqlx::PgPool;

use crate::devices::auth::Caller;
use crate::web::{ApiError, now_ms};

#[derive(Debug, Deserialize)]
pub struct SuccessorQuery {
    pub section: String,
    #[serde(default)]
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// `GET /v1/sync/successor?section=S&after=K&limit=N` (device, enrolled with `replaces`).
#[utoipa::path(get, path = "/v1/sync/successor", tag = "sync", params(
    ("section" = String, Query, description = "parts, mechanics, work_orders or stock: load them in that order", pattern = "^(parts|mechanics|work_orders|stock)$"),
    ("after" = Option<String>, Query, description = "the previous page's `next`; absent: from the start", max_length = 128),
    ("limit" = Option<i64>, Query, description = "rows a page: default 500; a larger limit is capped to 1000", minimum = 1, maximum = 4_294_967_295_i64)),
    responses((status = 200, description = "SuccessorPage: the section's rows after `after`, and `next` while more follow", body = Object),
        (status = 409, description = "not_a_successor: this device was not enrolled with replaces", body = crate::schemas::ErrorEnvelope),
        (status = 422, description = "snapshot_too_large: the page's work orders carry more part lines than a page holds; ask with a smaller limit", body = crate::schemas::ErrorEnvelope)),
    security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn snapshot(
    State(db): State<PgPool>,
    caller: Caller,
    query: Result<Query<SuccessorQuery>, QueryRejection>,
) -> Result<Json<SuccessorPage>, ApiError> {
    let device = caller.device()?;
    let Query(query) = query.map_err(|rejection| ApiError::BadQuery(rejection.body_text()))?;
    let section = Section::parse(&query.section).ok_or_else(|| {
        ApiError::BadQuery(format!(
            "section {:?}: expected parts, mechanics, work_orders or stock",
            query.section.chars().take(40).collect::<String>()
        ))
    })?;
    let after = query.after.unwrap_or_default();
    if after.chars().count() > MAX_ID_LEN {
        return Err(ApiError::BadQuery(format!(
            "after: at most {MAX_ID_LEN} characters"
        )));
    }
    let limit = match query.limit.unwrap_or(DEFAULT_PAGE) {
        0 => {
            return Err(ApiError::BadQuery(format!("limit must be 1 to {MAX_PAGE}")));
        }
        n => n.min(MAX_PAGE),
    };
    let succession: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT replaces::text, number_series FROM devices WHERE id = $1::uuid")
            .bind(&device.id)
            .fetch_optional(&db)
            .await
            .map_err(|e| ApiError::database(&e))?;
    let (Some(predecessor), Some(number_series)) = succession.unwrap_or((None, None)) else {
        return Err(ApiError::Conflict {
            code: "not_a_successor",
            message: format!(
                "device {} was not enrolled to replace another; only a successor box fetches the branch's open state",
                device.id
            ),
            details: None,
        });
    };
    let branch = device.branch_id.as_str();
    let mut page = SuccessorPage {
        predecessor,
        number_series,
        section,
        parts: Vec::new(),
        mechanics: Vec::new(),
        work_orders: Vec::new(),
        stock: Vec::new(),
        next: None,
        server_time_ms: 0,
    };
    match section {
        Section::Parts => {
            let rows: Vec<(String, String, Option<String>, i64, String)> = keyed_rows(
                &db,
                "SELECT sku, name, barcode, price, unit FROM parts
                 WHERE branch_id = $1 AND sku > $2 ORDER BY sku LIMIT $3",
                branch,
                &after,
                limit,
            )
            .await?;
            let parts = rows
                .into_iter()
                .map(|(sku, name, barcode, price, unit)| PartRecord {
                    sku,
                    name,
                    barcode,
                    price,
                    unit,
                })
                .collect();
            (page.parts, page.next) = keyed(parts, limit, |p| &p.sku);
        }
        Section::Mechanics => {
            let rows: Vec<(String, String, bool)> = keyed_rows(
                &db,
                "SELECT id, name, active FROM mechanics
                 WHERE branch_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                branch,
                &after,
                limit,
            )
            .await?;
            let mechanics = rows
                .into_iter()
                .map(|(id, name, active)| MechanicRecord { id, name, active })
                .collect();
            (page.mechanics, page.next) = keyed(mechanics, limit, |m| &m.id);
        }
        Section::Stock => {
            let rows: Vec<(String, i64)> = keyed_rows(
                &db,
                "SELECT sku, on_hand FROM stock_levels
                 WHERE branch_id = $1 AND sku > $2 ORDER BY sku LIMIT $3",
                branch,
                &after,
                limit,
            )
            .await?;
            let stock = rows
                .into_iter()
                .map(|(sku, on_hand)| StockOnHand { sku, on_hand })
                .collect();
            (page.stock, page.next) = keyed(stock, limit, |s| &s.sku);
        }
        Section::WorkOrders => {
            (page.work_orders, page.next) = open_work_orders(&db, branch, &after, limit).await?;
        }
    }
    let more = page.next.is_some();
    tracing::info!(device = %device.id, %branch, section = section.as_str(), more, "successor snapshot page");
    page.server_time_ms = now_ms();
    Ok(Json(page))
}

/// One page of a section's rows by key: `sql` takes the branch, the key to start after and how
/// many rows to fetch (`limit` and one more, so [`keyed`] knows whether more follow).
async fn keyed_rows<T>(
    db: &PgPool,
    sql: &'static str,
    branch: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<T>, ApiError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .bind(branch)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(db)
        .await
        .map_err(|e| ApiError::database(&e))
}

type WorkOrderRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// A dispensed line: work order, line, movement, SKU, qty, unit price, when, returned.
type LineRow = (String, String, String, String, i64, i64, String, i64);

/// Work orders after `after` not invoiced or cancelled (by status, and by having no invoice),
/// with their dispensed part lines.
async fn open_work_orders(
    db: &PgPool,
    branch: &str,
    after: &str,
    limit: u32,
) -> Result<(Vec<OpenWorkOrder>, Option<String>), ApiError> {
    let db_error = |e: sqlx::Error| ApiError::database(&e);
    // Times in RFC 3339, UTC with milliseconds, as the box stores them.
    let rows: Vec<WorkOrderRow> = keyed_rows(
        db,
        "SELECT w.id, w.customer_name, w.customer_phone, w.vehicle_plate, w.complaint, w.mechanic_id,
                w.status, to_char(w.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                to_char(w.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), greatest(w.status_hlc, w.mechanic_hlc),
                w.vehicle_id, w.customer_id
         FROM work_orders w
         WHERE w.branch_id = $1 AND w.id > $2 AND w.status NOT IN ('INVOICED', 'CANCELLED')
           AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.branch_id = w.branch_id AND i.work_order_id = w.id)
         ORDER BY w.id LIMIT $3",
        branch,
        after,
        limit,
    )
    .await?;
    let all = rows
        .into_iter()
        .map(
            |(
                id,
                customer_name,
                customer_phone,
                vehicle_plate,
                complaint,
                mechanic_id,
                status,
                created_at,
                updated_at,
                hlc,
                vehicle_id,
                customer_id,
            )| {
                OpenWorkOrder {
                    id,
                    customer_name,
                    customer_phone,
                    vehicle_plate,
                    complaint,
                    mechanic_id,
                    status,
                    created_at,
                    updated_at,
                    // Stored only after ingest parsed it; an unreadable one moves no clock.
                    hlc: hlc.parse().unwrap_or_default(),
                    parts: Vec::new(),
                    vehicle_id,
                    customer_id,
                }
            },
        )
        .collect();
    let (mut work_orders, next) = keyed(all, limit, |w: &OpenWorkOrder| &w.id);
    if work_orders.is_empty() {
        return Ok((work_orders, next));
    }
    let ids: Vec<&str> = work_orders.iter().map(|w| w.id.as_str()).collect();
    // Each dispensed line with what the work order gave back of it (its WORK_ORDER_RETURN
    // adjustments name the line), so the successor never bills a returned part.
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT d.work_order_id, d.line_id, d.id, d.sku, -d.delta, coalesce(d.unit_price, 0),
                to_char(d.moved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                coalesce((SELECT sum(r.delta) FROM stock_movements r
                           WHERE r.branch_id = d.branch_id AND r.work_order_id = d.work_order_id
                             AND r.line_id = d.line_id AND r.adjustment = 'WORK_ORDER_RETURN'), 0)::bigint
         FROM stock_movements d
         WHERE d.branch_id = $1 AND d.work_order_id = ANY($2) AND d.reason = 'DISPENSE' AND d.line_id IS NOT NULL
         ORDER BY d.work_order_id, d.moved_at, d.id LIMIT $3",
    )
    .bind(branch)
    .bind(&ids)
    .bind(i64::try_from(MAX_PAGE_LINES).unwrap_or(i64::MAX) + 1)
    .fetch_all(db)
    .await
    .map_err(db_error)?;
    if lines.len() > MAX_PAGE_LINES {
        return Err(ApiError::Refused {
            code: "snapshot_too_large",
            message: format!(
                "the {} work orders after {after:?} carry more than {MAX_PAGE_LINES} part lines; ask with a smaller limit",
                work_orders.len()
            ),
        });
    }
    let index: std::collections::HashMap<String, usize> = work_orders
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id.clone(), i))
        .collect();
    for (work_order_id, line_id, movement_id, sku, qty, unit_price, at, returned) in lines {
        if let Some(&i) = index.get(&work_order_id) {
            work_orders[i].parts.push(OpenWorkOrderPart {
                id: line_id,
                movement_id,
                sku,
                qty,
                unit_price,
                at,
                // The box refuses a return beyond the line; bounded here too so a page stays
                // checkable (min then max: no panic even on a line with a negative quantity).
                returned: returned.min(qty).max(0),
            });
        }
    }
    Ok((work_orders, next))
}

/// A keyed page from `rows` fetched with `LIMIT limit + 1`: the first `limit`, and the key of the
/// last of them when a row beyond it shows that more follow (the next page's `after`).
fn keyed<T>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> &String) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = rows.last().filter(|_| more).map(|row| key(row).clone());
    (rows, next)
}
