//! Rental bookings on a box that cannot ask the cloud (not enrolled): `TENTATIVE` with its
//! outbox event in one write, idempotent retries, the branch's own promises refused twice, and a
//! pulled decision applied once and announced as a notice.

use reqwest::{Method, StatusCode};
use sentra_protocol::sync::{BookingDecision, Change, ChangeBody, PullPage};
use serde_json::{Value, json};

use crate::harness::{Site, open_db};

fn body(asset: &str, from: &str, to: &str) -> Value {
    json!({"asset_id": asset, "from": from, "to": to, "customer": "Budi Santoso"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_bookings_are_tentative_and_take_a_pulled_decision_once() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;

    let post = |b: Value, key: Option<&'static str>| {
        let edge = &edge;
        let token = pos.token.clone();
        async move {
            edge.call(Some(&token), Method::POST, "/v1/bookings", Some(b), key)
                .await
        }
    };
    let (s, first) = post(body("CAR-001", "2027-06-01", "2027-06-03"), Some("bk-1")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    assert_eq!(
        (first["state"].as_str(), first["source"].as_str()),
        (Some("TENTATIVE"), Some("sync"))
    );
    assert_eq!(first["tier"], "basic");
    let id = first["id"].as_str().expect("id").to_owned();

    // A retry gets the same answer and writes nothing more.
    let (s, again) = post(body("CAR-001", "2027-06-01", "2027-06-03"), Some("bk-1")).await;
    assert_eq!((s, &again), (StatusCode::ACCEPTED, &first));
    // The branch's own promise is not made twice (turnover buffer of the last pull: none yet).
    let (s, b) = post(body("CAR-001", "2027-06-03", "2027-06-04"), None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("taken")),
        "{b}"
    );
    let (s, b) = post(body("CAR-001", "2027-06-04", "2027-06-04"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "the next day is free: {b}");

    let db = open_db(&site);
    let events: Vec<(String, String)> = db
        .prepare("SELECT op, payload FROM sync_event_logs WHERE entity = 'booking' ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(events.len(), 2, "one event per booking: {events:?}");
    let payload: Value = serde_json::from_str(&events[0].1).expect("json");
    assert_eq!(events[0].0, "requested");
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(payload["idempotency_key"], format!("edge-booking-{id}"));
    assert_eq!(payload["sku"], "AVANZA-2024");

    let (s, a) = edge
        .get(
            &pos,
            "/v1/assets/CAR-001/availability?from=2027-06-02&to=2027-06-02",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(
        (a["source"].as_str(), a["free"].as_bool(), &a["as_of"]),
        (Some("cached"), Some(false), &Value::Null),
        "offline, never pulled: {a}"
    );
    assert_eq!(a["busy"][0]["id"], id.as_str());
    edge.stop().await;

    // The cloud's decision, as a pull applies it: once, with a notice after commit.
    let config = sentra_edge::config::Config::load_from(Some(&site.config), std::iter::empty())
        .expect("config");
    let store = sentra_edge::daemon::open_store(&config)
        .await
        .expect("open store");
    let mut notices = store.subscribe();
    let page = PullPage {
        changes: vec![Change {
            cursor: 1,
            body: ChangeBody::BookingDecision(BookingDecision {
                booking_id: id.clone(),
                state: "REJECTED".into(),
                cloud_id: None,
                expires_at: None,
                code: Some("taken".into()),
                reason: Some("asset CAR-001 is taken".into()),
            }),
        }],
        cursor: 1,
        more: false,
        server_time_ms: 0,
    };
    for _ in 0..2 {
        let page = page.clone();
        store
            .write(move |w| sentra_edge::store::sync::apply_pull(w, &page))
            .await
            .expect("apply");
    }
    let notice = notices.try_recv().expect("a booking notice");
    let sentra_edge::store::Notice::Booking(n) = notice else {
        panic!("expected a booking notice, got {notice:?}");
    };
    assert_eq!((n.id.as_str(), n.state.as_str()), (id.as_str(), "REJECTED"));
    assert_eq!(n.reason.as_deref(), Some("asset CAR-001 is taken"));
    assert!(
        notices.try_recv().is_err(),
        "the second pull changed nothing"
    );
    let b = store
        .read(move |c| sentra_edge::store::bookings::get(c, &id))
        .await
        .expect("booking");
    assert_eq!(
        (b.state.as_str(), b.reject_code.as_deref()),
        ("REJECTED", Some("taken"))
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_booking_input_is_refused_and_changes_nothing() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    let count = || -> i64 {
        open_db(&site)
            .query_row(
                "SELECT (SELECT count(*) FROM bookings) + (SELECT count(*) FROM sync_event_logs)",
                [],
                |r| r.get(0),
            )
            .expect("count")
    };
    let before = count();
    for (b, field) in [
        (body("CAR-001", "2027-02-30", "2027-03-01"), "from"),
        (body("CAR-001", "2027-03-05", "2027-03-01"), "to"),
        (body("CAR-001", "2027-01-01", "2027-06-01"), "to"),
        (body("NOPE", "2027-03-01", "2027-03-02"), "asset_id"),
        (
            json!({"asset_id": "CAR-001", "from": "2027-03-01", "to": "2027-03-02"}),
            "body",
        ),
        (
            json!({"asset_id": "CAR-001", "from": "2027-03-01", "to": "2027-03-02", "customer": "x", "extra": 1}),
            "extra",
        ),
    ] {
        let (s, e) = edge.post(&pos, "/v1/bookings", b.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}: {e}");
        assert_eq!(e["error"]["field"], field, "{b}: {e}");
    }
    assert_eq!(count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_actions_without_the_cloud_answer_clearly_and_cancel_works_offline() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    let events = || -> Vec<(String, String)> {
        open_db(&site)
            .prepare(
                "SELECT op, payload FROM sync_event_logs WHERE entity = 'booking' ORDER BY seq",
            )
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let (s, tentative) = edge
        .post(
            &pos,
            "/v1/bookings",
            body("CAR-001", "2027-08-01", "2027-08-02"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{tentative}");
    let id = tentative["id"].as_str().expect("id").to_owned();
    let before = events();

    // The waitlist is the cloud's: 503, nothing written.
    let (s, e) = edge
        .post(
            &pos,
            "/v1/waitlist",
            json!({"asset_id": "CAR-001", "date": "2027-08-01", "customer": "Eka"}),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("cloud_unreachable")),
        "{e}"
    );
    // A booking the cloud has not decided cannot be confirmed or completed yet.
    let (s, e) = edge
        .post(
            &pos,
            &format!("/v1/bookings/{id}/confirm"),
            json!({"payment_ref": "pay-1"}),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_decided")),
        "{e}"
    );
    let (s, e) = edge
        .post(
            &pos,
            &format!("/v1/bookings/{id}/complete"),
            json!({"returned_at": "2027-08-02T10:00:00+07:00"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    // Bad input: a clear 4xx.
    for (path, b) in [
        (
            format!("/v1/bookings/{id}/confirm"),
            json!({"payment_ref": ""}),
        ),
        (
            format!("/v1/bookings/{id}/confirm"),
            json!({"payment": "x"}),
        ),
        (
            "/v1/waitlist".to_owned(),
            json!({"asset_id": "CAR-001", "date": "2027-02-30", "customer": "Eka"}),
        ),
        (
            "/v1/waitlist".to_owned(),
            json!({"asset_id": "NOPE", "date": "2027-08-01", "customer": "Eka"}),
        ),
    ] {
        let (s, e) = edge.post(&pos, &path, b.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path} {b}: {e}");
    }
    let (s, e) = edge
        .post(&pos, "/v1/bookings/no-such/cancel", json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(events(), before, "nothing was written");

    // Cancel works offline: CANCELLED here, and an event for the cloud; again is harmless.
    let (s, cancelled) = edge
        .post(&pos, &format!("/v1/bookings/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "CANCELLED");
    let (s, again) = edge
        .post(&pos, &format!("/v1/bookings/{id}/cancel"), json!({}))
        .await;
    assert_eq!((s, &again), (StatusCode::OK, &cancelled));
    let after = events();
    assert_eq!(after.len(), before.len() + 1, "one cancel event: {after:?}");
    let (op, payload) = after.last().expect("the cancel event");
    let payload: Value = serde_json::from_str(payload).expect("json");
    assert_eq!(op, "cancelled");
    assert_eq!(payload["idempotency_key"], format!("edge-booking-{id}"));
    // The days are free again at the branch.
    let (s, b) = edge
        .post(
            &pos,
            "/v1/bookings",
            body("CAR-001", "2027-08-01", "2027-08-01"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

/// The pulled calendar's turnover buffer is added to every day the box is asked about: a wild
/// one (say `u32::MAX` days) used to reach `next_day().expect` on every availability question.
/// The box refuses such a calendar and keeps the one it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_calendar_with_a_wild_turnover_buffer_is_refused() {
    use sentra_protocol::sync::{CalendarEntry, CalendarSnapshot};

    let site = Site::new();
    site.load_demo_data();
    let config = sentra_edge::config::Config::load_from(Some(&site.config), std::iter::empty())
        .expect("config");
    let store = sentra_edge::daemon::open_store(&config)
        .await
        .expect("open store");
    let snapshot = |buffer: u32| CalendarSnapshot {
        as_of: "2027-01-01T00:00:00Z".into(),
        turnover_buffer_days: buffer,
        bookings: vec![CalendarEntry {
            id: "cloud-1".into(),
            asset_id: "CAR-001".into(),
            sku: "AVANZA-2024".into(),
            from: "2027-05-01".into(),
            to: "2027-05-02".into(),
            free_from: "2027-05-04".into(),
            state: "CONFIRMED".into(),
            expires_at: None,
        }],
    };
    let sane = snapshot(1);
    store
        .write(move |w| sentra_edge::store::bookings::replace_calendar(w, &sane))
        .await
        .expect("a sane calendar is kept");
    for wild in [15, u32::MAX] {
        let bad = snapshot(wild);
        let e = store
            .write(move |w| sentra_edge::store::bookings::replace_calendar(w, &bad))
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("at most 14"), "{e}");
    }
    let (_, buffer) = store
        .read(sentra_edge::store::bookings::calendar_state)
        .await
        .expect("state");
    assert_eq!(buffer, 1, "the calendar it had is kept");
    store.shutdown().await;

    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    let (s, a) = edge
        .get(
            &pos,
            "/v1/assets/CAR-001/availability?from=2027-05-03&to=2027-05-03",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["free"], false, "the buffer day is taken: {a}");
    edge.stop().await;
}
