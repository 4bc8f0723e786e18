//! Print jobs as rows: committed (with their event) before the API answers, so a job the cashier
//! was told about survives a crash. The print worker (`crate::printer`) takes them in queue order
//! through the functions here: it records an attempt durably *before* sending, and marks the job
//! PRINTED only after the printer confirmed the bytes, so a crash in between leaves a QUEUED job
//! with attempts > 0, whose next copy is marked as a reprint on the paper. Status changes are
//! announced as `Notice::PrintJob` (and the printer's own state as `Notice::Printer`); they are not
//! outbox events (see ARCHITECTURE.md).

use rusqlite::{Connection, OptionalExtension as _};
use serde::{Deserialize, Serialize};

use super::{DomainError, Notice, OptionalRow as _, Result, WriteTx, new_id};
use crate::store::devices::PairingCode;
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PrintJob {
    pub id: String,
    /// What is printed: `invoice`, `receipt`, `delivery_note`, `pairing_qr`, at a rental's
    /// handover `rental_agreement` and `rental_delivery_note` (the surat jalan), at its return
    /// `rental_invoice`, and `z_report` at a day's close.
    pub document: String,
    pub ref_id: String,
    /// QUEUED, PRINTED or FAILED.
    pub status: String,
    /// Sends started (recorded before the bytes went out).
    pub attempts: i64,
    /// The last (or, while QUEUED, the next) copy is marked as a reprint on the paper: an earlier
    /// send was started and may have reached the paper.
    pub reprint: bool,
    pub created_at: String,
    pub last_attempt_at: Option<String>,
    pub printed_at: Option<String>,
    /// Why the last attempt did not print (printer offline, out of paper, ...).
    pub last_error: Option<String>,
}

/// Documents a job can print.
pub const DOCUMENTS: &[&str] = &[
    "invoice",
    "receipt",
    "delivery_note",
    "pairing_qr",
    "rental_agreement",
    "rental_delivery_note",
    "rental_invoice",
    "z_report",
];

pub fn enqueue(w: &mut WriteTx<'_>, document: &str, ref_id: &str) -> Result<PrintJob> {
    if !DOCUMENTS.contains(&document) || document == "pairing_qr" {
        return Err(DomainError::invalid(
            "document",
            format!("{document:?} is not one of invoice, receipt, delivery_note"),
        )
        .into());
    }
    let id = insert(w, document, ref_id, None)?;
    let queued = p::PrintJobQueued {
        id: id.clone(),
        document: document.to_owned(),
        ref_id: ref_id.to_owned(),
    };
    w.emit(EntityKind::PrintJob, &id, op::QUEUED, &queued)?;
    get(w.conn(), &id)
}

/// What a pairing QR job prints; kept in `secret` until printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingSecret {
    pub code: String,
    pub role: String,
    pub expires_at: String,
    /// `sentra://pair?url=…&code=…&fp=…` (`lan::pairing_uri`); absent in jobs queued before it.
    #[serde(default)]
    pub uri: Option<String>,
}

/// Queue a pairing code's QR, holding `uri` (the box's URL, the code and the certificate's
/// fingerprint). Pairing codes are the box's security state: no outbox event, and the code never
/// leaves the encrypted store except on paper.
pub fn enqueue_pairing(
    w: &mut WriteTx<'_>,
    code: &PairingCode,
    uri: Option<String>,
) -> Result<PrintJob> {
    let secret = PairingSecret {
        code: code.code.clone(),
        role: code.role.as_str().to_owned(),
        expires_at: code.expires_at.clone(),
        uri,
    };
    let id = insert(
        w,
        "pairing_qr",
        code.role.as_str(),
        Some(super::to_json(&secret)),
    )?;
    get(w.conn(), &id)
}

fn insert(
    w: &mut WriteTx<'_>,
    document: &str,
    ref_id: &str,
    secret: Option<String>,
) -> Result<String> {
    let id = new_id();
    w.conn().execute(
        "INSERT INTO print_jobs (id, document, ref_id, status, created_at, secret) VALUES (?1, ?2, ?3, 'QUEUED', ?4, ?5)",
        (&id, document, ref_id, w.now_str(), secret),
    )?;
    notify(w, &id, "QUEUED", 0);
    Ok(id)
}

fn notify(w: &mut WriteTx<'_>, id: &str, status: &str, attempts: i64) {
    w.notices.push(Notice::PrintJob {
        id: id.to_owned(),
        status: status.to_owned(),
        attempts,
    });
}

const COLUMNS: &str =
    "id, document, ref_id, status, attempts, created_at, last_attempt_at, printed_at, last_error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PrintJob> {
    let status: String = r.get(3)?;
    let attempts: i64 = r.get(4)?;
    Ok(PrintJob {
        id: r.get(0)?,
        document: r.get(1)?,
        ref_id: r.get(2)?,
        reprint: attempts > 1 || (status == "QUEUED" && attempts > 0),
        status,
        attempts,
        created_at: r.get(5)?,
        last_attempt_at: r.get(6)?,
        printed_at: r.get(7)?,
        last_error: r.get(8)?,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<PrintJob> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM print_jobs WHERE id = ?1"))?
        .query_row([id], row)
        .or_not_found("print job", id)
}

/// The oldest job still waiting, in the order jobs were queued.
pub fn next_queued(conn: &Connection) -> Result<Option<PrintJob>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM print_jobs WHERE status = 'QUEUED' ORDER BY rowid LIMIT 1"
        ))?
        .query_row([], row)
        .optional()?)
}

pub fn queue_length(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM print_jobs WHERE status = 'QUEUED'",
        [],
        |r| r.get(0),
    )?)
}

/// The pairing code a `pairing_qr` job prints (None once printed or failed).
pub fn pairing_secret(conn: &Connection, id: &str) -> Result<Option<PairingSecret>> {
    let text: Option<String> = conn
        .query_row("SELECT secret FROM print_jobs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .or_not_found("print job", id)?;
    text.map(|t| super::from_json("print_jobs.secret", &t))
        .transpose()
}

/// Record that a send is starting. Committed before the first byte goes out, so a crash during
/// the send makes the next copy a reprint. Returns the job with its new attempt count.
pub fn begin_attempt(w: &mut WriteTx<'_>, id: &str) -> Result<PrintJob> {
    let n = w.conn().execute(
        "UPDATE print_jobs SET attempts = attempts + 1, last_attempt_at = ?2 WHERE id = ?1 AND status = 'QUEUED'",
        (id, w.now_str()),
    )?;
    if n == 0 {
        return Err(
            DomainError::conflict("not_queued", format!("print job {id} is not queued")).into(),
        );
    }
    let job = get(w.conn(), id)?;
    notify(w, id, "PRINTING", job.attempts);
    Ok(job)
}

/// The printer confirmed the bytes: the job is done and its secret (if any) is gone.
pub fn mark_printed(w: &mut WriteTx<'_>, id: &str) -> Result<PrintJob> {
    w.conn().execute(
        "UPDATE print_jobs SET status = 'PRINTED', printed_at = ?2, last_error = NULL, secret = NULL WHERE id = ?1 AND status = 'QUEUED'",
        (id, w.now_str()),
    )?;
    let job = get(w.conn(), id)?;
    notify(w, id, &job.status, job.attempts);
    Ok(job)
}

/// The job can never print (its document is gone, its pairing code expired).
pub fn mark_failed(w: &mut WriteTx<'_>, id: &str, reason: &str) -> Result<PrintJob> {
    w.conn().execute(
        "UPDATE print_jobs SET status = 'FAILED', last_error = ?2, secret = NULL WHERE id = ?1 AND status = 'QUEUED'",
        (id, reason),
    )?;
    let job = get(w.conn(), id)?;
    notify(w, id, &job.status, job.attempts);
    Ok(job)
}

/// Why the job is still waiting; written only when the reason changes, so a printer that stays
/// offline for hours does not write on every retry.
pub fn note_error(w: &mut WriteTx<'_>, id: &str, error: &str) -> Result<()> {
    w.conn().execute(
        "UPDATE print_jobs SET last_error = ?2 WHERE id = ?1 AND last_error IS NOT ?2",
        (id, error),
    )?;
    Ok(())
}

/// The printer as the worker last saw it, for `sentra-edge status` (another process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinterState {
    /// `disabled`, `idle` (not contacted yet), `ready`, `offline`, `paper_out`, `cover_open`, `error`.
    pub state: String,
    /// The printer as configured, e.g. `network 192.168.1.50:9100`.
    pub target: String,
    /// What a technician can act on when not connected.
    pub detail: Option<String>,
    pub since: String,
}

const PRINTER_STATE_KEY: &str = "printer_state";

pub fn set_printer_state(w: &mut WriteTx<'_>, state: &PrinterState) -> Result<()> {
    super::set_meta(w.conn(), PRINTER_STATE_KEY, &super::to_json(state))?;
    w.notices.push(Notice::Printer {
        state: state.state.clone(),
        detail: state.detail.clone(),
    });
    Ok(())
}

pub fn printer_state(conn: &Connection) -> Result<Option<PrinterState>> {
    super::meta(conn, PRINTER_STATE_KEY)?
        .map(|t| super::from_json("meta.printer_state", &t))
        .transpose()
}
