//! A replacement box (`sentra-edge enroll --replaces`): a new box for a branch whose box died
//! carries on the dead box's open work (a part returned from it included, so it is not
//! billed), with stock as it was and invoice numbers of its own.

use std::time::Duration;

use sentra_system_tests::{Cloud, Edge, EdgeSite, eventually};
use serde_json::{Value, json};
use sqlx::Row as _;

const SKU: &str = "OIL-10W40-1L";

async fn call_ok(edge: &Edge, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = edge.call(Some(token), method, path, body).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

async fn work_order(edge: &Edge, tablet: &str, store: &str, name: &str, qty: i64) -> String {
    let wo = call_ok(
        edge,
        tablet,
        "POST",
        "/v1/work-orders",
        Some(json!({"customer_name": name, "vehicle_plate": "B 1234 XYZ", "complaint": "Servis berkala"})),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    call_ok(
        edge,
        tablet,
        "POST",
        &format!("/v1/work-orders/{wo}/status"),
        Some(json!({"status": "IN_PROGRESS"})),
    )
    .await;
    call_ok(
        edge,
        store,
        "POST",
        &format!("/v1/work-orders/{wo}/parts"),
        Some(json!({"sku": SKU, "qty": qty})),
    )
    .await;
    wo
}

/// Done and invoiced: the invoice's number.
async fn invoice(edge: &Edge, tablet: &str, pos: &str, wo: &str) -> String {
    call_ok(
        edge,
        tablet,
        "POST",
        &format!("/v1/work-orders/{wo}/status"),
        Some(json!({"status": "DONE"})),
    )
    .await;
    call_ok(
        edge,
        pos,
        "POST",
        "/v1/invoices",
        Some(json!({"work_order_id": wo, "labour": [{"description": "Jasa servis", "amount": 150000}]})),
    )
    .await["number"]
        .as_str()
        .expect("number")
        .to_owned()
}

async fn on_hand(edge: &Edge, token: &str) -> i64 {
    call_ok(edge, token, "GET", &format!("/v1/stock/{SKU}"), None).await["on_hand"]
        .as_i64()
        .expect("on_hand")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_box_carries_on_the_dead_box_open_work() {
    let cloud = Cloud::start().await;
    // The branch exists once it has a token; its catalogue names the part the boxes use.
    let a_token = cloud.enrollment_token("JKT01");
    let http = sentra_system_tests::http();
    let resp = http
        .put(format!("{}/v1/branches/JKT01/parts/{SKU}", cloud.url))
        .bearer_auth(cloud.operator_token())
        .json(&json!({"sku": SKU, "name": "Oli mesin 10W-40 1 liter", "barcode": null, "price": 85000, "unit": "botol"}))
        .send()
        .await
        .expect("put part");
    assert!(
        resp.status().is_success(),
        "{}",
        resp.text().await.unwrap_or_default()
    );

    // Box A: stock, one work order invoiced, one open with parts on it; all synced.
    let a_site = EdgeSite::new("JKT01", "");
    a_site.load_demo_data();
    a_site.enroll(&cloud.url, &a_token);
    let a = a_site.start().await;
    let (tablet, store, pos) = (
        a_site.pair(&a, "tablet").await,
        a_site.pair(&a, "storekeeper").await,
        a_site.pair(&a, "pos").await,
    );
    let done = work_order(&a, &tablet, &store, "Budi", 2).await;
    let a_number = invoice(&a, &tablet, &pos, &done).await;
    let open = work_order(&a, &tablet, &store, "Sari", 3).await;
    // One of the three goes back to the shelf unused.
    call_ok(
        &a,
        &store,
        "POST",
        &format!("/v1/work-orders/{open}/returns"),
        Some(json!({"sku": SKU, "qty": 1})),
    )
    .await;
    let a_level = on_hand(&a, &store).await;
    assert_eq!(a_level, 16, "20 received, 2 and 3 dispensed, 1 returned");
    a.drained(&tablet, Duration::from_secs(30)).await;
    let mut pg = cloud.pg().await;
    let a_id: String = sqlx::query("SELECT id::text FROM devices")
        .fetch_one(&mut pg)
        .await
        .expect("device A")
        .get(0);

    // A dies.
    a.kill().await;

    // Box B: a fresh store replaces A. A store with work is refused before the token is used.
    let b_site = EdgeSite::new("JKT01", "");
    let token = cloud.enrollment_token("JKT01");
    let (code, out, err) = a_site.cli(&[
        "enroll",
        "--cloud",
        &cloud.url,
        "--token",
        &token,
        "--replaces",
        &a_id,
    ]);
    assert_ne!(code, 0, "an enrolled box is no successor: {out}");
    assert!(err.contains("already enrolled"), "{err}");
    let (code, out, err) = b_site.cli(&[
        "enroll",
        "--cloud",
        &cloud.url,
        "--token",
        &token,
        "--replaces",
        "JKT01",
    ]);
    assert_eq!(
        code, 2,
        "a device id that is none is a usage error: {out}{err}"
    );
    assert!(err.contains("--replaces"), "{err}");
    // At the box's console: the token typed at the prompt, then a wrong id, then A's.
    let (code, out, err) = b_site.cli_at_terminal(
        &["enroll", "--cloud", &cloud.url],
        &format!("{token}\nJKT01\n{a_id}\n"),
    );
    assert_eq!(code, 0, "enroll at the console, replacing A: {out}{err}");
    assert!(out.contains("replace a dead box of the branch?"), "{out}");
    assert!(
        out.contains("\"JKT01\": expected the dead box's device id"),
        "{out}"
    );
    assert!(out.contains(&format!("replaces: device {a_id}")), "{out}");
    assert!(
        out.contains("carried over: 1 open work orders with 1 part lines"),
        "{out}"
    );
    let series: String = sqlx::query("SELECT number_series FROM devices WHERE replaces = $1::uuid")
        .bind(&a_id)
        .fetch_one(&mut pg)
        .await
        .expect("B's series")
        .get(0);
    assert!(out.contains(&format!("series {series}")), "{out}");

    // B shows the open work order with its part, and the stock as A left it.
    let b = b_site.start().await;
    let (tablet, store, pos) = (
        b_site.pair(&b, "tablet").await,
        b_site.pair(&b, "storekeeper").await,
        b_site.pair(&b, "pos").await,
    );
    let carried = call_ok(&b, &tablet, "GET", &format!("/v1/work-orders/{open}"), None).await;
    assert_eq!(carried["status"], "IN_PROGRESS", "{carried}");
    assert_eq!(carried["customer_name"], "Sari");
    assert_eq!(carried["parts"][0]["sku"], SKU, "{carried}");
    assert_eq!(carried["parts"][0]["qty"], 3, "{carried}");
    assert_eq!(carried["parts"][0]["returned"], 1, "{carried}");
    assert!(
        carried["vehicle_id"].is_string(),
        "its vehicle record: {carried}"
    );
    let (status, _) = b
        .call(
            Some(&tablet),
            "GET",
            &format!("/v1/work-orders/{done}"),
            None,
        )
        .await;
    assert_eq!(
        status, 404,
        "an invoiced work order stays with the record, not the box"
    );
    assert_eq!(on_hand(&b, &store).await, a_level);

    // B invoices the open work order in its own series (the two parts used, not the returned
    // one), and carries on syncing.
    let b_number = invoice(&b, &tablet, &pos, &open).await;
    assert_ne!(b_number, a_number);
    assert!(
        b_number.contains(&format!("-{series}-")),
        "{b_number} in series {series}"
    );
    let st = b.drained(&tablet, Duration::from_secs(30)).await;
    assert_eq!(st["link"]["state"], "online", "{st}");

    // Everything in PostgreSQL once: the stock level is not counted twice, both work orders are
    // invoiced, each number once.
    let level: i64 =
        sqlx::query("SELECT on_hand FROM stock_levels WHERE branch_id = 'JKT01' AND sku = $1")
            .bind(SKU)
            .fetch_one(&mut pg)
            .await
            .expect("level")
            .get(0);
    assert_eq!(
        level, a_level,
        "the snapshot made no stock movement in the cloud"
    );
    for (wo, number) in [(&done, &a_number), (&open, &b_number)] {
        let row = sqlx::query(
            "SELECT w.status, count(*) OVER (), (SELECT count(*) FROM invoices i WHERE i.work_order_id = w.id AND i.number = $2)
             FROM work_orders w WHERE w.id = $1",
        )
        .bind(wo)
        .bind(number)
        .fetch_one(&mut pg)
        .await
        .expect("work order");
        assert_eq!(
            (
                row.get::<String, _>(0),
                row.get::<i64, _>(1),
                row.get::<i64, _>(2)
            ),
            ("INVOICED".to_owned(), 1, 1),
            "work order {wo}"
        );
    }
    let repeated: i64 = sqlx::query(
        "SELECT count(*) FROM (SELECT number FROM invoices GROUP BY branch_id, number HAVING count(*) > 1) r",
    )
    .fetch_one(&mut pg)
    .await
    .expect("numbers")
    .get(0);
    assert_eq!(repeated, 0, "no invoice number twice");
    let lines: String = sqlx::query("SELECT lines::text FROM invoices WHERE number = $1")
        .bind(&b_number)
        .fetch_one(&mut pg)
        .await
        .expect("B's invoice")
        .get(0);
    let lines: Value = serde_json::from_str(&lines).expect("lines");
    let parts: Vec<i64> = lines
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["kind"] == "part")
        .filter_map(|l| l["qty"].as_i64())
        .collect();
    assert_eq!(parts, [2], "the returned part is not billed: {lines}");
    let twice: i64 = sqlx::query(
        "SELECT count(*) FROM (SELECT device_id, seq FROM events GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .fetch_one(&mut pg)
    .await
    .expect("events")
    .get(0);
    assert_eq!(twice, 0, "no event twice");
    let parked: i64 = sqlx::query("SELECT count(*) FROM parked_events")
        .fetch_one(&mut pg)
        .await
        .expect("parked")
        .get(0);
    assert_eq!(parked, 0, "nothing of either box parked");

    // A comes back from the dead: its signed push is refused, and nothing of it lands.
    let a = a_site.start().await;
    let tablet_a = a_site.pair(&a, "tablet").await;
    let (status, late) = a
        .call(
            Some(&tablet_a),
            "POST",
            "/v1/work-orders",
            // A's known vehicle: one event, the work order's.
            Some(
                json!({"customer_name": "Hantu", "vehicle_plate": "B 1234 XYZ", "complaint": "x"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{late}");
    eventually(
        Duration::from_secs(30),
        "A's link to be refused",
        || async {
            let st = a.sync_status(&tablet_a).await;
            (st["link"]["state"] == "refused" && st["pending_events"] == 1).then_some(())
        },
    )
    .await;
    let landed: i64 = sqlx::query("SELECT count(*) FROM work_orders WHERE customer_name = 'Hantu'")
        .fetch_one(&mut pg)
        .await
        .expect("late work order")
        .get(0);
    assert_eq!(landed, 0);
}
