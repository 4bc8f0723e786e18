//! The daemon speaks systemd's notify protocol (sd_notify(3)): READY once the API serves, and
//! watchdog pings only while a probe proves that the store's writer commits and the API answers.
//! A datagram socket of the test's own stands in for systemd's `NOTIFY_SOCKET`.

use std::time::Duration;

use reqwest::Method;
use tokio::net::UnixDatagram;

use crate::harness::{Edge, Site, open_db};

/// Generous: a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(60);

/// The next notify message for which `want` holds (earlier ones are skipped).
async fn next(sock: &UnixDatagram, what: &str, want: impl Fn(&str) -> bool) -> String {
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            let n = sock.recv(&mut buf).await.expect("recv notify");
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if want(&msg) {
                return msg;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no notify message with {what} within {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_once_serving_and_watchdog_pings_only_while_the_writer_commits() {
    let site = Site::new();
    let path = site.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    let path = path.display().to_string();
    // A 4 s watchdog: the daemon probes every 2 s.
    let edge = Edge::spawn(
        &site.config,
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "4000000")],
    )
    .await;

    let ready = next(&sock, "READY=1", |m| m.lines().any(|l| l == "READY=1")).await;
    let port = edge.tls_base.rsplit(':').next().expect("port");
    assert!(
        ready.contains("STATUS=serving: api https ") && ready.contains(&format!(":{port},")),
        "READY names the API it serves: {ready:?}"
    );
    let (status, _) = edge.call(None, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "the API answers once READY was sent");

    next(&sock, "WATCHDOG=1", |m| {
        m.lines().any(|l| l == "WATCHDOG=1")
    })
    .await;

    // Hold SQLite's write lock: the writer cannot commit, so the probe fails and the pings stop
    // (systemd would restart the daemon after WatchdogSec).
    let conn = open_db(&site);
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let status = next(&sock, "a failed probe", |m| {
        m.contains("STATUS=watchdog: not pinging: store writer")
    })
    .await;
    assert!(
        !status.lines().any(|l| l == "WATCHDOG=1"),
        "a failed probe is not a ping: {status:?}"
    );
    conn.execute_batch("ROLLBACK").expect("release the lock");
    drop(conn);
    let ping = next(&sock, "WATCHDOG=1 after the writer recovered", |m| {
        m.lines().any(|l| l == "WATCHDOG=1")
    })
    .await;
    assert!(ping.contains("STATUS=serving"), "{ping:?}");

    assert_eq!(edge.stop().await, 0);
    next(&sock, "STOPPING=1", |m| {
        m.lines().any(|l| l == "STOPPING=1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_watchdog_task_without_watchdog_usec() {
    // Outside systemd (or with the watchdog off) READY is still sent and nothing else happens;
    // the daemon serves as before.
    let site = Site::new();
    let path = site.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    let path = path.display().to_string();
    let edge = Edge::spawn(&site.config, &[("NOTIFY_SOCKET", &path)]).await;
    next(&sock, "READY=1", |m| m.lines().any(|l| l == "READY=1")).await;
    let (status, _) = edge.call(None, Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(edge.stop().await, 0);
    // The next message after READY is STOPPING: no watchdog pings in between.
    let msg = next(&sock, "any message", |_| true).await;
    assert!(msg.contains("STOPPING=1"), "expected STOPPING, got {msg:?}");
}

/// journald's native socket, where tracing-journald sends every line (a fixed path in the crate).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

#[tokio::test(flavor = "multi_thread")]
async fn journal_lines_carry_component_as_documented() {
    // `journalctl -u sentra-edge COMPONENT=sync` (README, systemd/README.md) only finds lines whose
    // journal field is spelt COMPONENT. The daemon runs in a private mount namespace (as root:
    // CI and scripts/test.sh are) where the test's own datagram socket is bound over journald's
    // path, so the test reads exactly the fields journald would have stored.
    assert!(
        is_root(),
        "this test mounts in a private namespace: run it as root (CI and scripts/test.sh do)"
    );
    let site = Site::new();
    let path = site.dir.path().join("journal.sock");
    let sock = UnixDatagram::bind(&path).expect("bind journal socket");
    let script = format!(
        "set -e; mkdir -p /run/systemd/journal; mount -t tmpfs tmpfs /run/systemd/journal; \
         touch {JOURNAL_SOCKET}; mount --bind \"$1\" {JOURNAL_SOCKET}; shift; exec \"$@\""
    );
    let mut child = tokio::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(&path)
        .arg(crate::harness::BIN)
        .arg("run")
        .arg("--config")
        .arg(&site.config)
        // systemd sets JOURNAL_STREAM when the output goes to the journal.
        .env("JOURNAL_STREAM", "8:1")
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn unshare (util-linux)");
    let mut buf = vec![0u8; 64 * 1024];
    let entry = tokio::time::timeout(WAIT, async {
        loop {
            let n = sock.recv(&mut buf).await.expect("recv journal entry");
            let fields = journal_fields(&buf[..n]);
            if fields.iter().any(|(name, _)| name == "COMPONENT") {
                return fields;
            }
            assert!(
                !fields.iter().any(|(name, _)| name == "F_COMPONENT"),
                "fields carry no prefix: {fields:?}"
            );
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no journal entry with COMPONENT within {WAIT:?}"));
    assert!(
        entry.contains(&("SYSLOG_IDENTIFIER".to_owned(), "sentra-edge".to_owned())),
        "{entry:?}"
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The fields of one entry in journald's native protocol: `NAME=value\n`, or `NAME\n`, a
/// little-endian u64 length, the value's bytes and `\n` (what tracing-journald writes).
fn journal_fields(mut data: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while let Some(end) = data.iter().position(|&b| b == b'\n' || b == b'=') {
        let name = String::from_utf8_lossy(&data[..end]).into_owned();
        let rest = &data[end + 1..];
        let (value, next) = if data[end] == b'=' {
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            (&rest[..stop], stop + 1)
        } else {
            let len = usize::try_from(u64::from_le_bytes(rest[..8].try_into().expect("length")))
                .expect("length fits");
            (&rest[8..8 + len], 8 + len + 1)
        };
        data = rest.get(next..).unwrap_or_default();
        fields.push((name, String::from_utf8_lossy(value).into_owned()));
    }
    fields
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_the_writer_cannot_commit() {
    // Every write goes through the store's writer thread. With another connection holding
    // SQLite's write lock the writer commits nothing (every write would answer 503), so the box
    // is not ready, though its readers still answer. It is ready again once the lock is gone.
    let site = Site::new();
    let edge = site.start().await;
    let (status, body) = edge.call(None, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{body}");

    let conn = open_db(&site);
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let (status, body) = edge.call(None, Method::GET, "/readyz", None, None).await;
    assert_eq!(
        status, 503,
        "not ready while the writer cannot commit: {body}"
    );
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("store writer")),
        "{body}"
    );
    let (status, _) = edge.call(None, Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200, "alive, only not ready");
    conn.execute_batch("ROLLBACK").expect("release the lock");
    drop(conn);

    // The writer finishes what queued behind the lock (within its busy timeout), then commits
    // again: ready. Polled, a bounded number of times.
    let mut last = edge.call(None, Method::GET, "/readyz", None, None).await;
    for _ in 0..100 {
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = edge.call(None, Method::GET, "/readyz", None, None).await;
    }
    assert_eq!(last.0, 200, "ready again: {}", last.1);
    assert_eq!(edge.stop().await, 0);
}
