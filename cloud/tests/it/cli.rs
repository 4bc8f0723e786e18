//! The command line itself: exit codes, error reporting, `version`, `--config`.

use std::io::Write as _;

use crate::support::{Server, run};

#[tokio::test]
async fn bad_config_exits_2_and_reports_every_error() {
    let output = run(
        &["serve"],
        &[("SENTRA_CLOUD__HTTP__LISTEN", "notanaddress")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", output.stderr);
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per error: {lines:#?}");
    assert!(
        lines.iter().all(|line| line.starts_with("error: ")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("SENTRA_CLOUD__HTTP__LISTEN: invalid value `notanaddress`")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.contains("DATABASE_URL")),
        "{lines:#?}"
    );
    assert!(output.stdout.is_empty(), "stdout: {}", output.stdout);
}

#[tokio::test]
async fn config_errors_never_show_passwords() {
    let output = run(
        &["migrate"],
        &[
            (
                "DATABASE_URL",
                "postgres://sentra:hunter2@db:notaport/sentra",
            ),
            ("REDIS_URL", "redis://:hunter3@redis:notaport"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", output.stderr);
    assert_eq!(output.stderr.lines().count(), 2, "{}", output.stderr);
    assert!(
        output.stderr.contains("postgres://sentra:***@db"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("hunter"), "{}", output.stderr);
}

#[tokio::test]
async fn missing_config_file_exits_2() {
    let output = run(
        &["migrate", "--config", "/nonexistent/sentra-cloud.toml"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1/x")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", output.stderr);
    assert!(
        output
            .stderr
            .contains("cannot read config file /nonexistent/sentra-cloud.toml"),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    for args in [&["frobnicate"][..], &["serve", "--no-such-flag"], &[]] {
        let output = run(args, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.stderr);
    }
}

#[tokio::test]
async fn version_prints_name_and_version() {
    let output = run(&["version"], &[]).await;
    assert!(output.status.success());
    assert_eq!(
        output.stdout,
        concat!("sentra-cloud ", env!("CARGO_PKG_VERSION"), "\n")
    );
}

#[tokio::test]
async fn serve_reads_the_config_file() {
    let mut file = tempfile::NamedTempFile::new().expect("temp dir is writable");
    // Nothing is reachable here: the lazy connections let serve start all the same.
    write!(
        file,
        "[database]\nurl = \"postgres://postgres@127.0.0.1:{}/none\"\n",
        crate::support::closed_port()
    )
    .expect("write the config file");
    let path = file.path().to_str().expect("temp path is UTF-8");

    // DATABASE_URL is only in the file: had serve not read it, it would have exited 2.
    let server = Server::start(&["--config", path], &[]).await;
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, _, _) = server.terminate().await;
    assert!(status.success());
}

#[tokio::test]
async fn config_defaults_prints_the_example_file() {
    let output = run(&["config", "defaults"], &[]).await;
    assert!(output.status.success(), "stderr: {}", output.stderr);
    assert_eq!(output.stdout, include_str!("../../cloud.example.toml"));
}

#[tokio::test]
async fn config_check_exits_2_with_every_error() {
    let output = run(
        &["config", "check"],
        &[
            ("SENTRA_CLOUD__HTTP__LISTEN", "notanaddress"),
            ("SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS", "0"),
            ("REDIS_URL", "redis://:hunter3@redis:notaport"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", output.stderr);
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "one line per error: {lines:#?}");
    for fragment in [
        "SENTRA_CLOUD__HTTP__LISTEN",
        "DATABASE_URL",
        "REDIS_URL: invalid value `redis://:***@redis:notaport`",
        "SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS",
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with("error: ") && line.contains(fragment)),
            "{fragment:?} not in {lines:#?}"
        );
    }
    assert!(!output.stderr.contains("hunter"), "{}", output.stderr);
    assert!(output.stdout.is_empty(), "stdout: {}", output.stdout);
}

#[tokio::test]
async fn config_check_shows_values_in_force_without_secrets() {
    let output = run(
        &["config", "check"],
        &[
            ("DATABASE_URL", "postgres://sentra:hunter2@db:5432/sentra"),
            ("SENTRA_CLOUD__BOOKING__HOLD_SECONDS", "30"),
            ("SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET", "whsec-hunter4"),
        ],
    )
    .await;
    assert!(output.status.success(), "stderr: {}", output.stderr);
    for line in [
        "url = \"postgres://sentra:***@db:5432/sentra\"  # from DATABASE_URL",
        "hold_secs = 30  # from SENTRA_CLOUD__BOOKING__HOLD_SECONDS",
        "webhook_secret = \"***\"  # from SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET",
    ] {
        assert!(
            output.stdout.contains(line),
            "{line:?} not in:\n{}",
            output.stdout
        );
    }
    // The old name still works, and the operator is told to rename it.
    assert!(
        output.stderr.contains(
            "warning: SENTRA_CLOUD__BOOKING__HOLD_SECONDS is deprecated: rename it SENTRA_CLOUD__BOOKING__HOLD_SECS"
        ),
        "{}",
        output.stderr
    );
    for text in [&output.stdout, &output.stderr] {
        assert!(!text.contains("hunter"), "{text}");
    }
}
