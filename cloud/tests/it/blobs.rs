//! Photo uploads (`/v1/blobs/...`): only for photos an inspection of the branch references,
//! resumable part by part, verified whole at `complete` (a tampered part is refused and nothing
//! reaches `blobs/<sha256>`), idempotent once stored.

use reqwest::Method;
use sentra_protocol::EntityKind;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::cloud::{Cloud, Device};
use crate::fixtures;

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
    let answer = cloud
        .signed(
            device,
            Method::PUT,
            &format!("/v1/blobs/{digest}/uploads/{id}/parts/{n}"),
            Some(data.to_vec()),
        )
        .await;
    assert!(answer.status == 200 || answer.status >= 400, "{answer:?}");
    answer.status
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
