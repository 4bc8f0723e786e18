//! The writer thread: the only connection that writes. It takes whatever writes are queued (up
//! to `max_batch`), runs each in its own savepoint inside one transaction, commits once (one fsync
//! for the burst), and only then answers each caller and announces the new events.
//!
//! A write that fails rolls back to its savepoint and changes nothing; its neighbours commit. If
//! the commit itself fails, every write of the batch gets the error and nothing was changed.

use rusqlite::{Connection, TransactionBehavior};
use sentra_protocol::EntityKind;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Ctx, Notice, Result, StoreError};

/// A queued write: runs inside the batch and hands back what to do once the batch's fate is known.
pub(super) type Job = Box<dyn FnOnce(&mut WriteTx<'_>) -> Outcome + Send>;

pub(super) enum Outcome {
    /// The write ran; `ok` says whether to keep it. `finish` answers the caller with the commit's result.
    Done {
        ok: bool,
        finish: Box<dyn FnOnce(Result<()>) + Send>,
    },
    /// Stop after this batch.
    Stop(oneshot::Sender<()>),
}

/// What a write sees: the open transaction, the time of this write, and the outbox.
pub struct WriteTx<'c> {
    conn: &'c Connection,
    ctx: &'c Ctx,
    now: OffsetDateTime,
    pub(super) notices: Vec<Notice>,
    /// Who asked for this write: the paired device and the staff member of its session.
    acting: Acting,
}

/// The paired device and staff member behind a write, recorded with each of its events.
#[derive(Debug, Clone, Default)]
pub struct Acting {
    pub device: Option<String>,
    pub staff: Option<String>,
}

impl<'c> WriteTx<'c> {
    pub fn conn(&self) -> &'c Connection {
        self.conn
    }
    pub fn ctx(&self) -> &Ctx {
        self.ctx
    }
    /// The time of this write (one value for all its rows).
    pub fn now(&self) -> OffsetDateTime {
        self.now
    }
    pub fn now_str(&self) -> String {
        super::format_time(self.now)
    }

    /// Records who asks for this write; every event it emits carries them.
    pub fn act_as(&mut self, device: &str, staff: Option<&str>) {
        self.acting = Acting {
            device: Some(device.to_owned()),
            staff: staff.map(str::to_owned),
        };
    }

    /// Append this write's event to the outbox (same transaction). Returns its sequence number.
    pub fn emit(
        &mut self,
        entity: EntityKind,
        entity_id: &str,
        op: &str,
        payload: &impl serde::Serialize,
    ) -> Result<u64> {
        Ok(self.emit_stamped(entity, entity_id, op, payload)?.0)
    }

    /// [`Self::emit`], also returning the event's HLC stamp (for last-writer-wins fields).
    pub fn emit_stamped(
        &mut self,
        entity: EntityKind,
        entity_id: &str,
        op: &str,
        payload: &impl serde::Serialize,
    ) -> Result<(u64, sentra_protocol::Hlc)> {
        let (seq, hlc) = super::outbox::append(
            self.conn,
            self.ctx,
            self.now,
            (entity, entity_id, op),
            payload,
            &self.acting,
        )?;
        self.notices.push(Notice::Event {
            seq,
            entity,
            entity_id: entity_id.to_owned(),
            op: op.to_owned(),
        });
        Ok((seq, hlc))
    }
}

pub(super) fn job<T, F>(f: F) -> (Job, oneshot::Receiver<Result<T>>)
where
    T: Send + 'static,
    F: FnOnce(&mut WriteTx<'_>) -> Result<T> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |w: &mut WriteTx<'_>| {
        let result = f(w);
        Outcome::Done {
            ok: result.is_ok(),
            finish: Box::new(move |commit: Result<()>| {
                let _ = tx.send(match (result, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                });
            }),
        }
    });
    (job, rx)
}

pub(super) fn stop() -> (Job, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    (Box::new(move |_: &mut WriteTx<'_>| Outcome::Stop(tx)), rx)
}

pub(super) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Job>,
    ctx: Ctx,
    max_batch: usize,
    notices: broadcast::Sender<Notice>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx, ctx, max_batch, notices))
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    ctx: Ctx,
    max_batch: usize,
    notices: broadcast::Sender<Notice>,
) {
    // Its log lines carry `component = "store"` like the supervisor's tasks carry theirs.
    let _span = tracing::error_span!("task", component = "store").entered();
    let mut batch = Vec::with_capacity(max_batch);
    let mut stop = None;
    while stop.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        crate::metrics::store_batch(batch.len());
        stop = commit_batch(&mut conn, &ctx, &mut batch, &notices);
    }
    if let Some(done) = stop {
        let _ = done.send(());
    }
    // Closing the connection checkpoints the WAL; a power cut before this loses nothing committed.
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "store writer: closing the connection");
    }
    tracing::debug!("store writer stopped");
}

/// A savepoint statement, compiled once per connection.
fn savepoint(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn commit_batch(
    conn: &mut Connection,
    ctx: &Ctx,
    batch: &mut Vec<Job>,
    notices: &broadcast::Sender<Notice>,
) -> Option<oneshot::Sender<()>> {
    let mut finishes = Vec::with_capacity(batch.len());
    let mut announce = Vec::new();
    let mut stop = None;
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            // Nothing ran. Dropping the jobs answers each caller `Unavailable`; the API says 503
            // and the device retries with its Idempotency-Key.
            tracing::error!(error = %e, writes = batch.len(), "store writer: cannot begin a transaction");
            batch.clear();
            return None;
        }
    };
    // A write alone in its batch needs no savepoint: if it fails, the whole transaction is
    // rolled back, which changes exactly as little. That spares the one-tablet case the sub-journal
    // copy of every page it touches.
    let alone = batch.len() == 1;
    let mut failed_alone = false;
    for job in batch.drain(..) {
        if !alone && let Err(e) = savepoint(&tx, "SAVEPOINT w") {
            tracing::error!(error = %e, "store writer: savepoint");
        }
        let mut w = WriteTx {
            conn: &tx,
            ctx,
            now: OffsetDateTime::now_utc(),
            notices: Vec::new(),
            acting: Acting::default(),
        };
        match job(&mut w) {
            Outcome::Done { ok, finish } => {
                let ended = match (alone, ok) {
                    (true, _) => {
                        failed_alone = !ok;
                        Ok(())
                    }
                    (false, true) => savepoint(&tx, "RELEASE w"),
                    (false, false) => {
                        savepoint(&tx, "ROLLBACK TO w").and_then(|()| savepoint(&tx, "RELEASE w"))
                    }
                };
                match ended {
                    Ok(()) if ok => announce.append(&mut w.notices),
                    Ok(()) => {}
                    Err(e) => tracing::error!(error = %e, "store writer: ending savepoint"),
                }
                finishes.push(finish);
            }
            Outcome::Stop(done) => {
                if !alone {
                    let _ = savepoint(&tx, "RELEASE w");
                }
                stop = Some(done);
            }
        }
    }
    let committed = if failed_alone {
        // The caller already has its error; its rows go with the transaction. (Should ROLLBACK
        // fail, dropping the transaction tries it again, so the next batch never starts in it.)
        if let Err(e) = tx.rollback() {
            tracing::error!(error = %e, "store writer: rolling back a failed write");
        }
        Ok(())
    } else {
        let committed = tx.commit();
        crate::metrics::store_commit(committed.is_ok());
        committed
    };
    match committed {
        Ok(()) => {
            for f in finishes {
                f(Ok(()));
            }
            for n in announce {
                let _ = notices.send(n);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store writer: commit failed; the batch was rolled back");
            for f in finishes {
                f(Err(StoreError::Commit(e.to_string())));
            }
        }
    }
    stop
}
