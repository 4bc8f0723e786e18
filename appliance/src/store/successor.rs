//! A successor box's start: the branch's open state as the cloud holds it (fetched by
//! `sync::enroll` with `--replaces`), loaded into a fresh store in the transaction that saves
//! the box's identity, and the number series the cloud handed it.
//!
//! Invariants:
//! - only a fresh store takes a snapshot (no outbox event, no work order, no stock movement):
//!   the branch's state comes from one place, never merged into work already done here;
//! - loading emits no outbox event. Every row of the snapshot is a projection of events the cloud
//!   already holds from the dead box; re-sent as this box's events they would count twice (a
//!   stock movement adds its delta to the cloud's level again) or clash (a work order created
//!   twice). What this box does from then on is its own events, as on any box;
//! - stock stays "the level is the sum of the movements": each open work order's part lines
//!   come with the dispense movements the cloud holds (same ids), and one `ADJUSTMENT` movement
//!   per part (the opening balance) makes each part's sum the cloud's level;
//! - the box's clock moves past the snapshot's latest stamp, so a status this box sets wins
//!   last-writer-wins over the dead box's in the cloud.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;
use sentra_protocol::successor::{OpenWorkOrder, StockOnHand};
use sentra_protocol::sync::{MechanicRecord, PartRecord};
use serde::Serialize;

use super::{DomainError, Result, StoreError, WriteTx, master, new_id};

/// The `meta` key naming the device this store's box succeeds.
pub const SUCCESSOR_OF_META: &str = "successor_of";

/// The whole snapshot, every page of every section, checked page by page as it arrived.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub predecessor: String,
    pub number_series: String,
    pub parts: Vec<PartRecord>,
    pub mechanics: Vec<MechanicRecord>,
    pub work_orders: Vec<OpenWorkOrder>,
    pub stock: Vec<StockOnHand>,
}

impl Snapshot {
    /// Rows held, all sections together.
    pub fn rows(&self) -> usize {
        self.parts.len()
            + self.mechanics.len()
            + self.work_orders.len()
            + self
                .work_orders
                .iter()
                .map(|w| w.parts.len())
                .sum::<usize>()
            + self.stock.len()
    }
}

/// What a load put in the store, for the technician.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Loaded {
    pub predecessor: String,
    pub number_series: String,
    pub work_orders: usize,
    pub part_lines: usize,
    pub stock_items: usize,
    /// Parts or mechanics the rows name that the cloud's catalogue lacks: kept as placeholders
    /// (the part's sku as its name, price 0; an inactive mechanic) until the cloud's data comes.
    pub placeholders: usize,
}

/// `Ok(())` for a fresh store; otherwise why it is not, for the technician.
pub fn check_fresh(conn: &Connection) -> Result<std::result::Result<(), String>> {
    let (events, work_orders, movements): (i64, i64, i64) = conn.query_row(
        "SELECT (SELECT next_seq - 1 FROM outbox_state WHERE id = 1),
                (SELECT count(*) FROM work_orders), (SELECT count(*) FROM stock_movements)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if events > 0 || work_orders > 0 || movements > 0 {
        return Ok(Err(format!(
            "this store already has work ({events} events, {work_orders} work orders, {movements} stock movements); a successor starts from a fresh store (a new box, or a new store file)"
        )));
    }
    Ok(Ok(()))
}

/// Pins the number series the cloud handed this box: its invoices and credit notes are numbered
/// in it from now on.
pub fn pin_number_series(w: &mut WriteTx<'_>, series: &str) -> Result<()> {
    super::set_meta(w.conn(), super::billing::NUMBER_SERIES_META, series)
}

/// Loads `snapshot` into this fresh store (see the module's invariants). Refused, with nothing
/// changed, on a store that has work or on a snapshot whose rows clash with each other.
pub fn load(w: &mut WriteTx<'_>, snapshot: &Snapshot) -> Result<Loaded> {
    if let Err(why) = check_fresh(w.conn())? {
        return Err(DomainError::conflict("not_fresh", why).into());
    }
    let actor = format!("successor:{}", snapshot.predecessor);
    let now = w.now_str();
    let parts: Vec<master::Part> = snapshot
        .parts
        .iter()
        .map(|p| master::Part {
            sku: p.sku.clone(),
            name: p.name.clone(),
            barcode: p.barcode.clone(),
            price: p.price,
            unit: p.unit.clone(),
        })
        .collect();
    let mechanics: Vec<master::Mechanic> = snapshot
        .mechanics
        .iter()
        .map(|m| master::Mechanic {
            id: m.id.clone(),
            name: m.name.clone(),
            active: m.active,
        })
        .collect();
    master::upsert(w, &parts, &mechanics, &[])?;

    let clash = |what: &str, e: rusqlite::Error| -> StoreError {
        let constraint = matches!(&e, rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation);
        if constraint {
            DomainError::invalid("snapshot", format!("{what}: {e}")).into()
        } else {
            e.into()
        }
    };
    let conn = w.conn();
    let mut placeholders = 0;
    let named_skus: BTreeSet<&str> = snapshot
        .stock
        .iter()
        .map(|s| s.sku.as_str())
        .chain(
            snapshot
                .work_orders
                .iter()
                .flat_map(|w| w.parts.iter().map(|p| p.sku.as_str())),
        )
        .collect();
    for sku in named_skus {
        placeholders += conn.execute(
            "INSERT OR IGNORE INTO parts (sku, name, barcode, price, unit, updated_at) VALUES (?1, ?1, NULL, 0, 'pcs', ?2)",
            (sku, &now),
        )?;
    }
    let named_mechanics: BTreeSet<&str> = snapshot
        .work_orders
        .iter()
        .filter_map(|w| w.mechanic_id.as_deref())
        .collect();
    for id in named_mechanics {
        placeholders += conn.execute(
            "INSERT OR IGNORE INTO mechanics (id, name, active) VALUES (?1, ?1, 0)",
            [id],
        )?;
    }

    // Per part: what the open work orders took (their dispenses go in as they were).
    let mut dispensed: BTreeMap<&str, i64> = BTreeMap::new();
    let mut part_lines = 0;
    let mut latest = None;
    for wo in &snapshot.work_orders {
        conn.execute(
            "INSERT INTO work_orders (id, customer_name, customer_phone, vehicle_plate, complaint, mechanic_id, status, created_at, updated_at, created_by, vehicle_id, customer_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            (
                &wo.id,
                &wo.customer_name,
                &wo.customer_phone,
                &wo.vehicle_plate,
                &wo.complaint,
                &wo.mechanic_id,
                &wo.status,
                &wo.created_at,
                &wo.updated_at,
                &actor,
                &wo.vehicle_id,
                &wo.customer_id,
            ),
        )
        .map_err(|e| clash(&format!("work order {}", wo.id), e))?;
        latest = latest.max(Some(wo.hlc));
        for line in &wo.parts {
            conn.execute(
                "INSERT INTO stock_movements (id, sku, delta, reason, work_order_id, created_at, created_by) VALUES (?1, ?2, ?3, 'DISPENSE', ?4, ?5, ?6)",
                (&line.movement_id, &line.sku, -line.qty, &wo.id, &line.at, &actor),
            )
            .map_err(|e| clash(&format!("movement {}", line.movement_id), e))?;
            conn.execute(
                "INSERT INTO work_order_parts (id, work_order_id, sku, qty, unit_price, movement_id, created_at, returned) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                (&line.id, &wo.id, &line.sku, line.qty, line.unit_price, &line.movement_id, &line.at, line.returned),
            )
            .map_err(|e| clash(&format!("part line {}", line.id), e))?;
            let taken = dispensed.entry(line.sku.as_str()).or_default();
            *taken = taken.checked_add(line.qty).ok_or_else(|| {
                DomainError::invalid(
                    "snapshot",
                    format!("part {}: quantities overflow", line.sku),
                )
            })?;
            part_lines += 1;
        }
    }

    // Each part's level is the cloud's: the dispenses above plus one opening balance.
    let mut levels: BTreeMap<&str, i64> = BTreeMap::new();
    for s in &snapshot.stock {
        if levels.insert(s.sku.as_str(), s.on_hand).is_some() {
            return Err(DomainError::invalid(
                "snapshot",
                format!("part {} has two stock levels", s.sku),
            )
            .into());
        }
    }
    let skus: BTreeSet<&str> = levels.keys().chain(dispensed.keys()).copied().collect();
    for sku in skus {
        let taken = dispensed.get(sku).copied().unwrap_or(0);
        // A part only open work orders name, without a level of its own: what they took.
        let target = levels.get(sku).copied().unwrap_or(-taken);
        let opening = target.checked_add(taken).ok_or_else(|| {
            DomainError::invalid("snapshot", format!("part {sku}: level overflows"))
        })?;
        if opening != 0 {
            conn.execute(
                "INSERT INTO stock_movements (id, sku, delta, reason, reference, created_at, created_by) VALUES (?1, ?2, ?3, 'ADJUSTMENT', ?4, ?5, ?6)",
                (
                    new_id(),
                    sku,
                    opening,
                    format!("opening balance from the cloud (successor of {})", snapshot.predecessor),
                    &now,
                    &actor,
                ),
            )?;
        }
        if target != 0 || taken != 0 {
            conn.execute(
                "INSERT INTO stock_levels (sku, on_hand) VALUES (?1, ?2)",
                (sku, target),
            )?;
        }
    }

    super::set_meta(conn, SUCCESSOR_OF_META, &snapshot.predecessor)?;
    pin_number_series(w, &snapshot.number_series)?;
    if let Some(latest) = latest
        && let Err(error) = super::outbox::observe(w.conn(), w.ctx(), w.now(), latest)?
    {
        tracing::warn!(%error, "the snapshot's latest stamp is ahead of this clock; not followed");
    }
    Ok(Loaded {
        predecessor: snapshot.predecessor.clone(),
        number_series: snapshot.number_series.clone(),
        work_orders: snapshot.work_orders.len(),
        part_lines,
        stock_items: levels.len(),
        placeholders,
    })
}
