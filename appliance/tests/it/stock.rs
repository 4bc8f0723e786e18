//! Stock that matches the shelf: adjustments with a reason, a cycle count whose differences are
//! shown before it is applied, returns of unused parts from a work order; bad input refused
//! with nothing changed; every change one outbox event.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Device, Edge, Site, open_db};

async fn level(edge: &Edge, dev: &Device, sku: &str) -> i64 {
    let (status, body) = edge.get(dev, &format!("/v1/stock/{sku}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["on_hand"].as_i64().expect("on_hand")
}

/// Events, movements and the adjustment events' ops, to show a refusal changed nothing.
fn snapshot(site: &Site) -> (i64, i64, i64) {
    open_db(site)
        .query_row(
            "SELECT (SELECT count(*) FROM sync_event_logs), (SELECT count(*) FROM stock_movements),
                    (SELECT coalesce(sum(returned), 0) FROM work_order_parts)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("snapshot")
}

fn adjusted_events(site: &Site) -> Vec<Value> {
    let db = open_db(site);
    let mut stmt = db
        .prepare("SELECT payload FROM sync_event_logs WHERE entity = 'stock_movement' AND op = 'adjusted' ORDER BY seq")
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|p| serde_json::from_str(&p.expect("row")).expect("json"))
        .collect()
}

/// The demo's manager approving on the spot (`Sentra-Manager`): adjustments and applying a count
/// need a manager.
const MANAGER: (&str, &str) = ("Sentra-Manager", "mgr-rina:2468");

/// `POST /v1/stock/adjustments` with the manager's approval.
async fn adjust(edge: &Edge, dev: &Device, body: Value) -> (StatusCode, Value) {
    edge.call_with(
        Some(&dev.token),
        Method::POST,
        "/v1/stock/adjustments",
        Some(body),
        None,
        &[MANAGER],
    )
    .await
}

/// `POST /v1/stock-counts/{id}/apply` with the manager's approval.
async fn apply(edge: &Edge, dev: &Device, id: &str, key: Option<&str>) -> (StatusCode, Value) {
    edge.call_with(
        Some(&dev.token),
        Method::POST,
        &format!("/v1/stock-counts/{id}/apply"),
        None,
        key,
        &[MANAGER],
    )
    .await
}

async fn receive(edge: &Edge, dev: &Device, sku: &str, qty: i64) {
    let (status, body) = edge
        .post(dev, "/v1/stock/receipts", json!({"sku": sku, "qty": qty}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjustments_with_a_reason_never_below_zero() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let store = edge.pair(&site, "storekeeper").await;
    let tablet = edge.pair(&site, "tablet").await;
    receive(&edge, &store, "FLT-OIL-AVZ", 5).await;
    let start = level(&edge, &store, "FLT-OIL-AVZ").await;

    let (status, body) = adjust(
        &edge,
        &store,
        json!({"sku": "FLT-OIL-AVZ", "reason": "DAMAGE", "qty": 2, "note": "Kardus basah"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["adjustment"]["delta"], -2);
    assert_eq!(body["adjustment"]["adjustment"], "DAMAGE");
    assert_eq!(body["stock"]["on_hand"], start - 2);

    let (status, body) = adjust(
        &edge,
        &store,
        json!({"sku": "FLT-OIL-AVZ", "reason": "RETURN_TO_SUPPLIER", "qty": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["stock"]["on_hand"], start - 3);

    let (status, body) = adjust(
        &edge,
        &store,
        json!({"sku": "FLT-OIL-AVZ", "reason": "COUNT", "counted": start + 4}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["adjustment"]["delta"], 7);
    assert_eq!(level(&edge, &store, "FLT-OIL-AVZ").await, start + 4);

    // Refusals change nothing: below zero, a count that matches, the wrong role, bad input.
    let before = snapshot(&site);
    let refusals = [
        (
            &store,
            json!({"sku": "FLT-OIL-AVZ", "reason": "DAMAGE", "qty": start + 5}),
            StatusCode::CONFLICT,
            "insufficient_stock",
        ),
        (
            &store,
            json!({"sku": "FLT-OIL-AVZ", "reason": "COUNT", "counted": start + 4}),
            StatusCode::CONFLICT,
            "no_difference",
        ),
        (
            &tablet,
            json!({"sku": "FLT-OIL-AVZ", "reason": "DAMAGE", "qty": 1}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &store,
            json!({"sku": "FLT-OIL-AVZ", "reason": "COUNT", "qty": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            &store,
            json!({"sku": "FLT-OIL-AVZ", "reason": "DAMAGE", "counted": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            &store,
            json!({"sku": "FLT-OIL-AVZ", "reason": "THEFT", "qty": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            &store,
            json!({"sku": "NOPE", "reason": "DAMAGE", "qty": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            &store,
            json!({"sku": "FLT-OIL-AVZ", "reason": "DAMAGE", "qty": 1, "note": "x".repeat(501)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            &store,
            json!({"sku": "FLT-OIL-AVZ", "reason": "COUNT", "counted": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            &store,
            json!({"sku": "FLT-OIL-AVZ", "reason": "WORK_ORDER_RETURN", "qty": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
    ];
    for (dev, body, want, code) in refusals {
        let (status, answer) = adjust(&edge, dev, body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
        if !code.is_empty() {
            assert_eq!(answer["error"]["code"], code, "{body} -> {answer}");
        }
    }
    // Without a manager's approval, or with a cashier's PIN as the approval: refused.
    let damage = json!({"sku": "FLT-OIL-AVZ", "reason": "DAMAGE", "qty": 1});
    for (approval, want, code) in [
        (None, StatusCode::FORBIDDEN, "manager_required"),
        (Some("kasir-budi:1357"), StatusCode::FORBIDDEN, "forbidden"),
        (
            Some("mgr-rina:0000"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ] {
        let headers: Vec<(&str, &str)> = approval
            .map(|a| ("Sentra-Manager", a))
            .into_iter()
            .collect();
        let (status, answer) = edge
            .call_with(
                Some(&store.token),
                Method::POST,
                "/v1/stock/adjustments",
                Some(damage.clone()),
                None,
                &headers,
            )
            .await;
        assert_eq!(status, want, "{approval:?} -> {answer}");
        assert_eq!(answer["error"]["code"], code, "{approval:?} -> {answer}");
    }
    assert_eq!(snapshot(&site), before);

    let events = adjusted_events(&site);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["adjustment"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["DAMAGE", "RETURN_TO_SUPPLIER", "COUNT"]);
    assert_eq!(events[0]["reason"], "ADJUSTMENT");
    assert_eq!(events[0]["note"], "Kardus basah");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_shows_its_differences_then_applies_once() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let store = edge.pair(&site, "storekeeper").await;
    let tablet = edge.pair(&site, "tablet").await;
    let oil = level(&edge, &store, "OIL-10W40-1L").await;
    let pads = level(&edge, &store, "BRK-PAD-FR").await;
    let filters = level(&edge, &store, "FLT-OIL-AVZ").await;

    let (status, count) = edge
        .post(
            &store,
            "/v1/stock-counts",
            json!({"skus": ["OIL-10W40-1L", "BRK-PAD-FR", "FLT-OIL-AVZ"], "note": "Rak A"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{count}");
    assert_eq!(count["status"], "OPEN");
    let id = count["id"].as_str().expect("id").to_owned();
    let lines = format!("/v1/stock-counts/{id}/lines");

    // A second count cannot open beside it.
    let (status, body) = edge.post(&store, "/v1/stock-counts", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "count_open");

    // Oil by scanned barcode, one scan at a time, then the rest at once: oil - 1 on the shelf.
    for _ in 0..2 {
        let (status, body) = edge
            .post(&store, &lines, json!({"barcode": "8991234567891"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = edge
        .post(
            &store,
            &lines,
            json!({"sku": "OIL-10W40-1L", "qty": oil - 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Pads by SKU: two more than the box thinks. Filters: exactly right.
    let (status, _) = edge
        .post(
            &store,
            &lines,
            json!({"sku": "BRK-PAD-FR", "qty": pads + 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = edge
        .post(
            &store,
            &lines,
            json!({"sku": "FLT-OIL-AVZ", "qty": filters}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Bad lines change nothing.
    let before = edge.get(&store, &format!("/v1/stock-counts/{id}")).await.1;
    for (body, want) in [
        (
            json!({"barcode": "0000000000000"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"barcode": "8991234567890"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"sku": "WPR-BLD-20"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"sku": "OIL-10W40-1L", "barcode": "8991234567891"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"sku": "OIL-10W40-1L", "qty": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, answer) = edge.post(&store, &lines, body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (status, answer) = edge
        .post(&tablet, &lines, json!({"sku": "OIL-10W40-1L"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // The differences, before anything is applied: nothing moved yet.
    let (status, shown) = edge.get(&store, &format!("/v1/stock-counts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, before);
    assert_eq!(shown["differing"], 2, "{shown}");
    let line = |sku: &str| {
        shown["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .find(|l| l["sku"] == sku)
            .cloned()
            .expect("line")
    };
    assert_eq!(line("OIL-10W40-1L")["difference"], -1);
    assert_eq!(line("OIL-10W40-1L")["counted"], oil - 1);
    assert_eq!(line("BRK-PAD-FR")["difference"], 2);
    assert_eq!(line("FLT-OIL-AVZ")["difference"], 0);
    assert_eq!(level(&edge, &store, "OIL-10W40-1L").await, oil);
    assert!(adjusted_events(&site).is_empty());

    // A dispense while the count is open is kept: applying adds only the difference.
    let (_, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Budi", "vehicle_plate": "B 1 A", "complaint": "Rem"}),
        )
        .await;
    let wo = wo["id"].as_str().expect("wo").to_owned();
    let (status, _) = edge
        .post(
            &store,
            &format!("/v1/work-orders/{wo}/parts"),
            json!({"sku": "BRK-PAD-FR", "qty": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, shown) = edge.get(&store, &format!("/v1/stock-counts/{id}")).await;
    let pads_line = shown["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["sku"] == "BRK-PAD-FR")
        .cloned()
        .expect("pads");
    assert_eq!(pads_line["moved_since"], -1, "{pads_line}");

    // A tablet may not apply.
    let (status, _) = edge
        .call(
            Some(&tablet.token),
            Method::POST,
            &format!("/v1/stock-counts/{id}/apply"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nor the storekeeper without a manager's approval.
    let (status, body) = edge
        .call(
            Some(&store.token),
            Method::POST,
            &format!("/v1/stock-counts/{id}/apply"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "manager_required");

    let (status, applied) = apply(&edge, &store, &id, Some("apply-1")).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["status"], "APPLIED");
    assert_eq!(level(&edge, &store, "OIL-10W40-1L").await, oil - 1);
    assert_eq!(level(&edge, &store, "BRK-PAD-FR").await, pads + 2 - 1);
    assert_eq!(level(&edge, &store, "FLT-OIL-AVZ").await, filters);
    let events = adjusted_events(&site);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["adjustment"] == "COUNT" && e["count_id"] == id.as_str())
    );

    // Applied twice (a new request, or the same one replayed): nothing more moves.
    let after = snapshot(&site);
    for key in [None, Some("apply-1"), Some("apply-2")] {
        let (status, again) = apply(&edge, &store, &id, key).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["status"], "APPLIED");
    }
    assert_eq!(snapshot(&site), after);
    let (status, body) = edge
        .call(
            Some(&store.token),
            Method::POST,
            &format!("/v1/stock-counts/{id}/cancel"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = edge
        .post(&store, &lines, json!({"sku": "OIL-10W40-1L"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "count_closed");

    // A cancelled count changes nothing and cannot be applied.
    let (_, second) = edge.post(&store, "/v1/stock-counts", json!({})).await;
    let second = second["id"].as_str().expect("id").to_owned();
    let (status, _) = edge
        .post(
            &store,
            &format!("/v1/stock-counts/{second}/lines"),
            json!({"sku": "WPR-BLD-20", "qty": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = edge
        .call(
            Some(&store.token),
            Method::POST,
            &format!("/v1/stock-counts/{second}/cancel"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "CANCELLED");
    let (status, body) = apply(&edge, &store, &second, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(snapshot(&site), after);
    let (status, _) = edge.get(&store, "/v1/stock-counts/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_from_a_work_order_never_exceed_what_was_dispensed() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let store = edge.pair(&site, "storekeeper").await;
    let tablet = edge.pair(&site, "tablet").await;
    let pos = edge.pair(&site, "pos").await;
    let oil = level(&edge, &store, "OIL-10W40-1L").await;
    let (_, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Budi", "vehicle_plate": "B 1 A", "complaint": "Ganti oli"}),
        )
        .await;
    let wo = wo["id"].as_str().expect("wo").to_owned();
    for qty in [2, 2] {
        let (status, body) = edge
            .post(
                &store,
                &format!("/v1/work-orders/{wo}/parts"),
                json!({"sku": "OIL-10W40-1L", "qty": qty}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let returns = format!("/v1/work-orders/{wo}/returns");
    let (status, body) = edge
        .post(&store, &returns, json!({"sku": "OIL-10W40-1L", "qty": 3}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["stock"]["on_hand"], oil - 1);
    assert_eq!(
        body["movements"].as_array().expect("movements").len(),
        2,
        "{body}"
    );
    assert!(
        body["movements"]
            .as_array()
            .expect("m")
            .iter()
            .all(|m| m["work_order_id"] == wo.as_str())
    );

    // More than is left on the work order, a part never dispensed to it, bad input: refused.
    let before = snapshot(&site);
    for (body, want, code) in [
        (
            json!({"sku": "OIL-10W40-1L", "qty": 2}),
            StatusCode::CONFLICT,
            "more_than_dispensed",
        ),
        (
            json!({"sku": "BRK-PAD-FR", "qty": 1}),
            StatusCode::CONFLICT,
            "more_than_dispensed",
        ),
        (
            json!({"sku": "OIL-10W40-1L", "qty": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            json!({"sku": "OIL-10W40-1L"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            json!({"sku": "NOPE", "qty": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
    ] {
        let (status, answer) = edge.post(&store, &returns, body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
        if !code.is_empty() {
            assert_eq!(answer["error"]["code"], code, "{answer}");
        }
    }
    let (status, _) = edge
        .post(
            &store,
            "/v1/work-orders/nope/returns",
            json!({"sku": "OIL-10W40-1L", "qty": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(snapshot(&site), before);

    // The invoice bills only what stayed in the car: 4 dispensed, 3 returned.
    for to in ["IN_PROGRESS", "DONE"] {
        let (status, body) = edge
            .post(
                &tablet,
                &format!("/v1/work-orders/{wo}/status"),
                json!({"status": to}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, invoice) = edge
        .post(&pos, "/v1/invoices", json!({"work_order_id": wo, "labour": [{"description": "Jasa ganti oli", "amount": 50000}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invoice}");
    let parts: Vec<&Value> = invoice["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["kind"] == "part")
        .collect();
    assert_eq!(
        parts
            .iter()
            .map(|l| l["qty"].as_i64().expect("qty"))
            .sum::<i64>(),
        1,
        "{invoice}"
    );

    // Once invoiced, a return is refused with a clear error.
    let (status, body) = edge
        .post(&store, &returns, json!({"sku": "OIL-10W40-1L", "qty": 1}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "already_invoiced");
    assert_eq!(level(&edge, &store, "OIL-10W40-1L").await, oil - 1);
    edge.stop().await;
}
