//! The change each outbox event carries, typed per `(entity, op)`. The edge writes exactly these;
//! the cloud parses with [`Payload::parse`] and parks what does not parse or validate, with the
//! reason. Unknown fields are ignored (a newer edge may add some); a new shape is a new
//! `schema_version`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::EntityKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOrderCreated {
    pub id: String,
    pub customer_name: String,
    pub customer_phone: Option<String>,
    pub vehicle_plate: String,
    pub complaint: String,
    pub mechanic_id: Option<String>,
    pub status: String,
    pub created_at: String,
    /// The vehicle record (`vehicle` fields) the work order is for; absent from boxes older
    /// than the customer and vehicle records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_id: Option<String>,
    /// The customer record the work order is for; absent as `vehicle_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOrderStatusChanged {
    pub from: String,
    pub to: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOrderAssigned {
    pub mechanic_id: String,
    pub at: String,
}

/// A stock movement: a delta, never an absolute level, so changes from anywhere add up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockMoved {
    pub sku: String,
    pub delta: i64,
    /// RECEIPT, DISPENSE or ADJUSTMENT.
    pub reason: String,
    pub work_order_id: Option<String>,
    /// For a dispense: the work order's part line and its unit price.
    pub line_id: Option<String>,
    pub unit_price: Option<i64>,
    pub reference: Option<String>,
    pub at: String,
    /// For an ADJUSTMENT: why (`StockAdjustment`: COUNT, DAMAGE, RETURN_TO_SUPPLIER,
    /// WORK_ORDER_RETURN). Absent on other movements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustment: Option<String>,
    /// The storekeeper's note on an adjustment (at most `ADJUSTMENT_NOTE_MAX` characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The cycle count a COUNT adjustment applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    /// `labour` or `part`.
    pub kind: String,
    pub description: String,
    pub sku: Option<String>,
    pub qty: i64,
    pub unit_price: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceIssued {
    pub id: String,
    pub number: String,
    pub work_order_id: String,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub issued_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceived {
    pub id: String,
    pub invoice_id: String,
    /// CASH, EDC or QRIS.
    pub method: String,
    pub amount: i64,
    pub reference: Option<String>,
    pub received_at: String,
}

/// A payment taken back the day it was received, with a manager's approval (`payment:voided`,
/// entity id = the payment's id). It no longer counts towards its invoice, its shift or its day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentVoided {
    pub id: String,
    pub invoice_id: String,
    /// The staff id of the manager who approved it.
    pub manager_id: String,
    pub reason: String,
    pub voided_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteIssued {
    pub id: String,
    pub number: String,
    pub invoice_id: String,
    pub amount: i64,
    pub reason: String,
    pub issued_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionRecorded {
    pub id: String,
    pub asset_id: String,
    /// HANDOVER or RETURN.
    pub kind: String,
    pub chain_index: i64,
    pub checklist: serde_json::Value,
    pub photos: Vec<String>,
    pub signature: serde_json::Value,
    pub odometer_km: Option<i64>,
    pub fuel_percent: Option<i64>,
    pub remarks: Option<String>,
    pub inspector: String,
    pub created_at: String,
    pub prev_hash: Option<String>,
    pub tamper_proof_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintJobQueued {
    pub id: String,
    pub document: String,
    pub ref_id: String,
}

/// Fields of a shared record (customer, vehicle) set by one edit. The event's HLC stamps every
/// field; the receiver keeps, per field, the value with the later stamp (see
/// [`crate::record`] for the fields and their rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFieldsSet {
    pub id: String,
    pub fields: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Automerge changes to one shared document (see [`crate::doc`]), base64 of
/// `AutoCommit::save_after` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentChanged {
    /// `work_order` (notes) or `inspection` (remarks).
    pub record: String,
    pub record_id: String,
    pub changes: String,
}

/// A booking taken at the counter while the cloud could not be asked (`TENTATIVE` at the edge).
/// The cloud tries the hold through its booking path when it ingests this and answers with a
/// [`crate::sync::BookingDecision`] in the branch's change log. `idempotency_key` is the cloud's
/// `Idempotency-Key` for the device: an online attempt that timed out and this event, or the
/// event sent twice, never make two holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRequested {
    pub id: String,
    pub asset_id: String,
    pub sku: String,
    /// First rental day, `YYYY-MM-DD`.
    pub from: String,
    /// Last rental day (included), `YYYY-MM-DD`.
    pub to: String,
    pub customer: String,
    /// platinum, gold, silver or basic.
    pub tier: String,
    pub idempotency_key: String,
    pub requested_at: String,
}

/// A booking cancelled at the counter while the cloud could not be asked. The cloud finds its
/// booking by the device and `idempotency_key` (the key the hold or the `booking:requested`
/// event carried; the outbox's order puts the request first) and cancels it if it is still held
/// or confirmed; otherwise it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingCancelled {
    pub id: String,
    pub idempotency_key: String,
    pub cancelled_at: String,
}

/// A booking whose asset came back at the counter (`COMPLETED` at the branch at once). The cloud
/// completes its booking found by the device and `idempotency_key`, if it is confirmed, through
/// its completion path, with no charges: the counter settled them through the rental invoice,
/// so a gateway pre-authorisation behind the booking is released whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingCompleted {
    pub id: String,
    pub idempotency_key: String,
    /// When the asset came back, RFC 3339 with the branch's offset (its day is the return day).
    pub returned_at: String,
}

/// A rental handed over at the counter (entity `rental`, id = the booking's): the agreement, the
/// tariff as agreed, and the handover inspection it is tied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RentalHandedOver {
    pub booking_id: String,
    pub agreement_number: String,
    pub asset_id: String,
    pub sku: String,
    pub customer: String,
    /// First and last rental day (included), `YYYY-MM-DD`.
    pub from: String,
    pub to: String,
    pub daily_rate: i64,
    pub deposit: i64,
    pub late_fee_per_day: i64,
    pub inspection_id: String,
    pub inspection_hash: String,
    pub photo_count: i64,
    pub handed_over_at: String,
}

/// A rental returned at the counter: the return inspection, the late days, and how the deposit
/// settled the rental invoice (`deposit_applied` + `paid` − `refunded` moves; the money rows are
/// `rental_payment` events of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RentalReturned {
    pub booking_id: String,
    pub inspection_id: String,
    pub inspection_hash: String,
    pub photo_count: i64,
    pub returned_at: String,
    /// The return's day in the branch's time zone, `YYYY-MM-DD`.
    pub return_day: String,
    pub late_days: i64,
    pub invoice_id: String,
    pub deposit_applied: i64,
    pub paid: i64,
    pub refunded: i64,
}

/// A rental's invoice: numbered in the branch's invoice series, lines `rental`, `late_fee` and
/// `damage`, PPN as every invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RentalInvoiceIssued {
    pub id: String,
    pub number: String,
    pub booking_id: String,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub issued_at: String,
}

/// Money a rental moved (see [`crate::rental::RentalMoney`]): signed, so sums by method are what
/// the drawer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RentalPaymentReceived {
    pub id: String,
    pub booking_id: String,
    /// The rental invoice it settles; none for a deposit (taken before the invoice exists).
    pub invoice_id: Option<String>,
    /// DEPOSIT, PAYMENT or REFUND.
    pub kind: String,
    /// CASH, EDC or QRIS.
    pub method: String,
    /// Rupiah: positive in, negative (a refund) out.
    pub amount: i64,
    pub reference: Option<String>,
    pub received_at: String,
}

/// A cashier's shift opened (entity `shift`, id = the shift's): who, on which device, with
/// what float, on which branch day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftOpened {
    pub id: String,
    pub staff_id: String,
    pub device_id: String,
    /// The branch day (its time zone), `YYYY-MM-DD`.
    pub day: String,
    pub opening_float: i64,
    pub opened_at: String,
}

/// A shift closed: what the box expected in the drawer (float + cash in), what was counted, the
/// difference and its reason (mandatory when not zero), and the totals by method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftClosed {
    pub id: String,
    pub staff_id: String,
    pub device_id: String,
    pub day: String,
    pub totals: crate::staff::MethodTotals,
    pub expected_cash: i64,
    pub counted_cash: i64,
    pub difference: i64,
    pub reason: Option<String>,
    pub closed_at: String,
}

/// The branch day closed by a manager once every shift was (entity `branch_day`, id = the day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayClosed {
    pub day: String,
    /// The manager who closed it (acting or approving).
    pub manager_id: String,
    pub shifts: i64,
    pub totals: crate::staff::MethodTotals,
    pub expected_cash: i64,
    pub counted_cash: i64,
    pub difference: i64,
    pub reason: Option<String>,
    pub closed_at: String,
}

/// A closed day opened again by a manager: it takes payments until closed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayReopened {
    pub day: String,
    pub manager_id: String,
    pub reason: String,
    pub reopened_at: String,
}

/// The cloud `Idempotency-Key` of the edge booking `id` (online attempt and offline event alike).
pub fn booking_idempotency_key(id: &str) -> String {
    format!("edge-booking-{id}")
}

/// Every payload this schema version knows.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    WorkOrderCreated(WorkOrderCreated),
    WorkOrderStatusChanged(WorkOrderStatusChanged),
    WorkOrderAssigned(WorkOrderAssigned),
    StockMoved(StockMoved),
    InvoiceIssued(InvoiceIssued),
    PaymentReceived(PaymentReceived),
    PaymentVoided(PaymentVoided),
    CreditNoteIssued(CreditNoteIssued),
    InspectionRecorded(InspectionRecorded),
    PrintJobQueued(PrintJobQueued),
    RecordFieldsSet(RecordFieldsSet),
    DocumentChanged(DocumentChanged),
    BookingRequested(BookingRequested),
    BookingCancelled(BookingCancelled),
    BookingCompleted(BookingCompleted),
    RentalHandedOver(RentalHandedOver),
    RentalReturned(RentalReturned),
    RentalInvoiceIssued(RentalInvoiceIssued),
    RentalPaymentReceived(RentalPaymentReceived),
    ShiftOpened(ShiftOpened),
    ShiftClosed(ShiftClosed),
    DayClosed(DayClosed),
    DayReopened(DayReopened),
}

/// The op names, per entity.
pub mod op {
    pub const CREATED: &str = "created";
    pub const STATUS_CHANGED: &str = "status_changed";
    pub const ASSIGNED: &str = "assigned";
    pub const DISPENSED: &str = "dispensed";
    pub const RECEIVED: &str = "received";
    pub const ISSUED: &str = "issued";
    pub const RECORDED: &str = "recorded";
    pub const QUEUED: &str = "queued";
    pub const FIELDS_SET: &str = "fields_set";
    pub const CHANGED: &str = "changed";
    pub const REQUESTED: &str = "requested";
    pub const CANCELLED: &str = "cancelled";
    pub const COMPLETED: &str = "completed";
    pub const HANDED_OVER: &str = "handed_over";
    pub const RETURNED: &str = "returned";
    pub const ADJUSTED: &str = "adjusted";
    pub const OPENED: &str = "opened";
    pub const CLOSED: &str = "closed";
    pub const REOPENED: &str = "reopened";
    pub const VOIDED: &str = "voided";
}

/// Where a payload is read from: a parsed JSON value (the edge's own events), or the JSON text as
/// it arrived (the cloud's ingest: parsed once, straight into its type, no tree in between).
trait Source: Copy {
    fn typed<T: DeserializeOwned>(self) -> Result<T, String>;
}

impl Source for &serde_json::Value {
    fn typed<T: DeserializeOwned>(self) -> Result<T, String> {
        T::deserialize(self).map_err(|e| format!("payload: {e}"))
    }
}

impl Source for &str {
    fn typed<T: DeserializeOwned>(self) -> Result<T, String> {
        serde_json::from_str(self).map_err(|e| format!("payload: {e}"))
    }
}

impl Payload {
    /// Parse an event's payload by its entity and op. The error says what is wrong.
    pub fn parse(entity: EntityKind, op: &str, v: &serde_json::Value) -> Result<Payload, String> {
        Self::parse_from(entity, op, v)
    }

    /// [`Payload::parse`] of the payload's JSON text. A key given twice is refused here (a value
    /// tree would keep the last one silently).
    pub fn parse_text(entity: EntityKind, op: &str, json: &str) -> Result<Payload, String> {
        Self::parse_from(entity, op, json)
    }

    fn parse_from(entity: EntityKind, op: &str, v: impl Source) -> Result<Payload, String> {
        use EntityKind as E;
        Ok(match (entity, op) {
            (E::WorkOrder, op::CREATED) => Payload::WorkOrderCreated(v.typed()?),
            (E::WorkOrder, op::STATUS_CHANGED) => Payload::WorkOrderStatusChanged(v.typed()?),
            (E::WorkOrder, op::ASSIGNED) => Payload::WorkOrderAssigned(v.typed()?),
            (E::StockMovement, op::DISPENSED | op::RECEIVED | op::ADJUSTED) => {
                Payload::StockMoved(v.typed()?)
            }
            (E::Invoice, op::ISSUED) => Payload::InvoiceIssued(v.typed()?),
            (E::Payment, op::RECEIVED) => Payload::PaymentReceived(v.typed()?),
            (E::Payment, op::VOIDED) => Payload::PaymentVoided(v.typed()?),
            (E::CreditNote, op::ISSUED) => Payload::CreditNoteIssued(v.typed()?),
            (E::Inspection, op::RECORDED) => Payload::InspectionRecorded(v.typed()?),
            (E::PrintJob, op::QUEUED) => Payload::PrintJobQueued(v.typed()?),
            (E::Customer | E::Vehicle, op::FIELDS_SET) => Payload::RecordFieldsSet(v.typed()?),
            (E::Document, op::CHANGED) => Payload::DocumentChanged(v.typed()?),
            (E::Booking, op::REQUESTED) => Payload::BookingRequested(v.typed()?),
            (E::Booking, op::CANCELLED) => Payload::BookingCancelled(v.typed()?),
            (E::Booking, op::COMPLETED) => Payload::BookingCompleted(v.typed()?),
            (E::Rental, op::HANDED_OVER) => Payload::RentalHandedOver(v.typed()?),
            (E::Rental, op::RETURNED) => Payload::RentalReturned(v.typed()?),
            (E::RentalInvoice, op::ISSUED) => Payload::RentalInvoiceIssued(v.typed()?),
            (E::RentalPayment, op::RECEIVED) => Payload::RentalPaymentReceived(v.typed()?),
            (E::Shift, op::OPENED) => Payload::ShiftOpened(v.typed()?),
            (E::Shift, op::CLOSED) => Payload::ShiftClosed(v.typed()?),
            (E::BranchDay, op::CLOSED) => Payload::DayClosed(v.typed()?),
            (E::BranchDay, op::REOPENED) => Payload::DayReopened(v.typed()?),
            (entity, op) => return Err(format!("unknown change {}:{op}", entity.as_str())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_in_text() {
        let json = r#"{"sku": "X", "delta": -1, "delta": 5, "reason": "DISPENSE", "at": "t"}"#;
        let error = Payload::parse_text(EntityKind::StockMovement, op::DISPENSED, json)
            .expect_err("two deltas");
        assert!(error.contains("duplicate field"), "{error}");
    }

    #[test]
    fn parse_table() {
        let wo = serde_json::json!({"id": "w", "customer_name": "B", "customer_phone": null, "vehicle_plate": "B 1 A", "complaint": "x",
                                    "mechanic_id": null, "status": "OPEN", "created_at": "t", "extra": 1});
        let cases: Vec<(EntityKind, &str, serde_json::Value, bool)> = vec![
            (EntityKind::WorkOrder, "created", wo.clone(), true),
            (
                EntityKind::WorkOrder,
                "created",
                serde_json::json!({"id": "w"}),
                false,
            ),
            (EntityKind::WorkOrder, "exploded", wo.clone(), false),
            (EntityKind::Invoice, "created", wo, false),
            (
                EntityKind::StockMovement,
                "dispensed",
                serde_json::json!({"sku": "X", "delta": -1, "reason": "DISPENSE", "work_order_id": "w",
                                                                        "line_id": "l", "unit_price": 5, "reference": null, "at": "t"}),
                true,
            ),
            (
                EntityKind::StockMovement,
                "received",
                serde_json::json!({"sku": "X", "delta": "many"}),
                false,
            ),
        ];
        for (entity, op, v, ok) in cases {
            assert_eq!(
                Payload::parse(entity, op, &v).is_ok(),
                ok,
                "{entity:?}:{op} {v}"
            );
            assert_eq!(
                Payload::parse_text(entity, op, &v.to_string()).ok(),
                Payload::parse(entity, op, &v).ok(),
                "{entity:?}:{op} {v} as text"
            );
        }
    }
}
