//! The install layout under `update.install_root`: `releases/<version>/sentra-edge`, the
//! `current` link the service starts (`current/sentra-edge`), `staging/` for downloads, and
//! `good` (the newest version that passed its health check here, the floor for replays).
//!
//! Invariants: `current` changes only by renaming a finished temporary link over it (atomic on
//! one file system); a release directory appears complete (its binary is written, made
//! executable and synced before the directory is renamed into place); the previous release is
//! removed only after a later one passed its health check.

use std::path::{Path, PathBuf};

use sentra_protocol::fleet::ReleaseVersion;

use super::{UpdateError, io};

/// The binary's name inside a release directory.
pub const BINARY: &str = "sentra-edge";

/// The version of `exe` when it is `.../releases/<version>/sentra-edge` (symlinks resolved).
pub fn release_dir_version(exe: &Path) -> Option<String> {
    let dir = exe.parent()?;
    let name = dir.file_name()?.to_str()?;
    if dir.parent()?.file_name()? != "releases" {
        return None;
    }
    ReleaseVersion::parse(name).ok().map(|v| v.to_string())
}

pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_owned(),
        }
    }

    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }

    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The version `current` points to, if the layout exists.
    pub fn current_version(&self) -> Option<String> {
        let target = std::fs::read_link(self.current()).ok()?;
        let name = target.file_name()?.to_str()?;
        ReleaseVersion::parse(name).ok().map(|v| v.to_string())
    }

    /// The newest version that passed its health check here.
    pub fn highest_good(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join("good")).ok()?;
        ReleaseVersion::parse(text.trim())
            .ok()
            .map(|v| v.to_string())
    }

    /// Put the staged artifact at `releases/<version>/sentra-edge` and point `current` at it.
    /// Without a layout yet, the running binary is first installed as `releases/<running>` so
    /// there is something to roll back to. Returns the previous version.
    pub fn install(
        &self,
        staged: &Path,
        version: &str,
        running: &str,
    ) -> Result<String, UpdateError> {
        let releases = self.releases();
        std::fs::create_dir_all(&releases).map_err(io(&releases))?;
        let previous = match self.current_version() {
            Some(v) => v,
            None => {
                let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
                self.place(&exe, running)?;
                self.swap_to(running)?;
                running.to_owned()
            }
        };
        self.place(staged, version)?;
        self.swap_to(version)?;
        let _ = std::fs::remove_file(staged);
        Ok(previous)
    }

    /// Copy `from` into a complete `releases/<version>/` (replacing a leftover of a failed try).
    fn place(&self, from: &Path, version: &str) -> Result<(), UpdateError> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = self.releases().join(version);
        let tmp = self.releases().join(format!(".{version}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let bin = tmp.join(BINARY);
        std::fs::copy(from, &bin).map_err(io(&bin))?;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(io(&bin))?;
        std::fs::File::open(&bin)
            .and_then(|f| f.sync_all())
            .map_err(io(&bin))?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        sync_dir(&self.releases());
        Ok(())
    }

    /// Point `current` at `releases/<version>` by renaming a temporary link over it.
    pub fn swap_to(&self, version: &str) -> Result<(), UpdateError> {
        let link = self.root.join(".current.tmp");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("releases").join(version), &link)
            .map_err(io(&link))?;
        let current = self.current();
        std::fs::rename(&link, &current).map_err(io(&current))?;
        sync_dir(&self.root);
        Ok(())
    }

    /// `version` passed its health check: it becomes the replay floor, and releases other than
    /// it and `previous` are removed.
    pub fn record_good(&self, version: &str, previous: &str) {
        let good = self.root.join("good");
        if let Err(error) = std::fs::write(&good, format!("{version}\n")) {
            tracing::warn!(%error, "recording the good release failed");
        }
        if let Ok(entries) = std::fs::read_dir(self.releases()) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name != version && name != previous {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_versions_come_from_the_layout_only() {
        for (path, want) in [
            (
                "/var/lib/sentra/app/releases/1.4.0/sentra-edge",
                Some("1.4.0"),
            ),
            ("/x/releases/1.5.0-rc.1/sentra-edge", Some("1.5.0-rc.1")),
            ("/x/releases/latest/sentra-edge", None),
            ("/x/other/1.4.0/sentra-edge", None),
            ("/usr/bin/sentra-edge", None),
        ] {
            assert_eq!(
                release_dir_version(Path::new(path)).as_deref(),
                want,
                "{path}"
            );
        }
    }

    #[test]
    fn install_swaps_current_and_keeps_the_previous() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(root.path());
        let staged = root.path().join("a");
        std::fs::write(&staged, b"one").expect("write");
        std::fs::create_dir_all(root.path().join("releases/1.0.0")).expect("mkdir");
        std::fs::write(root.path().join("releases/1.0.0/sentra-edge"), b"zero").expect("write");
        layout.swap_to("1.0.0").expect("swap");
        assert_eq!(
            layout.install(&staged, "1.1.0", "1.0.0").expect("install"),
            "1.0.0"
        );
        assert_eq!(layout.current_version().as_deref(), Some("1.1.0"));
        assert_eq!(
            std::fs::read(root.path().join("current/sentra-edge")).expect("read"),
            b"one"
        );
        layout.swap_to("1.0.0").expect("back");
        assert_eq!(
            std::fs::read(root.path().join("current/sentra-edge")).expect("read"),
            b"zero"
        );
        layout.record_good("1.1.0", "1.0.0");
        assert_eq!(layout.highest_good().as_deref(), Some("1.1.0"));
    }
}
