//! Photo uploads (`/v1/blobs/...`): only for photos an inspection of the branch references,
//! resumable part by part, verified whole at `complete` (a tampered part is refused and nothing
//! reaches `blobs/<sha256>`), idempotent once stored; part numbers and staged bytes bounded by
//! the declared size, abandoned uploads swept.

use reqwest::Method;
use sentra_protocol::EntityKind;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::cloud::{Cloud, Device};
use crate::fixtures;
use crate::support::{Server, WAIT, join_all, redis_url};

/// Push an inspection of `device`'s branch that references `digest`.
async fn inspection_referencing(cloud: &Cloud, device: &mut Device, digest: &str) {
    let id = device.outbox.id("insp");
    let event = device.outbox.raw(
        EntityKind::Inspection,
        &id,
        "recorded",
        json!({"id": id, "asset_id": "car-1", "kind": "HANDOVER", "chain_index": 0,
               "checklist": [{"item": "tyres", "ok": true}], "photos": [digest],
               "signature": {"signer": "Budi", "digest": "ab".repeat(32)},
               "odometer_km": 12000, "fuel_percent": 80, "remarks": null, "inspector": "Sari",
               "created_at": fixtures::AT, "prev_hash": null, "tamper_proof_hash": "cd".repeat(32)}),
    );
    let answer = cloud.push(device, &[event]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["parked"], json!([]), "{answer:?}");
}

async fn start(cloud: &Cloud, device: &Device, digest: &str, size: usize) -> crate::cloud::Answer {
    cloud
        .signed(
            device,
            Method::POST,
            &format!("/v1/blobs/{digest}/uploads"),
            Some(json!({ "size": size }).to_string().into_bytes()),
        )
        .await
}

async fn part(
    cloud: &Cloud,
    device: &Device,
    digest: &str,
    id: &str,
    n: usize,
    data: &[u8],
) -> u16 {
    put_part(cloud, device, digest, id, n, data).await.status
}

async fn put_part(
    cloud: &Cloud,
    device: &Device,
    digest: &str,
    id: &str,
    n: usize,
    data: &[u8],
) -> crate::cloud::Answer {
    let answer = cloud
        .signed(
            device,
            Method::PUT,
            &format!("/v1/blobs/{digest}/uploads/{id}/parts/{n}"),
            Some(data.to_vec()),
        )
        .await;
    assert!(answer.status == 200 || answer.status >= 400, "{answer:?}");
    answer
}

async fn complete(cloud: &Cloud, device: &Device, digest: &str, id: &str) -> crate::cloud::Answer {
    cloud
        .signed(
            device,
            Method::POST,
            &format!("/v1/blobs/{digest}/uploads/{id}/complete"),
            None,
        )
        .await
}

#[tokio::test]
async fn a_photo_is_uploaded_in_parts_resumed_and_verified_whole() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let photo: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = hex::encode(Sha256::digest(&photo));
    let parts: Vec<&[u8]> = photo.chunks(16_384).collect();
    let stored = cloud.blobs_dir.path().join("blobs").join(&digest);

    // Nobody references it yet: refused, so the cloud is no free storage.
    let answer = start(&cloud, &device, &digest, photo.len()).await;
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(answer.code(), "not_referenced");
    let answer = start(&cloud, &device, "XYZ", photo.len()).await;
    assert_eq!(answer.status, 422, "{answer:?}");

    inspection_referencing(&cloud, &mut device, &digest).await;
    let answer = start(&cloud, &device, &digest, photo.len()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["state"], "uploading");
    assert_eq!(answer.body["parts"], json!([]));
    let id = answer.body["upload_id"]
        .as_str()
        .expect("upload id")
        .to_owned();

    // Half the parts, with part 1 tampered on the way.
    for (n, data) in parts.iter().enumerate().take(3) {
        let mut data = data.to_vec();
        if n == 1 {
            data[100] ^= 0xff;
        }
        assert_eq!(part(&cloud, &device, &digest, &id, n, &data).await, 200);
    }
    // Completing early says what is missing and changes nothing.
    let answer = complete(&cloud, &device, &digest, &id).await;
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(answer.code(), "upload_incomplete");

    // Asking again (a restarted device) resumes the same upload with the parts it has.
    let answer = start(&cloud, &device, &digest, photo.len()).await;
    assert_eq!(answer.body["upload_id"], id.as_str(), "{answer:?}");
    let have: Vec<u64> = answer.body["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(have, vec![0, 1, 2]);
    for (n, data) in parts.iter().enumerate().skip(3) {
        assert_eq!(part(&cloud, &device, &digest, &id, n, data).await, 200);
    }

    // The whole does not hash to the digest: refused, dropped, nothing stored.
    let answer = complete(&cloud, &device, &digest, &id).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(answer.code(), "digest_mismatch");
    assert!(
        !stored.exists(),
        "a tampered photo must never reach blobs/<sha>"
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM blobs").await, 0);
    assert_eq!(cloud.scalar("SELECT count(*) FROM blob_uploads").await, 0);

    // Started again, sent faithfully: stored, and readable by an operator.
    let answer = start(&cloud, &device, &digest, photo.len()).await;
    assert_eq!(answer.body["parts"], json!([]), "{answer:?}");
    let id = answer.body["upload_id"]
        .as_str()
        .expect("upload id")
        .to_owned();
    for (n, data) in parts.iter().enumerate() {
        assert_eq!(part(&cloud, &device, &digest, &id, n, data).await, 200);
    }
    let answer = complete(&cloud, &device, &digest, &id).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["state"], "stored");
    assert_eq!(std::fs::read(&stored).expect("stored photo"), photo);
    assert_eq!(cloud.scalar("SELECT count(*) FROM blob_uploads").await, 0);
    let leftovers = std::fs::read_dir(cloud.blobs_dir.path().join("uploads"))
        .map(|d| {
            d.flat_map(|e| {
                std::fs::read_dir(e.expect("entry").path())
                    .into_iter()
                    .flatten()
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "staged parts are deleted after complete");

    // Once stored, starting again says so: nothing to send.
    let answer = start(&cloud, &device, &digest, photo.len()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["state"], "stored");

    let url = format!("http://{}/v1/blobs/{digest}", cloud.server.addr);
    let got = crate::support::http_client()
        .get(&url)
        .bearer_auth(&cloud.operator)
        .send()
        .await
        .expect("GET photo");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), photo.as_slice());

    // Another branch's device neither sees it nor may upload into this branch's photo.
    let other = cloud.enroll("SBY01").await;
    let answer = cloud
        .signed(&other, Method::GET, &format!("/v1/blobs/{digest}"), None)
        .await;
    assert_eq!(answer.status, 404, "{answer:?}");
}

/// A photo of `len` bytes unlike any other test's (`seed`), and its SHA-256.
fn made_photo(len: usize, seed: u8) -> (Vec<u8>, String) {
    let photo: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let digest = hex::encode(Sha256::digest(&photo));
    (photo, digest)
}

/// An upload of `photo` started by `device` (the inspection referencing it pushed first): its id.
async fn open_upload(cloud: &Cloud, device: &mut Device, photo: &[u8], digest: &str) -> String {
    inspection_referencing(cloud, device, digest).await;
    let answer = start(cloud, device, digest, photo.len()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["upload_id"]
        .as_str()
        .expect("upload id")
        .to_owned()
}

/// The files staged in the store for upload `id` (`uploads/<id>/*`), sorted.
fn staged_files(cloud: &Cloud, id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cloud.blobs_dir.path().join("uploads").join(id))
        .map(|dir| {
            dir.map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The part rows of upload `id`: (n, size, received), by n.
async fn part_rows(cloud: &Cloud, id: &str) -> Vec<(i32, i32, i32)> {
    let mut connection = cloud.db.connect().await;
    sqlx::query_as(
        "SELECT n, size, received FROM blob_upload_parts WHERE upload_id = $1::uuid ORDER BY n",
    )
    .bind(id)
    .fetch_all(&mut connection)
    .await
    .expect("read the part rows")
}

/// Issue 15 item 5: a photo of 3000 bytes has at most ceil(3000 / 1024) = 3 parts (a box's parts
/// are at least 1024 bytes); a part number past that, or an empty part, is refused and stages
/// nothing: no row, no object.
#[tokio::test]
async fn part_numbers_past_the_declared_size_are_refused_and_stage_nothing() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let (photo, digest) = made_photo(3000, 1);
    let id = open_upload(&cloud, &mut device, &photo, &digest).await;

    for n in [3, 4, 262_143, 1_000_000] {
        let answer = put_part(&cloud, &device, &digest, &id, n, &photo[2048..]).await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "invalid"),
            "part {n}: {answer:?}"
        );
    }
    let answer = put_part(&cloud, &device, &digest, &id, 0, &[]).await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "invalid"),
        "empty part: {answer:?}"
    );
    assert_eq!(part_rows(&cloud, &id).await, vec![]);
    assert_eq!(staged_files(&cloud, &id), Vec::<String>::new());

    // The highest number allowed is taken, and the photo completes.
    for (n, data) in photo.chunks(1024).enumerate().rev() {
        assert_eq!(part(&cloud, &device, &digest, &id, n, data).await, 200);
    }
    assert_eq!(staged_files(&cloud, &id), ["0", "1", "2"]);
    let answer = complete(&cloud, &device, &digest, &id).await;
    assert_eq!(answer.status, 201, "{answer:?}");
}

/// Issue 15 item 5: the parts staged never add up to more than the declared size. The part that
/// would overflow is refused and stages nothing, the earlier ones stay, a part sent again
/// replaces itself (its own earlier bytes do not count against it), and parts racing each other
/// cannot overflow together.
#[tokio::test]
async fn staged_parts_never_add_up_to_more_than_the_declared_size() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let (photo, digest) = made_photo(3000, 2);
    let parts: Vec<&[u8]> = photo.chunks(1024).collect(); // 1024, 1024, 952
    let id = open_upload(&cloud, &mut device, &photo, &digest).await;
    let part_file = |n: usize| {
        cloud
            .blobs_dir
            .path()
            .join("uploads")
            .join(&id)
            .join(n.to_string())
    };

    assert_eq!(part(&cloud, &device, &digest, &id, 0, parts[0]).await, 200);
    assert_eq!(part(&cloud, &device, &digest, &id, 1, parts[1]).await, 200);
    // 1024 + 1024 + 1024 > 3000.
    let too_long = &photo[1976..];
    assert_eq!(too_long.len(), 1024);
    let answer = put_part(&cloud, &device, &digest, &id, 2, too_long).await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "invalid"),
        "{answer:?}"
    );
    assert_eq!(
        part_rows(&cloud, &id).await,
        vec![(0, 1024, 1), (1, 1024, 1)]
    );
    assert_eq!(staged_files(&cloud, &id), ["0", "1"]);

    assert_eq!(part(&cloud, &device, &digest, &id, 2, parts[2]).await, 200);
    // All 3000 bytes are staged; sending part 1 again replaces it and still fits.
    assert_eq!(part(&cloud, &device, &digest, &id, 1, parts[1]).await, 200);
    // A replacement that would make the whole longer is refused; the part it meant to replace
    // stays as it was, row and object.
    let answer = put_part(&cloud, &device, &digest, &id, 2, &photo[2000..]).await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "invalid"),
        "{answer:?}"
    );
    assert_eq!(
        part_rows(&cloud, &id).await,
        vec![(0, 1024, 1), (1, 1024, 2), (2, 952, 1)]
    );
    assert_eq!(std::fs::read(part_file(2)).expect("part 2"), parts[2]);
    let answer = complete(&cloud, &device, &digest, &id).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let stored = cloud.blobs_dir.path().join("blobs").join(&digest);
    assert_eq!(std::fs::read(stored).expect("stored photo"), photo);

    // Three parts of 1024 bytes at once for a photo of 3000: whatever the order, two fit and the
    // third does not.
    let (photo, digest) = made_photo(3000, 3);
    let id = open_upload(&cloud, &mut device, &photo, &digest).await;
    let chunk = &photo[..1024];
    let answers = join_all(
        (0..3)
            .map(|n| put_part(&cloud, &device, &digest, &id, n, chunk))
            .collect(),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 422], "{answers:?}");
    let staged: i64 = part_rows(&cloud, &id)
        .await
        .iter()
        .map(|(_, size, _)| i64::from(*size))
        .sum();
    assert_eq!(staged, 2048);
    assert_eq!(staged_files(&cloud, &id).len(), 2);
}

/// Issue 15 item 5: an upload untouched for two days is swept, every replica sweeping at start
/// and every hour: its rows and its staged objects (the parts, and a `staging/<id>` a complete
/// cut short left) are gone, and the device that comes back gets a new upload. An upload the
/// device is still at stays, rows and objects.
#[tokio::test]
async fn abandoned_uploads_are_swept_with_their_staged_objects() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let (old_photo, old_digest) = made_photo(3000, 4);
    let (new_photo, new_digest) = made_photo(3000, 5);
    let abandoned = open_upload(&cloud, &mut device, &old_photo, &old_digest).await;
    let fresh = open_upload(&cloud, &mut device, &new_photo, &new_digest).await;
    for (n, data) in old_photo.chunks(1024).enumerate().take(2) {
        assert_eq!(
            part(&cloud, &device, &old_digest, &abandoned, n, data).await,
            200
        );
    }
    assert_eq!(
        part(&cloud, &device, &new_digest, &fresh, 0, &new_photo[..1024]).await,
        200
    );
    let staging = cloud.blobs_dir.path().join("staging");
    std::fs::create_dir_all(&staging).expect("staging dir");
    std::fs::write(staging.join(&abandoned), b"half a photo").expect("a leftover staging object");
    assert_eq!(staged_files(&cloud, &abandoned), ["0", "1"]);

    let mut connection = cloud.db.connect().await;
    sqlx::query(
        "UPDATE blob_uploads SET touched_at = now() - interval '2 days 1 minute' WHERE id = $1::uuid",
    )
    .bind(&abandoned)
    .execute(&mut connection)
    .await
    .expect("backdate the abandoned upload");

    // Another replica: it sweeps as it starts.
    let blobs_url = format!("file://{}", cloud.blobs_dir.path().display());
    let redis = redis_url();
    let replica = Server::start(
        &[],
        &[
            ("DATABASE_URL", cloud.db.url()),
            ("REDIS_URL", &redis),
            ("SENTRA_CLOUD__BLOBS__URL", &blobs_url),
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    while !replica.stderr().contains("abandoned photo uploads deleted") {
        assert!(
            std::time::Instant::now() < deadline,
            "no sweep within {WAIT:?}; stderr:\n{}",
            replica.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(replica.stderr().contains("swept=1"), "{}", replica.stderr());

    let uploads: Vec<String> = sqlx::query_scalar("SELECT id::text FROM blob_uploads")
        .fetch_all(&mut connection)
        .await
        .expect("read the uploads");
    assert_eq!(uploads, [fresh.as_str()]);
    assert_eq!(part_rows(&cloud, &abandoned).await, vec![]);
    assert_eq!(staged_files(&cloud, &abandoned), Vec::<String>::new());
    assert!(
        !staging.join(&abandoned).exists(),
        "staging/<id> is swept too"
    );
    assert_eq!(part_rows(&cloud, &fresh).await, vec![(0, 1024, 1)]);
    assert_eq!(staged_files(&cloud, &fresh), ["0"]);

    // The device that comes back starts a new upload of the photo, from nothing.
    let answer = start(&cloud, &device, &old_digest, old_photo.len()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_ne!(answer.body["upload_id"], abandoned.as_str(), "{answer:?}");
    assert_eq!(answer.body["parts"], json!([]), "{answer:?}");

    let (status, _, _) = replica.terminate().await;
    assert!(status.success());
}

/// `POST /v1/backups` for `bytes`, taken on day `day` of November 2026.
async fn record_backup(
    cloud: &Cloud,
    device: &Device,
    bytes: &[u8],
    day: u32,
) -> crate::cloud::Answer {
    cloud
        .signed(
            device,
            Method::POST,
            "/v1/backups",
            Some(
                json!({"sha256": hex::encode(Sha256::digest(bytes)), "size": bytes.len(),
                       "taken_at": format!("2026-11-{day:02}T02:30:00Z"), "events": day})
                .to_string()
                .into_bytes(),
            ),
        )
        .await
}

/// Record and upload one backup in parts of 4 KiB, as a box does.
async fn upload_backup(cloud: &Cloud, device: &Device, bytes: &[u8], day: u32) {
    let digest = hex::encode(Sha256::digest(bytes));
    let answer = record_backup(cloud, device, bytes, day).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let answer = start(cloud, device, &digest, bytes.len()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let id = answer.body["upload_id"]
        .as_str()
        .expect("upload id")
        .to_owned();
    for (n, data) in bytes.chunks(4096).enumerate() {
        assert_eq!(part(cloud, device, &digest, &id, n, data).await, 200);
    }
    let answer = complete(cloud, device, &digest, &id).await;
    assert_eq!(answer.status, 201, "{answer:?}");
}

#[tokio::test]
async fn backups_are_recorded_before_upload_kept_seven_a_device_and_fetched_whole() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    let other = cloud.enroll("JKT01").await;
    let (first, digest) = made_photo(10_000, 41);

    // Unrecorded bytes are no backup; recorded at another size, or by another device, neither.
    let answer = start(&cloud, &device, &digest, first.len()).await;
    assert_eq!(answer.code(), "not_referenced", "{answer:?}");
    assert_eq!(record_backup(&cloud, &device, &first, 1).await.status, 201);
    let answer = start(&cloud, &device, &digest, first.len() + 1).await;
    assert_eq!(answer.code(), "not_referenced", "{answer:?}");
    let answer = start(&cloud, &other, &digest, first.len()).await;
    assert_eq!(answer.code(), "not_referenced", "{answer:?}");

    // Bad records change nothing.
    for (body, why) in [
        (
            json!({"sha256": "AB".repeat(32), "size": 1, "taken_at": "2026-12-01T00:00:00Z", "events": 0}),
            "upper-case digest",
        ),
        (
            json!({"sha256": digest, "size": 0, "taken_at": "2026-12-01T00:00:00Z", "events": 0}),
            "empty",
        ),
        (
            json!({"sha256": digest, "size": 268_435_457u64, "taken_at": "2026-12-01T00:00:00Z", "events": 0}),
            "too large",
        ),
        (
            json!({"sha256": digest, "size": 1, "taken_at": "9999-12-31T23:59:59Z", "events": 0}),
            "far future",
        ),
        (
            json!({"sha256": digest, "size": 1, "taken_at": "2026-12-01", "events": 0}),
            "a date only",
        ),
        (
            json!({"sha256": digest, "size": 1, "taken_at": "2026-12-01T00:00:00Z", "events": -1}),
            "negative events",
        ),
        (
            json!({"sha256": digest, "size": 1, "taken_at": "2026-12-01T00:00:00Z", "events": 0, "key": "x"}),
            "unknown field",
        ),
    ] {
        let answer = cloud
            .signed(
                &device,
                Method::POST,
                "/v1/backups",
                Some(body.to_string().into_bytes()),
            )
            .await;
        assert!(
            answer.status == 422 || answer.status == 400,
            "{why}: {answer:?}"
        );
    }
    assert_eq!(cloud.scalar("SELECT count(*) FROM device_backups").await, 1);
    // An operator's token is no device.
    let answer = crate::support::http_client()
        .post(format!("http://{}/v1/backups", cloud.server.addr))
        .bearer_auth(&cloud.operator)
        .json(
            &json!({"sha256": digest, "size": 1, "taken_at": "2026-12-01T00:00:00Z", "events": 0}),
        )
        .send()
        .await
        .expect("POST /v1/backups");
    assert_eq!(answer.status(), 403);

    // Eight daily backups: the oldest goes, with its object.
    let mut backups = Vec::new();
    for day in 1..=8u32 {
        let (bytes, digest) = made_photo(10_000 + day as usize, 40 + day as u8);
        upload_backup(&cloud, &device, &bytes, day).await;
        backups.push((bytes, digest));
    }
    // Recording again (a box that lost the answer) is answered the same and keeps seven.
    assert_eq!(
        record_backup(&cloud, &device, &backups[7].0, 8)
            .await
            .status,
        201
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM device_backups").await, 7);
    let objects = cloud.blobs_dir.path().join("blobs");
    assert!(
        !objects.join(&backups[0].1).exists(),
        "the eighth backup's upload deleted the first"
    );
    assert!(objects.join(&backups[1].1).exists());

    // The cloud team lists them and fetches one, checked, for `sentra-edge restore`.
    let env = [
        ("DATABASE_URL", cloud.db.url()),
        (
            "SENTRA_CLOUD__BLOBS__URL",
            &format!("file://{}", cloud.blobs_dir.path().display()),
        ),
    ];
    let listed =
        crate::support::run(&["backups", "list", "--branch", "JKT01", "--json"], &env).await;
    assert!(listed.status.success(), "{}", listed.stderr);
    let rows: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 7, "{}", listed.stdout);
    assert_eq!(rows[0]["sha256"], backups[7].1.as_str(), "newest first");
    assert_eq!(rows[0]["taken_at"], "2026-11-08T02:30:00Z");
    assert_eq!(rows[0]["stored"], true);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("jkt01.backup");
    let out_arg = out.to_str().expect("utf-8");
    let got = crate::support::run(&["backups", "get", &backups[4].1, "--out", out_arg], &env).await;
    assert!(got.status.success(), "{}", got.stderr);
    assert_eq!(std::fs::read(&out).expect("fetched"), backups[4].0);
    let again =
        crate::support::run(&["backups", "get", &backups[4].1, "--out", out_arg], &env).await;
    assert!(
        !again.status.success(),
        "an existing file is not overwritten"
    );
    // A damaged object is refused, and nothing is left at --out.
    std::fs::write(objects.join(&backups[5].1), b"rot").expect("damage");
    let damaged = out_dir.path().join("damaged.backup");
    let got = crate::support::run(
        &[
            "backups",
            "get",
            &backups[5].1,
            "--out",
            damaged.to_str().expect("utf-8"),
        ],
        &env,
    )
    .await;
    assert!(!got.status.success(), "{}", got.stdout);
    assert!(got.stderr.contains("damaged"), "{}", got.stderr);
    assert!(!damaged.exists() && !damaged.with_extension("partial").exists());
}
