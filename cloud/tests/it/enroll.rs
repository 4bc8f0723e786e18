//! `sentra-cloud enrollment-token` / `api-token` and `POST /v1/enroll`.

use sentra_protocol::auth::public_key_hex;
use sentra_protocol::enrol_token::EnrolToken;
use sha2::{Digest as _, Sha256};

use crate::cloud::Cloud;
use crate::fixtures::new_key;
use crate::support::{join_all, run};

#[tokio::test]
async fn enrolment_burns_the_token_and_binds_the_branch() {
    let cloud = Cloud::start().await;
    let output = run(
        &[
            "enrollment-token",
            "--branch",
            "JKT01",
            "--branch-name",
            "Jakarta Selatan",
            "--ttl-hours",
            "2",
        ],
        &[("DATABASE_URL", cloud.db.url())],
    )
    .await;
    assert!(output.status.success(), "{}", output.stderr);
    let token = output.stdout.trim().to_owned();
    // The short form a technician types, grouped; its check character is right.
    let parsed = EnrolToken::parse(&token).expect("the printed token parses");
    assert!(!parsed.is_legacy());
    assert_eq!(parsed.grouped(), token);
    assert_eq!(token.len(), 21, "{token}");
    assert!(output.stderr.contains("JKT01"), "{}", output.stderr);
    assert!(
        !output.stderr.contains(&token) && !output.stderr.contains(parsed.canonical()),
        "the token is printed once, on stdout (and in the QR)"
    );

    // Only the hash of the token's canonical form is stored.
    let hash = hex::encode(Sha256::digest(parsed.canonical().as_bytes()));
    let stored = cloud
        .scalar(&format!(
            "SELECT count(*) FROM enrollment_tokens WHERE token_hash = '\\x{hash}'::bytea AND used_at IS NULL
               AND expires_at BETWEEN now() + interval '119 minutes' AND now() + interval '121 minutes'"
        ))
        .await;
    assert_eq!(stored, 1);

    // Sent as an older box sends what was typed (any case, spaces for hyphens): the same token.
    let key = new_key();
    let typed = token.to_lowercase().replace('-', " ");
    let answer = cloud.enroll_with(&typed, &key).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["branch_id"], "JKT01");
    assert_eq!(answer.body["branch_name"], "Jakarta Selatan");
    let device = answer.body["device_id"]
        .as_str()
        .expect("a device id")
        .to_owned();
    assert!(
        answer.body["server_time_ms"].as_u64().is_some(),
        "{answer:?}"
    );
    let bound = cloud
        .scalar(&format!(
            "SELECT count(*) FROM devices d JOIN device_cursors c ON c.device_id = d.id
             WHERE d.id = '{device}' AND d.branch_id = 'JKT01' AND c.last_seq = 0
               AND d.public_key = '\\x{}'::bytea AND d.hostname = 'edge-test'",
            public_key_hex(&key)
        ))
        .await;
    assert_eq!(bound, 1, "device row, key and cursor");

    // Used once: refused after, even with another key.
    let again = cloud.enroll_with(&token, &new_key()).await;
    assert_eq!(again.status, 401, "{again:?}");
    assert_eq!(again.code(), "enrollment_refused");
    assert_eq!(cloud.scalar("SELECT count(*) FROM devices").await, 1);
}

#[tokio::test]
async fn unknown_and_expired_tokens_are_refused() {
    let cloud = Cloud::start().await;
    let unknown = cloud.enroll_with(&"ab".repeat(32), &new_key()).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (401, "enrollment_refused"),
        "{unknown:?}"
    );

    let token = cloud.enrollment_token("BDG01").await;
    cloud
        .scalar("WITH x AS (UPDATE enrollment_tokens SET expires_at = now() - interval '1 second' RETURNING 1) SELECT count(*) FROM x")
        .await;
    let expired = cloud.enroll_with(&token, &new_key()).await;
    assert_eq!(
        (expired.status, expired.code()),
        (401, "enrollment_refused"),
        "{expired:?}"
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM devices").await, 0);
}

/// The command's output: the token on stdout, a QR that fits an 80-column terminal on stderr,
/// and with `--svg` the sheet; with `http.public_url` the QR is the enrolment URI.
#[tokio::test]
async fn the_token_comes_with_a_qr_code_and_an_svg_sheet() {
    let cloud = Cloud::start().await;
    let dir = tempfile::tempdir().expect("a directory");
    let sheet = dir.path().join("JKT01.svg");
    let output = run(
        &[
            "enrollment-token",
            "--branch",
            "JKT01",
            "--branch-name",
            "Bengkel <Jakarta> & Co",
            "--svg",
            sheet.to_str().expect("utf-8"),
        ],
        &[
            ("DATABASE_URL", cloud.db.url()),
            (
                "SENTRA_CLOUD__HTTP__PUBLIC_URL",
                "https://cloud.sentra.example",
            ),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(output.stdout.lines().count(), 1, "{}", output.stdout);
    let token = EnrolToken::parse(output.stdout.trim()).expect("a token");
    let qr: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.contains('█') || line.contains('▀') || line.contains('▄'))
        .collect();
    assert!(qr.len() >= 10, "a QR on the terminal: {}", output.stderr);
    assert!(
        qr.iter().all(|line| line.chars().count() <= 80),
        "it fits 80 columns: {}",
        output.stderr
    );
    assert!(
        output.stderr.contains("https://cloud.sentra.example")
            && output.stderr.contains("sentra-edge-admin enroll"),
        "{}",
        output.stderr
    );

    let svg = std::fs::read_to_string(&sheet).expect("the sheet was written");
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(
        svg.contains(&token.grouped()),
        "the sheet names the token in text too"
    );
    assert!(
        svg.contains("Bengkel &lt;Jakarta&gt; &amp; Co"),
        "escaped: {svg}"
    );
    assert!(svg.matches("<path").count() >= 1, "the QR's modules: {svg}");

    // A sheet that cannot be written: usage error, and no token issued.
    let before = cloud.scalar("SELECT count(*) FROM enrollment_tokens").await;
    let output = run(
        &[
            "enrollment-token",
            "--branch",
            "JKT01",
            "--svg",
            "/nonexistent-dir/x.svg",
        ],
        &[("DATABASE_URL", cloud.db.url())],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", output.stderr);
    assert!(output.stdout.is_empty());
    assert!(
        output.stderr.contains("no token was issued"),
        "{}",
        output.stderr
    );
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM enrollment_tokens").await,
        before
    );
}

/// Tokens issued before the short form (64 hex characters) enrol until they expire.
#[tokio::test]
async fn tokens_issued_in_the_old_form_still_enrol() {
    let cloud = Cloud::start().await;
    cloud.enrollment_token("JKT01").await;
    let old = "5f".repeat(32);
    let hash = hex::encode(Sha256::digest(old.as_bytes()));
    cloud
        .scalar(&format!(
            "WITH x AS (INSERT INTO enrollment_tokens (token_hash, branch_id, expires_at)
               VALUES ('\\x{hash}'::bytea, 'JKT01', now() + interval '1 hour') RETURNING 1)
             SELECT count(*) FROM x"
        ))
        .await;
    let answer = cloud.enroll_with(&old.to_uppercase(), &new_key()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["branch_id"], "JKT01");
}

#[tokio::test]
async fn a_bad_public_key_is_422_and_leaves_the_token_usable() {
    let cloud = Cloud::start().await;
    let token = cloud.enrollment_token("SBY01").await;
    for bad_key in ["zz", "00", &"0".repeat(63), ""] {
        let body = serde_json::json!({"token": token, "public_key": bad_key, "hostname": "h", "version": "v"});
        let answer = cloud
            .call(
                reqwest::Method::POST,
                "/v1/enroll",
                Some(body.to_string().into_bytes()),
                &[],
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "bad_public_key"),
            "{bad_key:?}: {answer:?}"
        );
    }
    let nul = serde_json::json!({"token": token, "public_key": sentra_protocol::auth::public_key_hex(&new_key()),
                                 "hostname": "edge\u{0}", "version": "v"});
    let answer = cloud
        .call(
            reqwest::Method::POST,
            "/v1/enroll",
            Some(nul.to_string().into_bytes()),
            &[],
        )
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "invalid"),
        "{answer:?}"
    );
    let malformed = cloud
        .call(
            reqwest::Method::POST,
            "/v1/enroll",
            Some(b"{\"token\":".to_vec()),
            &[],
        )
        .await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (400, "malformed_body"),
        "{malformed:?}"
    );

    let answer = cloud.enroll_with(&token, &new_key()).await;
    assert_eq!(answer.status, 200, "the token was not burnt: {answer:?}");
}

#[tokio::test]
async fn racing_enrolments_with_one_token_have_exactly_one_winner() {
    let cloud = Cloud::start().await;
    let token = cloud.enrollment_token("MDN01").await;
    let keys: Vec<_> = (0..12).map(|_| new_key()).collect();
    let answers = join_all(
        keys.iter()
            .map(|key| cloud.enroll_with(&token, key))
            .collect(),
    )
    .await;
    let won = answers.iter().filter(|answer| answer.status == 200).count();
    let refused = answers
        .iter()
        .filter(|answer| answer.status == 401 && answer.code() == "enrollment_refused")
        .count();
    assert_eq!((won, refused), (1, keys.len() - 1), "{answers:#?}");
    assert_eq!(cloud.scalar("SELECT count(*) FROM devices").await, 1);
}

/// The box's retry after its answer was lost: the same token and key get the same identity;
/// another key with that token is still refused, and nothing is enrolled twice.
#[tokio::test]
async fn a_lost_answer_is_answered_again_for_the_same_key_only() {
    let cloud = Cloud::start().await;
    let token = cloud.enrollment_token("MDN01").await;
    let key = new_key();
    let first = cloud.enroll_with(&token, &key).await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = cloud.enroll_with(&token, &key).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["device_id"], first.body["device_id"]);
    assert_eq!(again.body["branch_id"], "MDN01");
    let other = cloud.enroll_with(&token, &new_key()).await;
    assert_eq!(
        (other.status, other.code()),
        (401, "enrollment_refused"),
        "{other:?}"
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM devices").await, 1);

    // Not once the box was revoked, nor after the retry window.
    sqlx::query("UPDATE enrollment_tokens SET used_at = now() - interval '25 hours'")
        .execute(&mut cloud.db.connect().await)
        .await
        .expect("age the token");
    let late = cloud.enroll_with(&token, &key).await;
    assert_eq!(late.status, 401, "{late:?}");
}

#[tokio::test]
async fn token_commands_validate_their_arguments() {
    let cloud = Cloud::start().await;
    let env = [("DATABASE_URL", cloud.db.url())];
    for args in [
        &["enrollment-token", "--branch", "bad branch"][..],
        &["enrollment-token", "--branch", "JKT01", "--ttl-hours", "0"],
        &["enrollment-token"],
        &["api-token", "--name", "x", "--role", "admin"],
    ] {
        let output = run(args, &env).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.stderr);
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let portal = cloud.api_token("web-portal", "portal").await;
    assert_eq!(portal.len(), 64);
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM api_tokens WHERE name = 'web-portal' AND role = 'portal'")
            .await,
        1
    );
}

/// A box set up by the guide has no release key of its own: the enrolment answer hands it the
/// cloud's (`releases.public_key`) and its channel. A malformed key stops the cloud at start, and
/// `release publish` refuses a signing key whose public half boxes are not given.
#[tokio::test]
async fn the_enrolment_answer_carries_the_release_key_and_the_channel() {
    let signing = sentra_protocol::ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = public_key_hex(&signing);
    let cloud = Cloud::start_with(&[(
        "SENTRA_CLOUD__RELEASES__PUBLIC_KEY",
        &public.to_ascii_uppercase(),
    )])
    .await;
    let token = cloud.enrollment_token("JKT01").await;
    let answer = cloud.enroll_with(&token, &new_key()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["release_public_key"], public.as_str());
    assert_eq!(answer.body["channel"], "stable");

    let without = Cloud::start().await;
    let token = without.enrollment_token("JKT01").await;
    let answer = without.enroll_with(&token, &new_key()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.body.get("release_public_key").is_none(),
        "{answer:?}"
    );

    let bad = run(
        &["config", "check"],
        &[
            ("DATABASE_URL", cloud.db.url()),
            ("SENTRA_CLOUD__RELEASES__PUBLIC_KEY", "00ff"),
        ],
    )
    .await;
    assert!(!bad.status.success());
    assert!(
        bad.stderr.contains("SENTRA_CLOUD__RELEASES__PUBLIC_KEY"),
        "{}",
        bad.stderr
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("release.key");
    let made = run(
        &["release", "keygen", key_file.to_str().expect("utf-8")],
        &[],
    )
    .await;
    assert!(made.status.success(), "{}", made.stderr);
    let artifact = dir.path().join("sentra-edge");
    std::fs::write(&artifact, b"a release").expect("artifact");
    let refused = crate::support::release_publish(
        cloud.db.url(),
        &key_file,
        &artifact,
        "2.0.0",
        &[("SENTRA_CLOUD__RELEASES__PUBLIC_KEY", &public)],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("releases.public_key"),
        "{}",
        refused.stderr
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM releases").await, 0);
}
