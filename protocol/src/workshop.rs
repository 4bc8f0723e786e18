//! The workshop's vocabulary both sides speak: work-order statuses and the state machine between
//! them, payment methods, and the reasons stock moves. The box writes them in its events as
//! these spellings; the cloud checks pushed events against the same enums. Pure.

use serde::{Deserialize, Serialize};

/// A work order's status: `OPEN → IN_PROGRESS → WAITING_PARTS → DONE → INVOICED`, with
/// `WAITING_PARTS ↔ IN_PROGRESS` while parts arrive, and `CANCELLED` from any state before
/// `DONE`. `INVOICED` is reached only by issuing an invoice, never by a status request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkOrderStatus {
    Open,
    InProgress,
    WaitingParts,
    Done,
    Invoiced,
    Cancelled,
}

impl WorkOrderStatus {
    pub const ALL: [WorkOrderStatus; 6] = [
        WorkOrderStatus::Open,
        WorkOrderStatus::InProgress,
        WorkOrderStatus::WaitingParts,
        WorkOrderStatus::Done,
        WorkOrderStatus::Invoiced,
        WorkOrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkOrderStatus::Open => "OPEN",
            WorkOrderStatus::InProgress => "IN_PROGRESS",
            WorkOrderStatus::WaitingParts => "WAITING_PARTS",
            WorkOrderStatus::Done => "DONE",
            WorkOrderStatus::Invoiced => "INVOICED",
            WorkOrderStatus::Cancelled => "CANCELLED",
        }
    }

    /// Every status as the wire spells it, in [`Self::ALL`]'s order.
    pub const NAMES: [&'static str; 6] = [
        "OPEN",
        "IN_PROGRESS",
        "WAITING_PARTS",
        "DONE",
        "INVOICED",
        "CANCELLED",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// May a status request move a work order from `self` to `to`?
    pub fn can_request(self, to: WorkOrderStatus) -> bool {
        use WorkOrderStatus::*;
        matches!(
            (self, to),
            (Open, InProgress)
                | (InProgress, WaitingParts)
                | (WaitingParts, InProgress)
                | (InProgress, Done)
                | (Open | InProgress | WaitingParts, Cancelled)
        )
    }

    /// Parts may be dispensed while work is under way.
    pub fn accepts_parts(self) -> bool {
        matches!(
            self,
            WorkOrderStatus::Open | WorkOrderStatus::InProgress | WorkOrderStatus::WaitingParts
        )
    }
}

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentMethod {
    Cash,
    /// Card terminal; the reference is the terminal's approval code.
    Edc,
    /// QRIS; the reference is the QRIS transaction id.
    Qris,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 3] =
        [PaymentMethod::Cash, PaymentMethod::Edc, PaymentMethod::Qris];
    /// Every method as the wire spells it, in [`Self::ALL`]'s order.
    pub const NAMES: [&'static str; 3] = ["CASH", "EDC", "QRIS"];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "CASH",
            PaymentMethod::Edc => "EDC",
            PaymentMethod::Qris => "QRIS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn needs_reference(self) -> bool {
        !matches!(self, PaymentMethod::Cash)
    }
}

/// Why stock moved: a part dispensed to a work order (negative), a delivery received
/// (positive), or an adjustment (either way, never zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockReason {
    Dispense,
    Receipt,
    Adjustment,
}

impl StockReason {
    pub const ALL: [StockReason; 3] = [
        StockReason::Dispense,
        StockReason::Receipt,
        StockReason::Adjustment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StockReason::Dispense => "DISPENSE",
            StockReason::Receipt => "RECEIPT",
            StockReason::Adjustment => "ADJUSTMENT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Why an `ADJUSTMENT` moved stock: a count that found the shelf different from the box
/// (either way), damaged or lost goods written off (down), goods sent back to the supplier
/// (down), or unused parts brought back to the shelf from a work order (up, naming it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockAdjustment {
    Count,
    Damage,
    ReturnToSupplier,
    WorkOrderReturn,
}

impl StockAdjustment {
    pub const ALL: [StockAdjustment; 4] = [
        StockAdjustment::Count,
        StockAdjustment::Damage,
        StockAdjustment::ReturnToSupplier,
        StockAdjustment::WorkOrderReturn,
    ];
    pub const NAMES: [&'static str; 4] =
        ["COUNT", "DAMAGE", "RETURN_TO_SUPPLIER", "WORK_ORDER_RETURN"];

    pub fn as_str(self) -> &'static str {
        match self {
            StockAdjustment::Count => "COUNT",
            StockAdjustment::Damage => "DAMAGE",
            StockAdjustment::ReturnToSupplier => "RETURN_TO_SUPPLIER",
            StockAdjustment::WorkOrderReturn => "WORK_ORDER_RETURN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether `delta` has this kind's sign: a count either way (never zero), damage and a
    /// return to the supplier only down, a work-order return only up.
    pub fn sign_ok(self, delta: i64) -> bool {
        match self {
            StockAdjustment::Count => delta != 0,
            StockAdjustment::Damage | StockAdjustment::ReturnToSupplier => delta < 0,
            StockAdjustment::WorkOrderReturn => delta > 0,
        }
    }
}

/// The longest note an adjustment carries, in characters.
pub const ADJUSTMENT_NOTE_MAX: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_match_serde() {
        for (status, name) in WorkOrderStatus::ALL.into_iter().zip(WorkOrderStatus::NAMES) {
            assert_eq!(status.as_str(), name);
            assert_eq!(WorkOrderStatus::parse(name), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), name);
        }
        for (method, name) in PaymentMethod::ALL.into_iter().zip(PaymentMethod::NAMES) {
            assert_eq!(method.as_str(), name);
            assert_eq!(PaymentMethod::parse(name), Some(method));
            assert_eq!(serde_json::to_value(method).unwrap(), name);
        }
        for reason in StockReason::ALL {
            assert_eq!(StockReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert_eq!(WorkOrderStatus::parse("open"), None);
        assert_eq!(PaymentMethod::parse(""), None);
        assert_eq!(StockReason::parse("THEFT"), None);
        for (kind, name) in StockAdjustment::ALL.into_iter().zip(StockAdjustment::NAMES) {
            assert_eq!(kind.as_str(), name);
            assert_eq!(StockAdjustment::parse(name), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
        }
        assert!(StockAdjustment::Count.sign_ok(-1) && !StockAdjustment::Count.sign_ok(0));
        assert!(!StockAdjustment::Damage.sign_ok(1) && StockAdjustment::WorkOrderReturn.sign_ok(1));
    }
}
