//! Inspection photos on the box (issue 8): content-addressed blobs in `blobs.db`, a second
//! SQLCipher file beside the store, encrypted with the same key.
//!
//! Why a second file and not the store itself: a photo is megabytes, and writing it through the
//! store's writer thread would hold every other write of the branch behind it; the store's
//! backup would carry every photo; and giving the space of evicted photos back to the filesystem
//! needs `auto_vacuum = INCREMENTAL`, which an existing store cannot switch to without a full
//! `VACUUM`. The invariants are the store's own: one writer connection (behind a mutex, used on
//! blocking threads only), WAL with `synchronous = FULL` so a photo acknowledged is on disk, the
//! same wrong-key refusal, and never a plaintext photo file.
//!
//! A photo is kept as numbered chunks of `part_bytes` (chunk `n` is upload part `n`), so the
//! uploader reads one part at a time and memory stays one part whatever the photo's size.
//!
//! Arriving photos are streamed, not held: [`Blobs::stage`] hands out a [`Staging`] that writes
//! each full part to `blob_staged` as the body arrives (memory: one part), and
//! [`Staging::finish`] moves the parts to `blob_chunks` in one transaction once the caller saw
//! the digest match. A staging dropped unfinished (bad digest, cut body) deletes its parts;
//! parts left by a crash are deleted when the file is opened. How much is staged at once is
//! bounded by the API's cap on concurrent uploads times the photo size limit.
//!
//! Photos no inspection references (a tablet that sent a photo and never the inspection) are
//! deleted after `blobs.unreferenced_photo_hours` ([`Blobs::older_than`], [`Blobs::expire`]), so
//! they cannot pile up: they are never uploaded, hence never evictable.
//!
//! Eviction: past `max_bytes` (or when the filesystem has less than `min_free_bytes` free) the
//! photos the cloud has (`uploaded_at` set) are deleted oldest first; a photo not yet uploaded is
//! never evicted. When un-uploaded photos alone fill the budget, a new photo is refused with
//! [`BlobError::Full`] (the API's `507 storage_full`).
//!
//! Which photos may be uploaded is the main store's business (`blob_refs`, see
//! `store::inspections`): a photo goes up only after the event that references it was
//! acknowledged by the cloud.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;

use super::{StoreError, StoreKey, format_time};

/// The file beside `sentra.db`.
pub const FILE_NAME: &str = "blobs.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL CHECK (size >= 0),
    part_bytes  INTEGER NOT NULL CHECK (part_bytes > 0),
    created_at  TEXT NOT NULL,
    uploaded_at TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS blobs_pending ON blobs (created_at) WHERE uploaded_at IS NULL;
CREATE INDEX IF NOT EXISTS blobs_evictable ON blobs (uploaded_at) WHERE uploaded_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS blob_chunks (
    digest TEXT NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
    n      INTEGER NOT NULL CHECK (n >= 0),
    data   BLOB NOT NULL,
    PRIMARY KEY (digest, n)
) STRICT;
CREATE TABLE IF NOT EXISTS blob_staged (
    upload INTEGER NOT NULL,
    n      INTEGER NOT NULL CHECK (n >= 0),
    data   BLOB NOT NULL,
    PRIMARY KEY (upload, n)
) STRICT;
";

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Storage is full of photos the cloud does not have yet, or the disk is nearly full.
    #[error("{0}")]
    Full(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for BlobError {
    fn from(e: rusqlite::Error) -> Self {
        BlobError::Store(e.into())
    }
}

/// What the box holds of one photo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BlobMeta {
    pub digest: String,
    pub size: u64,
    /// `stored` (on the box only) or `uploaded` (the cloud has it; it may be evicted here).
    pub state: String,
    pub created_at: String,
    pub uploaded_at: Option<String>,
}

/// Counts for status, doctor and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BlobStats {
    pub count: u64,
    pub bytes: u64,
    /// Photos the cloud does not have yet.
    pub pending_count: u64,
    pub pending_bytes: u64,
}

/// The limits a new photo is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    pub part_bytes: usize,
}

/// Whether a put stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Existed,
}

/// The handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Blobs {
    inner: Arc<BlobsInner>,
}

#[derive(Debug)]
struct BlobsInner {
    path: PathBuf,
    /// The only connection that writes `blobs.db`.
    writer: Mutex<Connection>,
    /// Reads (GET, the uploader's parts) do not wait behind a photo being written.
    reader: Mutex<Connection>,
    /// Numbers the stagings of this process (`blob_staged.upload`).
    next_upload: AtomicU64,
}

impl Blobs {
    /// Open (creating) `blobs.db` in `dir` with the store's key. Blocking.
    pub(super) fn open(dir: &Path, key: &StoreKey) -> Result<Blobs, StoreError> {
        let path = dir.join(FILE_NAME);
        let writer = super::open_connection(&path, key, true)?;
        let mode: i64 = writer.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
        if mode != 2 {
            // Freed pages go back to the filesystem only in INCREMENTAL mode. Opening already
            // wrote the header (WAL), so the mode takes effect through a VACUUM: instant on the
            // new, empty file, once.
            writer.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            writer.execute_batch("VACUUM")?;
        }
        writer.execute_batch(SCHEMA)?;
        // Parts of photos whose upload a crash or power cut interrupted: never acknowledged.
        if writer.execute("DELETE FROM blob_staged", [])? > 0 {
            writer.execute_batch("PRAGMA incremental_vacuum")?;
        }
        let reader = super::open_connection(&path, key, false)?;
        reader.pragma_update(None, "query_only", true)?;
        Ok(Blobs {
            inner: Arc::new(BlobsInner {
                path,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                next_upload: AtomicU64::new(0),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .expect("the blob writer lock is never held across a panic");
            f(&mut conn, &inner.path)
        })
        .await
        .map_err(|_| BlobError::Store(StoreError::Closed))?
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .reader
                .lock()
                .expect("the blob reader lock is never held across a panic");
            f(&conn)
        })
        .await
        .map_err(|_| BlobError::Store(StoreError::Closed))?
    }

    /// Keep `data` as `digest` (the caller checked the digest): [`Blobs::stage`] and
    /// [`Staging::finish`] in one call, for photos already in memory.
    pub async fn put(
        &self,
        digest: String,
        data: Vec<u8>,
        limits: Limits,
    ) -> Result<Put, BlobError> {
        let mut staging = self.stage(limits.part_bytes);
        staging.write(&data).await?;
        staging.finish(digest, limits).await
    }

    /// Start receiving a photo in parts of `part_bytes`.
    pub fn stage(&self, part_bytes: usize) -> Staging {
        Staging {
            blobs: self.clone(),
            upload: self.inner.next_upload.fetch_add(1, Ordering::Relaxed) as i64,
            part_bytes: part_bytes.max(1),
            buf: Vec::new(),
            parts: 0,
            size: 0,
            done: false,
        }
    }

    pub async fn meta(&self, digest: String) -> Result<Option<BlobMeta>, BlobError> {
        self.with_reader(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT digest, size, created_at, uploaded_at FROM blobs WHERE digest = ?1",
                    [&digest],
                    |r| {
                        let uploaded_at: Option<String> = r.get(3)?;
                        Ok(BlobMeta {
                            digest: r.get(0)?,
                            size: r.get::<_, i64>(1)? as u64,
                            state: if uploaded_at.is_some() {
                                "uploaded"
                            } else {
                                "stored"
                            }
                            .to_owned(),
                            created_at: r.get(2)?,
                            uploaded_at,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// The whole photo (bounded by the API's photo size limit).
    pub async fn read(&self, digest: String) -> Result<Option<Vec<u8>>, BlobError> {
        self.with_reader(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT data FROM blob_chunks WHERE digest = ?1 ORDER BY n")?;
            let chunks = stmt
                .query_map([&digest], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if chunks.is_empty() {
                return Ok(None);
            }
            Ok(Some(chunks.concat()))
        })
        .await
    }

    /// The sizes of the photo's parts, in order.
    pub async fn parts(&self, digest: String) -> Result<Vec<u64>, BlobError> {
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT length(data) FROM blob_chunks WHERE digest = ?1 ORDER BY n",
            )?;
            Ok(stmt
                .query_map([&digest], |r| r.get::<_, i64>(0).map(|n| n as u64))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Part `n` of the photo.
    pub async fn part(&self, digest: String, n: u32) -> Result<Option<Vec<u8>>, BlobError> {
        self.with_reader(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT data FROM blob_chunks WHERE digest = ?1 AND n = ?2",
                    rusqlite::params![digest, n],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// Photos the cloud does not have yet, oldest first: `(digest, size)`.
    pub async fn pending(&self) -> Result<Vec<(String, u64)>, BlobError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT digest, size FROM blobs WHERE uploaded_at IS NULL ORDER BY created_at, digest",
            )?;
            Ok(stmt
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// The cloud has verified and kept the photo; evict past `max_bytes` now that it may go.
    pub async fn mark_uploaded(&self, digest: String, max_bytes: u64) -> Result<(), BlobError> {
        self.with_writer(move |conn, _| {
            conn.execute(
                "UPDATE blobs SET uploaded_at = ?2 WHERE digest = ?1 AND uploaded_at IS NULL",
                rusqlite::params![digest, format_time(time::OffsetDateTime::now_utc())],
            )?;
            let total = totals(conn)?.bytes;
            if total > max_bytes {
                evict(conn, total - max_bytes)?;
            }
            Ok(())
        })
        .await
    }

    /// Photos the cloud does not have that arrived at least `older_than` ago: the ones
    /// [`Blobs::expire`] may delete if no inspection references them.
    pub async fn older_than(&self, age: std::time::Duration) -> Result<Vec<String>, BlobError> {
        let Some(cutoff) = time::Duration::try_from(age)
            .ok()
            .and_then(|age| time::OffsetDateTime::now_utc().checked_sub(age))
        else {
            return Ok(Vec::new());
        };
        let cutoff = format_time(cutoff);
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT digest FROM blobs WHERE uploaded_at IS NULL AND created_at <= ?1",
            )?;
            Ok(stmt
                .query_map([&cutoff], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Delete these photos unless the cloud has them meanwhile; returns how many went. The
    /// caller checked that no inspection references them.
    pub async fn expire(&self, digests: Vec<String>) -> Result<u64, BlobError> {
        if digests.is_empty() {
            return Ok(0);
        }
        self.with_writer(move |conn, _| {
            let tx = conn.transaction()?;
            let mut deleted = 0u64;
            for digest in &digests {
                deleted += tx.execute(
                    "DELETE FROM blobs WHERE digest = ?1 AND uploaded_at IS NULL",
                    [digest],
                )? as u64;
            }
            tx.commit()?;
            if deleted > 0 {
                conn.execute_batch("PRAGMA incremental_vacuum")?;
            }
            Ok(deleted)
        })
        .await
    }

    /// Parts of photos being received (or left by a cut upload not cleaned up yet).
    pub async fn staged(&self) -> Result<u64, BlobError> {
        self.with_reader(|conn| {
            Ok(conn.query_row("SELECT count(*) FROM blob_staged", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
        })
        .await
    }

    pub async fn stats(&self) -> Result<BlobStats, BlobError> {
        self.with_reader(totals).await
    }
}

/// A photo being received: full parts go to `blob_staged` as they arrive. Dropped unfinished,
/// its parts are deleted.
#[derive(Debug)]
pub struct Staging {
    blobs: Blobs,
    upload: i64,
    part_bytes: usize,
    buf: Vec<u8>,
    parts: i64,
    size: u64,
    done: bool,
}

impl Staging {
    /// The bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Take the next bytes of the photo; every full part is written to disk before this returns.
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), BlobError> {
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = self.part_bytes - self.buf.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buf.extend_from_slice(now);
            bytes = rest;
            if self.buf.len() == self.part_bytes {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Write the buffered bytes as the next part.
    async fn flush(&mut self) -> Result<(), BlobError> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.part_bytes));
        let (upload, n) = (self.upload, self.parts);
        self.blobs
            .with_writer(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO blob_staged (upload, n, data) VALUES (?1, ?2, ?3)",
                )?
                .execute(rusqlite::params![upload, n, data])?;
                Ok(())
            })
            .await?;
        self.parts += 1;
        Ok(())
    }

    /// Keep the received photo as `digest` (the caller checked the digest). Idempotent: a photo
    /// already here is left as it is. Makes room by evicting uploaded photos; refuses with
    /// [`BlobError::Full`] when only un-uploaded photos are left to evict. On disk on return.
    pub async fn finish(mut self, digest: String, limits: Limits) -> Result<Put, BlobError> {
        // An empty photo is one empty part, so every photo has part 0.
        if !self.buf.is_empty() || self.parts == 0 {
            self.flush().await?;
        }
        let (upload, size) = (self.upload, self.size);
        let put = self
            .blobs
            .with_writer(move |conn, path| {
                if exists(conn, &digest)? {
                    conn.execute("DELETE FROM blob_staged WHERE upload = ?1", [upload])?;
                    return Ok(Put::Existed);
                }
                make_room(conn, path, size, limits)?;
                let tx = conn.transaction()?;
                tx.execute(
                    "INSERT INTO blobs (digest, size, part_bytes, created_at) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![
                        digest,
                        size as i64,
                        limits.part_bytes as i64,
                        format_time(time::OffsetDateTime::now_utc())
                    ],
                )?;
                tx.execute(
                    "INSERT INTO blob_chunks (digest, n, data)
                     SELECT ?1, n, data FROM blob_staged WHERE upload = ?2 ORDER BY n",
                    rusqlite::params![digest, upload],
                )?;
                tx.execute("DELETE FROM blob_staged WHERE upload = ?1", [upload])?;
                tx.commit()?;
                Ok(Put::Created)
            })
            .await;
        // Finished or refused: either way its staged parts are gone or go with the Drop below.
        self.done = put.is_ok();
        put
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.done || self.parts == 0 {
            return;
        }
        let (inner, upload) = (self.blobs.inner.clone(), self.upload);
        let forget = move || {
            let conn = inner
                .writer
                .lock()
                .expect("the blob writer lock is never held across a panic");
            if let Err(error) = conn.execute("DELETE FROM blob_staged WHERE upload = ?1", [upload])
            {
                // Deleted at the next start at the latest.
                tracing::warn!(%error, "could not delete an unfinished photo's parts");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(forget)),
            Err(_) => forget(),
        }
    }
}

/// Counts from the `blobs` table (a branch holds hundreds to thousands of photos: a scan of
/// the small metadata table, never of the chunks).
pub fn totals(conn: &Connection) -> Result<BlobStats, BlobError> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(size), 0),
                count(*) FILTER (WHERE uploaded_at IS NULL),
                coalesce(sum(size) FILTER (WHERE uploaded_at IS NULL), 0)
         FROM blobs",
        [],
        |r| {
            Ok(BlobStats {
                count: r.get::<_, i64>(0)? as u64,
                bytes: r.get::<_, i64>(1)? as u64,
                pending_count: r.get::<_, i64>(2)? as u64,
                pending_bytes: r.get::<_, i64>(3)? as u64,
            })
        },
    )?)
}

fn exists(conn: &Connection, digest: &str) -> Result<bool, BlobError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM blobs WHERE digest = ?1",
            [digest],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Delete uploaded photos, oldest upload first, until `need` bytes were freed or none is left;
/// give the pages back to the filesystem. Returns the bytes freed.
fn evict(conn: &mut Connection, need: u64) -> Result<u64, BlobError> {
    let victims: Vec<(String, u64)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT digest, size FROM blobs WHERE uploaded_at IS NOT NULL ORDER BY uploaded_at, digest",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut freed = 0;
    let tx = conn.transaction()?;
    let mut evicted = 0u64;
    for (digest, size) in victims {
        if freed >= need {
            break;
        }
        tx.execute("DELETE FROM blob_chunks WHERE digest = ?1", [&digest])?;
        tx.execute("DELETE FROM blobs WHERE digest = ?1", [&digest])?;
        freed += size;
        evicted += 1;
    }
    tx.commit()?;
    if evicted > 0 {
        conn.execute_batch("PRAGMA incremental_vacuum")?;
        crate::metrics::blobs_evicted(evicted);
        tracing::info!(evicted, freed, "evicted uploaded photos");
    }
    Ok(freed)
}

/// Free space on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let st = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Room for `size` more bytes within `max_bytes` and above `min_free_bytes`, by evicting
/// uploaded photos; [`BlobError::Full`] when that is not enough.
fn make_room(
    conn: &mut Connection,
    path: &Path,
    size: u64,
    limits: Limits,
) -> Result<(), BlobError> {
    let stats = totals(conn)?;
    let over = (stats.bytes + size).saturating_sub(limits.max_bytes);
    if over > 0 {
        evict(conn, over)?;
        let stats = totals(conn)?;
        if stats.bytes + size > limits.max_bytes {
            return Err(BlobError::Full(format!(
                "photo storage is full: {} photo(s), {} MB, are waiting to reach the cloud and the limit is {} MB; connect the box to the internet and try again once they are uploaded",
                stats.pending_count,
                stats.pending_bytes / 1_000_000,
                limits.max_bytes / 1_000_000
            )));
        }
    }
    let free = free_bytes(path).map_err(|e| StoreError::Io {
        path: path.to_owned(),
        message: format!("cannot read free disk space: {e}"),
    })?;
    if free < limits.min_free_bytes.saturating_add(size) {
        // Uploaded photos are the only thing this module may give back.
        let want = limits.min_free_bytes.saturating_add(size) - free;
        evict(conn, want)?;
        let free = free_bytes(path).map_err(|e| StoreError::Io {
            path: path.to_owned(),
            message: format!("cannot read free disk space: {e}"),
        })?;
        if free < limits.min_free_bytes.saturating_add(size) {
            return Err(BlobError::Full(format!(
                "the appliance's disk is nearly full ({} MB free, {} MB kept in reserve); the photo was not stored: tell the branch's technician",
                free / 1_000_000,
                limits.min_free_bytes / 1_000_000
            )));
        }
    }
    Ok(())
}
