//! A successor box: `POST /v1/enroll` with `replaces`, `GET /v1/sync/successor`, and numbers a
//! branch holds once (`document_numbers`).

use reqwest::Method;
use sentra_protocol::auth::public_key_hex;
use sentra_protocol::ed25519_dalek::SigningKey;
use sentra_protocol::successor::{SuccessorPage, is_number_series};
use serde_json::json;

use crate::cloud::{Answer, Cloud, Device};
use crate::fixtures::{Outbox, new_key};
use crate::support::run;

async fn enroll_replacing(cloud: &Cloud, token: &str, key: &SigningKey, replaces: &str) -> Answer {
    let body = json!({"token": token, "public_key": public_key_hex(key), "hostname": "edge-new",
                      "version": "0.1.0", "replaces": replaces});
    cloud
        .call(
            Method::POST,
            "/v1/enroll",
            Some(body.to_string().into_bytes()),
            &[],
        )
        .await
}

/// A successor enrolled for `branch` in place of `old`.
async fn successor(cloud: &Cloud, branch: &str, old: &str) -> (Device, Answer) {
    let token = cloud.enrollment_token(branch).await;
    let key = new_key();
    let answer = enroll_replacing(cloud, &token, &key, old).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let id = answer.body["device_id"].as_str().expect("an id").to_owned();
    (
        Device {
            outbox: Outbox::new(&id),
            id,
            key,
        },
        answer,
    )
}

async fn page(cloud: &Cloud, device: &Device, query: &str) -> Answer {
    cloud
        .signed(
            device,
            Method::GET,
            &format!("/v1/sync/successor?{query}"),
            None,
        )
        .await
}

#[tokio::test]
async fn a_successor_retires_the_dead_box_and_gets_the_branch_open_state() {
    let cloud = Cloud::start().await;
    let mut dead = cloud.enroll("JKT01").await;
    let put = cloud
        .bearer(
            &cloud.operator,
            Method::PUT,
            "/v1/branches/JKT01/parts/OF-1",
            Some(json!({"sku": "OF-1", "name": "Oil filter", "barcode": null, "price": 45000, "unit": "pcs"})),
        )
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    // One work order invoiced and paid (stock: +4, -1, -1), one open with a part on it (-1).
    let mut events = dead.outbox.workshop_cycle("OF-1");
    let open = dead.outbox.id("wo");
    events.push(dead.outbox.work_order(&open));
    events.push(dead.outbox.status(&open, "OPEN", "IN_PROGRESS"));
    events.push(dead.outbox.dispense(&open, "OF-1", 1, 45_000));
    assert_eq!(cloud.push(&dead, &events).await.status, 200);
    let more = [dead.outbox.receipt("BP-2", 3)];
    assert_eq!(cloud.push(&dead, &more).await.status, 200);

    let (new, answer) = successor(&cloud, "JKT01", &dead.id).await;
    assert_eq!(answer.body["branch_id"], "JKT01");
    assert_eq!(answer.body["replaces"], dead.id.as_str());
    let series = answer.body["number_series"].as_str().expect("a series");
    assert!(is_number_series(series), "{series}");

    // The dead box is retired: revoked, named as replaced, its signed calls refused.
    let retired = cloud
        .scalar(&format!(
            "SELECT count(*) FROM devices WHERE id = '{}' AND revoked_at IS NOT NULL
               AND replaced_by = '{}' AND replaced_at IS NOT NULL",
            dead.id, new.id
        ))
        .await;
    assert_eq!(retired, 1);
    let late = [dead.outbox.receipt("OF-1", 1)];
    let refused = cloud.push(&dead, &late).await;
    assert_eq!(
        (refused.status, refused.code()),
        (401, "unauthorized"),
        "{refused:?}"
    );

    // The snapshot, a section a page.
    let parts = page(&cloud, &new, "section=parts").await;
    assert_eq!(parts.status, 200, "{parts:?}");
    let parts: SuccessorPage = serde_json::from_value(parts.body).expect("a page");
    parts
        .check(sentra_protocol::successor::Section::Parts, &dead.id, series)
        .expect("a page the box accepts");
    assert_eq!(parts.parts.len(), 1);
    assert_eq!(parts.parts[0].name, "Oil filter");
    assert_eq!(parts.next, None);

    let orders = page(&cloud, &new, "section=work_orders").await;
    assert_eq!(orders.status, 200, "{orders:?}");
    let orders: SuccessorPage = serde_json::from_value(orders.body).expect("a page");
    assert_eq!(orders.work_orders.len(), 1, "only the open one: {orders:?}");
    let w = &orders.work_orders[0];
    assert_eq!(
        (w.id.as_str(), w.status.as_str()),
        (open.as_str(), "IN_PROGRESS")
    );
    assert_eq!(w.parts.len(), 1);
    assert_eq!(
        (
            w.parts[0].sku.as_str(),
            w.parts[0].qty,
            w.parts[0].unit_price
        ),
        ("OF-1", 1, 45_000)
    );
    assert_eq!(w.parts[0].movement_id, events[events.len() - 1].entity_id);

    // Stock a page at a time: `next` leads on, and nothing is missed.
    let first = page(&cloud, &new, "section=stock&limit=1").await;
    let first: SuccessorPage = serde_json::from_value(first.body).expect("a page");
    assert_eq!(first.stock.len(), 1);
    assert_eq!(
        (first.stock[0].sku.as_str(), first.stock[0].on_hand),
        ("BP-2", 3)
    );
    let after = first.next.clone().expect("more to come");
    let second = page(
        &cloud,
        &new,
        &format!("section=stock&limit=1&after={after}"),
    )
    .await;
    let second: SuccessorPage = serde_json::from_value(second.body).expect("a page");
    assert_eq!(
        (second.stock[0].sku.as_str(), second.stock[0].on_hand),
        ("OF-1", 1)
    );
    assert_eq!(second.next, None);

    // Bad questions: a clear 400, nothing else.
    for query in ["section=bookings", "section=stock&limit=0", "limit=5"] {
        let bad = page(&cloud, &new, query).await;
        assert_eq!(
            (bad.status, bad.code()),
            (400, "bad_query"),
            "{query}: {bad:?}"
        );
    }

    // A box that replaced nobody gets no snapshot; as the branch's third box it has a series
    // of its own too.
    let token = cloud.enrollment_token("JKT01").await;
    let key = new_key();
    let plain = cloud.enroll_with(&token, &key).await;
    assert_eq!(plain.status, 200, "{plain:?}");
    let other_series = plain.body["number_series"].as_str().expect("a series");
    assert_ne!(other_series, series);
    let plain_id = plain.body["device_id"].as_str().expect("an id").to_owned();
    let plain = Device {
        outbox: Outbox::new(&plain_id),
        id: plain_id,
        key,
    };
    let refused = page(&cloud, &plain, "section=stock").await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "not_a_successor"),
        "{refused:?}"
    );

    // The fleet shows who replaced whom; the retired box is no longer listed.
    let listed = run(
        &["devices", "list", "--json"],
        &[("DATABASE_URL", cloud.db.url())],
    )
    .await;
    assert!(listed.status.success(), "{}", listed.stderr);
    let rows: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert!(
        rows.iter().all(|row| row["id"] != dead.id.as_str()),
        "{rows:?}"
    );
    let row = rows
        .iter()
        .find(|row| row["id"] == new.id.as_str())
        .expect("the successor listed");
    assert_eq!(row["replaces"], dead.id.as_str());
}

#[tokio::test]
async fn only_a_known_device_of_the_same_branch_is_replaced_and_only_once() {
    let cloud = Cloud::start().await;
    let dead = cloud.enroll("JKT01").await;
    let elsewhere = cloud.enroll("BDG01").await;
    let token = cloud.enrollment_token("JKT01").await;

    let cases = [
        (elsewhere.id.clone(), 422, "foreign_device"),
        (
            "0190f5c2-0000-7000-8000-00000000dead".to_owned(),
            422,
            "unknown_device",
        ),
        ("JKT01".to_owned(), 422, "invalid"),
    ];
    for (replaces, status, code) in cases {
        let answer = enroll_replacing(&cloud, &token, &new_key(), &replaces).await;
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{replaces}: {answer:?}"
        );
    }
    // Nothing changed: the token is unused, the other branch's device is not revoked.
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM enrollment_tokens WHERE used_at IS NULL AND branch_id = 'JKT01'")
            .await,
        1
    );
    assert_eq!(
        cloud
            .scalar(
                "SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL OR replaces IS NOT NULL"
            )
            .await,
        0
    );

    // The same token then replaces the right box; a second successor of it is refused, naming
    // the first, so a technician whose first attempt never came up replaces that one instead.
    let answer = enroll_replacing(&cloud, &token, &new_key(), &dead.id).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let first = answer.body["device_id"].as_str().expect("an id").to_owned();
    let again = enroll_replacing(
        &cloud,
        &cloud.enrollment_token("JKT01").await,
        &new_key(),
        &dead.id,
    )
    .await;
    assert_eq!(
        (again.status, again.code()),
        (409, "already_replaced"),
        "{again:?}"
    );
    assert!(
        again.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("--replaces {first}"))),
        "{again:?}"
    );
    let (_, second) = successor(&cloud, "JKT01", &first).await;
    assert_eq!(second.body["replaces"], first.as_str());
}

/// A number is a branch's once: a second invoice (another id) under a number the branch holds
/// is parked with the reason, whichever box sent it; PostgreSQL holds each number once.
#[tokio::test]
async fn an_invoice_number_is_held_once_per_branch() {
    let cloud = Cloud::start().await;
    let mut a = cloud.enroll("JKT01").await;
    let mut b = cloud.enroll("JKT01").await;
    let mut elsewhere = cloud.enroll("BDG01").await;
    let number = "JKT01-202611-00001";
    let invoiced = |device: &mut Device| {
        let mut events = device.outbox.workshop_cycle("OF-1");
        events[6].payload["number"] = json!(number);
        events.truncate(7);
        events
    };
    let a_events = invoiced(&mut a);
    let answer = cloud.push(&a, &a_events).await;
    assert_eq!(
        (
            answer.status,
            answer.body["parked"].as_array().map(Vec::len)
        ),
        (200, Some(0)),
        "{answer:?}"
    );

    let b_events = invoiced(&mut b);
    let answer = cloud.push(&b, &b_events).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let parked = answer.body["parked"].as_array().expect("parked");
    assert_eq!(parked.len(), 1, "{answer:?}");
    assert_eq!(parked[0]["entity_id"], b_events[6].entity_id.as_str());
    let reason = parked[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "invoice number {number} is already held by {}",
            a_events[6].entity_id
        )),
        "{reason}"
    );
    // The same number in another branch is that branch's own.
    let c_events = invoiced(&mut elsewhere);
    let answer = cloud.push(&elsewhere, &c_events).await;
    assert_eq!(
        answer.body["parked"].as_array().map(Vec::len),
        Some(0),
        "{answer:?}"
    );

    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM invoices WHERE branch_id = 'JKT01' AND number = '{number}'"
            ))
            .await,
        1
    );
    assert_eq!(
        cloud
            .scalar(&format!(
                "SELECT count(*) FROM document_numbers WHERE number = '{number}'"
            ))
            .await,
        2,
        "one per branch"
    );
    // Re-sent under new seqs, the held invoice is a duplicate, not a clash.
    let mut again = a_events[6].clone();
    again.seq = 8;
    let answer = cloud.push(&a, &[again]).await;
    assert_eq!(
        (
            answer.body["duplicates"].as_u64(),
            answer.body["parked"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0)),
        "{answer:?}"
    );
}
