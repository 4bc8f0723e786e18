//! Identity checks before a first rental (issue 8), through the real `serve` with its sandbox
//! provider (Verihubs-shaped HTTP): the gate refuses an unverified customer's hold, each way a
//! check can fail is stored as REJECTED with its reason, a verified customer books, and neither
//! the database nor the log (at debug level) holds the NIK. Issue 15: a check attaches to a
//! customer record its caller owns (a portal's own customers, a device's branch's shared
//! records), the KTP must name that record's customer, only the owner reads the standing or is
//! cleared by it, and provider calls are throttled per caller.

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::booking_support::{BRANCH, BookingCloud, RedisProcess};
use crate::cloud::Cloud;

const NIK: &str = "3171014508900001";
const NAME: &str = "Siti Rahayu";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

fn ktp(nik: &str, name: &str) -> String {
    b64(&format!(
        "SANDBOX-KTP\nnik={nik}\nname={name}\ndob=05-08-1990\n"
    ))
}

fn selfie(similarity: f64, live: bool) -> String {
    b64(&format!(
        "SANDBOX-FACE\nsimilarity={similarity}\nlive={live}\n"
    ))
}

async fn check(
    cloud: &BookingCloud,
    customer: &str,
    body: serde_json::Value,
) -> crate::booking_support::Answer {
    check_as(cloud, &cloud.portal, customer, body).await
}

async fn check_as(
    cloud: &BookingCloud,
    token: &str,
    customer: &str,
    body: serde_json::Value,
) -> crate::booking_support::Answer {
    cloud
        .call(
            0,
            token,
            Method::POST,
            &format!("/v1/customers/{customer}/identity"),
            Some(body),
            None,
        )
        .await
}

/// Registers `customer` as the portal's (`token`) own customer named `name`.
async fn register(cloud: &BookingCloud, token: &str, customer: &str, name: &str) {
    let answer = cloud
        .call(
            0,
            token,
            Method::PUT,
            &format!("/v1/customers/{customer}"),
            Some(json!({"name": name})),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "register {customer}: {answer:?}");
}

#[tokio::test]
async fn an_unverified_customer_cannot_rent_until_their_ktp_passes() {
    // A Redis of its own: another test's calendar for asset `a1` must not answer here.
    let redis = RedisProcess::start().await;
    let cloud = BookingCloud::start(
        1,
        2,
        &[
            ("REDIS_URL", &redis.url()),
            ("SENTRA_CLOUD__IDENTITY__REQUIRED", "true"),
            ("SENTRA_CLOUD__IDENTITY__PROVIDER_URL", "sandbox"),
            ("SENTRA_CLOUD__IDENTITY__NIK_SECRET", "nik-key-for-tests"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let customer = "C-KTP-1";
    // The portal's own customer record: the check attaches to it (issue 15).
    register(&cloud, &cloud.portal, customer, NAME).await;

    // No check yet: the hold is refused with a reason staff can act on, and nothing is held.
    let refused = cloud
        .hold(0, "a1", "2027-03-01", "2027-03-02", customer, None)
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.code(), "identity_unverified", "{refused:?}");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("KTP")),
        "{refused:?}"
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM bookings").await, 0);
    let none = cloud
        .call(
            0,
            &cloud.portal,
            Method::GET,
            &format!("/v1/customers/{customer}/identity"),
            None,
            None,
        )
        .await;
    assert_eq!(none.status, 404, "{none:?}");

    // Bad input: a clear error, nothing stored.
    for body in [
        json!({"ktp_image": "not base64!", "selfie": selfie(0.9, true)}),
        json!({"ktp_image": ktp(NIK, NAME)}),
        json!({"ktp_image": "", "selfie": selfie(0.9, true)}),
    ] {
        let answer = check(&cloud, customer, body).await;
        assert!(answer.status == 422 || answer.status == 400, "{answer:?}");
    }
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM identity_checks").await,
        0
    );

    // Each way a check fails is REJECTED with its reason; the gate stays shut.
    for (body, reason) in [
        (
            json!({"ktp_image": b64("a blurry photo"), "selfie": selfie(0.9, true)}),
            "ktp_unreadable",
        ),
        (
            json!({"ktp_image": ktp("0171014508900001", NAME), "selfie": selfie(0.9, true)}),
            "nik_invalid",
        ),
        (
            // The KTP names someone else than the customer's record.
            json!({"ktp_image": ktp(NIK, "Budi Santoso"), "selfie": selfie(0.9, true)}),
            "name_mismatch",
        ),
        (
            json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.9, false)}),
            "liveness_failed",
        ),
        (
            json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.41, true)}),
            "face_mismatch",
        ),
    ] {
        let answer = check(&cloud, customer, body).await;
        assert_eq!(answer.status, 200, "{reason}: {answer:?}");
        assert_eq!(answer.body["state"], "REJECTED", "{reason}: {answer:?}");
        assert_eq!(answer.body["reason"], reason, "{answer:?}");
        let again = cloud
            .hold(0, "a1", "2027-03-01", "2027-03-02", customer, None)
            .await;
        assert_eq!(
            again.code(),
            "identity_unverified",
            "after {reason}: {again:?}"
        );
    }

    // The real customer: verified, with only the NIK's last four digits to show.
    let verified = check(
        &cloud,
        customer,
        // The card prints the record's name in capitals, spaced differently: the same name.
        json!({"ktp_image": ktp(NIK, "SITI  RAHAYU"), "selfie": selfie(0.93, true)}),
    )
    .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_eq!(verified.body["state"], "VERIFIED", "{verified:?}");
    assert_eq!(verified.body["nik_last4"], "0001", "{verified:?}");
    let held = cloud
        .hold(0, "a1", "2027-03-01", "2027-03-02", customer, None)
        .await;
    assert_eq!(held.status, 201, "{held:?}");

    // A later failed attempt is logged, and does not take the verification away.
    let later = check(
        &cloud,
        customer,
        json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.2, true)}),
    )
    .await;
    assert_eq!(later.body["state"], "VERIFIED", "{later:?}");
    assert_eq!(
        later.body["attempt"]["reason"], "face_mismatch",
        "{later:?}"
    );
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM identity_checks").await,
        7
    );
    // Another customer is still refused.
    register(&cloud, &cloud.portal, "C-KTP-2", "Budi Santoso").await;
    let other = cloud
        .hold(0, "a2", "2027-03-01", "2027-03-02", "C-KTP-2", None)
        .await;
    assert_eq!(other.code(), "identity_unverified", "{other:?}");

    // The NIK is nowhere in clear: only its keyed hash and last four digits are stored...
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM customer_identities WHERE nik_hmac IS NOT NULL AND length(nik_hmac) = 32")
            .await,
        1
    );
    for table in ["customer_identities", "identity_checks", "bookings"] {
        let found = cloud
            .scalar(&format!(
                "SELECT count(*) FROM {table} t WHERE t::text LIKE '%{NIK}%' OR t::text LIKE '%{}%'",
                &NIK[..12]
            ))
            .await;
        assert_eq!(found, 0, "the NIK is stored in clear in {table}");
    }
    // ...and no log line of the service (debug level) carries it, or the images.
    let log = cloud.servers[0].stderr();
    assert!(
        log.contains("identity check recorded"),
        "the log is captured: {log}"
    );
    for secret in [NIK, &NIK[..12], &ktp(NIK, NAME)] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
}

#[tokio::test]
async fn without_a_provider_a_check_is_503_and_changes_nothing() {
    let redis = RedisProcess::start().await;
    let cloud = BookingCloud::start(
        1,
        1,
        &[
            ("REDIS_URL", &redis.url()),
            ("SENTRA_CLOUD__IDENTITY__REQUIRED", "true"),
        ],
    )
    .await;
    register(&cloud, &cloud.portal, "C-1", NAME).await;
    let answer = check(
        &cloud,
        "C-1",
        json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.93, true)}),
    )
    .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer.code(),
        "identity_provider_unconfigured",
        "{answer:?}"
    );
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM identity_checks").await,
        0
    );
    let refused = cloud
        .hold(0, "a1", "2027-03-01", "2027-03-02", "C-1", None)
        .await;
    assert_eq!(refused.code(), "identity_unverified", "{refused:?}");
}

/// A provider of the Verihubs shape that counts the KTP reads it is asked for and reads every
/// card as `NIK`, `NAME`: to see whether the cloud called it at all.
async fn counting_provider() -> (String, Arc<AtomicUsize>) {
    use axum::routing::post;
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let app = axum::Router::new()
        .route(
            "/v2/ktp/extract",
            post(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"message": "Successful", "reference_id": "T-1", "nik": NIK, "full_name": NAME}))
                }
            }),
        )
        .route(
            "/v1/face/liveness",
            post(|| async { axum::Json(json!({"message": "Successful", "status": "Live"})) }),
        )
        .route(
            "/v1/face/compare",
            post(|| async { axum::Json(json!({"message": "Successful", "similarity": 0.95})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the provider");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), reads)
}

fn good_check() -> serde_json::Value {
    json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.95, true)})
}

/// Issue 15: a check needs a customer record of the caller's own. An unknown customer, or
/// another portal's, is 404 and nothing reaches the provider or the database; the standing is
/// read and counted by its owner only, so one portal's check never clears another portal's
/// customer who happens to have the same reference.
#[tokio::test]
async fn a_check_attaches_to_a_customer_record_of_the_caller() {
    let redis = RedisProcess::start().await;
    let (provider, reads) = counting_provider().await;
    let cloud = BookingCloud::start(
        1,
        1,
        &[
            ("REDIS_URL", &redis.url()),
            ("SENTRA_CLOUD__IDENTITY__REQUIRED", "true"),
            ("SENTRA_CLOUD__IDENTITY__PROVIDER_URL", &provider),
        ],
    )
    .await;
    let other_portal = cloud
        .command(&["api-token", "--name", "portal-b", "--role", "portal"])
        .await;
    let nothing_happened = |when: &str| {
        let when = when.to_owned();
        let cloud = &cloud;
        let reads = reads.clone();
        async move {
            assert_eq!(
                reads.load(Ordering::SeqCst),
                0,
                "{when}: the provider was called"
            );
            assert_eq!(
                cloud.scalar("SELECT count(*) FROM identity_checks").await
                    + cloud
                        .scalar("SELECT count(*) FROM customer_identities")
                        .await,
                0,
                "{when}: a check was stored"
            );
        }
    };

    // No record at all: 404, the same answer as for another's customer.
    let unknown = check(&cloud, "C-NONE", good_check()).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "not_found"),
        "{unknown:?}"
    );
    nothing_happened("unknown customer").await;

    // Portal B's customer: portal A cannot check it, and is told no more than for an unknown one.
    register(&cloud, &other_portal, "C-1", NAME).await;
    let foreign = check(&cloud, "C-1", good_check()).await;
    assert_eq!(foreign.status, 404, "{foreign:?}");
    assert_eq!(
        foreign.body, unknown.body,
        "the same answer as for no customer"
    );
    nothing_happened("another portal's customer").await;
    // A portal cannot name a branch to reach the branch's records either.
    let with_branch = check(
        &cloud,
        "C-1",
        json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.95, true), "branch": BRANCH}),
    )
    .await;
    assert_eq!(with_branch.status, 422, "{with_branch:?}");
    nothing_happened("a portal naming a branch").await;

    // Portal B checks its own customer.
    let verified = check_as(&cloud, &other_portal, "C-1", good_check()).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_eq!(verified.body["state"], "VERIFIED", "{verified:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 1);

    // Only its owner reads the standing.
    let path = "/v1/customers/C-1/identity";
    let mine = cloud
        .call(0, &other_portal, Method::GET, path, None, None)
        .await;
    assert_eq!(
        (mine.status, &mine.body["state"]),
        (200, &json!("VERIFIED")),
        "{mine:?}"
    );
    let theirs = cloud
        .call(0, &cloud.portal, Method::GET, path, None, None)
        .await;
    assert_eq!(theirs.status, 404, "{theirs:?}");
    let operator = cloud
        .call(
            0,
            &cloud.operator,
            Method::GET,
            &format!("{path}?branch={BRANCH}"),
            None,
            None,
        )
        .await;
    assert_eq!(
        operator.status, 404,
        "the branch has no such check: {operator:?}"
    );

    // Portal A's own "C-1" (another person) is not cleared by portal B's check.
    register(&cloud, &cloud.portal, "C-1", "Budi Santoso").await;
    let refused = cloud
        .hold(0, "a1", "2027-04-01", "2027-04-02", "C-1", None)
        .await;
    assert_eq!(refused.code(), "identity_unverified", "{refused:?}");
    let booked = cloud
        .call(
            0,
            &other_portal,
            Method::POST,
            "/v1/bookings",
            Some(
                json!({"branch": BRANCH, "asset_id": "a1", "sku": crate::booking_support::SKU,
                        "from": "2027-04-01", "to": "2027-04-02", "customer": "C-1"}),
            ),
            None,
        )
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    // And its check of the KTP (which names Siti Rahayu) fails on the name, stored as such.
    let mismatch = check(&cloud, "C-1", good_check()).await;
    assert_eq!(
        (
            mismatch.body["state"].as_str(),
            mismatch.body["reason"].as_str()
        ),
        (Some("REJECTED"), Some("name_mismatch")),
        "{mismatch:?}"
    );
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM identity_checks WHERE owner = 'portal:portal' AND reason = 'name_mismatch'")
            .await,
        1
    );
}

/// Issue 15: a branch's devices check the branch's shared customer records; another branch's
/// device gets 404 for them, reads no standing, and nothing is stored or sent.
#[tokio::test]
async fn a_branch_checks_its_own_shared_customer_records() {
    let (provider, reads) = counting_provider().await;
    let cloud = Cloud::start_with(&[
        ("SENTRA_CLOUD__IDENTITY__REQUIRED", "true"),
        ("SENTRA_CLOUD__IDENTITY__PROVIDER_URL", &provider),
    ])
    .await;
    let jakarta = cloud.enroll("JKT01").await;
    let bandung = cloud.enroll("BDG01").await;
    let record = cloud
        .bearer(
            &cloud.operator,
            Method::PATCH,
            "/v1/branches/JKT01/customers/C-9",
            Some(json!({"name": NAME})),
        )
        .await;
    assert_eq!(record.status, 200, "{record:?}");
    let body = good_check().to_string().into_bytes();
    let path = "/v1/customers/C-9/identity";

    let foreign = cloud
        .signed(&bandung, Method::POST, path, Some(body.clone()))
        .await;
    assert_eq!(foreign.status, 404, "{foreign:?}");
    // Naming the other branch does not help.
    let named = cloud
        .signed(
            &bandung,
            Method::POST,
            path,
            Some(
                json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.95, true), "branch": "JKT01"})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(named.status, 404, "{named:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 0, "the provider was called");
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM identity_checks").await,
        0
    );

    let own = cloud.signed(&jakarta, Method::POST, path, Some(body)).await;
    assert_eq!(
        (own.status, own.body["state"].as_str()),
        (200, Some("VERIFIED")),
        "{own:?}"
    );
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM customer_identities WHERE owner = 'branch:JKT01' AND customer = 'C-9'")
            .await,
        1
    );
    let read = cloud.signed(&jakarta, Method::GET, path, None).await;
    assert_eq!(read.status, 200, "{read:?}");
    let not_theirs = cloud.signed(&bandung, Method::GET, path, None).await;
    assert_eq!(not_theirs.status, 404, "{not_theirs:?}");
    // An operator reads it by naming the branch, and must name one.
    let by_operator = cloud
        .bearer(
            &cloud.operator,
            Method::GET,
            &format!("{path}?branch=JKT01"),
            None,
        )
        .await;
    assert_eq!(by_operator.body["state"], "VERIFIED", "{by_operator:?}");
    let unnamed = cloud
        .bearer(&cloud.operator, Method::POST, path, Some(good_check()))
        .await;
    assert_eq!(unnamed.status, 422, "{unnamed:?}");

    // A record without a name cannot be matched: refused before the provider is asked.
    let nameless = cloud
        .bearer(
            &cloud.operator,
            Method::PATCH,
            "/v1/branches/JKT01/customers/C-10",
            Some(json!({"phone": "+6281100000"})),
        )
        .await;
    assert_eq!(nameless.status, 200, "{nameless:?}");
    let before = reads.load(Ordering::SeqCst);
    let answer = cloud
        .signed(
            &jakarta,
            Method::POST,
            "/v1/customers/C-10/identity",
            Some(good_check().to_string().into_bytes()),
        )
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "customer_unnamed"),
        "{answer:?}"
    );
    assert_eq!(reads.load(Ordering::SeqCst), before);
}

/// Issue 15: provider calls are throttled per caller. Past the limit a check is 429 with the
/// error envelope and `Retry-After`, the provider is not called and nothing is stored; another
/// caller is not affected.
#[tokio::test]
async fn identity_checks_are_throttled_per_caller() {
    let redis = RedisProcess::start().await;
    let (provider, reads) = counting_provider().await;
    let cloud = BookingCloud::start(
        1,
        1,
        &[
            ("REDIS_URL", &redis.url()),
            ("SENTRA_CLOUD__IDENTITY__PROVIDER_URL", &provider),
            ("SENTRA_CLOUD__IDENTITY__CHECKS_PER_CALLER", "2"),
            ("SENTRA_CLOUD__IDENTITY__CHECK_WINDOW_SECS", "3600"),
        ],
    )
    .await;
    let other_portal = cloud
        .command(&["api-token", "--name", "portal-b", "--role", "portal"])
        .await;
    register(&cloud, &cloud.portal, "C-1", NAME).await;
    register(&cloud, &other_portal, "C-2", NAME).await;
    for attempt in 1..=2 {
        let answer = check(&cloud, "C-1", good_check()).await;
        assert_eq!(answer.status, 200, "attempt {attempt}: {answer:?}");
    }
    assert_eq!(reads.load(Ordering::SeqCst), 2);

    let url = format!("http://{}/v1/customers/C-1/identity", cloud.servers[0].addr);
    let response = crate::support::http_client()
        .post(&url)
        .header("authorization", format!("Bearer {}", cloud.portal))
        .header("content-type", "application/json")
        .body(good_check().to_string())
        .send()
        .await
        .expect("the third check");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.expect("the error envelope");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "the provider was called past the limit"
    );
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM identity_checks").await,
        2
    );

    // Another caller has its own allowance.
    let other = check_as(&cloud, &other_portal, "C-2", good_check()).await;
    assert_eq!(other.status, 200, "{other:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 3);
}
