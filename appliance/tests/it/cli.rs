//! The command line as an operator meets it: exit codes, every config error at once, status.

use crate::harness::{BIN, Site};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_are_all_reported_with_exit_2() {
    let site = Site::with_config("[sotre]\nx = 1\n[log]\nlevel = \"info\"\n");
    let cfg = site.config.to_str().expect("utf8");
    let (code, _, err) = run(
        &["run", "--config", cfg],
        &[
            ("SENTRA_EDGE__API__LISTEN", "not-an-address"),
            ("SENTRA_EDGE__STORE__READERS", "0"),
            ("SENTRA_EDGE__API__MAX_BODY_BYTES", "1"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    for needle in [
        "api.listen",
        "SENTRA_EDGE__API__LISTEN",
        "api.max_body_bytes",
        "sotre",
        "store.readers",
        "4 configuration error(s)",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    let (code, _, err) = run(&["run", "--config", "/nonexistent/edge.toml"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/edge.toml"), "{err}");
}

#[test]
fn usage_version_and_defaults() {
    assert_eq!(
        run(&["frobnicate"], &[]).0,
        2,
        "unknown command is a usage error"
    );
    let (code, out, _) = run(&["version"], &[]);
    assert_eq!(
        (code, out.trim()),
        (0, concat!("sentra-edge ", env!("CARGO_PKG_VERSION")))
    );
    let (code, out, _) = run(&["config", "defaults"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out, include_str!("../../edge.example.toml"));
    let (code, _, err) = run(&["keygen", "/proc/forbidden/key"], &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("/proc/forbidden/key"), "{err}");
}

#[test]
fn keygen_never_overwrites() {
    let site = Site::new();
    let before = std::fs::read(&site.key_file).expect("key");
    let (code, _, err) = run(&["keygen", site.key_file.to_str().expect("utf8")], &[]);
    assert_eq!(code, 3);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&site.key_file).expect("key"), before);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&site.key_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn status_and_pair_work_without_a_daemon() {
    let site = Site::new();
    site.load_demo_data();
    let (code, out, err) = site.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("JKT01") && out.contains("5 events, 5 pending"),
        "{out}"
    );
    let code = site.pairing_code("storekeeper");
    assert_eq!(code.len(), 9);
}
