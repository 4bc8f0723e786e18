//! Backups that happen: `sentra-edge backup --into DIR --keep N`, run daily by
//! `sentra-edge-backup.timer`, writes a dated, encrypted copy of the store into DIR
//! ([`Store::backup`](crate::store::Store::backup): online, same key, atomic), removes the
//! oldest of its own files beyond N, and records the last good backup in
//! `<data_dir>/backup-state.json`, which `doctor` and the heartbeat report (the fleet page flags a
//! box without a recent one).
//!
//! Invariants: only files named like [`dated_name`] in DIR are ever removed, and only after the
//! new backup was written; the state file is replaced atomically and only after a good backup.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The last good backup, in the data directory.
pub const STATE_FILE: &str = "backup-state.json";
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

/// Records a good backup (atomically: a reader sees the old state or the new one).
pub fn record(data_dir: &Path, last: &LastBackup) -> std::io::Result<()> {
    let (path, tmp) = (
        data_dir.join(STATE_FILE),
        data_dir.join(format!("{STATE_FILE}.tmp")),
    );
    let json = serde_json::to_vec_pretty(last).expect("the backup state always serialises");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, &path)
}

/// The last good backup recorded here, if any.
pub fn last(data_dir: &Path) -> Option<LastBackup> {
    serde_json::from_slice(&std::fs::read(data_dir.join(STATE_FILE)).ok()?).ok()
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
        };
        record(dir.path(), &state).expect("record");
        let got = last(dir.path()).expect("recorded");
        assert_eq!(got, state);
        let now = time::macros::datetime!(2026-12-02 08:30:00 UTC);
        assert_eq!(age_secs(&got, now), Some(30 * 3600));
    }
}
