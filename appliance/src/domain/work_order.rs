//! The work-order state machine: `OPEN → IN_PROGRESS → WAITING_PARTS → DONE → INVOICED`, with
//! `WAITING_PARTS ↔ IN_PROGRESS` while parts arrive, and `CANCELLED` from any state before `DONE`.
//! `INVOICED` is reached only by issuing an invoice, never by a status request. The enum and its
//! rules are the protocol's (`sentra_protocol::workshop`): the cloud checks pushed events
//! against the same statuses.

pub use sentra_protocol::workshop::WorkOrderStatus as Status;

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
