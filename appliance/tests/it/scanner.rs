//! The barcode scanner end to end: a pseudo-terminal pair stands in for the scanner, the real
//! daemon opens the pty's slave through a symlink (as it opens the udev name), and the test types
//! frames into the master side and watches the API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio_serial::{SerialPort as _, SerialStream};

use crate::harness::{Device, Edge, Site, open_db};

/// How long the daemon may take to notice a change (generous: a busy 2-core CI box).
const DEADLINE: Duration = Duration::from_secs(30);

/// A scanner: the pty's master (what the scanner writes into) and its slave held open so the
/// pty lives until the test drops it. The daemon opens the slave by the symlink `link`.
struct FakeScanner {
    master: SerialStream,
    _slave: SerialStream,
}

impl FakeScanner {
    fn plug_in(link: &Path) -> FakeScanner {
        let (master, slave) = SerialStream::pair().expect("pty pair");
        let name = slave.name().expect("the slave has a path");
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&name, link).expect("symlink the scanner");
        FakeScanner {
            master,
            _slave: slave,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).await.expect("write to pty");
        self.master.flush().await.expect("flush pty");
    }
}

struct Rig {
    site: Site,
    edge: Edge,
    link: PathBuf,
    _devdir: tempfile::TempDir,
    admin: Device,
}

async fn rig() -> Rig {
    let devdir = tempfile::tempdir().expect("tempdir");
    let link = devdir.path().join("scanner");
    let site = Site::with_config(&format!(
        "[scanner]\ndevice = {:?}\nname = \"gudang\"\nretry_max_ms = 200\n",
        link.display().to_string()
    ));
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    Rig {
        site,
        edge,
        link,
        _devdir: devdir,
        admin,
    }
}

impl Rig {
    async fn scanner(&self) -> Value {
        let (s, b) = self.edge.get(&self.admin, "/v1/scanner").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    /// Poll `GET /v1/scanner` until `pred` holds.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let v = self.scanner().await;
            if pred(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "scanner never reached {what}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_state(&self, state: &str) -> Value {
        self.wait_for(state, |v| v["state"] == state).await
    }

    /// Send one frame and return the scan notice it produced.
    async fn scan(&self, scanner: &mut FakeScanner, frame: &[u8]) -> Value {
        let before = self.scanner().await;
        let seen = before["scans"].as_u64().expect("scans")
            + before["rejected"].as_u64().expect("rejected");
        scanner.send(frame).await;
        let v = self
            .wait_for("one more scan", |v| {
                v["scans"].as_u64().unwrap_or(0) + v["rejected"].as_u64().unwrap_or(0) > seen
            })
            .await;
        v["recent"][0].clone()
    }
}

async fn stock(edge: &Edge, dev: &Device, sku: &str) -> i64 {
    let (s, b) = edge.get(dev, &format!("/v1/stock/{sku}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["on_hand"].as_i64().expect("on_hand")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_in_several_symbologies_noise_and_bad_check_digits() {
    let rig = rig().await;
    // Nothing plugged in yet: absent, with a reason a technician can act on.
    let v = rig.wait_state("absent").await;
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("is it plugged in"),
        "{v}"
    );
    let mut sc = FakeScanner::plug_in(&rig.link);
    rig.wait_state("connected").await;
    let events = |site: &Site| -> i64 {
        open_db(site)
            .query_row("SELECT count(*) FROM sync_event_logs", [], |r| r.get(0))
            .expect("outbox")
    };
    let events_before = events(&rig.site);
    assert!(events_before > 0, "the demo data's receipts are events");

    // No pick slip open: every good scan is a look-up of the part with its stock.
    let cases: &[(&[u8], &str, &str)] = &[
        (b"]E08991234567891\r\n", "ean13", "OIL-10W40-1L"),
        (b"8990011223340\r", "ean13", "FLT-OIL-AVZ"),
        (
            b"]C1010899555666777210LOT-7\x1d17271231\n",
            "gs1-128",
            "BRK-PAD-FR",
        ),
        (
            b"]d201089977788899941725063021SN-9\r\n",
            "gs1-datamatrix",
            "SPK-PLUG-NGK",
        ),
        (b"]Q30108992223334449\r\n", "gs1-qr", "WPR-BLD-20"),
    ];
    for (frame, symbology, sku) in cases {
        let n = rig.scan(&mut sc, frame).await;
        assert_eq!(n["outcome"], "lookup", "{n}");
        assert_eq!(n["symbology"], *symbology, "{n}");
        assert_eq!(n["stock"]["sku"], *sku, "{n}");
        assert_eq!(n["stock"]["on_hand"], 20, "{n}");
        assert_eq!(n["scanner"], "gudang", "{n}");
    }

    // Refusals, each with its reason.
    let refusals: &[(&[u8], &str)] = &[
        (b"]E08991234567895\r\n", "check_digit"),
        (b"]E496385075\r\n", "check_digit"),
        (b"]C10108991234567890\r\n", "bad_gs1"),
        (b"]C0NOT-IN-CATALOGUE\r\n", "unknown_barcode"),
        (b"]E04006381333931\r\n", "unknown_barcode"),
    ];
    for (frame, reason) in refusals {
        let n = rig.scan(&mut sc, frame).await;
        assert_eq!(n["outcome"], "rejected", "{n}");
        assert_eq!(n["reason"], *reason, "{n}");
        assert!(!n["message"].as_str().unwrap_or("").is_empty(), "{n}");
    }

    // Noise (a scanner at the wrong baud rate) is counted and dropped; the next frame still reads.
    let before = rig.scanner().await;
    sc.send(b"\xf8\x80\xfe\x00\x7f\x9c\xe0\r\n").await;
    let n = rig.scan(&mut sc, b"]E08991234567891\r\n").await;
    assert_eq!(n["outcome"], "lookup", "{n}");
    let after = rig.scanner().await;
    assert_eq!(
        after["noise_bytes"].as_u64().expect("noise")
            - before["noise_bytes"].as_u64().expect("noise"),
        8,
        "{after}"
    );
    assert_eq!(after["rejected"], before["rejected"], "noise is not a scan");

    // A frame split across writes is one frame.
    sc.send(b"]E089912").await;
    let n = rig.scan(&mut sc, b"34567891\r\n").await;
    assert_eq!(n["outcome"], "lookup", "{n}");
    assert_eq!(n["code"], "8991234567891", "{n}");

    // A partial frame left hanging is dropped as noise, never glued onto the next scan.
    let before = rig.scanner().await["noise_bytes"].as_u64().expect("noise");
    sc.send(b"]E0899").await;
    rig.wait_for("the partial frame dropped", |v| {
        v["noise_bytes"].as_u64().unwrap_or(0) == before + 6
    })
    .await;
    let n = rig.scan(&mut sc, b"8990011223340\r\n").await;
    assert_eq!(
        (n["outcome"].as_str(), n["code"].as_str()),
        (Some("lookup"), Some("8990011223340")),
        "{n}"
    );

    // Over-long garbage without a terminator does not grow memory or block: later frames read.
    sc.send(&vec![b'9'; 5000]).await;
    let n = rig.scan(&mut sc, b"\r\n]E08991234567891\r\n").await;
    assert_eq!(n["outcome"], "lookup", "{n}");

    // Look-ups change nothing: stock untouched, no outbox events beyond the demo data's.
    assert_eq!(events(&rig.site), events_before);
    let m = rig
        .edge
        .http
        .get(format!("{}/metrics", rig.edge.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("sentra_edge_scanner_connected 1"), "{m}");
    assert!(m.contains("sentra_edge_scanner_noise_bytes_total"), "{m}");
    assert_eq!(
        rig.edge.stop().await,
        0,
        "a clean stop with the scanner running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_slip_dispenses_each_scan_through_the_store() {
    let rig = rig().await;
    let (edge, site) = (&rig.edge, &rig.site);
    let tablet = edge.pair(site, "tablet").await;
    let keeper = edge.pair(site, "storekeeper").await;
    let mut sc = FakeScanner::plug_in(&rig.link);
    rig.wait_state("connected").await;

    let (s, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Siti", "vehicle_plate": "B 77 KOP", "complaint": "Ganti oli"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let wo_id = wo["id"].as_str().expect("id").to_owned();

    // Bad input changes nothing.
    let (s, b) = edge
        .post(&keeper, "/v1/pick-slips", json!({"work_order_id": "nope"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = edge
        .post(&keeper, "/v1/pick-slips", json!({"work_order": wo_id}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _) = edge
        .post(&tablet, "/v1/pick-slips", json!({"work_order_id": wo_id}))
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a tablet does not run the store room"
    );

    let (s, slip) = edge
        .post(&keeper, "/v1/pick-slips", json!({"work_order_id": wo_id}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{slip}");
    assert_eq!(slip["status"], "OPEN");
    let slip_id = slip["id"].as_str().expect("id").to_owned();
    let (s, b) = edge
        .post(&keeper, "/v1/pick-slips", json!({"work_order_id": wo_id}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("pick_slip_open")),
        "{b}"
    );

    // Leave one brake-pad set in stock through the ordinary API path.
    let (s, b) = edge
        .post(
            &keeper,
            &format!("/v1/work-orders/{wo_id}/parts"),
            json!({"sku": "BRK-PAD-FR", "qty": 19}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, st) = edge.get(&keeper, "/v1/sync/status").await;
    let pending_before = st["pending_events"].as_i64().expect("pending");

    // Two scans of oil: two units to the work order, one outbox event each.
    for left in [19, 18] {
        let n = rig.scan(&mut sc, b"]E08991234567891\r\n").await;
        assert_eq!(n["outcome"], "dispensed", "{n}");
        assert_eq!(n["pick_slip_id"], slip_id.as_str());
        assert_eq!(n["work_order_id"], wo_id.as_str());
        assert_eq!(n["stock"]["on_hand"], left, "{n}");
    }
    assert_eq!(stock(edge, &keeper, "OIL-10W40-1L").await, 18);
    // The last brake pads go; the next scan finds the shelf empty.
    let n = rig.scan(&mut sc, b"]C1010899555666777210LOT-7\r\n").await;
    assert_eq!(n["outcome"], "dispensed", "{n}");
    let n = rig.scan(&mut sc, b"]C1010899555666777210LOT-7\r\n").await;
    assert_eq!(
        (n["outcome"].as_str(), n["reason"].as_str()),
        (Some("rejected"), Some("insufficient_stock")),
        "{n}"
    );
    assert_eq!(stock(edge, &keeper, "BRK-PAD-FR").await, 0);
    // Unknown barcodes and bad check digits dispense nothing either.
    let n = rig.scan(&mut sc, b"]E04006381333931\r\n").await;
    assert_eq!(n["reason"], "unknown_barcode", "{n}");
    let n = rig.scan(&mut sc, b"]E08991234567892\r\n").await;
    assert_eq!(n["reason"], "check_digit", "{n}");

    // The outbox holds exactly the three dispenses, with the work order and the storekeeper.
    let (_, st) = edge.get(&keeper, "/v1/sync/status").await;
    assert_eq!(
        st["pending_events"].as_i64(),
        Some(pending_before + 3),
        "{st}"
    );
    {
        let db = open_db(site);
        let mut stmt = db
            .prepare("SELECT payload FROM sync_event_logs WHERE op = 'dispensed' ORDER BY seq DESC LIMIT 3")
            .expect("prepare");
        let payloads: Vec<Value> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|p| serde_json::from_str(&p.expect("row")).expect("json"))
            .collect();
        assert_eq!(payloads.len(), 3);
        for p in &payloads {
            assert_eq!(p["work_order_id"], wo_id.as_str(), "{p}");
            assert_eq!(p["delta"], -1, "{p}");
        }
        let by: String = db
            .query_row(
                "SELECT created_by FROM stock_movements WHERE reason = 'DISPENSE' ORDER BY created_at DESC, rowid DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("movement");
        assert_eq!(
            by, keeper.id,
            "the dispense is the storekeeper's who opened the slip"
        );
    }

    // The work order and the slip show what happened.
    let (_, w) = edge.get(&tablet, &format!("/v1/work-orders/{wo_id}")).await;
    let oil_lines = w["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter(|p| p["sku"] == "OIL-10W40-1L")
        .count();
    assert_eq!(oil_lines, 2, "{w}");
    let (s, slip) = edge
        .get(&keeper, &format!("/v1/pick-slips/{slip_id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{slip}");
    let outcomes: Vec<&str> = slip["scans"]
        .as_array()
        .expect("scans")
        .iter()
        .map(|s| s["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(
        outcomes,
        [
            "DISPENSED",
            "DISPENSED",
            "DISPENSED",
            "REJECTED",
            "REJECTED",
            "REJECTED"
        ]
    );

    // Closed: scans are look-ups again, and closing twice is refused.
    let (s, b) = edge
        .call(
            Some(&keeper.token),
            reqwest::Method::POST,
            &format!("/v1/pick-slips/{slip_id}/close"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("CLOSED")),
        "{b}"
    );
    let (s, b) = edge
        .call(
            Some(&keeper.token),
            reqwest::Method::POST,
            &format!("/v1/pick-slips/{slip_id}/close"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let n = rig.scan(&mut sc, b"]E08991234567891\r\n").await;
    assert_eq!(n["outcome"], "lookup", "{n}");
    assert_eq!(stock(edge, &keeper, "OIL-10W40-1L").await, 18);
    assert_eq!(
        rig.edge.stop().await,
        0,
        "a clean stop with the scanner running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanner_unplugged_and_replugged_keeps_reading() {
    let rig = rig().await;
    let mut sc = FakeScanner::plug_in(&rig.link);
    rig.wait_state("connected").await;
    let n = rig.scan(&mut sc, b"]E08991234567891\r\n").await;
    assert_eq!(n["outcome"], "lookup", "{n}");

    // Unplug mid-frame: the port hangs up (EOF/EIO) and the udev link disappears.
    sc.send(b"]E08990").await;
    drop(sc);
    std::fs::remove_file(&rig.link).expect("remove link");
    let v = rig.wait_state("absent").await;
    assert!(
        v["detail"].as_str().unwrap_or("").contains("plugged in"),
        "{v}"
    );

    // Plugged in again (a new pty, as a new ttyACM would be): read again, and the half frame
    // from before the unplug was dropped, not glued on.
    let mut sc = FakeScanner::plug_in(&rig.link);
    let v = rig.wait_state("connected").await;
    assert!(v["reconnects"].as_u64().expect("reconnects") >= 1, "{v}");
    let n = rig.scan(&mut sc, b"8990011223340\r\n").await;
    assert_eq!(
        (n["outcome"].as_str(), n["code"].as_str()),
        (Some("lookup"), Some("8990011223340")),
        "{n}"
    );

    // `status` shows the scanner from the daemon's state file.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (code, out, err) = rig.site.cli(&["status"]);
        assert_eq!(code, 0, "{err}");
        let line = out
            .lines()
            .find(|l| l.starts_with("scanner"))
            .unwrap_or("")
            .to_owned();
        if line.contains("gudang") && line.contains(": connected since") && line.contains("2 scans")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "status: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        rig.edge.stop().await,
        0,
        "a clean stop with the scanner running"
    );
}
