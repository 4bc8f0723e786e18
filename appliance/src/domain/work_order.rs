//! The work-order state machine: `OPEN → IN_PROGRESS → WAITING_PARTS → DONE → INVOICED`, with
//! `WAITING_PARTS ↔ IN_PROGRESS` while parts arrive, and `CANCELLED` from any state before `DONE`.
//! `INVOICED` is reached only by issuing an invoice, never by a status request.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Open,
    InProgress,
    WaitingParts,
    Done,
    Invoiced,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Open,
        Status::InProgress,
        Status::WaitingParts,
        Status::Done,
        Status::Invoiced,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::InProgress => "IN_PROGRESS",
            Status::WaitingParts => "WAITING_PARTS",
            Status::Done => "DONE",
            Status::Invoiced => "INVOICED",
            Status::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// May a status request move a work order from `self` to `to`?
    pub fn can_request(self, to: Status) -> bool {
        use Status::*;
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
            Status::Open | Status::InProgress | Status::WaitingParts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};

    #[test]
    fn transition_table() {
        let allowed = [
            (Open, InProgress),
            (InProgress, WaitingParts),
            (WaitingParts, InProgress),
            (InProgress, Done),
            (Open, Cancelled),
            (InProgress, Cancelled),
            (WaitingParts, Cancelled),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_request(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("open"), None);
    }
}
