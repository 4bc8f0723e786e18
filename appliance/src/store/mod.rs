//! The encrypted local store: the only module that touches SQLite.
//!
//! SQLCipher with a raw 256-bit key, WAL and `synchronous=FULL`: a write the API acknowledged has
//! reached the disk and survives a power cut. One writer thread owns the only write connection and
//! commits queued writes together (group commit: one fsync for a burst, each write in its own
//! savepoint so one failure never takes its neighbours down); reads run on a small pool of
//! read-only connections through `spawn_blocking`, never on the async runtime.
//!
//! Invariants: every domain change is one transaction that also appends its event to the outbox
//! ([`WriteTx::emit`]); a wrong key is an error, never a new empty database; after a commit the
//! store announces the new events on an in-process channel ([`Store::subscribe`]), which is how the
//! rest of the box hears of change.

pub mod billing;
pub mod blobs;
pub mod bookings;
pub mod devices;
pub mod idempotency;
pub mod inspections;
pub mod key;
pub mod lan;
pub mod master;
pub mod mqtt;
pub mod outbox;
pub mod pick_slips;
pub mod print_jobs;
pub mod rentals;
mod schema;
pub mod shared;
pub mod staff;
pub mod stock;
pub mod successor;
pub mod sync;
pub mod vehicles;
pub mod workshop;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use sentra_protocol::EntityKind;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::{Semaphore, broadcast, mpsc};

pub use key::StoreKey;
pub use writer::{Acting, WriteTx};

/// What the rest of the box hears after a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Event {
        seq: u64,
        entity: EntityKind,
        entity_id: String,
        op: String,
    },
    /// A print job changed state (QUEUED, PRINTING, PRINTED, FAILED). Not an outbox event: the
    /// paper is the branch's business; the job's queueing already is one.
    PrintJob {
        id: String,
        status: String,
        attempts: i64,
    },
    /// The printer's state changed (`ready`, `offline`, `paper_out`, ...), with what to do.
    Printer {
        state: String,
        detail: Option<String>,
    },
    /// A barcode scan and what came of it, after any write it caused committed. The MQTT
    /// bridge publishes it on `sentra/<branch>/scans/<scanner>` as the JSON of
    /// [`pick_slips::ScanNotice`]: `{"scanner", "code", "symbology", "outcome": "dispensed" |
    /// "lookup" | "rejected", ...}` (fields per outcome in [`pick_slips::ScanOutcome`]).
    Scan(pick_slips::ScanNotice),
    /// A rental booking changed state: taken (HELD online, TENTATIVE offline) or decided by the
    /// cloud at sync (CONFIRMED, REJECTED with the reason). Announced after the commit; the
    /// MQTT bridge publishes it as the JSON of [`bookings::BookingNotice`] on
    /// `sentra/<branch>/bookings/<id>` for the counter's screens.
    Booking(bookings::BookingNotice),
    /// A paired device was revoked: the broker forgets it and disconnects it at once.
    DeviceRevoked { id: String },
    /// A device's rotated credentials took effect (its new token was used): the broker closes
    /// its MQTT sessions on any other password than the one hashed as `mqtt_credential`.
    DeviceCredentialsChanged { id: String, mqtt_credential: String },
}

/// Errors of the store and the domain rules it enforces.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: the store key is wrong (or the file is not a Sentra store); the file was left untouched", path = .path.display())]
    WrongKey { path: PathBuf },
    #[error("store {path}: {source}", path = .path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store {path}: {message}", path = .path.display())]
    Io { path: PathBuf, message: String },
    #[error("store {path} has schema version {found}, newer than this build knows ({known}); run the newer sentra-edge", path = .path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("store migration {version}: {source}")]
    Migration {
        version: i64,
        source: rusqlite::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{path} is a backup of branch {whose}, not of {ours}; nothing was changed", path = .path.display())]
    ForeignBackup {
        path: PathBuf,
        whose: String,
        ours: String,
    },
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the store is shutting down")]
    Closed,
    #[error("the write could not be committed ({0}); nothing was changed")]
    Commit(String),
    #[error("the store could not take this write just now; nothing was changed, retry")]
    Unavailable,
}

impl StoreError {
    /// The store cannot be used at all (exit code 3), as opposed to one failed operation.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            StoreError::WrongKey { .. }
                | StoreError::Open { .. }
                | StoreError::Io { .. }
                | StoreError::TooNew { .. }
                | StoreError::Migration { .. }
        )
    }
}

/// A rule of the branch's work said no. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{entity} {id:?} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
}

impl DomainError {
    pub fn not_found(entity: &'static str, id: impl Into<String>) -> Self {
        DomainError::NotFound {
            entity,
            id: id.into(),
        }
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        DomainError::Conflict {
            code,
            message: message.into(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    pub key: StoreKey,
    pub readers: usize,
    pub max_batch: usize,
    pub branch_id: String,
    pub utc_offset: UtcOffset,
}

/// Facts every write needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub device_id: String,
    pub branch_id: String,
    pub utc_offset: UtcOffset,
    pub clock: CloudClock,
}

/// How far the cloud's clock is from ours, as the sync daemon last measured it. HLC stamps use
/// the corrected time; the correction is bounded so a wild answer cannot throw stamps far off.
#[derive(Debug, Clone, Default)]
pub struct CloudClock {
    offset_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl CloudClock {
    /// One day: past that the box's clock is broken and `status` says so; we do not chase it.
    pub const MAX_OFFSET_MS: i64 = 24 * 60 * 60 * 1000;

    pub fn set_offset_ms(&self, ms: i64) {
        self.offset_ms.store(
            ms.clamp(-Self::MAX_OFFSET_MS, Self::MAX_OFFSET_MS),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `now` in Unix milliseconds, corrected toward the cloud's clock.
    pub fn corrected_ms(&self, now: OffsetDateTime) -> u64 {
        let ms = (now.unix_timestamp_nanos() / 1_000_000) as i64 + self.offset_ms();
        u64::try_from(ms).unwrap_or(0)
    }
}

/// A cheap, cloneable handle to the store.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    key: StoreKey,
    ctx: Ctx,
    queue: mpsc::Sender<writer::Job>,
    readers: Semaphore,
    reader_conns: Mutex<Vec<Connection>>,
    notices: broadcast::Sender<Notice>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    blobs: blobs::Blobs,
}

/// Writes waiting for the writer; a full queue makes callers wait (backpressure), not fail.
const QUEUE_DEPTH: usize = 4096;
/// Notices kept for slow listeners before they are told they lagged.
const NOTICE_DEPTH: usize = 4096;
/// How long a connection waits for another process (a CLI `pair`, `backup`) holding a lock.
const BUSY_TIMEOUT_MS: u32 = 5_000;

impl Store {
    /// Open (creating on first start) and migrate. Blocking: call before serving or on a
    /// blocking thread.
    pub fn open(opts: StoreOptions) -> Result<Store> {
        if let Some(dir) = opts.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
                path: dir.to_owned(),
                message: e.to_string(),
            })?;
        }
        let mut conn = open_connection(&opts.path, &opts.key, true)?;
        schema::migrate(&mut conn, &opts.path)?;
        let device_id = schema::device_id(&conn)?;
        let clock = CloudClock::default();
        clock.set_offset_ms(conn.query_row(
            "SELECT clock_skew_ms FROM sync_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?);
        // Once enrolled, the branch the cloud named is the box's: invoice and agreement numbers
        // carry it even where `branch.id` in the configuration was left at its default.
        let ctx = Ctx {
            device_id,
            branch_id: enrolled(&conn)?
                .map_or_else(|| opts.branch_id.clone(), |(branch, _)| branch),
            utc_offset: opts.utc_offset,
            clock,
        };

        let mut reader_conns = Vec::with_capacity(opts.readers);
        for _ in 0..opts.readers {
            let r = open_connection(&opts.path, &opts.key, false)?;
            r.pragma_update(None, "query_only", true)?;
            reader_conns.push(r);
        }
        let blobs = blobs::Blobs::open(opts.path.parent().unwrap_or(Path::new(".")), &opts.key)?;
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let (notices, _) = broadcast::channel(NOTICE_DEPTH);
        let thread = writer::spawn(conn, rx, ctx.clone(), opts.max_batch, notices.clone())
            .map_err(|e| StoreError::Io {
                path: opts.path.clone(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: opts.path,
                key: opts.key,
                ctx,
                queue,
                readers: Semaphore::new(opts.readers),
                reader_conns: Mutex::new(reader_conns),
                notices,
                writer_thread: Mutex::new(Some(thread)),
                blobs,
            }),
        })
    }

    pub fn ctx(&self) -> &Ctx {
        &self.inner.ctx
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The inspection photos beside the store (`blobs.db`, same key).
    pub fn blobs(&self) -> &blobs::Blobs {
        &self.inner.blobs
    }

    /// Run `f` in the writer's transaction. `Ok` means committed and on disk.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T> + Send + 'static,
    {
        self.write_queued(f).await
    }

    /// [`Store::write`] with the job queued for the writer before this returns (while the
    /// writer's queue has room; when it is full, once the returned future is first polled). A
    /// caller that does not wait for a write (it spawns the returned future) still has it
    /// applied before the writes it submits after.
    pub fn write_queued<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T> + Send + 'static,
    {
        let (job, rx) = writer::job(f);
        let waiting = match self.inner.queue.try_send(job) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Full(job)) => Ok(Some((self.inner.queue.clone(), job))),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::Closed),
        };
        async move {
            if let Some((queue, job)) = waiting? {
                queue.send(job).await.map_err(|_| StoreError::Closed)?;
            }
            rx.await.map_err(|_| StoreError::Unavailable)?
        }
    }

    /// Run `f` on a read connection inside one read transaction (a consistent snapshot).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .inner
            .readers
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conn = self
            .inner
            .reader_conns
            .lock()
            .expect("reader pool lock is never held across a panic")
            .pop()
            .expect("a permit guarantees a free connection");
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = read_snapshot(&conn, f);
            (conn, result)
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        self.inner
            .reader_conns
            .lock()
            .expect("reader pool lock is never held across a panic")
            .push(conn);
        result
    }

    /// New events and notices, after their commit.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    /// Tell listeners something that is not a committed event (a scan's outcome). Call it only
    /// after the write the notice describes has committed.
    pub fn announce(&self, notice: Notice) {
        // No listener is fine: nobody is subscribed yet.
        let _ = self.inner.notices.send(notice);
    }

    /// Finish every write already queued, then stop the writer. Later writes get `Closed`.
    pub async fn shutdown(&self) {
        let (job, rx) = writer::stop();
        if self.inner.queue.send(job).await.is_ok() {
            let _ = rx.await;
        }
        let thread = self
            .inner
            .writer_thread
            .lock()
            .expect("not poisoned")
            .take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// An online, encrypted (same key) and consistent copy of the store at `dest`, written to a
    /// temporary file, synced and renamed, so `dest` is either the old file or a whole backup.
    pub async fn backup(&self, dest: PathBuf) -> Result<BackupReport> {
        let (path, key) = (self.inner.path.clone(), self.inner.key.clone());
        tokio::task::spawn_blocking(move || {
            // Its own connection: the readers are query-only, and ATTACH takes the main
            // connection's open flags.
            let conn = open_connection(&path, &key, true)?;
            backup_into(&conn, &key, &dest)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// What `sentra-edge restore` put in place.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub path: PathBuf,
    /// Where the store it replaced was moved (None: there was none).
    pub replaced: Option<PathBuf>,
    pub branch_id: Option<String>,
    pub device_id: Option<String>,
    /// The backup's newest outbox event, and how far the cloud had acknowledged then.
    pub last_seq: i64,
    pub last_ack_seq: i64,
    /// The invoice and credit-note number series the restored store numbers in from now on.
    pub number_series: String,
}

/// A value of the store's `meta` table.
pub(crate) fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Sets a value of the store's `meta` table.
pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )?;
    Ok(())
}

/// The enrolled branch and device of a store, if it is enrolled.
fn enrolled(conn: &Connection) -> Result<Option<(String, String)>> {
    Ok(conn
        .query_row(
            "SELECT branch_id, device_id FROM cloud_identity WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Puts the backup `backup` (made by [`Store::backup`]) in place of the store at `dest`. Blocking;
/// the daemon must be stopped. Refused, with nothing changed, when the key does not open the
/// backup, its schema is newer than this build, or it belongs to another branch than the store
/// it replaces (enrolled), or, when that store is not enrolled or does not open, than `branch`
/// (the configured one). The replaced store is kept beside it as
/// `<name>.replaced-<unix time>`, never deleted. Events made from now on reuse numbers the cloud
/// may already hold from after the backup: the next sync finds that out and renumbers them
/// (`sequence_fork`), so nothing is lost.
pub fn restore(
    backup: &Path,
    dest: &Path,
    key: &StoreKey,
    branch: Option<&str>,
) -> Result<RestoreReport> {
    let io = |path: &Path, e: std::io::Error| StoreError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let conn = open_connection(backup, key, false)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    schema::check_readable(&conn, version, backup)?;
    let theirs = enrolled(&conn)?;
    let (last_seq, last_ack_seq): (i64, i64) = conn.query_row(
        "SELECT (SELECT next_seq - 1 FROM outbox_state WHERE id = 1), (SELECT last_ack_seq FROM sync_state WHERE id = 1)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    drop(conn);
    let foreign = |whose: &str, ours: &str| StoreError::ForeignBackup {
        path: backup.to_owned(),
        whose: whose.to_owned(),
        ours: ours.to_owned(),
    };
    if let Some((whose, _)) = &theirs {
        // The store being replaced knows its branch from the cloud; the configuration's may be
        // the default a flashed box never changed (enrolment names the branch). The store may
        // also be what broke: then only the configuration speaks.
        let current = dest
            .exists()
            .then(|| open_connection(dest, key, false).ok())
            .flatten()
            .and_then(|c| enrolled(&c).ok().flatten());
        match current {
            Some((ours, _)) if &ours != whose => return Err(foreign(whose, &ours)),
            Some(_) => {}
            None => {
                if let Some(ours) = branch.filter(|b| !b.is_empty() && b != whose) {
                    return Err(foreign(whose, ours));
                }
            }
        }
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "edge.db".into());
    let incoming = dir.join(format!("{name}.restoring"));
    std::fs::copy(backup, &incoming).map_err(|e| io(&incoming, e))?;
    // A series of its own: the store it replaces may have issued numbers after the backup.
    let mut random = [0u8; 4];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut random);
    let number_series = crate::domain::billing::number_series(random);
    {
        let conn = open_connection(&incoming, key, false)?;
        set_meta(&conn, billing::NUMBER_SERIES_META, &number_series)?;
        // The MQTT sessions the backup kept are the tablets' of its day, and their messages
        // notices of then: a restored box starts without them (the tablets subscribe again).
        mqtt::forget_all(&conn)?;
        // Into the file itself before it is renamed: a WAL would not follow the rename.
        conn.pragma_update(None, "journal_mode", "DELETE")?;
    }
    std::fs::File::open(&incoming)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&incoming, e))?;
    // A kill at any step leaves a store at `dest` (the old one, or the backup), never none: the
    // old file is linked aside first and replaced by one rename. Its WAL (its last commits) goes
    // aside before that, since SQLite would replay it into the backup.
    let replaced = if dest.exists() {
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let aside = dir.join(format!("{name}.replaced-{stamp}"));
        std::fs::hard_link(dest, &aside).map_err(|e| io(&aside, e))?;
        for suffix in ["-wal", "-shm"] {
            let from = dir.join(format!("{name}{suffix}"));
            if from.exists() {
                let to = dir.join(format!("{name}.replaced-{stamp}{suffix}"));
                std::fs::rename(&from, &to).map_err(|e| io(&from, e))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&incoming, dest).map_err(|e| io(dest, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(RestoreReport {
        path: dest.to_owned(),
        replaced,
        branch_id: theirs.as_ref().map(|(b, _)| b.clone()),
        device_id: theirs.map(|(_, d)| d),
        last_seq,
        last_ack_seq,
        number_series,
    })
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub events: i64,
}

fn read_snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = conn.unchecked_transaction()?;
    let r = f(&tx);
    // A read transaction has nothing to commit; ending it releases the WAL snapshot.
    tx.rollback()?;
    r
}

fn backup_into(conn: &Connection, key: &StoreKey, dest: &Path) -> Result<BackupReport> {
    let io = |e: std::io::Error| StoreError::Io {
        path: dest.to_owned(),
        message: e.to_string(),
    };
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let tmp_str = tmp.to_str().ok_or_else(|| StoreError::Io {
        path: dest.to_owned(),
        message: "path is not UTF-8".into(),
    })?;
    conn.execute(
        "ATTACH DATABASE ?1 AS backup KEY ?2",
        (tmp_str, key.pragma_value()),
    )?;
    // One read transaction: the copy and the figures describe the same snapshot.
    let exported = (|| -> rusqlite::Result<i64> {
        let tx = conn.unchecked_transaction()?;
        let version: i64 = tx.pragma_query_value(Some("main"), "user_version", |r| r.get(0))?;
        let events: i64 = tx.query_row("SELECT count(*) FROM main.sync_event_logs", [], |r| {
            r.get(0)
        })?;
        tx.query_row("SELECT sqlcipher_export('backup')", [], |_| Ok(()))?;
        tx.pragma_update(Some("backup"), "user_version", version)?;
        tx.commit()?;
        Ok(events)
    })();
    conn.execute("DETACH DATABASE backup", [])?;
    let events = exported?;
    let f = std::fs::File::open(&tmp).map_err(io)?;
    f.sync_all().map_err(io)?;
    let bytes = f.metadata().map_err(io)?.len();
    std::fs::rename(&tmp, dest).map_err(io)?;
    if let Some(dir) = dest.parent() {
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) {
            let _ = d.sync_all();
        }
    }
    Ok(BackupReport {
        path: dest.to_owned(),
        bytes,
        events,
    })
}

/// Compiled statements kept per connection (writer and readers alike).
const STATEMENT_CACHE: usize = 64;

/// Open one connection, prove the key right before anything else touches the file, then set the
/// durability pragmas.
fn open_connection(path: &Path, key: &StoreKey, create: bool) -> Result<Connection> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    if !create && !path.exists() {
        return Err(StoreError::Io {
            path: path.to_owned(),
            message: "no such file".into(),
        });
    }
    let existed = path.exists();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.pragma_update(None, "key", key.pragma_value())
        .map_err(open_err)?;
    // The first read of the schema decrypts page 1: a wrong key fails here, before any write.
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase && existed =>
        {
            return Err(StoreError::WrongKey {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(open_err(e)),
    }
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open_err)?;
    // rusqlite keeps 16 compiled statements by default; the writer alone uses more than that
    // across a working day, and one recompiled per write is CPU the one-tablet case pays.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Current time, formatted as stored: RFC 3339 UTC with milliseconds.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).expect("a UTC time always formats")
}

pub fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("time {s:?}: {e}")))
}

/// A new identifier: UUID v7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Decode a JSON column.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("our row types always serialise")
}

/// Map "no row" to a domain not-found.
pub(crate) trait OptionalRow<T> {
    fn or_not_found(self, entity: &'static str, id: &str) -> Result<T>;
}

impl<T> OptionalRow<T> for rusqlite::Result<T> {
    fn or_not_found(self, entity: &'static str, id: &str) -> Result<T> {
        match self {
            Ok(v) => Ok(v),
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                Err(DomainError::not_found(entity, id).into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
