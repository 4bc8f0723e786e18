//! The outbox event: one change a branch made, as it travels to the cloud.
//!
//! `seq` is gapless per device and `hlc` orders events across devices. `payload` is the change
//! itself, shaped per `entity` and `op`; `schema_version` says which shape, so the cloud can
//! read events written by older appliances.

use serde::{Deserialize, Serialize};

use crate::Hlc;

/// The payload shapes this build writes. Bump when a payload changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    WorkOrder,
    StockMovement,
    Invoice,
    Payment,
    CreditNote,
    Inspection,
    PrintJob,
    /// A customer record both sides edit: fields merge by last-writer-wins.
    Customer,
    /// A vehicle record both sides edit: fields merge by last-writer-wins.
    Vehicle,
    /// Changes to a shared document (work-order notes, inspection remarks): automerge.
    Document,
    /// A rental booking the branch took while the cloud was unreachable: the cloud decides it.
    Booking,
    /// A rental at the counter, keyed by its booking: handed over, then returned.
    Rental,
    /// A rental's invoice (no work order), issued at return.
    RentalInvoice,
    /// Money a rental moved: its deposit, the payment beyond it, or the refund from it.
    RentalPayment,
    /// A cashier's shift: opened with a float, closed with the cash counted.
    Shift,
    /// The branch's day (id = `YYYY-MM-DD`): closed by a manager, reopened by one.
    BranchDay,
}

impl EntityKind {
    pub const ALL: [EntityKind; 16] = [
        EntityKind::WorkOrder,
        EntityKind::StockMovement,
        EntityKind::Invoice,
        EntityKind::Payment,
        EntityKind::CreditNote,
        EntityKind::Inspection,
        EntityKind::PrintJob,
        EntityKind::Customer,
        EntityKind::Vehicle,
        EntityKind::Document,
        EntityKind::Booking,
        EntityKind::Rental,
        EntityKind::RentalInvoice,
        EntityKind::RentalPayment,
        EntityKind::Shift,
        EntityKind::BranchDay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::WorkOrder => "work_order",
            EntityKind::StockMovement => "stock_movement",
            EntityKind::Invoice => "invoice",
            EntityKind::Payment => "payment",
            EntityKind::CreditNote => "credit_note",
            EntityKind::Inspection => "inspection",
            EntityKind::PrintJob => "print_job",
            EntityKind::Customer => "customer",
            EntityKind::Vehicle => "vehicle",
            EntityKind::Document => "document",
            EntityKind::Booking => "booking",
            EntityKind::Rental => "rental",
            EntityKind::RentalInvoice => "rental_invoice",
            EntityKind::RentalPayment => "rental_payment",
            EntityKind::Shift => "shift",
            EntityKind::BranchDay => "branch_day",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One change, as stored in the edge outbox and sent to the cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub device_id: String,
    pub seq: u64,
    pub hlc: Hlc,
    pub schema_version: u32,
    pub entity: EntityKind,
    pub entity_id: String,
    pub op: String,
    pub payload: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_names_round_trip() {
        for k in EntityKind::ALL {
            assert_eq!(EntityKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).expect("serialize");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(EntityKind::parse("nope"), None);
    }

    #[test]
    fn event_json_shape() {
        let e = Event {
            device_id: "d1".into(),
            seq: 7,
            hlc: Hlc::new(1_000, 2),
            schema_version: SCHEMA_VERSION,
            entity: EntityKind::WorkOrder,
            entity_id: "wo1".into(),
            op: "created".into(),
            payload: serde_json::json!({"plate": "B 1234 XYZ"}),
        };
        let v = serde_json::to_value(&e).expect("serialize");
        assert_eq!(v["hlc"], "000000000001000-0000000002");
        assert_eq!(v["entity"], "work_order");
        let back: Event = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, e);
    }
}
