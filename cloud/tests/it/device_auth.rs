//! Signed device requests, API tokens, revocation, and the server-time header on every answer.

use reqwest::Method;
use sentra_protocol::auth::MAX_SKEW_MS;

use crate::cloud::Cloud;
use crate::fixtures::{self, now_ms, random_hex, sign_at};
use crate::support::{Server, TestDb, WAIT, migrate, redis_url};

const PULL: &str = "/v1/sync/pull?cursor=0";

#[tokio::test]
async fn a_signed_request_is_accepted_and_every_answer_carries_the_server_time() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    let before = now_ms();
    let answer = cloud.pull(&device, 0, None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["changes"], serde_json::json!([]));
    let server_time = answer.server_time_ms.expect("server time header");
    assert!(
        server_time >= before && server_time <= now_ms(),
        "{server_time}"
    );

    // Errors, 404s and the health endpoints carry it too.
    for (method, path) in [
        (Method::GET, "/v1/sync/pull"),
        (Method::GET, "/nowhere"),
        (Method::GET, "/healthz"),
        (Method::DELETE, "/v1/enroll"),
    ] {
        let answer = cloud.call(method.clone(), path, None, &[]).await;
        assert!(
            answer.server_time_ms.is_some(),
            "{method} {path}: {answer:?}"
        );
        assert!(
            answer.status == 200 || answer.body["error"]["code"].is_string(),
            "{method} {path}: {answer:?}"
        );
    }
    let unsigned = cloud.call(Method::GET, PULL, None, &[]).await;
    assert_eq!(
        (unsigned.status, unsigned.code()),
        (401, "unauthorized"),
        "{unsigned:?}"
    );
    let wrong_method = cloud.call(Method::DELETE, "/v1/enroll", None, &[]).await;
    assert_eq!(
        (wrong_method.status, wrong_method.code()),
        (405, "method_not_allowed")
    );
}

#[tokio::test]
async fn a_tampered_body_another_path_or_another_key_is_refused() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    let events = [fixtures::Outbox::new(&device.id).receipt("OF-1", 3)];
    let body = fixtures::batch(&events);

    // Signed for one body, sent with another.
    let mut tampered = body.clone();
    let last = tampered.len() - 2;
    tampered[last] = b' ';
    let headers = device.sign("POST", "/v1/sync/push", &body);
    let answer = cloud
        .call(Method::POST, "/v1/sync/push", Some(tampered), &headers)
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (401, "unauthorized"),
        "{answer:?}"
    );

    // Signed for one path (and query), sent to another.
    let headers = device.sign("GET", "/v1/sync/pull?cursor=0", b"");
    let answer = cloud
        .call(Method::GET, "/v1/sync/pull?cursor=5", None, &headers)
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (401, "unauthorized"),
        "{answer:?}"
    );

    // Signed by a key that is not the device's.
    let headers = fixtures::sign(&fixtures::new_key(), &device.id, "GET", PULL, b"");
    let answer = cloud.call(Method::GET, PULL, None, &headers).await;
    assert_eq!(
        (answer.status, answer.code()),
        (401, "unauthorized"),
        "{answer:?}"
    );

    // A device that does not exist, and one that is not even a UUID.
    for id in ["00000000-0000-4000-8000-000000000000", "not-a-device"] {
        let headers = fixtures::sign(&device.key, id, "GET", PULL, b"");
        let answer = cloud.call(Method::GET, PULL, None, &headers).await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, "unauthorized"),
            "{id}: {answer:?}"
        );
    }
    assert_eq!(cloud.scalar("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    let headers = sign_at(
        &device.key,
        &device.id,
        "GET",
        PULL,
        b"",
        now_ms(),
        &random_hex(16),
    );
    let first = cloud.call(Method::GET, PULL, None, &headers).await;
    assert_eq!(first.status, 200, "{first:?}");
    let replay = cloud.call(Method::GET, PULL, None, &headers).await;
    assert_eq!(
        (replay.status, replay.code()),
        (401, "replay"),
        "{replay:?}"
    );

    // The same nonce from another device is that device's business.
    let other = cloud.enroll("JKT01").await;
    let nonce = headers[2].1.clone();
    let headers = sign_at(&other.key, &other.id, "GET", PULL, b"", now_ms(), &nonce);
    assert_eq!(
        cloud.call(Method::GET, PULL, None, &headers).await.status,
        200
    );
}

#[tokio::test]
async fn a_skewed_timestamp_is_refused_with_clock_skew() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    let margin = 60_000;
    for timestamp in [
        now_ms() - MAX_SKEW_MS - margin,
        now_ms() + MAX_SKEW_MS + margin,
    ] {
        let headers = sign_at(
            &device.key,
            &device.id,
            "GET",
            PULL,
            b"",
            timestamp,
            &random_hex(16),
        );
        let answer = cloud.call(Method::GET, PULL, None, &headers).await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, "clock_skew"),
            "{answer:?}"
        );
        assert!(
            answer.server_time_ms.is_some(),
            "the edge corrects from this header"
        );
    }
    // Within the window is fine.
    let headers = sign_at(
        &device.key,
        &device.id,
        "GET",
        PULL,
        b"",
        now_ms() - MAX_SKEW_MS + margin,
        &random_hex(16),
    );
    assert_eq!(
        cloud.call(Method::GET, PULL, None, &headers).await.status,
        200
    );
}

#[tokio::test]
async fn a_revoked_device_gets_401_and_only_operators_revoke() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    let other = cloud.enroll("JKT01").await;
    let path = format!("/v1/devices/{}/revoke", device.id);

    let by_device = cloud.signed(&other, Method::POST, &path, None).await;
    assert_eq!(
        (by_device.status, by_device.code()),
        (403, "forbidden"),
        "{by_device:?}"
    );
    let portal = cloud.api_token("portal", "portal").await;
    let by_portal = cloud.bearer(&portal, Method::POST, &path, None).await;
    assert_eq!(
        (by_portal.status, by_portal.code()),
        (403, "forbidden"),
        "{by_portal:?}"
    );
    let by_nobody = cloud.bearer("not-a-token", Method::POST, &path, None).await;
    assert_eq!(
        (by_nobody.status, by_nobody.code()),
        (401, "unauthorized"),
        "{by_nobody:?}"
    );
    let missing = cloud
        .bearer(
            &cloud.operator,
            Method::POST,
            "/v1/devices/00000000-0000-4000-8000-000000000000/revoke",
            None,
        )
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "not_found"),
        "{missing:?}"
    );

    assert_eq!(cloud.pull(&device, 0, None).await.status, 200);
    let revoked = cloud
        .bearer(&cloud.operator, Method::POST, &path, None)
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.body["device_id"], device.id.as_str());
    assert!(revoked.body["revoked_at"].is_string(), "{revoked:?}");

    let answer = cloud.pull(&device, 0, None).await;
    assert_eq!(
        (answer.status, answer.code()),
        (401, "unauthorized"),
        "{answer:?}"
    );
    let events = [fixtures::Outbox::new(&device.id).receipt("OF-1", 1)];
    let answer = cloud.push(&device, &events).await;
    assert_eq!(
        (answer.status, answer.code()),
        (401, "unauthorized"),
        "{answer:?}"
    );
    assert_eq!(
        cloud.pull(&other, 0, None).await.status,
        200,
        "other devices go on"
    );
}

#[tokio::test]
async fn api_tokens_cannot_use_device_routes() {
    let cloud = Cloud::start().await;
    let answer = cloud.bearer(&cloud.operator, Method::GET, PULL, None).await;
    assert_eq!(
        (answer.status, answer.code()),
        (403, "forbidden"),
        "{answer:?}"
    );
    let answer = cloud
        .bearer(
            &cloud.operator,
            Method::POST,
            "/v1/sync/push",
            Some(serde_json::json!({"protocol": 1, "events": []})),
        )
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (403, "forbidden"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn serve_prunes_nonces_older_than_twice_the_skew_window() {
    let db = TestDb::create().await;
    migrate(&db).await;
    let mut connection = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO request_nonces (device_id, nonce, seen_at) VALUES
             ('00000000-0000-4000-8000-000000000001', 'old', now() - interval '11 minutes'),
             ('00000000-0000-4000-8000-000000000001', 'recent', now() - interval '9 minutes')",
    )
    .execute(&mut connection)
    .await
    .expect("insert nonces");

    // The pruner runs once at start, then every minute.
    let redis = redis_url();
    let server = Server::start(&[], &[("DATABASE_URL", db.url()), ("REDIS_URL", &redis)]).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left: Vec<String> =
            sqlx::query_scalar("SELECT nonce FROM request_nonces ORDER BY nonce")
                .fetch_all(&mut connection)
                .await
                .expect("read nonces");
        if left == ["recent"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {left:?}; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, _, _) = server.terminate().await;
    assert!(status.success());
}
