//! The self-updater (`sentra-edge update check|apply`): takes the release the cloud offers (or
//! `--version`), verifies its signed manifest, downloads the artifact to a staging file (resuming
//! with HTTP Range), installs it beside the running release, swaps the `current` link, restarts
//! the daemon and waits for the new release to answer `/readyz` with its version; if it does
//! not within `update.health_window_secs`, it swaps back and restarts the previous release.
//!
//! Invariants:
//! - nothing is acted on before [`sentra_protocol::fleet::verify_manifest`] accepted the
//!   manifest with the release key ([`release_key`]: `update.release_public_key` when set, else
//!   the key pinned at enrolment); no key refuses every release (fail closed);
//! - a version not newer than the running one (or than the newest release that ever passed its
//!   health check here) is refused: no downgrade, no replayed manifest;
//! - `current` only ever changes by renaming a complete temporary link over it, and only points
//!   to a release whose bytes matched the manifest's size and SHA-256;
//! - the previous release directory is kept until a later update succeeds, so a rollback
//!   always has something to go back to;
//! - every state change is written to `<data_dir>/update-state.json` (which the daemon's
//!   heartbeat repeats) and sent to the cloud at once in a heartbeat of its own; so is the
//!   download's progress (bytes staged of the manifest's size), every [`PROGRESS_EVERY`].

mod install;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sentra_protocol::ed25519_dalek::VerifyingKey;
use sentra_protocol::fleet::{
    DownloadProgress, Heartbeat, Manifest, ReleaseVersion, SignedManifest, TargetRelease,
    UpdateReport, UpdateState,
};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use crate::config::Config;
use crate::sync::client::{CloudClient, SyncError, error_chain, refused};
use crate::sync::heartbeat::TARGET_FILE;

pub use install::{Layout, release_dir_version};

/// Where the updater records its latest state, in the data directory.
pub const STATE_FILE: &str = "update-state.json";

/// How often a download's progress is recorded and sent to the cloud (a heartbeat of its own):
/// a 40 MB release over a slow branch line moves a few percent in that time.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The version this process is: the `releases/<version>` directory it was started from when it
/// runs from an install layout (the directory is named by a verified manifest), else the version
/// it was built as.
pub static RUNNING_VERSION: LazyLock<String> = LazyLock::new(|| {
    std::env::current_exe()
        .ok()
        .and_then(|exe| release_dir_version(&exe))
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
});

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("update refused: {0}")]
    Manifest(#[from] sentra_protocol::fleet::ManifestError),
    #[error(
        "update refused: version {target} is not newer than {running}; downgrades and replayed manifests are refused"
    )]
    NotNewer { target: String, running: String },
    #[error("update refused: the manifest is for version {got}, not the requested {wanted}")]
    VersionMismatch { wanted: String, got: String },
    #[error("update refused: {0}")]
    BadVersion(String),
    #[error("update refused: artifact SHA-256 is {got}, the manifest says {expected}")]
    Digest { expected: String, got: String },
    #[error(
        "update refused: artifact is truncated: {got} of {expected} bytes after {attempts} attempts"
    )]
    Truncated {
        expected: u64,
        got: u64,
        attempts: u32,
    },
    #[error("update refused: the cloud sent more bytes than the manifest's size {expected}")]
    TooLong { expected: u64 },
    #[error("nothing to install: the cloud offers no release (and no --version was given)")]
    NothingOffered,
    #[error(transparent)]
    Cloud(#[from] SyncError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("release {version} rolled back: {reason}")]
    RolledBack { version: String, reason: String },
    #[error("release {version} failed and the rollback failed too: {reason}")]
    RollbackFailed { version: String, reason: String },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UpdateError + '_ {
    move |source| UpdateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `check` found.
#[derive(Debug, serde::Serialize)]
pub struct Check {
    pub running: String,
    pub target: String,
    pub manifest: Manifest,
}

/// The key releases are verified with: `update.release_public_key` when set (a technician's
/// override, e.g. while the cloud team rotates keys), else the one the cloud gave at enrolment
/// (`pinned`). `None` when neither is there: every manifest is then refused.
pub fn release_key(
    cfg: &Config,
    pinned: Option<&str>,
) -> Result<Option<VerifyingKey>, UpdateError> {
    let configured = cfg.update.release_public_key.trim();
    let text = if configured.is_empty() {
        pinned.map(str::trim).unwrap_or_default()
    } else {
        configured
    };
    if text.is_empty() {
        return Ok(None);
    }
    let bytes: [u8; 32] = hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            UpdateError::BadVersion("update.release_public_key is not 64 hex characters".into())
        })?;
    VerifyingKey::from_bytes(&bytes).map(Some).map_err(|_| {
        UpdateError::BadVersion("update.release_public_key is not an ed25519 public key".into())
    })
}

/// The offered target (`update-target.json`), if any.
pub fn offered(data_dir: &Path) -> Option<TargetRelease> {
    let text = std::fs::read_to_string(data_dir.join(TARGET_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The updater's latest report, for the heartbeat; `None` when it never ran.
pub fn read_state(data_dir: &Path) -> Option<UpdateReport> {
    let text = std::fs::read_to_string(data_dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// How far the running download is, for the heartbeat: `None` unless the updater's latest
/// state is `downloading` and says so.
pub fn read_download(data_dir: &Path) -> Option<DownloadProgress> {
    let text = std::fs::read_to_string(data_dir.join(STATE_FILE)).ok()?;
    let file: StateFile = serde_json::from_str(&text).ok()?;
    (file.report.state == UpdateState::Downloading)
        .then_some(file.download)
        .flatten()
}

/// [`STATE_FILE`]: the report, and the download's progress while downloading. Readers of the
/// report alone ([`read_state`], older releases) ignore `download`.
#[derive(serde::Serialize, serde::Deserialize)]
struct StateFile {
    #[serde(flatten)]
    report: UpdateReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    download: Option<DownloadProgress>,
}

/// What the heartbeat reports as its release key: the key id, or
/// [`sentra_protocol::fleet::NO_RELEASE_KEY`] when updates are off (no key, or a malformed one).
pub fn release_key_id(cfg: &Config, pinned: Option<&str>) -> String {
    match release_key(cfg, pinned) {
        Ok(Some(key)) => sentra_protocol::fleet::key_id(&key),
        _ => sentra_protocol::fleet::NO_RELEASE_KEY.to_owned(),
    }
}

/// The updater: a client for the cloud, the layout and where to report.
pub struct Updater {
    cfg: Config,
    client: CloudClient,
    layout: Layout,
    started: Instant,
    /// The release key pinned at enrolment.
    pinned_key: Option<String>,
    /// The box's LAN certificate: the new release is asked `/readyz` over HTTPS presenting it.
    lan_pin: Option<crate::lan::Fingerprint>,
}

impl Updater {
    pub fn new(cfg: Config, client: CloudClient, pinned_key: Option<String>) -> Updater {
        let layout = Layout::new(&cfg.update.install_root);
        Updater {
            cfg,
            client,
            layout,
            started: Instant::now(),
            pinned_key,
            lan_pin: None,
        }
    }

    /// Ask the new release's `/readyz` over HTTPS (`api.tls_listen`), trusting only the box's
    /// certificate `pin`. Without it, plain HTTP on `api.listen` (only served with `lan.plain`).
    pub fn with_lan_pin(mut self, pin: crate::lan::Fingerprint) -> Updater {
        self.lan_pin = Some(pin);
        self
    }

    /// The version to install: `--version` or the cloud's offer.
    fn target(&self, version: Option<&str>) -> Result<String, UpdateError> {
        match version {
            Some(v) => Ok(v.to_owned()),
            None => offered(&self.cfg.store.data_dir)
                .map(|t| t.version)
                .ok_or(UpdateError::NothingOffered),
        }
    }

    /// The installed version the checks compare against: `current` if the layout exists.
    fn running(&self) -> String {
        self.layout
            .current_version()
            .unwrap_or_else(|| RUNNING_VERSION.clone())
    }

    /// Fetch and verify the manifest of `version`, refusing downgrades and replays.
    pub async fn check(&self, version: Option<&str>) -> Result<Check, UpdateError> {
        let key = release_key(&self.cfg, self.pinned_key.as_deref())?;
        // Fail closed before any network traffic.
        let key = key.ok_or(sentra_protocol::fleet::ManifestError::NoKey)?;
        let target = self.target(version)?;
        let wanted = ReleaseVersion::parse(&target).map_err(UpdateError::BadVersion)?;
        let running = self.running();
        self.refuse_not_newer(&wanted, &running)?;
        let path = format!("/v1/releases/{target}/manifest");
        let resp = self
            .client
            .request(Method::GET, &path, Vec::new(), &[])
            .await?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| SyncError::Unreachable {
            url: path.clone(),
            detail: error_chain(&e),
        })?;
        if !status.is_success() {
            return Err(refused(status, &body).into());
        }
        let signed: SignedManifest =
            serde_json::from_slice(&body).map_err(|e| SyncError::Protocol {
                status: status.as_u16(),
                detail: e.to_string(),
            })?;
        let manifest = sentra_protocol::fleet::verify_manifest(Some(&key), &signed, now_unix())?;
        let got = ReleaseVersion::parse(&manifest.version).map_err(UpdateError::BadVersion)?;
        if got != wanted {
            return Err(UpdateError::VersionMismatch {
                wanted: target,
                got: manifest.version,
            });
        }
        self.refuse_not_newer(&got, &running)?;
        Ok(Check {
            running,
            target,
            manifest,
        })
    }

    fn refuse_not_newer(&self, target: &ReleaseVersion, running: &str) -> Result<(), UpdateError> {
        let mut floor = running.to_owned();
        if let Some(best) = self.layout.highest_good()
            && ReleaseVersion::parse(&best).ok() > ReleaseVersion::parse(&floor).ok()
        {
            floor = best;
        }
        match ReleaseVersion::parse(&floor) {
            Ok(f) if *target <= f => Err(UpdateError::NotNewer {
                target: target.to_string(),
                running: floor,
            }),
            _ => Ok(()),
        }
    }

    /// Check, download, install, restart, and roll back when the new release is not ready.
    pub async fn apply(&self, version: Option<&str>) -> Result<String, UpdateError> {
        let check = match self.check(version).await {
            Ok(c) => c,
            Err(error) => {
                // A refusal is reported only when there was a concrete release to refuse.
                if let Ok(target) = self.target(version)
                    && !matches!(error, UpdateError::Cloud(_))
                {
                    self.report(
                        UpdateState::Failure,
                        Some(&target),
                        Some(&error.to_string()),
                        None,
                    )
                    .await;
                }
                return Err(error);
            }
        };
        let v = check.target.clone();
        self.report(UpdateState::Downloading, Some(&v), None, None)
            .await;
        let staged = self
            .failed_if_err(&v, self.download(&check.manifest).await)
            .await?;
        self.report(UpdateState::Installing, Some(&v), None, None)
            .await;
        let previous = self
            .failed_if_err(&v, self.layout.install(&staged, &v, &RUNNING_VERSION))
            .await?;
        self.report(UpdateState::Restarting, Some(&v), None, None)
            .await;
        let restarted = Instant::now();
        let outcome = match self.restart().await {
            Ok(()) => self.wait_ready(&v, restarted).await,
            Err(reason) => Err(reason),
        };
        match outcome {
            Ok(()) => {
                self.layout.record_good(&v, &previous);
                self.report(UpdateState::Success, Some(&v), None, Some(&v))
                    .await;
                Ok(format!(
                    "updated {previous} -> {v}: ready {:.1} s after the restart",
                    restarted.elapsed().as_secs_f64()
                ))
            }
            Err(reason) => {
                tracing::warn!(version = %v, %reason, "the new release is not ready; rolling back");
                let back = self.layout.swap_to(&previous).map_err(|e| e.to_string());
                let back = match back {
                    Ok(()) => {
                        let again = Instant::now();
                        match self.restart().await {
                            Ok(()) => self.wait_ready(&previous, again).await,
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                let elapsed = restarted.elapsed().as_secs_f64();
                match back {
                    Ok(()) => {
                        let reason = format!(
                            "{reason}; {previous} restored {elapsed:.1} s after the restart"
                        );
                        self.report(UpdateState::RolledBack, Some(&v), Some(&reason), None)
                            .await;
                        Err(UpdateError::RolledBack { version: v, reason })
                    }
                    Err(second) => {
                        let reason = format!("{reason}; rollback to {previous}: {second}");
                        self.report(UpdateState::Failure, Some(&v), Some(&reason), None)
                            .await;
                        Err(UpdateError::RollbackFailed { version: v, reason })
                    }
                }
            }
        }
    }

    /// Download the artifact to `staging/<version>.part`, resuming where earlier bytes end.
    async fn download(&self, manifest: &Manifest) -> Result<PathBuf, UpdateError> {
        let staging = self.layout.staging();
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(io(&staging))?;
        let part = staging.join(format!("{}.part", manifest.version));
        let attempts = self.cfg.update.download_attempts;
        let mut have = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
        self.report_download(&manifest.version, have, manifest.size)
            .await;
        for attempt in 1..=attempts {
            if have > manifest.size {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(UpdateError::TooLong {
                    expected: manifest.size,
                });
            }
            if have == manifest.size {
                break;
            }
            match self.fetch_from(manifest, &part, have).await {
                Ok(n) => have = n,
                Err(UpdateError::Cloud(e)) if e.is_transient() => {
                    tracing::warn!(attempt, error = %e, "artifact download interrupted; resuming");
                    have = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(other) => return Err(other),
            }
        }
        if have != manifest.size {
            return Err(UpdateError::Truncated {
                expected: manifest.size,
                got: have,
                attempts,
            });
        }
        let path = part.clone();
        let digest = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut file = std::fs::File::open(&path)?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = std::io::Read::read(&mut file, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(hex::encode(hasher.finalize()))
        })
        .await
        .map_err(|e| UpdateError::Io {
            path: part.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(io(&part))?;
        if !digest.eq_ignore_ascii_case(&manifest.sha256) {
            // A later attempt must not resume from bytes known to be wrong.
            let _ = tokio::fs::remove_file(&part).await;
            return Err(UpdateError::Digest {
                expected: manifest.sha256.clone(),
                got: digest,
            });
        }
        Ok(part)
    }

    /// One request from byte `have`; returns how many bytes are staged after it.
    async fn fetch_from(
        &self,
        manifest: &Manifest,
        part: &Path,
        have: u64,
    ) -> Result<u64, UpdateError> {
        let mut headers = Vec::new();
        if have > 0 {
            headers.push(("range", format!("bytes={have}-")));
            headers.push(("if-range", format!("\"{}\"", manifest.sha256)));
        }
        let resp = self
            .client
            .request(Method::GET, &manifest.url, Vec::new(), &headers)
            .await?;
        let status = resp.status();
        let mut file = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => tokio::fs::OpenOptions::new()
                .append(true)
                .open(part)
                .await
                .map_err(io(part))?,
            StatusCode::OK => tokio::fs::File::create(part).await.map_err(io(part))?,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // The cloud has no byte past what we hold: the artifact it serves is short.
                return Err(UpdateError::Truncated {
                    expected: manifest.size,
                    got: have,
                    attempts: self.cfg.update.download_attempts,
                });
            }
            s => {
                let body = resp.bytes().await.unwrap_or_default();
                return Err(refused(s, &body).into());
            }
        };
        let mut written = if status == StatusCode::OK { 0 } else { have };
        let mut reported = Instant::now();
        let mut resp = resp;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    file.flush().await.map_err(io(part))?;
                    file.sync_all().await.map_err(io(part))?;
                    return Err(SyncError::Unreachable {
                        url: manifest.url.clone(),
                        detail: error_chain(&e),
                    }
                    .into());
                }
            };
            written += chunk.len() as u64;
            if written > manifest.size {
                drop(file);
                let _ = tokio::fs::remove_file(part).await;
                return Err(UpdateError::TooLong {
                    expected: manifest.size,
                });
            }
            file.write_all(&chunk).await.map_err(io(part))?;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                self.report_download(&manifest.version, written, manifest.size)
                    .await;
            }
        }
        file.flush().await.map_err(io(part))?;
        file.sync_all().await.map_err(io(part))?;
        if written < manifest.size {
            // A clean end before the size: let the next attempt ask for the rest.
            return Err(SyncError::Unreachable {
                url: manifest.url.clone(),
                detail: format!(
                    "the answer ended after {written} of {} bytes",
                    manifest.size
                ),
            }
            .into());
        }
        Ok(written)
    }

    /// Run `update.restart_command`.
    async fn restart(&self) -> Result<(), String> {
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.cfg.update.restart_command)
            .status()
            .await
            .map_err(|e| format!("restart command: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("restart command exited with {status}"))
        }
    }

    /// Poll the local `/readyz` until a process started by the restart asked for at `restarted`
    /// answers 200 with `version`, or the window ends.
    async fn wait_ready(&self, version: &str, restarted: Instant) -> Result<(), String> {
        let mut addr = match self.lan_pin {
            Some(_) => self.cfg.api.tls_listen,
            None => self.cfg.api.listen,
        };
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let window = Duration::from_secs(self.cfg.update.health_window_secs);
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(2));
        let (url, builder) = match self.lan_pin {
            Some(pin) => (
                format!("https://{addr}/readyz"),
                builder.use_preconfigured_tls(crate::lan::client_config(pin)),
            ),
            None => (format!("http://{addr}/readyz"), builder),
        };
        let http = builder.build().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + window;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match http.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => {
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    // The restart is asynchronous (systemd's path unit), so the process it
                    // replaces may still answer, and may already run `version`: a rollback from
                    // a release that ran the previous binary, which the life-cycle test's
                    // stand-in does. Only a process up no longer than the restart counts (a
                    // release without `uptime_secs` is taken at its word, as before).
                    let uptime = body["uptime_secs"].as_u64();
                    let fresh = |up: u64| up <= restarted.elapsed().as_secs() + 1;
                    match body["version"].as_str() {
                        Some(v) if v == version && uptime.is_none_or(fresh) => return Ok(()),
                        Some(v) if v == version => {
                            last = format!(
                                "{url} answered version {v} from a process up {} s, started before the restart",
                                uptime.unwrap_or_default()
                            );
                        }
                        other => last = format!("{url} answered version {other:?}"),
                    }
                }
                Ok(resp) => last = format!("{url} answered {}", resp.status()),
                Err(e) => last = format!("{url}: {}", error_chain(&e)),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!(
            "not ready within {} s (last: {last})",
            window.as_secs()
        ))
    }

    /// Record the state where the heartbeat reads it and tell the cloud at once (best effort:
    /// the daemon's heartbeat repeats the file).
    /// Reports `failure` for `version`, with the error as the reason, when `result` is an error;
    /// passes `result` on either way.
    async fn failed_if_err<T>(
        &self,
        version: &str,
        result: Result<T, UpdateError>,
    ) -> Result<T, UpdateError> {
        if let Err(error) = &result {
            self.report(
                UpdateState::Failure,
                Some(version),
                Some(&error.to_string()),
                None,
            )
            .await;
        }
        result
    }

    async fn report(
        &self,
        state: UpdateState,
        target: Option<&str>,
        reason: Option<&str>,
        version: Option<&str>,
    ) {
        let report = UpdateReport {
            state,
            target_version: target.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        tracing::info!(state = state.as_str(), target = ?target, reason = ?reason, "update state");
        self.send(report, version, None).await;
    }

    /// `downloading` `target` with `received` of `total` bytes staged, recorded and sent.
    async fn report_download(&self, target: &str, received: u64, total: u64) {
        let report = UpdateReport {
            state: UpdateState::Downloading,
            target_version: Some(target.to_owned()),
            reason: None,
        };
        tracing::debug!(target, received, total, "update download");
        let download = DownloadProgress {
            received_bytes: received.min(total),
            total_bytes: total,
        };
        self.send(report, None, Some(download)).await;
    }

    /// Records `report` (and the download's progress) where the daemon's heartbeat reads it, and
    /// sends it in a heartbeat of its own.
    async fn send(
        &self,
        report: UpdateReport,
        version: Option<&str>,
        download: Option<DownloadProgress>,
    ) {
        let file = StateFile { report, download };
        if let Err(error) = write_state(&self.cfg.store.data_dir, &file) {
            tracing::warn!(%error, "recording the update state failed");
        }
        let beat = Heartbeat {
            version: version.map_or_else(|| self.running(), str::to_owned),
            uptime_secs: self.started.elapsed().as_secs(),
            update: file.report,
            // The box itself serves (the old release after a rollback); the state says the rest.
            healthy: true,
            backlog: Default::default(),
            parked: 0,
            skew_ms: 0,
            resources: Default::default(),
            printer: None,
            scanner: None,
            broker: None,
            paired_clients: None,
            release_key: Some(release_key_id(&self.cfg, self.pinned_key.as_deref())),
            backup: None,
            download,
        };
        if let Err(error) = self.client.heartbeat(&beat).await {
            tracing::warn!(%error, "reporting the update state to the cloud failed");
        }
    }
}

fn write_state(data_dir: &Path, report: &StateFile) -> std::io::Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(data_dir)?;
    serde_json::to_writer(&mut file, report)?;
    file.as_file().sync_all()?;
    file.persist(data_dir.join(STATE_FILE))
        .map_err(|e| e.error)?;
    Ok(())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const CONFIGURED: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn with_key(configured: &str) -> Config {
        let mut cfg = Config::defaults();
        cfg.update.release_public_key = configured.to_owned();
        cfg
    }

    fn id(key: Option<VerifyingKey>) -> Option<String> {
        key.map(|k| hex::encode(k.as_bytes()))
    }

    #[test]
    fn the_state_file_carries_the_download_only_while_downloading() {
        let dir = tempfile::tempdir().expect("temp dir");
        let report = |state| UpdateReport {
            state,
            target_version: Some("2.0.0".to_owned()),
            reason: None,
        };
        let progress = DownloadProgress {
            received_bytes: 12_300_000,
            total_bytes: 40_000_000,
        };
        write_state(
            dir.path(),
            &StateFile {
                report: report(UpdateState::Downloading),
                download: Some(progress),
            },
        )
        .expect("write");
        assert_eq!(read_download(dir.path()), Some(progress));
        assert_eq!(
            read_state(dir.path()),
            Some(report(UpdateState::Downloading)),
            "the report reads as before"
        );
        write_state(
            dir.path(),
            &StateFile {
                report: report(UpdateState::Installing),
                download: Some(progress),
            },
        )
        .expect("write");
        assert_eq!(read_download(dir.path()), None);
        // A file from a release before the field.
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"state":"downloading","target_version":"2.0.0"}"#,
        )
        .expect("write");
        assert_eq!(read_download(dir.path()), None);
        assert!(read_state(dir.path()).is_some());
    }

    #[test]
    fn the_configured_key_wins_the_pinned_one_serves_and_none_refuses_all() {
        assert_eq!(release_key(&with_key(""), None).ok().flatten(), None);
        assert_eq!(
            id(release_key(&with_key(""), Some(PINNED)).expect("a key")),
            Some(PINNED.to_owned())
        );
        assert_eq!(
            id(release_key(&with_key(CONFIGURED), Some(PINNED)).expect("a key")),
            Some(CONFIGURED.to_owned())
        );
        assert!(release_key(&with_key("not hex"), Some(PINNED)).is_err());
        assert_eq!(
            release_key_id(&with_key(""), None),
            sentra_protocol::fleet::NO_RELEASE_KEY
        );
        assert_eq!(release_key_id(&with_key(""), Some(PINNED)).len(), 16);
    }
}
