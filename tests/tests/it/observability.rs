//! The operations kit in `deploy/observability/`: the Prometheus alert rules and the Grafana
//! dashboard. `promtool` checks the rules and runs their unit tests (every alert fires on the
//! series meant to fire it, and not before its `for`), checks every dashboard query as PromQL,
//! and every `sentra_*` metric either file names must be in a real scrape of a running
//! `sentra-cloud` or `sentra-edge`: renaming a metric without the rules and dashboard fails here.
//!
//! promtool comes from Debian's `prometheus` package; `scripts/test.sh` unpacks it (no server is
//! installed or started) and exports `SENTRA_PROMTOOL`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sentra_system_tests::{Cloud, EdgeSite, eventually, http};
use serde_json::Value;

fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(kit().join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn promtool() -> PathBuf {
    let path = std::env::var_os("SENTRA_PROMTOOL")
        .map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    let found = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "promtool not found ({}): run the tests with bash scripts/test.sh, which installs it and exports SENTRA_PROMTOOL",
        path.display()
    );
    path
}

/// Runs promtool with `args` in `dir`; panics with its output unless it succeeds.
fn promtool_ok(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Every `sentra_cloud_…` / `sentra_edge_…` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("sentra_") {
        let start = at + found;
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let word = &text[start..end];
        let glued = before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !glued && (word.starts_with("sentra_cloud_") || word.starts_with("sentra_edge_")) {
            names.insert(word.to_owned());
        }
        at = end.max(start + 1);
    }
    names
}

/// The sample names a scrape can hold: every sample line's name, and for each `# TYPE` (a
/// family may have no series yet) the names its type gives (`_total`; `_bucket`, `_sum`,
/// `_count`).
fn scraped_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count"],
                _ => &[],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// The dashboard's queries with its variables given plain values.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    queries.push(
                        expr.replace("$cloud_job", "sentra-cloud")
                            .replace("$edge_job", "sentra-edge")
                            .replace("$branch", ".*"),
                    );
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    queries
}

#[test]
fn promtool_checks_the_rules_runs_their_tests_and_parses_every_dashboard_query() {
    let dir = kit();
    let checked = promtool_ok(&dir, &["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let tested = promtool_ok(&dir, &["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert has a unit test that expects it to fire.
    let rules = read("alerts.yml");
    let tests = read("alerts.test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 9, "{rules}");
    for alert in &alerts {
        let fired = tests
            .split(&format!("alertname: {alert}\n"))
            .skip(1)
            .any(|after| !after.trim_start().starts_with("exp_alerts: []"));
        assert!(fired, "no test in alerts.test.yml expects {alert} to fire");
    }

    // The dashboard is JSON Grafana imports, and each of its queries is PromQL: checked by
    // promtool as recording rules.
    let dashboard: Value =
        serde_json::from_str(&read("dashboard.json")).expect("dashboard.json is JSON");
    assert!(dashboard["title"].is_string() && dashboard["panels"].is_array());
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 20, "{queries:?}");
    let mut as_rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, query) in queries.iter().enumerate() {
        as_rules.push_str(&format!(
            "      - record: dashboard:query_{index}\n        expr: {}\n",
            serde_json::to_string(query).expect("a string")
        ));
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::write(scratch.path().join("dashboard-rules.yml"), as_rules).expect("write");
    let checked = promtool_ok(scratch.path(), &["check", "rules", "dashboard-rules.yml"]);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{checked}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_rules_and_dashboard_name_is_in_a_real_scrape() {
    let cloud = Cloud::start().await;
    let site = EdgeSite::new("OBS01", "");
    site.enroll(&cloud.url, &cloud.enrollment_token("OBS01"));
    let edge = site.start().await;
    // The fleet gauges have series once the box's first heartbeat is in.
    eventually(
        Duration::from_secs(30),
        "the box's first heartbeat",
        || async {
            let mut pg = cloud.pg().await;
            let beats: i64 = sqlx::query_scalar("SELECT count(*) FROM device_heartbeats")
                .fetch_one(&mut pg)
                .await
                .expect("count heartbeats");
            (beats > 0).then_some(())
        },
    )
    .await;

    let operator = cloud.operator_token();
    // The fleet gauges are served from a reading each replica takes in the background every
    // fleet.gauges_refresh_secs (15 s): the first scrape after the heartbeat may still hold the
    // reading from before it, with no device series.
    let cloud_text = eventually(
        Duration::from_secs(60),
        "a scrape with the fleet gauges read after the heartbeat",
        || async {
            let response = http()
                .get(format!("{}/metrics", cloud.url))
                .bearer_auth(&operator)
                .send()
                .await
                .expect("scrape the cloud");
            assert_eq!(response.status(), 200);
            let text = response.text().await.expect("cloud metrics");
            text.lines()
                .any(|l| l.starts_with("sentra_cloud_fleet_devices{"))
                .then_some(text)
        },
    )
    .await;
    // The box's request families have series once it has answered a request.
    let health = edge
        .http
        .get(format!("{}/healthz", edge.url))
        .send()
        .await
        .expect("the box's /healthz");
    assert_eq!(health.status(), 200);
    let response = edge
        .http
        .get(format!("{}/metrics", edge.url))
        .send()
        .await
        .expect("scrape the box");
    assert_eq!(response.status(), 200);
    let edge_text = response.text().await.expect("box metrics");

    let mut scraped = scraped_names(&cloud_text);
    scraped.extend(scraped_names(&edge_text));
    for file in ["alerts.yml", "alerts.test.yml", "dashboard.json"] {
        let used = metric_names(&read(file));
        // Both services' metrics are named in each file (the extraction found them).
        assert!(
            used.iter().any(|name| name.starts_with("sentra_cloud_"))
                && used.iter().any(|name| name.starts_with("sentra_edge_")),
            "{file}: {used:?}"
        );
        let missing: Vec<&String> = used.difference(&scraped).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics no scrape has: {missing:?}\ncloud:\n{cloud_text}\nbox:\n{edge_text}"
        );
    }
    edge.kill().await;
}

#[test]
fn names_are_found_whole_and_only_with_a_service_prefix() {
    let names = metric_names(
        "rate(sentra_cloud_http_requests_total{x=\"sentra_edge_a\"}[5m]) my_sentra_cloud_x sentra_other up",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["sentra_cloud_http_requests_total", "sentra_edge_a"]
    );
    let scraped = scraped_names(
        "# TYPE sentra_cloud_a counter\n# TYPE sentra_cloud_h histogram\nsentra_cloud_g{l=\"1\"} 3\n# EOF\n",
    );
    for name in [
        "sentra_cloud_a_total",
        "sentra_cloud_h_bucket",
        "sentra_cloud_h_count",
        "sentra_cloud_g",
    ] {
        assert!(scraped.contains(name), "{name}: {scraped:?}");
    }
    assert!(!scraped.contains("sentra_cloud_a_bucket"));
}
