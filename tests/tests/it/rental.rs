//! The rental counter, end to end with a real cloud: a tariff authored in the cloud reaches the
//! box; one rental from booking to settlement while the link is up, and one while it is down
//! (booked TENTATIVE, handed over with a QRIS deposit, returned with damage beyond the deposit
//! paid by card). When the link returns, everything reaches PostgreSQL once: the rentals, their
//! invoices (numbers claimed like every invoice's), the money rows summing by method to what the
//! drawer took, and both bookings COMPLETED in the cloud through its completion path.

use std::time::Duration;

use sentra_system_tests::{Cloud, Edge, EdgeSite, Proxy, ProxyMode, Redis, eventually};
use serde_json::{Value, json};
use sqlx::Row as _;

const BRANCH: &str = "RNT01";
const WAIT: Duration = Duration::from_secs(60);

fn today() -> String {
    let wib = time::UtcOffset::from_hms(7, 0, 0).expect("valid");
    sentra_protocol::day::format_day(time::OffsetDateTime::now_utc().to_offset(wib).date())
}

async fn put(cloud: &Cloud, token: &str, path: &str, body: Value) {
    let resp = sentra_system_tests::http()
        .put(format!("{}{path}", cloud.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request to the cloud");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{path}: {body}");
}

async fn post(edge: &Edge, token: &str, path: &str, body: Value) -> Value {
    let (s, b) = edge.call(Some(token), "POST", path, Some(body)).await;
    assert!((200..300).contains(&s), "{path}: {s} {b}");
    b
}

async fn inspect(edge: &Edge, tablet: &str, asset: &str, kind: &str) -> String {
    let b = post(
        edge,
        tablet,
        "/v1/inspections",
        json!({"asset_id": asset, "kind": kind, "checklist": [{"item": "Lampu depan", "ok": true}],
               "signature": {"signer": "Budi", "digest": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"},
               "odometer_km": 20000, "fuel_percent": 50}),
    )
    .await;
    b["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rentals_settle_at_the_counter_online_and_offline_and_sync_once() {
    let redis = Redis::start().await;
    let cloud = Cloud::start_with(&[("REDIS_URL", &redis.url)]).await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 21).await;
    let site = EdgeSite::new(BRANCH, "");
    let edge = site.start().await;
    let pos = site.pair(&edge, "pos").await;
    let tablet = site.pair(&edge, "tablet").await;
    site.enroll(&proxy.url, &cloud.enrollment_token(BRANCH));

    // The branch's cars and their tariff are master data from the cloud.
    let op = cloud.operator_token();
    for (id, plate) in [("CAR-001", "B 1001 RNT"), ("CAR-002", "B 1002 RNT")] {
        put(
            &cloud,
            &op,
            &format!("/v1/branches/{BRANCH}/assets/{id}"),
            json!({"id": id, "sku": "AVZ", "plate": plate, "name": "Toyota Avanza"}),
        )
        .await;
    }
    put(
        &cloud,
        &op,
        &format!("/v1/branches/{BRANCH}/tariffs/AVZ"),
        json!({"sku": "AVZ", "daily_rate": 350_000, "deposit": 1_000_000, "late_fee_per_day": 100_000}),
    )
    .await;
    eventually(WAIT, "the tariff at the branch and the link up", || async {
        let (_, tariffs) = edge.call(Some(&tablet), "GET", "/v1/tariffs", None).await;
        let st = edge.sync_status(&tablet).await;
        (tariffs[0]["daily_rate"] == 350_000 && st["link"]["state"] == "online").then_some(())
    })
    .await;
    let day = today();

    // Online: the cloud's hold, confirmed at the counter, handed over with a cash deposit, back
    // today: the deposit covers the invoice and the rest goes back in cash.
    let held = post(
        &edge,
        &pos,
        "/v1/bookings",
        json!({"asset_id": "CAR-001", "from": day, "to": day, "customer": "Budi"}),
    )
    .await;
    assert_eq!(held["state"], "HELD", "{held}");
    let online = held["id"].as_str().expect("id").to_owned();
    let cloud_id = held["cloud_id"].as_str().expect("cloud id").to_owned();
    let ins = inspect(&edge, &tablet, "CAR-001", "HANDOVER").await;
    let (s, b) = edge
        .call(
            Some(&pos),
            "POST",
            &format!("/v1/bookings/{online}/handover"),
            Some(json!({"inspection_id": ins, "deposit": {"method": "CASH"}})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("wrong_state")),
        "a hold is confirmed first: {b}"
    );
    post(
        &edge,
        &pos,
        &format!("/v1/bookings/{online}/confirm"),
        json!({"payment_ref": "pay-rnt-1"}),
    )
    .await;
    post(
        &edge,
        &pos,
        &format!("/v1/bookings/{online}/handover"),
        json!({"inspection_id": ins, "deposit": {"method": "CASH"}}),
    )
    .await;
    let back = inspect(&edge, &tablet, "CAR-001", "RETURN").await;
    let done = post(
        &edge,
        &pos,
        &format!("/v1/bookings/{online}/return"),
        json!({"inspection_id": back}),
    )
    .await;
    assert_eq!(done["invoice"]["total"], 388_500, "{done}");
    assert_eq!(done["settlement"]["refunded"], 611_500, "{done}");
    eventually(WAIT, "the cloud to complete the online booking", || async {
        let mut pg = cloud.pg().await;
        let state: String = sqlx::query("SELECT state FROM bookings WHERE id = $1::uuid")
            .bind(&cloud_id)
            .fetch_one(&mut pg)
            .await
            .expect("the booking")
            .get(0);
        (state == "COMPLETED").then_some(())
    })
    .await;
    edge.drained(&tablet, WAIT).await;

    // The link drops: the whole rental happens at the counter, from booking to settlement.
    proxy.set(ProxyMode::Down);
    let (s, tentative) = edge
        .call(
            Some(&pos),
            "POST",
            "/v1/bookings",
            Some(json!({"asset_id": "CAR-002", "from": day, "to": day, "customer": "Agus"})),
        )
        .await;
    assert_eq!(s, 202, "{tentative}");
    let offline = tentative["id"].as_str().expect("id").to_owned();
    let ins = inspect(&edge, &tablet, "CAR-002", "HANDOVER").await;
    let rental = post(
        &edge,
        &pos,
        &format!("/v1/bookings/{offline}/handover"),
        json!({"inspection_id": ins, "deposit": {"method": "QRIS", "amount": 1_000_000, "reference": "QR-5521"}}),
    )
    .await;
    assert_eq!(rental["status"], "OUT", "{rental}");
    let back = inspect(&edge, &tablet, "CAR-002", "RETURN").await;
    let done = post(
        &edge,
        &pos,
        &format!("/v1/bookings/{offline}/return"),
        json!({"inspection_id": back, "damage": [{"description": "Spion kanan pecah", "amount": 800_000}],
               "payment": {"method": "EDC", "reference": "APPR-0042"}}),
    )
    .await;
    // (350 000 + 800 000) + PPN 11 % = 1 276 500; the deposit pays 1 000 000 of it.
    assert_eq!(done["invoice"]["total"], 1_276_500, "{done}");
    assert_eq!(done["settlement"]["paid_by_customer"], 276_500, "{done}");
    let number = done["invoice"]["number"]
        .as_str()
        .expect("number")
        .to_owned();
    let st = edge.sync_status(&tablet).await;
    assert!(st["pending_events"].as_i64() > Some(0), "{st}");
    let mut pg = cloud.pg().await;
    let seen: i64 = sqlx::query("SELECT count(*) FROM rentals WHERE booking_id = $1")
        .bind(&offline)
        .fetch_one(&mut pg)
        .await
        .expect("count")
        .get(0);
    assert_eq!(seen, 0, "nothing reached the cloud while the link was down");

    // The link returns: everything syncs, once.
    proxy.set(ProxyMode::Pass);
    edge.drained(&tablet, WAIT).await;
    let state: String = eventually(
        WAIT,
        "the cloud to complete the offline booking",
        || async {
            let mut pg = cloud.pg().await;
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM bookings WHERE idempotency_key = $1")
                    .bind(format!("edge-booking-{offline}"))
                    .fetch_optional(&mut pg)
                    .await
                    .expect("query");
            state.filter(|s| s == "COMPLETED")
        },
    )
    .await;
    assert_eq!(state, "COMPLETED");
    let rows = sqlx::query(
        "SELECT r.booking_id, r.returned_at IS NOT NULL, i.number, i.total, r.refunded, r.paid
         FROM rentals r JOIN rental_invoices i ON i.branch_id = r.branch_id AND i.id = r.invoice_id
         WHERE r.branch_id = $1 ORDER BY r.handed_over_at",
    )
    .bind(BRANCH)
    .fetch_all(&mut pg)
    .await
    .expect("rentals");
    let rows: Vec<(String, bool, String, i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1, rows[0].3, rows[0].4),
        (online.as_str(), true, 388_500, 611_500)
    );
    assert_eq!(
        (
            rows[1].0.as_str(),
            rows[1].1,
            rows[1].2.as_str(),
            rows[1].3,
            rows[1].5
        ),
        (offline.as_str(), true, number.as_str(), 1_276_500, 276_500)
    );
    let by_method: Vec<(String, i64, i64)> = sqlx::query(
        "SELECT method, sum(amount)::bigint, count(*) FROM rental_payments WHERE branch_id = $1
         GROUP BY method ORDER BY method",
    )
    .bind(BRANCH)
    .fetch_all(&mut pg)
    .await
    .expect("payments")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    assert_eq!(
        by_method,
        [
            ("CASH".to_owned(), 388_500, 2),
            ("EDC".to_owned(), 276_500, 1),
            ("QRIS".to_owned(), 1_000_000, 1),
        ],
        "each money row once, refunds subtracting: what the drawer took by method"
    );
    let claimed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM document_numbers WHERE branch_id = $1 AND number = $2 AND kind = 'invoice'",
    )
    .bind(BRANCH)
    .bind(&number)
    .fetch_one(&mut pg)
    .await
    .expect("numbers");
    assert_eq!(claimed, 1);
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_events WHERE branch_id = $1")
        .bind(BRANCH)
        .fetch_one(&mut pg)
        .await
        .expect("parked");
    assert_eq!(parked, 0, "nothing parked");
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE branch_id = $1 AND entity IN ('rental', 'rental_invoice', 'rental_payment')",
    )
    .bind(BRANCH)
    .fetch_one(&mut pg)
    .await
    .expect("events");
    assert_eq!(
        events,
        2 * (2 + 1 + 2),
        "handed over, returned, invoice, two money rows each"
    );

    // The branch hears the cloud's decision on the booking it already completed: the cloud's
    // id, the state kept.
    eventually(WAIT, "the decision to reach the branch", || async {
        let (_, b) = edge
            .call(Some(&pos), "GET", &format!("/v1/bookings/{offline}"), None)
            .await;
        (b["cloud_id"].is_string() && b["state"] == "COMPLETED").then_some(())
    })
    .await;
    edge.kill().await;
}
