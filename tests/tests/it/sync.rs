//! Edge ⇄ cloud sync over real sockets: enrolment, push into PostgreSQL exactly once, master data
//! back to the branch, a link that goes down and returns, a proxy that breaks thousands of
//! requests under a write storm, and a long offline backlog.

use std::time::{Duration, Instant};

use sentra_system_tests::{Cloud, EdgeSite, Proxy, ProxyMode, eventually};
use serde_json::json;
use sha2::Digest as _;
use sqlx::Row as _;

/// Every event the cloud holds for `device`, counted per sequence number: exactly once each.
pub(crate) async fn audit(cloud: &Cloud, last_seq: i64) {
    let mut pg = cloud.pg().await;
    let dupes: i64 = sqlx::query("SELECT count(*) FROM (SELECT device_id, seq FROM events GROUP BY 1, 2 HAVING count(*) > 1) d")
        .fetch_one(&mut pg)
        .await
        .expect("audit")
        .get(0);
    assert_eq!(dupes, 0, "no event is in PostgreSQL twice");
    let (count, max): (i64, Option<i64>) = {
        let row = sqlx::query("SELECT count(*), max(seq) FROM events")
            .fetch_one(&mut pg)
            .await
            .expect("count");
        (row.get(0), row.get(1))
    };
    let parked: i64 = sqlx::query("SELECT count(*) FROM parked_events")
        .fetch_one(&mut pg)
        .await
        .expect("parked")
        .get(0);
    assert_eq!(
        count + parked,
        last_seq,
        "every event of the edge is in the cloud (applied {count}, parked {parked})"
    );
    assert_eq!(
        max.unwrap_or(0).max(if parked > 0 { last_seq } else { 0 }),
        last_seq
    );
}

async fn create_work_order(edge: &sentra_system_tests::Edge, token: &str, name: &str) -> String {
    let (s, b) = edge
        .call(Some(token), "POST", "/v1/work-orders", Some(json!({"customer_name": name, "vehicle_plate": "B 1234 XYZ", "complaint": "Servis berkala"})))
        .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_push_pull_end_to_end() {
    let cloud = Cloud::start().await;
    let site = EdgeSite::new("JKT01", "");
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    let store = site.pair(&edge, "storekeeper").await;

    // Before enrolment the changes wait in the outbox.
    let wo = create_work_order(&edge, &tablet, "Budi").await;
    let st = edge.sync_status(&tablet).await;
    assert_eq!(st["link"]["state"], "unenrolled", "{st}");
    // The demo data's events, the work order's customer and vehicle records, the work order.
    assert_eq!(st["pending_events"], 8, "{st}");

    // Enrol while the daemon runs; it picks the identity up and drains.
    site.enroll(&cloud.url, &cloud.enrollment_token("JKT01"));
    let (s, b) = edge
        .call(
            Some(&store),
            "POST",
            &format!("/v1/work-orders/{wo}/parts"),
            Some(json!({"sku": "OIL-10W40-1L", "qty": 3})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let st = edge.drained(&tablet, Duration::from_secs(30)).await;
    assert_eq!(st["link"]["state"], "online", "{st}");
    let last_seq = st["last_seq"].as_i64().expect("seq");
    audit(&cloud, last_seq).await;

    // The projections the cloud team queries match the branch.
    let mut pg = cloud.pg().await;
    let row = sqlx::query("SELECT branch_id, customer_name, status FROM work_orders WHERE id = $1")
        .bind(&wo)
        .fetch_one(&mut pg)
        .await
        .expect("work order projected");
    assert_eq!(
        (
            row.get::<String, _>(0),
            row.get::<String, _>(1),
            row.get::<String, _>(2)
        ),
        ("JKT01".into(), "Budi".into(), "OPEN".into())
    );
    let on_hand: i64 = sqlx::query(
        "SELECT on_hand FROM stock_levels WHERE branch_id = 'JKT01' AND sku = 'OIL-10W40-1L'",
    )
    .fetch_one(&mut pg)
    .await
    .expect("stock")
    .get(0);
    assert_eq!(on_hand, 17, "20 received, 3 dispensed: deltas add up");

    // Master data authored in the cloud reaches the branch and wins.
    let op = cloud.operator_token();
    let http = sentra_system_tests::http();
    let resp = http
        .put(format!("{}/v1/branches/JKT01/parts/OIL-10W40-1L", cloud.url))
        .bearer_auth(&op)
        .json(&json!({"sku": "OIL-10W40-1L", "name": "Oli mesin 10W-40 1 liter (baru)", "barcode": "8991234567895", "price": 92000, "unit": "botol"}))
        .send()
        .await
        .expect("put part");
    assert!(
        resp.status().is_success(),
        "{}",
        resp.text().await.unwrap_or_default()
    );
    eventually(
        Duration::from_secs(30),
        "the new price at the branch",
        || async {
            let (_, parts) = edge.call(Some(&tablet), "GET", "/v1/parts", None).await;
            parts
                .as_array()?
                .iter()
                .any(|p| p["sku"] == "OIL-10W40-1L" && p["price"] == 92000)
                .then_some(())
        },
    )
    .await;

    // A revoked device is refused, and the branch shows it.
    let device: String = sqlx::query("SELECT id::text FROM devices")
        .fetch_one(&mut pg)
        .await
        .expect("device")
        .get(0);
    let resp = http
        .post(format!("{}/v1/devices/{device}/revoke", cloud.url))
        .bearer_auth(&op)
        .send()
        .await
        .expect("revoke");
    assert!(resp.status().is_success());
    create_work_order(&edge, &tablet, "Setelah dicabut").await;
    eventually(
        Duration::from_secs(30),
        "the link to be refused",
        || async {
            let st = edge.sync_status(&tablet).await;
            (st["link"]["state"] == "refused" && st["pending_events"] == 1).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_link_is_used_within_seconds() {
    let cloud = Cloud::start().await;
    let upstream = cloud.url.trim_start_matches("http://").to_owned();
    let proxy = Proxy::start(upstream, 1).await;
    let site = EdgeSite::new("BDG01", "");
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    site.enroll(&proxy.url, &cloud.enrollment_token("BDG01"));
    edge.drained(&tablet, Duration::from_secs(30)).await;

    proxy.set(ProxyMode::Down);
    for i in 0..20 {
        create_work_order(&edge, &tablet, &format!("offline {i}")).await;
    }
    eventually(
        Duration::from_secs(30),
        "the edge to notice the link is down",
        || async { (edge.sync_status(&tablet).await["link"]["state"] == "offline").then_some(()) },
    )
    .await;
    // Let the backoff reach its cap before the link returns.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = proxy.connections.load(std::sync::atomic::Ordering::Relaxed);
    proxy.set(ProxyMode::Pass);
    let back = Instant::now();
    let st = edge.drained(&tablet, Duration::from_secs(60)).await;
    let took = back.elapsed();
    eprintln!(
        "link returned: outbox drained {:.2} s later ({} connection attempts while down)",
        took.as_secs_f64(),
        before
    );
    assert_eq!(st["link"]["state"], "online");
    audit(&cloud, st["last_seq"].as_i64().expect("seq")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_faults_under_a_write_storm_lose_and_duplicate_nothing() {
    let target_faults: u64 = std::env::var("SENTRA_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("SENTRA_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("fault test: {target_faults} faults, SENTRA_FAULT_SEED={seed}");
    let cloud = Cloud::start().await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), seed).await;
    // Small batches and a short retry cap: many requests, so many faults, in little time.
    let site = EdgeSite::new(
        "SBY01",
        "batch_events = 10\nretry_max_ms = 20\nrequest_timeout_ms = 2000\n",
    );
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    let store = site.pair(&edge, "storekeeper").await;
    site.enroll(&proxy.url, &cloud.enrollment_token("SBY01"));
    proxy.set(ProxyMode::Faulty);

    // A write storm from two devices at once while the proxy breaks the sync link.
    let started = Instant::now();
    let edge = std::sync::Arc::new(edge);
    let mut storm = Vec::new();
    for w in 0..2 {
        let (edge, tablet, store, faults) = (
            edge.clone(),
            tablet.clone(),
            store.clone(),
            proxy.faults.clone(),
        );
        storm.push(tokio::spawn(async move {
            let mut wos = Vec::new();
            while faults.load(std::sync::atomic::Ordering::Relaxed) < target_faults {
                assert!(
                    started.elapsed() < Duration::from_secs(600),
                    "fault storm took too long"
                );
                let wo =
                    create_work_order(&edge, &tablet, &format!("storm {w}-{}", wos.len())).await;
                let (s, b) = edge
                    .call(
                        Some(&store),
                        "POST",
                        "/v1/stock/receipts",
                        Some(json!({"sku": "BRK-PAD-FR", "qty": 1})),
                    )
                    .await;
                assert_eq!(s, 201, "{b}");
                let (s, b) = edge
                    .call(
                        Some(&store),
                        "POST",
                        &format!("/v1/work-orders/{wo}/parts"),
                        Some(json!({"sku": "BRK-PAD-FR", "qty": 1})),
                    )
                    .await;
                assert_eq!(s, 201, "{b}");
                wos.push(wo);
                // A busy branch, not a flood: the faults come from retries, not from a backlog.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            wos
        }));
    }
    let mut wos = Vec::new();
    for s in storm {
        wos.extend(s.await.expect("writer"));
    }
    let writes = wos.len() * 3;
    proxy.set(ProxyMode::Pass);
    let st = edge.drained(&tablet, Duration::from_secs(300)).await;
    let last_seq = st["last_seq"].as_i64().expect("seq");
    eprintln!(
        "fault test: {writes} writes, {} faults over {} connections in {:.1} s",
        proxy.faults.load(std::sync::atomic::Ordering::Relaxed),
        proxy.connections.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    audit(&cloud, last_seq).await;

    // Nothing parked that should not be, and the projections equal the edge.
    let mut pg = cloud.pg().await;
    let parked: i64 = sqlx::query("SELECT count(*) FROM parked_events")
        .fetch_one(&mut pg)
        .await
        .expect("parked")
        .get(0);
    assert_eq!(parked, 0);
    let cloud_wos: i64 = sqlx::query("SELECT count(*) FROM work_orders WHERE branch_id = 'SBY01'")
        .fetch_one(&mut pg)
        .await
        .expect("wos")
        .get(0);
    assert_eq!(cloud_wos as usize, wos.len());
    let edge_db = site.open_db();
    let mut stmt = edge_db
        .prepare("SELECT sku, sum(delta) FROM stock_movements GROUP BY sku ORDER BY sku")
        .expect("prepare");
    let edge_stock: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("q")
        .collect::<Result<_, _>>()
        .expect("rows");
    let cloud_stock: Vec<(String, i64)> =
        sqlx::query("SELECT sku, on_hand FROM stock_levels WHERE branch_id = 'SBY01' ORDER BY sku")
            .fetch_all(&mut pg)
            .await
            .expect("stock")
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(
        cloud_stock, edge_stock,
        "stock per part is the same on both sides"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_offline_backlog_catches_up() {
    let events: usize = std::env::var("SENTRA_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cloud = Cloud::start().await;
    let site = EdgeSite::new("MDN01", "");
    // Days offline: write the backlog through the store itself (the API path is tested elsewhere).
    site.write_offline_backlog(events).await;
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    // The first work order also made its customer and its vehicle (one event each); the others
    // found them by phone and plate.
    assert_eq!(
        edge.sync_status(&tablet).await["pending_events"].as_u64(),
        Some(events as u64 + 2)
    );
    let started = Instant::now();
    site.enroll(&cloud.url, &cloud.enrollment_token("MDN01"));
    let st = edge.drained(&tablet, Duration::from_secs(600)).await;
    eprintln!(
        "backlog of {events} events confirmed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    audit(&cloud, events as i64 + 2).await;
    assert_eq!(st["pending_bytes"], 0);
}

/// A box whose link was down for nights: when it is back, each backup it still keeps goes to the
/// cloud, not only the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_back_from_nights_offline_uploads_each_backup_it_kept() {
    let cloud = Cloud::start().await;
    let site = EdgeSite::new("SBY01", "");
    site.enroll(&cloud.url, &cloud.enrollment_token("SBY01"));
    let dir = site.dir.path().join("backups");
    let into = dir.to_str().expect("utf-8 path");
    // Three nights with the daemon down: the timer's `backup --into DIR --keep 2`. Names carry
    // the second, so the nights are a second apart.
    for night in 0..3 {
        if night > 0 {
            std::thread::sleep(Duration::from_millis(1100));
        }
        let (code, out, err) = site.cli(&["backup", "--into", into, "--keep", "2"]);
        assert_eq!(code, 0, "backup: {out}{err}");
    }
    let kept: Vec<String> = std::fs::read_dir(&dir)
        .expect("backups")
        .map(|e| {
            hex::encode(sha2::Sha256::digest(
                std::fs::read(e.expect("entry").path()).expect("backup"),
            ))
        })
        .collect();
    assert_eq!(kept.len(), 2, "the third night pruned the first");

    let edge = site.start().await;
    eventually(
        Duration::from_secs(90),
        "both kept backups are in the cloud",
        || async {
            let mut pg = cloud.pg().await;
            let held: i64 = sqlx::query(
                "SELECT count(*) FROM blobs JOIN device_backups USING (digest) WHERE digest = ANY($1)",
            )
            .bind(&kept)
            .fetch_one(&mut pg)
            .await
            .expect("blobs")
            .get(0);
            (held == 2).then_some(())
        },
    )
    .await;
    let (code, out, err) = site.cli(&["doctor"]);
    assert!(
        out.contains("backup in the cloud: the newest"),
        "doctor ({code}): {out}{err}"
    );
    edge.kill().await;
}

/// A box restored from an older backup: what it makes after the restore reuses sequence numbers
/// the cloud already holds (from the old box's work after the backup). The cloud tells the two
/// apart by content (`409 sequence_fork`), the box renumbers its new events after the cloud's,
/// and every work order of all three periods ends in PostgreSQL once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_restored_from_an_older_backup_loses_nothing_made_after_the_restore() {
    let cloud = Cloud::start().await;
    let site = EdgeSite::new("JKT01", "");
    site.enroll(&cloud.url, &cloud.enrollment_token("JKT01"));
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    let mut orders = Vec::new();
    for name in ["Sebelum 1", "Sebelum 2"] {
        orders.push(create_work_order(&edge, &tablet, name).await);
    }
    edge.drained(&tablet, Duration::from_secs(30)).await;
    let nightly = site.dir.path().join("nightly.backup");
    let (code, out, err) = site.cli(&["backup", nightly.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "backup: {out}{err}");
    // The daemon takes it to the cloud's object store, where the cloud team can fetch it.
    let digest = hex::encode(sha2::Sha256::digest(
        std::fs::read(&nightly).expect("the backup"),
    ));
    eventually(
        Duration::from_secs(90),
        "the backup is in the cloud",
        || async {
            let mut pg = cloud.pg().await;
            sqlx::query("SELECT 1 FROM blobs JOIN device_backups USING (digest) WHERE digest = $1")
                .bind(&digest)
                .fetch_optional(&mut pg)
                .await
                .expect("blobs")
                .map(|_| ())
        },
    )
    .await;
    let (code, out, err) = site.cli(&["doctor"]);
    assert!(
        out.contains("backup in the cloud: the newest"),
        "doctor ({code}): {out}{err}"
    );

    // The old box goes on after the backup, and the cloud holds it all.
    for name in ["Sesudah 1", "Sesudah 2", "Sesudah 3"] {
        orders.push(create_work_order(&edge, &tablet, name).await);
    }
    let before = edge.drained(&tablet, Duration::from_secs(30)).await;
    let cloud_last = before["last_seq"].as_i64().expect("seq");

    // The box's disk is lost with its backups: the cloud's copy is fetched, checked, for the
    // restore. A running daemon is never restored under; a stopped one is.
    let backup = site.dir.path().join("from-the-cloud.backup");
    let (code, out, err) = cloud.cli(&[
        "backups",
        "get",
        &digest,
        "--out",
        backup.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "backups get: {out}{err}");
    std::fs::remove_file(&nightly).expect("the box's own copy is gone");
    let (code, out, err) = site.cli(&["restore", backup.to_str().expect("utf-8 path")]);
    assert_ne!(code, 0, "restore under a running daemon: {out}");
    assert!(err.contains("daemon is running"), "{err}");
    edge.kill().await;
    let (code, out, err) = site.cli(&["restore", backup.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "restore: {out}{err}");
    assert!(out.contains("branch JKT01"), "{out}");
    assert!(out.contains("kept as"), "the replaced store is kept: {out}");

    // The restored box knows only the first two, and numbers its next events from there.
    let edge = site.start().await;
    for name in ["Dipulihkan 1", "Dipulihkan 2"] {
        orders.push(create_work_order(&edge, &tablet, name).await);
    }
    let after = edge.drained(&tablet, Duration::from_secs(30)).await;
    let last_seq = after["last_seq"].as_i64().expect("seq");
    assert!(
        last_seq > cloud_last,
        "renumbered after the cloud's {cloud_last}: {after}"
    );

    let mut pg = cloud.pg().await;
    for id in &orders {
        let found: i64 = sqlx::query("SELECT count(*) FROM work_orders WHERE id = $1")
            .bind(id)
            .fetch_one(&mut pg)
            .await
            .expect("work order")
            .get(0);
        assert_eq!(found, 1, "work order {id} is in the cloud once");
    }
    let (events, gaps): (i64, i64) = {
        let row = sqlx::query(
            "SELECT count(*), max(seq) - count(*) FROM (SELECT seq FROM events UNION ALL SELECT seq FROM parked_events) e",
        )
        .fetch_one(&mut pg)
        .await
        .expect("count");
        (row.get(0), row.get(1))
    };
    assert_eq!(events, last_seq, "one event per seq up to the box's last");
    assert_eq!(gaps, 0, "no seq missing");
}
