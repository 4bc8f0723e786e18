//! Days outside the protocol's range (2000-01-01 to 2099-12-31): a far-future day used to reach
//! `next_day().expect` in `Stay::taken` and stop the replica, online and at sync (every replica,
//! on every retry of the push). Now each is a 422, or a parked event, and the replica serves on.
//! Event data PostgreSQL cannot store (a year-0 time, a stock sum past bigint) is parked too,
//! instead of failing the whole push on every retry.

use reqwest::Method;
use sentra_protocol::EntityKind;
use serde_json::json;

use crate::cloud::Cloud;
use crate::fixtures;

#[tokio::test]
async fn far_future_days_are_422_online_and_the_replica_keeps_serving() {
    let cloud = Cloud::start().await;
    let portal = cloud.api_token("portal", "portal").await;
    let device = cloud.enroll("JKT01").await;

    let far = "9999-12-31";
    let calls = [
        (
            Method::GET,
            format!("/v1/availability?sku=AVANZA-2024&from={far}&to={far}"),
            None,
        ),
        (
            Method::GET,
            "/v1/availability?sku=AVANZA-2024&from=2099-12-31&to=2100-01-01".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/v1/bookings".to_owned(),
            Some(
                json!({"branch": "JKT01", "asset_id": "car-1", "sku": "AVANZA-2024",
                        "from": far, "to": far, "customer": "Budi"}),
            ),
        ),
        (
            Method::POST,
            "/v1/waitlist".to_owned(),
            Some(json!({"sku": "AVANZA-2024", "date": far, "customer": "Budi"})),
        ),
        (
            Method::POST,
            "/v1/waitlist".to_owned(),
            Some(json!({"sku": "AVANZA-2024", "date": "1999-12-31", "customer": "Budi"})),
        ),
    ];
    for (method, path, body) in calls {
        let answer = cloud.bearer(&portal, method.clone(), &path, body).await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "invalid"),
            "{method} {path}: {answer:?}"
        );
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("2000-01-01 to 2099-12-31"),
            "{path}: the message says the range: {message}"
        );
    }
    // A device's own booking request, signed, the same.
    let body = json!({"asset_id": "car-1", "sku": "AVANZA-2024", "from": far, "to": far,
                      "customer": "Budi"})
    .to_string()
    .into_bytes();
    let answer = cloud
        .signed(&device, Method::POST, "/v1/bookings", Some(body))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "invalid"),
        "{answer:?}"
    );

    // Alive: the last day of the range is an ordinary question.
    let answer = cloud
        .bearer(
            &portal,
            Method::GET,
            "/v1/availability?sku=AVANZA-2024&from=2099-12-31&to=2099-12-31",
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(cloud.scalar("SELECT count(*) FROM bookings").await, 0);
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM waitlist_entries").await,
        0
    );
}

#[tokio::test]
async fn an_offline_booking_with_a_far_future_day_is_parked_and_the_rest_applied() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let booking = device.outbox.id("bk");
    let events = vec![
        device.outbox.receipt("OF-1", 4),
        device.outbox.raw(
            EntityKind::Booking,
            &booking,
            "requested",
            json!({"id": booking, "asset_id": "car-1", "sku": "AVANZA-2024",
                   "from": "9999-12-31", "to": "9999-12-31", "customer": "Budi Santoso",
                   "tier": "basic", "idempotency_key": format!("edge-booking-{booking}"),
                   "requested_at": fixtures::AT}),
        ),
        device.outbox.receipt("OF-1", 3),
    ];
    // Twice: the branch re-sends a batch whose answer it did not get; neither attempt stops
    // the replica.
    for attempt in 0..2 {
        let answer = cloud.push(&device, &events).await;
        assert_eq!(answer.status, 200, "attempt {attempt}: {answer:?}");
        assert_eq!(answer.body["cursor"], 3, "{answer:?}");
    }
    let answer = cloud.pull(&device, 0, None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let changes = answer.body["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{answer:?}");
    assert_eq!(changes[0]["kind"], "rejection");
    assert_eq!(changes[0]["seq"], 2);
    let reason = changes[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("9999-12-31") && reason.contains("2000-01-01 to 2099-12-31"),
        "{reason}"
    );
    assert_eq!(cloud.scalar("SELECT on_hand FROM stock_levels").await, 7);
    assert_eq!(cloud.scalar("SELECT count(*) FROM bookings").await, 0);
    assert_eq!(cloud.audit(&device).await, 3);
}

#[tokio::test]
async fn an_event_time_postgresql_cannot_read_is_parked_not_a_stuck_push() {
    // `0000-01-01T00:00:00Z` is RFC 3339, but year 0 is no PostgreSQL timestamp: it used to fail
    // the whole push with a 500, on every retry, and stop the branch's sync behind it.
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let mut year_zero = device.outbox.receipt("OF-1", 2);
    year_zero.payload["at"] = json!("0000-01-01T00:00:00Z");
    let events = vec![year_zero, device.outbox.receipt("OF-1", 3)];
    let answer = cloud.push(&device, &events).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["applied"], 1, "{answer:?}");
    let parked = answer.body["parked"].as_array().expect("parked list");
    assert_eq!(parked.len(), 1, "{answer:?}");
    assert_eq!(parked[0]["seq"], 1);
    assert!(
        parked[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("0000-01-01T00:00:00Z")),
        "{answer:?}"
    );
    assert_eq!(cloud.scalar("SELECT on_hand FROM stock_levels").await, 3);
    assert_eq!(cloud.audit(&device).await, 2);
}

#[tokio::test]
async fn stock_that_would_overflow_is_parked_not_a_stuck_push() {
    // A receipt of i64::MAX parts made PostgreSQL's running sum overflow: the whole push
    // failed with a 500 on every retry. One movement is bounded now; it is parked alone.
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let events = vec![
        device.outbox.receipt("OF-1", i64::MAX),
        device.outbox.receipt("OF-1", 1),
        device.outbox.receipt("BP-9", 2),
    ];
    let answer = cloud.push(&device, &events).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["applied"], 2, "{answer:?}");
    let parked = answer.body["parked"].as_array().expect("parked list");
    assert_eq!(parked.len(), 1, "{answer:?}");
    assert_eq!(parked[0]["seq"], 1);
    assert!(
        parked[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("more than 1000000")),
        "{answer:?}"
    );
    let level = |sku: &str| format!("SELECT on_hand FROM stock_levels WHERE sku = '{sku}'");
    assert_eq!(cloud.scalar(&level("OF-1")).await, 1);
    assert_eq!(cloud.scalar(&level("BP-9")).await, 2);
    assert_eq!(cloud.audit(&device).await, 3);
}

#[tokio::test]
async fn ids_with_control_characters_are_422_not_a_database_error() {
    // PostgreSQL's text cannot hold NUL: an asset id or SKU carrying one reached the INSERT and
    // came back as 500 (found by the contract fuzzer on POST /v1/waitlist).
    let cloud = Cloud::start().await;
    let portal = cloud.api_token("portal", "portal").await;
    let calls = [
        (
            "/v1/waitlist",
            json!({"sku": "AVANZA\u{0}2024", "date": "2027-03-01", "customer": "Budi"}),
        ),
        (
            "/v1/bookings",
            json!({"branch": "JKT01", "asset_id": "car\u{0}1", "sku": "AVANZA-2024",
                    "from": "2027-03-01", "to": "2027-03-02", "customer": "Budi"}),
        ),
        (
            "/v1/bookings",
            json!({"branch": "JKT01", "asset_id": "car-1", "sku": "AVANZA\n2024",
                    "from": "2027-03-01", "to": "2027-03-02", "customer": "Budi"}),
        ),
    ];
    for (path, body) in calls {
        let answer = cloud
            .bearer(&portal, Method::POST, path, Some(body.clone()))
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "invalid"),
            "{path} {body}: {answer:?}"
        );
    }
}

/// A SKU with a NUL (which PostgreSQL refuses in text) or another control character is a 400,
/// not a 500 (found by the contract fuzzer).
#[tokio::test]
async fn control_characters_in_a_sku_are_a_bad_query() {
    let cloud = Cloud::start().await;
    let portal = cloud.api_token("portal", "portal").await;
    for sku in ["A%00B", "A%1FB", "%C2%9D"] {
        let path = format!("/v1/availability?sku={sku}&from=2064-05-02&to=2064-05-02");
        let answer = cloud.bearer(&portal, Method::GET, &path, None).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "bad_query"),
            "{path}: {answer:?}"
        );
    }
    let ok = "/v1/availability?sku=AVANZA-2024&from=2064-05-02&to=2064-05-02";
    let answer = cloud.bearer(&portal, Method::GET, ok, None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}
