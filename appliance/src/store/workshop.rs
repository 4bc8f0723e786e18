//! Work orders and stock. A work order moves through `domain::work_order::Status`; parts are
//! dispensed to it from stock, and stock is only ever movements (deltas) whose sum is the level,
//! so the branch's and the cloud's changes add up when they meet. A dispense that would take the
//! level below zero is refused. Each write here emits exactly one outbox event.

use rusqlite::Connection;
use serde::Serialize;

use super::vehicles::{self, Party};
use super::{DomainError, OptionalRow as _, Result, WriteTx, master, new_id};
use crate::domain::work_order::Status;
use crate::domain::{Id, Qty, Sku, Text};
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};
use sentra_protocol::workshop::StockReason;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WorkOrder {
    pub id: String,
    pub customer_name: String,
    pub customer_phone: Option<String>,
    pub vehicle_plate: String,
    /// The vehicle record (`GET /v1/vehicles/{id}`); None on work orders from before records.
    pub vehicle_id: Option<String>,
    /// The customer record (`GET /v1/customers/{id}`); None as `vehicle_id`.
    pub customer_id: Option<String>,
    pub complaint: String,
    pub mechanic_id: Option<String>,
    /// OPEN, IN_PROGRESS, WAITING_PARTS, DONE, INVOICED or CANCELLED.
    pub status: String,
    pub parts: Vec<WorkOrderPart>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WorkOrderPart {
    pub id: String,
    pub sku: String,
    pub qty: i64,
    /// How many of `qty` came back to the shelf unused; the invoice bills `qty - returned`.
    pub returned: i64,
    pub unit_price: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StockLevel {
    pub sku: String,
    pub name: String,
    pub unit: String,
    pub on_hand: i64,
}

#[derive(Debug, Clone)]
pub struct NewWorkOrder {
    pub party: Party,
    pub complaint: Text,
    pub mechanic_id: Option<Id>,
}

/// A dispense's answer: the line on the work order and the stock left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Dispensed {
    pub line: WorkOrderPart,
    pub stock: StockLevel,
}

pub fn create(w: &mut WriteTx<'_>, actor: &str, new: &NewWorkOrder) -> Result<WorkOrder> {
    if let Some(m) = &new.mechanic_id {
        check_mechanic(w.conn(), m.as_str())?;
    }
    let party = vehicles::resolve(w, &new.party)?;
    let id = new_id();
    let now = w.now_str();
    w.conn().prepare_cached(
        "INSERT INTO work_orders (id, customer_name, customer_phone, vehicle_plate, complaint, mechanic_id, status, created_at, updated_at, created_by, vehicle_id, customer_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?11, ?7, ?7, ?8, ?9, ?10)",
    )?.execute((
            &id,
            &party.customer_name,
            &party.customer_phone,
            &party.vehicle_plate,
            new.complaint.as_str(),
            new.mechanic_id.as_ref().map(Id::as_str),
            &now,
            actor,
            &party.vehicle_id,
            &party.customer_id,
            Status::Open.as_str(),
        ),
    )?;
    let payload = p::WorkOrderCreated {
        id,
        customer_name: party.customer_name,
        customer_phone: party.customer_phone,
        vehicle_plate: party.vehicle_plate,
        complaint: new.complaint.as_str().to_owned(),
        mechanic_id: new.mechanic_id.as_ref().map(|m| m.as_str().to_owned()),
        status: Status::Open.as_str().to_owned(),
        created_at: now,
        vehicle_id: Some(party.vehicle_id),
        customer_id: Some(party.customer_id),
    };
    w.emit(EntityKind::WorkOrder, &payload.id, op::CREATED, &payload)?;
    // The answer is what was just written, as `get` would read it back (a new work order has no
    // parts): the writer spares itself that read on every acknowledged create.
    Ok(WorkOrder {
        id: payload.id,
        customer_name: payload.customer_name,
        customer_phone: payload.customer_phone,
        vehicle_plate: payload.vehicle_plate,
        vehicle_id: payload.vehicle_id,
        customer_id: payload.customer_id,
        complaint: payload.complaint,
        mechanic_id: payload.mechanic_id,
        status: payload.status,
        parts: Vec::new(),
        updated_at: payload.created_at.clone(),
        created_at: payload.created_at,
    })
}

pub fn set_status(w: &mut WriteTx<'_>, id: &str, to: Status) -> Result<WorkOrder> {
    let from = status_of(w.conn(), id)?;
    if !from.can_request(to) {
        let hint = if to == Status::Invoiced {
            "; a work order becomes INVOICED by issuing its invoice"
        } else {
            ""
        };
        return Err(DomainError::conflict(
            "invalid_transition",
            format!(
                "work order {id} cannot go from {} to {}{hint}",
                from.as_str(),
                to.as_str()
            ),
        )
        .into());
    }
    let now = w.now_str();
    w.conn().execute(
        "UPDATE work_orders SET status = ?2, updated_at = ?3 WHERE id = ?1",
        (id, to.as_str(), &now),
    )?;
    let change = p::WorkOrderStatusChanged {
        from: from.as_str().into(),
        to: to.as_str().into(),
        at: now,
    };
    w.emit(EntityKind::WorkOrder, id, op::STATUS_CHANGED, &change)?;
    get(w.conn(), id)
}

pub fn assign(w: &mut WriteTx<'_>, id: &str, mechanic_id: &Id) -> Result<WorkOrder> {
    let status = status_of(w.conn(), id)?;
    if !status.accepts_parts() {
        return Err(DomainError::conflict(
            "invalid_transition",
            format!(
                "work order {id} is {}; only open work can be reassigned",
                status.as_str()
            ),
        )
        .into());
    }
    check_mechanic(w.conn(), mechanic_id.as_str())?;
    let now = w.now_str();
    w.conn().execute(
        "UPDATE work_orders SET mechanic_id = ?2, updated_at = ?3 WHERE id = ?1",
        (id, mechanic_id.as_str(), &now),
    )?;
    let change = p::WorkOrderAssigned {
        mechanic_id: mechanic_id.to_string(),
        at: now,
    };
    w.emit(EntityKind::WorkOrder, id, op::ASSIGNED, &change)?;
    get(w.conn(), id)
}

pub fn dispense(
    w: &mut WriteTx<'_>,
    actor: &str,
    wo_id: &str,
    sku: &Sku,
    qty: Qty,
) -> Result<Dispensed> {
    let status = status_of(w.conn(), wo_id)?;
    if !status.accepts_parts() {
        return Err(DomainError::conflict(
            "invalid_transition",
            format!(
                "work order {wo_id} is {}; parts can only be dispensed to open work",
                status.as_str()
            ),
        )
        .into());
    }
    let part = master::part_named(w.conn(), sku.as_str())?;
    let on_hand = on_hand(w.conn(), sku.as_str())?;
    if on_hand < qty.get() {
        return Err(DomainError::conflict(
            "insufficient_stock",
            format!(
                "only {on_hand} {} of {} in stock; cannot dispense {}",
                part.unit,
                part.sku,
                qty.get()
            ),
        )
        .into());
    }
    let now = w.now_str();
    let movement_id = new_id();
    w.conn().execute(
        "INSERT INTO stock_movements (id, sku, delta, reason, work_order_id, created_at, created_by) VALUES (?1, ?2, ?3, 'DISPENSE', ?4, ?5, ?6)",
        (&movement_id, &part.sku, -qty.get(), wo_id, &now, actor),
    )?;
    add_to_level(w.conn(), &part.sku, -qty.get())?;
    let line = WorkOrderPart {
        id: new_id(),
        sku: part.sku.clone(),
        qty: qty.get(),
        returned: 0,
        unit_price: part.price,
        created_at: now.clone(),
    };
    w.conn().execute(
        "INSERT INTO work_order_parts (id, work_order_id, sku, qty, unit_price, movement_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (&line.id, wo_id, &line.sku, line.qty, line.unit_price, &movement_id, &now),
    )?;
    let moved = p::StockMoved {
        sku: part.sku.clone(),
        delta: -qty.get(),
        reason: StockReason::Dispense.as_str().into(),
        work_order_id: Some(wo_id.to_owned()),
        line_id: Some(line.id.clone()),
        unit_price: Some(line.unit_price),
        reference: None,
        at: now,
        adjustment: None,
        note: None,
        count_id: None,
    };
    w.emit(
        EntityKind::StockMovement,
        &movement_id,
        op::DISPENSED,
        &moved,
    )?;
    let stock = StockLevel {
        sku: part.sku,
        name: part.name,
        unit: part.unit,
        on_hand: on_hand - qty.get(),
    };
    Ok(Dispensed { line, stock })
}

pub fn receive(
    w: &mut WriteTx<'_>,
    actor: &str,
    sku: &Sku,
    qty: Qty,
    reference: Option<&Text>,
) -> Result<StockLevel> {
    let part = master::part_named(w.conn(), sku.as_str())?;
    let movement_id = new_id();
    let now = w.now_str();
    w.conn().execute(
        "INSERT INTO stock_movements (id, sku, delta, reason, reference, created_at, created_by) VALUES (?1, ?2, ?3, 'RECEIPT', ?4, ?5, ?6)",
        (&movement_id, &part.sku, qty.get(), reference.map(Text::as_str), &now, actor),
    )?;
    add_to_level(w.conn(), &part.sku, qty.get())?;
    let moved = p::StockMoved {
        sku: part.sku.clone(),
        delta: qty.get(),
        reason: StockReason::Receipt.as_str().into(),
        work_order_id: None,
        line_id: None,
        unit_price: None,
        reference: reference.map(Text::to_string),
        at: now,
        adjustment: None,
        note: None,
        count_id: None,
    };
    w.emit(
        EntityKind::StockMovement,
        &movement_id,
        op::RECEIVED,
        &moved,
    )?;
    stock_level(w.conn(), sku.as_str())
}

pub fn stock_level(conn: &Connection, sku: &str) -> Result<StockLevel> {
    let part = master::part(conn, sku)?;
    Ok(StockLevel {
        on_hand: on_hand(conn, &part.sku)?,
        sku: part.sku,
        name: part.name,
        unit: part.unit,
    })
}

/// The level of `sku`: the sum of its movements, kept in `stock_levels` by the same transaction
/// that appends each movement, so reading it does not grow with years of history.
pub(super) fn on_hand(conn: &Connection, sku: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce((SELECT on_hand FROM stock_levels WHERE sku = ?1), 0)")?
        .query_row([sku], |r| r.get(0))?)
}

/// Every movement goes through here, beside its `stock_movements` row.
pub(super) fn add_to_level(conn: &Connection, sku: &str, delta: i64) -> Result<()> {
    conn.prepare_cached("INSERT INTO stock_levels (sku, on_hand) VALUES (?1, ?2) ON CONFLICT (sku) DO UPDATE SET on_hand = on_hand + excluded.on_hand")?
        .execute((sku, delta))?;
    Ok(())
}

fn check_mechanic(conn: &Connection, id: &str) -> Result<()> {
    let active: bool =
        conn.prepare_cached("SELECT active FROM mechanics WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => super::StoreError::from(
                    DomainError::invalid("mechanic_id", format!("no mechanic {id:?}")),
                ),
                e => e.into(),
            })?;
    if !active {
        return Err(DomainError::invalid(
            "mechanic_id",
            format!("mechanic {id:?} is no longer active"),
        )
        .into());
    }
    Ok(())
}

pub(super) fn status_of(conn: &Connection, id: &str) -> Result<Status> {
    let s: String = conn
        .prepare_cached("SELECT status FROM work_orders WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .or_not_found("work order", id)?;
    Status::parse(&s)
        .ok_or_else(|| super::StoreError::Corrupt(format!("work order {id}: status {s:?}")))
}

const WO_COLUMNS: &str = "id, customer_name, customer_phone, vehicle_plate, complaint, mechanic_id, status, created_at, updated_at, vehicle_id, customer_id";

fn wo_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkOrder> {
    Ok(WorkOrder {
        id: r.get(0)?,
        customer_name: r.get(1)?,
        customer_phone: r.get(2)?,
        vehicle_plate: r.get(3)?,
        complaint: r.get(4)?,
        mechanic_id: r.get(5)?,
        status: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        vehicle_id: r.get(9)?,
        customer_id: r.get(10)?,
        parts: Vec::new(),
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<WorkOrder> {
    let mut wo = conn
        .prepare_cached(&format!(
            "SELECT {WO_COLUMNS} FROM work_orders WHERE id = ?1"
        ))?
        .query_row([id], wo_row)
        .or_not_found("work order", id)?;
    wo.parts = parts_of(conn, id)?;
    Ok(wo)
}

pub(super) fn parts_of(conn: &Connection, id: &str) -> Result<Vec<WorkOrderPart>> {
    let mut stmt = conn.prepare_cached("SELECT id, sku, qty, unit_price, created_at, returned FROM work_order_parts WHERE work_order_id = ?1 ORDER BY created_at, id")?;
    Ok(stmt
        .query_map([id], |r| {
            Ok(WorkOrderPart {
                id: r.get(0)?,
                sku: r.get(1)?,
                qty: r.get(2)?,
                unit_price: r.get(3)?,
                created_at: r.get(4)?,
                returned: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// Newest first, at most `limit`.
pub fn list(conn: &Connection, status: Option<Status>, limit: u32) -> Result<Vec<WorkOrder>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WO_COLUMNS} FROM work_orders WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2"
    ))?;
    let mut out: Vec<WorkOrder> = stmt
        .query_map((status.map(Status::as_str), limit), wo_row)?
        .collect::<rusqlite::Result<_>>()?;
    for wo in &mut out {
        wo.parts = parts_of(conn, &wo.id)?;
    }
    Ok(out)
}

/// A stock movement as the broker bridge announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Movement {
    pub sku: String,
    pub delta: i64,
    /// DISPENSE, RECEIPT, ...
    pub reason: String,
    pub work_order_id: Option<String>,
}

pub fn movement(conn: &Connection, id: &str) -> Result<Movement> {
    conn.prepare_cached(
        "SELECT sku, delta, reason, work_order_id FROM stock_movements WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(Movement {
            sku: r.get(0)?,
            delta: r.get(1)?,
            reason: r.get(2)?,
            work_order_id: r.get(3)?,
        })
    })
    .or_not_found("stock movement", id)
}
