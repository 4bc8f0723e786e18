//! The fleet against a real `sentra-cloud` and PostgreSQL: a simulated fleet of appliance agents
//! sending real signed heartbeats; rollouts wave by wave, one that halts itself, pause and
//! resume; offline devices (heartbeats backdated in the database: the test owns the clock);
//! signed releases and resumable downloads; `/metrics` parsed as Prometheus text; the fleet page
//! in headless Chromium.

use std::path::{Path, PathBuf};

use reqwest::Method;
use sentra_protocol::fleet::{self, SignedManifest};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::cloud::{Cloud, Device};
use crate::fixtures;
use crate::support::{join_all, run};

/// How many agents the simulated fleet has.
pub(crate) const FLEET: usize = 120;
const OLD: &str = "1.0.0";
pub(crate) const NEW: &str = "2.0.0";

/// One simulated appliance: its identity, the version it runs and what its next heartbeat says.
pub(crate) struct Agent {
    pub(crate) device: Device,
    pub(crate) version: String,
    update: Value,
    /// Whether installing makes it roll back instead of succeed.
    pub(crate) bad: bool,
    /// How many times the cloud told it to install.
    pub(crate) told: u32,
}

impl Agent {
    fn heartbeat(&self) -> Vec<u8> {
        json!({
            "version": self.version, "uptime_secs": 3600, "update": self.update, "healthy": true,
            "backlog": {"count": 3, "bytes": 2048, "oldest_age_secs": 12}, "parked": 0, "skew_ms": 40,
            "resources": {"disk_total_bytes": 64_000_000_000_u64, "disk_free_bytes": 40_000_000_000_u64,
                          "mem_total_bytes": 8_000_000_000_u64, "mem_available_bytes": 5_000_000_000_u64, "store_bytes": 52_000_000},
            "printer": "ready", "scanner": "connected"
        })
        .to_string()
        .into_bytes()
    }
}

/// Enrols `n` agents, one branch each, over the real enrolment endpoint (tokens written into the
/// database as `enrollment-token` would, to spare 120 process starts).
pub(crate) async fn enroll_fleet(
    cloud: &Cloud,
    n: usize,
    bad: impl Fn(usize) -> bool,
) -> Vec<Agent> {
    let mut db = cloud.db.connect().await;
    let mut tokens = Vec::new();
    for i in 0..n {
        let branch = format!("BR{i:03}");
        let token = fixtures::random_hex(32);
        sqlx::query("INSERT INTO branches (id, name) VALUES ($1, $2)")
            .bind(&branch)
            .bind(format!("Bengkel {i}"))
            .execute(&mut db)
            .await
            .expect("insert branch");
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, branch_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')",
        )
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .bind(&branch)
        .execute(&mut db)
        .await
        .expect("insert enrolment token");
        tokens.push(token);
    }
    let enrolled = join_all(
        tokens
            .iter()
            .map(|token| async move {
                let key = fixtures::new_key();
                let answer = cloud.enroll_with(token, &key).await;
                assert_eq!(answer.status, 200, "enrol: {answer:?}");
                let id = answer.body["device_id"]
                    .as_str()
                    .expect("device id")
                    .to_owned();
                (id, key)
            })
            .collect(),
    )
    .await;
    enrolled
        .into_iter()
        .enumerate()
        .map(|(i, (id, key))| Agent {
            device: Device {
                outbox: fixtures::Outbox::new(&id),
                id,
                key,
            },
            version: OLD.to_owned(),
            update: json!({"state": "idle"}),
            bad: bad(i),
            told: 0,
        })
        .collect()
}

/// Every agent sends one heartbeat (all at once) and acts on the answer: told to install, a
/// good agent is on the new version at its next heartbeat, a bad one reports a rollback.
/// Returns how many were told to install this round.
pub(crate) async fn round(cloud: &Cloud, agents: &mut [Agent]) -> usize {
    let answers = join_all(
        agents
            .iter()
            .map(|agent| {
                cloud.signed(
                    &agent.device,
                    Method::POST,
                    "/v1/devices/heartbeat",
                    Some(agent.heartbeat()),
                )
            })
            .collect(),
    )
    .await;
    let mut told = 0;
    for (agent, answer) in agents.iter_mut().zip(answers) {
        assert_eq!(answer.status, 200, "heartbeat: {answer:?}");
        let target = &answer.body["target"];
        if target.is_null() {
            continue;
        }
        told += 1;
        agent.told += 1;
        let version = target["version"].as_str().expect("target version");
        assert_eq!(
            target["manifest_url"],
            format!("/v1/releases/{version}/manifest")
        );
        if agent.bad {
            agent.update = json!({"state": "rolled-back", "target_version": version, "reason": "not ready within 60 s"});
        } else {
            agent.version = version.to_owned();
            agent.update = json!({"state": "success", "target_version": version});
        }
    }
    told
}

/// A release signing key made by `release keygen` in `dir`; its file and public key.
async fn keygen(dir: &Path) -> (PathBuf, String) {
    let file = dir.join("release.key");
    let output = run(
        &["release", "keygen", file.to_str().expect("utf-8 path")],
        &[],
    )
    .await;
    assert!(output.status.success(), "keygen: {}", output.stderr);
    (file, output.stdout.trim().to_owned())
}

async fn publish(cloud: &Cloud, key: &Path, artifact: &Path, version: &str) -> Value {
    let output = crate::support::release_publish(cloud.db.url(), key, artifact, version, &[]).await;
    assert!(output.status.success(), "publish: {}", output.stderr);
    serde_json::from_str(output.stdout.trim()).expect("publish prints the manifest")
}

/// `sentra-cloud rollout ...` against this cloud; its JSON.
pub(crate) async fn rollout_cli(cloud: &Cloud, args: &[&str]) -> Value {
    let mut all = vec!["rollout"];
    all.extend_from_slice(args);
    let output = run(&all, &[("DATABASE_URL", cloud.db.url())]).await;
    assert!(
        output.status.success(),
        "rollout {args:?}: {}",
        output.stderr
    );
    serde_json::from_str(output.stdout.trim()).expect("rollout prints JSON")
}

/// A cloud with the fleet enrolled and release NEW published; its fleet gauges are read every
/// second.
pub(crate) async fn fleet(bad: impl Fn(usize) -> bool) -> (Cloud, Vec<Agent>, tempfile::TempDir) {
    let cloud = Cloud::start_with(&[("SENTRA_CLOUD__FLEET__GAUGES_REFRESH_SECS", "1")]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, _) = keygen(dir.path()).await;
    let artifact = dir.path().join("sentra-edge");
    std::fs::write(&artifact, b"a new sentra-edge").expect("write artifact");
    publish(&cloud, &key, &artifact, NEW).await;
    let mut agents = enroll_fleet(&cloud, FLEET, bad).await;
    // The first heartbeats: everyone is seen, on the old version, before any rollout.
    assert_eq!(round(&cloud, &mut agents).await, 0);
    (cloud, agents, dir)
}

pub(crate) async fn rollout_json(cloud: &Cloud, id: &str) -> Value {
    let answer = cloud
        .bearer(
            &cloud.operator,
            Method::GET,
            &format!("/v1/fleet/rollouts/{id}"),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

#[tokio::test]
async fn a_rollout_goes_wave_by_wave_to_the_whole_fleet() {
    let (cloud, mut agents, _dir) = fleet(|_| false).await;
    let canaries: Vec<String> = agents[..3].iter().map(|a| a.device.id.clone()).collect();
    let started = rollout_cli(
        &cloud,
        &[
            "--channel",
            "stable",
            "--percent",
            "100",
            "--version",
            NEW,
            "--canary",
            &canaries.join(","),
        ],
    )
    .await;
    assert_eq!(started["state"], "running");
    assert_eq!(started["waves"], json!([10, 50, 100]));
    let id = started["id"].as_str().expect("rollout id").to_owned();

    // First round: only the three canaries are told.
    assert_eq!(round(&cloud, &mut agents).await, 3);
    assert!(agents[..3].iter().all(|a| a.told == 1));
    let mut waves_seen = vec![0];
    for _ in 0..10 {
        round(&cloud, &mut agents).await;
        let rollout = rollout_json(&cloud, &id).await;
        let wave = rollout["rollout"]["current_wave"].as_i64().expect("wave");
        assert!(
            wave >= *waves_seen.last().expect("a wave"),
            "waves never go back"
        );
        if wave != *waves_seen.last().expect("a wave") {
            waves_seen.push(wave);
        }
        if rollout["rollout"]["state"] == "completed" {
            break;
        }
    }
    let rollout = rollout_json(&cloud, &id).await;
    assert_eq!(rollout["rollout"]["state"], "completed", "{rollout}");
    assert_eq!(waves_seen, [0, 1, 2, 3], "each wave in turn");
    // Completed at the success threshold (90 %): the last wave's stragglers, told in the round
    // that completed it, report their success in the next one, and nobody is told twice.
    assert_eq!(round(&cloud, &mut agents).await, 0);
    let rollout = rollout_json(&cloud, &id).await;
    assert!(agents.iter().all(|a| a.version == NEW && a.told == 1));
    assert_eq!(rollout["rollout"]["succeeded"], FLEET);
    assert_eq!(rollout["rollout"]["failed"], 0);

    let view = cloud
        .bearer(&cloud.operator, Method::GET, "/v1/fleet", None)
        .await;
    assert_eq!(view.status, 200);
    assert_eq!(view.body["summary"]["by_version"][NEW], FLEET);
    assert_eq!(
        view.body["summary"]["by_version"]
            .as_object()
            .map(|o| o.len()),
        Some(1)
    );
    assert_eq!(view.body["summary"]["online"], FLEET);
    // A device is not an operator.
    let refused = cloud
        .signed(&agents[0].device, Method::GET, "/v1/fleet", None)
        .await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn a_rollout_halts_itself_when_agents_roll_back_and_the_page_flags_it() {
    // Every fourth agent (not the canaries) rolls back.
    let (cloud, mut agents, dir) = fleet(|i| i >= 3 && i % 4 == 0).await;
    let canaries: Vec<String> = agents[..3].iter().map(|a| a.device.id.clone()).collect();
    let started = rollout_cli(
        &cloud,
        &[
            "--channel",
            "stable",
            "--percent",
            "100",
            "--canary",
            &canaries.join(","),
            "--failure-threshold",
            "10",
        ],
    )
    .await;
    assert_eq!(
        started["version"], NEW,
        "the channel's newest release by default"
    );
    let id = started["id"].as_str().expect("rollout id").to_owned();
    for _ in 0..8 {
        round(&cloud, &mut agents).await;
    }
    let rollout = rollout_json(&cloud, &id).await;
    assert_eq!(rollout["rollout"]["state"], "halted", "{rollout}");
    let reason = rollout["rollout"]["reason"].as_str().expect("a reason");
    assert!(reason.contains("threshold"), "{reason}");
    let told = agents.iter().filter(|a| a.told > 0).count();
    // A wave with few bad boxes may pass its success share before its failures show; the halt
    // comes in the next one at the latest, never at the last wave.
    assert!(
        rollout["rollout"]["current_wave"].as_i64() < Some(3),
        "{rollout}"
    );
    assert!(
        told < FLEET * 3 / 4,
        "stopped before reaching the fleet: {told} told"
    );
    assert!(rollout["rollout"]["failed"].as_i64().expect("failed") >= 1);
    let failed_devices: Vec<&Value> = rollout["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter(|d| d["state"] == "failed")
        .collect();
    assert!(failed_devices.iter().all(|d| {
        d["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("rolled back"))
    }));
    // Halted means nobody else is told.
    assert_eq!(round(&cloud, &mut agents).await, 0);
    // Resuming a halted rollout without a reason (what was fixed) is refused.
    let resume = cloud
        .bearer(
            &cloud.operator,
            Method::POST,
            &format!("/v1/fleet/rollouts/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(resume.status, 422, "{resume:?}");

    // Five boxes went quiet two hours ago (the test moves their last heartbeat back).
    let quiet: Vec<String> = agents[FLEET - 5..]
        .iter()
        .map(|a| a.device.id.clone())
        .collect();
    let mut db = cloud.db.connect().await;
    sqlx::query(
        "UPDATE device_heartbeats SET received_at = now() - interval '2 hours' WHERE device_id::text = ANY ($1)",
    )
    .bind(&quiet)
    .execute(&mut db)
    .await
    .expect("backdate heartbeats");

    let view = cloud
        .bearer(&cloud.operator, Method::GET, "/v1/fleet", None)
        .await;
    assert_eq!(
        view.body["summary"]["offline"], 5,
        "{}",
        view.body["summary"]
    );
    assert_eq!(view.body["summary"]["online"], FLEET - 5);
    let devices = view.body["devices"].as_array().expect("devices");
    // Attention first, longest offline first.
    for device in &devices[..5] {
        assert_eq!(device["online"], false);
        assert!(device["offline_secs"].as_i64().expect("offline secs") >= 7200);
        assert!(
            device["attention"][0]
                .as_str()
                .expect("attention")
                .starts_with("offline for 2 h")
        );
    }

    check_metrics(&cloud).await;
    check_page(&cloud, dir.path()).await;
}

/// `/metrics` parses as Prometheus text and says what the fleet is.
async fn check_metrics(cloud: &Cloud) {
    let anonymous = crate::support::http_client()
        .get(format!("http://{}/metrics", cloud.server.addr))
        .send()
        .await
        .expect("scrape /metrics");
    assert_eq!(anonymous.status(), 401, "/metrics is not public");
    // The gauges are read in the background (every second here): wait for a reading that saw
    // the backdated heartbeats.
    let offline = |scrape: &prometheus_parse::Scrape| {
        crate::support::sample_sum(
            scrape,
            "sentra_cloud_fleet_devices",
            &[("state", "offline")],
        )
    };
    let mut scrape = crate::support::parse_metrics("");
    for _ in 0..100 {
        let text = crate::support::scrape(cloud.server.addr, &cloud.operator).await;
        scrape = crate::support::parse_metrics(&text);
        if offline(&scrape) == 5.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let value =
        |name: &str, labels: &[(&str, &str)]| crate::support::sample_sum(&scrape, name, labels);
    assert_eq!(
        value("sentra_cloud_fleet_devices", &[("state", "offline")]),
        5.0
    );
    assert_eq!(value("sentra_cloud_fleet_devices", &[]), FLEET as f64);
    assert_eq!(
        value("sentra_cloud_fleet_rollouts", &[("state", "halted")]),
        1.0
    );
    assert!(
        value(
            "sentra_cloud_fleet_rollout_devices",
            &[("state", "failed"), ("version", NEW)]
        ) >= 1.0
    );
    assert_eq!(
        value("sentra_cloud_fleet_sync_backlog_events", &[]),
        3.0 * FLEET as f64
    );
    assert_eq!(value("sentra_cloud_fleet_scrape_ok", &[]), 1.0);
    assert!(
        value(
            "sentra_cloud_fleet_devices_by_update_state",
            &[("state", "rolled-back")]
        ) >= 1.0
    );
}

/// The fleet page in headless Chromium: signed in by a one-time login link, it shows the counts
/// and flags the halted rollout. Screenshots (phone and laptop width) go to the target dir.
async fn check_page(cloud: &Cloud, dir: &Path) {
    // Without credentials: the sign-in form, 401.
    let anonymous = crate::support::http_client()
        .get(format!("http://{}/fleet", cloud.server.addr))
        .send()
        .await
        .expect("GET /fleet");
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous
            .text()
            .await
            .expect("html")
            .contains("action=\"/fleet/login\"")
    );

    let dom = chromium(cloud, dir, &["--dump-dom"]).await;
    let count = |id: &str| -> String {
        let marker = format!("id=\"{id}\">");
        let start = dom
            .find(&marker)
            .unwrap_or_else(|| panic!("{id} not on the page:\n{dom}"))
            + marker.len();
        dom[start..]
            .split('<')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(count("count-devices"), FLEET.to_string());
    assert_eq!(count("count-offline"), "5");
    assert_eq!(count("count-online"), (FLEET - 5).to_string());
    assert!(
        dom.contains("class=\"rollout state-halted\""),
        "halted rollout flagged"
    );
    assert!(dom.contains(">HALTED<"));
    assert!(dom.contains("offline</span> <small>for 2 h"));

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-page");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    for (name, size) in [("phone", "412,2400"), ("laptop", "1280,1600")] {
        let file = shots.join(format!("fleet-{name}.png"));
        let _ = std::fs::remove_file(&file);
        chromium(
            cloud,
            dir,
            &[
                &format!("--screenshot={}", file.display()),
                &format!("--window-size={size}"),
            ],
        )
        .await;
        let png = std::fs::read(&file).expect("chromium wrote the screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", file.display());
        eprintln!("fleet page screenshot: {}", file.display());
    }
}

/// What a [`page_proxy`] does to the cloud's answers on the way to Chromium.
#[derive(Clone)]
pub(crate) struct Rewrite {
    /// Sent along with every request: the operator's token, so any page opens without a sign-in.
    pub bearer: Option<String>,
    /// One extra file the proxy serves itself: its path and JavaScript.
    pub script: Option<(&'static str, Vec<u8>)>,
    /// Inserted before `</body>` of every HTML answer, with the page's
    /// `Content-Security-Policy` dropped (it would refuse it)...
    pub before_body_end: String,
    /// ...or only of the answer to a GET of this path.
    pub only_path: Option<&'static str>,
}

/// A proxy in front of the cloud for headless Chromium (which cannot click or inject): every
/// request goes on as it is, and the answers are changed as `rewrite` says. Same origin as the
/// pages it passes on.
pub(crate) async fn page_proxy(
    cloud: std::net::SocketAddr,
    rewrite: Rewrite,
) -> std::net::SocketAddr {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a proxy client");
    let forward = move |request: axum::extract::Request| {
        let (client, rewrite) = (client.clone(), rewrite.clone());
        async move {
            let (parts, body) = request.into_parts();
            if let Some((path, script)) = &rewrite.script
                && parts.uri.path() == *path
            {
                return axum::response::Response::builder()
                    .header("content-type", "text/javascript")
                    .body(axum::body::Body::from(script.clone()))
                    .expect("a response");
            }
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .expect("the request body");
            let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let mut outgoing =
                client.request(parts.method.clone(), format!("http://{cloud}{path}"));
            for (name, value) in &parts.headers {
                if !matches!(name.as_str(), "host" | "connection" | "content-length") {
                    outgoing = outgoing.header(name, value);
                }
            }
            if let Some(token) = &rewrite.bearer {
                outgoing = outgoing.bearer_auth(token);
            }
            let answer = outgoing.body(body).send().await.expect("the cloud answers");
            let status = answer.status();
            let headers = answer.headers().clone();
            let mut bytes = answer.bytes().await.expect("the answer's body").to_vec();
            let html = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/html"));
            let changed = html
                && rewrite
                    .only_path
                    .is_none_or(|only| parts.method == Method::GET && parts.uri.path() == only);
            if changed {
                bytes = String::from_utf8_lossy(&bytes)
                    .replace("</body>", &format!("{}</body>", rewrite.before_body_end))
                    .into_bytes();
            }
            let mut response = axum::response::Response::new(axum::body::Body::from(bytes));
            *response.status_mut() = status;
            for (name, value) in &headers {
                let dropped = matches!(
                    name.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                ) || (changed && name.as_str() == "content-security-policy");
                if !dropped {
                    response.headers_mut().append(name, value.clone());
                }
            }
            response
        }
    };
    let app = axum::Router::new().fallback(forward);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// The operator's thumb: a [`page_proxy`] that adds, to the page a login link opens, a script
/// that presses the page's own Sign-in button.
async fn clicking_proxy(cloud: std::net::SocketAddr) -> std::net::SocketAddr {
    page_proxy(
        cloud,
        Rewrite {
            bearer: None,
            script: None,
            before_body_end: "<script>document.querySelector('form button').click()</script>"
                .to_owned(),
            only_path: Some("/fleet/login"),
        },
    )
    .await
}

/// Runs headless Chromium on a fresh one-time login link with `args`; its stdout. The link
/// opens a page with a Sign-in button (a GET signs nobody in); pressing it POSTs the code and
/// lands on `/fleet` with a session cookie.
pub(crate) async fn chromium(cloud: &Cloud, dir: &Path, args: &[&str]) -> String {
    let link = cloud
        .bearer(&cloud.operator, Method::POST, "/v1/fleet/login-links", None)
        .await;
    assert_eq!(link.status, 200, "{link:?}");
    let proxy = clicking_proxy(cloud.server.addr).await;
    let url = format!("http://{proxy}{}", link.body["url"].as_str().expect("url"));
    headless(dir, args, &url).await
}

/// Runs headless Chromium (a fresh profile in `dir`) on `url` with `args`; its stdout.
pub(crate) async fn headless(dir: &Path, args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir_in(dir).expect("chromium profile dir");
    let binary = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("chromium is installed (scripts/test.sh installs Debian's chromium)");
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                &format!("--user-data-dir={}", profile.path().display()),
            ])
            // Time for the button's POST and the redirect to /fleet before the dump, unless the
            // caller gives its own.
            .args(
                (!args.iter().any(|a| a.starts_with("--virtual-time-budget=")))
                    .then_some("--virtual-time-budget=10000"),
            )
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 60 s")
    .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_paused_rollout_tells_nobody_new_until_resumed() {
    let (cloud, mut agents, _dir) = fleet(|_| false).await;
    let started = rollout_cli(&cloud, &["--channel", "stable", "--percent", "50"]).await;
    let id = started["id"].as_str().expect("rollout id").to_owned();
    assert_eq!(started["waves"], json!([10, 50]));

    // No canaries: wave 0 is empty, so the first heartbeat opens wave 1 (10 %).
    let first = round(&cloud, &mut agents).await;
    assert!(
        first > 0 && first < FLEET / 4,
        "about a tenth told: {first}"
    );
    let paused = rollout_cli(&cloud, &["pause", "--channel", "stable"]).await;
    assert_eq!(paused["state"], "paused");
    for _ in 0..3 {
        assert_eq!(
            round(&cloud, &mut agents).await,
            0,
            "paused: nobody new is told"
        );
    }
    let rollout = rollout_json(&cloud, &id).await;
    assert_eq!(
        rollout["rollout"]["current_wave"], 1,
        "no wave opens while paused"
    );

    let resumed = cloud
        .bearer(
            &cloud.operator,
            Method::POST,
            &format!("/v1/fleet/rollouts/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(resumed.status, 200, "{resumed:?}");
    assert_eq!(resumed.body["state"], "running");
    for _ in 0..6 {
        round(&cloud, &mut agents).await;
    }
    let rollout = rollout_json(&cloud, &id).await;
    assert_eq!(
        rollout["rollout"]["state"], "completed",
        "{}",
        rollout["rollout"]
    );
    let updated = agents.iter().filter(|a| a.version == NEW).count();
    assert!(
        (FLEET / 4..FLEET * 3 / 4).contains(&updated),
        "about half the channel: {updated}"
    );
    // Widening the same rollout to the whole channel goes on from there.
    let widened = rollout_cli(&cloud, &["--channel", "stable", "--percent", "100"]).await;
    assert_eq!(widened["id"], id.as_str());
    assert_eq!(widened["state"], "running");
    for _ in 0..6 {
        round(&cloud, &mut agents).await;
    }
    assert!(agents.iter().all(|a| a.version == NEW));
    // A pause of a channel with nothing live says so.
    let output = run(
        &["rollout", "pause", "--channel", "canary"],
        &[("DATABASE_URL", cloud.db.url())],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        output.stderr.contains("no live rollout"),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn a_release_manifest_verifies_and_its_download_resumes_with_range() {
    let cloud = Cloud::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let artifact = dir.path().join("sentra-edge");
    let bytes: Vec<u8> = (0..3_000_000_u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&artifact, &bytes).expect("write artifact");

    // No key configured: publishing refuses.
    let output = run(
        &[
            "release",
            "publish",
            artifact.to_str().expect("path"),
            "--version",
            "1.1.0",
            "--channel",
            "stable",
        ],
        &[("DATABASE_URL", cloud.db.url())],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        output.stderr.contains("no release signing key"),
        "{}",
        output.stderr
    );

    let (key, public) = keygen(dir.path()).await;
    // keygen never overwrites.
    let again = run(&["release", "keygen", key.to_str().expect("path")], &[]).await;
    assert!(!again.status.success());
    let manifest = publish(&cloud, &key, &artifact, "1.1.0").await;
    assert_eq!(manifest["size"], bytes.len());
    // Versions are immutable.
    let output = run(
        &[
            "release",
            "publish",
            artifact.to_str().expect("path"),
            "--version",
            "1.1.0",
            "--channel",
            "stable",
        ],
        &[
            ("DATABASE_URL", cloud.db.url()),
            (
                "SENTRA_CLOUD__RELEASES__SIGNING_KEY_FILE",
                key.to_str().expect("path"),
            ),
        ],
    )
    .await;
    assert!(
        output.stderr.contains("already exists"),
        "{}",
        output.stderr
    );

    let device = cloud.enroll("JKT01").await;
    let answer = cloud
        .signed(&device, Method::GET, "/v1/releases/1.1.0/manifest", None)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let signed: SignedManifest = serde_json::from_value(answer.body).expect("a signed manifest");
    let public =
        sentra_protocol::auth::parse_public_key(&public).expect("keygen prints a public key");
    let now = fixtures::now_ms() / 1000;
    let verified = fleet::verify_manifest(Some(&public), &signed, now).expect("signature verifies");
    assert_eq!(verified.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(verified.url, "/v1/releases/1.1.0/artifact");
    let mut tampered = signed.clone();
    tampered.manifest = tampered.manifest.replace("1.1.0", "9.9.9");
    assert_eq!(
        fleet::verify_manifest(Some(&public), &tampered, now),
        Err(fleet::ManifestError::BadSignature)
    );
    let stranger = fixtures::new_key();
    assert!(fleet::verify_manifest(Some(&stranger.verifying_key()), &signed, now).is_err());

    // A download cut after 1 MB, resumed from there with Range.
    let get = |range: Option<String>| {
        let headers = device.sign("GET", &verified.url, b"");
        let mut request = crate::support::http_client()
            .get(format!("http://{}{}", cloud.server.addr, verified.url));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request.send()
    };
    let first = get(Some("bytes=0-999999".to_owned()))
        .await
        .expect("first part");
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-999999/{}", bytes.len()).as_str()
    );
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let mut got = first.bytes().await.expect("body").to_vec();
    assert_eq!(got.len(), 1_000_000);
    let rest = get(Some(format!("bytes={}-", got.len())))
        .await
        .expect("the rest");
    assert_eq!(rest.status(), 206);
    assert_eq!(rest.headers()["etag"].to_str().expect("etag"), etag);
    got.extend_from_slice(&rest.bytes().await.expect("body"));
    assert_eq!(
        hex::encode(Sha256::digest(&got)),
        verified.sha256,
        "resumed download is whole"
    );
    let whole = get(None).await.expect("whole");
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.expect("body").len(), bytes.len());
    let beyond = get(Some(format!("bytes={}-", bytes.len())))
        .await
        .expect("beyond");
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", bytes.len()).as_str()
    );

    // Unauthenticated and unknown.
    let anonymous = cloud
        .call(Method::GET, "/v1/releases/1.1.0/manifest", None, &[])
        .await;
    assert_eq!(anonymous.status, 401);
    let missing = cloud
        .signed(&device, Method::GET, "/v1/releases/7.0.0/manifest", None)
        .await;
    assert_eq!(missing.status, 404);
    let portal = cloud.api_token("portal", "portal").await;
    let forbidden = cloud
        .bearer(&portal, Method::GET, "/v1/releases/1.1.0/manifest", None)
        .await;
    assert_eq!(forbidden.status, 403);
}

/// Issue 15: opening a login link (what a chat app's link preview does) shows a page whose
/// button POSTs the code; the GET signs nobody in and does not use the link up. The POST does,
/// once. The fleet pages send `Referrer-Policy: no-referrer`.
#[tokio::test]
async fn a_login_link_survives_previews_and_signs_in_once() {
    let cloud = Cloud::start().await;
    let link = cloud
        .bearer(&cloud.operator, Method::POST, "/v1/fleet/login-links", None)
        .await;
    assert_eq!(link.status, 200, "{link:?}");
    let path = link.body["url"].as_str().expect("url").to_owned();
    let ticket = path
        .split_once("ticket=")
        .map(|(_, ticket)| ticket.to_owned())
        .expect("a ticket");
    let base = format!("http://{}", cloud.server.addr);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Two previews: the page with the button, no cookie, and the link still good.
    for _ in 0..2 {
        let preview = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("GET the link");
        assert_eq!(preview.status(), 200);
        assert_eq!(preview.headers()["referrer-policy"], "no-referrer");
        assert!(
            preview.headers().get("set-cookie").is_none(),
            "a GET signed in"
        );
        let html = preview.text().await.expect("html");
        assert!(
            html.contains("method=\"post\" action=\"/fleet/login\""),
            "{html}"
        );
        assert!(
            html.contains(&format!("name=\"ticket\" value=\"{ticket}\"")),
            "{html}"
        );
    }
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM fleet_sessions WHERE ticket")
            .await,
        1,
        "the link is unused"
    );

    // The button: a same-origin POST of the code, a session cookie, the link used up.
    let press = || {
        client
            .post(format!("{base}/fleet/login"))
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("ticket={ticket}"))
            .send()
    };
    let pressed = press().await.expect("POST the code");
    assert_eq!(pressed.status(), 303);
    assert_eq!(pressed.headers()["referrer-policy"], "no-referrer");
    let cookie = pressed.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let again = press().await.expect("POST the code again");
    assert_eq!(again.status(), 401);
    assert!(
        again
            .text()
            .await
            .expect("html")
            .contains("used or expired")
    );
    // Another site cannot press it for you.
    let link = cloud
        .bearer(&cloud.operator, Method::POST, "/v1/fleet/login-links", None)
        .await;
    let other = link.body["url"].as_str().expect("url");
    let (_, other_ticket) = other.split_once("ticket=").expect("a ticket");
    let forged = client
        .post(format!("{base}/fleet/login"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("ticket={other_ticket}"))
        .send()
        .await
        .expect("a cross-site POST");
    assert_eq!(forged.status(), 403);

    let page = client
        .get(format!("{base}/fleet"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /fleet");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
}
