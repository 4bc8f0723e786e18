//! The branch's day, end to end: pair → work order → dispense → invoice → payment → inspection →
//! verify, with the outbox holding exactly one event per change.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Site, open_db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_at_the_branch() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let store = edge.pair(&site, "storekeeper").await;
    let pos = edge.pair(&site, "pos").await;
    let mut changes = 5; // the demo data's opening stock receipts

    // Reception opens a work order.
    let (s, wo) = edge
        .post(&tablet, "/v1/work-orders", json!({"customer_name": "Budi Santoso", "customer_phone": "0812-3456-7890", "vehicle_plate": "b1234xyz", "complaint": "Rem bunyi saat mengerem"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    // The work order, and Budi's customer and vehicle records it made.
    changes += 3;
    assert_eq!(wo["status"], "OPEN");
    assert_eq!(wo["vehicle_plate"], "B 1234 XYZ", "plates are normalised");
    let id = wo["id"].as_str().expect("id").to_owned();
    // The answer to the create is the work order as stored, field for field.
    let (s, stored) = edge.get(&tablet, &format!("/v1/work-orders/{id}")).await;
    assert_eq!((s, &stored), (StatusCode::OK, &wo));

    let (s, b) = edge
        .post(
            &tablet,
            &format!("/v1/work-orders/{id}/assign"),
            json!({"mechanic_id": "M2"}),
        )
        .await;
    assert_eq!(
        (s, &b["mechanic_id"]),
        (StatusCode::OK, &json!("M2")),
        "{b}"
    );
    changes += 1;
    let (s, b) = edge
        .post(
            &tablet,
            &format!("/v1/work-orders/{id}/status"),
            json!({"status": "IN_PROGRESS"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    changes += 1;
    let (s, b) = edge
        .post(
            &tablet,
            &format!("/v1/work-orders/{id}/status"),
            json!({"status": "INVOICED"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_transition")),
        "{b}"
    );

    // The storekeeper dispenses brake pads; stock cannot go below zero.
    let (s, b) = edge
        .post(
            &store,
            &format!("/v1/work-orders/{id}/parts"),
            json!({"sku": "brk-pad-fr", "qty": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["stock"]["on_hand"], 18);
    changes += 1;
    let (s, b) = edge
        .post(
            &store,
            &format!("/v1/work-orders/{id}/parts"),
            json!({"sku": "BRK-PAD-FR", "qty": 19}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("insufficient_stock")),
        "{b}"
    );
    let (s, b) = edge.get(&store, "/v1/stock/BRK-PAD-FR").await;
    assert_eq!(
        (s, &b["on_hand"]),
        (StatusCode::OK, &json!(18)),
        "a refused dispense changes nothing"
    );
    let (s, b) = edge
        .post(
            &store,
            "/v1/stock/receipts",
            json!({"sku": "BRK-PAD-FR", "qty": 4, "reference": "SJ-001"}),
        )
        .await;
    assert_eq!((s, &b["on_hand"]), (StatusCode::CREATED, &json!(22)), "{b}");
    changes += 1;

    let (s, _) = edge
        .post(
            &tablet,
            &format!("/v1/work-orders/{id}/status"),
            json!({"status": "DONE"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    changes += 1;

    // The cashier invoices: labour plus the parts, PPN 11 %, a branch-unique number.
    let (s, inv) = edge
        .post(&pos, "/v1/invoices", json!({"work_order_id": id, "labour": [{"description": "Ganti kampas rem depan", "amount": 150000}]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    changes += 1;
    assert_eq!(
        (
            inv["subtotal"].as_i64(),
            inv["tax"].as_i64(),
            inv["total"].as_i64()
        ),
        (Some(700_000), Some(77_000), Some(777_000))
    );
    let number = inv["number"].as_str().expect("number");
    assert!(
        number.starts_with("JKT01-") && number.ends_with("-00001"),
        "{number}"
    );
    let inv_id = inv["id"].as_str().expect("id").to_owned();
    let (_, b) = edge.get(&tablet, &format!("/v1/work-orders/{id}")).await;
    assert_eq!(b["status"], "INVOICED");
    let (s, b) = edge
        .post(&pos, "/v1/invoices", json!({"work_order_id": id}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_invoiced")),
        "{b}"
    );

    // Payments: QRIS needs its reference; no overpaying.
    let (s, b) = edge
        .post(
            &pos,
            &format!("/v1/invoices/{inv_id}/payments"),
            json!({"method": "QRIS", "amount": 500000}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reference")),
        "{b}"
    );
    let (s, b) = edge
        .post(
            &pos,
            &format!("/v1/invoices/{inv_id}/payments"),
            json!({"method": "QRIS", "amount": 500000, "reference": "QR-1"}),
        )
        .await;
    assert_eq!(
        (s, b["status"].as_str(), b["balance"].as_i64()),
        (StatusCode::CREATED, Some("PARTIALLY_PAID"), Some(277_000)),
        "{b}"
    );
    changes += 1;
    let (s, b) = edge
        .post(
            &pos,
            &format!("/v1/invoices/{inv_id}/payments"),
            json!({"method": "CASH", "amount": 300000}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("overpayment")),
        "{b}"
    );
    let (s, b) = edge
        .post(
            &pos,
            &format!("/v1/invoices/{inv_id}/payments"),
            json!({"method": "CASH", "amount": 277000}),
        )
        .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::CREATED, Some("PAID")),
        "{b}"
    );
    changes += 1;
    // A credit note is a manager's decision: the demo manager approves it on the spot.
    let (s, b) = edge
        .call_with(
            Some(&pos.token),
            reqwest::Method::POST,
            &format!("/v1/invoices/{inv_id}/credit-notes"),
            Some(json!({"amount": 50000, "reason": "Diskon pelanggan tetap"})),
            None,
            &[("Sentra-Manager", "mgr-rina:2468")],
        )
        .await;
    assert_eq!(
        (s, b["status"].as_str(), b["balance"].as_i64()),
        (StatusCode::CREATED, Some("REFUND_DUE"), Some(-50_000)),
        "{b}"
    );
    assert!(
        b["credit_notes"][0]["number"]
            .as_str()
            .expect("cn number")
            .starts_with("JKT01-CN-")
    );
    changes += 1;
    let (s, job) = edge
        .call(
            Some(&pos.token),
            reqwest::Method::POST,
            &format!("/v1/invoices/{inv_id}/print"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (s, job["status"].as_str()),
        (StatusCode::ACCEPTED, Some("QUEUED")),
        "{job}"
    );
    changes += 1;
    let (s, b) = edge
        .get(
            &pos,
            &format!("/v1/print-jobs/{}", job["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(
        (s, b["document"].as_str()),
        (StatusCode::OK, Some("invoice"))
    );

    // Handover inspections, chained per asset, verified, then tampered with.
    let digest = "ab".repeat(32);
    let inspection = |odo: u32| {
        json!({"asset_id": "CAR-001", "kind": "HANDOVER", "checklist": [{"item": "Lampu depan", "ok": true}, {"item": "Ban serep", "ok": false, "note": "kempes"}],
               "photos": [digest.clone()], "signature": {"signer": "Budi Santoso", "digest": digest.clone()}, "odometer_km": odo, "fuel_percent": 50})
    };
    let (s, first) = edge
        .post(&tablet, "/v1/inspections", inspection(12_000))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    changes += 1;
    let (s, second) = edge
        .post(&tablet, "/v1/inspections", inspection(12_480))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    changes += 1;
    assert_eq!(
        second["prev_hash"], first["tamper_proof_hash"],
        "chained to the asset's previous inspection"
    );
    assert_eq!(second["chain_index"], 1);
    let second_id = second["id"].as_str().expect("id");
    let (s, v) = edge
        .get(&tablet, &format!("/v1/inspections/{second_id}/verify"))
        .await;
    assert_eq!(
        (s, v["valid"].as_bool(), v["checked"].as_i64()),
        (StatusCode::OK, Some(true), Some(2)),
        "{v}"
    );

    {
        let db = open_db(&site);
        db.execute(
            "UPDATE inspections SET odometer_km = 11000 WHERE id = ?1",
            [first["id"].as_str().expect("id")],
        )
        .expect("tamper");
    }
    let (_, v) = edge
        .get(&tablet, &format!("/v1/inspections/{second_id}/verify"))
        .await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["first_broken"]["id"], first["id"], "{v}");

    // Exactly one outbox event per change, gapless.
    let (s, st) = edge.get(&tablet, "/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(st["last_seq"].as_i64(), Some(changes), "{st}");
    assert_eq!(st["pending_events"].as_i64(), Some(changes));
    let db = open_db(&site);
    let (count, min, max): (i64, i64, i64) = db
        .query_row(
            "SELECT count(*), min(seq), max(seq) FROM sync_event_logs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("outbox");
    assert_eq!((count, min, max), (changes, 1, changes));
    let entities: Vec<String> = db
        .prepare("SELECT entity || ':' || op FROM sync_event_logs WHERE seq > 5 ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        entities,
        [
            "customer:fields_set",
            "vehicle:fields_set",
            "work_order:created",
            "work_order:assigned",
            "work_order:status_changed",
            "stock_movement:dispensed",
            "stock_movement:received",
            "work_order:status_changed",
            "invoice:issued",
            "payment:received",
            "payment:received",
            "credit_note:issued",
            "print_job:queued",
            "inspection:recorded",
            "inspection:recorded",
        ]
    );
    let hlcs: Vec<String> = db
        .prepare("SELECT hlc FROM sync_event_logs ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("q")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(
        hlcs.windows(2).all(|w| w[0] < w[1]),
        "HLC stamps strictly increase with seq"
    );

    // Every payload is exactly the wire type the cloud parses.
    let mut stmt = db
        .prepare("SELECT seq, entity, op, payload FROM sync_event_logs ORDER BY seq")
        .expect("prepare");
    let rows: Vec<(i64, String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("q")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (seq, entity, op, payload) in rows {
        let kind = sentra_protocol::EntityKind::parse(&entity).expect("known entity");
        let value: serde_json::Value = serde_json::from_str(&payload).expect("json");
        if let Err(e) = sentra_protocol::payload::Payload::parse(kind, &op, &value) {
            panic!("event {seq} {entity}:{op} does not match the protocol: {e}\n{payload}");
        }
    }
    drop(stmt);

    // Money is append-only even for someone with the key and SQL.
    assert!(db.execute("UPDATE invoices SET total = 1", []).is_err());
    assert!(db.execute("DELETE FROM payments", []).is_err());

    assert_eq!(edge.stop().await, 0, "SIGTERM is a clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi() {
    let site = Site::new();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    let (s, b) = edge
        .call(None, reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, b) = edge
        .call(None, reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ready")));

    // /metrics is Prometheus text: every sample line is `name{labels} value`.
    let text = edge
        .http
        .get(format!("{}/metrics", edge.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        "sentra_edge_http_requests_total{",
        "sentra_edge_outbox_pending_events ",
        "sentra_edge_store_commits_total{",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().expect("value");
        assert!(value.parse::<f64>().is_ok(), "not a sample line: {line}");
    }

    // The OpenAPI document lists every route of the router.
    let (s, doc) = edge.get(&admin, "/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        "/v1/pair",
        "/v1/work-orders",
        "/v1/work-orders/{id}",
        "/v1/work-orders/{id}/status",
        "/v1/work-orders/{id}/assign",
        "/v1/work-orders/{id}/parts",
        "/v1/stock/{sku}",
        "/v1/stock/receipts",
        "/v1/stock/adjustments",
        "/v1/stock-counts",
        "/v1/stock-counts/{id}",
        "/v1/stock-counts/{id}/lines",
        "/v1/stock-counts/{id}/apply",
        "/v1/stock-counts/{id}/cancel",
        "/v1/work-orders/{id}/returns",
        "/v1/parts",
        "/v1/mechanics",
        "/v1/assets",
        "/v1/invoices",
        "/v1/invoices/{id}",
        "/v1/invoices/{id}/payments",
        "/v1/invoices/{id}/credit-notes",
        "/v1/payments/{id}/void",
        "/v1/invoices/{id}/print",
        "/v1/print-jobs/{id}",
        "/v1/inspections",
        "/v1/inspections/{id}",
        "/v1/inspections/{id}/verify",
        "/v1/inspections/{id}/remarks",
        "/v1/work-orders/{id}/notes",
        "/v1/customers",
        "/v1/customers/{id}",
        "/v1/vehicles",
        "/v1/vehicles/{id}",
        "/v1/vehicles/{id}/history",
        "/v1/sync/status",
        "/v1/devices",
        "/v1/devices/{id}/revoke",
        "/v1/devices/self/rotate",
        "/v1/pick-slips",
        "/v1/pick-slips/{id}",
        "/v1/pick-slips/{id}/close",
        "/v1/scanner",
        "/v1/bookings",
        "/v1/bookings/{id}",
        "/v1/bookings/{id}/confirm",
        "/v1/bookings/{id}/cancel",
        "/v1/bookings/{id}/complete",
        "/v1/bookings/{id}/handover",
        "/v1/bookings/{id}/return",
        "/v1/bookings/{id}/rental",
        "/v1/bookings/{id}/print",
        "/v1/tariffs",
        "/v1/waitlist",
        "/v1/assets/{id}/availability",
        "/v1/blobs/{sha256}",
        "/v1/staff/sessions",
        "/v1/staff/sessions/current",
        "/v1/shifts",
        "/v1/shifts/{id}",
        "/v1/shifts/{id}/close",
        "/v1/days/{date}",
        "/v1/days/{date}/close",
        "/v1/days/{date}/reopen",
        "/healthz",
        "/readyz",
        "/metrics",
    ];
    for p in expected {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        paths.len(),
        expected.len(),
        "a route was added to the document but not to this list: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
}
