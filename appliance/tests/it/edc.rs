//! The EDC card terminal end to end: the real daemon with `edc.device` naming a pseudo-terminal's
//! slave, and the sandbox terminal (`sentra_edge::edc::sandbox`, the terminal's side of the ECR
//! protocol) serving the master in this process. The sandbox answers by the amount's last three
//! digits (its module says which), so each case is picked by the price.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use sentra_edge::edc::sandbox::{self, SaleLog};
use serde_json::{Value, json};
use tokio_serial::{SerialPort as _, SerialStream};

use crate::harness::{Device, Edge, Site, open_db};

/// A terminal on a pty: the sandbox on the master, the slave reachable by the symlink `link`.
struct SandboxTerminal {
    log: SaleLog,
    _slave: SerialStream,
}

impl SandboxTerminal {
    fn plug_in(link: &Path) -> SandboxTerminal {
        let (master, slave) = SerialStream::pair().expect("pty pair");
        let name = slave.name().expect("the slave has a path");
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&name, link).expect("symlink the terminal");
        let log = SaleLog::default();
        tokio::spawn(sandbox::serve(master, log.clone()));
        SandboxTerminal { log, _slave: slave }
    }

    fn sales(&self) -> Vec<i64> {
        self.log.sales().into_iter().map(|s| s.amount).collect()
    }
}

struct Rig {
    site: Site,
    edge: Edge,
    link: PathBuf,
    _dir: tempfile::TempDir,
    pos: Device,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("edc");
    // One second for the terminal's answer: the sandbox answers at once, and the timeout case
    // does not hold the test for the 90 s a customer gets.
    let site = Site::with_config(&format!(
        "[edc]\ndevice = {:?}\ntimeout_ms = 1000\n",
        link.display().to_string()
    ));
    site.load_demo_data();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    Rig {
        site,
        edge,
        link,
        _dir: dir,
        pos,
    }
}

impl Rig {
    /// An invoice for a DONE work order; returns its id and total.
    async fn invoice(&self) -> (String, i64) {
        let admin = self.edge.pair(&self.site, "admin").await;
        let (s, wo) = self
            .edge
            .post(
                &admin,
                "/v1/work-orders",
                json!({"customer_name": "Ani", "vehicle_plate": "B 9 EDC", "complaint": "Servis"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{wo}");
        let id = wo["id"].as_str().expect("id").to_owned();
        for status in ["IN_PROGRESS", "DONE"] {
            let (s, b) = self
                .edge
                .post(
                    &admin,
                    &format!("/v1/work-orders/{id}/status"),
                    json!({"status": status}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        let (s, inv) = self
            .edge
            .post(&admin, "/v1/invoices", json!({"work_order_id": id, "labour": [{"description": "Jasa servis", "amount": 1000000}]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{inv}");
        (
            inv["id"].as_str().expect("id").to_owned(),
            inv["total"].as_i64().expect("total"),
        )
    }

    async fn pay(&self, invoice: &str, body: Value, key: Option<&str>) -> (StatusCode, Value) {
        self.edge
            .call(
                Some(&self.pos.token),
                Method::POST,
                &format!("/v1/invoices/{invoice}/payments"),
                Some(body),
                key,
            )
            .await
    }

    async fn paid(&self, invoice: &str) -> (i64, usize) {
        let (s, inv) = self
            .edge
            .get(&self.pos, &format!("/v1/invoices/{invoice}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{inv}");
        (
            inv["paid"].as_i64().expect("paid"),
            inv["payments"].as_array().expect("payments").len(),
        )
    }

    fn events(&self) -> i64 {
        open_db(&self.site)
            .query_row("SELECT count(*) FROM sync_event_logs", [], |r| r.get(0))
            .expect("outbox")
    }
}

fn code(b: &Value) -> &str {
    b["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_terminal_approves_declines_times_out_and_the_typed_code_stays_the_fallback() {
    let rig = rig().await;
    let (inv, total) = rig.invoice().await;
    assert!(total > 200_000, "room for several payments: {total}");

    // The terminal not plugged in: 503 with what to do, nothing recorded.
    let events = rig.events();
    let (s, b) = rig
        .pay(&inv, json!({"method": "EDC", "amount": 50_000}), None)
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::SERVICE_UNAVAILABLE, "edc_unavailable"),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("approval code"),
        "{b}"
    );
    assert_eq!((rig.paid(&inv).await, rig.events()), ((0, 0), events));

    let terminal = SandboxTerminal::plug_in(&rig.link);

    // Approved: the payment carries the terminal's approval code, once.
    let (s, b) = rig
        .pay(
            &inv,
            json!({"method": "EDC", "amount": 50_000}),
            Some("edc-1"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let payment = &b["payments"][0];
    assert_eq!(
        (
            payment["method"].as_str(),
            payment["amount"].as_i64(),
            payment["reference"].as_str()
        ),
        (Some("EDC"), Some(50_000), Some("SB0001")),
        "{b}"
    );
    assert_eq!(rig.events(), events + 1, "one payment event");
    // The same request again: the stored answer; the card is not charged a second time.
    let (s, again) = rig
        .pay(
            &inv,
            json!({"method": "EDC", "amount": 50_000}),
            Some("edc-1"),
        )
        .await;
    assert_eq!((s, &again), (StatusCode::CREATED, &b));
    assert_eq!(terminal.sales(), vec![50_000]);
    assert_eq!(rig.events(), events + 1);

    // An answer whose check byte is wrong is NAKed and sent again: approved.
    let (s, b) = rig
        .pay(&inv, json!({"method": "EDC", "amount": 10_096}), None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(rig.paid(&inv).await, (60_096, 2));

    // Declined, busy, no answer, garbage: each a clear error, nothing recorded.
    let events = rig.events();
    for (amount, status, want) in [
        (10_051, StatusCode::PAYMENT_REQUIRED, "edc_declined"),
        (10_005, StatusCode::PAYMENT_REQUIRED, "edc_declined"),
        (10_097, StatusCode::CONFLICT, "edc_busy"),
        (10_099, StatusCode::GATEWAY_TIMEOUT, "edc_timeout"),
        (10_098, StatusCode::BAD_GATEWAY, "edc_protocol"),
    ] {
        let (s, b) = rig
            .pay(&inv, json!({"method": "EDC", "amount": amount}), None)
            .await;
        assert_eq!((s, code(&b)), (status, want), "{amount}: {b}");
        assert_eq!(rig.paid(&inv).await, (60_096, 2), "{amount}");
        assert_eq!(rig.events(), events, "{amount}");
    }
    let (_, b) = rig
        .pay(&inv, json!({"method": "EDC", "amount": 10_051}), None)
        .await;
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("51 SALDO TIDAK CUKUP"),
        "{b}"
    );

    // More than the balance is refused before the card is charged.
    let sales = terminal.sales().len();
    let (s, b) = rig
        .pay(&inv, json!({"method": "EDC", "amount": total}), None)
        .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "overpayment"), "{b}");
    assert_eq!(terminal.sales().len(), sales, "the terminal was not asked");

    // After the timeout the cashier types the code from the terminal's slip: recorded as before,
    // without the terminal. `reference: null` is the same as leaving it out.
    let (s, b) = rig
        .pay(
            &inv,
            json!({"method": "EDC", "amount": 10_099, "reference": "A1B2C3"}),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["payments"][2]["reference"], "A1B2C3", "{b}");
    assert_eq!(
        terminal.sales().len(),
        sales,
        "the typed code never reaches the terminal"
    );
    let (s, b) = rig
        .pay(
            &inv,
            json!({"method": "EDC", "amount": 1_000, "reference": null}),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(terminal.sales().len(), sales + 1);

    // The sale log: every amount the terminal was asked for, in order.
    assert_eq!(
        terminal.sales(),
        vec![
            50_000, 10_096, 10_051, 10_005, 10_097, 10_099, 10_098, 10_051, 1_000
        ]
    );
    assert_eq!(rig.edge.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_an_edc_payment_needs_its_typed_code() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    let (s, b) = edge
        .post(
            &pos,
            "/v1/invoices/0190abcd0000700080000000000000aa/payments",
            json!({"method": "EDC", "amount": 1000}),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "edc_not_configured"),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("reference"),
        "{b}"
    );
    // QRIS still needs its reference: a schema rule, 422.
    let (s, b) = edge
        .post(
            &pos,
            "/v1/invoices/0190abcd0000700080000000000000aa/payments",
            json!({"method": "QRIS", "amount": 1000}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(edge.stop().await, 0);
}
