//! The backup uploader: takes the backups `sentra-edge backup` recorded
//! (`backup-state.json`, with the file's SHA-256) to the cloud's object store, after the photos
//! of the same round, through the same signed and resumable protocol: `POST /v1/backups` tells
//! the cloud what is coming, then `/v1/blobs/{sha256}/uploads` takes the parts it lacks and
//! verifies the whole. Only then is it recorded here (`backup-upload.json`), which `doctor`
//! shows. The file stays encrypted with the store key: the cloud never holds the key.
//!
//! Every recorded backup newer than the cloud's newest goes up, oldest first (`backup-state.json`
//! remembers the ones before the last while their files are on disk); one pruned before its
//! upload finished is not uploaded. One the cloud refuses for good (too large, or its bytes no
//! longer match its digest) is skipped with a warning while the daemon runs; a broken link ends
//! the round like a photo's, and the next round goes on from the oldest not yet in the cloud.

use std::collections::HashSet;
use std::path::Path;

use sentra_protocol::backup::{BackupRecord, MAX_BACKUP_BYTES};

use super::client::{CloudClient, SyncError, UploadState};
use crate::backup::{self, Uploaded};

/// Uploads, oldest first, each recorded backup taken after the newest one the cloud holds
/// ([`backup::to_upload`]): a box that was offline for nights sends each night's. `skipped`
/// holds the digests given up on (kept by the caller between rounds, bounded by what the state
/// still names), so a refused backup is not sent again and again. A file problem or a refusal is
/// logged and skips that backup; only a transient error (the link, the cloud's load) is
/// returned, leaving the rest for the next round.
pub async fn round(
    client: &CloudClient,
    data_dir: &Path,
    part_bytes: usize,
    skipped: &mut HashSet<String>,
) -> Result<(), SyncError> {
    let Some(state) = backup::last(data_dir) else {
        return Ok(());
    };
    skipped.retain(|sha| {
        state
            .earlier
            .iter()
            .chain([&state])
            .any(|b| b.sha256.as_ref() == Some(sha))
    });
    for last in backup::to_upload(&state, backup::uploaded(data_dir).as_ref(), skipped) {
        let Some(sha256) = last.sha256.clone() else {
            continue;
        };
        if let Err(why) = one(client, data_dir, part_bytes, &last, &sha256).await? {
            tracing::warn!(backup = %last.path.display(), %why, "backup not uploaded to the cloud");
            skipped.insert(sha256);
        }
    }
    Ok(())
}

/// Uploads one backup and records it: `Ok(Err(why))` when it is given up on.
async fn one(
    client: &CloudClient,
    data_dir: &Path,
    part_bytes: usize,
    last: &backup::LastBackup,
    sha256: &str,
) -> Result<Result<(), String>, SyncError> {
    if last.bytes > MAX_BACKUP_BYTES {
        return Ok(Err(format!(
            "{} bytes, over the cloud's {MAX_BACKUP_BYTES}; it stays on the box only",
            last.bytes
        )));
    }
    let record = BackupRecord {
        sha256: sha256.to_owned(),
        size: last.bytes,
        taken_at: last.at.clone(),
        events: last.events,
    };
    match upload(client, &record, &last.path, part_bytes).await {
        Ok(()) => {}
        Err(Failure::Sync(e)) if e.is_transient() => return Err(e),
        Err(Failure::Sync(e)) => return Ok(Err(e.to_string())),
        Err(Failure::File(why)) => return Ok(Err(why)),
    }
    let uploaded = Uploaded {
        sha256: sha256.to_owned(),
        taken_at: last.at.clone(),
        at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        bytes: last.bytes,
    };
    if let Err(error) = backup::record_upload(data_dir, &uploaded) {
        // The cloud has it; the next round asks again and is told it is stored.
        tracing::warn!(%error, "backup uploaded, but {} not written", backup::UPLOAD_FILE);
    } else {
        tracing::info!(backup = %last.path.display(), bytes = last.bytes, "backup uploaded to the cloud");
    }
    Ok(Ok(()))
}

enum Failure {
    Sync(SyncError),
    /// The backup file is gone, shorter than recorded, or unreadable.
    File(String),
}

impl From<SyncError> for Failure {
    fn from(e: SyncError) -> Self {
        Failure::Sync(e)
    }
}

/// Record, then start or resume, send the parts the cloud lacks (read from the file one at a
/// time), complete.
async fn upload(
    client: &CloudClient,
    record: &BackupRecord,
    path: &Path,
    part_bytes: usize,
) -> Result<(), Failure> {
    client.record_backup(record).await?;
    let (upload_id, have) = match client.blob_start(&record.sha256, record.size).await? {
        UploadState::Stored { .. } => return Ok(()),
        UploadState::Uploading { upload_id, parts } => (upload_id, parts),
    };
    let part = part_bytes.max(1) as u64;
    let count = record.size.div_ceil(part).max(1);
    for n in 0..count {
        let offset = n * part;
        let len = part.min(record.size - offset);
        let n = u32::try_from(n).map_err(|_| Failure::File("too many parts".into()))?;
        if have.iter().any(|p| p.n == n && p.size == len) {
            continue;
        }
        let file = path.to_owned();
        let data = tokio::task::spawn_blocking(move || read_at(&file, offset, len))
            .await
            .map_err(|e| Failure::File(e.to_string()))?
            .map_err(|e| Failure::File(format!("{}: {e}", path.display())))?;
        client
            .blob_part(&record.sha256, &upload_id, n, data)
            .await?;
    }
    client.blob_complete(&record.sha256, &upload_id).await?;
    Ok(())
}

/// `len` bytes of the file at `offset` (an error if it is shorter: it changed since the backup).
fn read_at(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut data = vec![0; usize::try_from(len).map_err(std::io::Error::other)?];
    file.read_exact(&mut data)?;
    Ok(data)
}
