//! The files in `systemd/` checked by systemd's own tools (Debian 12: systemd 252, no booted
//! systemd needed): every service's `systemd-analyze security --offline=yes` exposure at or
//! below 2.0, `systemd-analyze verify` of every unit (services, the update timer, the restart
//! path) without a warning, the self-update units agreeing with the updater and with each other,
//! and the sysusers and tmpfiles files applied to a scratch root by `systemd-sysusers --root` and
//! `systemd-tmpfiles --root`.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The highest exposure we accept (systemd-analyze prints 0.0–10.0; 1.5 is reachable for this unit).
const MAX_EXPOSURE: f64 = 2.0;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The units in `dir` with one of `kinds` as extension, sorted.
pub fn units_in(dir: &Path, kinds: &[&str]) -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| kinds.iter().any(|k| e == *k)))
        .collect();
    units.sort();
    assert!(!units.is_empty(), "no units in {}", dir.display());
    units
}

fn units() -> Vec<PathBuf> {
    units_in(
        &repo().join("systemd"),
        &["service", "socket", "timer", "path"],
    )
}

/// `systemd-analyze security` rates the sandbox of services (a timer or path unit runs nothing
/// itself: it would be rated as an empty service).
fn services() -> Vec<PathBuf> {
    units_in(&repo().join("systemd"), &["service"])
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e}; install systemd (apt-get install systemd; scripts/test.sh does)")
    });
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// "→ Overall exposure level for sentra-edge.service: 1.5 OK 🙂" → 1.5
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn every_unit_scores_at_most_2_0_in_systemd_analyze_security() {
    let mut scores = Vec::new();
    for unit in services() {
        // --threshold is in tenths: the command itself fails above 2.0, as a CI gate would.
        let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32);
        let (code, report) = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager", &threshold])
            .arg(&unit));
        let score = exposure(&report)
            .unwrap_or_else(|| panic!("no exposure level for {}:\n{report}", unit.display()));
        let name = unit
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        eprintln!("systemd-analyze security --offline=yes {name}: exposure {score:.1}");
        assert!(
            score <= MAX_EXPOSURE && code == 0,
            "{name}: exposure {score} (exit {code}), want <= {MAX_EXPOSURE}:\n{report}"
        );
        scores.push((name, score));
    }
    eprintln!("unit exposure scores: {scores:?}");
}

/// The program our units start: the updater's `current` link (appliance/src/update/install.rs).
const CURRENT_EXE: &str = "/var/lib/sentra/app/current/sentra-edge";

/// `systemd-analyze verify` of `units` (copied to one directory, so a timer or path unit finds
/// its service) without a line about any of them; `programs` maps an ExecStart program to one
/// that exists here, since verify checks that it does.
pub fn verify_units(units: &[PathBuf], programs: &[(&str, &Path)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut copies = Vec::new();
    for unit in units {
        let mut text = std::fs::read_to_string(unit).expect("read unit");
        for (from, to) in programs {
            text = text.replace(from, &to.display().to_string());
        }
        let copy = dir.path().join(unit.file_name().expect("name"));
        std::fs::write(&copy, text).expect("write unit copy");
        copies.push(copy);
    }
    for copy in &copies {
        let (code, report) = run(Command::new("systemd-analyze")
            .args(["verify", "--no-pager"])
            .arg(copy));
        let ours: Vec<&str> = report
            .lines()
            .filter(|l| {
                copies
                    .iter()
                    .any(|c| l.contains(&*c.file_name().expect("name").to_string_lossy()))
            })
            .collect();
        assert!(
            code == 0 && ours.is_empty(),
            "systemd-analyze verify {} (exit {code}):\n{report}",
            copy.display()
        );
    }
}

#[test]
fn every_unit_verifies_without_warnings() {
    let edge = sentra_system_tests::bin("sentra-edge");
    verify_units(&units(), &[(CURRENT_EXE, &edge)]);
}

fn unit_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(repo().join("systemd").join(name))
        .unwrap_or_else(|e| panic!("systemd/{name}: {e}"))
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_self_update_units_agree_with_the_updater_and_each_other() {
    let defaults = sentra_edge::config::Config::defaults();
    let current = defaults.update.install_root.join("current/sentra-edge");
    assert_eq!(current, Path::new(CURRENT_EXE), "update.install_root moved");
    let daemon = unit_lines("sentra-edge.service");
    let update = unit_lines("sentra-edge-update.service");
    let restart_path = unit_lines("sentra-edge-restart.path");
    let restart = unit_lines("sentra-edge-restart.service");
    let timer = unit_lines("sentra-edge-update.timer");
    let has = |lines: &[String], line: &str| lines.iter().any(|l| l == line);

    // Both start the release `current` points to; the daemon cannot write its releases.
    assert!(
        daemon
            .iter()
            .any(|l| l.starts_with(&format!("ExecStart={CURRENT_EXE} run "))),
        "sentra-edge.service does not start {CURRENT_EXE}: {daemon:?}"
    );
    let app = defaults.update.install_root.display().to_string();
    assert!(
        has(&daemon, &format!("ReadOnlyPaths={app}")),
        "the daemon may write its releases"
    );
    assert!(update.iter().any(|l| l.starts_with(&format!(
        "ExecStart={CURRENT_EXE} update apply --config /etc/sentra/edge.toml"
    ))));

    // The updater is the daemon's user with the daemon's credential, and no capability.
    for line in [
        "Type=oneshot",
        "User=sentra",
        "StateDirectory=sentra",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "LoadCredentialEncrypted=store-key:/etc/sentra/store-key.cred",
    ] {
        assert!(
            has(&update, line),
            "sentra-edge-update.service lacks {line:?}"
        );
    }
    assert!(
        update.iter().all(|l| !l.starts_with("Restart=")),
        "a failed update must not be retried at once"
    );

    // Its restart command writes the file the path unit watches, and that unit restarts the
    // daemon: the one privileged step, done by systemd.
    let watched = restart_path
        .iter()
        .find_map(|l| l.strip_prefix("PathModified="))
        .expect("sentra-edge-restart.path watches a file");
    let env = update
        .iter()
        .find_map(|l| l.strip_prefix("Environment="))
        .expect("the update unit sets the restart command");
    let env = env.trim_matches('"');
    let command = env
        .strip_prefix("SENTRA_EDGE__UPDATE__RESTART_COMMAND=")
        .unwrap_or_else(|| panic!("not the restart command's variable: {env}"))
        .trim_matches('"');
    assert!(
        command.ends_with(&format!("> {watched}")),
        "restart command {command:?} does not write {watched}"
    );
    assert!(
        Path::new(watched).starts_with(&defaults.store.data_dir),
        "{watched} is outside the state directory the updater may write"
    );
    assert!(has(&restart_path, "Unit=sentra-edge-restart.service"));
    assert!(has(
        &restart,
        "ExecStart=/usr/bin/systemctl restart --no-block sentra-edge.service"
    ));

    // The timer starts the update service (its default name) every few minutes, spread out.
    assert!(timer.iter().any(|l| l.starts_with("OnUnitActiveSec=")));
    assert!(timer.iter().any(|l| l.starts_with("RandomizedDelaySec=")));
    assert!(timer.iter().all(|l| !l.starts_with("Unit=")));
}

#[test]
fn the_unit_is_a_watched_notify_service_with_the_store_key_credential() {
    let unit = std::fs::read_to_string(repo().join("systemd/sentra-edge.service")).expect("unit");
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "User=sentra",
        "SupplementaryGroups=dialout lp",
        "ProtectSystem=strict",
        "StateDirectory=sentra",
        "DevicePolicy=closed",
        "PrivateDevices=no",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "LoadCredentialEncrypted=store-key:/etc/sentra/store-key.cred",
        "RestartPreventExitStatus=2 3",
    ] {
        assert!(has(line), "sentra-edge.service lacks {line:?}");
    }
    assert!(
        unit.lines().any(|l| l.starts_with("WatchdogSec=")),
        "sentra-edge.service has no WatchdogSec="
    );
    // The credential name is the one the daemon reads.
    assert_eq!(sentra_edge::store::key::CREDENTIAL_NAME, "store-key");
}

/// A scratch root with Debian's base groups, as an image or a fresh box has them.
pub fn scratch_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").expect("passwd");
    std::fs::write(etc.join("group"), "root:x:0:\nlp:x:7:\ndialout:x:20:\n").expect("group");
    root
}

fn lookup(root: &Path, file: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("etc").join(file)).expect("read");
    text.lines()
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|f| f[0] == name)
        .unwrap_or_else(|| panic!("{name} not in /etc/{file}:\n{text}"))
}

/// The `sentra` user exists in dialout and lp, and its directories have the right owner and mode.
pub fn assert_user_and_dirs(root: &Path) {
    let user = lookup(root, "passwd", "sentra");
    let uid: u32 = user[2].parse().expect("uid");
    let gid: u32 = user[3].parse().expect("gid");
    assert!(uid > 0 && uid < 1000, "a system user: {user:?}");
    assert_eq!(user[6], "/usr/sbin/nologin", "no login shell: {user:?}");
    for group in ["dialout", "lp"] {
        let g = lookup(root, "group", group);
        assert!(
            g[3].split(',').any(|m| m == "sentra"),
            "sentra not in {group}: {g:?}"
        );
    }
    for (dir, mode, owner, group) in [
        ("var/lib/sentra", 0o700, uid, gid),
        ("var/lib/sentra/app", 0o700, uid, gid),
        ("etc/sentra", 0o750, 0, gid),
    ] {
        let meta = std::fs::metadata(root.join(dir)).unwrap_or_else(|e| panic!("/{dir}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "/{dir} mode");
        assert_eq!((meta.uid(), meta.gid()), (owner, group), "/{dir} owner");
    }
}

#[test]
fn sysusers_and_tmpfiles_make_the_user_and_its_directories() {
    let root = scratch_root();
    let r = root.path().display().to_string();
    let (code, out) = run(Command::new("systemd-sysusers")
        .arg(format!("--root={r}"))
        .arg(repo().join("systemd/sentra-edge.sysusers")));
    assert_eq!(code, 0, "systemd-sysusers: {out}");
    let (code, out) = run(Command::new("systemd-tmpfiles")
        .args(["--create", &format!("--root={r}")])
        .arg(repo().join("systemd/sentra-edge.tmpfiles")));
    assert_eq!(code, 0, "systemd-tmpfiles (needs root for chown): {out}");
    assert_user_and_dirs(root.path());
}
