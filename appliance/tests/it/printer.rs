//! The print worker against a fake network printer: a real TCP listener that captures every byte
//! and answers DLE EOT status queries like an Epson-compatible printer (paper out on demand).
//! Documents are checked against golden files (`tests/golden/`, `UPDATE_GOLDEN=1` rewrites them).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use sentra_edge::printer::document::{
    self, DeliveryLine, DeliveryNote, Document, InvoiceDoc, Layout, PairingQr, PaperWidth,
    REPRINT_MARK,
};
use sentra_edge::printer::transport::{STATUS_QUERY, Target};
use sentra_edge::store::billing::{Invoice, Payment};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::harness::{Device, Edge, Site};

/// A fake ESC/POS network printer on 127.0.0.1.
#[derive(Clone)]
pub struct FakePrinter {
    pub addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    captured: Mutex<Vec<u8>>,
    paper_out: AtomicBool,
    /// Stop answering status queries once this many documents (cuts) arrived: the printer hangs
    /// after taking a job, so a test can kill the daemon while a job is sent but unconfirmed.
    hang_after: AtomicUsize,
    status_queries: AtomicUsize,
    listening: AtomicBool,
}

impl FakePrinter {
    pub async fn start() -> FakePrinter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let p = FakePrinter {
            addr,
            shared: Arc::new(Shared {
                hang_after: AtomicUsize::new(usize::MAX),
                ..Shared::default()
            }),
        };
        p.serve(listener);
        p
    }

    /// An address where nothing listens yet (connections are refused) until `come_back`.
    pub async fn switched_off() -> FakePrinter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        FakePrinter {
            addr,
            shared: Arc::new(Shared {
                hang_after: AtomicUsize::new(usize::MAX),
                ..Shared::default()
            }),
        }
    }

    pub async fn come_back(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        self.shared.listening.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut seen: Vec<u8> = Vec::new();
                    let mut scanned = 0;
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        shared
                            .captured
                            .lock()
                            .expect("lock")
                            .extend_from_slice(&buf[..n]);
                        let mut replies = Vec::new();
                        while scanned + 3 <= seen.len() {
                            if seen[scanned] == 0x10 && seen[scanned + 1] == 0x04 {
                                let cuts = count_cuts(&shared.captured.lock().expect("lock"));
                                if cuts >= shared.hang_after.load(Ordering::SeqCst) {
                                    scanned += 3;
                                    continue;
                                }
                                shared.status_queries.fetch_add(1, Ordering::SeqCst);
                                let paper_out = shared.paper_out.load(Ordering::SeqCst);
                                replies.push(match (seen[scanned + 2], paper_out) {
                                    (2, true) => 0x32,
                                    (4, true) => 0x72,
                                    _ => 0x12,
                                });
                                scanned += 3;
                            } else {
                                scanned += 1;
                            }
                        }
                        if !replies.is_empty() && sock.write_all(&replies).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }

    pub fn set_paper_out(&self, out: bool) {
        self.shared.paper_out.store(out, Ordering::SeqCst);
    }

    pub fn hang_after(&self, documents: usize) {
        self.shared.hang_after.store(documents, Ordering::SeqCst);
    }

    pub fn status_queries(&self) -> usize {
        self.shared.status_queries.load(Ordering::SeqCst)
    }

    pub fn captured(&self) -> Vec<u8> {
        self.shared.captured.lock().expect("lock").clone()
    }

    /// The documents printed so far, as `describe` text (status queries removed).
    pub fn documents(&self) -> Vec<String> {
        split_documents(&self.captured())
    }
}

fn count_cuts(bytes: &[u8]) -> usize {
    bytes.windows(3).filter(|w| w == b"\x1dVB").count()
}

/// Whole documents (INIT … CUT) in captured bytes, readable, without the status queries.
pub fn split_documents(bytes: &[u8]) -> Vec<String> {
    let text = document::describe(bytes);
    text.split("[INIT]")
        .filter(|d| d.contains("[CUT]"))
        .map(|d| {
            d.replace("[DLE EOT 1]", "")
                .replace("[DLE EOT 2]", "")
                .replace("[DLE EOT 4]", "")
        })
        .collect()
}

/// Poll `check` until it holds; fails after a minute (a generous bound for a loaded 2-core box).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn printer_config(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[printer]\nkind = \"network\"\naddress = \"{addr}\"\nwidth_mm = 58\nretry_max_ms = 200\ntimeout_ms = 2000\n{extra}"
    )
}

/// A DONE work order with one dispensed part, invoiced; returns (invoice id, invoice number).
async fn invoice(edge: &Edge, admin: &Device, customer: &str) -> (String, String) {
    let (s, wo) = edge
        .post(admin, "/v1/work-orders", json!({"customer_name": customer, "vehicle_plate": "B1234XYZ", "complaint": "Servis rutin"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let id = wo["id"].as_str().expect("id").to_owned();
    for status in ["IN_PROGRESS", "DONE"] {
        let (s, b) = edge
            .post(
                admin,
                &format!("/v1/work-orders/{id}/status"),
                json!({"status": status}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, inv) = edge
        .post(admin, "/v1/invoices", json!({"work_order_id": id, "labour": [{"description": "Jasa servis", "amount": 100000}]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    (
        inv["id"].as_str().expect("id").to_owned(),
        inv["number"].as_str().expect("number").to_owned(),
    )
}

async fn queue_print(edge: &Edge, dev: &Device, invoice_id: &str, document: &str) -> String {
    let (s, job) = edge
        .post(
            dev,
            &format!("/v1/invoices/{invoice_id}/print?document={document}"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    job["id"].as_str().expect("job id").to_owned()
}

async fn job(edge: &Edge, dev: &Device, id: &str) -> serde_json::Value {
    let (s, j) = edge.get(dev, &format!("/v1/print-jobs/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    j
}

async fn all_printed(edge: &Edge, dev: &Device, ids: &[String]) -> bool {
    for id in ids {
        if job(edge, dev, id).await["status"] != "PRINTED" {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Golden files

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn fixture_layout(width: PaperWidth) -> Layout {
    Layout {
        width,
        branch_name: "Bengkel Sentra Kelapa Gading".into(),
        header: vec![
            "Jl. Boulevard Raya No. 5, Jakarta Utara".into(),
            "Telp. 021-4500-123".into(),
        ],
        utc_offset: time::UtcOffset::from_hms(7, 0, 0).expect("valid"),
    }
}

fn fixture_invoice() -> InvoiceDoc {
    let line = |kind: &str, description: &str, sku: Option<&str>, qty: i64, unit_price: i64| {
        sentra_edge::domain::billing::Line {
            kind: kind.into(),
            description: description.into(),
            sku: sku.map(Into::into),
            qty,
            unit_price,
            amount: qty * unit_price,
        }
    };
    InvoiceDoc {
        invoice: Invoice {
            id: "0193a5f0-0000-7000-8000-000000000001".into(),
            number: "JKT01-202611-0007".into(),
            work_order_id: "0193a5e0-0000-7000-8000-000000000001".into(),
            lines: vec![
                line("labour", "Ganti kampas rem depan", None, 1, 150_000),
                line(
                    "part",
                    "Kampas rem depan (Honda Brio) – original",
                    Some("BRK-PAD-FR"),
                    2,
                    185_000,
                ),
                line("part", "Oli mesin 10W-30 1L", Some("OIL-10W30"), 4, 62_500),
            ],
            subtotal: 770_000,
            tax: 84_700,
            total: 854_700,
            paid: 854_700,
            credited: 0,
            balance: 0,
            status: "PAID".into(),
            payments: vec![
                Payment {
                    id: "p1".into(),
                    method: "CASH".into(),
                    amount: 500_000,
                    reference: None,
                    received_at: "2026-11-22T03:40:00.000Z".into(),
                },
                Payment {
                    id: "p2".into(),
                    method: "QRIS".into(),
                    amount: 354_700,
                    reference: Some("QR-88123".into()),
                    received_at: "2026-11-22T03:41:00.000Z".into(),
                },
            ],
            credit_notes: vec![],
            voided: vec![],
            issued_at: "2026-11-22T03:35:12.000Z".into(),
        },
        customer_name: "Budi Santoso".into(),
        vehicle_plate: "B 1234 XYZ".into(),
    }
}

fn fixtures() -> Vec<(&'static str, Document, PaperWidth, bool)> {
    let delivery = DeliveryNote {
        work_order_id: "0193a5e0-0000-7000-8000-000000000001".into(),
        customer_name: "José Rizal".into(),
        vehicle_plate: "B 1234 XYZ".into(),
        date: "2026-11-22T01:05:00.000Z".into(),
        lines: vec![
            DeliveryLine {
                sku: "BRK-PAD-FR".into(),
                name: "Kampas rem depan".into(),
                qty: 2,
                unit: "set".into(),
            },
            DeliveryLine {
                sku: "OIL-10W30".into(),
                name: "Oli mesin 10W-30 1L".into(),
                qty: 4,
                unit: "botol".into(),
            },
        ],
    };
    let pairing = PairingQr {
        branch_id: "JKT01".into(),
        code: "7K3M-Q9TX".into(),
        role: "tablet".into(),
        expires_at: "2026-11-22T03:45:00.000Z".into(),
        uri: None,
    };
    vec![
        (
            "invoice_58",
            Document::Invoice(fixture_invoice()),
            PaperWidth::Mm58,
            false,
        ),
        (
            "invoice_80",
            Document::Invoice(fixture_invoice()),
            PaperWidth::Mm80,
            false,
        ),
        (
            "invoice_58_reprint",
            Document::Invoice(fixture_invoice()),
            PaperWidth::Mm58,
            true,
        ),
        (
            "receipt_58",
            Document::Receipt(fixture_invoice()),
            PaperWidth::Mm58,
            false,
        ),
        (
            "delivery_note_80",
            Document::DeliveryNote(delivery),
            PaperWidth::Mm80,
            false,
        ),
        (
            "pairing_qr_58",
            Document::PairingQr(pairing),
            PaperWidth::Mm58,
            false,
        ),
    ]
}

/// Each document, rendered and sent through the real network transport to the fake printer,
/// arrives byte for byte as its golden file.
#[tokio::test]
async fn documents_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let printer = FakePrinter::start().await;
    let target = Target::Network(printer.addr.to_string());
    let mut conn = target
        .connect(
            Duration::from_secs(10),
            &sentra_edge::config::SerialLine::plain(9600),
        )
        .await
        .expect("connect");
    let mut expected_all = Vec::new();
    for (name, doc, width, reprint) in fixtures() {
        let bytes = document::render(&doc, &fixture_layout(width), reprint);
        conn.send(&target.describe(), &bytes, Duration::from_secs(10))
            .await
            .expect("send");
        expected_all.extend_from_slice(&bytes);
        let (bin, txt) = (
            golden_dir().join(format!("{name}.bin")),
            golden_dir().join(format!("{name}.txt")),
        );
        if update {
            std::fs::create_dir_all(golden_dir()).expect("mkdir");
            std::fs::write(&bin, &bytes).expect("write golden");
            std::fs::write(&txt, document::describe(&bytes)).expect("write golden");
            continue;
        }
        let golden = std::fs::read(&bin)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", bin.display()));
        assert!(
            bytes == golden,
            "{name} differs from {}:\n--- golden\n{}\n--- rendered\n{}\n(if the change is intended: UPDATE_GOLDEN=1)",
            bin.display(),
            document::describe(&golden),
            document::describe(&bytes)
        );
        assert_eq!(
            std::fs::read_to_string(&txt).expect("golden txt"),
            document::describe(&bytes),
            "{name}.txt is stale; UPDATE_GOLDEN=1"
        );
        assert_eq!(
            document::describe(&bytes).contains(REPRINT_MARK),
            reprint,
            "{name}"
        );
    }
    // A status round trip proves the printer has read everything sent before it.
    conn.status(&target.describe(), Duration::from_secs(10))
        .await
        .expect("status");
    let captured = printer.captured();
    assert!(
        captured.strip_suffix(STATUS_QUERY) == Some(&expected_all[..]),
        "the printer received other bytes than were rendered ({} vs {})",
        captured.len(),
        expected_all.len() + STATUS_QUERY.len()
    );
}

// ---------------------------------------------------------------------------------------------
// The worker inside the real daemon

/// Jobs queued while the printer refuses connections wait, then print once each, in order, when
/// it comes back; no copy is marked as a reprint (nothing was sent before). The API shows why a
/// job waits, and `status` shows the printer offline with its queue.
#[tokio::test]
async fn offline_printer_gets_every_job_once_in_order_when_it_returns() {
    let printer = FakePrinter::switched_off().await;
    let site = Site::with_config(&printer_config(printer.addr, ""));
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    let mut numbers = Vec::new();
    let mut jobs = Vec::new();
    for customer in ["Ani", "Budi", "Citra"] {
        let (inv, number) = invoice(&edge, &admin, customer).await;
        numbers.push(number);
        jobs.push(queue_print(&edge, &admin, &inv, "invoice").await);
    }
    eventually("the first job shows why it waits", || async {
        job(&edge, &admin, &jobs[0]).await["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connection refused"))
    })
    .await;
    let j = job(&edge, &admin, &jobs[0]).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("QUEUED"), Some(0)),
        "{j}"
    );
    eventually("status shows the printer offline", || async {
        let (code, out, _) = site.cli(&["status"]);
        code == 0 && out.contains("offline") && out.contains("3 job(s) queued")
    })
    .await;

    printer.come_back().await;
    eventually("all jobs printed", || all_printed(&edge, &admin, &jobs)).await;
    let docs = printer.documents();
    assert_eq!(docs.len(), 3, "each job once: {docs:#?}");
    for (doc, number) in docs.iter().zip(&numbers) {
        assert!(
            doc.contains(number.as_str()),
            "out of order: {number} in {doc}"
        );
        assert!(!doc.contains(REPRINT_MARK), "{doc}");
        assert!(doc.contains("FAKTUR / INVOICE"));
    }
    for id in &jobs {
        let j = job(&edge, &admin, id).await;
        assert_eq!(
            (
                j["attempts"].as_i64(),
                j["reprint"].as_bool(),
                j["last_error"].is_null()
            ),
            (Some(1), Some(false), true),
            "{j}"
        );
    }
    let (code, out, _) = site.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ready") && out.contains("0 job(s) queued"),
        "{out}"
    );
    assert_eq!(edge.stop().await, 0);
}

/// Paper out (answered to DLE EOT): the job waits without being sent, then prints once, not as
/// a reprint, when the paper is back.
#[tokio::test]
async fn paper_out_job_waits_and_prints_after_paper_returns() {
    let printer = FakePrinter::start().await;
    printer.set_paper_out(true);
    let site = Site::with_config(&printer_config(printer.addr, ""));
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    let (inv, number) = invoice(&edge, &admin, "Dewi").await;
    let id = queue_print(&edge, &admin, &inv, "receipt").await;
    eventually("the job waits for paper", || async {
        job(&edge, &admin, &id).await["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("out of paper"))
    })
    .await;
    // Asked more than once, and never sent while the paper was out.
    let asked = printer.status_queries();
    eventually("the worker keeps asking", || async {
        printer.status_queries() > asked + 3
    })
    .await;
    assert!(printer.documents().is_empty());
    let (_, out, _) = site.cli(&["status"]);
    assert!(out.contains("paper_out"), "{out}");
    let j = job(&edge, &admin, &id).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("QUEUED"), Some(0))
    );

    printer.set_paper_out(false);
    eventually("printed", || async {
        job(&edge, &admin, &id).await["status"] == "PRINTED"
    })
    .await;
    let docs = printer.documents();
    assert_eq!(docs.len(), 1, "{docs:#?}");
    assert!(docs[0].contains("KWITANSI / RECEIPT") && docs[0].contains(&number));
    assert!(!docs[0].contains(REPRINT_MARK));
    assert_eq!(edge.stop().await, 0);
}

/// SIGKILL while a job is sent but not confirmed: after restart every job is printed at least
/// once, in order, and the copy sent again carries the reprint mark; no first copy does.
#[tokio::test]
async fn sigkill_mid_queue_loses_no_job_and_marks_the_reprint() {
    let printer = FakePrinter::start().await;
    // The printer takes the second job, then stops answering: it is sent, never confirmed.
    printer.hang_after(2);
    let site = Site::with_config(&printer_config(printer.addr, ""));
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    // Queue everything while the printer is held, so the kill lands mid-queue.
    let mut numbers = Vec::new();
    let mut invoices = Vec::new();
    for customer in ["Eko", "Fajar", "Gita", "Hadi"] {
        let (inv, number) = invoice(&edge, &admin, customer).await;
        numbers.push(number);
        invoices.push(inv);
    }
    let mut jobs = Vec::new();
    for inv in &invoices {
        jobs.push(queue_print(&edge, &admin, inv, "invoice").await);
    }
    eventually("two documents reached the printer", || async {
        printer.documents().len() >= 2
    })
    .await;
    let j = job(&edge, &admin, &jobs[1]).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("QUEUED"), Some(1)),
        "{j}"
    );
    edge.kill().await;

    printer.hang_after(usize::MAX);
    let edge = site.start().await;
    eventually("all jobs printed after the restart", || {
        all_printed(&edge, &admin, &jobs)
    })
    .await;
    let docs = printer.documents();
    // Every job at least once; for each, the first copy is unmarked and any later copy marked.
    let mut last_first_copy = 0;
    for (i, number) in numbers.iter().enumerate() {
        let copies: Vec<(usize, &String)> = docs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.contains(number.as_str()))
            .collect();
        assert!(!copies.is_empty(), "job {i} ({number}) never printed");
        assert!(
            !copies[0].1.contains(REPRINT_MARK),
            "first copy of {number} marked"
        );
        for (_, later) in &copies[1..] {
            assert!(
                later.contains(REPRINT_MARK),
                "second copy of {number} not marked"
            );
        }
        assert!(
            copies[0].0 >= last_first_copy,
            "{number} printed out of order"
        );
        last_first_copy = copies[0].0;
    }
    // The job that was sent but unconfirmed is the one printed again, and the API says so.
    let j = job(&edge, &admin, &jobs[1]).await;
    assert_eq!(
        (j["attempts"].as_i64(), j["reprint"].as_bool()),
        (Some(2), Some(true)),
        "{j}"
    );
    assert_eq!(
        docs.iter().filter(|d| d.contains(REPRINT_MARK)).count(),
        1,
        "only the unconfirmed job is reprinted: {docs:#?}"
    );
    assert_eq!(edge.stop().await, 0);
}

/// `pair --print` queues the code's QR; the daemon prints it; the code is not kept afterwards
/// and never enters the outbox.
#[tokio::test]
async fn pair_print_queues_a_qr_code() {
    let printer = FakePrinter::start().await;
    let site = Site::with_config(&printer_config(printer.addr, ""));
    let edge = site.start().await;
    let (code, out, err) = site.cli(&["pair", "--role", "tablet", "--print"]);
    assert_eq!(code, 0, "{err}");
    let pairing = out
        .split_whitespace()
        .find(|w| w.len() == 9 && w.as_bytes()[4] == b'-')
        .expect("a code")
        .to_owned();
    eventually("the QR is printed", || async {
        !printer.documents().is_empty()
    })
    .await;
    let doc = &printer.documents()[0];
    // The QR holds the pairing URI: the running daemon's HTTPS address, the code and the
    // certificate's fingerprint.
    assert!(
        doc.contains(&format!(
            "[QR sentra://pair?url={}&code={pairing}&fp={}]",
            edge.tls_base, edge.fingerprint
        )),
        "{doc}"
    );
    let db = crate::harness::open_db(&site);
    eventually_sync("the job is PRINTED and its code cleared", || {
        db.query_row(
            "SELECT status, secret IS NULL FROM print_jobs WHERE document = 'pairing_qr'",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)),
        )
        .map(|v| v == ("PRINTED".to_owned(), true))
        .unwrap_or(false)
    })
    .await;
    let in_outbox: i64 = db
        .query_row(
            "SELECT count(*) FROM sync_event_logs WHERE payload LIKE ?1",
            [format!("%{}%", &pairing[..4])],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(in_outbox, 0);
    assert_eq!(edge.stop().await, 0);
}

async fn eventually_sync(what: &str, mut check: impl FnMut() -> bool) {
    eventually(what, || std::future::ready(check())).await;
}

/// Bad print requests change nothing.
#[tokio::test]
async fn unknown_document_is_refused() {
    let printer = FakePrinter::start().await;
    let site = Site::with_config(&printer_config(printer.addr, ""));
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    let (inv, _) = invoice(&edge, &admin, "Indah").await;
    let (s, b) = edge
        .post(
            &admin,
            &format!("/v1/invoices/{inv}/print?document=poster"),
            json!(null),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")),
        "{b}"
    );
    let db = crate::harness::open_db(&site);
    let n: i64 = db
        .query_row("SELECT count(*) FROM print_jobs", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 0);
    // A delivery note prints the invoice's work order's parts.
    let id = queue_print(&edge, &admin, &inv, "delivery_note").await;
    eventually("printed", || async {
        job(&edge, &admin, &id).await["status"] == "PRINTED"
    })
    .await;
    assert!(printer.documents()[0].contains("SURAT JALAN"));
    assert_eq!(edge.stop().await, 0);
}

/// A USB printer's device file that is not there (unplugged) makes jobs wait with a reason a
/// technician can act on; once the device appears (udev creates /dev/sentra/printer) they print
/// into it. A regular file stands in for the device node: the worker opens it write-only, without
/// creating it, exactly as it opens /dev/usb/lp0.
#[tokio::test]
async fn usb_printer_unplugged_then_plugged_in() {
    let dev_dir = tempfile::tempdir().expect("tempdir");
    let device = dev_dir.path().join("printer");
    let site = Site::with_config(&format!(
        "[printer]\nkind = \"usb\"\naddress = {:?}\nwidth_mm = 80\nretry_max_ms = 200\n",
        device.display().to_string()
    ));
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    let (inv, number) = invoice(&edge, &admin, "Joko").await;
    let id = queue_print(&edge, &admin, &inv, "invoice").await;
    eventually("the job waits for the device", || async {
        job(&edge, &admin, &id).await["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no such device; is it plugged in"))
    })
    .await;
    assert!(
        !device.exists(),
        "the worker must not create the device path"
    );

    std::fs::write(&device, b"").expect("plug in");
    eventually("printed", || async {
        job(&edge, &admin, &id).await["status"] == "PRINTED"
    })
    .await;
    let docs = split_documents(&std::fs::read(&device).expect("read device"));
    assert_eq!(docs.len(), 1);
    assert!(docs[0].contains(&number) && docs[0].contains(&"-".repeat(48)));
    assert_eq!(edge.stop().await, 0);
}

/// A pseudo-terminal standing in for a serial printer: the test holds the master (what the
/// printer receives) and a handle on the slave (to read back the line settings the box made).
pub struct PtyPrinter {
    pub slave_path: PathBuf,
    slave: std::fs::File,
    captured: Arc<Mutex<Vec<u8>>>,
}

impl PtyPrinter {
    pub fn open() -> PtyPrinter {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave_path = PathBuf::from(name.to_str().expect("a UTF-8 pty name"));
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&slave_path)
            .expect("open the slave");
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        let mut master = std::fs::File::from(master);
        // A plain thread: it blocks in read until the test process ends.
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        PtyPrinter {
            slave_path,
            slave,
            captured,
        }
    }

    pub fn captured(&self) -> Vec<u8> {
        self.captured.lock().expect("lock").clone()
    }

    /// The slave's settings: (speed, CS8, PARENB, CSTOPB, CRTSCTS, raw).
    pub fn settings(&self) -> (u32, bool, bool, bool, bool, bool) {
        use rustix::termios::{ControlModes as C, LocalModes as L, OutputModes as O, tcgetattr};
        let t = tcgetattr(&self.slave).expect("tcgetattr");
        let c = t.control_modes;
        (
            t.output_speed(),
            c & C::CSIZE == C::CS8,
            c.contains(C::PARENB),
            c.contains(C::CSTOPB),
            c.contains(C::CRTSCTS),
            !t.output_modes.contains(O::OPOST) && !t.local_modes.intersects(L::ICANON | L::ECHO),
        )
    }
}

/// A serial printer on a tty: the box sets `printer.baud` and the framing (8N1, RTS/CTS) and raw
/// mode, so ESC/POS bytes arrive as sent (a cooked tty would turn each LF into CR LF).
#[tokio::test]
async fn serial_printer_gets_the_baud_rate_and_raw_mode_the_box_sets() {
    let pty = PtyPrinter::open();
    // The tty starts cooked at the kernel's default speed.
    let (speed, _, _, _, _, raw) = pty.settings();
    assert!(speed != 19_200 && !raw, "a fresh pty: {speed} raw {raw}");
    let site = Site::with_config(&format!(
        "[printer]\nkind = \"serial\"\naddress = {:?}\nwidth_mm = 58\nretry_max_ms = 200\nbaud = 19200\n",
        pty.slave_path.display().to_string()
    ));
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    let (inv, number) = invoice(&edge, &admin, "Wati").await;
    let id = queue_print(&edge, &admin, &inv, "invoice").await;
    eventually("printed", || async {
        job(&edge, &admin, &id).await["status"] == "PRINTED"
    })
    .await;
    let (speed, cs8, parity, two_stop, rtscts, raw) = pty.settings();
    assert_eq!(
        (speed, cs8, parity, two_stop, rtscts, raw),
        (19_200, true, false, false, true, true),
        "19200 8N1, RTS/CTS, raw"
    );
    eventually("the bytes reached the printer", || async {
        split_documents(&pty.captured())
            .first()
            .is_some_and(|d| d.contains(&number))
    })
    .await;
    let bytes = pty.captured();
    assert!(
        !bytes.windows(2).any(|w| w == b"\r\n"),
        "no LF became CR LF on the way"
    );
    assert_eq!(edge.stop().await, 0);
}
