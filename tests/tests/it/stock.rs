//! A cycle count applied while the link is down reaches PostgreSQL exactly once: its COUNT
//! adjustments, a damage write-off and a work-order return wait in the outbox, the link comes
//! back, and the cloud's stock levels are the box's, with every event in PostgreSQL once.

use std::time::Duration;

use sentra_system_tests::{Cloud, EdgeSite, Proxy, ProxyMode, eventually};
use serde_json::json;
use sqlx::Row as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_applied_offline_reaches_postgresql_once() {
    let cloud = Cloud::start().await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 7).await;
    let site = EdgeSite::new("SMG01", "");
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    let keeper = site.pair(&edge, "storekeeper").await;
    site.enroll(&proxy.url, &cloud.enrollment_token("SMG01"));
    edge.drained(&keeper, Duration::from_secs(30)).await;

    proxy.set(ProxyMode::Down);
    let call = |token: &str, path: &str, body: serde_json::Value| {
        let (edge, token, path) = (&edge, token.to_owned(), path.to_owned());
        // The demo's manager approves (adjusting and applying need it; other writes ignore it).
        async move {
            edge.call_with(
                Some(&token),
                "POST",
                &path,
                Some(body),
                &[("Sentra-Manager", "mgr-rina:2468")],
            )
            .await
        }
    };
    let (s, wo) = call(
        &tablet,
        "/v1/work-orders",
        json!({"customer_name": "Sari", "vehicle_plate": "H 1 AB", "complaint": "Ganti kampas"}),
    )
    .await;
    assert_eq!(s, 201, "{wo}");
    let wo = wo["id"].as_str().expect("wo").to_owned();
    let (s, b) = call(
        &keeper,
        &format!("/v1/work-orders/{wo}/parts"),
        json!({"sku": "BRK-PAD-FR", "qty": 2}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &keeper,
        &format!("/v1/work-orders/{wo}/returns"),
        json!({"sku": "BRK-PAD-FR", "qty": 1}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &keeper,
        "/v1/stock/adjustments",
        json!({"sku": "FLT-OIL-AVZ", "reason": "DAMAGE", "qty": 2}),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    let (s, count) = call(&keeper, "/v1/stock-counts", json!({})).await;
    assert_eq!(s, 201, "{count}");
    let id = count["id"].as_str().expect("count").to_owned();
    for (line, body) in [
        ("oil", json!({"barcode": "8991234567891", "qty": 16})),
        ("pads", json!({"sku": "BRK-PAD-FR", "qty": 21})),
    ] {
        let (s, b) = call(&keeper, &format!("/v1/stock-counts/{id}/lines"), body).await;
        assert_eq!(s, 200, "{line}: {b}");
    }
    for _ in 0..2 {
        let (s, b) = call(
            &keeper,
            &format!("/v1/stock-counts/{id}/apply"),
            json!(null),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["status"], "APPLIED");
    }
    let box_levels = {
        let mut v = Vec::new();
        for sku in ["BRK-PAD-FR", "FLT-OIL-AVZ", "OIL-10W40-1L"] {
            let (s, b) = edge
                .call(Some(&keeper), "GET", &format!("/v1/stock/{sku}"), None)
                .await;
            assert_eq!(s, 200, "{b}");
            v.push((sku.to_owned(), b["on_hand"].as_i64().expect("on_hand")));
        }
        v
    };
    assert_eq!(box_levels[0].1, 21);
    assert_eq!(box_levels[2].1, 16);
    eventually(
        Duration::from_secs(30),
        "the edge to notice the link is down",
        || async { (edge.sync_status(&keeper).await["link"]["state"] == "offline").then_some(()) },
    )
    .await;

    proxy.set(ProxyMode::Pass);
    let st = edge.drained(&keeper, Duration::from_secs(60)).await;
    crate::sync::audit(&cloud, st["last_seq"].as_i64().expect("seq")).await;
    let mut pg = cloud.pg().await;
    for (sku, on_hand) in &box_levels {
        let cloud_level: i64 =
            sqlx::query("SELECT on_hand FROM stock_levels WHERE branch_id = 'SMG01' AND sku = $1")
                .bind(sku)
                .fetch_one(&mut pg)
                .await
                .expect("level")
                .get(0);
        assert_eq!(
            cloud_level, *on_hand,
            "{sku}: the cloud's level is the box's"
        );
    }
    let kinds: Vec<(String, i64)> = sqlx::query(
        "SELECT adjustment, count(*) FROM stock_movements WHERE branch_id = 'SMG01' AND reason = 'ADJUSTMENT' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mut pg)
    .await
    .expect("adjustments")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        kinds,
        [
            ("COUNT".to_owned(), 2),
            ("DAMAGE".to_owned(), 1),
            ("WORK_ORDER_RETURN".to_owned(), 1)
        ]
    );
    let counted: i64 = sqlx::query("SELECT count(*) FROM stock_movements WHERE count_id = $1")
        .bind(&id)
        .fetch_one(&mut pg)
        .await
        .expect("count")
        .get(0);
    assert_eq!(counted, 2, "the count's adjustments, once each");
}
