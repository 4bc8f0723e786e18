//! `provisioning/README.md` followed end to end on real parts: a `sentra-cloud` on its own
//! PostgreSQL database makes an enrolment token; the box's `enroll` first meets an unreachable
//! cloud (it retries, explains, and the token stays valid), refuses the token mistyped at its
//! prompt, then enrols with the sheet's QR scanned at the prompt over a link that loses the
//! cloud's first answer (the retry gets the same identity); the daemon runs; a
//! tablet, a POS and a storekeeper terminal each pair with a code from `sentra-edge pair` and use
//! the API; the tablet's work order reaches PostgreSQL. What it cannot follow here: flashing, the
//! systemd credential and `sentra-edge-admin` (they need a booted systemd); the box uses the key
//! file instead, which is the same store key by another path.

use std::time::Duration;

use sentra_protocol::enrol_token::{EnrolToken, qr_content};
use sentra_system_tests::{Cloud, EdgeSite, Proxy, ProxyMode};
use serde_json::json;
use sqlx::Row as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn technician_guide_enrol_pair_and_serve() {
    let cloud = Cloud::start().await;
    // Cloud side of the guide: one token per box.
    let token = cloud.enrollment_token("SMG01");
    // Box side: store key and config (README "first boot"), here as a key file.
    let site = EdgeSite::new("SMG01", "");
    site.load_demo_data();

    // The cloud is unreachable (a port nobody listens on): retried, explained, nothing spent.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (code, out, err) = site.cli(&[
        "enroll",
        "--cloud",
        &format!("http://{closed}"),
        "--token",
        &token,
        "--attempts",
        "2",
    ]);
    assert_eq!(code, 1, "enroll against nothing fails: {out}{err}");
    assert!(
        err.contains("attempt 1/2"),
        "each retry is announced: {err}"
    );
    assert!(
        err.contains("enrolment failed after 2 attempt(s)")
            && err.contains("the token is still valid")
            && err.contains(&format!("curl -sS http://{closed}/healthz")),
        "the last word says what to check: {err}"
    );
    let (_, status, _) = site.cli(&["status"]);
    assert!(status.contains("not enrolled"), "{status}");

    // The token as the cloud printed it: the short form, its check character right.
    let parsed = EnrolToken::parse(&token).expect("the cloud's token parses at the box");
    assert!(!parsed.is_legacy(), "{token}");

    // Mistyped at the prompt: refused at the box, with what to do, and nothing spent.
    let mut typo: Vec<char> = parsed.canonical().chars().collect();
    typo[3] = if typo[3] == '7' { '8' } else { '7' };
    let typo: String = typo.into_iter().collect();
    let (code, _, err) =
        site.cli_with_stdin(&["enroll", "--cloud", &cloud.url], &format!("{typo}\n"));
    assert_eq!(code, 2, "a typo is a usage error: {err}");
    assert!(
        err.contains("the token has a typo: check it against the sheet"),
        "{err}"
    );

    // Scanned at the prompt (what a keyboard-mode scanner types for the sheet's QR: the cloud's
    // URL and the token, so no --cloud), over a link that loses the first answer after the cloud
    // enrolled the box: the retry gets the same identity, and the cloud has one device.
    let link = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 7).await;
    link.set(ProxyMode::DropNextReply);
    let scanned = qr_content(&parsed, Some(&link.url));
    let (code, out, err) = site.cli_with_stdin(&["enroll"], &format!("{scanned}\r\n"));
    assert_eq!(code, 0, "enroll: {out}{err}");
    assert!(
        err.contains("attempt 1/"),
        "the lost answer was retried: {err}"
    );
    assert!(
        out.contains("enrolled: device") && out.contains("SMG01"),
        "{out}"
    );
    let devices: Vec<String> = sqlx::query_scalar("SELECT id::text FROM devices")
        .fetch_all(&mut cloud.pg().await)
        .await
        .expect("devices");
    assert_eq!(devices.len(), 1, "enrolled once: {devices:?}");
    let device = &devices[0];
    assert!(
        out.contains(device.as_str()),
        "the cloud's one device is this box: {out}"
    );
    // A token is one use.
    let (code, _, err) = site.cli(&["enroll", "--cloud", &cloud.url, "--token", &token]);
    assert_ne!(code, 0);
    assert!(err.contains("already enrolled"), "{err}");

    // systemd starts the daemon; the technician pairs each terminal with a code.
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    let pos = site.pair(&edge, "pos").await;
    let keeper = site.pair(&edge, "storekeeper").await;

    let (s, wo) = edge
        .call(
            Some(&tablet),
            "POST",
            "/v1/work-orders",
            Some(json!({"customer_name": "Sri Wahyuni", "vehicle_plate": "H 1234 AB", "complaint": "Servis 20.000 km"})),
        )
        .await;
    assert_eq!(s, 201, "tablet creates a work order: {wo}");
    let id = wo["id"].as_str().expect("id");
    for (who, token) in [("pos", &pos), ("storekeeper", &keeper)] {
        let (s, b) = edge
            .call(Some(token), "GET", &format!("/v1/work-orders/{id}"), None)
            .await;
        assert_eq!(s, 200, "{who} reads the work order: {b}");
    }
    let (s, b) = edge
        .call(Some(&keeper), "GET", "/v1/stock/BRK-PAD-FR", None)
        .await;
    assert_eq!(s, 200, "storekeeper reads stock: {b}");
    // A code is one use: a second terminal cannot reuse the tablet's.
    let (s, _) = edge
        .call(
            None,
            "POST",
            "/v1/pair",
            Some(json!({"code": "AAAA-BBBB", "device_name": "stranger"})),
        )
        .await;
    assert!((400..500).contains(&s), "an unknown code is refused: {s}");

    // What the guide's last step checks: the box talks to the cloud.
    let st = edge.drained(&tablet, Duration::from_secs(120)).await;
    assert!(st["last_acked_seq"].as_u64().unwrap_or(0) > 0, "{st}");
    let mut pg = cloud.pg().await;
    let n: i64 = sqlx::query("SELECT count(*) FROM events WHERE entity = 'work_order'")
        .fetch_one(&mut pg)
        .await
        .expect("count")
        .get(0);
    assert!(n >= 1, "the work order reached PostgreSQL");
    let (_, status, _) = site.cli(&["status"]);
    assert!(
        status.contains(&link.url),
        "status shows the cloud link it enrolled through: {status}"
    );
    edge.kill().await;
}
