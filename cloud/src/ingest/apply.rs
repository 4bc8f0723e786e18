//! The SQL of ingest: reading what the branch already holds for a batch ([`known`]) and writing a
//! resolved batch ([`write`]): the event log, the projections, the parked events.
//!
//! Invariants:
//! - a batch costs a handful of statements whatever its size: rows are grouped per table and
//!   inserted with `unnest` over one array per column, never row by row;
//! - every projection insert is `ON CONFLICT DO NOTHING`, and stock levels are raised only by the
//!   movements that insert actually wrote (the `RETURNING` of the same statement), so a record
//!   arriving twice, even from two transactions at once, never counts twice;
//! - money rows are only ever inserted (the tables refuse updates and deletes), and each invoice
//!   or credit-note number is claimed once per branch in `document_numbers` (the check is
//!   `validate`'s; the primary key settles a race);
//! - the per-field work-order updates are last-writer-wins by HLC (`status_hlc`, `mechanic_hlc`),
//!   so the order batches from several devices arrive in does not matter; a work order created
//!   in the same batch is inserted with its latest values instead of being updated;
//! - lookups and updates are primary-key probes whatever the planner's statistics say (a
//!   `LATERAL … LIMIT 1` per key, a per-key update function): the tables grow by thousands of
//!   rows a second, faster than autovacuum analyses them, and a plan chosen on stale statistics
//!   would scan the whole branch for every batch;
//! - rows that several pushes of one branch may lock together (stock levels, work orders) are
//!   written in key order, which keeps concurrent pushes from deadlocking in the common case
//!   (the caller retries the rare deadlock anyway).

use std::borrow::Cow;
use std::collections::HashMap;

use sentra_protocol::payload::Payload;
use sqlx::PgConnection;

use super::validate::{Known, Lookup, Outcome, Prepared};

/// Reads the rows of the branch that the batch creates or refers to, in one round trip.
pub async fn known(
    tx: &mut PgConnection,
    branch: &str,
    lookup: &Lookup,
) -> Result<Known, sqlx::Error> {
    let mut known = Known::default();
    if *lookup == Lookup::default() {
        return Ok(known);
    }
    // One `LATERAL … LIMIT 1` probe per id: a primary-key lookup whatever the statistics say.
    // (`id = ANY($2)` lets the planner scan the whole branch when its statistics lag the table.)
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT 'work_order', k.id, '' FROM unnest($2::text[]) AS l(id) CROSS JOIN LATERAL
             (SELECT id FROM work_orders WHERE branch_id = $1 AND id = l.id LIMIT 1) k
         UNION ALL
         SELECT 'stock_movement', k.id, '' FROM unnest($3::text[]) AS l(id) CROSS JOIN LATERAL
             (SELECT id FROM stock_movements WHERE branch_id = $1 AND id = l.id LIMIT 1) k
         UNION ALL
         SELECT 'inspection', k.id, '' FROM unnest($4::text[]) AS l(id) CROSS JOIN LATERAL
             (SELECT id FROM inspections WHERE branch_id = $1 AND id = l.id LIMIT 1) k
         UNION ALL
         SELECT 'invoice', k.id, k.work_order_id || '|' || k.total FROM unnest($5::text[]) AS l(id) CROSS JOIN LATERAL
             (SELECT id, work_order_id, total FROM invoices WHERE branch_id = $1 AND id = l.id LIMIT 1) k
         UNION ALL
         SELECT 'payment', k.id, k.invoice_id || '|' || k.amount FROM unnest($6::text[]) AS l(id) CROSS JOIN LATERAL
             (SELECT id, invoice_id, amount FROM payments WHERE branch_id = $1 AND id = l.id LIMIT 1) k
         UNION ALL
         SELECT 'credit_note', k.id, k.invoice_id || '|' || k.amount FROM unnest($7::text[]) AS l(id) CROSS JOIN LATERAL
             (SELECT id, invoice_id, amount FROM credit_notes WHERE branch_id = $1 AND id = l.id LIMIT 1) k
         UNION ALL
         SELECT 'number', k.number, k.document_id FROM unnest($8::text[]) AS l(number) CROSS JOIN LATERAL
             (SELECT number, document_id FROM document_numbers WHERE branch_id = $1 AND number = l.number LIMIT 1) k
         UNION ALL
         SELECT 'rental', k.booking_id, '' FROM unnest($9::text[]) AS l(id) CROSS JOIN LATERAL
             (SELECT booking_id FROM rentals WHERE branch_id = $1 AND booking_id = l.id LIMIT 1) k
         UNION ALL
         SELECT 'rental_invoice', k.id, k.booking_id || '|' || k.total FROM unnest($10::text[]) AS l(id) CROSS JOIN LATERAL
             (SELECT id, booking_id, total FROM rental_invoices WHERE branch_id = $1 AND id = l.id LIMIT 1) k",
    )
    .bind(branch)
    .bind(&lookup.work_orders)
    .bind(&lookup.stock_movements)
    .bind(&lookup.inspections)
    .bind(&lookup.invoices)
    .bind(&lookup.payments)
    .bind(&lookup.credit_notes)
    .bind(&lookup.numbers)
    .bind(&lookup.rentals)
    .bind(&lookup.rental_invoices)
    .fetch_all(&mut *tx)
    .await?;
    for (table, id, fingerprint) in rows {
        match table.as_str() {
            "work_order" => {
                known.work_orders.insert(id);
            }
            "stock_movement" => {
                known.stock_movements.insert(id);
            }
            "inspection" => {
                known.inspections.insert(id);
            }
            "invoice" => {
                known.invoices.insert(id, fingerprint);
            }
            "payment" => {
                known.payments.insert(id, fingerprint);
            }
            "credit_note" => {
                known.credit_notes.insert(id, fingerprint);
            }
            "number" => {
                known.numbers.insert(id, fingerprint);
            }
            "rental" => {
                known.rentals.insert(id);
            }
            "rental_invoice" => {
                known.rental_invoices.insert(id, fingerprint);
            }
            other => unreachable!("the query above names no table {other:?}"),
        }
    }
    Ok(known)
}

/// Writes a resolved batch: `events` and `outcomes` are parallel.
pub async fn write(
    tx: &mut PgConnection,
    branch: &str,
    device: &str,
    events: &[Prepared],
    outcomes: &[Outcome],
) -> Result<(), sqlx::Error> {
    let mut log = EventRows::default();
    let mut parked = ParkedRows::default();
    let mut rows = Projections::default();
    for (event, outcome) in events.iter().zip(outcomes) {
        match (outcome, &event.checked) {
            (Outcome::Apply, Ok(checked)) => {
                log.push(event, &checked.hlc.to_string());
                rows.push(event, &checked.hlc.to_string(), &checked.payload);
            }
            (Outcome::Duplicate, Ok(checked)) => log.push(event, &checked.hlc.to_string()),
            (Outcome::Park(reason), _) => parked.push(event, reason),
            (Outcome::Apply | Outcome::Duplicate, Err(reason)) => parked.push(event, reason),
        }
    }
    log.write(tx, branch, device).await?;
    rows.write(tx, branch, device).await?;
    parked.write(tx, branch, device).await
}

/// Of `seen` (re-sent events at or below the device's cursor), the first whose sequence number
/// the cloud holds with other content (another stamp, record, operation or payload), or holds
/// nothing under: a fork. A box restored from a backup numbers its new events from the backup's
/// sequence, so "at or below the cursor" alone would take them for duplicates and lose them.
/// Compared as stored: a logged event by its checked stamp, a parked one as it arrived.
pub async fn first_fork(
    tx: &mut PgConnection,
    branch: &str,
    device: &str,
    seen: &[Prepared],
) -> Result<Option<u64>, sqlx::Error> {
    if seen.is_empty() {
        return Ok(None);
    }
    let mut pushed = ParkedRows::default();
    let mut checked_hlc = Vec::with_capacity(seen.len());
    for event in seen {
        pushed.push(event, "");
        checked_hlc.push(match &event.checked {
            Ok(checked) => checked.hlc.to_string(),
            Err(_) => pg_text(&event.raw.hlc).into_owned(),
        });
    }
    let fork: Option<i64> = sqlx::query_scalar(
        "WITH pushed AS (
             SELECT * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                 AS p(seq, hlc, checked_hlc, entity, entity_id, op, payload)
         ), held AS (
             SELECT seq, hlc, entity, entity_id, op, payload FROM events
              WHERE branch_id = $1 AND device_id = $2::uuid AND seq = ANY ($3)
             UNION ALL
             SELECT seq, hlc, entity, entity_id, op, payload FROM parked_events
              WHERE branch_id = $1 AND device_id = $2::uuid AND seq = ANY ($3)
         )
         SELECT min(p.seq) FROM pushed p LEFT JOIN held h ON h.seq = p.seq
          WHERE h.seq IS NULL OR h.hlc NOT IN (p.hlc, p.checked_hlc) OR h.entity <> p.entity
             OR h.entity_id <> p.entity_id OR h.op <> p.op OR h.payload <> p.payload::jsonb",
    )
    .bind(branch)
    .bind(device)
    .bind(&pushed.seq)
    .bind(&pushed.hlc)
    .bind(&checked_hlc)
    .bind(&pushed.entity)
    .bind(&pushed.entity_id)
    .bind(&pushed.op)
    .bind(&pushed.payload)
    .fetch_one(tx)
    .await?;
    Ok(fork.and_then(|seq| u64::try_from(seq).ok()))
}

/// Text PostgreSQL can store: NUL is the one character its text type cannot hold. Only parked
/// events can carry one (the checks refuse it), and they are kept as close to the original as
/// that allows.
fn pg_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn pg_json(json: &str) -> Cow<'_, str> {
    if super::validate::jsonb_refusal(json).is_some() {
        // jsonb refuses it as it is (an unpaired surrogate escape, a number out of range): kept
        // as a JSON string holding the text as sent.
        return Cow::Owned(serde_json::Value::String(json.to_owned()).to_string());
    }
    if json.contains("\\u0000") {
        Cow::Owned(json.replace("\\u0000", "\\ufffd"))
    } else {
        Cow::Borrowed(json)
    }
}

fn seq(event: &Prepared) -> i64 {
    i64::try_from(event.raw.seq).unwrap_or(i64::MAX)
}

#[derive(Default)]
struct EventRows {
    seq: Vec<i64>,
    hlc: Vec<String>,
    schema_version: Vec<i32>,
    entity: Vec<String>,
    entity_id: Vec<String>,
    op: Vec<String>,
    payload: Vec<String>,
}

impl EventRows {
    fn push(&mut self, event: &Prepared, hlc: &str) {
        self.seq.push(seq(event));
        self.hlc.push(hlc.to_owned());
        self.schema_version
            .push(i32::try_from(event.raw.schema_version).unwrap_or(i32::MAX));
        self.entity.push(pg_text(&event.raw.entity).into_owned());
        self.entity_id.push(event.raw.entity_id.clone());
        self.op.push(event.raw.op.clone());
        self.payload.push(event.payload_text().to_owned());
    }

    async fn write(
        &self,
        tx: &mut PgConnection,
        branch: &str,
        device: &str,
    ) -> Result<(), sqlx::Error> {
        if self.seq.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO events (branch_id, device_id, seq, hlc, schema_version, entity, entity_id, op, payload)
             SELECT $1, $2::uuid, e.seq, e.hlc, e.schema_version, e.entity, e.entity_id, e.op, e.payload::jsonb
             FROM unnest($3::bigint[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[])
                  AS e(seq, hlc, schema_version, entity, entity_id, op, payload)",
        )
        .bind(branch)
        .bind(device)
        .bind(&self.seq)
        .bind(&self.hlc)
        .bind(&self.schema_version)
        .bind(&self.entity)
        .bind(&self.entity_id)
        .bind(&self.op)
        .bind(&self.payload)
        .execute(tx)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct ParkedRows {
    seq: Vec<i64>,
    hlc: Vec<String>,
    schema_version: Vec<i32>,
    entity: Vec<String>,
    entity_id: Vec<String>,
    op: Vec<String>,
    payload: Vec<String>,
    reason: Vec<String>,
}

impl ParkedRows {
    fn push(&mut self, event: &Prepared, reason: &str) {
        self.seq.push(seq(event));
        self.hlc.push(pg_text(&event.raw.hlc).into_owned());
        self.schema_version
            .push(i32::try_from(event.raw.schema_version).unwrap_or(i32::MAX));
        self.entity.push(pg_text(&event.raw.entity).into_owned());
        self.entity_id
            .push(pg_text(&event.raw.entity_id).into_owned());
        self.op.push(pg_text(&event.raw.op).into_owned());
        self.payload
            .push(pg_json(event.payload_text()).into_owned());
        self.reason.push(pg_text(reason).into_owned());
    }

    async fn write(
        &self,
        tx: &mut PgConnection,
        branch: &str,
        device: &str,
    ) -> Result<(), sqlx::Error> {
        if self.seq.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO parked_events (branch_id, device_id, seq, hlc, schema_version, entity, entity_id, op, payload, reason)
             SELECT $1, $2::uuid, e.seq, e.hlc, e.schema_version, e.entity, e.entity_id, e.op, e.payload::jsonb, e.reason
             FROM unnest($3::bigint[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
                  AS e(seq, hlc, schema_version, entity, entity_id, op, payload, reason)",
        )
        .bind(branch)
        .bind(device)
        .bind(&self.seq)
        .bind(&self.hlc)
        .bind(&self.schema_version)
        .bind(&self.entity)
        .bind(&self.entity_id)
        .bind(&self.op)
        .bind(&self.payload)
        .bind(&self.reason)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// The projection rows of a batch's applied events, one set of columns per statement.
#[derive(Default)]
struct Projections {
    work_orders: WorkOrderRows,
    status: FieldRows,
    mechanic: FieldRows,
    stock: StockRows,
    invoices: InvoiceRows,
    payments: PaymentRows,
    credit_notes: CreditNoteRows,
    inspections: InspectionRows,
    numbers: NumberRows,
    rentals: super::rentals::Rows,
    shifts: super::shifts::Rows,
}

/// The numbers applied invoices and credit notes claim (`document_numbers`).
#[derive(Default)]
struct NumberRows {
    number: Vec<String>,
    kind: Vec<&'static str>,
    document_id: Vec<String>,
}

#[derive(Default)]
struct WorkOrderRows {
    id: Vec<String>,
    customer_name: Vec<String>,
    customer_phone: Vec<Option<String>>,
    vehicle_plate: Vec<String>,
    vehicle_id: Vec<Option<String>>,
    customer_id: Vec<Option<String>>,
    complaint: Vec<String>,
    mechanic_id: Vec<Option<String>>,
    mechanic_hlc: Vec<String>,
    status: Vec<String>,
    status_hlc: Vec<String>,
    created_at: Vec<String>,
    updated_at: Vec<String>,
    seq: Vec<i64>,
}

/// One work-order field set by events: per work order, the latest value by HLC.
#[derive(Default)]
struct FieldRows {
    latest: HashMap<String, FieldValue>,
}

struct FieldValue {
    value: String,
    hlc: String,
    at: String,
}

#[derive(Default)]
struct StockRows {
    id: Vec<String>,
    sku: Vec<String>,
    delta: Vec<i64>,
    reason: Vec<String>,
    work_order_id: Vec<Option<String>>,
    line_id: Vec<Option<String>>,
    unit_price: Vec<Option<i64>>,
    reference: Vec<Option<String>>,
    at: Vec<String>,
    seq: Vec<i64>,
    adjustment: Vec<Option<String>>,
    note: Vec<Option<String>>,
    count_id: Vec<Option<String>>,
}

#[derive(Default)]
struct InvoiceRows {
    id: Vec<String>,
    number: Vec<String>,
    work_order_id: Vec<String>,
    lines: Vec<String>,
    subtotal: Vec<i64>,
    tax: Vec<i64>,
    total: Vec<i64>,
    issued_at: Vec<String>,
    seq: Vec<i64>,
}

#[derive(Default)]
struct PaymentRows {
    id: Vec<String>,
    invoice_id: Vec<String>,
    method: Vec<String>,
    amount: Vec<i64>,
    reference: Vec<Option<String>>,
    received_at: Vec<String>,
    seq: Vec<i64>,
}

#[derive(Default)]
struct CreditNoteRows {
    id: Vec<String>,
    number: Vec<String>,
    invoice_id: Vec<String>,
    amount: Vec<i64>,
    reason: Vec<String>,
    issued_at: Vec<String>,
    seq: Vec<i64>,
}

#[derive(Default)]
struct InspectionRows {
    id: Vec<String>,
    asset_id: Vec<String>,
    kind: Vec<String>,
    chain_index: Vec<i64>,
    checklist: Vec<String>,
    photos: Vec<String>,
    signature: Vec<String>,
    odometer_km: Vec<Option<i64>>,
    fuel_percent: Vec<Option<i64>>,
    remarks: Vec<Option<String>>,
    inspector: Vec<String>,
    created_at: Vec<String>,
    prev_hash: Vec<Option<String>>,
    tamper_proof_hash: Vec<String>,
    seq: Vec<i64>,
}

impl Projections {
    fn push(&mut self, event: &Prepared, hlc: &str, payload: &Payload) {
        let entity_id = &event.raw.entity_id;
        match payload {
            Payload::WorkOrderCreated(w) => {
                let rows = &mut self.work_orders;
                rows.id.push(w.id.clone());
                rows.customer_name.push(w.customer_name.clone());
                rows.customer_phone.push(w.customer_phone.clone());
                rows.vehicle_plate.push(w.vehicle_plate.clone());
                rows.vehicle_id.push(w.vehicle_id.clone());
                rows.customer_id.push(w.customer_id.clone());
                rows.complaint.push(w.complaint.clone());
                rows.mechanic_id.push(w.mechanic_id.clone());
                rows.mechanic_hlc.push(hlc.to_owned());
                rows.status.push(w.status.clone());
                rows.status_hlc.push(hlc.to_owned());
                rows.created_at.push(w.created_at.clone());
                rows.updated_at.push(w.created_at.clone());
                rows.seq.push(seq(event));
            }
            Payload::WorkOrderStatusChanged(c) => {
                self.status.push(entity_id, &c.to, hlc, &c.at);
            }
            Payload::WorkOrderAssigned(a) => {
                self.mechanic.push(entity_id, &a.mechanic_id, hlc, &a.at);
            }
            Payload::StockMoved(m) => {
                let rows = &mut self.stock;
                rows.id.push(entity_id.clone());
                rows.sku.push(m.sku.clone());
                rows.delta.push(m.delta);
                rows.reason.push(m.reason.clone());
                rows.work_order_id.push(m.work_order_id.clone());
                rows.line_id.push(m.line_id.clone());
                rows.unit_price.push(m.unit_price);
                rows.reference.push(m.reference.clone());
                rows.at.push(m.at.clone());
                rows.seq.push(seq(event));
                rows.adjustment.push(m.adjustment.clone());
                rows.note.push(m.note.clone());
                rows.count_id.push(m.count_id.clone());
            }
            Payload::InvoiceIssued(i) => {
                let rows = &mut self.invoices;
                rows.id.push(i.id.clone());
                rows.number.push(i.number.clone());
                rows.work_order_id.push(i.work_order_id.clone());
                rows.lines
                    .push(serde_json::to_string(&i.lines).unwrap_or_else(|_| "[]".to_owned()));
                rows.subtotal.push(i.subtotal);
                rows.tax.push(i.tax);
                rows.total.push(i.total);
                rows.issued_at.push(i.issued_at.clone());
                rows.seq.push(seq(event));
                self.numbers.number.push(i.number.clone());
                self.numbers.kind.push("invoice");
                self.numbers.document_id.push(i.id.clone());
                // Issuing the invoice is what makes the work order INVOICED at the edge.
                self.status
                    .push(&i.work_order_id, "INVOICED", hlc, &i.issued_at);
            }
            Payload::PaymentReceived(pay) => {
                let rows = &mut self.payments;
                rows.id.push(pay.id.clone());
                rows.invoice_id.push(pay.invoice_id.clone());
                rows.method.push(pay.method.clone());
                rows.amount.push(pay.amount);
                rows.reference.push(pay.reference.clone());
                rows.received_at.push(pay.received_at.clone());
                rows.seq.push(seq(event));
            }
            Payload::CreditNoteIssued(c) => {
                let rows = &mut self.credit_notes;
                rows.id.push(c.id.clone());
                rows.number.push(c.number.clone());
                rows.invoice_id.push(c.invoice_id.clone());
                rows.amount.push(c.amount);
                rows.reason.push(c.reason.clone());
                rows.issued_at.push(c.issued_at.clone());
                rows.seq.push(seq(event));
                self.numbers.number.push(c.number.clone());
                self.numbers.kind.push("credit_note");
                self.numbers.document_id.push(c.id.clone());
            }
            Payload::InspectionRecorded(i) => {
                let rows = &mut self.inspections;
                rows.id.push(i.id.clone());
                rows.asset_id.push(i.asset_id.clone());
                rows.kind.push(i.kind.clone());
                rows.chain_index.push(i.chain_index);
                rows.checklist.push(i.checklist.to_string());
                rows.photos
                    .push(serde_json::to_string(&i.photos).unwrap_or_else(|_| "[]".to_owned()));
                rows.signature.push(i.signature.to_string());
                rows.odometer_km.push(i.odometer_km);
                rows.fuel_percent.push(i.fuel_percent);
                rows.remarks.push(i.remarks.clone());
                rows.inspector.push(i.inspector.clone());
                rows.created_at.push(i.created_at.clone());
                rows.prev_hash.push(i.prev_hash.clone());
                rows.tamper_proof_hash.push(i.tamper_proof_hash.clone());
                rows.seq.push(seq(event));
            }
            // Print jobs are the box's own business: kept in the event log only.
            // Merged by `shared::merge_events` before this runs.
            // Bookings are decided by `booking::offline::decide` after this runs.
            Payload::RentalHandedOver(r) => self.rentals.handed_over(event, r),
            Payload::RentalReturned(r) => self.rentals.returned(r),
            Payload::RentalInvoiceIssued(i) => {
                self.rentals.invoice(event, i);
                self.numbers.number.push(i.number.clone());
                self.numbers.kind.push("invoice");
                self.numbers.document_id.push(i.id.clone());
            }
            Payload::RentalPaymentReceived(pay) => self.rentals.payment(event, pay),
            Payload::ShiftOpened(_)
            | Payload::ShiftClosed(_)
            | Payload::DayClosed(_)
            | Payload::DayReopened(_)
            | Payload::PaymentVoided(_) => self.shifts.push(event, payload),
            // Completed by `booking::offline::decide` after this runs.
            Payload::PrintJobQueued(_)
            | Payload::RecordFieldsSet(_)
            | Payload::DocumentChanged(_)
            | Payload::BookingRequested(_)
            | Payload::BookingCancelled(_)
            | Payload::BookingCompleted(_) => {}
        }
    }

    async fn write(
        mut self,
        tx: &mut PgConnection,
        branch: &str,
        device: &str,
    ) -> Result<(), sqlx::Error> {
        // Work orders created in this batch are inserted with their latest status and mechanic;
        // only the others are updated afterwards.
        self.status
            .fold_into(&mut self.work_orders, |rows, index, latest| {
                if rows.status_hlc[index] < latest.hlc {
                    rows.status[index] = latest.value;
                    rows.status_hlc[index] = latest.hlc;
                    rows.updated_at[index] = latest.at;
                }
            });
        self.mechanic
            .fold_into(&mut self.work_orders, |rows, index, latest| {
                if rows.mechanic_hlc[index] < latest.hlc {
                    rows.mechanic_id[index] = Some(latest.value);
                    rows.mechanic_hlc[index] = latest.hlc;
                    rows.updated_at[index] = latest.at;
                }
            });
        let w = &self.work_orders;
        if !w.id.is_empty() {
            sqlx::query(
                "INSERT INTO work_orders (branch_id, id, customer_name, customer_phone, vehicle_plate, complaint,
                                          mechanic_id, mechanic_hlc, status, status_hlc, created_at, updated_at, device_id, seq,
                                          vehicle_id, customer_id)
                 SELECT $1, w.id, w.customer_name, w.customer_phone, w.vehicle_plate, w.complaint,
                        w.mechanic_id, w.mechanic_hlc, w.status, w.status_hlc, w.created_at::timestamptz,
                        w.updated_at::timestamptz, $2::uuid, w.seq, w.vehicle_id, w.customer_id
                 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                             $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::text[], $16::text[])
                      AS w(id, customer_name, customer_phone, vehicle_plate, complaint, mechanic_id, mechanic_hlc,
                           status, status_hlc, created_at, updated_at, seq, vehicle_id, customer_id)
                 ORDER BY w.id
                 ON CONFLICT (branch_id, id) DO NOTHING",
            )
            .bind(branch)
            .bind(device)
            .bind(&w.id)
            .bind(&w.customer_name)
            .bind(&w.customer_phone)
            .bind(&w.vehicle_plate)
            .bind(&w.complaint)
            .bind(&w.mechanic_id)
            .bind(&w.mechanic_hlc)
            .bind(&w.status)
            .bind(&w.status_hlc)
            .bind(&w.created_at)
            .bind(&w.updated_at)
            .bind(&w.seq)
            .bind(&w.vehicle_id)
            .bind(&w.customer_id)
            .execute(&mut *tx)
            .await?;
        }
        self.status.write(tx, branch, "status").await?;
        self.mechanic.write(tx, branch, "mechanic").await?;
        let s = &self.stock;
        if !s.id.is_empty() {
            sqlx::query(
                "WITH moved AS (
                     INSERT INTO stock_movements (branch_id, id, sku, delta, reason, work_order_id, line_id,
                                                  unit_price, reference, moved_at, device_id, seq,
                                                  adjustment, note, count_id)
                     SELECT $1, m.id, m.sku, m.delta, m.reason, m.work_order_id, m.line_id,
                            m.unit_price, m.reference, m.at::timestamptz, $2::uuid, m.seq,
                            m.adjustment, m.note, m.count_id
                     FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[],
                                 $9::bigint[], $10::text[], $11::text[], $12::bigint[],
                                 $13::text[], $14::text[], $15::text[])
                          AS m(id, sku, delta, reason, work_order_id, line_id, unit_price, reference, at, seq,
                               adjustment, note, count_id)
                     ON CONFLICT (branch_id, id) DO NOTHING
                     RETURNING sku, delta
                 )
                 INSERT INTO stock_levels (branch_id, sku, on_hand)
                 SELECT $1, sku, sum(delta)::bigint FROM moved GROUP BY sku ORDER BY sku
                 ON CONFLICT (branch_id, sku) DO UPDATE
                 SET on_hand = stock_levels.on_hand + excluded.on_hand, updated_at = now()",
            )
            .bind(branch)
            .bind(device)
            .bind(&s.id)
            .bind(&s.sku)
            .bind(&s.delta)
            .bind(&s.reason)
            .bind(&s.work_order_id)
            .bind(&s.line_id)
            .bind(&s.unit_price)
            .bind(&s.reference)
            .bind(&s.at)
            .bind(&s.seq)
            .bind(&s.adjustment)
            .bind(&s.note)
            .bind(&s.count_id)
            .execute(&mut *tx)
            .await?;
        }
        let i = &self.invoices;
        if !i.id.is_empty() {
            sqlx::query(
                "INSERT INTO invoices (branch_id, id, number, work_order_id, lines, subtotal, tax, total, issued_at, device_id, seq)
                 SELECT $1, i.id, i.number, i.work_order_id, i.lines::jsonb, i.subtotal, i.tax, i.total,
                        i.issued_at::timestamptz, $2::uuid, i.seq
                 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[],
                             $10::text[], $11::bigint[])
                      AS i(id, number, work_order_id, lines, subtotal, tax, total, issued_at, seq)
                 ON CONFLICT (branch_id, id) DO NOTHING",
            )
            .bind(branch)
            .bind(device)
            .bind(&i.id)
            .bind(&i.number)
            .bind(&i.work_order_id)
            .bind(&i.lines)
            .bind(&i.subtotal)
            .bind(&i.tax)
            .bind(&i.total)
            .bind(&i.issued_at)
            .bind(&i.seq)
            .execute(&mut *tx)
            .await?;
        }
        let p = &self.payments;
        if !p.id.is_empty() {
            sqlx::query(
                "INSERT INTO payments (branch_id, id, invoice_id, method, amount, reference, received_at, device_id, seq)
                 SELECT $1, p.id, p.invoice_id, p.method, p.amount, p.reference, p.received_at::timestamptz, $2::uuid, p.seq
                 FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[])
                      AS p(id, invoice_id, method, amount, reference, received_at, seq)
                 ON CONFLICT (branch_id, id) DO NOTHING",
            )
            .bind(branch)
            .bind(device)
            .bind(&p.id)
            .bind(&p.invoice_id)
            .bind(&p.method)
            .bind(&p.amount)
            .bind(&p.reference)
            .bind(&p.received_at)
            .bind(&p.seq)
            .execute(&mut *tx)
            .await?;
        }
        let c = &self.credit_notes;
        if !c.id.is_empty() {
            sqlx::query(
                "INSERT INTO credit_notes (branch_id, id, number, invoice_id, amount, reason, issued_at, device_id, seq)
                 SELECT $1, c.id, c.number, c.invoice_id, c.amount, c.reason, c.issued_at::timestamptz, $2::uuid, c.seq
                 FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[])
                      AS c(id, number, invoice_id, amount, reason, issued_at, seq)
                 ON CONFLICT (branch_id, id) DO NOTHING",
            )
            .bind(branch)
            .bind(device)
            .bind(&c.id)
            .bind(&c.number)
            .bind(&c.invoice_id)
            .bind(&c.amount)
            .bind(&c.reason)
            .bind(&c.issued_at)
            .bind(&c.seq)
            .execute(&mut *tx)
            .await?;
        }
        // No ON CONFLICT: a number another push of the branch claimed since `known` read it
        // fails this transaction, and its retry parks the document (`ingest::is_transient`).
        let d = &self.numbers;
        if !d.number.is_empty() {
            sqlx::query(
                "INSERT INTO document_numbers (branch_id, number, kind, document_id)
                 SELECT $1, d.number, d.kind, d.document_id
                 FROM unnest($2::text[], $3::text[], $4::text[]) AS d(number, kind, document_id)",
            )
            .bind(branch)
            .bind(&d.number)
            .bind(&d.kind)
            .bind(&d.document_id)
            .execute(&mut *tx)
            .await?;
        }
        let n = &self.inspections;
        if !n.id.is_empty() {
            sqlx::query(
                "INSERT INTO inspections (branch_id, id, asset_id, kind, chain_index, checklist, photos, signature,
                                          odometer_km, fuel_percent, remarks, inspector, created_at, prev_hash,
                                          tamper_proof_hash, device_id, seq)
                 SELECT $1, n.id, n.asset_id, n.kind, n.chain_index, n.checklist::jsonb, n.photos::jsonb, n.signature::jsonb,
                        n.odometer_km, n.fuel_percent, n.remarks, n.inspector, n.created_at::timestamptz, n.prev_hash,
                        n.tamper_proof_hash, $2::uuid, n.seq
                 FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[],
                             $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[],
                             $16::text[], $17::bigint[])
                      AS n(id, asset_id, kind, chain_index, checklist, photos, signature, odometer_km, fuel_percent,
                           remarks, inspector, created_at, prev_hash, tamper_proof_hash, seq)
                 ON CONFLICT (branch_id, id) DO NOTHING",
            )
            .bind(branch)
            .bind(device)
            .bind(&n.id)
            .bind(&n.asset_id)
            .bind(&n.kind)
            .bind(&n.chain_index)
            .bind(&n.checklist)
            .bind(&n.photos)
            .bind(&n.signature)
            .bind(&n.odometer_km)
            .bind(&n.fuel_percent)
            .bind(&n.remarks)
            .bind(&n.inspector)
            .bind(&n.created_at)
            .bind(&n.prev_hash)
            .bind(&n.tamper_proof_hash)
            .bind(&n.seq)
            .execute(&mut *tx)
            .await?;
        }
        self.rentals.write(tx, branch, device).await?;
        self.shifts.write(tx, branch, device).await
    }
}

impl FieldRows {
    fn push(&mut self, id: &str, value: &str, hlc: &str, at: &str) {
        let newer = self
            .latest
            .get(id)
            .is_none_or(|known| known.hlc.as_str() < hlc);
        if newer {
            self.latest.insert(
                id.to_owned(),
                FieldValue {
                    value: value.to_owned(),
                    hlc: hlc.to_owned(),
                    at: at.to_owned(),
                },
            );
        }
    }

    /// Folds the values of work orders this batch creates into their rows (`set` writes one
    /// into a row when it is newer), leaving only the updates of work orders created before.
    fn fold_into(
        &mut self,
        rows: &mut WorkOrderRows,
        mut set: impl FnMut(&mut WorkOrderRows, usize, FieldValue),
    ) {
        for index in 0..rows.id.len() {
            if let Some(value) = self.latest.remove(&rows.id[index]) {
                set(rows, index, value);
            }
        }
    }

    /// Applies the remaining updates through `apply_work_order_field` (one primary-key update
    /// per work order, last writer by HLC wins).
    async fn write(
        &self,
        tx: &mut PgConnection,
        branch: &str,
        field: &str,
    ) -> Result<(), sqlx::Error> {
        if self.latest.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(self.latest.len());
        let mut values = Vec::with_capacity(self.latest.len());
        let mut hlcs = Vec::with_capacity(self.latest.len());
        let mut ats = Vec::with_capacity(self.latest.len());
        for (id, value) in &self.latest {
            ids.push(id.as_str());
            values.push(value.value.as_str());
            hlcs.push(value.hlc.as_str());
            ats.push(value.at.as_str());
        }
        sqlx::query(
            "SELECT apply_work_order_field($1, $2, $3::text[], $4::text[], $5::text[], $6::text[]::timestamptz[])",
        )
        .bind(branch)
        .bind(field)
        .bind(&ids)
        .bind(&values)
        .bind(&hlcs)
        .bind(&ats)
        .execute(tx)
        .await?;
        Ok(())
    }
}
