//! The print worker: takes QUEUED print jobs from the store in queue order and sends them to the
//! configured printer, one at a time, on a task owned by the supervisor.
//!
//! Invariants:
//! - A job is marked PRINTED only after the printer confirmed its bytes (a status answer after
//!   them on the network, a flush or fsync otherwise); until then it stays QUEUED in the store and
//!   survives a crash or power cut.
//! - An attempt is recorded durably *before* the first byte is sent. A job with an earlier
//!   attempt may already be on paper, so its next copy carries the reprint mark; a job can print
//!   twice, never zero times.
//! - While the printer is offline, out of paper or has its cover open, the job waits (backoff up to
//!   `printer.retry_max_ms`) and nothing behind it overtakes it.
//! - A job that can never print (its invoice is gone, its pairing code expired) is FAILED with the
//!   reason instead of blocking the queue.

pub mod document;
pub mod transport;

use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{BranchConfig, PrinterConfig};
use crate::store::print_jobs::{self, PrintJob, PrinterState};
use crate::store::{self, DomainError, Notice, Store, StoreError};
use document::{DeliveryLine, DeliveryNote, Document, InvoiceDoc, Layout, PairingQr, RentalPaper};
use transport::{Connection, PrinterError, Target};

/// How often an idle worker looks for jobs queued by another process (`sentra-edge pair --print`),
/// whose notices it cannot hear.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// First wait after a failed attempt; doubles up to `printer.retry_max_ms` ([`Backoff`]).
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The layout every document is printed with, from the configuration.
pub fn layout(branch: &BranchConfig, printer: &PrinterConfig) -> Layout {
    Layout {
        width: printer.width,
        branch_name: branch.name.clone(),
        header: printer.header.clone(),
        utc_offset: branch.utc_offset,
    }
}

/// Run the worker until `cancel`. Store errors are logged and retried: the jobs stay queued.
pub async fn run(
    store: Store,
    branch: BranchConfig,
    cfg: PrinterConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let target = Target::from_config(&cfg);
    let mut w = Worker {
        layout: layout(&branch, &cfg),
        timeout: Duration::from_millis(cfg.timeout_ms),
        retry_max: Duration::from_millis(cfg.retry_max_ms),
        status_query: cfg.status_query,
        line: cfg.line,
        describe: target.describe(),
        target,
        store,
        conn: None,
        state: None,
    };
    if !cfg.enabled {
        w.set_state(
            "disabled",
            Some("printer.enabled = false; jobs stay queued".into()),
        )
        .await;
        return Ok(());
    }
    tracing::info!(printer = %w.describe, "print worker started");
    // Not contacted yet: the printer is opened when there is something to print.
    w.set_state(
        "idle",
        Some("not contacted since start; opened for the next job".into()),
    )
    .await;
    let mut notices = w.store.subscribe();
    let mut backoff = Backoff::new(FIRST_RETRY, w.retry_max);
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let job = match w.store.read(print_jobs::next_queued).await {
            Ok(j) => j,
            Err(StoreError::Closed) => return Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "print worker: cannot read the queue; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(w.retry_max) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
                continue;
            }
        };
        let Some(job) = job else {
            // Idle: let the printer have its connection back (other POS may print to it).
            w.conn = None;
            tokio::select! {
                _ = wait_for_job(&mut notices) => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = cancel.cancelled() => return Ok(()),
            }
            continue;
        };
        match w.print(&job).await {
            Ok(()) => backoff.reset(),
            Err(Retry::Printer(e)) => {
                w.conn = None;
                let reason = e.to_string();
                let id = job.id.clone();
                let noted = w
                    .store
                    .write(move |tx| print_jobs::note_error(tx, &id, &reason))
                    .await;
                if let Err(StoreError::Closed) = noted {
                    return Ok(());
                }
                // Logged when the reason changes, not on every retry of a printer left off.
                if w.set_state(e.state(), Some(e.to_string())).await {
                    tracing::warn!(job = %job.id, error = %e, "print job waits");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_wait()) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
            }
            Err(Retry::Store(StoreError::Closed)) => return Ok(()),
            Err(Retry::Store(e)) => {
                // A write the store could not take now: the job stays queued; try again later
                // rather than take the whole daemon down.
                tracing::error!(job = %job.id, error = %e, "print worker: store error; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_wait()) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
            }
        }
    }
}

/// Until a job may have been queued (or we lagged and should look anyway).
async fn wait_for_job(notices: &mut broadcast::Receiver<Notice>) {
    loop {
        match notices.recv().await {
            Ok(Notice::PrintJob { status, .. }) if status == "QUEUED" => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // The store is closing; the caller's cancellation ends the loop.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

enum Retry {
    Printer(PrinterError),
    Store(StoreError),
}

impl From<PrinterError> for Retry {
    fn from(e: PrinterError) -> Self {
        Retry::Printer(e)
    }
}

impl From<StoreError> for Retry {
    fn from(e: StoreError) -> Self {
        Retry::Store(e)
    }
}

struct Worker {
    store: Store,
    target: Target,
    describe: String,
    layout: Layout,
    timeout: Duration,
    retry_max: Duration,
    status_query: bool,
    /// The serial line's settings, applied when the printer's device is a tty.
    line: crate::config::SerialLine,
    conn: Option<Connection>,
    /// The state last written for `status`, so it is written only when it changes.
    state: Option<(String, Option<String>)>,
}

impl Worker {
    /// One attempt at `job`: Ok when it printed or can never print (then FAILED).
    async fn print(&mut self, job: &PrintJob) -> Result<(), Retry> {
        let (id, kind) = (job.id.clone(), job.document.clone());
        let ctx = self.store.ctx().clone();
        let doc = match self.store.read(move |c| load(c, &ctx, &id, &kind)).await? {
            Ok(doc) => doc,
            Err(reason) => {
                tracing::warn!(job = %job.id, %reason, "print job cannot print");
                let id = job.id.clone();
                self.store
                    .write(move |tx| print_jobs::mark_failed(tx, &id, &reason))
                    .await?;
                return Ok(());
            }
        };
        if self.conn.is_none() {
            self.conn = Some(self.target.connect(self.timeout, &self.line).await?);
        }
        let conn = self.conn.as_mut().expect("connected just above");
        let query = conn.bidirectional() && self.status_query;
        if query {
            let status = conn.status(&self.describe, self.timeout).await?;
            if let Some(problem) = status.problem(&self.describe) {
                return Err(problem.into());
            }
        }
        let id = job.id.clone();
        let job = self
            .store
            .write(move |tx| print_jobs::begin_attempt(tx, &id))
            .await?;
        let bytes = document::render(&doc, &self.layout, job.attempts > 1);
        conn.send(&self.describe, &bytes, self.timeout).await?;
        if query {
            // The answer comes after the job's bytes arrived; paper that ran out during the job
            // means it may be cut short, so it is sent again, marked as a reprint.
            let status = conn.status(&self.describe, self.timeout).await?;
            if let Some(problem) = status.problem(&self.describe) {
                return Err(problem.into());
            }
        }
        let id = job.id.clone();
        self.store
            .write(move |tx| print_jobs::mark_printed(tx, &id))
            .await?;
        tracing::info!(job = %job.id, document = %job.document, attempts = job.attempts, "printed");
        self.set_state("ready", None).await;
        Ok(())
    }

    /// Record the printer's state for `status` and the broker; true when it changed.
    async fn set_state(&mut self, state: &str, detail: Option<String>) -> bool {
        let next = (state.to_owned(), detail);
        if self.state.as_ref() == Some(&next) {
            return false;
        }
        let row = PrinterState {
            state: next.0.clone(),
            target: self.describe.clone(),
            detail: next.1.clone(),
            since: store::format_time(time::OffsetDateTime::now_utc()),
        };
        if let Err(e) = self
            .store
            .write(move |tx| print_jobs::set_printer_state(tx, &row))
            .await
        {
            tracing::warn!(error = %e, "cannot record the printer state");
            return true;
        }
        self.state = Some(next);
        true
    }
}

/// The document a job prints, from the store. `Ok(Err(reason))`: it can never print.
fn load(
    c: &rusqlite::Connection,
    ctx: &store::Ctx,
    job_id: &str,
    kind: &str,
) -> store::Result<Result<Document, String>> {
    let gone = |e: StoreError| match e {
        StoreError::Domain(d @ DomainError::NotFound { .. }) => Ok(Err(format!("{d}"))),
        e => Err(e),
    };
    let job = print_jobs::get(c, job_id)?;
    match kind {
        "invoice" | "receipt" => {
            let invoice = match store::billing::get(c, &job.ref_id) {
                Ok(i) => i,
                Err(e) => return gone(e),
            };
            let wo = match store::workshop::get(c, &invoice.work_order_id) {
                Ok(w) => w,
                Err(e) => return gone(e),
            };
            let doc = InvoiceDoc {
                invoice,
                customer_name: wo.customer_name,
                vehicle_plate: wo.vehicle_plate,
            };
            Ok(Ok(if kind == "invoice" {
                Document::Invoice(doc)
            } else {
                Document::Receipt(doc)
            }))
        }
        "delivery_note" => {
            let wo = match store::workshop::get(c, &job.ref_id) {
                Ok(w) => w,
                Err(e) => return gone(e),
            };
            let mut lines = Vec::with_capacity(wo.parts.len());
            for p in &wo.parts {
                let (name, unit) = match store::master::part(c, &p.sku) {
                    Ok(part) => (part.name, part.unit),
                    Err(StoreError::Domain(DomainError::NotFound { .. })) => {
                        (String::new(), String::new())
                    }
                    Err(e) => return Err(e),
                };
                lines.push(DeliveryLine {
                    sku: p.sku.clone(),
                    name,
                    qty: p.qty,
                    unit,
                });
            }
            Ok(Ok(Document::DeliveryNote(DeliveryNote {
                work_order_id: wo.id,
                customer_name: wo.customer_name,
                vehicle_plate: wo.vehicle_plate,
                date: wo.created_at,
                lines,
            })))
        }
        "pairing_qr" => {
            let Some(secret) = print_jobs::pairing_secret(c, job_id)? else {
                return Ok(Err("the pairing code is no longer stored".into()));
            };
            let expired = store::parse_time(&secret.expires_at)
                .map(|t| t <= time::OffsetDateTime::now_utc())
                .unwrap_or(true);
            if expired {
                return Ok(Err(format!(
                    "pairing code expired at {} before it could be printed; make a new one with sentra-edge pair --print",
                    secret.expires_at
                )));
            }
            let branch_id = store::sync::branch_id(c, ctx)?;
            Ok(Ok(Document::PairingQr(PairingQr {
                branch_id,
                code: secret.code,
                role: secret.role,
                expires_at: secret.expires_at,
                uri: secret.uri,
            })))
        }
        "rental_agreement" | "rental_delivery_note" => {
            let paper = match store::rentals::paper(c, &job.ref_id) {
                Ok(p) => rental_paper(p),
                Err(e) => return gone(e),
            };
            Ok(Ok(if kind == "rental_agreement" {
                Document::RentalAgreement(paper)
            } else {
                Document::RentalDeliveryNote(paper)
            }))
        }
        "rental_invoice" => {
            let paper = match store::rentals::paper(c, &job.ref_id) {
                Ok(p) => p,
                Err(e) => return gone(e),
            };
            let r = paper.rental;
            let Some(invoice) = r.invoice else {
                return Ok(Err(format!("rental {} has no invoice", r.booking_id)));
            };
            Ok(Ok(Document::RentalInvoice(document::RentalInvoiceDoc {
                agreement_number: r.agreement_number,
                customer: r.customer,
                asset_name: paper.asset_name,
                plate: paper.plate,
                invoice,
                payments: r.payments,
            })))
        }
        "z_report" => {
            let Ok(day) = store::staff::parse_day(&job.ref_id) else {
                return Ok(Err(format!("{:?} is not a day", job.ref_id)));
            };
            let d = store::staff::get_day(c, ctx.utc_offset, day)?;
            if d.status != "CLOSED" {
                return Ok(Err(format!("the day {} is no longer closed", d.day)));
            }
            let name = |id: &str| -> store::Result<String> {
                Ok(store::staff::get_staff(c, id)?.map_or_else(|| id.to_owned(), |s| s.name))
            };
            let mut shifts = Vec::with_capacity(d.shifts.len());
            for s in &d.shifts {
                shifts.push(document::ZShift {
                    cashier: name(&s.staff_id)?,
                    opened_at: s.opened_at.clone(),
                    closed_at: s.closed_at.clone().unwrap_or_default(),
                    opening_float: s.opening_float,
                    expected_cash: s.expected_cash.unwrap_or(0),
                    counted_cash: s.counted_cash.unwrap_or(0),
                    difference: s.difference.unwrap_or(0),
                    reason: s.reason.clone(),
                });
            }
            Ok(Ok(Document::ZReport(document::ZReport {
                manager: name(d.manager_id.as_deref().unwrap_or_default())?,
                day: d.day,
                closed_at: d.closed_at.unwrap_or_default(),
                shifts,
                totals: (d.totals.cash, d.totals.edc, d.totals.qris),
                expected_cash: d.expected_cash,
                counted_cash: d.counted_cash,
                difference: d.difference,
                reason: d.reason,
            })))
        }
        other => Ok(Err(format!("unknown document {other:?}"))),
    }
}

/// A rental as its handover papers show it.
fn rental_paper(p: store::rentals::Paper) -> RentalPaper {
    let r = p.rental;
    RentalPaper {
        deposit_paid: r
            .payments
            .iter()
            .filter(|m| m.kind == "DEPOSIT")
            .map(|m| (m.method.clone(), m.amount, m.reference.clone()))
            .collect(),
        agreement_number: r.agreement_number,
        booking_id: r.booking_id,
        customer: r.customer,
        asset_id: r.asset_id,
        asset_name: p.asset_name,
        plate: p.plate,
        from: r.from,
        to: r.to,
        days: r.days,
        daily_rate: r.daily_rate,
        deposit: r.deposit,
        late_fee_per_day: r.late_fee_per_day,
        handed_over_at: r.handover.at,
        inspection_id: r.handover.inspection_id,
        inspection_hash: r.handover.tamper_proof_hash,
        photo_count: r.handover.photo_count,
        odometer_km: r.handover.odometer_km,
        fuel_percent: r.handover.fuel_percent,
    }
}
