//! Property tests over every parser of the wire contract: whatever text or bytes arrive (from a
//! request, an event, a batch or a stored file), parsing answers `Ok` or `Err` and never panics,
//! and what the formatters write parses back to the same value.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sentra_protocol::day::{
    self, BadDay, FIRST_DAY, LAST_DAY, MAX_STAY_DAYS, format_day, parse_calendar_day, parse_day,
    parse_stay, taken_end,
};
use sentra_protocol::doc::{self, DocEdit, SharedDoc};
use sentra_protocol::fleet::ReleaseVersion;
use sentra_protocol::payload::Payload;
use sentra_protocol::record::{self, Author, RecordKind};
use sentra_protocol::sync::{PullPage, PushBatch};
use sentra_protocol::{EntityKind, Event, Hlc, HlcClock};
use time::{Date, Duration};

/// Any day `time` can represent (years -9999 to 9999 are outside its default range; 0-9999 is
/// what `YYYY-MM-DD` can write).
fn any_date() -> impl Strategy<Value = Date> {
    let first = Date::from_calendar_date(0, time::Month::January, 1)
        .expect("year 0")
        .to_julian_day();
    let last = Date::from_calendar_date(9999, time::Month::December, 31)
        .expect("year 9999")
        .to_julian_day();
    (first..=last).prop_map(|j| Date::from_julian_day(j).expect("in range"))
}

fn day_in_range() -> impl Strategy<Value = Date> {
    (FIRST_DAY.to_julian_day()..=LAST_DAY.to_julian_day())
        .prop_map(|j| Date::from_julian_day(j).expect("in range"))
}

/// Text shaped like a day, often valid, often not (month 13, day 31 of February, year 0000).
fn day_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
        "(19|20|21|99)[0-9]{2}-[0-1][0-9]-[0-3][0-9]",
        ".{0,12}",
    ]
}

/// Arbitrary JSON, a few levels deep.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        // Quarters print exactly, so a value survives a JSON round trip.
        (-1_000_000i32..1_000_000).prop_map(|n| serde_json::Value::from(f64::from(n) / 4.0)),
        ".{0,24}".prop_map(serde_json::Value::from),
        day_like().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names the payloads use, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "id",
            "asset_id",
            "sku",
            "from",
            "to",
            "customer",
            "tier",
            "idempotency_key",
            "requested_at",
            "name",
            "phone",
            "year",
            "odometer_km",
            "membership_tier",
            "fields",
            "hlc",
            "changes",
            "record",
            "record_id",
            "delta",
            "amount",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
    ]
}

fn entity() -> impl Strategy<Value = EntityKind> {
    prop::sample::select(EntityKind::ALL.to_vec())
}

fn op() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "created",
            "status_changed",
            "assigned",
            "dispensed",
            "received",
            "issued",
            "recorded",
            "queued",
            "fields_set",
            "changed",
            "requested",
            "cancelled",
        ])
        .prop_map(str::to_owned),
        ".{0,12}",
    ]
}

/// Stamps as the text form can carry them (15 wall digits).
fn hlc() -> impl Strategy<Value = Hlc> {
    (0u64..1_000_000_000_000_000, any::<u32>()).prop_map(|(w, l)| Hlc::new(w, l))
}

fn event() -> impl Strategy<Value = Event> {
    (
        ".{0,16}",
        any::<u64>(),
        hlc(),
        any::<u32>(),
        entity(),
        ".{0,16}",
        op(),
        json(),
    )
        .prop_map(
            |(device_id, seq, hlc, schema_version, entity, entity_id, op, payload)| Event {
                device_id,
                seq,
                hlc,
                schema_version,
                entity,
                entity_id,
                op,
                payload,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_parses_as_a_day_or_is_refused(raw in day_like()) {
        match parse_day(&raw) {
            Ok(day) => {
                prop_assert!((FIRST_DAY..=LAST_DAY).contains(&day), "{raw} -> {day}");
                prop_assert_eq!(format_day(day), raw.clone());
            }
            Err(BadDay::OutOfRange(text)) => {
                prop_assert_eq!(&text, &raw);
                let day = parse_calendar_day(&raw).expect("only the range is wrong");
                prop_assert!(!(FIRST_DAY..=LAST_DAY).contains(&day));
            }
            Err(BadDay::Malformed(text)) => {
                prop_assert_eq!(&text, &raw);
                prop_assert!(parse_calendar_day(&raw).is_err());
            }
        }
    }

    #[test]
    fn every_day_round_trips_and_only_the_range_is_accepted(d in any_date()) {
        let text = format_day(d);
        prop_assert_eq!(parse_calendar_day(&text), Ok(d));
        let in_range = (FIRST_DAY..=LAST_DAY).contains(&d);
        prop_assert_eq!(parse_day(&text).is_ok(), in_range, "{}", text);
        if !in_range {
            prop_assert!(
                parse_day(&text)
                    .expect_err("out of range")
                    .to_string()
                    .contains("2000-01-01 to 2099-12-31")
            );
        }
    }

    #[test]
    fn stays_are_in_range_ordered_and_short(from in day_like(), to in day_like()) {
        match parse_stay(&from, &to) {
            Ok((first, last)) => {
                prop_assert!(FIRST_DAY <= first && first <= last && last <= LAST_DAY);
                prop_assert!((last - first).whole_days() < MAX_STAY_DAYS);
                prop_assert_eq!(format_day(first), from);
                prop_assert_eq!(format_day(last), to);
            }
            Err(e) => {
                prop_assert!(e.field == "from" || e.field == "to");
                prop_assert!(!e.message.is_empty());
                if parse_day(&from).is_err() {
                    prop_assert_eq!(e.field, "from");
                }
            }
        }
    }

    #[test]
    fn a_generated_stay_is_accepted_exactly_when_it_is_short(
        first in day_in_range(),
        len in 0i64..200,
        buffer in 0u32..=3650,
    ) {
        let Some(last) = first.checked_add(Duration::days(len)) else {
            return Ok(());
        };
        let got = parse_stay(&format_day(first), &format_day(last));
        let want = last <= LAST_DAY && len < MAX_STAY_DAYS;
        prop_assert_eq!(got.is_ok(), want, "{} +{}", first, len);
        if let Ok((first, last)) = got {
            // Any sane turnover buffer after the last day in range stays on the calendar.
            let end = taken_end(last, buffer).expect("on the calendar");
            prop_assert_eq!((end - last).whole_days(), i64::from(buffer) + 1);
            prop_assert!(first < end);
        }
    }

    #[test]
    fn taken_end_never_panics(d in any_date(), buffer in any::<u32>()) {
        if let Ok(end) = taken_end(d, buffer) {
            prop_assert!(end > d);
        }
    }

    #[test]
    fn hlc_text_never_panics_and_round_trips(raw in ".{0,40}", h in hlc()) {
        if let Ok(parsed) = raw.parse::<Hlc>() {
            prop_assert_eq!(parsed.to_string(), raw);
        }
        let text = h.to_string();
        prop_assert_eq!(text.parse::<Hlc>(), Ok(h));
        let json = serde_json::to_string(&h).expect("serialise");
        prop_assert_eq!(serde_json::from_str::<Hlc>(&json).expect("back"), h);
    }

    #[test]
    fn hlc_stamps_only_grow(last in hlc(), remote in hlc(), now in 0u64..1_000_000_000_000_000) {
        let mut clock = HlcClock::new(last, HlcClock::DEFAULT_MAX_AHEAD_MS);
        let ticked = clock.tick(now);
        prop_assert!(ticked > last);
        if let Ok(seen) = clock.observe(remote, now) {
            prop_assert!(seen > ticked && seen > remote);
        }
    }

    #[test]
    fn events_and_batches_round_trip(events in prop::collection::vec(event(), 0..4)) {
        let batch = PushBatch { protocol: 1, events };
        let json = serde_json::to_vec(&batch).expect("serialise");
        let back: PushBatch = serde_json::from_slice(&json).expect("parse back");
        prop_assert_eq!(back, batch);
    }

    #[test]
    fn any_bytes_as_a_batch_event_or_page_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<PushBatch>(&bytes);
        let _ = serde_json::from_slice::<Event>(&bytes);
        let _ = serde_json::from_slice::<PullPage>(&bytes);
        let _ = serde_json::from_slice::<DocEdit>(&bytes);
    }

    #[test]
    fn any_json_as_a_batch_or_page_never_panics(v in json()) {
        let _ = serde_json::from_value::<PushBatch>(v.clone());
        let _ = serde_json::from_value::<Event>(v.clone());
        let _ = serde_json::from_value::<PullPage>(v);
    }

    #[test]
    fn any_payload_parses_or_says_why(e in entity(), op in op(), v in json()) {
        if let Err(why) = Payload::parse(e, &op, &v) {
            prop_assert!(!why.is_empty());
        }
    }

    #[test]
    fn any_record_edit_is_checked_without_panicking(
        fields in prop::collection::btree_map(field_name(), json(), 0..6),
        cloud in any::<bool>(),
    ) {
        let author = if cloud { Author::Cloud } else { Author::Branch };
        for kind in RecordKind::ALL {
            let fields: BTreeMap<String, serde_json::Value> = fields.clone();
            if let Err(why) = record::check_fields(kind, &fields, author) {
                prop_assert!(why.starts_with("fields"), "{}", why);
            }
        }
    }

    #[test]
    fn any_bytes_as_a_document_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), text in ".{0,64}") {
        let _ = SharedDoc::load(&bytes, b"edge");
        let mut doc = SharedDoc::new(b"edge");
        if doc.apply(&bytes).is_ok() {
            let _ = doc.view();
        }
        if let Ok(decoded) = doc::decode(&text) {
            prop_assert_eq!(doc::encode(&decoded).len() % 4, 0);
        }
    }

    #[test]
    fn document_edits_round_trip_through_save_and_load(
        notes in proptest::option::of(".{0,80}"),
        items in prop::collection::btree_map("[a-z]{1,10}", proptest::option::of(any::<bool>()), 0..5),
    ) {
        let edit = DocEdit { notes, checklist: items };
        if edit.check().is_err() {
            return Ok(());
        }
        let mut doc = SharedDoc::new(b"edge");
        let changes = doc.edit(&edit, 0).expect("a checked edit applies");
        let view = doc.view().expect("view");
        let mut cloud = SharedDoc::new(doc::CLOUD_ACTOR);
        cloud.apply(&changes).expect("the changes apply elsewhere");
        prop_assert_eq!(cloud.view().expect("view"), view.clone());
        let saved = doc.save();
        let loaded = SharedDoc::load(&saved, b"edge").expect("load");
        prop_assert_eq!(loaded.view().expect("view"), view);
    }

    #[test]
    fn release_versions_parse_or_are_refused(raw in ".{0,70}", v in (any::<u32>(), any::<u32>(), any::<u32>(), proptest::option::of("[a-z0-9][a-z0-9.]{0,10}"))) {
        let _ = ReleaseVersion::parse(&raw);
        let version = ReleaseVersion { major: v.0.into(), minor: v.1.into(), patch: v.2.into(), pre: v.3 };
        let text = version.to_string();
        prop_assert_eq!(ReleaseVersion::parse(&text), Ok(version));
    }
}

#[test]
fn the_range_is_what_the_message_says() {
    assert_eq!(format_day(FIRST_DAY), "2000-01-01");
    assert_eq!(format_day(LAST_DAY), "2099-12-31");
    assert_eq!(
        day::parse_day("9999-12-31").map_err(|e| e.to_string()),
        Err("9999-12-31 is out of range; expected a day from 2000-01-01 to 2099-12-31".into())
    );
}
