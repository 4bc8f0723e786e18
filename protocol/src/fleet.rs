//! Fleet wire types: the heartbeat an appliance sends (`POST /v1/devices/heartbeat`), the answer
//! that tells it what to install, and the signed release manifest (`GET
//! /v1/releases/{version}/manifest`) with its verification.
//!
//! Invariants:
//! - the manifest's signature covers the exact bytes of `manifest` (a JSON text carried as a
//!   string), so nothing is re-serialised before verifying: adding a field never breaks old
//!   verifiers;
//! - [`verify_manifest`] is the one place that decides whether a manifest may be acted on: a
//!   wrong key, a bad signature, bytes that are not a manifest or an expired manifest are each
//!   their own error. Downgrade and replay checks need the running version and are the
//!   updater's, with [`ReleaseVersion`] to compare.

use std::cmp::Ordering;
use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Where an appliance is in installing a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateState {
    Idle,
    Downloading,
    Installing,
    Restarting,
    Success,
    Failure,
    RolledBack,
}

impl UpdateState {
    pub const ALL: [UpdateState; 7] = [
        UpdateState::Idle,
        UpdateState::Downloading,
        UpdateState::Installing,
        UpdateState::Restarting,
        UpdateState::Success,
        UpdateState::Failure,
        UpdateState::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Idle => "idle",
            UpdateState::Downloading => "downloading",
            UpdateState::Installing => "installing",
            UpdateState::Restarting => "restarting",
            UpdateState::Success => "success",
            UpdateState::Failure => "failure",
            UpdateState::RolledBack => "rolled-back",
        }
    }

    pub fn parse(text: &str) -> Option<UpdateState> {
        UpdateState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The update did not take: a rollout counts it against its failure threshold.
    pub fn is_failed(self) -> bool {
        matches!(self, UpdateState::Failure | UpdateState::RolledBack)
    }

    /// Between "told to install" and an outcome.
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            UpdateState::Downloading | UpdateState::Installing | UpdateState::Restarting
        )
    }
}

/// The update as the appliance reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateReport {
    pub state: UpdateState,
    /// The version being installed (or that failed), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Why it failed or rolled back, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The outbox as the appliance sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub count: u64,
    pub bytes: u64,
    /// Age of the oldest event not yet acknowledged, in seconds; none when the outbox is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_secs: Option<u64>,
}

/// Disk (the data directory's file system) and memory, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_available_bytes: Option<u64>,
    /// The store's files (database and WAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_bytes: Option<u64>,
}

/// `POST /v1/devices/heartbeat`. Everything the appliance may not know yet is optional; the
/// cloud stores what it gets. Labels (versions, states) are short text for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: String,
    pub uptime_secs: u64,
    pub update: UpdateReport,
    /// false when the appliance's own health check fails (store, API, broker): a device on a
    /// rollout's version that reports unhealthy counts as a failed update.
    #[serde(default = "yes")]
    pub healthy: bool,
    #[serde(default)]
    pub backlog: Backlog,
    /// Events the cloud parked (refused) and reported back.
    #[serde(default)]
    pub parked: u64,
    /// The appliance's clock minus the cloud's, in milliseconds.
    #[serde(default)]
    pub skew_ms: i64,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Paired LAN clients (tablets, POS), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired_clients: Option<u64>,
    /// The [`key_id`] of the key the box verifies releases with, or [`NO_RELEASE_KEY`] when it
    /// has none (it refuses every release). Absent from boxes older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_key: Option<String>,
    /// The box's last good backup. Absent from boxes older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// How far the download of `update.target_version` is, while `update.state` is
    /// `downloading`. Absent from boxes older than this field (a cloud older than it ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadProgress>,
}

/// [`Heartbeat::download`]: bytes of the release artifact staged so far, of its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadProgress {
    pub received_bytes: u64,
    /// The manifest's `size`.
    pub total_bytes: u64,
}

/// [`Heartbeat::backup`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// Seconds since the last good backup; None: the box was never backed up.
    pub age_secs: Option<u64>,
}

/// [`Heartbeat::release_key`] of a box without a release key: its updates are off.
pub const NO_RELEASE_KEY: &str = "none";

fn yes() -> bool {
    true
}

/// What the cloud answers a heartbeat with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    pub server_time_ms: u64,
    /// The channel this device follows.
    pub channel: String,
    /// Set when a rollout includes this device and it is not on that version yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRelease>,
}

/// The release a device should install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRelease {
    pub version: String,
    /// Path of the signed manifest on the cloud the device is enrolled with
    /// (`/v1/releases/{version}/manifest`).
    pub manifest_url: String,
    pub rollout_id: String,
}

/// The signed facts about one release artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub channel: String,
    /// RFC 3339 UTC.
    pub created: String,
    /// RFC 3339 UTC; an updater refuses the manifest after this.
    pub expires: String,
    /// Seconds since the Unix epoch of `expires`, so a verifier needs no date parser.
    pub expires_unix: u64,
    /// Lowercase hex SHA-256 of the artifact.
    pub sha256: String,
    pub size: u64,
    /// Path of the artifact on the cloud (`/v1/releases/{version}/artifact`), resolved against
    /// the cloud URL the device is enrolled with.
    pub url: String,
}

/// What `GET /v1/releases/{version}/manifest` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// The manifest as JSON text: exactly the signed bytes.
    pub manifest: String,
    /// Base64 (standard, padded) ed25519 signature over the UTF-8 bytes of `manifest`.
    pub signature: String,
    /// Hex of the first 8 bytes of SHA-256 of the signing public key, to tell keys apart.
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("no release public key is configured; refusing every release")]
    NoKey,
    #[error("manifest is signed by key {got}, not the configured key {expected}")]
    WrongKey { expected: String, got: String },
    #[error("manifest signature is not valid base64 of 64 bytes")]
    MalformedSignature,
    #[error("manifest signature does not match its bytes")]
    BadSignature,
    #[error("manifest is not valid: {0}")]
    Malformed(String),
    #[error("manifest expired at {expires}")]
    Expired { expires: String },
}

/// Hex of the first 8 bytes of SHA-256 of `key`.
pub fn key_id(key: &VerifyingKey) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8])
}

/// Signs `manifest` (the cloud's side).
pub fn sign_manifest(key: &SigningKey, manifest: &Manifest) -> SignedManifest {
    let text = serde_json::to_string(manifest).expect("a manifest always serialises");
    let signature = key.sign(text.as_bytes());
    SignedManifest {
        manifest: text,
        signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        key_id: key_id(&key.verifying_key()),
    }
}

/// Checks `signed` against the configured `key` at `now_unix` and returns the manifest it
/// carries. `None` for the key fails closed.
pub fn verify_manifest(
    key: Option<&VerifyingKey>,
    signed: &SignedManifest,
    now_unix: u64,
) -> Result<Manifest, ManifestError> {
    let key = key.ok_or(ManifestError::NoKey)?;
    let expected = key_id(key);
    if signed.key_id != expected {
        return Err(ManifestError::WrongKey {
            expected,
            got: signed.key_id.clone(),
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&signed.signature)
        .map_err(|_| ManifestError::MalformedSignature)?;
    let signature = ed25519_dalek::Signature::from_slice(&raw)
        .map_err(|_| ManifestError::MalformedSignature)?;
    key.verify_strict(signed.manifest.as_bytes(), &signature)
        .map_err(|_| ManifestError::BadSignature)?;
    let manifest: Manifest = serde_json::from_str(&signed.manifest)
        .map_err(|error| ManifestError::Malformed(error.to_string()))?;
    if manifest.expires_unix <= now_unix {
        return Err(ManifestError::Expired {
            expires: manifest.expires,
        });
    }
    Ok(manifest)
}

/// A release version: `MAJOR.MINOR.PATCH` with an optional `-pre` part (letters, digits, dots,
/// hyphens). A pre-release sorts before its release; pre parts compare as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Option<String>,
}

/// The longest version accepted.
pub const MAX_VERSION_LEN: usize = 64;

impl ReleaseVersion {
    pub fn parse(text: &str) -> Result<ReleaseVersion, String> {
        let bad = || {
            format!(
                "version {text:?}: expected MAJOR.MINOR.PATCH with an optional -PRE (letters, digits, dots), e.g. 1.4.0 or 1.5.0-rc.1"
            )
        };
        if text.len() > MAX_VERSION_LEN {
            return Err(bad());
        }
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let numbers: Vec<u64> = core
            .split('.')
            .map(|part| {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    part.parse().ok()
                }
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let [major, minor, patch] = numbers[..] else {
            return Err(bad());
        };
        if let Some(pre) = pre
            && (pre.is_empty()
                || !pre
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return Err(bad());
        }
        Ok(ReleaseVersion {
            major,
            minor,
            patch,
            pre: pre.map(str::to_owned),
        })
    }
}

impl Ord for ReleaseVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for ReleaseVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

/// A release channel's name: 1–32 of `a-z`, `0-9`, `-` (`stable`, `canary`).
pub fn check_channel(channel: &str) -> Result<(), String> {
    if (1..=32).contains(&channel.len())
        && channel
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err(format!(
            "channel {channel:?}: expected 1-32 of a-z, 0-9 and -, such as stable or canary"
        ))
    }
}

/// Where the cloud serves a release's signed manifest.
pub fn manifest_path(version: &str) -> String {
    format!("/v1/releases/{version}/manifest")
}

/// Where the cloud serves a release's artifact (Range requests resume a download).
pub fn artifact_path(version: &str) -> String {
    format!("/v1/releases/{version}/artifact")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(expires_unix: u64) -> Manifest {
        Manifest {
            version: "1.2.0".into(),
            channel: "stable".into(),
            created: "2026-11-02T09:00:00Z".into(),
            expires: "2026-12-02T09:00:00Z".into(),
            expires_unix,
            sha256: "ab".repeat(32),
            size: 10,
            url: "/v1/releases/1.2.0/artifact".into(),
        }
    }

    #[test]
    fn manifests_verify_only_with_the_right_key_and_bytes() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let signed = sign_manifest(&key, &manifest(2_000));
        let public = key.verifying_key();
        assert_eq!(
            verify_manifest(Some(&public), &signed, 1_000),
            Ok(manifest(2_000))
        );
        assert_eq!(
            verify_manifest(None, &signed, 1_000),
            Err(ManifestError::NoKey)
        );
        assert!(matches!(
            verify_manifest(Some(&other.verifying_key()), &signed, 1_000),
            Err(ManifestError::WrongKey { .. })
        ));
        let mut tampered = signed.clone();
        tampered.manifest = tampered.manifest.replace("\"size\":10", "\"size\":11");
        assert_eq!(
            verify_manifest(Some(&public), &tampered, 1_000),
            Err(ManifestError::BadSignature)
        );
        let mut forged = signed.clone();
        forged.signature = "AAAA".into();
        assert_eq!(
            verify_manifest(Some(&public), &forged, 1_000),
            Err(ManifestError::MalformedSignature)
        );
        assert!(matches!(
            verify_manifest(Some(&public), &signed, 2_000),
            Err(ManifestError::Expired { .. })
        ));
    }

    #[test]
    fn versions_parse_and_order() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "v1.2.3",
            "1.2.x",
            "1.2.3-",
            "1.2.3-a b",
        ] {
            assert!(ReleaseVersion::parse(bad).is_err(), "{bad}");
        }
        let order = [
            "0.9.9",
            "1.0.0-rc.1",
            "1.0.0-rc.2",
            "1.0.0",
            "1.0.1",
            "1.10.0",
        ];
        for pair in order.windows(2) {
            let a = ReleaseVersion::parse(pair[0]).expect("valid");
            let b = ReleaseVersion::parse(pair[1]).expect("valid");
            assert!(a < b, "{a} < {b}");
            assert_eq!(a.to_string(), pair[0]);
        }
    }

    #[test]
    fn heartbeats_take_missing_optional_fields() {
        let beat: Heartbeat = serde_json::from_str(
            r#"{"version":"1.0.0","uptime_secs":5,"update":{"state":"rolled-back","reason":"not ready"}}"#,
        )
        .expect("a minimal heartbeat parses");
        assert!(beat.healthy);
        assert_eq!(beat.update.state, UpdateState::RolledBack);
        assert!(beat.update.state.is_failed());
        assert_eq!(beat.backlog, Backlog::default());
        assert_eq!(
            UpdateState::parse("rolled-back"),
            Some(UpdateState::RolledBack)
        );
    }
}
