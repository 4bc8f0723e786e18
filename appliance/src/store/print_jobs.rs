//! Print jobs as rows: committed (with their event) before the API answers, so a job the cashier
//! was told about survives a crash. The print worker that sends them to the printer and marks
//! them printed belongs to the printer module.

use rusqlite::Connection;
use serde::Serialize;

use super::{OptionalRow as _, Result, WriteTx, new_id};
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PrintJob {
    pub id: String,
    /// What is printed: `invoice`, `receipt`, `delivery_note`, `pairing_qr`.
    pub document: String,
    pub ref_id: String,
    /// QUEUED, PRINTED or FAILED.
    pub status: String,
    pub attempts: i64,
    pub created_at: String,
    pub printed_at: Option<String>,
    pub last_error: Option<String>,
}

pub fn enqueue(w: &mut WriteTx<'_>, document: &str, ref_id: &str) -> Result<PrintJob> {
    let id = new_id();
    w.conn().execute(
        "INSERT INTO print_jobs (id, document, ref_id, status, created_at) VALUES (?1, ?2, ?3, 'QUEUED', ?4)",
        (&id, document, ref_id, w.now_str()),
    )?;
    let job = get(w.conn(), &id)?;
    let queued = p::PrintJobQueued {
        id: job.id.clone(),
        document: job.document.clone(),
        ref_id: job.ref_id.clone(),
    };
    w.emit(EntityKind::PrintJob, &id, op::QUEUED, &queued)?;
    Ok(job)
}

pub fn get(conn: &Connection, id: &str) -> Result<PrintJob> {
    conn.prepare_cached("SELECT id, document, ref_id, status, attempts, created_at, printed_at, last_error FROM print_jobs WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(PrintJob {
                id: r.get(0)?,
                document: r.get(1)?,
                ref_id: r.get(2)?,
                status: r.get(3)?,
                attempts: r.get(4)?,
                created_at: r.get(5)?,
                printed_at: r.get(6)?,
                last_error: r.get(7)?,
            })
        })
        .or_not_found("print job", id)
}
