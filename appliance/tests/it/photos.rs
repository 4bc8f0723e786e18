//! Inspection photos on the box alone (no cloud): `PUT /v1/blobs/{sha256}` checks the digest,
//! is idempotent, keeps the photo encrypted, and answers `507 storage_full` when photos the
//! cloud does not have yet fill the budget or the disk is nearly full.

use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::harness::{Device, Edge, Site};

/// A photo-sized payload that is easy to find in a file: `marker` repeated, then `n` bytes.
fn photo(marker: &[u8], n: usize) -> Vec<u8> {
    marker.iter().copied().cycle().take(n).collect()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn put(
    edge: &Edge,
    dev: &Device,
    digest: &str,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let resp = unpooled()
        .put(format!("{}/v1/blobs/{digest}", edge.base))
        .bearer_auth(&dev.token)
        .body(body)
        .send()
        .await
        .expect("PUT photo");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// A client that keeps no idle connection. The box refuses some uploads (a bad digest in the
/// path, a role that may not send photos, too large, storage full) before reading their body and
/// then closes the connection; a pooled client could pick that closed connection for its next
/// request and fail it (`IncompleteMessage`), which says nothing about the box.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client")
}

async fn head(edge: &Edge, dev: &Device, digest: &str) -> (StatusCode, Option<String>) {
    let resp = edge
        .http
        .head(format!("{}/v1/blobs/{digest}", edge.base))
        .bearer_auth(&dev.token)
        .send()
        .await
        .expect("HEAD photo");
    let state = resp
        .headers()
        .get("x-sentra-blob-state")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status(), state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_is_checked_kept_encrypted_and_stored_once() {
    let site = Site::with_config("[blobs]\nmax_photo_bytes = 300000\n");
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let pos = edge.pair(&site, "pos").await;
    let data = photo(b"PLAINTEXT-PHOTO-MARKER-", 200_000);
    let digest = sha(&data);

    // A body that does not hash to the path's digest is refused and nothing is kept.
    let other = sha(b"another photo");
    let (s, b) = put(&edge, &tablet, &other, data.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "digest_mismatch");
    assert_eq!(head(&edge, &tablet, &other).await.0, StatusCode::NOT_FOUND);
    assert_eq!(head(&edge, &tablet, &digest).await.0, StatusCode::NOT_FOUND);

    // Not a digest at all; a POS may not send photos; too large.
    let (s, b) = put(&edge, &tablet, "abc", data.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "sha256");
    let (s, _) = put(&edge, &pos, &digest, data.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Too large: 413 as soon as the Content-Length says so (the box may close the connection
    // before the client finished sending; either way nothing is kept).
    let big = photo(b"x", 300_001);
    let big_digest = sha(&big);
    if let Ok(resp) = unpooled()
        .put(format!("{}/v1/blobs/{big_digest}", edge.base))
        .bearer_auth(&tablet.token)
        .body(big)
        .send()
        .await
    {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert_eq!(
        head(&edge, &tablet, &big_digest).await.0,
        StatusCode::NOT_FOUND
    );

    // Stored once: 201, then 200 with the same answer.
    let (s, b) = put(&edge, &tablet, &digest, data.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["digest"], digest.as_str());
    assert_eq!(b["size"], 200_000);
    assert_eq!(b["state"], "stored");
    let (s, b) = put(&edge, &tablet, &digest, data.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        head(&edge, &tablet, &digest).await,
        (StatusCode::OK, Some("stored".to_owned()))
    );
    let got = edge
        .http
        .get(format!("{}/v1/blobs/{digest}", edge.base))
        .bearer_auth(&tablet.token)
        .send()
        .await
        .expect("GET photo");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("body").as_ref(), data.as_slice());

    // The sync status counts it as waiting for the cloud.
    let (s, st) = edge.get(&tablet, "/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(st["photos"]["pending_count"], 1, "{st}");
    assert_eq!(st["photos"]["pending_bytes"], 200_000, "{st}");

    // Nowhere on disk in clear: not in blobs.db (or its WAL), not in a file of its own.
    edge.stop().await;
    let data_dir = site.dir.path().join("data");
    let mut files = 0;
    for entry in std::fs::read_dir(&data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            files += 1;
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !bytes
                    .windows(b"PLAINTEXT-PHOTO-MARKER-".len())
                    .any(|w| w == b"PLAINTEXT-PHOTO-MARKER-"),
                "{} holds the photo in clear",
                path.display()
            );
        }
    }
    assert!(data_dir.join("blobs.db").exists() && files >= 2);
    // With the store's key it opens, holds the photo once, and gives evicted space back.
    let key = std::fs::read_to_string(&site.key_file).expect("key");
    let conn = rusqlite::Connection::open(data_dir.join("blobs.db")).expect("open blobs.db");
    conn.pragma_update(None, "key", format!("x'{}'", key.trim()))
        .expect("key pragma");
    let (count, vacuum): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM blobs), (SELECT auto_vacuum FROM pragma_auto_vacuum)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("read blobs.db");
    assert_eq!(
        (count, vacuum),
        (1, 2),
        "one photo; auto_vacuum = INCREMENTAL"
    );
    drop(conn);

    // And it survives a restart, whole.
    let edge = site.start().await;
    assert_eq!(
        head(&edge, &tablet, &digest).await,
        (StatusCode::OK, Some("stored".to_owned()))
    );
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_the_cloud_lacks_are_never_evicted_and_a_full_box_says_so() {
    // A 1 MiB budget: two 400 kB photos fit, a third does not, and neither may be evicted
    // because this box has never reached a cloud.
    let site = Site::with_config("[blobs]\nmax_bytes = 1048576\nmin_free_bytes = 0\n");
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let photos: Vec<Vec<u8>> = (0..3u8).map(|i| photo(&[i, 1, 2, 3], 400_000)).collect();
    for p in &photos[..2] {
        let (s, b) = put(&edge, &tablet, &sha(p), p.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, b) = put(&edge, &tablet, &sha(&photos[2]), photos[2].clone()).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{b}");
    assert_eq!(b["error"]["code"], "storage_full");
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("waiting to reach the cloud"),
        "a message a tablet can show: {message}"
    );
    for p in &photos[..2] {
        assert_eq!(
            head(&edge, &tablet, &sha(p)).await,
            (StatusCode::OK, Some("stored".to_owned()))
        );
    }
    assert_eq!(
        head(&edge, &tablet, &sha(&photos[2])).await.0,
        StatusCode::NOT_FOUND
    );
    edge.stop().await;

    // A disk nearly full (reserve larger than any disk): refused with its own message.
    let site = Site::with_config("[blobs]\nmin_free_bytes = 9000000000000000000\n");
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let (s, b) = put(&edge, &tablet, &sha(&photos[0]), photos[0].clone()).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{b}");
    assert_eq!(b["error"]["code"], "storage_full");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("disk is nearly full"),
        "{b}"
    );
    let (_, st) = edge
        .call(
            Some(&tablet.token),
            Method::GET,
            "/v1/sync/status",
            None,
            None,
        )
        .await;
    assert_eq!(st["photos"]["count"], 0, "{st}");
    edge.stop().await;
}
