//! The fleet page as the cloud team looks at it (issue 20): its charts (a device's day, the
//! fleet's versions and week, a rollout's waves), the controls that ask first (pause, abort) and
//! the resume of a halted rollout with who and why in its history, the phone sign-in as a QR,
//! the week's counts sampled by a replica, and axe-core in headless Chromium on every kind of
//! page reporting no serious or critical violation.
//!
//! axe-core is served to Chromium by a proxy in front of the cloud that adds it to each page,
//! with a script that runs it once the page has loaded and writes what it found into the page;
//! `--dump-dom` prints the page after Chromium's virtual time budget, so the test reads axe's
//! verdict from the DOM. That needs nothing beyond the Chromium the fleet tests already run (no
//! DevTools protocol client in the tree), and the pages under test are the cloud's own bytes with
//! two script tags appended.

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cloud::Cloud;
use crate::fleet::{self, Agent, FLEET, NEW};
use crate::support::{Server, redis_url, run};

/// A rollout on `stable` with three canaries that halts itself: every fourth agent after the
/// canaries rolls back. Its id.
async fn halted_rollout(cloud: &Cloud, agents: &mut [Agent]) -> String {
    let canaries: Vec<String> = agents[..3].iter().map(|a| a.device.id.clone()).collect();
    let started = fleet::rollout_cli(
        cloud,
        &[
            "--channel",
            "stable",
            "--percent",
            "100",
            "--canary",
            &canaries.join(","),
        ],
    )
    .await;
    let id = started["id"].as_str().expect("rollout id").to_owned();
    for _ in 0..8 {
        fleet::round(cloud, agents).await;
    }
    // Halted: nobody is told, and everyone has reported what it runs.
    assert_eq!(fleet::round(cloud, agents).await, 0);
    let rollout = fleet::rollout_json(cloud, &id).await;
    assert_eq!(rollout["rollout"]["state"], "halted", "{rollout}");
    id
}

/// A fleet page (HTML) fetched with the operator's token; its status and text.
async fn page(cloud: &Cloud, method: Method, path: &str, form: Option<&str>) -> (u16, String) {
    let mut request = crate::support::http_client()
        .request(method, format!("http://{}{path}", cloud.server.addr))
        .bearer_auth(&cloud.operator);
    if let Some(form) = form {
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
    }
    let answer = request.send().await.expect("the cloud answers");
    let status = answer.status().as_u16();
    (status, answer.text().await.expect("a body"))
}

async fn state_of(cloud: &Cloud, id: &str) -> String {
    let rollout = fleet::rollout_json(cloud, id).await;
    rollout["rollout"]["state"]
        .as_str()
        .expect("a state")
        .to_owned()
}

#[tokio::test]
async fn pause_and_abort_ask_first_and_a_halted_rollout_resumes_with_who_and_why() {
    let (cloud, mut agents, _dir) = fleet::fleet(|i| i >= 3 && i % 4 == 0).await;
    let id = halted_rollout(&cloud, &mut agents).await;
    let failed_before = fleet::rollout_json(&cloud, &id).await["rollout"]["failed"]
        .as_i64()
        .expect("failed");
    assert!(failed_before >= 1);

    // The card offers "Abort…" and "Resume…": both ask first.
    let (status, html) = page(&cloud, Method::GET, &format!("/fleet/rollouts/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(html.contains(">Abort…</button>"), "{html}");
    assert!(html.contains(">Resume…</button>"), "{html}");
    assert!(
        !html.contains(">Pause…</button>"),
        "not offered when halted"
    );

    // Abort without confirm: a page that asks, and nothing happens.
    let abort = format!("/fleet/rollouts/{id}/abort");
    let (status, html) = page(&cloud, Method::POST, &abort, Some("")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Abort this rollout?"), "{html}");
    assert!(
        html.contains("<input type=\"hidden\" name=\"confirm\" value=\"yes\">"),
        "{html}"
    );
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "no refresh eats the reason"
    );
    assert_eq!(state_of(&cloud, &id).await, "halted");
    // Another site cannot confirm for you.
    let forged = crate::support::http_client()
        .post(format!("http://{}{abort}", cloud.server.addr))
        .bearer_auth(&cloud.operator)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("confirm=yes")
        .send()
        .await
        .expect("a cross-site POST");
    assert_eq!(forged.status(), 403);
    assert_eq!(state_of(&cloud, &id).await, "halted");

    // Resume asks what was fixed; confirming without it (or with a wild one) is refused.
    let resume = format!("/fleet/rollouts/{id}/resume");
    let (status, html) = page(&cloud, Method::POST, &resume, Some("")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Resume this halted rollout?"), "{html}");
    assert!(html.contains("What was fixed (required)"), "{html}");
    assert!(html.contains("required"), "{html}");
    for form in [
        "confirm=yes".to_owned(),
        "confirm=yes&reason=+++".to_owned(),
        format!("confirm=yes&reason={}", "x".repeat(501)),
        "confirm=yes&reason=line%0Abreak".to_owned(),
    ] {
        let (status, html) = page(&cloud, Method::POST, &resume, Some(&form)).await;
        assert_eq!(status, 422, "{form}: {html}");
        assert!(html.contains("role=\"alert\""), "{html}");
    }
    let json = cloud
        .bearer(
            &cloud.operator,
            Method::POST,
            &format!("/v1/fleet/rollouts/{id}/resume"),
            Some(json!({"reason": ""})),
        )
        .await;
    assert_eq!(json.status, 422, "{json:?}");
    let cli = run(
        &["rollout", "resume", "--channel", "stable"],
        &[("DATABASE_URL", cloud.db.url())],
    )
    .await;
    assert_eq!(cli.status.code(), Some(1));
    assert!(cli.stderr.contains("needs a reason"), "{}", cli.stderr);
    assert_eq!(state_of(&cloud, &id).await, "halted");

    // The cause is fixed (the bad boxes get their disk back); resumed with the reason.
    for agent in &mut agents {
        agent.bad = false;
    }
    let (status, _) = page(
        &cloud,
        Method::POST,
        &resume,
        Some("confirm=yes&reason=freed+disk+on+the+failing+boxes"),
    )
    .await;
    assert_eq!(status, 200, "the redirect to the rollout's page, followed");
    let rollout = fleet::rollout_json(&cloud, &id).await;
    assert_eq!(rollout["rollout"]["state"], "running", "{rollout}");
    assert_eq!(
        rollout["rollout"]["failed"], 0,
        "failed devices get another try"
    );
    assert_eq!(rollout["rollout"]["reason"], Value::Null);

    // Pause asks too; a paused rollout resumes at once (no question).
    let pause = format!("/fleet/rollouts/{id}/pause");
    let (_, html) = page(&cloud, Method::POST, &pause, Some("")).await;
    assert!(html.contains("Pause this rollout?"), "{html}");
    assert_eq!(state_of(&cloud, &id).await, "running");
    page(
        &cloud,
        Method::POST,
        &pause,
        Some("confirm=yes&reason=lunch+rush"),
    )
    .await;
    let rollout = fleet::rollout_json(&cloud, &id).await;
    assert_eq!(rollout["rollout"]["state"], "paused");
    assert_eq!(rollout["rollout"]["reason"], "paused by ops: lunch rush");
    page(&cloud, Method::POST, &resume, Some("")).await;
    assert_eq!(state_of(&cloud, &id).await, "running");

    for _ in 0..8 {
        fleet::round(&cloud, &mut agents).await;
    }
    let rollout = fleet::rollout_json(&cloud, &id).await;
    assert_eq!(rollout["rollout"]["state"], "completed", "{rollout}");
    assert_eq!(rollout["rollout"]["succeeded"], FLEET);
    assert!(agents.iter().all(|a| a.version == NEW));

    // The history says who did what and why, newest first.
    let (_, html) = page(&cloud, Method::GET, &format!("/fleet/rollouts/{id}"), None).await;
    let history = html
        .split("<ol class=\"history\"")
        .nth(1)
        .and_then(|rest| rest.split("</ol>").next())
        .expect("a history");
    let lines: Vec<&str> = history.split("<li>").skip(1).collect();
    let said = |action: &str, by: &str| {
        lines
            .iter()
            .position(|line| line.contains(&format!("<b>{action}</b> by {by}")))
            .unwrap_or_else(|| panic!("{action} by {by} in the history:\n{history}"))
    };
    let completed = said("completed", "rollout");
    let resumed_paused = said("resumed", "ops");
    let paused = said("paused", "ops");
    let halted = said("halted", "rollout");
    let started = said("started", "cli:");
    assert!(completed < resumed_paused && resumed_paused < paused && paused < halted);
    assert!(halted < started);
    assert!(history.contains("resumed</b> by ops: freed disk on the failing boxes"));
    assert!(history.contains("paused</b> by ops: lunch rush"));
    assert!(
        history.contains("threshold"),
        "the halt's reason: {history}"
    );
    assert!(history.contains("<b>wave</b> by rollout: wave 1 of 3 (10 %) opened"));

    // Abort once more asks and then acts; an aborted rollout cannot be resumed.
    let aborted = cloud
        .bearer(
            &cloud.operator,
            Method::POST,
            &format!("/v1/fleet/rollouts/{id}/abort"),
            None,
        )
        .await;
    assert_eq!(aborted.status, 409, "a completed rollout is not aborted");
}

/// Inserts the week's hourly counts the test makes up (the test owns the clock): all online but
/// for 9 offline 30 hours ago.
async fn make_week(cloud: &Cloud, devices: i64) {
    let mut db = cloud.db.connect().await;
    sqlx::query(
        "INSERT INTO fleet_counts (hour, devices, online, offline)
         SELECT date_trunc('hour', now()) - make_interval(hours => h), $1,
                $1 - CASE WHEN h = 30 THEN 9 ELSE 0 END, CASE WHEN h = 30 THEN 9 ELSE 0 END
         FROM generate_series(1, 7 * 24 - 1) AS h
         ON CONFLICT (hour) DO NOTHING",
    )
    .bind(i32::try_from(devices).expect("a count"))
    .execute(&mut db)
    .await
    .expect("insert the week");
}

#[tokio::test]
async fn the_pages_draw_their_charts_with_their_figures_as_text() {
    let (cloud, mut agents, dir) = fleet::fleet(|i| i >= 3 && i % 4 == 0).await;
    let id = halted_rollout(&cloud, &mut agents).await;
    make_week(&cloud, FLEET as i64).await;

    let (status, html) = page(&cloud, Method::GET, "/fleet", None).await;
    assert_eq!(status, 200);
    // Versions as a bar with a legend of counts and shares.
    let legend = html
        .split("<figcaption id=\"chart-versions\">")
        .nth(1)
        .expect("the versions' legend");
    let on_new = agents.iter().filter(|a| a.version == NEW).count();
    assert!(
        legend.contains(&format!(
            "<b>{NEW}</b> {on_new} ({} %)",
            (on_new as f64 * 100.0 / FLEET as f64).round()
        )),
        "{legend}"
    );
    assert!(legend.contains("<b>1.0.0</b> "), "{legend}");
    // The week: 167 made-up hours and the one sampled at start (the replica's first sample).
    assert!(html.contains("Most offline: 9 at "), "{html}");
    assert!(html.contains("<summary>Day by day</summary>"), "{html}");
    // The progress bar has ARIA values and its text.
    let succeeded = fleet::rollout_json(&cloud, &id).await["rollout"]["succeeded"].clone();
    assert!(
        html.contains(&format!(
            "role=\"progressbar\" aria-label=\"Rollout of {NEW} to stable\" aria-valuemin=\"0\" aria-valuemax=\"{FLEET}\" aria-valuenow=\"{succeeded}\""
        )),
        "{html}"
    );
    assert!(html.contains(&format!(
        "aria-valuetext=\"{succeeded} of {FLEET} devices succeeded"
    )));

    // A device's day: five sparklines, each with now, lowest and highest as text, and the table
    // folded away. The day before the test's heartbeats is made up (the test owns the clock).
    let device = &agents[0].device.id;
    let mut db = cloud.db.connect().await;
    sqlx::query(
        "INSERT INTO heartbeat_history (device_id, received_at, version, update_state, healthy, backlog,
                                        backlog_bytes, skew_ms, disk_free_bytes, mem_available_bytes, backlog_oldest_secs)
         SELECT $1::uuid, now() - make_interval(mins => i * 10), '1.0.0', 'idle', true, (i % 17) * 3,
                1000, 40 + i, 40000000000, 5000000000, i * 5
         FROM generate_series(1, 143) AS i",
    )
    .bind(device)
    .execute(&mut db)
    .await
    .expect("a made-up day");
    let (_, html) = page(
        &cloud,
        Method::GET,
        &format!("/fleet/devices/{device}"),
        None,
    )
    .await;
    for (id, text) in [
        (
            "chart-backlog",
            "Sync backlog (events): now 3, lowest 0, highest 48",
        ),
        (
            "chart-oldest",
            "Oldest change waiting: now 12 s, lowest 5 s, highest 11 min",
        ),
        (
            "chart-skew",
            "Clock skew: now 40 ms, lowest 40 ms, highest 183 ms",
        ),
        ("chart-memory", "Memory available: now 4.7 GiB"),
        ("chart-disk", "Disk free: now 37.3 GiB"),
    ] {
        assert!(
            html.contains(&format!("aria-labelledby=\"{id}\"")),
            "{id}: {html}"
        );
        assert!(
            html.contains(&format!("<figcaption id=\"{id}\">{text}")),
            "{id}: {html}"
        );
    }
    assert!(
        html.contains("<details><summary>The day as a table"),
        "{html}"
    );

    // A rollout's waves: the canaries all succeeded; a later wave has failures.
    let (_, html) = page(&cloud, Method::GET, &format!("/fleet/rollouts/{id}"), None).await;
    let waves = html
        .split("<table class=\"waves\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("the waves");
    assert!(
        waves.contains("<th scope=\"row\">canaries</th><td>3</td><td>3</td><td>0</td>"),
        "{waves}"
    );
    assert!(waves.contains("<td class=\"bad\">"), "{waves}");

    // Screenshots of the three pages at phone and laptop width, kept for people to look at.
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-look");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let proxy = axe_proxy(cloud.server.addr, Some(cloud.operator.clone())).await;
    for (name, path) in [
        ("overview", "/fleet".to_owned()),
        ("device", format!("/fleet/devices/{device}")),
        ("rollout", format!("/fleet/rollouts/{id}")),
    ] {
        for (width, size) in [("phone", "412,2400"), ("laptop", "1280,1600")] {
            let file = shots.join(format!("{name}-{width}.png"));
            let _ = std::fs::remove_file(&file);
            fleet::headless(
                dir.path(),
                &[
                    &format!("--screenshot={}", file.display()),
                    &format!("--window-size={size}"),
                ],
                &format!("http://{proxy}{path}"),
            )
            .await;
            let png = std::fs::read(&file).expect("chromium wrote the screenshot");
            assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", file.display());
        }
    }
    eprintln!("fleet page screenshots: {}", shots.display());
}

/// The week's counts: a replica samples at start (and every few minutes), a worse sample
/// replaces the hour's row, and rows older than 8 days go. A sample that fails (here: the table
/// renamed away under the replica) is tried again within seconds, not at the next interval.
#[tokio::test]
async fn a_replica_samples_the_week_and_forgets_beyond_eight_days() {
    let cloud = Cloud::start().await;
    let mut agents = fleet::enroll_fleet(&cloud, 6, |_| false).await;
    fleet::round(&cloud, &mut agents).await;
    let quiet: Vec<String> = agents[..2].iter().map(|a| a.device.id.clone()).collect();
    let mut db = cloud.db.connect().await;
    sqlx::query(
        "UPDATE device_heartbeats SET received_at = now() - interval '2 hours' WHERE device_id::text = ANY ($1)",
    )
    .bind(&quiet)
    .execute(&mut db)
    .await
    .expect("backdate heartbeats");
    // An old row, and this hour's row as if all had been online. The hour is read once: a
    // sample taken after the clock passes into the next hour writes that hour's row.
    let hour: i64 =
        sqlx::query_scalar("SELECT extract(epoch FROM date_trunc('hour', now()))::bigint")
            .fetch_one(&mut db)
            .await
            .expect("this hour");
    sqlx::query(
        "INSERT INTO fleet_counts (hour, devices, online, offline) VALUES
             (to_timestamp($1) - interval '9 days', 6, 6, 0),
             (to_timestamp($1), 6, 6, 0)
         ON CONFLICT (hour) DO UPDATE SET devices = 6, online = 6, offline = 0",
    )
    .bind(hour)
    .execute(&mut db)
    .await
    .expect("insert counts");
    sqlx::query("ALTER TABLE fleet_counts RENAME TO fleet_counts_away")
        .execute(&mut db)
        .await
        .expect("rename the table away");

    // Another replica on the same database samples as it starts, and fails.
    let blobs = tempfile::tempdir().expect("a photo store directory");
    let blobs_url = format!("file://{}", blobs.path().display());
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
    let failed = "sampling the fleet's online count failed";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !replica.stderr().contains(failed) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica did not try to sample; stderr:\n{}",
            replica.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sqlx::query("ALTER TABLE fleet_counts_away RENAME TO fleet_counts")
        .execute(&mut db)
        .await
        .expect("rename the table back");

    // Within seconds, not at the next interval (minutes away).
    let sampled = format!(
        "SELECT count(*) FROM fleet_counts WHERE hour >= to_timestamp({hour}) AND offline = 2 AND online = 4 AND devices = 6"
    );
    while cloud.scalar(&sampled).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no sample of this hour with 2 offline; stderr:\n{}",
            replica.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM fleet_counts WHERE hour < now() - interval '8 days'")
            .await,
        0,
        "rows beyond 8 days are deleted"
    );
    drop(replica);
}

/// The phone sign-in: the page's button makes a one-time link and shows it as a QR and as
/// text; the link signs a browser in once.
#[tokio::test]
async fn the_phone_sign_in_is_a_qr_of_a_one_time_link() {
    let cloud = Cloud::start().await;
    let origin = format!("http://{}", cloud.server.addr);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let phone = |site: &'static str| {
        client
            .post(format!("{origin}/fleet/phone-link"))
            .bearer_auth(&cloud.operator)
            .header("origin", &origin)
            .header("sec-fetch-site", site)
            .send()
    };
    let forged = phone("cross-site").await.expect("a cross-site POST");
    assert_eq!(forged.status(), 403);
    let answer = phone("same-origin").await.expect("POST /fleet/phone-link");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    assert_eq!(answer.headers()["referrer-policy"], "no-referrer");
    let html = answer.text().await.expect("html");
    assert!(
        html.contains(
            "<svg role=\"img\" aria-label=\"QR code of the sign-in link written below it\""
        ),
        "{html}"
    );
    assert!(
        html.contains("<path d=\"M4 4h1v1h-1z"),
        "a finder pattern's corner: {html}"
    );
    let marker = format!("<code>{origin}/fleet/login?ticket=");
    let ticket: String = html
        .split(&marker)
        .nth(1)
        .expect("the link as text")
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(ticket.len(), 64, "{html}");
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM fleet_sessions WHERE ticket")
            .await,
        1
    );
    let press = || {
        client
            .post(format!("{origin}/fleet/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("ticket={ticket}"))
            .send()
    };
    assert_eq!(press().await.expect("sign in").status(), 303);
    assert_eq!(press().await.expect("again").status(), 401, "once");
    // Signed out, the button's POST gets the sign-in form.
    let anonymous = client
        .post(format!("{origin}/fleet/phone-link"))
        .send()
        .await
        .expect("anonymous POST");
    assert_eq!(anonymous.status(), 401);
}

/// axe-core's `axe.min.js`: `$SENTRA_AXE` (`bash scripts/test.sh` installs the pinned version).
fn axe_script() -> Vec<u8> {
    let path = std::env::var("SENTRA_AXE").unwrap_or_else(|_| {
        panic!(
            "SENTRA_AXE is not set: axe-core 4.14.1 is needed (its axe.min.js); run `bash scripts/test.sh`, which installs it under ~/.cache/sentra, or set SENTRA_AXE"
        )
    });
    std::fs::read(&path).unwrap_or_else(|error| panic!("SENTRA_AXE={path}: {error}"))
}

/// What the proxy adds to each page: axe-core, and a script that, once the page has loaded,
/// presses the element `#click=<selector>` in the URL names (to reach a page behind a POST
/// button), or else runs axe and writes its serious and critical violations, as base64 JSON, in
/// `data-axe` on the root element.
const AXE_RUNNER: &str = r#"<script src="/__axe.min.js"></script><script>
window.addEventListener('load', function () {
  var click = decodeURIComponent(location.hash).match(/^#click=(.*)$/);
  if (click) { document.querySelector(click[1]).click(); return; }
  axe.run(document).then(function (result) {
    var bad = result.violations.filter(function (v) {
      return v.impact === 'serious' || v.impact === 'critical';
    }).map(function (v) {
      return {id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5).map(function (n) { return n.html.slice(0, 300); })};
    });
    var report = {page: location.pathname, passed: result.passes.length, violations: bad};
    document.documentElement.setAttribute('data-axe',
      btoa(unescape(encodeURIComponent(JSON.stringify(report)))));
  }, function (error) {
    document.documentElement.setAttribute('data-axe-error', String(error));
  });
});
</script>"#;

/// A [`fleet::page_proxy`] for axe: each request goes on (with the operator's token when
/// `bearer` is given, so any page opens without a sign-in), `/__axe.min.js` is axe-core, and each
/// HTML page gets [`AXE_RUNNER`] before `</body>` (and loses its `Content-Security-Policy`).
async fn axe_proxy(cloud: SocketAddr, bearer: Option<String>) -> SocketAddr {
    fleet::page_proxy(
        cloud,
        fleet::Rewrite {
            bearer,
            script: Some(("/__axe.min.js", axe_script())),
            before_body_end: AXE_RUNNER.to_owned(),
            only_path: None,
        },
    )
    .await
}

/// axe-core's verdict on `url` (through an [`axe_proxy`]) at `width`: the page it ended on and
/// the serious or critical violations (none expected).
async fn axe(dir: &Path, url: &str, width: u32) -> (String, Vec<Value>) {
    let dom = fleet::headless(
        dir,
        &["--dump-dom", &format!("--window-size={width},1600")],
        url,
    )
    .await;
    if let Some(error) = dom.split("data-axe-error=\"").nth(1) {
        panic!(
            "axe failed on {url}: {}",
            error.split('"').next().unwrap_or_default()
        );
    }
    let encoded = dom
        .split("data-axe=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("axe did not finish on {url}:\n{dom}"));
    let report: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64"),
    )
    .expect("axe's report");
    assert!(
        report["passed"].as_u64() > Some(10),
        "axe checked something: {report}"
    );
    (
        report["page"].as_str().unwrap_or_default().to_owned(),
        report["violations"].as_array().cloned().unwrap_or_default(),
    )
}

#[tokio::test]
async fn axe_finds_no_serious_or_critical_violation_on_the_fleet_pages() {
    let (cloud, mut agents, dir) = fleet::fleet(|i| i >= 3 && i % 4 == 0).await;
    let id = halted_rollout(&cloud, &mut agents).await;
    make_week(&cloud, FLEET as i64).await;
    let device = agents[FLEET - 1].device.id.clone();
    let signed_in = axe_proxy(cloud.server.addr, Some(cloud.operator.clone())).await;
    let anonymous = axe_proxy(cloud.server.addr, None).await;
    let link = cloud
        .bearer(&cloud.operator, Method::POST, "/v1/fleet/login-links", None)
        .await;
    let ticket_path = link.body["url"].as_str().expect("url").to_owned();
    let click = |selector: &str| format!("#click={}", selector.replace(' ', "%20"));
    let pages = [
        ("/fleet".to_owned(), signed_in, "/fleet"),
        (
            format!("/fleet/devices/{device}"),
            signed_in,
            "/fleet/devices/",
        ),
        (
            format!("/fleet/rollouts/{id}"),
            signed_in,
            "/fleet/rollouts/",
        ),
        ("/fleet".to_owned(), anonymous, "/fleet"),
        (ticket_path, anonymous, "/fleet/login"),
        // Behind POST buttons: the question before an abort, a halted rollout's resume, the QR.
        (
            format!(
                "/fleet/rollouts/{id}{}",
                click(&format!("form[action$='/{id}/abort'] button"))
            ),
            signed_in,
            "/abort",
        ),
        (
            format!(
                "/fleet/rollouts/{id}{}",
                click(&format!("form[action$='/{id}/resume'] button"))
            ),
            signed_in,
            "/resume",
        ),
        (
            format!("/fleet{}", click("form[action='/fleet/phone-link'] button")),
            signed_in,
            "/fleet/phone-link",
        ),
    ];
    let mut found = Vec::new();
    for (path, proxy, lands_on) in &pages {
        for width in [412, 1280] {
            let url = format!("http://{proxy}{path}");
            let (page, violations) = axe(dir.path(), &url, width).await;
            assert!(
                page.starts_with(lands_on) || page.ends_with(lands_on),
                "{url} ended on {page}"
            );
            if !violations.is_empty() {
                found.push(json!({"url": path, "width": width, "violations": violations}));
            }
        }
    }
    assert!(
        found.is_empty(),
        "serious or critical accessibility violations:\n{}",
        serde_json::to_string_pretty(&found).unwrap_or_default()
    );
}
