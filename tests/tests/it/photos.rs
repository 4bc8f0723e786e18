//! Inspection photos end to end: taken while the branch is offline, kept on the box, uploaded
//! to the cloud's object store after the inspection that references them once the link
//! returns, resumed after a cut (and a restart of the box) without sending finished parts
//! again, and evicted from the box only once the cloud has them.

use std::time::Duration;

use sentra_system_tests::{Cloud, Edge, EdgeSite, Proxy, ProxyMode, eventually};
use serde_json::json;
use sha2::{Digest as _, Sha256};

const BRANCH: &str = "MDN01";
const WAIT: Duration = Duration::from_secs(60);

fn photo(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(u32::from(seed)) as u8
        })
        .collect()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn put(edge: &Edge, token: &str, digest: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let resp = edge
        .http
        .put(format!("{}/v1/blobs/{digest}", edge.url))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("PUT photo");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// `x-sentra-blob-state` of a photo on the box (None: not there).
async fn state_on_box(edge: &Edge, token: &str, digest: &str) -> Option<String> {
    let resp = edge
        .http
        .head(format!("{}/v1/blobs/{digest}", edge.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("HEAD photo");
    if resp.status() == 404 {
        return None;
    }
    assert_eq!(resp.status(), 200);
    resp.headers()
        .get("x-sentra-blob-state")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn inspection(edge: &Edge, token: &str, photos: &[&str], signature: &str) {
    let (s, b) = edge
        .call(
            Some(token),
            "POST",
            "/v1/inspections",
            Some(json!({"asset_id": "CAR-001", "kind": "HANDOVER",
                "checklist": [{"item": "Lampu depan", "ok": true}],
                "photos": photos, "signature": {"signer": "Budi", "digest": signature}})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
}

/// The cloud's copy, once it is whole.
fn in_cloud(cloud: &Cloud, digest: &str) -> Option<Vec<u8>> {
    std::fs::read(cloud.blobs_dir.path().join("blobs").join(digest)).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_taken_offline_reach_the_cloud_after_their_inspection_and_are_evicted_only_then() {
    let cloud = Cloud::start().await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 3).await;
    // A 1 MiB photo budget on the box: two 400 kB photos fit, a third does not.
    let site = EdgeSite::new(
        BRANCH,
        "[blobs]\nmax_bytes = 1048576\nmin_free_bytes = 0\npart_bytes = 65536\n",
    );
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    site.enroll(&proxy.url, &cloud.enrollment_token(BRANCH));
    edge.drained(&tablet, WAIT).await;

    // In the car park: no link.
    proxy.set(ProxyMode::Down);
    let (a, b, c) = (photo(1, 400_000), photo(2, 400_000), photo(3, 400_000));
    let signature = photo(4, 5_000);
    let (da, db, dc, ds) = (sha(&a), sha(&b), sha(&c), sha(&signature));

    // A wrong digest is refused on the box and nothing is kept.
    let (s, body) = put(&edge, &tablet, &db, a.clone()).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["code"], "digest_mismatch");
    assert_eq!(state_on_box(&edge, &tablet, &db).await, None);

    for (d, p) in [(&da, &a), (&db, &b)] {
        let (s, body) = put(&edge, &tablet, d, p.clone()).await;
        assert_eq!(s, 201, "{body}");
    }
    // The budget is full of photos the cloud does not have: none of them may go.
    let (s, body) = put(&edge, &tablet, &ds, signature.clone()).await;
    assert_eq!(s, 201, "a small photo still fits: {body}");
    let (s, body) = put(&edge, &tablet, &dc, c.clone()).await;
    assert_eq!(s, 507, "{body}");
    assert_eq!(body["error"]["code"], "storage_full");
    inspection(&edge, &tablet, &[&da, &db], &ds).await;
    let st = edge.sync_status(&tablet).await;
    assert_eq!(st["photos"]["pending_count"], 3, "{st}");
    assert_eq!(in_cloud(&cloud, &da), None);

    // The link returns: the inspection first, then its photos, verified.
    proxy.set(ProxyMode::Pass);
    eventually(WAIT, "the photos to reach the cloud", || async {
        let st = edge.sync_status(&tablet).await;
        (st["photos"]["pending_count"] == 0).then_some(())
    })
    .await;
    for (d, p) in [(&da, &a), (&db, &b), (&ds, &signature)] {
        assert_eq!(
            in_cloud(&cloud, d).as_ref(),
            Some(p),
            "the cloud's copy of {d}"
        );
        assert_eq!(
            state_on_box(&edge, &tablet, d).await.as_deref(),
            Some("uploaded")
        );
    }
    let mut pg = cloud.pg().await;
    let (inspections, blobs, uploads): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM inspections), (SELECT count(*) FROM blobs), (SELECT count(*) FROM blob_uploads)",
    )
    .fetch_one(&mut pg)
    .await
    .expect("counts");
    assert_eq!((inspections, blobs, uploads), (1, 3, 0));

    // Now there is room: the oldest uploaded photo makes way for the new one.
    let (s, body) = put(&edge, &tablet, &dc, c.clone()).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(state_on_box(&edge, &tablet, &da).await, None, "evicted");
    assert_eq!(
        state_on_box(&edge, &tablet, &dc).await.as_deref(),
        Some("stored")
    );
    assert_eq!(
        in_cloud(&cloud, &da).as_ref(),
        Some(&a),
        "still in the cloud"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_after_a_restart_without_resending_finished_parts() {
    let cloud = Cloud::start().await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 5).await;
    // 16 kB parts: a 320 kB photo is 20 parts.
    let site = EdgeSite::new(BRANCH, "[blobs]\npart_bytes = 16384\n");
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    site.enroll(&proxy.url, &cloud.enrollment_token(BRANCH));
    edge.drained(&tablet, WAIT).await;

    let big = photo(7, 320_000);
    let signature = photo(8, 1_000);
    let (dbig, ds) = (sha(&big), sha(&signature));
    // The link breaks right after the 8th part has been answered.
    proxy.watch("/parts/", Some(8));
    let (s, body) = put(&edge, &tablet, &ds, signature.clone()).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = put(&edge, &tablet, &dbig, big.clone()).await;
    assert_eq!(s, 201, "{body}");
    inspection(&edge, &tablet, &[&dbig], &ds).await;

    eventually(WAIT, "the link to be cut mid-upload", || async {
        (edge.sync_status(&tablet).await["link"]["state"] == "offline").then_some(())
    })
    .await;
    let mut pg = cloud.pg().await;
    let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM blob_upload_parts")
        .fetch_one(&mut pg)
        .await
        .expect("staged parts");
    assert_eq!(proxy.watched(), 8);
    assert!(
        (1..=8).contains(&staged),
        "the cloud holds the parts that arrived before the cut: {staged}"
    );
    assert_eq!(in_cloud(&cloud, &dbig), None);

    // The box restarts while the link is down; the upload id was never stored on it.
    edge.kill().await;
    let edge = site.start().await;
    assert_eq!(
        state_on_box(&edge, &tablet, &dbig).await.as_deref(),
        Some("stored")
    );
    proxy.watch("/parts/", None);
    proxy.set(ProxyMode::Pass);
    eventually(WAIT, "the photo to reach the cloud", || async {
        in_cloud(&cloud, &dbig).map(|_| ())
    })
    .await;
    assert_eq!(in_cloud(&cloud, &dbig), Some(big.clone()));
    assert_eq!(in_cloud(&cloud, &ds), Some(signature.clone()));
    eventually(WAIT, "the box to mark them uploaded", || async {
        (edge.sync_status(&tablet).await["photos"]["pending_count"] == 0).then_some(())
    })
    .await;
    // 20 + 1 parts in all (the signature is one part): nothing finished was sent again.
    assert_eq!(
        proxy.watched(),
        21,
        "each part crossed the link exactly once"
    );
}
