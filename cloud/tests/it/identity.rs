//! Identity checks before a first rental (issue 8), through the real `serve` with its sandbox
//! provider (Verihubs-shaped HTTP): the gate refuses an unverified customer's hold, each way a
//! check can fail is stored as REJECTED with its reason, a verified customer books, and neither
//! the database nor the log (at debug level) holds the NIK.

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use crate::booking_support::{BookingCloud, RedisProcess};

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
    cloud
        .call(
            0,
            &cloud.portal,
            Method::POST,
            &format!("/v1/customers/{customer}/identity"),
            Some(body),
            None,
        )
        .await
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
            json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.9, true), "name": "Budi Santoso"}),
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
        json!({"ktp_image": ktp(NIK, NAME), "selfie": selfie(0.93, true), "name": "SITI  RAHAYU"}),
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
