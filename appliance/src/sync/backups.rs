//! The backup uploader: takes the newest backup `sentra-edge backup` recorded
//! (`backup-state.json`, with the file's SHA-256) to the cloud's object store, after the photos
//! of the same round, through the same signed and resumable protocol: `POST /v1/backups` tells
//! the cloud what is coming, then `/v1/blobs/{sha256}/uploads` takes the parts it lacks and
//! verifies the whole. Only then is it recorded here (`backup-upload.json`), which `doctor`
//! shows. The file stays encrypted with the store key: the cloud never holds the key.
//!
//! A backup the timer replaced before its upload finished is not uploaded: the newer one is.
//! One the cloud refuses for good (too large, or its bytes no longer match its digest) is skipped
//! until a newer backup is made, with a warning; a broken link ends the round like a photo's.

use std::path::Path;

use sentra_protocol::backup::{BackupRecord, MAX_BACKUP_BYTES};

use super::client::{CloudClient, SyncError, UploadState};
use crate::backup::{self, Uploaded};

/// Uploads the newest recorded backup if the cloud does not hold it yet. `skipped` is the digest
/// given up on (kept by the caller between rounds), so a refused backup is not sent again and
/// again. A file problem or a refusal is logged and skips the backup; only a transient error
/// (the link, the cloud's load) is returned.
pub async fn round(
    client: &CloudClient,
    data_dir: &Path,
    part_bytes: usize,
    skipped: &mut Option<String>,
) -> Result<(), SyncError> {
    let Some(last) = backup::last(data_dir) else {
        return Ok(());
    };
    let Some(sha256) = last.sha256.clone() else {
        return Ok(());
    };
    if skipped.as_deref() == Some(sha256.as_str())
        || backup::uploaded(data_dir).is_some_and(|up| up.sha256 == sha256)
    {
        return Ok(());
    }
    let give_up = |skipped: &mut Option<String>, why: String| {
        tracing::warn!(backup = %last.path.display(), %why, "backup not uploaded to the cloud");
        *skipped = Some(sha256.clone());
        Ok(())
    };
    if last.bytes > MAX_BACKUP_BYTES {
        return give_up(
            skipped,
            format!(
                "{} bytes, over the cloud's {MAX_BACKUP_BYTES}; it stays on the box only",
                last.bytes
            ),
        );
    }
    let record = BackupRecord {
        sha256: sha256.clone(),
        size: last.bytes,
        taken_at: last.at.clone(),
        events: last.events,
    };
    match upload(client, &record, &last.path, part_bytes).await {
        Ok(()) => {}
        Err(Failure::Sync(e)) if e.is_transient() => return Err(e),
        Err(Failure::Sync(e)) => return give_up(skipped, e.to_string()),
        Err(Failure::File(why)) => return give_up(skipped, why),
    }
    let uploaded = Uploaded {
        sha256,
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
    Ok(())
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
