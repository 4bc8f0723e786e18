//! Backups that happen: `sentra-edge backup --into DIR --keep N`, run daily by
//! `sentra-edge-backup.timer`, writes a dated, encrypted copy of the store into DIR
//! ([`Store::backup`](crate::store::Store::backup): online, same key, atomic), removes the
//! oldest of its own files beyond N, and records the last good backup in
//! `<data_dir>/backup-state.json`, which `doctor` and the heartbeat report (the fleet page flags a
//! box without a recent one). The state carries the file's SHA-256, so the daemon of an enrolled
//! box uploads it to the cloud's object store (`sync::backups`, with the earlier ones still on disk
//! it has not sent) and records the newest sent
//! in `<data_dir>/backup-upload.json`.
//!
//! Invariants: only files named like [`dated_name`] in DIR are ever removed, and only after the
//! new backup was written; the state files are replaced atomically, the backup's only after a
//! good backup, the upload's only after the cloud verified the whole file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The last good backup, in the data directory.
pub const STATE_FILE: &str = "backup-state.json";
/// The last backup the cloud holds whole, in the data directory.
pub const UPLOAD_FILE: &str = "backup-upload.json";
/// A backup older than this (a daily timer, its random delay and a missed night) needs a look.
pub const STALE_AFTER_SECS: u64 = 36 * 3600;
const PREFIX: &str = "sentra-";
const SUFFIX: &str = ".backup";

/// What `backup-state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBackup {
    /// RFC 3339, UTC.
    pub at: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub events: i64,
    /// SHA-256 of the file, lowercase hex (absent in a state written before uploads: such a
    /// backup is not uploaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The backups before this one that are still on disk and may not be in the cloud yet,
    /// oldest first (at most [`EARLIER_KEPT`]; each with an empty `earlier`): a box offline for
    /// a week uploads each night's backup when it is back, not only the last one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<LastBackup>,
}

/// What `backup-upload.json` holds: the newest backup the cloud verified whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub sha256: String,
    /// When the backup was taken (its [`LastBackup::at`]).
    pub taken_at: String,
    /// When the cloud confirmed it, RFC 3339, UTC.
    pub at: String,
    pub bytes: u64,
}

/// `sentra-20261205T023000Z.backup`: UTC, so names sort by time.
pub fn dated_name(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{PREFIX}{:04}{:02}{:02}T{:02}{:02}{:02}Z{SUFFIX}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The time stamp of one of our file names with `suffix`, if `name` is one.
fn stamp<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(suffix))
        .filter(|stamp| {
            stamp.len() == 16
                && stamp.char_indices().all(|(i, c)| match i {
                    8 => c == 'T',
                    15 => c == 'Z',
                    _ => c.is_ascii_digit(),
                })
        })
}

/// What a backup killed half-way leaves (`Store::backup` writes `<name>.partial` first).
const PARTIAL: &str = ".partial";

/// Removes the oldest of our backups in `dir` beyond the newest `keep` (at least one is always
/// kept), and what backups killed before the newest one left half-written; other files are never
/// touched. Returns what it removed.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let mut ours: Vec<&str> = names
        .iter()
        .filter(|n| stamp(n, SUFFIX).is_some())
        .map(String::as_str)
        .collect();
    ours.sort_unstable();
    let newest = ours
        .last()
        .and_then(|n| stamp(n, SUFFIX))
        .unwrap_or_default();
    let excess = ours.len().saturating_sub(keep.max(1));
    // A partial newer than the newest backup may be one being written right now: left alone.
    let stale = names
        .iter()
        .filter(|n| stamp(n, PARTIAL).is_some_and(|s| s < newest))
        .map(String::as_str);
    let mut removed = Vec::new();
    for name in ours[..excess].iter().copied().chain(stale) {
        let path = dir.join(name);
        std::fs::remove_file(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

/// How many backups before the last one the state remembers for the uploader: the cloud keeps
/// [`KEPT_PER_DEVICE`](sentra_protocol::backup::KEPT_PER_DEVICE) a device, the last included.
pub const EARLIER_KEPT: usize = sentra_protocol::backup::KEPT_PER_DEVICE - 1;

/// Records a good backup (atomically: a reader sees the old state or the new one). The backups
/// recorded before it whose files are still there, and that have a digest, are carried in its
/// [`LastBackup::earlier`].
pub fn record(data_dir: &Path, last: &LastBackup) -> std::io::Result<()> {
    let mut last = last.clone();
    if let Some(mut previous) = self::last(data_dir) {
        let mut earlier = std::mem::take(&mut previous.earlier);
        earlier.push(previous);
        earlier.retain(|b| b.sha256.is_some() && b.path != last.path && b.path.is_file());
        let excess = earlier.len().saturating_sub(EARLIER_KEPT);
        earlier.drain(..excess);
        last.earlier = earlier;
    }
    write_state(data_dir, STATE_FILE, &last)
}

/// The recorded backups the cloud does not hold yet, oldest first: those with a digest, taken
/// after the newest one it verified (`uploaded`), not given up on (`skipped`) and still on disk.
pub fn to_upload(
    last: &LastBackup,
    uploaded: Option<&Uploaded>,
    skipped: &std::collections::HashSet<String>,
) -> Vec<LastBackup> {
    let parse =
        |at: &str| OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok();
    let after = uploaded.and_then(|up| parse(&up.taken_at));
    let mut all: Vec<&LastBackup> = last.earlier.iter().chain([last]).collect();
    all.sort_by_key(|b| parse(&b.at));
    all.into_iter()
        .filter(|b| {
            b.sha256.as_ref().is_some_and(|sha| {
                !skipped.contains(sha) && uploaded.is_none_or(|up| &up.sha256 != sha)
            })
        })
        .filter(|b| match (after, parse(&b.at)) {
            (Some(after), Some(at)) => at > after,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .filter(|b| b.path.is_file())
        .map(|b| LastBackup {
            earlier: Vec::new(),
            ..b.clone()
        })
        .collect()
}

/// The last good backup recorded here, if any.
pub fn last(data_dir: &Path) -> Option<LastBackup> {
    read_state(data_dir, STATE_FILE)
}

/// Records the backup the cloud now holds whole.
pub fn record_upload(data_dir: &Path, uploaded: &Uploaded) -> std::io::Result<()> {
    write_state(data_dir, UPLOAD_FILE, uploaded)
}

/// The newest backup the cloud holds whole, as recorded here.
pub fn uploaded(data_dir: &Path) -> Option<Uploaded> {
    read_state(data_dir, UPLOAD_FILE)
}

fn write_state(data_dir: &Path, name: &str, value: &impl Serialize) -> std::io::Result<()> {
    let (path, tmp) = (data_dir.join(name), data_dir.join(format!("{name}.tmp")));
    let json = serde_json::to_vec_pretty(value).expect("the backup state always serialises");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, &path)
}

fn read_state<T: serde::de::DeserializeOwned>(data_dir: &Path, name: &str) -> Option<T> {
    serde_json::from_slice(&std::fs::read(data_dir.join(name)).ok()?).ok()
}

/// SHA-256 of the file at `path`, lowercase hex, read in 1 MiB pieces.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let (mut hash, mut buf) = (sha2::Sha256::new(), vec![0u8; 1 << 20]);
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hex::encode(hash.finalize())),
            n => hash.update(&buf[..n]),
        }
    }
}

/// How old `last` is at `now`, in seconds (0 for a time ahead of `now`).
pub fn age_secs(last: &LastBackup, now: OffsetDateTime) -> Option<u64> {
    let at =
        OffsetDateTime::parse(&last.at, &time::format_description::well_known::Rfc3339).ok()?;
    Some(u64::try_from((now - at).whole_seconds()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_prune_keeps_the_newest_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = time::macros::datetime!(2026-12-01 02:30:00 UTC);
        let mut names = Vec::new();
        for day in 0..5 {
            let name = dated_name(start + time::Duration::days(day));
            std::fs::write(dir.path().join(&name), b"x").expect("write");
            names.push(name);
        }
        assert_eq!(names[0], "sentra-20261201T023000Z.backup");
        for other in ["sentra.db", "notes.txt", "sentra-latest.backup"] {
            std::fs::write(dir.path().join(other), b"keep").expect("write");
        }
        // Left by a backup killed half-way, and one perhaps being written now.
        let killed = "sentra-20261203T023000Z.partial";
        let running = "sentra-20261209T023000Z.partial";
        for partial in [killed, running] {
            std::fs::write(dir.path().join(partial), b"half").expect("write");
        }
        let removed = prune(dir.path(), 2).expect("prune");
        assert_eq!(
            removed,
            names[..3]
                .iter()
                .map(String::as_str)
                .chain([killed])
                .map(|n| dir.path().join(n))
                .collect::<Vec<_>>()
        );
        assert!(dir.path().join(running).exists());
        for kept in names[3..].iter().map(String::as_str).chain([
            "sentra.db",
            "notes.txt",
            "sentra-latest.backup",
        ]) {
            assert!(dir.path().join(kept).exists(), "{kept} kept");
        }
        assert!(
            prune(dir.path(), 0).expect("prune").len() == 1,
            "one is always kept"
        );
    }

    #[test]
    fn the_state_round_trips_and_ages() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(last(dir.path()), None);
        let state = LastBackup {
            at: "2026-12-01T02:30:00Z".into(),
            path: dir.path().join("b"),
            bytes: 10,
            events: 3,
            sha256: None,
            earlier: Vec::new(),
        };
        record(dir.path(), &state).expect("record");
        let got = last(dir.path()).expect("recorded");
        assert_eq!(got, state);
        // A state from before digests reads as one without.
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"at":"2026-12-01T02:30:00Z","path":"/b","bytes":10,"events":3}"#,
        )
        .expect("write");
        assert_eq!(last(dir.path()).and_then(|l| l.sha256), None);
        std::fs::write(dir.path().join("b"), b"abc").expect("write");
        assert_eq!(
            sha256_of(&dir.path().join("b")).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let up = Uploaded {
            sha256: "ba".repeat(32),
            taken_at: state.at.clone(),
            at: "2026-12-01T02:31:00Z".into(),
            bytes: 10,
        };
        assert_eq!(uploaded(dir.path()), None);
        record_upload(dir.path(), &up).expect("record upload");
        assert_eq!(uploaded(dir.path()), Some(up));
        let now = time::macros::datetime!(2026-12-02 08:30:00 UTC);
        assert_eq!(age_secs(&got, now), Some(30 * 3600));
    }

    /// A box that made three backups while the cloud was away uploads all three, oldest first;
    /// one whose file was pruned, one given up on and one older than the cloud's newest are not.
    #[test]
    fn the_state_remembers_earlier_backups_for_the_uploader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backup = |day: u8, sha: Option<&str>| {
            let at = format!("2026-12-0{day}T02:30:00Z");
            let path = dir.path().join(format!("b{day}"));
            std::fs::write(&path, b"x").expect("write");
            let last = LastBackup {
                at,
                path,
                bytes: 1,
                events: i64::from(day),
                sha256: sha.map(str::to_owned),
                earlier: Vec::new(),
            };
            record(dir.path(), &last).expect("record");
            last
        };
        let days: Vec<LastBackup> = (1..=9)
            .map(|day| backup(day, (day != 2).then(|| format!("{day:0>64}")).as_deref()))
            .collect();
        let state = last(dir.path()).expect("state");
        assert_eq!(state.at, days[8].at);
        // Day 2 had no digest; only the last EARLIER_KEPT of the rest are remembered.
        let earlier: Vec<&str> = state.earlier.iter().map(|b| b.at.as_str()).collect();
        assert_eq!(
            earlier,
            days[2..8].iter().map(|b| b.at.as_str()).collect::<Vec<_>>()
        );
        assert!(state.earlier.iter().all(|b| b.earlier.is_empty()));

        std::fs::remove_file(&days[3].path).expect("pruned");
        let uploaded = Uploaded {
            sha256: "cd".repeat(32),
            taken_at: days[4].at.clone(),
            at: days[4].at.clone(),
            bytes: 1,
        };
        let mut skipped = std::collections::HashSet::new();
        let ats = |list: Vec<LastBackup>| list.into_iter().map(|b| b.at).collect::<Vec<_>>();
        assert_eq!(
            ats(to_upload(&state, None, &skipped)),
            [2, 4, 5, 6, 7, 8].map(|i| days[i].at.clone()),
            "oldest first, the pruned one left out"
        );
        assert_eq!(
            ats(to_upload(&state, Some(&uploaded), &skipped)),
            [5, 6, 7, 8].map(|i| days[i].at.clone()),
            "only what is newer than the cloud's newest"
        );
        skipped.insert(days[5].sha256.clone().expect("digest"));
        assert_eq!(
            ats(to_upload(&state, Some(&uploaded), &skipped)),
            [6, 7, 8].map(|i| days[i].at.clone()),
            "not the one given up on"
        );
    }
}
