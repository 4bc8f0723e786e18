//! A box's backups in the cloud: after `sentra-edge backup` has written a backup (encrypted with
//! the store key, which never leaves the box), the daemon tells the cloud about it
//! (`POST /v1/backups` with a [`BackupRecord`]) and then uploads its bytes through the photo
//! upload protocol (`/v1/blobs/{sha256}/uploads`, resumable, verified by size and SHA-256 at the
//! end). The record comes first so the cloud accepts only bytes it was told of, at the size
//! declared, from the device that declared them. The cloud keeps a device's newest
//! [`KEPT_PER_DEVICE`] and deletes older ones. Pure: [`BackupRecord::check`] is both sides' check.

use serde::{Deserialize, Serialize};

/// Largest backup the cloud takes (the photo store's bound per object). A larger store is backed
/// up on the box as always and not uploaded; `doctor` says so.
pub const MAX_BACKUP_BYTES: u64 = 256 * 1024 * 1024;
/// Backups the cloud keeps a device, newest by `taken_at`.
pub const KEPT_PER_DEVICE: usize = 7;
/// Earliest `taken_at` accepted (before any box existed): 2020-01-01T00:00:00Z, in ms.
pub const EARLIEST_MS: i64 = 1_577_836_800_000;
/// How far ahead of the cloud's clock a box's `taken_at` may be (a box's clock runs ahead).
pub const MAX_AHEAD_MS: i64 = 24 * 3600 * 1000;

/// `POST /v1/backups`: one backup the box is about to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRecord {
    /// SHA-256 of the backup file, lowercase hex.
    pub sha256: String,
    /// Bytes of the file, 1 to [`MAX_BACKUP_BYTES`].
    pub size: u64,
    /// When it was taken, RFC 3339.
    pub taken_at: String,
    /// Outbox events in it (what `sentra-edge backup` printed).
    pub events: i64,
}

impl BackupRecord {
    /// `Ok(taken_at in ms)` if the record is one a box could have made by `now_ms`; `Err` says
    /// what is wrong, for a `422`.
    pub fn check(&self, now_ms: i64) -> Result<i64, String> {
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("sha256: 64 lowercase hex characters".into());
        }
        if self.size == 0 || self.size > MAX_BACKUP_BYTES {
            return Err(format!(
                "size {}: a backup is 1 to {MAX_BACKUP_BYTES} bytes",
                self.size
            ));
        }
        if self.events < 0 {
            return Err(format!("events {}: at least 0", self.events));
        }
        let at = time::OffsetDateTime::parse(
            &self.taken_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| {
            format!(
                "taken_at {:?}: expected an RFC 3339 time like 2026-12-06T02:30:00Z",
                self.taken_at.chars().take(40).collect::<String>()
            )
        })?;
        let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        if ms < EARLIEST_MS || ms > now_ms.saturating_add(MAX_AHEAD_MS) {
            return Err(format!(
                "taken_at {}: not a time this backup can have been taken (before 2020, or more than a day ahead of the cloud's clock)",
                self.taken_at
            ));
        }
        Ok(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> BackupRecord {
        BackupRecord {
            sha256: "ab".repeat(32),
            size: 4096,
            taken_at: "2026-12-06T02:30:00Z".into(),
            events: 12,
        }
    }

    #[test]
    fn a_box_s_record_passes_and_every_field_is_bounded() {
        let now = 1_796_550_000_000;
        assert_eq!(record().check(now), Ok(1_796_524_200_000));
        let bad = [
            BackupRecord {
                sha256: "AB".repeat(32),
                ..record()
            },
            BackupRecord {
                sha256: "ab".repeat(31),
                ..record()
            },
            BackupRecord {
                size: 0,
                ..record()
            },
            BackupRecord {
                size: MAX_BACKUP_BYTES + 1,
                ..record()
            },
            BackupRecord {
                events: -1,
                ..record()
            },
            BackupRecord {
                taken_at: "yesterday".into(),
                ..record()
            },
            BackupRecord {
                taken_at: "9999-12-31T23:59:59Z".into(),
                ..record()
            },
            BackupRecord {
                taken_at: "1970-01-01T00:00:00Z".into(),
                ..record()
            },
        ];
        for record in bad {
            assert!(record.check(now).is_err(), "{record:?}");
        }
    }
}
