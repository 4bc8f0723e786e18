//! The command line itself: exit codes, error reporting, `version`, `--config`.

use std::io::Write as _;

use crate::support::{Server, run};

#[tokio::test]
async fn bad_config_exits_2_and_reports_every_error() {
    let output = run(
        &["serve"],
        &[("SENTRA_CLOUD__HTTP__LISTEN", "notanaddress")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", output.stderr);
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per error: {lines:#?}");
    assert!(
        lines.iter().all(|line| line.starts_with("error: ")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("SENTRA_CLOUD__HTTP__LISTEN: invalid value `notanaddress`")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.contains("DATABASE_URL")),
        "{lines:#?}"
    );
    assert!(output.stdout.is_empty(), "stdout: {}", output.stdout);
}

#[tokio::test]
async fn config_errors_never_show_passwords() {
    let output = run(
        &["migrate"],
        &[
            (
                "DATABASE_URL",
                "postgres://sentra:hunter2@db:notaport/sentra",
            ),
            ("REDIS_URL", "redis://:hunter3@redis:notaport"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", output.stderr);
    assert_eq!(output.stderr.lines().count(), 2, "{}", output.stderr);
    assert!(
        output.stderr.contains("postgres://sentra:***@db"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("hunter"), "{}", output.stderr);
}

#[tokio::test]
async fn missing_config_file_exits_2() {
    let output = run(
        &["migrate", "--config", "/nonexistent/sentra-cloud.toml"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1/x")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", output.stderr);
    assert!(
        output
            .stderr
            .contains("cannot read config file /nonexistent/sentra-cloud.toml"),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    for args in [&["frobnicate"][..], &["serve", "--no-such-flag"], &[]] {
        let output = run(args, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.stderr);
    }
}

#[tokio::test]
async fn version_prints_name_and_version() {
    let output = run(&["version"], &[]).await;
    assert!(output.status.success());
    assert_eq!(
        output.stdout,
        concat!("sentra-cloud ", env!("CARGO_PKG_VERSION"), "\n")
    );
}

#[tokio::test]
async fn serve_reads_the_config_file() {
    let mut file = tempfile::NamedTempFile::new().expect("temp dir is writable");
    // Nothing is reachable here: the lazy connections let serve start all the same.
    write!(
        file,
        "[database]\nurl = \"postgres://postgres@127.0.0.1:{}/none\"\n",
        crate::support::closed_port()
    )
    .expect("write the config file");
    let path = file.path().to_str().expect("temp path is UTF-8");

    // DATABASE_URL is only in the file: had serve not read it, it would have exited 2.
    let server = Server::start(&["--config", path], &[]).await;
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, _, _) = server.terminate().await;
    assert!(status.success());
}

#[tokio::test]
async fn config_defaults_prints_the_example_file() {
    let output = run(&["config", "defaults"], &[]).await;
    assert!(output.status.success(), "stderr: {}", output.stderr);
    assert_eq!(output.stdout, include_str!("../../cloud.example.toml"));
}

#[tokio::test]
async fn config_check_exits_2_with_every_error() {
    let output = run(
        &["config", "check"],
        &[
            ("SENTRA_CLOUD__HTTP__LISTEN", "notanaddress"),
            ("SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS", "0"),
            ("REDIS_URL", "redis://:hunter3@redis:notaport"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", output.stderr);
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "one line per error: {lines:#?}");
    for fragment in [
        "SENTRA_CLOUD__HTTP__LISTEN",
        "DATABASE_URL",
        "REDIS_URL: invalid value `redis://:***@redis:notaport`",
        "SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS",
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with("error: ") && line.contains(fragment)),
            "{fragment:?} not in {lines:#?}"
        );
    }
    assert!(!output.stderr.contains("hunter"), "{}", output.stderr);
    assert!(output.stdout.is_empty(), "stdout: {}", output.stdout);
}

#[tokio::test]
async fn config_check_shows_values_in_force_without_secrets() {
    let output = run(
        &["config", "check"],
        &[
            ("DATABASE_URL", "postgres://sentra:hunter2@db:5432/sentra"),
            ("SENTRA_CLOUD__BOOKING__HOLD_SECONDS", "30"),
            ("SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET", "whsec-hunter4"),
        ],
    )
    .await;
    assert!(output.status.success(), "stderr: {}", output.stderr);
    for line in [
        "url = \"postgres://sentra:***@db:5432/sentra\"  # from DATABASE_URL",
        "hold_secs = 30  # from SENTRA_CLOUD__BOOKING__HOLD_SECONDS",
        "webhook_secret = \"***\"  # from SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET",
    ] {
        assert!(
            output.stdout.contains(line),
            "{line:?} not in:\n{}",
            output.stdout
        );
    }
    // The old name still works, and the operator is told to rename it.
    assert!(
        output.stderr.contains(
            "warning: SENTRA_CLOUD__BOOKING__HOLD_SECONDS is deprecated: rename it SENTRA_CLOUD__BOOKING__HOLD_SECS"
        ),
        "{}",
        output.stderr
    );
    for text in [&output.stdout, &output.stderr] {
        assert!(!text.contains("hunter"), "{text}");
    }
}

/// `log.format = "json"`: every line serve writes is one JSON object, a request's warning among
/// them with its fields, and the database password in DATABASE_URL appears in none.
#[tokio::test]
async fn json_logs_are_one_object_a_line_without_the_database_password() {
    const PASSWORD: &str = "never-logged-pw";
    let db = crate::support::TestDb::create().await;
    crate::support::migrate(&db).await;
    // The test server trusts local connections: the password is sent nowhere, only configured.
    let url = db
        .url()
        .replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1);
    assert!(
        url.contains(PASSWORD),
        "the admin URL has no password slot: {url}"
    );
    let cloud = crate::cloud::Cloud::start_on(
        db,
        &[
            ("DATABASE_URL", &url),
            ("SENTRA_CLOUD__LOG__FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let mut device = cloud.enroll("JKT01").await;
    // A negative payment is parked, which serve logs as a warning with the device and branch.
    let bad = device.outbox.raw(
        sentra_protocol::EntityKind::Payment,
        "pay-bad",
        "received",
        serde_json::json!({"id": "pay-bad", "invoice_id": "inv-1", "method": "CASH", "amount": -5,
                           "reference": null, "received_at": crate::fixtures::AT}),
    );
    let answer = cloud.push(&device, &[bad]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body["parked"].as_array().map(Vec::len),
        Some(1),
        "{answer:?}"
    );

    let log = cloud.server.stderr();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
        })
        .collect();
    assert!(lines.iter().all(serde_json::Value::is_object), "{log}");
    let parked = lines
        .iter()
        .find(|line| line["message"] == "events parked")
        .unwrap_or_else(|| panic!("no \"events parked\" line in:\n{log}"));
    assert_eq!(parked["level"], "WARN", "{parked}");
    assert_eq!(parked["device"], device.id.as_str(), "{parked}");
    assert_eq!(parked["branch"], "JKT01", "{parked}");
    assert!(parked["timestamp"].is_string(), "{parked}");
    assert!(!log.contains(PASSWORD), "the password was logged:\n{log}");
}

#[tokio::test]
async fn a_bad_log_format_exits_2() {
    let output = run(
        &["config", "check"],
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/none"),
            ("SENTRA_CLOUD__LOG__FORMAT", "yaml"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains("SENTRA_CLOUD__LOG__FORMAT")
            && output.stderr.contains("expected text or json"),
        "{}",
        output.stderr
    );
}

/// `devices list` and `branches list`: a table with a header, and `--json` one object a line;
/// a device that sent a heartbeat is online with its version, one that never did is never-seen
/// (with the version it enrolled with), a revoked one is
/// not listed.
#[tokio::test]
async fn devices_and_branches_list_as_a_table_and_as_json() {
    let cloud = crate::cloud::Cloud::start().await;
    let seen = cloud.enroll("JKT01").await;
    let quiet = cloud.enroll("BDG01").await;
    let revoked = cloud.enroll("BDG01").await;
    let beat = serde_json::json!({
        "version": "1.2.3", "uptime_secs": 60, "update": {"state": "idle"}, "healthy": true,
        "backlog": {"count": 0, "bytes": 0, "oldest_age_secs": null}, "parked": 0, "skew_ms": 0,
        "resources": {"disk_total_bytes": 1000, "disk_free_bytes": 900, "mem_total_bytes": 1000,
                      "mem_available_bytes": 900, "store_bytes": 10},
        "printer": "ready", "scanner": "connected"
    });
    let answer = cloud
        .signed(
            &seen,
            reqwest::Method::POST,
            "/v1/devices/heartbeat",
            Some(beat.to_string().into_bytes()),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = cloud
        .bearer(
            &cloud.operator,
            reqwest::Method::POST,
            &format!("/v1/devices/{}/revoke", revoked.id),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let env = [("DATABASE_URL", cloud.db.url())];

    let table = run(&["devices", "list"], &env).await;
    assert!(table.status.success(), "{}", table.stderr);
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "a header and two devices:\n{}", table.stdout);
    assert_eq!(
        rows[0][..4],
        ["DEVICE", "BRANCH", "VERSION", "STATE"],
        "{}",
        table.stdout
    );
    let row = |id: &str| {
        rows.iter()
            .find(|row| row[0] == id)
            .unwrap_or_else(|| panic!("{id} not listed:\n{}", table.stdout))
    };
    assert_eq!(
        row(&seen.id)[1..4],
        ["JKT01", "1.2.3", "online"],
        "{}",
        table.stdout
    );
    assert_eq!(
        row(&quiet.id)[1..4],
        ["BDG01", "0.1.0", "never-seen"],
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains(&revoked.id), "{}", table.stdout);

    let json = run(&["devices", "list", "--json"], &env).await;
    assert!(json.status.success(), "{}", json.stderr);
    let devices: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect();
    assert_eq!(devices.len(), 2, "{}", json.stdout);
    let online = devices
        .iter()
        .find(|device| device["id"] == seen.id.as_str())
        .expect("the heartbeating device");
    assert_eq!(online["state"], "online", "{online}");
    assert_eq!(online["branch_id"], "JKT01", "{online}");
    assert_eq!(online["version"], "1.2.3", "{online}");
    assert!(online["last_seen"].is_string(), "{online}");

    let table = run(&["branches", "list"], &env).await;
    assert!(table.status.success(), "{}", table.stderr);
    let lines: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "a header and two branches:\n{}",
        table.stdout
    );
    assert_eq!(lines[0], ["BRANCH", "NAME", "DEVICES", "ONLINE", "CREATED"]);
    // By id; the name is the id (enrollment-token without --branch-name); BDG01's revoked
    // device is not counted.
    assert_eq!(
        lines[1][..4],
        ["BDG01", "BDG01", "1", "0"],
        "{}",
        table.stdout
    );
    assert_eq!(
        lines[2][..4],
        ["JKT01", "JKT01", "1", "1"],
        "{}",
        table.stdout
    );

    let json = run(&["branches", "list", "--json"], &env).await;
    assert!(json.status.success(), "{}", json.stderr);
    let branches: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect();
    assert_eq!(branches.len(), 2, "{}", json.stdout);
    assert_eq!(branches[1]["id"], "JKT01");
    assert_eq!(branches[1]["devices"], 1);
    assert_eq!(branches[1]["online"], 1);
    assert!(
        branches[1]["created_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{}",
        json.stdout
    );
}
