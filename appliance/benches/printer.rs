//! Printing: render time per document beside a plain copy of its bytes, and print jobs per second
//! through the real worker (store bookkeeping, DLE EOT before and after each job) to a TCP
//! listener that answers like a printer, beside the same bytes and status round trips sent
//! without the store (the floor).
//!
//! `cargo bench -p sentra-edge --bench printer`
//! Env: BENCH_RENDERS (20000), BENCH_JOBS (500).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sentra_edge::config::{Config, PrinterKind};
use sentra_edge::domain::Role;
use sentra_edge::printer::document::{
    self, DeliveryLine, DeliveryNote, Document, InvoiceDoc, Layout, PairingQr, PaperWidth,
};
use sentra_edge::printer::transport::Target;
use sentra_edge::store::billing::{Invoice, Payment};
use sentra_edge::store::{Store, StoreKey, StoreOptions, devices, print_jobs};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(default),
    }
}

fn layout(width: PaperWidth) -> Layout {
    Layout {
        width,
        branch_name: "Bengkel Sentra Kelapa Gading".into(),
        header: vec!["Jl. Boulevard Raya No. 5, Jakarta Utara".into()],
        utc_offset: time::UtcOffset::from_hms(7, 0, 0).expect("valid"),
    }
}

fn invoice_doc(lines: usize) -> InvoiceDoc {
    let lines: Vec<_> = (0..lines)
        .map(|i| sentra_edge::domain::billing::Line {
            kind: "part".into(),
            description: format!("Suku cadang nomor {i} (original)"),
            sku: Some(format!("SKU-{i}")),
            qty: 2,
            unit_price: 45_000,
            amount: 90_000,
        })
        .collect();
    let subtotal = 90_000 * lines.len() as i64;
    let tax = sentra_edge::domain::billing::ppn(subtotal).expect("small");
    InvoiceDoc {
        invoice: Invoice {
            id: "i".into(),
            number: "JKT01-202611-0007".into(),
            work_order_id: "w".into(),
            lines,
            subtotal,
            tax,
            total: subtotal + tax,
            paid: subtotal + tax,
            credited: 0,
            balance: 0,
            status: "PAID".into(),
            payments: vec![Payment {
                id: "p".into(),
                method: "CASH".into(),
                amount: subtotal + tax,
                reference: None,
                received_at: "2026-11-22T03:40:00.000Z".into(),
            }],
            credit_notes: vec![],
            voided: vec![],
            issued_at: "2026-11-22T03:35:12.000Z".into(),
        },
        customer_name: "Budi Santoso".into(),
        vehicle_plate: "B 1234 XYZ".into(),
    }
}

fn render_phase(renders: usize) {
    let docs: Vec<(&str, Document, PaperWidth)> = vec![
        (
            "invoice, 5 lines, 58 mm",
            Document::Invoice(invoice_doc(5)),
            PaperWidth::Mm58,
        ),
        (
            "invoice, 40 lines, 80 mm",
            Document::Invoice(invoice_doc(40)),
            PaperWidth::Mm80,
        ),
        (
            "receipt, 5 lines, 58 mm",
            Document::Receipt(invoice_doc(5)),
            PaperWidth::Mm58,
        ),
        (
            "delivery note, 10 lines, 80 mm",
            Document::DeliveryNote(DeliveryNote {
                work_order_id: "0193a5e0-0000-7000-8000-000000000001".into(),
                customer_name: "Budi Santoso".into(),
                vehicle_plate: "B 1234 XYZ".into(),
                date: "2026-11-22T01:05:00.000Z".into(),
                lines: (0..10)
                    .map(|i| DeliveryLine {
                        sku: format!("SKU-{i}"),
                        name: "Kampas rem depan".into(),
                        qty: 2,
                        unit: "set".into(),
                    })
                    .collect(),
            }),
            PaperWidth::Mm80,
        ),
        (
            "pairing QR, 58 mm",
            Document::PairingQr(PairingQr {
                branch_id: "JKT01".into(),
                code: "7K3M-Q9TX".into(),
                role: "tablet".into(),
                expires_at: "2026-11-22T03:45:00.000Z".into(),
                uri: None,
            }),
            PaperWidth::Mm58,
        ),
    ];
    println!("render ({renders} renders each; floor: copying the rendered bytes)");
    for (name, doc, width) in docs {
        let layout = layout(width);
        let bytes = document::render(&doc, &layout, false);
        let start = Instant::now();
        for _ in 0..renders {
            black_box(document::render(black_box(&doc), &layout, false));
        }
        let per = start.elapsed().as_secs_f64() / renders as f64;
        let start = Instant::now();
        for _ in 0..renders {
            black_box(black_box(&bytes).clone());
        }
        let floor = start.elapsed().as_secs_f64() / renders as f64;
        println!(
            "  {name:<32} {:>6} bytes  render {:>8.2} us/doc  floor {:>6.3} us  ({:>6.0} docs/s on one core)",
            bytes.len(),
            per * 1e6,
            floor * 1e6,
            1.0 / per
        );
    }
}

/// A printer on 127.0.0.1 that reads everything, counts cuts, and answers DLE EOT "all fine".
async fn fake_printer() -> anyhow::Result<(std::net::SocketAddr, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cuts = Arc::new(AtomicUsize::new(0));
    let counter = cuts.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let cuts = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut tail: Vec<u8> = Vec::new();
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    tail.extend_from_slice(&buf[..n]);
                    let mut replies = 0;
                    let mut i = 0;
                    while i + 3 <= tail.len() {
                        if tail[i] == 0x10 && tail[i + 1] == 0x04 {
                            replies += 1;
                            i += 3;
                        } else if &tail[i..i + 3] == b"\x1dVB" {
                            cuts.fetch_add(1, Ordering::Relaxed);
                            i += 3;
                        } else {
                            i += 1;
                        }
                    }
                    tail.drain(..i);
                    if replies > 0 && sock.write_all(&vec![0x12; replies]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, cuts))
}

async fn worker_phase(jobs: usize) -> anyhow::Result<()> {
    let (addr, cuts) = fake_printer().await?;
    let dir = tempfile::tempdir()?;
    let mut config = Config::defaults();
    config.store.data_dir = dir.path().to_owned();
    config.printer.kind = PrinterKind::Network;
    config.printer.address = addr.to_string();
    let opts = StoreOptions {
        path: config.db_path(),
        key: StoreKey::generate(),
        readers: config.store.readers,
        max_batch: config.store.max_batch,
        branch_id: config.branch.id.clone(),
        utc_offset: config.branch.utc_offset,
    };
    let store = tokio::task::spawn_blocking(move || Store::open(opts)).await??;
    // Pairing QR jobs need no invoice set-up; they render like a short receipt.
    store
        .write(move |w| {
            for _ in 0..jobs {
                let code = devices::new_pairing_code(w, Role::Tablet, 86_400)?;
                print_jobs::enqueue_pairing(w, &code, None)?;
            }
            Ok(())
        })
        .await?;
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let worker = tokio::spawn(sentra_edge::printer::run(
        store.clone(),
        config.branch.clone(),
        config.printer.clone(),
        cancel.clone(),
    ));
    loop {
        let left = store.read(print_jobs::queue_length).await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = start.elapsed();
    cancel.cancel();
    worker.await??;
    anyhow::ensure!(
        cuts.load(Ordering::Relaxed) == jobs,
        "printer saw {} documents for {jobs} jobs",
        cuts.load(Ordering::Relaxed)
    );
    println!(
        "worker: {jobs} jobs in {:.3} s = {:>7.1} jobs/s ({:.2} ms/job: status, attempt commit, send, status, printed commit)",
        wall.as_secs_f64(),
        jobs as f64 / wall.as_secs_f64(),
        wall.as_secs_f64() * 1e3 / jobs as f64
    );
    store.shutdown().await;

    // Floor: the same bytes and status round trips over one connection, no store.
    let bytes = document::render(
        &Document::PairingQr(PairingQr {
            branch_id: "DEMO01".into(),
            code: "7K3M-Q9TX".into(),
            role: "tablet".into(),
            expires_at: "2026-11-22T03:45:00.000Z".into(),
            uri: None,
        }),
        &layout(PaperWidth::Mm58),
        false,
    );
    let target = Target::Network(addr.to_string());
    let t = Duration::from_secs(10);
    let mut conn = target
        .connect(t, &sentra_edge::config::SerialLine::plain(9600))
        .await?;
    let start = Instant::now();
    for _ in 0..jobs {
        conn.status("floor", t).await?;
        conn.send("floor", &bytes, t).await?;
        conn.status("floor", t).await?;
    }
    let wall = start.elapsed();
    println!(
        "floor (no store, same round trips): {jobs} jobs in {:.3} s = {:>7.1} jobs/s ({:.3} ms/job)",
        wall.as_secs_f64(),
        jobs as f64 / wall.as_secs_f64(),
        wall.as_secs_f64() * 1e3 / jobs as f64
    );
    let start = Instant::now();
    for _ in 0..jobs {
        conn.send("floor", &bytes, t).await?;
    }
    conn.status("floor", t).await?;
    let wall = start.elapsed();
    println!(
        "floor (bytes only, one status at the end): {jobs} jobs in {:.3} s = {:>9.1} jobs/s",
        wall.as_secs_f64(),
        jobs as f64 / wall.as_secs_f64()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let renders = env_usize("BENCH_RENDERS", 20_000)?;
    let jobs = env_usize("BENCH_JOBS", 500)?;
    render_phase(renders);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(worker_phase(jobs))?;
    Ok(())
}
