//! The journal fields the guides promise (`journalctl -u sentra-edge COMPONENT=sync`), read back
//! from a real systemd-journald with a real journalctl.
//!
//! No booted systemd is needed: journald runs on its own when it finds no sockets handed to it,
//! making `/run/systemd/journal/socket` itself. The test gives it a private mount namespace
//! (`unshare --mount`) with fresh tmpfs on `/run/systemd` and `/run/log`, so the machine's own
//! journal, if it has one, is neither read nor written, and everything is gone when the
//! namespace's last process exits. The daemon is started in that namespace as systemd would start
//! it with `StandardOutput=journal` (`JOURNAL_STREAM` set), enrolled with a real cloud so that its
//! sync task has something to say. Needs root (mounts), as the system tests have here and in CI.

use sentra_system_tests::{Cloud, EdgeSite, bin};

/// Runs in the private namespace: journald, then the daemon until the sync task has logged,
/// then the journal's lines for `COMPONENT=sync` and for the crate's default-prefixed
/// `F_COMPONENT=sync` as JSON, one per line, each set after a marker line.
const SCRIPT: &str = r#"
set -eu
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || { mkdir -p /run/systemd; mount -t tmpfs tmpfs /run/systemd; }
mkdir -p /run/log
mount -t tmpfs tmpfs /run/log
/lib/systemd/systemd-journald &
journald=$!
i=0
until [ -S /run/systemd/journal/socket ]; do
    i=$((i + 1)); [ "$i" -lt 300 ] || { echo "journald made no socket" >&2; exit 1; }
    sleep 0.1
done
JOURNAL_STREAM=0:0 RUST_LOG=info SENTRA_EDGE__LAN__MDNS=false "$EDGE" run --config "$CONFIG" >/dev/null 2>&1 &
edge=$!
i=0
until journalctl -q -D /run/log/journal COMPONENT=sync SYSLOG_IDENTIFIER=sentra-edge -o cat | grep -q .; do
    i=$((i + 1)); [ "$i" -lt 600 ] || { echo "no COMPONENT=sync line within 60 s" >&2; break; }
    kill -0 "$edge" 2>/dev/null || { echo "sentra-edge exited" >&2; break; }
    sleep 0.1
done
kill -TERM "$edge" 2>/dev/null || true
wait "$edge" || true
echo '--- sync'
journalctl -q -D /run/log/journal COMPONENT=sync -o json --no-pager
echo '--- F_'
journalctl -q -D /run/log/journal F_COMPONENT=sync -o json --no-pager
kill "$journald"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn journalctl_finds_the_sync_tasks_lines_by_component() {
    let cloud = Cloud::start().await;
    let site = EdgeSite::new("JRN01", "");
    site.enroll(&cloud.url, &cloud.enrollment_token("JRN01"));

    let out = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT])
        .env("EDGE", bin("sentra-edge"))
        .env("CONFIG", &site.config)
        .output()
        .await
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let section = |name: &str| -> Vec<serde_json::Value> {
        stdout
            .split(&format!("--- {name}\n"))
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|line| !line.starts_with("--- "))
            .map(|line| serde_json::from_str(line).expect("journalctl -o json line"))
            .collect()
    };
    let sync = section("sync");
    assert!(
        !sync.is_empty(),
        "journalctl COMPONENT=sync found nothing\n{stdout}\n{stderr}"
    );
    for entry in &sync {
        assert_eq!(entry["SYSLOG_IDENTIFIER"], "sentra-edge", "{entry}");
        assert_eq!(entry["COMPONENT"], "sync", "{entry}");
        assert!(
            entry["MESSAGE"].as_str().is_some_and(|m| !m.is_empty()),
            "{entry}"
        );
        assert!(
            entry["TARGET"]
                .as_str()
                .is_some_and(|t| t.starts_with("sentra_edge::")),
            "each line names its module: {entry}"
        );
    }
    assert!(
        sync.iter().any(|e| e["TARGET"]
            .as_str()
            .is_some_and(|t| t.starts_with("sentra_edge::sync"))),
        "the sync task's own lines are there: {sync:?}"
    );
    assert!(
        section("F_").is_empty(),
        "no field carries the crate's default F_ prefix"
    );
}
