//! The OpenAPI document is the contract: schemathesis (pinned 4.32.5, installed by
//! `scripts/test.sh`) runs every check with 100 examples per operation against a real box with
//! demo data, authenticated as a paired admin device, and must find nothing: no undeclared
//! status, no schema-valid request refused, no schema-violating request accepted, no 5xx a
//! document does not promise, no response that breaks its schema.
//!
//! One operation is left out, `POST /v1/devices/{id}/revoke`: the fuzzer's only credential is
//! its admin token, and revoking its own device (the id is in `GET /v1/devices`, which the
//! stateful phase follows) would turn every later request into a 401. It is checked here
//! directly instead, on a second device. Pairing codes are one-use, but the fuzzer never holds a
//! real one, so `POST /v1/pair` is fuzzed like the rest.

use std::path::{Path, PathBuf};
use std::time::Instant;

use reqwest::{Method, StatusCode};

use crate::harness::Site;

const REVOKE: &str = "/v1/devices/{id}/revoke";

/// `$SENTRA_SCHEMATHESIS`, else `schemathesis` on PATH; never skips.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("SENTRA_SCHEMATHESIS") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "SENTRA_SCHEMATHESIS={} does not exist; run `bash scripts/test.sh` (it installs schemathesis 4.32.5)",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("schemathesis"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "schemathesis not found (neither $SENTRA_SCHEMATHESIS nor on PATH); run `bash scripts/test.sh`, which installs schemathesis 4.32.5 and sets SENTRA_SCHEMATHESIS"
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::print_stdout,
    reason = "schemathesis's summary belongs in CI's log"
)]
async fn the_openapi_document_holds_under_schemathesis() {
    let bin = schemathesis();
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    // Paired before the run: the fuzzer's own pairing attempts use up this address's
    // allowance (api.pair_per_minute) and later ones get 429.
    let tablet = edge.pair(&site, "tablet").await;
    // Demo work: something for the stateful phase to read, pay and print.
    let (s, b) = edge
        .post(
            &admin,
            "/v1/work-orders",
            serde_json::json!({"customer_name": "Budi Santoso", "vehicle_plate": "B 1234 XYZ",
                "complaint": "Rem bunyi saat mengerem", "mechanic_id": "M1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // The document as the box serves it (GET /v1/openapi.json needs a token). The token then
    // goes to schemathesis per security scheme (tests/contract/schemathesis.toml), not as a
    // fixed header, so the checks that send requests without it can.
    let (s, doc) = edge.get(&admin, "/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    let doc_file = site.dir.path().join("openapi.json");
    std::fs::write(&doc_file, doc.to_string()).expect("write the document");

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    let started = Instant::now();
    let out = tokio::process::Command::new(&bin)
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .arg("run")
        .arg(&doc_file)
        .args(["--url", &edge.base])
        .args(["--checks", "all", "--max-examples", "100"])
        .args(["--exclude-path", REVOKE])
        .arg("--no-color")
        // Its cache and reports go to the site's temporary directory, not the source tree.
        .current_dir(site.dir.path())
        .env("SENTRA_CONTRACT_TOKEN", &admin.token)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &dir)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let secs = started.elapsed().as_secs();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The whole output in CI's log: the summary with its counts, and any failure in full.
    println!("{stdout}\n{stderr}\nschemathesis took {secs} s");
    assert!(
        out.status.success(),
        "schemathesis found contract failures or server errors (exit {:?}); see its output above",
        out.status.code()
    );
    assert!(
        !stdout.contains("Server error") && !stdout.contains("unique failure"),
        "schemathesis reported failures; see its output above"
    );

    // The box is still whole: ready, and its store answers.
    let (s, _) = edge.call(None, Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = edge.get(&admin, "/v1/parts").await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // The excluded operation, as its document says: 200 with the devices, and the revoked
    // token is refused from then on.
    let (s, b) = edge
        .post(
            &admin,
            &format!("/v1/devices/{}/revoke", tablet.id),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b.as_array().is_some_and(|d| !d.is_empty()), "{b}");
    let (s, _) = edge.get(&tablet, "/v1/parts").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// What the fuzzer found in the handlers, pinned: a query string that does not parse answers the
/// JSON error envelope (axum's own rejection was plain text), a whole number written `1.0` is the
/// integer 1 (JSON has one number type), padded text is bounded as sent, and an inspection's
/// odometer is bounded like a vehicle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_contract_run_found_stays_fixed() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;

    for path in ["/v1/work-orders?bogus=1", "/v1/work-orders?limit=many"] {
        let (s, b) = edge.get(&admin, path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {b}");
        assert_eq!(b["error"]["code"], "invalid_query", "{path}: {b}");
    }
    let (s, b) = edge
        .call(
            Some(&admin.token),
            Method::POST,
            "/v1/invoices/x/print?bogus=1",
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], "invalid_query", "{b}");

    let (s, b) = edge
        .post(
            &admin,
            "/v1/stock/receipts",
            serde_json::json!({"sku": "OIL-10W40-1L", "qty": 2.0}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let padded = format!(" {} ", "x".repeat(119));
    for (field, body) in [
        (
            "customer_name",
            serde_json::json!({"customer_name": padded, "vehicle_plate": "B 1234 XYZ", "complaint": "Rem"}),
        ),
        (
            "customer_phone",
            serde_json::json!({"customer_name": "Budi", "customer_phone": format!("0812{}3456789", "-".repeat(30)), "vehicle_plate": "B 1234 XYZ", "complaint": "Rem"}),
        ),
        (
            "vehicle_plate",
            serde_json::json!({"customer_name": "Budi", "vehicle_plate": format!("B{}1234", " ".repeat(40)), "complaint": "Rem"}),
        ),
    ] {
        let (s, b) = edge.post(&admin, "/v1/work-orders", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }

    let (s, b) = edge
        .post(
            &admin,
            "/v1/inspections",
            serde_json::json!({"asset_id": "CAR-001", "kind": "HANDOVER",
                "checklist": [{"item": "Lampu", "ok": true}], "odometer_km": 4_000_000_000u32,
                "signature": {"signer": "Budi", "digest": "ab".repeat(32)}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "odometer_km", "{b}");
}
