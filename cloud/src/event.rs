//! An event of a push batch as ingest hands it to the domains (ground floor): the event as
//! received, what the pure rules said of it, and what happens to it. Ingest
//! ([`crate::ingest::validate`]) makes these; the domains that take part in a push (offline
//! bookings, shared records) read them, so no domain imports ingest.

use sentra_protocol::Hlc;
use sentra_protocol::payload::Payload;
use serde::Deserialize;
use serde_json::value::RawValue;

/// One event of a batch as received: `entity` and `hlc` are plain text, so an event the protocol
/// types would refuse is parked alone instead of failing the whole batch at parse time.
#[derive(Debug, Clone, Deserialize)]
pub struct RawEvent {
    pub device_id: String,
    pub seq: u64,
    pub hlc: String,
    pub schema_version: u32,
    pub entity: String,
    pub entity_id: String,
    pub op: String,
    /// The payload's JSON text as sent: stored as it is (PostgreSQL's `jsonb` normalises it) and
    /// parsed once, straight into its type. Absent means `null`.
    #[serde(default = "null_payload")]
    pub payload: Box<RawValue>,
}

fn null_payload() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

/// One event of a batch, with what the pure rules said about it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub raw: RawEvent,
    /// The parsed payload, or why the event is parked.
    pub checked: Result<Checked, String>,
}

#[derive(Debug, Clone)]
pub struct Checked {
    pub hlc: Hlc,
    pub payload: Payload,
}

impl Prepared {
    /// The payload as JSON text, for storage.
    pub fn payload_text(&self) -> &str {
        self.raw.payload.get()
    }
}

/// What happens to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded in `events` and applied to the projections.
    Apply,
    /// Recorded in `events`; the record it creates is already there, identical (a re-send under
    /// a new seq): not applied twice.
    Duplicate,
    /// Not applied; stored in `parked_events` and reported to the branch with this reason.
    Park(String),
}
