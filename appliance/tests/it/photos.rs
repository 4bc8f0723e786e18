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

/// The process's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_photo_is_streamed_to_disk_not_held_in_memory() {
    let site = Site::with_config("[blobs]\nmax_photo_bytes = 20000000\n");
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    // Warm up every path a photo takes (HTTP buffers, the SQLCipher page caches of 2 MB, the
    // writer's blocking threads): a fixed cost, not one that grows with the photo.
    let small = photo(b"warm-up", 4_000_000);
    assert_eq!(
        put(&edge, &tablet, &sha(&small), small).await.0,
        StatusCode::CREATED
    );
    let before = peak_rss(edge.pid());
    // Two 20 MB photos, one after the other: held in memory, the peak would grow by 20 MB at
    // least (it did before photos were streamed); streamed, by a few parts' worth.
    for marker in [b"first-large-photo-".as_slice(), b"second-large-photo"] {
        let data = photo(marker, 20_000_000);
        let digest = sha(&data);
        let (s, b) = put(&edge, &tablet, &digest, data).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["size"], 20_000_000, "{b}");
    }
    let after = peak_rss(edge.pid());
    let grown = after.saturating_sub(before);
    eprintln!("peak RSS {before} -> {after} bytes (+{grown}) for two 20 MB photos");
    assert!(
        grown < 10_000_000,
        "peak RSS grew by {grown} bytes receiving 20 MB photos"
    );
    // And the photo is whole.
    let data = photo(b"second-large-photo", 20_000_000);
    let resp = edge
        .http
        .get(format!("{}/v1/blobs/{}", edge.base, sha(&data)))
        .bearer_auth(&tablet.token)
        .send()
        .await
        .expect("GET photo");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.expect("body").as_ref() == data.as_slice());
    edge.stop().await;
}

/// Open a `PUT /v1/blobs/{digest}` announcing `len` bytes, send `sent` of them and keep the
/// socket open: an upload in progress, as a slow tablet makes one.
async fn upload_in_progress(
    edge: &Edge,
    dev: &Device,
    digest: &str,
    len: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let addr = edge.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "PUT /v1/blobs/{digest} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n",
        dev.token
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    socket.write_all(&vec![7u8; sent]).await.expect("body");
    socket.flush().await.expect("flush");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_cap_are_told_to_come_back_and_a_cut_upload_leaves_nothing() {
    let site = Site::with_config("[blobs]\nmax_concurrent_uploads = 1\npart_bytes = 65536\n");
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let data = photo(b"after-the-busy-one", 300_000);

    // One upload in progress, several parts already written: the next one is turned away
    // before its body is read, with a Retry-After a tablet can follow.
    let slow =
        upload_in_progress(&edge, &tablet, &sha(b"never finished"), 1_000_000, 400_000).await;
    // Until the slow upload reached its handler, others go through (each its own photo).
    let mut busy = None;
    let mut early = 0;
    for i in 0..100u32 {
        let other = photo(&i.to_be_bytes(), 1_000);
        let resp = unpooled()
            .put(format!("{}/v1/blobs/{}", edge.base, sha(&other)))
            .bearer_auth(&tablet.token)
            .body(other)
            .send()
            .await
            .expect("PUT");
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            busy = Some(resp);
            break;
        }
        assert_eq!(resp.status(), StatusCode::CREATED);
        early += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let busy = busy.expect("a busy answer");
    assert_eq!(
        busy.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let b: serde_json::Value = busy.json().await.expect("JSON");
    assert_eq!(b["error"]["code"], "uploads_busy", "{b}");
    // A whole photo sent meanwhile, by a client that sends its body before reading, gets the
    // same answer: the box reads and discards the body it refused instead of resetting the
    // connection under the answer.
    let big = photo(b"sent-while-busy", 4_000_000);
    let (s, b) = put(&edge, &tablet, &sha(&big), big).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["error"]["code"], "uploads_busy", "{b}");

    // The slow tablet walks away mid-photo: its slot is free again, nothing of it is kept.
    drop(slow);
    let mut stored = false;
    for _ in 0..200 {
        let (s, b) = put(&edge, &tablet, &sha(&data), data.clone()).await;
        if s == StatusCode::CREATED {
            stored = true;
            break;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stored, "the slot of the cut upload was never freed");
    assert_eq!(
        head(&edge, &tablet, &sha(b"never finished")).await.0,
        StatusCode::NOT_FOUND
    );
    edge.stop().await;

    // Nothing of the cut photo stayed on disk, staged or stored.
    let config = sentra_edge::config::Config::load_from(Some(&site.config), std::iter::empty())
        .expect("config");
    let store = sentra_edge::daemon::open_store(&config)
        .await
        .expect("open store");
    assert_eq!(store.blobs().staged().await.expect("staged"), 0);
    assert_eq!(
        store.blobs().stats().await.expect("stats").count,
        1 + early,
        "the cut photo is not stored"
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_no_inspection_names_expire_and_named_ones_stay() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let named = photo(b"named-by-an-inspection", 100_000);
    let signature = photo(b"signature", 2_000);
    let orphan = photo(b"nobody-names-me", 100_000);
    for p in [&named, &signature, &orphan] {
        assert_eq!(
            put(&edge, &tablet, &sha(p), p.clone()).await.0,
            StatusCode::CREATED
        );
    }
    let (s, b) = edge
        .call(
            Some(&tablet.token),
            Method::POST,
            "/v1/inspections",
            Some(serde_json::json!({
                "asset_id": "CAR-001",
                "kind": "HANDOVER",
                "checklist": [{"item": "tyres", "ok": true}],
                "photos": [sha(&named)],
                "signature": {"signer": "Budi", "digest": sha(&signature)},
            })),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    edge.stop().await;

    let config = sentra_edge::config::Config::load_from(Some(&site.config), std::iter::empty())
        .expect("config");
    let store = sentra_edge::daemon::open_store(&config)
        .await
        .expect("open store");
    // Young photos are left alone whatever references them.
    assert_eq!(
        sentra_edge::sync::blobs::expire(&store, &config.blobs)
            .await
            .expect("expire"),
        0
    );
    // Past the age (0 hours here), only the photo nobody names goes.
    let mut now = config.blobs;
    now.unreferenced_photo_hours = 0;
    assert_eq!(
        sentra_edge::sync::blobs::expire(&store, &now)
            .await
            .expect("expire"),
        1
    );
    for (p, kept) in [(&named, true), (&signature, true), (&orphan, false)] {
        assert_eq!(
            store.blobs().meta(sha(p)).await.expect("meta").is_some(),
            kept
        );
    }
    store.shutdown().await;
}
