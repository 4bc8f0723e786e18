//! The photo uploader: takes the photos in `blobs.db` to the cloud's object store, resumably,
//! through the sync daemon's signed client.
//!
//! Order: a photo goes up only once the cloud has acknowledged an outbox event that references
//! it (`blob_refs`, written with the inspection), so the cloud always knows the inspection before
//! its photos and can refuse photos nobody references. A photo no inspection references yet
//! waits on the box (no grace period: it is uploaded when an inspection names it).
//!
//! Resumption: the cloud keeps the parts it received (`POST .../uploads` lists them), so after a
//! dropped link or a restart of either side only the missing parts are sent. The cloud checks
//! size and SHA-256 of the whole at `complete`; only then is the photo marked uploaded here, and
//! only then may eviction delete it.
//!
//! It runs beside the sync loop, not inside it, so a large photo over a slow link never holds
//! back the outbox; it wakes when a photo arrives, when a sync round acknowledged events, and
//! every [`IDLE`] in case it missed both.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::SyncHandle;
use super::client::{self, CloudClient, SyncError, UploadState};
use crate::backoff::Backoff;
use crate::config::{BlobsConfig, SyncConfig};
use crate::store::Store;
use crate::store::blobs::BlobError;

/// Look again this often with nothing to wake us.
const IDLE: Duration = Duration::from_secs(30);

/// Look for photos no inspection references this often.
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);

impl From<BlobError> for SyncError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Store(e) => SyncError::Store(e),
            BlobError::Full(message) => SyncError::Store(crate::store::StoreError::Commit(message)),
        }
    }
}

/// Run until `cancel`.
/// `backups`: the data directory whose backups go up after the photos of each round
/// (`sync::backups`), when `blobs.upload_backups` is on.
pub async fn run(
    store: Store,
    sync: SyncConfig,
    cfg: BlobsConfig,
    backups: Option<std::path::PathBuf>,
    handle: SyncHandle,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut skipped_backup = std::collections::HashSet::new();
    let mut backoff = Backoff::new(
        client::FIRST_RETRY,
        Duration::from_millis(sync.retry_max_ms),
    );
    let mut expired_at: Option<std::time::Instant> = None;
    loop {
        if expired_at.is_none_or(|at| at.elapsed() >= EXPIRE_EVERY) {
            expired_at = Some(std::time::Instant::now());
            if let Err(error) = expire(&store, &cfg).await {
                tracing::warn!(%error, "could not delete photos no inspection references");
            }
        }
        if let Ok(stats) = store.blobs().stats().await {
            crate::metrics::blobs(&stats);
        }
        let wait = match handle.client() {
            None => IDLE,
            Some((client, _)) => match upload_round(
                &store,
                &client,
                &cfg,
                backups.as_deref(),
                &mut skipped_backup,
                &cancel,
            )
            .await
            {
                Ok(()) => {
                    backoff.reset();
                    IDLE
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "photo upload interrupted; retrying");
                    backoff.next_wait()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "photo upload failed");
                    IDLE
                }
            },
        };
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
            _ = handle.uploader.notified() => {}
        }
    }
}

/// The photos, then (with `backups`, their data directory) the backups the cloud lacks.
async fn upload_round(
    store: &Store,
    client: &CloudClient,
    cfg: &BlobsConfig,
    backups: Option<&std::path::Path>,
    skipped_backup: &mut std::collections::HashSet<String>,
    cancel: &CancellationToken,
) -> Result<(), SyncError> {
    round(store, client, cfg, cancel).await?;
    match backups {
        Some(dir) if !cancel.is_cancelled() => {
            super::backups::round(client, dir, cfg.part_bytes, skipped_backup).await
        }
        _ => Ok(()),
    }
}

/// Delete the photos no inspection referenced within `blobs.unreferenced_photo_hours`. An
/// inspection naming one of them in the moment between the check and the delete would lose
/// its photo: after hours of nobody naming it, a window of a millisecond.
pub async fn expire(store: &Store, cfg: &BlobsConfig) -> Result<u64, SyncError> {
    let age = Duration::from_secs(cfg.unreferenced_photo_hours.saturating_mul(3600));
    let mut orphans = Vec::new();
    for digest in store.blobs().older_than(age).await? {
        let d = digest.clone();
        if !store
            .read(move |c| crate::store::inspections::photo_referenced(c, &d))
            .await?
        {
            orphans.push(digest);
        }
    }
    let deleted = store.blobs().expire(orphans).await?;
    if deleted > 0 {
        crate::metrics::blobs_expired(deleted);
        tracing::info!(deleted, "deleted photos no inspection references");
    }
    Ok(deleted)
}

/// Upload every photo that may go, oldest first. A refusal of one photo (the cloud does not
/// know the inspection yet, or its bytes did not verify) skips it until the next round; a
/// broken link ends the round.
async fn round(
    store: &Store,
    client: &CloudClient,
    cfg: &BlobsConfig,
    cancel: &CancellationToken,
) -> Result<(), SyncError> {
    let pending = store.blobs().pending().await?;
    for (digest, size) in pending {
        if cancel.is_cancelled() {
            break;
        }
        let d = digest.clone();
        let acknowledged = store
            .read(move |c| crate::store::inspections::photo_acknowledged(c, &d))
            .await?;
        if !acknowledged {
            continue;
        }
        match upload(store, client, &digest, size).await {
            Ok(()) => {
                store
                    .blobs()
                    .mark_uploaded(digest.clone(), cfg.max_bytes)
                    .await?;
                crate::metrics::blob_uploaded();
                tracing::info!(%digest, size, "photo uploaded");
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(%digest, error = %e, "the cloud refused a photo; trying again later");
            }
        }
    }
    if let Ok(stats) = store.blobs().stats().await {
        crate::metrics::blobs(&stats);
    }
    Ok(())
}

/// One photo: start or resume, send the parts the cloud lacks, complete.
async fn upload(
    store: &Store,
    client: &CloudClient,
    digest: &str,
    size: u64,
) -> Result<(), SyncError> {
    let (upload_id, have) = match client.blob_start(digest, size).await? {
        UploadState::Stored { .. } => return Ok(()),
        UploadState::Uploading { upload_id, parts } => (upload_id, parts),
    };
    let sizes = store.blobs().parts(digest.to_owned()).await?;
    for (n, len) in sizes.iter().enumerate() {
        let n = u32::try_from(n).expect("a photo has far fewer than 2^32 parts");
        if have.iter().any(|p| p.n == n && p.size == *len) {
            continue;
        }
        let data = store
            .blobs()
            .part(digest.to_owned(), n)
            .await?
            .ok_or_else(|| {
                SyncError::Store(crate::store::StoreError::Corrupt(format!(
                    "photo {digest}: part {n} is missing"
                )))
            })?;
        let sent = data.len() as u64;
        client.blob_part(digest, &upload_id, n, data).await?;
        crate::metrics::blob_part_sent(sent);
    }
    client.blob_complete(digest, &upload_id).await
}
