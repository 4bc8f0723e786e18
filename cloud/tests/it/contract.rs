//! The OpenAPI document as a contract: `GET /v1/openapi.json` lists exactly the router's JSON
//! routes, and a contract fuzzer (schemathesis 4.32.5, all checks, 100 examples per operation)
//! finds nothing against a running cloud: device routes are signed by an enrolled device from
//! the hook in `cloud/tests/contract/hooks.py`, the others carry an operator token.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::Instant;

use reqwest::Method;
use sentra_protocol::auth::public_key_hex;

use crate::cloud::Cloud;

/// Every JSON route of the router (`cloud/src/http.rs`) but `/v1/openapi.json` itself; the fleet
/// HTML pages and `/metrics` are not in the document (its description says so).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("PUT", "/v1/customers/{id}"),
    ("GET", "/v1/customers/{id}"),
    ("POST", "/v1/enroll"),
    ("POST", "/v1/payments/webhook"),
    ("POST", "/v1/sync/push"),
    ("GET", "/v1/sync/pull"),
    ("GET", "/v1/sync/calendar"),
    ("GET", "/v1/sync/successor"),
    ("POST", "/v1/devices/{id}/revoke"),
    ("PUT", "/v1/branches/{branch}/parts/{sku}"),
    ("PUT", "/v1/branches/{branch}/tariffs/{sku}"),
    ("GET", "/v1/branches/{branch}/reports/sales"),
    ("GET", "/v1/branches/{branch}/reports/payments"),
    ("GET", "/v1/branches/{branch}/reports/z-reports"),
    ("GET", "/v1/branches/{branch}/reports/stock"),
    ("GET", "/v1/branches/{branch}/reports/open-work-orders"),
    ("PUT", "/v1/branches/{branch}/staff/{id}"),
    ("PUT", "/v1/branches/{branch}/mechanics/{id}"),
    ("PUT", "/v1/branches/{branch}/assets/{id}"),
    ("GET", "/v1/branches/{branch}/customers/{id}"),
    ("PATCH", "/v1/branches/{branch}/customers/{id}"),
    ("GET", "/v1/branches/{branch}/vehicles/{id}"),
    ("PATCH", "/v1/branches/{branch}/vehicles/{id}"),
    ("GET", "/v1/branches/{branch}/documents/{record}/{id}"),
    ("PUT", "/v1/branches/{branch}/documents/{record}/{id}"),
    ("GET", "/v1/availability"),
    ("POST", "/v1/bookings"),
    ("GET", "/v1/bookings/{id}"),
    ("POST", "/v1/bookings/{id}/confirm"),
    ("POST", "/v1/bookings/{id}/cancel"),
    ("POST", "/v1/bookings/{id}/complete"),
    ("POST", "/v1/waitlist"),
    ("GET", "/v1/waitlist/{id}"),
    ("POST", "/v1/customers/{id}/identity"),
    ("GET", "/v1/customers/{id}/identity"),
    ("GET", "/v1/blobs/{sha256}"),
    ("POST", "/v1/backups"),
    ("POST", "/v1/blobs/{sha256}/uploads"),
    ("PUT", "/v1/blobs/{sha256}/uploads/{id}/parts/{n}"),
    ("POST", "/v1/blobs/{sha256}/uploads/{id}/complete"),
    ("POST", "/v1/devices/heartbeat"),
    ("PUT", "/v1/devices/{id}/channel"),
    ("GET", "/v1/fleet"),
    ("GET", "/v1/fleet/devices/{id}"),
    ("GET", "/v1/fleet/rollouts/{id}"),
    ("POST", "/v1/fleet/rollouts/{id}/{action}"),
    ("POST", "/v1/fleet/login-links"),
    ("GET", "/v1/releases/{version}/manifest"),
    ("GET", "/v1/releases/{version}/artifact"),
];

fn documented(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths").iter() {
        for method in item.as_object().expect("a path item").keys() {
            routes.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_routers_routes() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("B1").await;

    // Only a caller with credentials reads it, as on the box.
    let anonymous = cloud.call(Method::GET, "/v1/openapi.json", None, &[]).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let signed = cloud
        .signed(&device, Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(signed.status, 200, "{signed:?}");
    let doc = cloud
        .bearer(&cloud.operator, Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(doc.status, 200, "{doc:?}");
    assert_eq!(doc.body, signed.body);
    let doc = doc.body;
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));

    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented(&doc), table, "the document lists exactly ROUTES");

    // Every route of the table is the router's: none reaches the 404/405 fallbacks.
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{sha256}", &"a".repeat(64))
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{n}", "1")
            .replace(['{', '}'], "");
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let answer = cloud
            .bearer(&cloud.operator, method.clone(), &concrete, None)
            .await;
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            answer.status != 405 && !message.starts_with("no such path"),
            "{method} {concrete} is not routed: {answer:?}"
        );
    }

    // Every operation declares the error envelope for what its callers can get wrong.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let responses = operation["responses"].as_object().expect("responses");
            if operation.get("security").is_some() {
                for status in ["400", "401", "403", "404", "413", "422", "503"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} does not declare {status}"
                    );
                }
            }
        }
    }
}

/// The fuzzer: `$SENTRA_SCHEMATHESIS`, else `schemathesis` on PATH (`bash scripts/test.sh`
/// installs the pinned version).
fn schemathesis() -> String {
    if let Ok(path) = std::env::var("SENTRA_SCHEMATHESIS") {
        return path;
    }
    let found = std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "schemathesis 4.32.5 is needed: set SENTRA_SCHEMATHESIS or run `bash scripts/test.sh`, which installs it"
    );
    "schemathesis".to_owned()
}

/// The payment gateway's webhook secret in the fuzzed cloud, so the hook can sign webhooks.
const WEBHOOK_SECRET: &str = "contract-test-webhook-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_fuzzer_finds_nothing() {
    let fuzzer = schemathesis();
    let cloud =
        Cloud::start_with(&[("SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET", WEBHOOK_SECRET)]).await;
    let device = cloud.enroll("B1").await;
    // A second branch, so operator routes have another branch's data to refuse or find.
    let _other = cloud.enroll("B2").await;
    let doc = cloud
        .bearer(&cloud.operator, Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(doc.status, 200, "{doc:?}");
    let dir = tempfile::tempdir().expect("a directory for the document");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.body.to_string()).expect("write the document");
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract");
    assert_eq!(public_key_hex(&device.key).len(), 64);

    let started = Instant::now();
    let output = tokio::process::Command::new(&fuzzer)
        .args([
            "--config-file",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/contract/schemathesis.toml"
            ),
            "run",
            file.to_str().expect("a UTF-8 path"),
            "--url",
            &format!("http://{}", cloud.server.addr),
            "--max-examples",
            "100",
            "--workers",
            "1",
            "--no-color",
            "--generation-database",
            "none",
            "--report-dir",
            dir.path().to_str().expect("a UTF-8 path"),
        ])
        // Its caches go to the temporary directory, not into the repository.
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", hooks)
        .env("SENTRA_CONTRACT_DEVICE_ID", &device.id)
        .env(
            "SENTRA_CONTRACT_DEVICE_KEY",
            hex::encode(device.key.to_bytes()),
        )
        .env("SENTRA_CONTRACT_OPERATOR_TOKEN", &cloud.operator)
        .env("SENTRA_CONTRACT_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Straight to the process's stderr, not through the test harness's capture: CI's log shows
    // the summary whether the test passes or not.
    let _ = writeln!(
        std::io::stderr().lock(),
        "schemathesis ({:.0} s):\n{stdout}\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    let server_log = cloud.server.stderr();
    assert!(
        !server_log.contains("panicked"),
        "the cloud panicked:\n{server_log}"
    );
    assert!(
        output.status.success(),
        "schemathesis found problems (see its summary above)"
    );
}
