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

/// `sentra-cloud api-token ...` against `cloud`'s database.
async fn token_cli(cloud: &Cloud, args: &[&str]) -> crate::support::Output {
    let mut all = vec!["api-token"];
    all.extend_from_slice(args);
    crate::support::run(&all, &[("DATABASE_URL", cloud.db.url())]).await
}

/// What `GET /v1/fleet` answers `token`: 401 when the token is not accepted at all.
async fn status_with(cloud: &Cloud, token: &str) -> u16 {
    cloud
        .bearer(token, Method::GET, "/v1/fleet", None)
        .await
        .status
}

/// Issue 15: tokens an operator can manage. Names are unique among live tokens (a duplicate is
/// exit 2), `list` shows every token without the token or its hash, `revoke NAME` revokes one,
/// and a token may expire.
#[tokio::test]
async fn api_tokens_have_unique_names_and_are_listed_and_revoked_by_name() {
    let cloud = Cloud::start().await;
    let duplicate = token_cli(&cloud, &["--name", "ops", "--role", "operator"]).await;
    assert_eq!(duplicate.status.code(), Some(2), "{}", duplicate.stderr);
    assert!(
        duplicate.stderr.contains("already named \"ops\""),
        "{}",
        duplicate.stderr
    );
    assert!(
        duplicate.stdout.is_empty(),
        "no token printed: {}",
        duplicate.stdout
    );
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM api_tokens WHERE name = 'ops'")
            .await,
        1
    );
    for args in [
        &[][..],
        &["--name", ""],
        &["--name", "x", "--expires-in", "0d"],
        &["--name", "x", "--expires-in", "soon"],
        &["--name", "x", "--expires-in", "2020-01-01T00:00:00Z"],
    ] {
        let output = token_cli(&cloud, args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.stderr);
    }
    assert_eq!(cloud.scalar("SELECT count(*) FROM api_tokens").await, 1);

    let portal = cloud.api_token("portal", "portal").await;
    let made = token_cli(
        &cloud,
        &[
            "--name",
            "ops-30d",
            "--role",
            "operator",
            "--expires-in",
            "30d",
        ],
    )
    .await;
    assert!(made.status.success(), "{}", made.stderr);
    let thirty_days = made.stdout.trim().to_owned();
    assert_eq!(
        status_with(&cloud, &portal).await,
        403,
        "authenticated, not an operator"
    );
    assert_eq!(status_with(&cloud, &thirty_days).await, 200);

    let listed = token_cli(&cloud, &["list"]).await;
    assert!(listed.status.success(), "{}", listed.stderr);
    let rows: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["ops", "portal", "ops-30d"], "{}", listed.stdout);
    for secret in [&portal, &thirty_days, &cloud.operator] {
        assert!(
            !listed.stdout.contains(secret.as_str()),
            "a token is listed"
        );
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes()));
        assert!(!listed.stdout.contains(&hash), "a token's hash is listed");
    }
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .expect("listed")
            .clone()
    };
    assert_eq!(row("portal")["role"], "portal");
    assert_eq!(row("portal")["state"], "live");
    assert!(row("portal")["expires_at"].is_null());
    assert!(
        row("portal")["last_used_at"].is_string(),
        "it was used: {}",
        listed.stdout
    );
    assert!(
        row("ops-30d")["expires_at"].is_string(),
        "{}",
        listed.stdout
    );
    assert!(row("ops")["created_at"].is_string());

    // Revoked by name: refused (within the replica's token cache period), listed as revoked,
    // and the name is free again.
    let revoked = token_cli(&cloud, &["revoke", "portal"]).await;
    assert!(revoked.status.success(), "{}", revoked.stderr);
    let deadline = std::time::Instant::now() + WAIT;
    while status_with(&cloud, &portal).await != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked token still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let again = token_cli(&cloud, &["revoke", "portal"]).await;
    assert_eq!(again.status.code(), Some(2), "{}", again.stderr);
    assert!(
        again.stderr.contains("no live API token"),
        "{}",
        again.stderr
    );
    let reissued = cloud.api_token("portal", "portal").await;
    assert_eq!(status_with(&cloud, &reissued).await, 403);
    let states: Vec<String> = token_cli(&cloud, &["list"])
        .await
        .stdout
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("JSON");
            format!(
                "{} {}",
                row["name"].as_str().unwrap_or(""),
                row["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        states,
        ["ops live", "portal revoked", "ops-30d live", "portal live"]
    );
}

/// Issue 15: an expired token is refused like a revoked one, also by a replica that has it in
/// its token cache (which would otherwise trust it for a few more seconds).
#[tokio::test]
async fn an_expired_token_is_401_even_from_the_token_cache() {
    let cloud = Cloud::start().await;
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let at = expires
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    let made = token_cli(
        &cloud,
        &["--name", "brief", "--role", "operator", "--expires-in", &at],
    )
    .await;
    assert!(made.status.success(), "{}", made.stderr);
    let token = made.stdout.trim().to_owned();
    // Used now: the replica caches it (for API_TOKEN_CACHE_TTL, 5 s).
    assert_eq!(status_with(&cloud, &token).await, 200);
    let now = time::OffsetDateTime::now_utc();
    if expires > now {
        let wait = expires - now + time::Duration::milliseconds(300);
        tokio::time::sleep(wait.try_into().expect("a positive wait")).await;
    }
    let answer = cloud.bearer(&token, Method::GET, "/v1/fleet", None).await;
    assert_eq!(
        (answer.status, answer.code()),
        (401, "unauthorized"),
        "{answer:?}"
    );
    // The fleet page refuses it too.
    let page = crate::support::http_client()
        .get(format!("http://{}/fleet", cloud.server.addr))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("GET /fleet");
    assert_eq!(page.status(), 401);
    let listed = token_cli(&cloud, &["list"]).await;
    assert!(
        listed.stdout.contains("\"state\":\"expired\""),
        "{}",
        listed.stdout
    );
}

/// Sends `head` (a request head announcing a body) and a few bytes of that body, never the rest,
/// and returns the status line the server answered with before the body was complete.
async fn answer_to_a_body_never_sent(addr: std::net::SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream
        .write_all(b"{\"batch\": [")
        .await
        .expect("write a little");
    let mut answer = [0u8; 12];
    tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn unknown_callers_are_refused_before_their_body_is_read() {
    // 4 MB announced, a dozen bytes sent: an unknown device or token must not make the replica
    // wait for (or buffer) a body it will refuse anyway.
    let cloud = Cloud::start().await;
    let unknown_device = format!(
        "POST /v1/sync/push HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 4000000\r\nx-sentra-device: 0190a1b2-0000-7000-8000-000000000000\r\n\
         x-sentra-timestamp: {}\r\nx-sentra-nonce: {}\r\nx-sentra-signature: AAAA\r\n\r\n",
        now_ms(),
        random_hex(16)
    );
    assert_eq!(
        answer_to_a_body_never_sent(cloud.server.addr, &unknown_device).await,
        "HTTP/1.1 401"
    );
    let unknown_token = "POST /v1/bookings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 4000000\r\nauthorization: Bearer not-a-token\r\n\r\n";
    assert_eq!(
        answer_to_a_body_never_sent(cloud.server.addr, unknown_token).await,
        "HTTP/1.1 401"
    );
}

#[tokio::test]
async fn enrolment_is_throttled_per_address() {
    // 300 a minute from one address (http::ENROLL_PER_MINUTE): a token guesser gets 429 with
    // Retry-After and the handler is not reached.
    let cloud = Cloud::start().await;
    let body = serde_json::to_vec(
        &serde_json::json!({"token": "0".repeat(64), "public_key": "0".repeat(64)}),
    )
    .expect("json");
    let json = [("content-type", "application/json".to_owned())];
    // The allowance refills at 300 a minute (one every 200 ms) while the requests go out, so a
    // loaded machine lets a few more than 300 through: the burst is checked, then requests go
    // on until the first 429, which needs only more than 5 requests a second.
    let mut accepted = 0;
    let refused = loop {
        let answer = cloud
            .call(Method::POST, "/v1/enroll", Some(body.clone()), &json)
            .await;
        if answer.status == 429 {
            break answer;
        }
        accepted += 1;
        assert!(accepted < 3_000, "never throttled: {answer:?}");
    };
    assert!(
        accepted >= 300,
        "the burst of 300: only {accepted} before {refused:?}"
    );
    assert_eq!(refused.body["error"]["code"], "rate_limited", "{refused:?}");
}

/// A token the replica has not cached yet (it just started, or the entry expired) is looked up
/// once however many requests carry it at that moment: a herd of them used to queue as many
/// `UPDATE`s on the token's one row.
#[tokio::test]
async fn a_herd_with_a_token_not_cached_looks_it_up_once() {
    const HERD: usize = 300;
    let cloud = Cloud::start().await;
    let token = cloud.api_token("herd", "operator").await;
    let started = std::time::Instant::now();
    let client = reqwest::Client::new();
    let answers = crate::support::join_all(
        (0..HERD)
            .map(|_| {
                client
                    .get(format!("http://{}/metrics", cloud.server.addr))
                    .bearer_auth(&token)
                    .send()
            })
            .collect(),
    )
    .await;
    for answer in answers {
        assert_eq!(answer.expect("GET /metrics").status(), 200);
    }
    let metrics = crate::support::scrape(cloud.server.addr, &token).await;
    let lookups: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("sentra_cloud_api_token_lookups_total "))
        .and_then(|value| value.parse().ok())
        .expect("the lookups counter");
    // One for the herd; one more for each time the 5 s cache entry ran out meanwhile (a slow
    // machine), the last scrape's included.
    let periods = started.elapsed().as_secs() / 5 + 1;
    assert!(
        (1..=1 + periods).contains(&lookups),
        "{lookups} lookups for {HERD} requests in {:?}",
        started.elapsed()
    );
}
