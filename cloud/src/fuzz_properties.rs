//! What must hold for any bytes a branch can push (a batch, a document's changes), and any text
//! a client can give as days: the properties the fuzz targets in `cloud/fuzz` check (they build
//! this file and the modules it names from source), and the stable replay of their committed
//! corpus (the tests below). Each function panics (an assertion) on a violation.

use sentra_protocol::day;

use crate::ingest::validate::{self, Known, Lookup, Outcome};
use sentra_protocol::booking::Stay;

/// The device every fuzzed batch is pushed as (the corpus's events name it).
pub const DEVICE: &str = "dev-1";

/// A push body through ingest's pure half, as `ingest::push` runs it: [`validate::prepare`]
/// never panics; a batch it accepts is contiguous, in range and all from [`DEVICE`]; an event it
/// accepts has a stamp that prints as sent, a payload a whole parse takes (what jsonb stores), and
/// booking days in the protocol's range;
/// [`validate::resolve`] gives one outcome per event and parks every event `check` refused.
pub fn check_batch(body: &[u8]) {
    let Ok(events) = validate::prepare(DEVICE, body) else {
        return;
    };
    for pair in events.windows(2) {
        assert_eq!(pair[1].raw.seq, pair[0].raw.seq + 1, "contiguous seqs");
    }
    for event in &events {
        assert!(event.raw.seq >= 1 && i64::try_from(event.raw.seq).is_ok());
        assert_eq!(event.raw.device_id, DEVICE);
        if let Ok(checked) = &event.checked {
            assert_eq!(checked.hlc.to_string(), event.raw.hlc, "stamp round trip");
            // Stored as sent: jsonb must take it (its stand-in here: a whole parse).
            assert!(
                serde_json::from_str::<serde_json::Value>(event.payload_text()).is_ok(),
                "a checked payload is whole JSON: {}",
                event.payload_text()
            );
            if let sentra_protocol::payload::Payload::BookingRequested(b) = &checked.payload {
                let stay = Stay::parse(&b.from, &b.to).expect("a checked booking has a stay");
                assert!(stay.first >= day::FIRST_DAY && stay.last <= day::LAST_DAY);
                assert!(stay.taken(0).is_ok());
            }
        }
    }
    let _ = Lookup::of(&events);
    let outcomes = validate::resolve("JKT01", &events, &mut Known::default());
    assert_eq!(outcomes.len(), events.len());
    for (event, outcome) in events.iter().zip(&outcomes) {
        if let Err(reason) = &event.checked {
            assert_eq!(outcome, &Outcome::Park(reason.clone()));
        }
        if let Outcome::Park(reason) = outcome {
            assert!(!reason.is_empty());
        }
    }
}

/// Two days and a turnover buffer from `data` (`from`, a newline, `to`, a newline, the buffer
/// as decimal text): the day parser and the stay rule never panic, accept only days in range
/// that print as given, the cloud's [`Stay`] agrees with the protocol's rule, and a stay's
/// taken days end after it or are refused.
pub fn check_stay(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let from = parts.next().unwrap_or_default();
    let to = parts.next().unwrap_or_default();
    let buffer: u32 = parts
        .next()
        .and_then(|b| b.trim().parse().ok())
        .unwrap_or(0);
    for raw in [from, to] {
        match day::parse_day(raw) {
            Ok(d) => {
                assert!((day::FIRST_DAY..=day::LAST_DAY).contains(&d));
                assert_eq!(day::format_day(d), raw);
            }
            Err(day::BadDay::OutOfRange(_)) => {
                let d = day::parse_calendar_day(raw).expect("only the range is wrong");
                assert!(!(day::FIRST_DAY..=day::LAST_DAY).contains(&d));
            }
            Err(day::BadDay::Malformed(_)) => assert!(day::parse_calendar_day(raw).is_err()),
        }
    }
    let protocol = day::parse_stay(from, to);
    let cloud = Stay::parse(from, to);
    assert_eq!(
        protocol.as_ref().ok(),
        cloud.as_ref().ok().map(|s| (s.first, s.last)).as_ref()
    );
    if let Ok(stay) = cloud {
        assert!(stay.first <= stay.last);
        assert!((stay.last - stay.first).whole_days() < day::MAX_STAY_DAYS);
        match stay.taken(buffer) {
            Ok((start, end)) => assert!(start == stay.first && end > stay.last),
            Err(e) => assert_eq!(e.field, "to"),
        }
    } else if let Err(e) = protocol {
        assert!(e.field == "from" || e.field == "to");
    }
}

/// Bytes a branch sends as a document's changes (base64-decoded), as `shared::apply` merges
/// them: loading them as a document or applying them to one (empty, or already edited) never
/// panics, and a document that took them still renders and saves, and what it saves loads.
pub fn check_doc(data: &[u8]) {
    use sentra_protocol::doc::{CLOUD_ACTOR, DocEdit, SharedDoc};

    if let Ok(d) = SharedDoc::load(data, CLOUD_ACTOR) {
        let _ = d.view();
    }
    let mut edited = SharedDoc::new(CLOUD_ACTOR);
    let edit = DocEdit {
        notes: Some("rem depan".to_owned()),
        checklist: [("oli".to_owned(), Some(true))].into_iter().collect(),
    };
    edited.edit(&edit, 0).expect("a checked edit applies");
    for mut d in [SharedDoc::new(CLOUD_ACTOR), edited] {
        if d.apply(data).is_ok() && d.view().is_ok() {
            let saved = d.save();
            let loaded = SharedDoc::load(&saved, CLOUD_ACTOR).expect("a saved document loads");
            assert_eq!(loaded.view().ok(), d.view().ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of a committed corpus (cloud/fuzz/corpus/<target>, minimised) through `check`.
    fn replay(target: &str, check: fn(&[u8])) {
        let dir = format!("{}/fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("the committed fuzz corpus") {
            let path = entry.expect("entry").path();
            check(&std::fs::read(&path).expect("read corpus file"));
            n += 1;
        }
        assert!(n >= 10, "only {n} corpus files in {dir}");
    }

    #[test]
    fn sync_batch_corpus_holds_the_properties() {
        replay("sync_batch", check_batch);
    }

    #[test]
    fn day_stay_corpus_holds_the_properties() {
        replay("day_stay", check_stay);
    }

    #[test]
    fn doc_apply_corpus_holds_the_properties() {
        replay("doc_apply", check_doc);
    }

    #[test]
    fn far_future_booking_in_a_batch_is_parked_not_a_panic() {
        let body = serde_json::json!({"protocol": 1, "events": [{
            "device_id": DEVICE, "seq": 1, "hlc": "000001795400000-0000000000", "schema_version": 1,
            "entity": "booking", "entity_id": "bk-1", "op": "requested",
            "payload": {"id": "bk-1", "asset_id": "car-1", "sku": "AVANZA-2024", "from": "9999-12-31",
                        "to": "9999-12-31", "customer": "Budi", "tier": "basic",
                        "idempotency_key": "edge-booking-bk-1", "requested_at": "2026-11-20T10:00:00Z"}}]});
        let body = serde_json::to_vec(&body).expect("json");
        check_batch(&body);
        let events = validate::prepare(DEVICE, &body).expect("a well-formed batch");
        let reason = events[0].checked.as_ref().expect_err("parked");
        assert!(reason.contains("2000-01-01 to 2099-12-31"), "{reason}");
    }
}
