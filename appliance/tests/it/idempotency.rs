//! Retries from flaky Wi-Fi: the same `Idempotency-Key` and body give the same answer and one
//! change; the same key with another body is refused; concurrent retries race safely.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Site, open_db};

fn outbox_len(site: &Site) -> i64 {
    open_db(site)
        .query_row("SELECT count(*) FROM sync_event_logs", [], |r| r.get(0))
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_same_answer_one_change() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let body = json!({"customer_name": "Siti", "vehicle_plate": "D 77 AB", "complaint": "AC tidak dingin"});
    let before = outbox_len(&site);

    let send = |body: serde_json::Value, key: &'static str| {
        edge.call(
            Some(&tablet.token),
            Method::POST,
            "/v1/work-orders",
            Some(body),
            Some(key),
        )
    };
    let (s1, a1) = send(body.clone(), "key-1").await;
    assert_eq!(s1, StatusCode::CREATED, "{a1}");
    // The same document with its keys in another order is the same request.
    let reordered = json!({"complaint": "AC tidak dingin", "vehicle_plate": "D 77 AB", "customer_name": "Siti"});
    let resp = edge
        .http
        .post(format!("{}/v1/work-orders", edge.base))
        .bearer_auth(&tablet.token)
        .header("Idempotency-Key", "key-1")
        .json(&reordered)
        .send()
        .await
        .expect("retry");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let a2: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(a1, a2, "same answer");
    // One change: the work order with its new customer and vehicle records.
    assert_eq!(outbox_len(&site), before + 3, "one change");

    let (s, b) = send(
        json!({"customer_name": "Siti", "vehicle_plate": "D 77 AB", "complaint": "lain"}),
        "key-1",
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        ),
        "{b}"
    );

    // A failed request stores nothing under its key: once fixed, the same key works.
    let bad = json!({"customer_name": "Siti", "vehicle_plate": "nope", "complaint": "x"});
    assert_eq!(send(bad, "key-2").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(send(body.clone(), "key-2").await.0, StatusCode::CREATED);

    // Keys belong to the device: another tablet's key-1 is its own.
    let other = edge.pair(&site, "tablet").await;
    let (s, b) = edge
        .call(
            Some(&other.token),
            Method::POST,
            "/v1/work-orders",
            Some(body.clone()),
            Some("key-1"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(b["id"], a1["id"]);

    // Twenty concurrent retries of one dispense: one change, twenty equal answers.
    let store = edge.pair(&site, "storekeeper").await;
    let wo = a1["id"].as_str().expect("id").to_owned();
    let before = outbox_len(&site);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, base, token, wo) = (
            edge.http.clone(),
            edge.base.clone(),
            store.token.clone(),
            wo.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/v1/work-orders/{wo}/parts"))
                .bearer_auth(token)
                .header("Idempotency-Key", "dispense-1")
                .json(&json!({"sku": "OIL-10W40-1L", "qty": 1}))
                .send()
                .await
                .expect("send");
            (
                r.status(),
                r.json::<serde_json::Value>().await.expect("json"),
            )
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::CREATED);
    assert_eq!(outbox_len(&site), before + 1);
    let (_, stock) = edge.get(&store, "/v1/stock/OIL-10W40-1L").await;
    assert_eq!(stock["on_hand"], 19);
}
