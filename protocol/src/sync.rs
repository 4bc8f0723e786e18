//! The sync conversation: enrolment, push (edge → cloud) and pull (cloud → edge).
//!
//! Push sends outbox events in `seq` order; the cloud answers with the highest `seq` it now holds
//! for the device (its cursor), so a re-sent batch is harmless and a gap is answered
//! `409 sequence_gap` with the sequence it expects. Pull pages through the branch's change log
//! from a cursor. Every answer carries the server's clock so the edge can measure its skew.

use serde::{Deserialize, Serialize};

use crate::{Event, Hlc};

/// Bumped when a message changes incompatibly; both sides send it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest push body the cloud accepts. The edge keeps its batches well under it.
pub const MAX_PUSH_BYTES: usize = 1 << 20;

/// Response header with the server's time (Unix milliseconds), on every answer.
pub const SERVER_TIME_HEADER: &str = "x-sentra-server-time";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time enrolment token from `sentra-cloud enrollment-token`.
    pub token: String,
    /// The device's ed25519 public key, hex (64 characters).
    pub public_key: String,
    pub hostname: String,
    pub version: String,
    /// The device (a UUID) this box succeeds: a box of the same branch that died. The cloud
    /// retires it and lets this one fetch the branch's open state ([`crate::successor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub device_id: String,
    pub branch_id: String,
    pub branch_name: String,
    pub server_time_ms: u64,
    /// The ed25519 key releases are signed with (64 hex characters), which the box pins so its
    /// updates are on from its first start. None: the cloud has none configured (or is older).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_public_key: Option<String>,
    /// The release channel the box follows (`stable` unless the cloud team moved it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The device this one succeeds, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The invoice and credit-note number series this device numbers in (4 Crockford base-32
    /// characters, unique in the branch, held by the cloud). None: the branch's first box, which
    /// numbers without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_series: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushBatch {
    pub protocol: u32,
    /// Contiguous, ascending `seq`; all from the authenticated device.
    pub events: Vec<Event>,
}

/// The cloud's answer to a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAck {
    /// Every event up to this `seq` is in the cloud (applied or parked): the edge may mark them.
    pub cursor: u64,
    /// Events of this batch applied now.
    pub applied: u32,
    /// Events of this batch the cloud already had (a re-send).
    pub duplicates: u32,
    /// Events of this batch that failed validation: stored with the reason, not applied.
    pub parked: Vec<Parked>,
    pub server_time_ms: u64,
}

/// An event the cloud could not apply, and why. It never blocks the events behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    pub seq: u64,
    /// The event's entity as sent: an entity this cloud does not know is parked too.
    pub entity: String,
    pub entity_id: String,
    pub reason: String,
}

/// The body of `409 sequence_gap` and `409 sequence_fork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceGap {
    pub expected_seq: u64,
    /// `sequence_fork` only: the first re-sent seq the cloud holds with other content. The device
    /// was restored from a backup (or cloned): it renumbers its events from this seq on to start
    /// at `expected_seq`, and sends them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_seq: Option<u64>,
}

/// One page of the branch's change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullPage {
    pub changes: Vec<Change>,
    /// Ask for the next page from here.
    pub cursor: u64,
    /// More changes wait beyond this page.
    pub more: bool,
    pub server_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the branch's change log (gapless per branch).
    pub cursor: u64,
    #[serde(flatten)]
    pub body: ChangeBody,
}

/// What the cloud tells a branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeBody {
    /// Master data: the cloud's value wins.
    Part(PartRecord),
    Mechanic(MechanicRecord),
    Asset(AssetRecord),
    /// One of the branch's events was parked.
    Rejection(Parked),
    /// A field of a record both sides edit, stamped for last-writer-wins.
    Field(FieldUpdate),
    /// A shared document as the cloud now has it (see [`crate::doc`]).
    Document(DocumentChange),
    /// The cloud's decision on a booking the branch took offline.
    BookingDecision(BookingDecision),
    /// Master data: what renting a SKU costs (the cloud's value wins).
    Tariff(crate::rental::TariffRecord),
    /// Master data: a staff member (role, active, the PIN's hash), the cloud's value wins.
    Staff(crate::staff::StaffRecord),
}

/// What the cloud decided for a [`crate::payload::BookingRequested`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingDecision {
    /// The edge's booking id (the event's entity id).
    pub booking_id: String,
    /// `CONFIRMED` or `HELD` (accepted: `cloud_id` is the cloud booking), or `REJECTED`.
    pub state: String,
    pub cloud_id: Option<String>,
    /// When a `HELD` decision's payment window closes.
    pub expires_at: Option<String>,
    /// Why it was rejected, for staff (`taken`, `no_such_asset`, ...: `code`).
    pub code: Option<String>,
    pub reason: Option<String>,
}

/// `GET /v1/sync/calendar`: the live bookings (held or confirmed, not yet over) of the branch's
/// assets, whoever made them, for availability while the link is down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarSnapshot {
    /// The cloud's time of the snapshot (RFC 3339).
    pub as_of: String,
    /// Days after each rental the asset stays taken (cleaning), as the cloud applies them.
    pub turnover_buffer_days: u32,
    pub bookings: Vec<CalendarEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarEntry {
    pub id: String,
    pub asset_id: String,
    pub sku: String,
    /// First rental day, `YYYY-MM-DD`.
    pub from: String,
    /// Last rental day, included.
    pub to: String,
    /// First day the asset is free again (turnover buffer included); exclusive end of the taken days.
    pub free_from: String,
    /// `HELD` or `CONFIRMED`.
    pub state: String,
    /// A hold's end; a hold past it is free.
    pub expires_at: Option<String>,
}

/// Most bookings one calendar snapshot carries (a branch's fleet for a few months fits easily).
pub const MAX_CALENDAR_ENTRIES: usize = 20_000;

/// A whole shared document: merging it brings every change the branch lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentChange {
    pub record: String,
    pub record_id: String,
    /// Base64 of the saved automerge document.
    pub document: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub sku: String,
    pub name: String,
    pub barcode: Option<String>,
    pub price: i64,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MechanicRecord {
    pub id: String,
    pub name: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRecord {
    pub id: String,
    pub sku: String,
    pub plate: String,
    pub name: String,
}

/// One field's value at an HLC stamp, written by `origin` (a device id, or `cloud`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldUpdate {
    pub entity: String,
    pub entity_id: String,
    pub field: String,
    pub value: serde_json::Value,
    pub hlc: Hlc,
    pub origin: String,
}

impl FieldUpdate {
    /// Last-writer-wins order: the later stamp wins; on equal stamps the larger origin, so every
    /// replica picks the same winner whatever order updates arrive in.
    pub fn wins_over(&self, other: &FieldUpdate) -> bool {
        (self.hlc, &self.origin) > (other.hlc, &other.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fu(wall: u64, logical: u32, origin: &str) -> FieldUpdate {
        FieldUpdate {
            entity: "customer".into(),
            entity_id: "c1".into(),
            field: "phone".into(),
            value: serde_json::json!(origin),
            hlc: Hlc::new(wall, logical),
            origin: origin.into(),
        }
    }

    #[test]
    fn lww_table() {
        // (a, b, a wins)
        let cases = [
            (fu(2, 0, "a"), fu(1, 9, "z"), true),
            (fu(1, 1, "a"), fu(1, 2, "a"), false),
            (fu(1, 1, "b"), fu(1, 1, "a"), true),
            (fu(1, 1, "a"), fu(1, 1, "a"), false),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.wins_over(&b), want, "{a:?} vs {b:?}");
            if a != b {
                assert_ne!(a.wins_over(&b), b.wins_over(&a), "exactly one wins");
            }
        }
    }

    #[test]
    fn change_json_shape() {
        let c = Change {
            cursor: 3,
            body: ChangeBody::Part(PartRecord {
                sku: "X".into(),
                name: "n".into(),
                barcode: None,
                price: 5,
                unit: "pcs".into(),
            }),
        };
        let v = serde_json::to_value(&c).expect("serialise");
        assert_eq!(v["kind"], "part");
        assert_eq!(v["sku"], "X");
        assert_eq!(serde_json::from_value::<Change>(v).expect("parse"), c);
    }
}
