//! Rental completion (issue 4): `CONFIRMED → COMPLETED` with the return facts, the days after
//! the return freed, and the payment gateway (the sandbox in the real `serve` process) settled:
//! charges captured, the rest of the pre-authorisation released when due, after any restart and
//! through a gateway that fails first.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::booking_support::{Answer, BookingCloud, RedisProcess};

/// Bound for anything that waits on a sweep or a release delay here.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

async fn confirmed(cloud: &BookingCloud, asset: &str, from: &str, to: &str, pay: &str) -> String {
    let hold = cloud.hold(0, asset, from, to, "C-ret", None).await;
    assert_eq!(hold.status, 201, "{hold:?}");
    let id = hold.body["id"].as_str().expect("id").to_owned();
    let confirm = cloud
        .call(
            0,
            &cloud.portal,
            Method::POST,
            &format!("/v1/bookings/{id}/confirm"),
            Some(json!({"payment_ref": pay})),
            None,
        )
        .await;
    assert_eq!(confirm.status, 200, "{confirm:?}");
    id
}

async fn complete(cloud: &BookingCloud, id: &str, body: Value) -> Answer {
    cloud
        .call(
            0,
            &cloud.portal,
            Method::POST,
            &format!("/v1/bookings/{id}/complete"),
            Some(body),
            None,
        )
        .await
}

#[tokio::test]
async fn completion_captures_the_charges_releases_the_rest_and_frees_the_days_after_the_return() {
    let redis = RedisProcess::start().await;
    let cloud = BookingCloud::start(1, 1, &[("REDIS_URL", &redis.url())]).await;
    // A rental of five days (already under way: a return is in the past), back after three.
    let id = confirmed(&cloud, "a1", "2026-11-01", "2026-11-05", "pay-ret-1").await;

    // Not confirmed yet, or bad facts: refused, nothing changes.
    let held = cloud
        .hold(0, "a1", "2026-10-01", "2026-10-02", "C-h", None)
        .await;
    let held_id = held.body["id"].as_str().expect("id").to_owned();
    let early = complete(
        &cloud,
        &held_id,
        json!({"returned_at": "2026-10-02T10:00:00+07:00"}),
    )
    .await;
    assert_eq!(early.status, 409, "{early:?}");
    assert_eq!(early.code(), "wrong_state");
    for bad in [
        json!({"returned_at": "yesterday"}),
        json!({"returned_at": "2026-11-03T10:00:00+07:00", "damage_charge": -5}),
        json!({"returned_at": "2026-10-30T10:00:00+07:00"}),
        json!({"returned_at": "2099-01-01T00:00:00Z"}),
        // Year 0 is no PostgreSQL date: refused before it reaches a daterange.
        json!({"returned_at": "0000-01-01T00:00:00Z"}),
        json!({"returned_at": "2026-11-03T10:00:00+07:00", "tip": 1}),
    ] {
        let answer = complete(&cloud, &id, bad.clone()).await;
        assert_eq!(answer.status, 422, "{bad}: {answer:?}");
    }
    assert_eq!(
        cloud
            .text(&format!("SELECT state FROM bookings WHERE id = '{id}'"))
            .await,
        "CONFIRMED"
    );

    let facts = json!({"returned_at": "2026-11-03T18:30:00+07:00", "damage_charge": 150000, "late_charge": 0});
    let done = complete(&cloud, &id, facts.clone()).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["state"], "COMPLETED");
    assert_eq!(done.body["damage_charge"], 150_000);
    assert_eq!(
        done.body["free_from"], "2026-11-04",
        "the days after the return are free"
    );
    assert_eq!(done.body["settlement"]["capture_amount"], 150_000);
    assert!(
        done.body["settlement"]["captured_at"].is_string(),
        "{done:?}"
    );
    assert!(
        done.body["settlement"]["released_at"].is_string(),
        "released at once by default: {done:?}"
    );

    // Idempotent: the same facts give the same answer; other facts are refused.
    let again = complete(&cloud, &id, facts).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["settlement"]["attempts"], 0);
    let other = complete(
        &cloud,
        &id,
        json!({"returned_at": "2026-11-03T18:30:00+07:00", "damage_charge": 1}),
    )
    .await;
    assert_eq!(other.status, 409, "{other:?}");

    // The return day stays taken (the exclusion constraint keeps COMPLETED rows), the rest is
    // free, through the calendar and PostgreSQL alike.
    let on_return_day = cloud
        .hold(0, "a1", "2026-11-03", "2026-11-03", "C-2", None)
        .await;
    assert_eq!(on_return_day.status, 409, "{on_return_day:?}");
    let after = cloud
        .hold(0, "a1", "2026-11-04", "2026-11-05", "C-3", None)
        .await;
    assert_eq!(after.status, 201, "{after:?}");
    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM payment_settlements WHERE booking_id = '{id}'
                   AND captured_at IS NOT NULL AND released_at IS NOT NULL"
            ))
            .await,
        1
    );

    let text = crate::support::scrape(cloud.servers[0].addr, &cloud.operator).await;
    for line in [
        "sentra_cloud_bookings_completed_total 1",
        "sentra_cloud_payment_captures_total 1",
        "sentra_cloud_payment_releases_total 1",
    ] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
}

#[tokio::test]
async fn a_due_release_survives_restarts_and_a_failing_gateway() {
    let redis = RedisProcess::start().await;
    // One replica: each replica's sandbox gateway fails the first try of each step, and every
    // failure doubles the wait (1 s, 2 s, 4 s, ...). With two replicas restarted once, up to
    // eight first tries could fail and the backoff outgrow any sensible wait; with one, at most
    // four (15 s of backoff in all).
    let mut cloud = BookingCloud::start(
        1,
        1,
        &[
            ("REDIS_URL", &redis.url()),
            ("SENTRA_CLOUD__BOOKING__SWEEP_INTERVAL_MS", "100"),
            ("SENTRA_CLOUD__BOOKING__RELEASE_DELAY_SECS", "3"),
        ],
    )
    .await;
    // A sandbox reference that fails its first try of each step, as a gateway outage would.
    let id = confirmed(
        &cloud,
        "a1",
        "2026-11-10",
        "2026-11-12",
        "sandbox-flaky-pay-2",
    )
    .await;
    let done = complete(
        &cloud,
        &id,
        json!({"returned_at": "2026-11-13T09:00:00+07:00", "late_charge": 250000}),
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(
        done.body["free_from"], "2026-11-13",
        "a late return never reaches past the booked days"
    );
    assert!(done.body["settlement"]["released_at"].is_null(), "{done:?}");

    // Every replica goes away before the release is due; new ones find the obligation in
    // PostgreSQL and settle it.
    cloud.stop_servers().await;
    cloud.start_servers(1).await;
    cloud
        .wait_until(
            &format!(
                "SELECT released_at IS NOT NULL FROM payment_settlements WHERE booking_id = '{id}'"
            ),
            SETTLE_WAIT,
        )
        .await;
    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM payment_settlements s JOIN bookings b ON b.id = s.booking_id
                 WHERE s.booking_id = '{id}' AND s.capture_amount = 250000
                   AND s.captured_at IS NOT NULL AND s.attempts >= 1
                   AND s.released_at >= b.completed_at + interval '3 seconds'
                   AND s.released_at <= b.completed_at + interval '24 hours'"
            ))
            .await,
        1,
        "captured after a failed try, released after the delay and within 24 h"
    );
}
