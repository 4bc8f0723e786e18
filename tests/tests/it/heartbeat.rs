//! The appliance's heartbeat as the cloud keeps it: a real `sentra-edge` daemon enrolled with a
//! real `sentra-cloud` reports its version, backlog, broker and paired clients, and a pairing
//! makes it report again without waiting for the interval.

use std::time::Duration;

use sentra_system_tests::{Cloud, EdgeSite, eventually};
use sqlx::Row as _;

/// The latest heartbeat body the cloud holds for the only device of the test's database.
async fn latest(cloud: &Cloud) -> Option<serde_json::Value> {
    let mut pg = cloud.pg().await;
    sqlx::query("SELECT body::text AS body FROM device_heartbeats")
        .fetch_optional(&mut pg)
        .await
        .expect("query device_heartbeats")
        .map(|row| serde_json::from_str(&row.get::<String, _>("body")).expect("heartbeat json"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cloud_holds_what_the_box_reports_and_a_pairing_is_reported_early() {
    let cloud = Cloud::start().await;
    // An hour between scheduled heartbeats: anything after the first is a report on change.
    let site = EdgeSite::new("HBT01", "heartbeat_interval_secs = 3600\n");
    site.enroll(&cloud.url, &cloud.enrollment_token("HBT01"));
    let edge = site.start().await;

    let first = eventually(Duration::from_secs(30), "a first heartbeat", || async {
        latest(&cloud).await
    })
    .await;
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"), "{first}");
    assert_eq!(first["healthy"], true, "{first}");
    assert_eq!(first["paired_clients"], 0, "{first}");
    assert!(first["backlog"]["count"].is_u64(), "{first}");
    assert!(first["resources"]["disk_free_bytes"].is_u64(), "{first}");

    let _tablet = site.pair(&edge, "tablet").await;
    let after = eventually(
        Duration::from_secs(30),
        "a heartbeat reporting the paired tablet",
        || async {
            latest(&cloud)
                .await
                .filter(|b| b["paired_clients"] == serde_json::json!(1))
        },
    )
    .await;
    assert_eq!(after["update"]["state"], "idle", "{after}");
    // The broker's bridge has written its state by now (it does within a second of starting).
    let broker = after["broker"].as_str().expect("broker state");
    assert!(broker.starts_with("listening on 127.0.0.1:"), "{after}");
    edge.kill().await;
}
