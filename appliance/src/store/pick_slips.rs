//! Pick slips and what a barcode scan does to the store.
//!
//! The storekeeper opens a slip for a work order; while it is open each scanned part is dispensed
//! to that work order, one unit per scan, through [`workshop::dispense`] (the same path as
//! `POST /v1/work-orders/{id}/parts`: the same stock rule and the same outbox event). With no
//! open slip a scan is a look-up. Slips and their scan log are store-room working state: not
//! synced, no events of their own (see migration 0005). At most one slip is open at a time.

use rusqlite::Connection;
use serde::Serialize;

use super::workshop::{self, StockLevel};
use super::{DomainError, OptionalRow as _, Result, StoreError, WriteTx, master, new_id};
use crate::domain::{Qty, Sku};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PickSlip {
    pub id: String,
    pub work_order_id: String,
    /// OPEN or CLOSED.
    pub status: String,
    pub opened_at: String,
    pub opened_by: String,
    pub closed_at: Option<String>,
    /// Scans made while the slip was open, oldest first.
    pub scans: Vec<SlipScan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SlipScan {
    pub id: String,
    pub scanner: String,
    pub code: String,
    pub symbology: String,
    /// DISPENSED or REJECTED.
    pub outcome: String,
    pub sku: Option<String>,
    /// The work-order line a dispense made.
    pub line_id: Option<String>,
    /// Why a scan was rejected: `unknown_barcode`, `insufficient_stock`, `invalid_transition`,
    /// or the decoder's reason (`check_digit`, `bad_gs1`…).
    pub reason: Option<String>,
    pub message: Option<String>,
    pub at: String,
}

/// A scan as the scanner task hands it over: decoded, or refused by the decoder.
#[derive(Debug, Clone)]
pub struct ScanInput {
    pub scanner: String,
    pub code: String,
    pub symbology: String,
    /// Barcode values to look for in the catalogue, most specific first.
    pub lookup_keys: Vec<String>,
    /// The decoder's refusal (code, message); such a scan dispenses nothing.
    pub rejected: Option<(String, String)>,
}

/// What a scan did. Serialised into the scan notice (`"outcome": "dispensed"` …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ScanOutcome {
    /// One unit went to the slip's work order.
    Dispensed {
        pick_slip_id: String,
        work_order_id: String,
        line_id: String,
        stock: StockLevel,
    },
    /// No slip open: the part and its stock, for tablets to show.
    Lookup { stock: StockLevel, price: i64 },
    /// Nothing changed; `reason` says why.
    Rejected {
        pick_slip_id: Option<String>,
        reason: String,
        message: String,
    },
}

/// The scan notice's payload (`sentra/<branch>/scans/<scanner>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScanNotice {
    pub scanner: String,
    /// The data read (GS shown as `|`), without the AIM identifier.
    pub code: String,
    /// `ean13`, `ean8`, `upca`, `code128`, `gs1-128`, `gs1-datamatrix`, `gs1-qr`, … or the AIM
    /// identifier for others.
    pub symbology: String,
    #[serde(flatten)]
    pub outcome: ScanOutcome,
    pub at: String,
}

/// Open a slip for a work order that still takes parts. Refused while another slip is open.
pub fn open(w: &mut WriteTx<'_>, actor: &str, work_order_id: &str) -> Result<PickSlip> {
    let status = workshop::status_of(w.conn(), work_order_id)?;
    if !status.accepts_parts() {
        return Err(DomainError::conflict(
            "invalid_transition",
            format!(
                "work order {work_order_id} is {}; parts can only be picked for open work",
                status.as_str()
            ),
        )
        .into());
    }
    if let Some(other) = open_slip(w.conn())? {
        return Err(DomainError::conflict(
            "pick_slip_open",
            format!(
                "pick slip {} for work order {} is still open; close it first",
                other.0, other.1
            ),
        )
        .into());
    }
    let id = new_id();
    w.conn().execute(
        "INSERT INTO pick_slips (id, work_order_id, status, opened_at, opened_by) VALUES (?1, ?2, 'OPEN', ?3, ?4)",
        (&id, work_order_id, w.now_str(), actor),
    )?;
    get(w.conn(), &id)
}

/// Close a slip; closing a closed slip is refused (its answer would hide who closed it first).
pub fn close(w: &mut WriteTx<'_>, actor: &str, id: &str) -> Result<PickSlip> {
    let slip = get(w.conn(), id)?;
    if slip.status != "OPEN" {
        return Err(DomainError::conflict(
            "pick_slip_closed",
            format!("pick slip {id} is already closed"),
        )
        .into());
    }
    w.conn().execute(
        "UPDATE pick_slips SET status = 'CLOSED', closed_at = ?2, closed_by = ?3 WHERE id = ?1",
        (id, w.now_str(), actor),
    )?;
    get(w.conn(), id)
}

pub fn get(conn: &Connection, id: &str) -> Result<PickSlip> {
    let mut slip = conn
        .prepare_cached(
            "SELECT id, work_order_id, status, opened_at, opened_by, closed_at FROM pick_slips WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(PickSlip {
                id: r.get(0)?,
                work_order_id: r.get(1)?,
                status: r.get(2)?,
                opened_at: r.get(3)?,
                opened_by: r.get(4)?,
                closed_at: r.get(5)?,
                scans: Vec::new(),
            })
        })
        .or_not_found("pick slip", id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, scanner, code, symbology, outcome, sku, line_id, reason, message, at
         FROM pick_slip_scans WHERE pick_slip_id = ?1 ORDER BY at, rowid",
    )?;
    slip.scans = stmt
        .query_map([id], |r| {
            Ok(SlipScan {
                id: r.get(0)?,
                scanner: r.get(1)?,
                code: r.get(2)?,
                symbology: r.get(3)?,
                outcome: r.get(4)?,
                sku: r.get(5)?,
                line_id: r.get(6)?,
                reason: r.get(7)?,
                message: r.get(8)?,
                at: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(slip)
}

/// (slip id, work order id, opened by) of the open slip, if any.
fn open_slip(conn: &Connection) -> Result<Option<(String, String, String)>> {
    match conn
        .prepare_cached(
            "SELECT id, work_order_id, opened_by FROM pick_slips WHERE status = 'OPEN'",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The part whose catalogue barcode is one of `keys` (first match wins).
pub(super) fn part_by_barcode(conn: &Connection, keys: &[String]) -> Result<Option<master::Part>> {
    let mut stmt = conn.prepare_cached("SELECT sku FROM parts WHERE barcode = ?1")?;
    for k in keys {
        match stmt.query_row([k], |r| r.get::<_, String>(0)) {
            Ok(sku) => return master::part(conn, &sku).map(Some),
            Err(rusqlite::Error::QueryReturnedNoRows) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Apply one scan: dispense one unit to the open slip's work order, or look the part up when no
/// slip is open. A refusal (bad frame, unknown barcode, empty stock, closed work order) changes
/// no stock and is logged on the open slip.
pub fn scan(w: &mut WriteTx<'_>, input: &ScanInput) -> Result<ScanOutcome> {
    let slip = open_slip(w.conn())?;
    let rejected = |slip: &Option<(String, String, String)>, reason: &str, message: String| {
        ScanOutcome::Rejected {
            pick_slip_id: slip.as_ref().map(|s| s.0.clone()),
            reason: reason.to_owned(),
            message,
        }
    };
    let outcome = if let Some((reason, message)) = &input.rejected {
        rejected(&slip, reason, message.clone())
    } else {
        match (part_by_barcode(w.conn(), &input.lookup_keys)?, &slip) {
            (None, _) => rejected(
                &slip,
                "unknown_barcode",
                format!("no part in the catalogue has barcode {}", input.code),
            ),
            (Some(part), None) => ScanOutcome::Lookup {
                stock: workshop::stock_level(w.conn(), &part.sku)?,
                price: part.price,
            },
            (Some(part), Some((slip_id, wo_id, opened_by))) => {
                let sku = Sku::parse(part.sku.clone()).map_err(|e| {
                    StoreError::Corrupt(format!("parts.sku {:?}: {}", part.sku, e.0))
                })?;
                let one = Qty::new(1).expect("1 is a valid quantity");
                // Its own savepoint: a refused dispense leaves nothing behind, and the scan is
                // still logged as rejected in the same transaction.
                w.conn().execute_batch("SAVEPOINT scan_dispense")?;
                match workshop::dispense(w, opened_by, wo_id, &sku, one) {
                    Ok(d) => {
                        w.conn().execute_batch("RELEASE scan_dispense")?;
                        ScanOutcome::Dispensed {
                            pick_slip_id: slip_id.clone(),
                            work_order_id: wo_id.clone(),
                            line_id: d.line.id,
                            stock: d.stock,
                        }
                    }
                    Err(StoreError::Domain(e)) => {
                        w.conn()
                            .execute_batch("ROLLBACK TO scan_dispense; RELEASE scan_dispense")?;
                        let reason = match &e {
                            DomainError::Conflict { code, .. } => *code,
                            DomainError::NotFound { .. } => "not_found",
                            _ => "refused",
                        };
                        rejected(&slip, reason, e.to_string())
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    if let Some((slip_id, _, _)) = &slip {
        let (result, sku, line_id, reason, message) = match &outcome {
            ScanOutcome::Dispensed { stock, line_id, .. } => (
                "DISPENSED",
                Some(stock.sku.clone()),
                Some(line_id.clone()),
                None,
                None,
            ),
            ScanOutcome::Rejected {
                reason, message, ..
            } => (
                "REJECTED",
                None,
                None,
                Some(reason.clone()),
                Some(message.clone()),
            ),
            ScanOutcome::Lookup { .. } => {
                unreachable!("a scan with an open slip is never a look-up")
            }
        };
        w.conn().execute(
            "INSERT INTO pick_slip_scans (id, pick_slip_id, scanner, code, symbology, outcome, sku, line_id, reason, message, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            rusqlite::params![new_id(), slip_id, input.scanner, input.code, input.symbology, result, sku, line_id, reason, message, w.now_str()],
        )?;
    }
    Ok(outcome)
}
