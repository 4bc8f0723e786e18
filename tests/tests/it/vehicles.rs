//! Customers and vehicles as records, end to end: work orders made while the branch is offline,
//! for one vehicle typed two ways, reach PostgreSQL linked to the one vehicle record and its
//! customer, each event exactly once.

use std::time::Duration;

use sentra_system_tests::{Cloud, EdgeSite};
use serde_json::json;
use sqlx::Row as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_orders_made_offline_reach_postgresql_linked_to_their_vehicle() {
    let cloud = Cloud::start().await;
    let site = EdgeSite::new("BDG01", "");
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;

    // Offline (not enrolled yet): two visits of one car, the plate typed two ways.
    let mut ids = Vec::new();
    for (plate, complaint) in [("d 1234  abc", "Servis berkala"), ("D1234ABC", "Rem bunyi")] {
        let (s, wo) = edge
            .call(
                Some(&tablet),
                "POST",
                "/v1/work-orders",
                Some(
                    json!({"customer_name": "Asep", "customer_phone": "0812 2222 3333",
                            "vehicle_plate": plate, "complaint": complaint}),
                ),
            )
            .await;
        assert_eq!(s, 201, "{wo}");
        ids.push((
            wo["id"].as_str().expect("id").to_owned(),
            wo["vehicle_id"].as_str().expect("vehicle_id").to_owned(),
            wo["customer_id"].as_str().expect("customer_id").to_owned(),
        ));
    }
    assert_eq!(ids[0].1, ids[1].1, "one vehicle");
    assert_eq!(ids[0].2, ids[1].2, "one customer (by phone)");
    let (vehicle, customer) = (ids[0].1.clone(), ids[0].2.clone());
    let st = edge.sync_status(&tablet).await;
    assert_eq!(
        st["pending_events"], 4,
        "customer, vehicle, two work orders: {st}"
    );
    let (s, found) = edge
        .call(
            Some(&tablet),
            "GET",
            "/v1/vehicles?plate=D%201234%20ABC",
            None,
        )
        .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["vehicle"]["id"], vehicle.as_str());

    // The link comes: everything lands once, linked.
    site.enroll(&cloud.url, &cloud.enrollment_token("BDG01"));
    edge.drained(&tablet, Duration::from_secs(60)).await;
    let mut pg = cloud.pg().await;
    // Drained: the cloud confirmed each event, projected in the same transaction.
    let linked: i64 = sqlx::query(
        "SELECT count(*) FROM work_orders
         WHERE branch_id = 'BDG01' AND vehicle_id = $1 AND customer_id = $2",
    )
    .bind(&vehicle)
    .bind(&customer)
    .fetch_one(&mut pg)
    .await
    .expect("work orders")
    .get(0);
    assert_eq!(linked, 2);
    let row = sqlx::query(
        "SELECT (SELECT value #>> '{}' FROM record_fields
                 WHERE branch_id = 'BDG01' AND entity = 'vehicle' AND entity_id = $1 AND field = 'plate'),
                (SELECT value #>> '{}' FROM record_fields
                 WHERE branch_id = 'BDG01' AND entity = 'vehicle' AND entity_id = $1 AND field = 'customer_id'),
                (SELECT value #>> '{}' FROM record_fields
                 WHERE branch_id = 'BDG01' AND entity = 'customer' AND entity_id = $2 AND field = 'phone'),
                (SELECT count(*) FROM events WHERE branch_id = 'BDG01'),
                (SELECT count(*) FROM parked_events)",
    )
    .bind(&vehicle)
    .bind(&customer)
    .fetch_one(&mut pg)
    .await
    .expect("records");
    assert_eq!(
        row.get::<Option<String>, _>(0).as_deref(),
        Some("D 1234 ABC")
    );
    assert_eq!(row.get::<Option<String>, _>(1), Some(customer.clone()));
    assert_eq!(
        row.get::<Option<String>, _>(2).as_deref(),
        Some("081222223333")
    );
    assert_eq!(row.get::<i64, _>(3), 4, "every event exactly once");
    assert_eq!(row.get::<i64, _>(4), 0, "nothing parked");
}
