//! Pure rules of ingest: what a push batch must be to be looked at at all ([`prepare`]), what
//! one event must be to be applied ([`check`]), and, given what the branch already holds,
//! whether each event is applied, a duplicate of a record the branch has, or parked
//! ([`resolve`]). No I/O here: the caller fetches [`Known`] for the ids [`Lookup`] names.
//!
//! A batch that breaks the sync contract itself (not JSON, another device's event, a hole in the
//! seqs) is refused whole: the edge has a bug and nothing is applied. An event that breaks a rule
//! of its own is parked with the reason and never blocks the events behind it. An event that
//! refers to a work order or invoice needs it to exist for this branch already, or to be created
//! earlier in the same batch by an event that was not parked.

use std::collections::{HashMap, HashSet};

use sentra_protocol::doc::{self, DocRecord};
use sentra_protocol::payload::{self as p, Payload, op};
use sentra_protocol::record::{self, Author, RecordKind};
use sentra_protocol::workshop::{
    ADJUSTMENT_NOTE_MAX, PaymentMethod, StockAdjustment, StockReason, WorkOrderStatus,
};
use sentra_protocol::{EntityKind, Hlc, PROTOCOL_VERSION, SCHEMA_VERSION};
use serde::Deserialize;

pub use crate::event::{Checked, Outcome, Prepared, RawEvent};

/// Longest id (entity id, sku, work order, invoice…) accepted; edge ids are UUIDs.
pub const MAX_ID_LEN: usize = 128;

/// The largest stock movement accepted, either way. A branch moves at most 10 000 of a part at
/// once (its `Qty`); the bound keeps a branch's running sum (`stock_levels.on_hand`, bigint) from
/// overflowing, which would fail the whole push on every retry.
pub const MAX_STOCK_DELTA: i64 = 1_000_000;

/// A push batch as received: the protocol's `PushBatch`, except that each event's `entity` and
/// `hlc` are plain text, so one event the protocol types would refuse is parked alone instead of
/// failing the whole batch at parse time.
#[derive(Debug, Clone, Deserialize)]
pub struct RawBatch {
    pub protocol: u32,
    pub events: Vec<RawEvent>,
}

/// Why a batch is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("body is not JSON: {0}")]
    Malformed(String),
    #[error("body is not a push batch: {0}")]
    Shape(String),
    #[error("protocol version {0} is not supported; this cloud speaks {PROTOCOL_VERSION}")]
    Protocol(u32),
    #[error(
        "event seq {seq} belongs to device {found:?}, not to the authenticated device {device}"
    )]
    Foreign {
        seq: u64,
        found: String,
        device: String,
    },
    #[error("seq {0} is out of range: seqs are 1 to 2^63-1")]
    SeqRange(u64),
    #[error("seqs must be contiguous and ascending: {after} is followed by {next}")]
    NotContiguous { after: u64, next: u64 },
}

/// Parses and checks a batch from `device`. Events are checked whatever the device's cursor;
/// the ones the cloud already has are dropped later, in the transaction.
pub fn prepare(device: &str, body: &[u8]) -> Result<Vec<Prepared>, BatchError> {
    let batch: RawBatch = serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => BatchError::Shape(error.to_string()),
        _ => BatchError::Malformed(error.to_string()),
    })?;
    if batch.protocol != PROTOCOL_VERSION {
        return Err(BatchError::Protocol(batch.protocol));
    }
    for pair in batch.events.windows(2) {
        if pair[1].seq != pair[0].seq.saturating_add(1) {
            return Err(BatchError::NotContiguous {
                after: pair[0].seq,
                next: pair[1].seq,
            });
        }
    }
    let mut prepared = Vec::with_capacity(batch.events.len());
    for raw in batch.events {
        if raw.seq == 0 || i64::try_from(raw.seq).is_err() {
            return Err(BatchError::SeqRange(raw.seq));
        }
        if raw.device_id != device {
            return Err(BatchError::Foreign {
                seq: raw.seq,
                found: raw.device_id,
                device: device.to_owned(),
            });
        }
        let entity = EntityKind::parse(&raw.entity);
        let checked = check(&raw, entity);
        prepared.push(Prepared { raw, checked });
    }
    Ok(prepared)
}

/// The rules one event must pass on its own; the error is the reason it is parked.
pub fn check(raw: &RawEvent, entity: Option<EntityKind>) -> Result<Checked, String> {
    let entity = entity.ok_or_else(|| {
        format!(
            "entity {:?} is not known to this cloud (protocol {PROTOCOL_VERSION}, schema {SCHEMA_VERSION})",
            raw.entity
        )
    })?;
    if raw.schema_version == 0 || raw.schema_version > SCHEMA_VERSION {
        return Err(format!(
            "schema version {} is not known to this cloud (it reads 1 to {SCHEMA_VERSION})",
            raw.schema_version
        ));
    }
    let hlc: Hlc = raw.hlc.parse().map_err(|error| format!("hlc: {error}"))?;
    id("entity_id", &raw.entity_id)?;
    // PostgreSQL text cannot hold NUL; refuse it here rather than fail the whole batch there.
    let payload_text = raw.payload.get();
    if payload_text.contains("\\u0000") || raw.op.contains('\0') {
        return Err("contains a NUL character".to_owned());
    }
    // The payload is stored as sent, unknown fields included, and PostgreSQL's jsonb refuses a
    // few things serde_json's pass over raw text lets through. Refused in the insert, they would
    // fail the whole batch on every retry: such a payload is parsed whole here and parked if bad.
    if let Some(error) = jsonb_refusal(payload_text) {
        return Err(format!("payload: {error}"));
    }
    let payload = Payload::parse_text(entity, &raw.op, payload_text)?;
    rules(entity, &raw.entity_id, &raw.op, &payload)?;
    Ok(Checked { hlc, payload })
}

/// Why PostgreSQL's jsonb would refuse this valid JSON text ([`needs_full_parse`], then a whole
/// parse), or None. A NUL (`\u0000`) is the caller's to check.
pub(super) fn jsonb_refusal(json: &str) -> Option<serde_json::Error> {
    if !needs_full_parse(json) {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(json).err()
}

/// Whether valid JSON text may still be refused by jsonb: a `\u` escape of a UTF-16 surrogate
/// (unpaired, it is invalid; serde_json's pass over raw text does not decode escapes), or a
/// number with an exponent or of over 300 digits (jsonb's numeric overflows where a float would
/// not parse). The edge writes neither: non-ASCII goes as UTF-8, its numbers are integers.
fn needs_full_parse(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut in_string = false;
    let mut digits = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if in_string {
            match b {
                b'\\' => {
                    if bytes.get(i + 1) == Some(&b'u')
                        && matches!(bytes.get(i + 2), Some(b'd' | b'D'))
                    {
                        return true;
                    }
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'0'..=b'9' => {
                    digits += 1;
                    if digits > 300 {
                        return true;
                    }
                }
                b'e' | b'E' if digits > 0 => return true,
                b'.' | b'-' | b'+' => {}
                b'"' => {
                    in_string = true;
                    digits = 0;
                }
                _ => digits = 0,
            }
        }
        i += 1;
    }
    false
}

fn rules(
    entity: EntityKind,
    entity_id: &str,
    event_op: &str,
    payload: &Payload,
) -> Result<(), String> {
    match payload {
        Payload::WorkOrderCreated(w) => {
            same_id(&w.id, entity_id)?;
            text("customer_name", &w.customer_name)?;
            text("vehicle_plate", &w.vehicle_plate)?;
            status("status", &w.status)?;
            if let Some(mechanic) = &w.mechanic_id {
                id("mechanic_id", mechanic)?;
            }
            if let Some(vehicle) = &w.vehicle_id {
                id("vehicle_id", vehicle)?;
            }
            if let Some(customer) = &w.customer_id {
                id("customer_id", customer)?;
            }
            time("created_at", &w.created_at)
        }
        Payload::WorkOrderStatusChanged(c) => {
            status("from", &c.from)?;
            status("to", &c.to)?;
            time("at", &c.at)
        }
        Payload::WorkOrderAssigned(a) => {
            id("mechanic_id", &a.mechanic_id)?;
            time("at", &a.at)
        }
        Payload::StockMoved(m) => stock(event_op, m),
        Payload::InvoiceIssued(i) => invoice(entity_id, i),
        Payload::PaymentReceived(pay) => {
            same_id(&pay.id, entity_id)?;
            id("invoice_id", &pay.invoice_id)?;
            if PaymentMethod::parse(&pay.method).is_none() {
                return Err(format!(
                    "method {:?}: expected one of {:?}",
                    pay.method,
                    PaymentMethod::NAMES
                ));
            }
            positive("amount", pay.amount)?;
            time("received_at", &pay.received_at)
        }
        Payload::PaymentVoided(v) => {
            same_id(&v.id, entity_id)?;
            id("invoice_id", &v.invoice_id)?;
            id("manager_id", &v.manager_id)?;
            text("reason", &v.reason)?;
            time("voided_at", &v.voided_at)
        }
        Payload::CreditNoteIssued(c) => {
            same_id(&c.id, entity_id)?;
            text("number", &c.number)?;
            id("invoice_id", &c.invoice_id)?;
            positive("amount", c.amount)?;
            text("reason", &c.reason)?;
            time("issued_at", &c.issued_at)
        }
        Payload::InspectionRecorded(i) => inspection(entity_id, i),
        Payload::PrintJobQueued(j) => same_id(&j.id, entity_id),
        Payload::RecordFieldsSet(set) => {
            same_id(&set.id, entity_id)?;
            let kind = RecordKind::of(entity).ok_or("not a shared record")?;
            record::check_fields(kind, &set.fields, Author::Branch)
        }
        Payload::BookingRequested(b) => booking(entity_id, b),
        Payload::BookingCancelled(c) => {
            same_id(&c.id, entity_id)?;
            id("idempotency_key", &c.idempotency_key)?;
            time("cancelled_at", &c.cancelled_at)
        }
        Payload::BookingCompleted(c) => {
            same_id(&c.id, entity_id)?;
            id("idempotency_key", &c.idempotency_key)?;
            time("returned_at", &c.returned_at)
        }
        Payload::RentalHandedOver(r) => super::rental_rules::handed_over(entity_id, r),
        Payload::RentalReturned(r) => super::rental_rules::returned(entity_id, r),
        Payload::RentalInvoiceIssued(i) => super::rental_rules::invoice(entity_id, i),
        Payload::RentalPaymentReceived(pay) => super::rental_rules::payment(entity_id, pay),
        Payload::ShiftOpened(s) => {
            same_id(&s.id, entity_id)?;
            id("staff_id", &s.staff_id)?;
            id("device_id", &s.device_id)?;
            day("day", &s.day)?;
            drawer("opening_float", s.opening_float)?;
            time("opened_at", &s.opened_at)
        }
        Payload::ShiftClosed(s) => {
            same_id(&s.id, entity_id)?;
            id("staff_id", &s.staff_id)?;
            id("device_id", &s.device_id)?;
            day("day", &s.day)?;
            drawer("counted_cash", s.counted_cash)?;
            close(
                &s.totals,
                s.expected_cash,
                s.counted_cash,
                s.difference,
                s.reason.as_deref(),
            )?;
            time("closed_at", &s.closed_at)
        }
        Payload::DayClosed(d) => {
            same_id(&d.day, entity_id)?;
            day("day", &d.day)?;
            id("manager_id", &d.manager_id)?;
            non_negative("shifts", d.shifts)?;
            close(
                &d.totals,
                d.expected_cash,
                d.counted_cash,
                d.difference,
                d.reason.as_deref(),
            )?;
            time("closed_at", &d.closed_at)
        }
        Payload::DayReopened(d) => {
            same_id(&d.day, entity_id)?;
            day("day", &d.day)?;
            id("manager_id", &d.manager_id)?;
            text("reason", &d.reason)?;
            time("reopened_at", &d.reopened_at)
        }
        Payload::DocumentChanged(d) => {
            same_id(&d.record_id, entity_id)?;
            if DocRecord::parse(&d.record).is_none() {
                return Err(format!(
                    "record {:?}: documents belong to work_order or inspection",
                    d.record
                ));
            }
            doc::decode(&d.changes).map(drop).map_err(|e| e.to_string())
        }
    }
}

fn stock(event_op: &str, m: &p::StockMoved) -> Result<(), String> {
    id("sku", &m.sku)?;
    let sign_ok = match (event_op, StockReason::parse(&m.reason)) {
        (op::DISPENSED, Some(StockReason::Dispense)) => m.delta < 0,
        (op::RECEIVED, Some(StockReason::Receipt)) => m.delta > 0,
        (op::RECEIVED, Some(StockReason::Adjustment)) => m.delta != 0,
        (op::ADJUSTED, Some(StockReason::Adjustment)) => adjustment(m)?,
        _ => {
            return Err(format!(
                "reason {:?} does not go with op {event_op:?} (dispensed: DISPENSE; received: RECEIPT or ADJUSTMENT; adjusted: ADJUSTMENT)",
                m.reason
            ));
        }
    };
    if !sign_ok {
        return Err(format!(
            "delta {} has the wrong sign for {} (DISPENSE < 0, RECEIPT > 0, ADJUSTMENT ≠ 0)",
            m.delta, m.reason
        ));
    }
    if m.delta.unsigned_abs() > MAX_STOCK_DELTA.unsigned_abs() {
        return Err(format!(
            "delta {} moves more than {MAX_STOCK_DELTA} at once",
            m.delta
        ));
    }
    if event_op != op::ADJUSTED
        && (m.adjustment.is_some() || m.note.is_some() || m.count_id.is_some())
    {
        return Err("only an adjusted movement carries adjustment, note or count_id".to_owned());
    }
    if StockReason::parse(&m.reason) == Some(StockReason::Dispense) && m.work_order_id.is_none() {
        return Err("a DISPENSE names its work_order_id".to_owned());
    }
    if let Some(work_order) = &m.work_order_id {
        id("work_order_id", work_order)?;
    }
    if let Some(price) = m.unit_price {
        non_negative("unit_price", price)?;
    }
    time("at", &m.at)
}

/// An adjusted movement: its kind, the kind's sign (a count either way, damage and a return to
/// the supplier down, a work-order return up and naming the work order), a bounded note.
fn adjustment(m: &p::StockMoved) -> Result<bool, String> {
    let kind = m
        .adjustment
        .as_deref()
        .and_then(StockAdjustment::parse)
        .ok_or_else(|| {
            format!(
                "adjustment {:?}: expected one of {:?}",
                m.adjustment,
                StockAdjustment::NAMES
            )
        })?;
    if kind == StockAdjustment::WorkOrderReturn && m.work_order_id.is_none() {
        return Err("a WORK_ORDER_RETURN names its work_order_id".to_owned());
    }
    if let Some(note) = &m.note {
        text("note", note)?;
        if note.chars().count() > ADJUSTMENT_NOTE_MAX {
            return Err(format!("note: at most {ADJUSTMENT_NOTE_MAX} characters"));
        }
    }
    if let Some(count) = &m.count_id {
        id("count_id", count)?;
    }
    if !kind.sign_ok(m.delta) {
        return Err(format!(
            "delta {} has the wrong sign for {} (COUNT ≠ 0, DAMAGE and RETURN_TO_SUPPLIER < 0, WORK_ORDER_RETURN > 0)",
            m.delta,
            kind.as_str()
        ));
    }
    Ok(true)
}

fn invoice(entity_id: &str, i: &p::InvoiceIssued) -> Result<(), String> {
    same_id(&i.id, entity_id)?;
    text("number", &i.number)?;
    id("work_order_id", &i.work_order_id)?;
    if i.lines.is_empty() {
        return Err("an invoice has at least one line".to_owned());
    }
    let mut sum: i64 = 0;
    for (index, line) in i.lines.iter().enumerate() {
        if line.kind != "labour" && line.kind != "part" {
            return Err(format!(
                "lines[{index}].kind {:?}: expected labour or part",
                line.kind
            ));
        }
        positive(&format!("lines[{index}].qty"), line.qty)?;
        non_negative(&format!("lines[{index}].unit_price"), line.unit_price)?;
        let amount = line.qty.checked_mul(line.unit_price);
        if amount != Some(line.amount) {
            return Err(format!(
                "lines[{index}].amount {} is not qty {} × unit_price {}",
                line.amount, line.qty, line.unit_price
            ));
        }
        sum = sum
            .checked_add(line.amount)
            .ok_or_else(|| "invoice total overflows".to_owned())?;
    }
    totals_add_up(sum, i.subtotal, i.tax, i.total)?;
    time("issued_at", &i.issued_at)
}

fn inspection(entity_id: &str, i: &p::InspectionRecorded) -> Result<(), String> {
    same_id(&i.id, entity_id)?;
    id("asset_id", &i.asset_id)?;
    if i.kind != "HANDOVER" && i.kind != "RETURN" {
        return Err(format!("kind {:?}: expected HANDOVER or RETURN", i.kind));
    }
    non_negative("chain_index", i.chain_index)?;
    if let Some(km) = i.odometer_km {
        non_negative("odometer_km", km)?;
    }
    if let Some(fuel) = i.fuel_percent
        && !(0..=100).contains(&fuel)
    {
        return Err(format!("fuel_percent {fuel}: expected 0 to 100"));
    }
    sha256_hex("tamper_proof_hash", &i.tamper_proof_hash)?;
    if let Some(prev) = &i.prev_hash {
        sha256_hex("prev_hash", prev)?;
    }
    for (index, photo) in i.photos.iter().enumerate() {
        sha256_hex(&format!("photos[{index}]"), photo)?;
    }
    text("inspector", &i.inspector)?;
    time("created_at", &i.created_at)
}

fn booking(entity_id: &str, b: &p::BookingRequested) -> Result<(), String> {
    use sentra_protocol::booking as types;
    same_id(&b.id, entity_id)?;
    id("asset_id", &b.asset_id)?;
    id("sku", &b.sku)?;
    id("idempotency_key", &b.idempotency_key)?;
    types::Stay::parse(&b.from, &b.to).map_err(|error| error.to_string())?;
    types::Tier::parse(&b.tier).map_err(|error| error.to_string())?;
    types::check_customer(&b.customer).map_err(|error| error.to_string())?;
    time("requested_at", &b.requested_at)
}

fn day(field: &str, value: &str) -> Result<(), String> {
    sentra_protocol::day::parse_day(value)
        .map(drop)
        .map_err(|e| format!("{field}: {e}"))
}

/// Rupiah in a drawer: 0 up to the protocol's bound.
fn drawer(field: &str, value: i64) -> Result<(), String> {
    let max = sentra_protocol::staff::MAX_DRAWER_CASH;
    if !(0..=max).contains(&value) {
        return Err(format!("{field} {value} is out of range: 0 to {max}"));
    }
    Ok(())
}

/// A close's figures: the difference is counted minus expected, a reason says why it is not
/// zero, and every total is within the rental bound (sums of bounded rows).
fn close(
    totals: &sentra_protocol::staff::MethodTotals,
    expected: i64,
    counted: i64,
    difference: i64,
    reason: Option<&str>,
) -> Result<(), String> {
    let bound = sentra_protocol::rental::MAX_RENTAL_AMOUNT;
    for (field, v) in [
        ("totals.cash", totals.cash),
        ("totals.edc", totals.edc),
        ("totals.qris", totals.qris),
        ("expected_cash", expected),
        ("counted_cash", counted),
    ] {
        if !(-bound..=bound).contains(&v) {
            return Err(format!("{field} {v} is out of range"));
        }
    }
    if counted.checked_sub(expected) != Some(difference) {
        return Err(format!(
            "difference {difference} is not counted_cash {counted} minus expected_cash {expected}"
        ));
    }
    match reason {
        Some(r) => text("reason", r),
        None if difference != 0 => Err("a difference needs a reason".to_owned()),
        None => Ok(()),
    }
}

pub(super) fn same_id(payload_id: &str, entity_id: &str) -> Result<(), String> {
    if payload_id == entity_id {
        Ok(())
    } else {
        Err(format!(
            "payload id {payload_id:?} differs from the event's entity_id {entity_id:?}"
        ))
    }
}

pub(super) fn id(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        Err(format!(
            "{field} {value:?}: expected 1-{MAX_ID_LEN} characters without control characters"
        ))
    } else {
        Ok(())
    }
}

pub(super) fn text(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("{field} is blank"))
    } else {
        Ok(())
    }
}

fn status(field: &str, value: &str) -> Result<(), String> {
    if WorkOrderStatus::parse(value).is_some() {
        Ok(())
    } else {
        Err(format!(
            "{field} {value:?}: expected one of {:?}",
            WorkOrderStatus::NAMES
        ))
    }
}

pub(super) fn positive(field: &str, value: i64) -> Result<(), String> {
    if value > 0 {
        Ok(())
    } else {
        Err(format!("{field} {value}: expected more than 0"))
    }
}

pub(super) fn non_negative(field: &str, value: i64) -> Result<(), String> {
    if value >= 0 {
        Ok(())
    } else {
        Err(format!("{field} {value} is negative"))
    }
}

pub(super) fn time(field: &str, value: &str) -> Result<(), String> {
    let parsed = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{field} {value:?} is not an RFC 3339 time"))?;
    // RFC 3339 allows year 0000; PostgreSQL's timestamptz does not, and a row it cannot store
    // would fail the whole push on every retry.
    if parsed.year() < 1 {
        return Err(format!("{field} {value:?} is before year 1"));
    }
    Ok(())
}

pub(super) fn sha256_hex(field: &str, value: &str) -> Result<(), String> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!(
            "{field}: expected a SHA-256 in hex (64 characters)"
        ))
    }
}

/// The ids a batch creates or refers to, per table: what [`Known`] must be filled with.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    pub work_orders: Vec<String>,
    pub stock_movements: Vec<String>,
    pub inspections: Vec<String>,
    pub invoices: Vec<String>,
    pub payments: Vec<String>,
    pub credit_notes: Vec<String>,
    /// Invoice and credit-note numbers the batch issues.
    pub numbers: Vec<String>,
    /// Rentals (by booking id) the batch hands over or refers to.
    pub rentals: Vec<String>,
    pub rental_invoices: Vec<String>,
}

impl Lookup {
    pub fn of(events: &[Prepared]) -> Lookup {
        #[derive(Default)]
        struct Sets<'a> {
            work_orders: HashSet<&'a str>,
            stock_movements: HashSet<&'a str>,
            inspections: HashSet<&'a str>,
            invoices: HashSet<&'a str>,
            payments: HashSet<&'a str>,
            credit_notes: HashSet<&'a str>,
            numbers: HashSet<&'a str>,
            rentals: HashSet<&'a str>,
            rental_invoices: HashSet<&'a str>,
        }
        let mut sets = Sets::default();
        for event in events {
            let Ok(checked) = &event.checked else {
                continue;
            };
            let entity_id = event.raw.entity_id.as_str();
            match &checked.payload {
                Payload::WorkOrderCreated(_)
                | Payload::WorkOrderStatusChanged(_)
                | Payload::WorkOrderAssigned(_) => {
                    sets.work_orders.insert(entity_id);
                }
                Payload::StockMoved(m) => {
                    sets.stock_movements.insert(entity_id);
                    if let Some(work_order) = &m.work_order_id {
                        sets.work_orders.insert(work_order);
                    }
                }
                Payload::InvoiceIssued(i) => {
                    sets.invoices.insert(entity_id);
                    sets.work_orders.insert(&i.work_order_id);
                    sets.numbers.insert(&i.number);
                }
                Payload::PaymentReceived(pay) => {
                    sets.payments.insert(entity_id);
                    sets.invoices.insert(&pay.invoice_id);
                }
                Payload::PaymentVoided(_) => {
                    sets.payments.insert(entity_id);
                }
                Payload::CreditNoteIssued(c) => {
                    sets.credit_notes.insert(entity_id);
                    sets.invoices.insert(&c.invoice_id);
                    sets.numbers.insert(&c.number);
                }
                Payload::InspectionRecorded(_) => {
                    sets.inspections.insert(entity_id);
                }
                // Projected idempotently (`ingest::shifts`): nothing to look up.
                Payload::ShiftOpened(_)
                | Payload::ShiftClosed(_)
                | Payload::DayClosed(_)
                | Payload::DayReopened(_) => {}
                Payload::RentalHandedOver(r) => {
                    sets.rentals.insert(&r.booking_id);
                }
                Payload::RentalReturned(r) => {
                    sets.rentals.insert(&r.booking_id);
                }
                Payload::RentalInvoiceIssued(i) => {
                    sets.rental_invoices.insert(entity_id);
                    sets.rentals.insert(&i.booking_id);
                    sets.numbers.insert(&i.number);
                }
                Payload::RentalPaymentReceived(pay) => {
                    sets.rentals.insert(&pay.booking_id);
                }
                Payload::PrintJobQueued(_)
                | Payload::RecordFieldsSet(_)
                | Payload::DocumentChanged(_)
                | Payload::BookingRequested(_)
                | Payload::BookingCancelled(_)
                | Payload::BookingCompleted(_) => {}
            }
        }
        let sorted = |set: HashSet<&str>| {
            let mut ids: Vec<String> = set.into_iter().map(str::to_owned).collect();
            ids.sort_unstable();
            ids
        };
        Lookup {
            work_orders: sorted(sets.work_orders),
            stock_movements: sorted(sets.stock_movements),
            inspections: sorted(sets.inspections),
            invoices: sorted(sets.invoices),
            payments: sorted(sets.payments),
            credit_notes: sorted(sets.credit_notes),
            numbers: sorted(sets.numbers),
            rentals: sorted(sets.rentals),
            rental_invoices: sorted(sets.rental_invoices),
        }
    }
}

/// What the branch already holds, as far as a batch asks ([`Lookup`]). Money records keep a
/// fingerprint of the fields that may never change, so a re-sent record is told apart from a
/// conflicting one.
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub work_orders: HashSet<String>,
    pub stock_movements: HashSet<String>,
    pub inspections: HashSet<String>,
    pub invoices: HashMap<String, String>,
    pub payments: HashMap<String, String>,
    pub credit_notes: HashMap<String, String>,
    /// Invoice and credit-note numbers the branch holds: number → the document holding it.
    pub numbers: HashMap<String, String>,
    /// Rentals handed over (by booking id).
    pub rentals: HashSet<String>,
    /// Rental invoices, with `invoice_fingerprint(booking_id, total)`.
    pub rental_invoices: HashMap<String, String>,
}

/// The fingerprint of an invoice: what PostgreSQL computes as `work_order_id || '|' || total`.
pub fn invoice_fingerprint(work_order_id: &str, total: i64) -> String {
    format!("{work_order_id}|{total}")
}

/// The fingerprint of a payment or credit note: `invoice_id || '|' || amount`.
pub fn amount_fingerprint(invoice_id: &str, amount: i64) -> String {
    format!("{invoice_id}|{amount}")
}

/// Decides each event's outcome, in seq order; `known` grows with what the batch creates.
pub fn resolve(branch: &str, events: &[Prepared], known: &mut Known) -> Vec<Outcome> {
    events
        .iter()
        .map(|event| match &event.checked {
            Err(reason) => Outcome::Park(reason.clone()),
            Ok(checked) => resolve_one(branch, &event.raw.entity_id, &checked.payload, known),
        })
        .collect()
}

fn resolve_one(branch: &str, entity_id: &str, payload: &Payload, known: &mut Known) -> Outcome {
    let unknown =
        |what: &str, id: &str| Outcome::Park(format!("{what} {id} is unknown in branch {branch}"));
    let conflict = |what: &str| {
        Outcome::Park(format!(
            "{what} {entity_id} is already recorded with other content; money is append-only (issue a credit note)"
        ))
    };
    match payload {
        Payload::WorkOrderCreated(_) => {
            if known.work_orders.insert(entity_id.to_owned()) {
                Outcome::Apply
            } else {
                Outcome::Duplicate
            }
        }
        Payload::WorkOrderStatusChanged(_) | Payload::WorkOrderAssigned(_) => {
            if known.work_orders.contains(entity_id) {
                Outcome::Apply
            } else {
                unknown("work order", entity_id)
            }
        }
        Payload::StockMoved(m) => {
            if known.stock_movements.contains(entity_id) {
                return Outcome::Duplicate;
            }
            if let Some(work_order) = &m.work_order_id
                && !known.work_orders.contains(work_order)
            {
                return unknown("work order", work_order);
            }
            known.stock_movements.insert(entity_id.to_owned());
            Outcome::Apply
        }
        Payload::InvoiceIssued(i) => {
            let fingerprint = invoice_fingerprint(&i.work_order_id, i.total);
            if let Some(existing) = known.invoices.get(entity_id) {
                return if *existing == fingerprint {
                    Outcome::Duplicate
                } else {
                    conflict("invoice")
                };
            }
            if !known.work_orders.contains(&i.work_order_id) {
                return unknown("work order", &i.work_order_id);
            }
            if let Some(park) = number_taken(branch, "invoice", &i.number, entity_id, known) {
                return park;
            }
            known.invoices.insert(entity_id.to_owned(), fingerprint);
            Outcome::Apply
        }
        Payload::PaymentReceived(pay) => {
            let fingerprint = amount_fingerprint(&pay.invoice_id, pay.amount);
            if let Some(existing) = known.payments.get(entity_id) {
                return if *existing == fingerprint {
                    Outcome::Duplicate
                } else {
                    conflict("payment")
                };
            }
            if !known.invoices.contains_key(&pay.invoice_id) {
                return unknown("invoice", &pay.invoice_id);
            }
            known.payments.insert(entity_id.to_owned(), fingerprint);
            Outcome::Apply
        }
        // A void names a payment the cloud holds (received earlier in this batch or before) on
        // the same invoice; applied idempotently (`ingest::shifts`), so one sent twice is
        // written once.
        Payload::PaymentVoided(v) => match known.payments.get(entity_id) {
            None => unknown("payment", entity_id),
            // The fingerprint is `invoice_id|amount`; the amount has no `|`, an id may.
            Some(fingerprint)
                if fingerprint.rsplit_once('|').map(|(invoice, _)| invoice)
                    != Some(v.invoice_id.as_str()) =>
            {
                Outcome::Park(format!(
                    "void of payment {entity_id} names invoice {}, which the payment is not for",
                    v.invoice_id
                ))
            }
            Some(_) => Outcome::Apply,
        },
        Payload::CreditNoteIssued(c) => {
            let fingerprint = amount_fingerprint(&c.invoice_id, c.amount);
            if let Some(existing) = known.credit_notes.get(entity_id) {
                return if *existing == fingerprint {
                    Outcome::Duplicate
                } else {
                    conflict("credit note")
                };
            }
            if !known.invoices.contains_key(&c.invoice_id) {
                return unknown("invoice", &c.invoice_id);
            }
            if let Some(park) = number_taken(branch, "credit note", &c.number, entity_id, known) {
                return park;
            }
            known.credit_notes.insert(entity_id.to_owned(), fingerprint);
            Outcome::Apply
        }
        Payload::InspectionRecorded(_) => {
            if known.inspections.insert(entity_id.to_owned()) {
                Outcome::Apply
            } else {
                Outcome::Duplicate
            }
        }
        // Projected idempotently (`ingest::shifts`): an event sent twice is written once.
        Payload::ShiftOpened(_)
        | Payload::ShiftClosed(_)
        | Payload::DayClosed(_)
        | Payload::DayReopened(_) => Outcome::Apply,
        Payload::RentalHandedOver(r) => {
            if known.rentals.insert(r.booking_id.clone()) {
                Outcome::Apply
            } else {
                Outcome::Duplicate
            }
        }
        // Projected idempotently (`ingest::rentals`): a return or a money row sent twice is
        // written once.
        Payload::RentalReturned(r) => {
            if known.rentals.contains(&r.booking_id) {
                Outcome::Apply
            } else {
                unknown("rental of booking", &r.booking_id)
            }
        }
        Payload::RentalPaymentReceived(pay) => {
            if known.rentals.contains(&pay.booking_id) {
                Outcome::Apply
            } else {
                unknown("rental of booking", &pay.booking_id)
            }
        }
        Payload::RentalInvoiceIssued(i) => {
            let fingerprint = invoice_fingerprint(&i.booking_id, i.total);
            if let Some(existing) = known.rental_invoices.get(entity_id) {
                return if *existing == fingerprint {
                    Outcome::Duplicate
                } else {
                    conflict("rental invoice")
                };
            }
            if !known.rentals.contains(&i.booking_id) {
                return unknown("rental of booking", &i.booking_id);
            }
            if let Some(park) = number_taken(branch, "invoice", &i.number, entity_id, known) {
                return park;
            }
            known
                .rental_invoices
                .insert(entity_id.to_owned(), fingerprint);
            Outcome::Apply
        }
        // Shared records merge (see `shared`): applying one twice changes nothing.
        // A booking is decided by its hold, keyed for idempotency (`booking::offline`), and
        // completed by its key the same way.
        Payload::PrintJobQueued(_)
        | Payload::RecordFieldsSet(_)
        | Payload::DocumentChanged(_)
        | Payload::BookingRequested(_)
        | Payload::BookingCancelled(_)
        | Payload::BookingCompleted(_) => Outcome::Apply,
    }
}

/// A new document's number is its branch's once: held under another document (an earlier push,
/// or earlier in this batch), the new one is parked with the reason; otherwise it is claimed.
fn number_taken(
    branch: &str,
    what: &str,
    number: &str,
    entity_id: &str,
    known: &mut Known,
) -> Option<Outcome> {
    match known.numbers.get(number) {
        Some(holder) if holder != entity_id => Some(Outcome::Park(format!(
            "{what} number {number} is already held by {holder} in branch {branch}; a number is issued once (a box numbering outside its own series: cloned, or enrolled without --replaces?)"
        ))),
        _ => {
            known
                .numbers
                .insert(number.to_owned(), entity_id.to_owned());
            None
        }
    }
}

/// An invoice's figures agree: `subtotal` is the lines' `sum`, `tax` is not negative, and
/// `total` is `subtotal + tax` (a workshop invoice's and a rental invoice's alike).
pub(super) fn totals_add_up(sum: i64, subtotal: i64, tax: i64, total: i64) -> Result<(), String> {
    if subtotal != sum {
        return Err(format!(
            "subtotal {subtotal} is not the sum of the lines ({sum})"
        ));
    }
    non_negative("tax", tax)?;
    if subtotal.checked_add(tax) != Some(total) {
        return Err(format!(
            "total {total} is not subtotal {subtotal} + tax {tax}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const DEVICE: &str = "0190f5c2-0000-7000-8000-000000000001";
    const HLC: &str = "001795400000123-0000000002";
    const AT: &str = "2026-11-02T09:15:00.000Z";

    fn event(seq: u64, entity: &str, entity_id: &str, event_op: &str, payload: Value) -> Value {
        json!({"device_id": DEVICE, "seq": seq, "hlc": HLC, "schema_version": 1, "entity": entity,
               "entity_id": entity_id, "op": event_op, "payload": payload})
    }

    fn work_order(id: &str) -> Value {
        json!({"id": id, "customer_name": "Budi", "customer_phone": null, "vehicle_plate": "B 1234 XYZ",
               "complaint": "brakes", "mechanic_id": null, "status": "OPEN", "created_at": AT})
    }

    fn stock(reason: &str, delta: i64, work_order: Option<&str>) -> Value {
        json!({"sku": "OF-1", "delta": delta, "reason": reason, "work_order_id": work_order,
               "line_id": null, "unit_price": 45000, "reference": null, "at": AT})
    }

    fn adjusted(
        kind: Option<&str>,
        delta: i64,
        work_order: Option<&str>,
        note: Option<&str>,
    ) -> Value {
        json!({"sku": "OF-1", "delta": delta, "reason": "ADJUSTMENT", "work_order_id": work_order,
               "line_id": null, "unit_price": null, "reference": null, "at": AT,
               "adjustment": kind, "note": note, "count_id": "c1"})
    }

    fn invoice(id: &str, work_order: &str, qty: i64, subtotal: i64, tax: i64, total: i64) -> Value {
        json!({"id": id, "number": "JKT01-202611-00001", "work_order_id": work_order,
               "lines": [{"kind": "part", "description": "Oil filter", "sku": "OF-1", "qty": qty,
                          "unit_price": 45000, "amount": qty * 45000}],
               "subtotal": subtotal, "tax": tax, "total": total, "issued_at": AT})
    }

    fn payment(id: &str, invoice: &str, amount: i64) -> Value {
        json!({"id": id, "invoice_id": invoice, "method": "CASH", "amount": amount, "reference": null, "received_at": AT})
    }

    fn raw(value: Value) -> RawEvent {
        serde_json::from_str(&value.to_string()).expect("a raw event")
    }

    fn check_value(value: Value) -> Result<Checked, String> {
        let raw = raw(value);
        let entity = EntityKind::parse(&raw.entity);
        check(&raw, entity)
    }

    /// Payloads PostgreSQL's jsonb would refuse are parked, not left to fail the batch's insert
    /// on every retry; what jsonb takes (a surrogate pair, a float in range) is applied as before.
    #[test]
    fn payloads_jsonb_would_refuse_are_parked() {
        let with_extra = |extra: &str| {
            let body = event(
                1,
                "stock_movement",
                "m-1",
                "received",
                stock("RECEIPT", 5, None),
            )
            .to_string()
            .replacen(
                r#""payload":{"#,
                &format!(r#""payload":{{"extra":{extra},"#),
                1,
            );
            let raw: RawEvent = serde_json::from_str(&body).expect("valid JSON");
            check(&raw, EntityKind::parse(&raw.entity))
        };
        let long = "9".repeat(400);
        for extra in [r#""\ud800""#, r#""\udc00x""#, "1e999999", long.as_str()] {
            let reason = with_extra(extra).expect_err(extra);
            assert!(reason.starts_with("payload: "), "{extra}: {reason}");
        }
        for extra in [r#""\ud83d\ude00""#, "1.5e3", "true", r#""a\\udx""#] {
            if let Err(reason) = with_extra(extra) {
                panic!("{extra}: {reason}");
            }
        }
        assert!(!needs_full_parse(
            r#"{"a":true,"b":[1,2,-3],"c":"\\ud","d":"E1"}"#
        ));
    }

    /// (event, Ok or a fragment of the park reason)
    #[test]
    fn check_table() {
        let cases: Vec<(Value, Result<(), &str>)> = vec![
            (
                event(1, "work_order", "w1", "created", work_order("w1")),
                Ok(()),
            ),
            (
                event(1, "spaceship", "s1", "launched", json!({})),
                Err("entity \"spaceship\" is not known to this cloud"),
            ),
            (
                event(
                    1,
                    "customer",
                    "c1",
                    "fields_set",
                    json!({"id": "c1", "fields": {"phone": "0812"}}),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "customer",
                    "c1",
                    "fields_set",
                    json!({"id": "c1", "fields": {"membership_tier": "GOLD"}}),
                ),
                Err("set by the cloud only"),
            ),
            (
                event(
                    1,
                    "vehicle",
                    "v1",
                    "fields_set",
                    json!({"id": "v1", "fields": {"year": "old"}}),
                ),
                Err("fields.year"),
            ),
            (
                event(
                    1,
                    "document",
                    "w1",
                    "changed",
                    json!({"record": "work_order", "record_id": "w1", "changes": "!!"}),
                ),
                Err("not base64"),
            ),
            (
                event(
                    1,
                    "document",
                    "w1",
                    "changed",
                    json!({"record": "invoice", "record_id": "w1", "changes": ""}),
                ),
                Err("documents belong to work_order or inspection"),
            ),
            (
                event(1, "work_order", "w2", "created", work_order("w1")),
                Err("differs from the event's entity_id"),
            ),
            (
                event(1, "work_order", "w1", "created", json!({"id": "w1"})),
                Err("payload: missing field"),
            ),
            (
                event(1, "work_order", "w1", "exploded", work_order("w1")),
                Err("unknown change work_order:exploded"),
            ),
            (
                event(
                    1,
                    "work_order",
                    "w1",
                    "status_changed",
                    json!({"from": "OPEN", "to": "DONE", "at": AT}),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "work_order",
                    "w1",
                    "status_changed",
                    json!({"from": "OPEN", "to": "FIXED", "at": AT}),
                ),
                Err("to \"FIXED\""),
            ),
            (
                event(
                    1,
                    "work_order",
                    "w1",
                    "assigned",
                    json!({"mechanic_id": "m1", "at": "yesterday"}),
                ),
                Err("not an RFC 3339 time"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "dispensed",
                    stock("DISPENSE", -2, Some("w1")),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "dispensed",
                    stock("DISPENSE", 2, Some("w1")),
                ),
                Err("wrong sign"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "dispensed",
                    stock("DISPENSE", -2, None),
                ),
                Err("names its work_order_id"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "received",
                    stock("RECEIPT", 5, None),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "received",
                    stock("RECEIPT", 0, None),
                ),
                Err("wrong sign"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "received",
                    stock("ADJUSTMENT", -3, None),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "received",
                    stock("DISPENSE", -3, Some("w1")),
                ),
                Err("does not go with op"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(Some("DAMAGE"), -2, None, Some("basah")),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(Some("DAMAGE"), 2, None, None),
                ),
                Err("wrong sign"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(Some("COUNT"), 5, None, None),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(Some("RETURN_TO_SUPPLIER"), -1, None, None),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(Some("WORK_ORDER_RETURN"), 1, Some("w1"), None),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(Some("WORK_ORDER_RETURN"), 1, None, None),
                ),
                Err("names its work_order_id"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(Some("THEFT"), -1, None, None),
                ),
                Err("expected one of"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(None, -1, None, None),
                ),
                Err("expected one of"),
            ),
            (
                event(
                    1,
                    "stock_movement",
                    "s1",
                    "adjusted",
                    adjusted(Some("DAMAGE"), -1, None, Some(&"x".repeat(501))),
                ),
                Err("at most 500"),
            ),
            (
                event(
                    1,
                    "invoice",
                    "i1",
                    "issued",
                    invoice("i1", "w1", 2, 90_000, 9_900, 99_900),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "invoice",
                    "i1",
                    "issued",
                    invoice("i1", "w1", 2, 90_001, 9_900, 99_901),
                ),
                Err("not the sum of the lines"),
            ),
            (
                event(
                    1,
                    "invoice",
                    "i1",
                    "issued",
                    invoice("i1", "w1", 2, 90_000, 9_900, 99_999),
                ),
                Err("is not subtotal"),
            ),
            (
                event(
                    1,
                    "invoice",
                    "i1",
                    "issued",
                    invoice("i1", "w1", 0, 0, 0, 0),
                ),
                Err("lines[0].qty 0"),
            ),
            (
                event(
                    1,
                    "invoice",
                    "i1",
                    "issued",
                    invoice("i1", "w1", 2, 90_000, -1, 89_999),
                ),
                Err("tax -1 is negative"),
            ),
            (
                event(1, "payment", "p1", "received", payment("p1", "i1", 99_900)),
                Ok(()),
            ),
            (
                event(1, "payment", "p1", "received", payment("p1", "i1", -5)),
                Err("amount -5"),
            ),
            (
                event(1, "payment", "p1", "received", payment("p1", "i1", 0)),
                Err("amount 0"),
            ),
            (
                event(
                    1,
                    "credit_note",
                    "c1",
                    "issued",
                    json!({"id": "c1", "number": "N", "invoice_id": "i1", "amount": 10, "reason": "goodwill", "issued_at": AT}),
                ),
                Ok(()),
            ),
            (
                event(
                    1,
                    "print_job",
                    "j1",
                    "queued",
                    json!({"id": "j1", "document": "receipt", "ref_id": "i1"}),
                ),
                Ok(()),
            ),
            (
                json!({"device_id": DEVICE, "seq": 1, "hlc": "yesterday", "schema_version": 1, "entity": "print_job",
                    "entity_id": "j1", "op": "queued", "payload": {"id": "j1", "document": "r", "ref_id": "x"}}),
                Err("hlc:"),
            ),
            (
                json!({"device_id": DEVICE, "seq": 1, "hlc": HLC, "schema_version": 2, "entity": "print_job",
                    "entity_id": "j1", "op": "queued", "payload": {"id": "j1", "document": "r", "ref_id": "x"}}),
                Err("schema version 2"),
            ),
            (
                event(
                    1,
                    "print_job",
                    "j\u{0}1",
                    "queued",
                    json!({"id": "j\u{0}1", "document": "r", "ref_id": "x"}),
                ),
                Err("control characters"),
            ),
            (
                event(
                    1,
                    "print_job",
                    "j1",
                    "queued",
                    json!({"id": "j1", "document": "r\u{0}", "ref_id": "x"}),
                ),
                Err("NUL"),
            ),
            (
                event(
                    1,
                    "print_job",
                    "",
                    "queued",
                    json!({"id": "", "document": "r", "ref_id": "x"}),
                ),
                Err("entity_id \"\""),
            ),
        ];
        for (value, expected) in cases {
            let got = check_value(value.clone()).map(|_| ());
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(reason), Err(fragment)) => {
                    assert!(
                        reason.contains(fragment),
                        "{value}: {reason:?} lacks {fragment:?}"
                    );
                }
                (got, expected) => panic!("{value}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    fn batch(events: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({"protocol": 1, "events": events})).expect("json")
    }

    #[test]
    fn prepare_refuses_broken_batches_whole() {
        let ok = |seq| {
            event(
                seq,
                "print_job",
                "j",
                "queued",
                json!({"id": "j", "document": "r", "ref_id": "x"}),
            )
        };
        assert_eq!(
            prepare(DEVICE, &batch(vec![ok(3), ok(4)])).map(|events| events.len()),
            Ok(2)
        );
        assert_eq!(
            prepare(DEVICE, &batch(vec![])).map(|events| events.len()),
            Ok(0)
        );

        let mut foreign = ok(5);
        foreign["device_id"] = json!("someone-else");
        let cases: Vec<(Vec<u8>, BatchError)> = vec![
            (b"{".to_vec(), BatchError::Malformed(String::new())),
            (
                b"{\"protocol\": 1}".to_vec(),
                BatchError::Shape(String::new()),
            ),
            (
                serde_json::to_vec(&json!({"protocol": 2, "events": []})).expect("json"),
                BatchError::Protocol(2),
            ),
            (
                batch(vec![ok(3), ok(5)]),
                BatchError::NotContiguous { after: 3, next: 5 },
            ),
            (
                batch(vec![ok(3), ok(3)]),
                BatchError::NotContiguous { after: 3, next: 3 },
            ),
            (
                batch(vec![ok(4), foreign]),
                BatchError::Foreign {
                    seq: 5,
                    found: "someone-else".into(),
                    device: DEVICE.into(),
                },
            ),
            (batch(vec![ok(0)]), BatchError::SeqRange(0)),
            (batch(vec![ok(u64::MAX)]), BatchError::SeqRange(u64::MAX)),
        ];
        for (body, expected) in cases {
            let got = prepare(DEVICE, &body).expect_err("refused");
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&expected),
                "{got}"
            );
            if !matches!(expected, BatchError::Malformed(_) | BatchError::Shape(_)) {
                assert_eq!(got, expected);
            }
        }
    }

    fn outcomes(events: Vec<Value>, known: &mut Known) -> Vec<Outcome> {
        let prepared = prepare(DEVICE, &batch(events)).expect("a valid batch");
        resolve("JKT01", &prepared, known)
    }

    fn park(fragment: &str) -> Outcome {
        Outcome::Park(fragment.to_owned())
    }

    /// Compares outcomes, a park's expected reason being a fragment of the actual one.
    fn assert_outcomes(got: &[Outcome], expected: &[Outcome]) {
        assert_eq!(got.len(), expected.len(), "{got:?}");
        for (index, (got, expected)) in got.iter().zip(expected).enumerate() {
            match (got, expected) {
                (Outcome::Park(reason), Outcome::Park(fragment)) => {
                    assert!(
                        reason.contains(fragment.as_str()),
                        "[{index}] {reason:?} lacks {fragment:?}"
                    );
                }
                _ => assert_eq!(got, expected, "[{index}] in {got:?}"),
            }
        }
    }

    #[test]
    fn references_resolve_within_the_batch_and_against_the_branch() {
        let mut known = Known::default();
        let got = outcomes(
            vec![
                event(1, "work_order", "w1", "created", work_order("w1")),
                event(
                    2,
                    "stock_movement",
                    "s1",
                    "dispensed",
                    stock("DISPENSE", -2, Some("w1")),
                ),
                event(
                    3,
                    "invoice",
                    "i1",
                    "issued",
                    invoice("i1", "w1", 2, 90_000, 9_900, 99_900),
                ),
                event(4, "payment", "p1", "received", payment("p1", "i1", 99_900)),
                // Refers to things nobody created:
                event(5, "payment", "p2", "received", payment("p2", "i-none", 5)),
                event(
                    6,
                    "work_order",
                    "w-none",
                    "status_changed",
                    json!({"from": "OPEN", "to": "DONE", "at": AT}),
                ),
                // A bad work order is parked, and so is what depends on it; later events go on.
                event(7, "work_order", "w2", "created", json!({"id": "w2"})),
                event(
                    8,
                    "stock_movement",
                    "s2",
                    "dispensed",
                    stock("DISPENSE", -1, Some("w2")),
                ),
                event(
                    9,
                    "stock_movement",
                    "s3",
                    "received",
                    stock("RECEIPT", 10, None),
                ),
                // Re-sent records under new seqs: duplicates, not doubles.
                event(10, "payment", "p1", "received", payment("p1", "i1", 99_900)),
                event(
                    11,
                    "stock_movement",
                    "s1",
                    "dispensed",
                    stock("DISPENSE", -2, Some("w1")),
                ),
                event(12, "work_order", "w1", "created", work_order("w1")),
                // The same payment id with another amount is a conflict.
                event(13, "payment", "p1", "received", payment("p1", "i1", 1)),
            ],
            &mut known,
        );
        assert_outcomes(
            &got,
            &[
                Outcome::Apply,
                Outcome::Apply,
                Outcome::Apply,
                Outcome::Apply,
                park("invoice i-none is unknown in branch JKT01"),
                park("work order w-none is unknown"),
                park("payload: missing field"),
                park("work order w2 is unknown"),
                Outcome::Apply,
                Outcome::Duplicate,
                Outcome::Duplicate,
                Outcome::Duplicate,
                park("payment p1 is already recorded with other content"),
            ],
        );

        // A later batch sees what the branch holds.
        let mut known = Known::default();
        known.work_orders.insert("w1".into());
        known
            .invoices
            .insert("i1".into(), invoice_fingerprint("w1", 99_900));
        known
            .invoices
            .insert("i9".into(), invoice_fingerprint("w1", 5));
        let got = outcomes(
            vec![
                event(20, "payment", "p5", "received", payment("p5", "i1", 100)),
                event(
                    21,
                    "invoice",
                    "i1",
                    "issued",
                    invoice("i1", "w1", 2, 90_000, 9_900, 99_900),
                ),
                event(
                    22,
                    "invoice",
                    "i9",
                    "issued",
                    invoice("i9", "w1", 2, 90_000, 9_900, 99_900),
                ),
                event(
                    23,
                    "work_order",
                    "w1",
                    "assigned",
                    json!({"mechanic_id": "m1", "at": AT}),
                ),
            ],
            &mut known,
        );
        assert_outcomes(
            &got,
            &[
                Outcome::Apply,
                Outcome::Duplicate,
                park("invoice i9 is already recorded"),
                Outcome::Apply,
            ],
        );
    }

    /// An invoice or credit-note number is held once per branch: a new document with a number
    /// the branch holds (from an earlier push, or earlier in the batch) under another id is
    /// parked; the same document re-sent is a duplicate, not a clash.
    #[test]
    fn a_number_is_held_once() {
        let numbered = |id: &str, number: &str| {
            let mut v = invoice(id, "w1", 2, 90_000, 9_900, 99_900);
            v["number"] = json!(number);
            v
        };
        let credit = |id: &str, number: &str| json!({"id": id, "number": number, "invoice_id": "i1", "amount": 5, "reason": "r", "issued_at": AT});
        let mut known = Known::default();
        known.work_orders.insert("w1".into());
        known
            .numbers
            .insert("JKT01-202611-00001".into(), "i-old".into());
        let got = outcomes(
            vec![
                event(
                    1,
                    "invoice",
                    "i1",
                    "issued",
                    numbered("i1", "JKT01-202611-00001"),
                ),
                event(
                    2,
                    "invoice",
                    "i1",
                    "issued",
                    numbered("i1", "JKT01-202611-7KQ2-00001"),
                ),
                event(
                    3,
                    "invoice",
                    "i2",
                    "issued",
                    numbered("i2", "JKT01-202611-7KQ2-00001"),
                ),
                event(
                    4,
                    "invoice",
                    "i1",
                    "issued",
                    numbered("i1", "JKT01-202611-7KQ2-00001"),
                ),
                event(
                    5,
                    "credit_note",
                    "c1",
                    "issued",
                    credit("c1", "JKT01-CN-202611-00001"),
                ),
                event(
                    6,
                    "credit_note",
                    "c2",
                    "issued",
                    credit("c2", "JKT01-CN-202611-00001"),
                ),
            ],
            &mut known,
        );
        assert_outcomes(
            &got,
            &[
                park("invoice number JKT01-202611-00001 is already held by i-old in branch JKT01"),
                Outcome::Apply,
                park("invoice number JKT01-202611-7KQ2-00001 is already held by i1"),
                Outcome::Duplicate,
                Outcome::Apply,
                park("credit note number JKT01-CN-202611-00001 is already held by c1"),
            ],
        );
        let prepared = prepare(
            DEVICE,
            &batch(vec![
                event(1, "invoice", "i1", "issued", numbered("i1", "N-2")),
                event(2, "credit_note", "c1", "issued", credit("c1", "N-1")),
            ]),
        )
        .expect("valid");
        assert_eq!(Lookup::of(&prepared).numbers, ["N-1", "N-2"]);
    }

    /// A void names a payment the cloud holds, on the invoice it says; else it is parked.
    #[test]
    fn a_void_needs_its_payment() {
        let void = |id: &str, invoice: &str| json!({"id": id, "invoice_id": invoice, "manager_id": "mgr-rina", "reason": "Salah input", "voided_at": AT});
        let mut known = Known::default();
        known
            .invoices
            .insert("i1".into(), invoice_fingerprint("w1", 99_900));
        let got = outcomes(
            vec![
                event(1, "payment", "p9", "voided", void("p9", "i1")),
                event(2, "payment", "p1", "received", payment("p1", "i1", 99_900)),
                event(3, "payment", "p1", "voided", void("p1", "i2")),
                event(4, "payment", "p1", "voided", void("p1", "i1")),
                event(5, "payment", "p1", "voided", void("p1", "i1")),
            ],
            &mut known,
        );
        assert_outcomes(
            &got,
            &[
                park("payment p9 is unknown in branch JKT01"),
                Outcome::Apply,
                park("void of payment p1 names invoice i2, which the payment is not for"),
                Outcome::Apply,
                Outcome::Apply,
            ],
        );
        // An invoice id may hold `|`: a void naming its prefix names another invoice.
        known
            .payments
            .insert("p2".into(), amount_fingerprint("i1|x", 5));
        let got = outcomes(
            vec![event(1, "payment", "p2", "voided", void("p2", "i1"))],
            &mut known,
        );
        assert_outcomes(&got, &[park("void of payment p2 names invoice i1")]);
        let prepared = prepare(
            DEVICE,
            &batch(vec![event(1, "payment", "p7", "voided", void("p7", "i1"))]),
        )
        .expect("valid");
        assert_eq!(Lookup::of(&prepared).payments, ["p7"]);
        let bad = prepare(
            DEVICE,
            &batch(vec![event(1, "payment", "p7", "voided", void("p8", "i1"))]),
        )
        .expect("a batch");
        assert!(
            bad[0].checked.is_err(),
            "a void of another id than its entity"
        );
    }

    #[test]
    fn lookup_names_created_and_referenced_ids() {
        let prepared = prepare(
            DEVICE,
            &batch(vec![
                event(1, "work_order", "w1", "created", work_order("w1")),
                event(
                    2,
                    "stock_movement",
                    "s1",
                    "dispensed",
                    stock("DISPENSE", -2, Some("w0")),
                ),
                event(3, "payment", "p1", "received", payment("p1", "i0", 5)),
                event(4, "work_order", "bad", "created", json!({})),
            ]),
        )
        .expect("valid");
        let lookup = Lookup::of(&prepared);
        assert_eq!(
            lookup.work_orders,
            ["w0", "w1"],
            "parked events ask for nothing"
        );
        assert_eq!(lookup.stock_movements, ["s1"]);
        assert_eq!(lookup.invoices, ["i0"]);
        assert_eq!(lookup.payments, ["p1"]);
    }
}
