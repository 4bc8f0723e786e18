//! A keyboard-mode (HID) scanner end to end: the real daemon with `scanner.kind = "hid"` reads
//! real 24-byte `input_event` records, written by the test into a FIFO named as
//! `scanner.device`.
//!
//! What this does not exercise: the grab of a real event node. This host's kernel has evdev but
//! no uinput, so no virtual keyboard can be made here; a FIFO is not an event node, so the grab
//! is refused and the daemon says so in the scanner's status (asserted below), then reads the
//! records all the same. The grab itself is one call (`evdev::RawDevice::grab`) on a box with a
//! scanner; docs/technician.md says how to check it there (`evtest --grab` fails while the daemon
//! holds it).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Device, Edge, Site};

const DEADLINE: Duration = Duration::from_secs(30);

// Linux key codes (input-event-codes.h), written out here rather than taken from the daemon.
const EV_SYN: u16 = 0;
const EV_KEY: u16 = 1;
const EV_MSC: u16 = 4;
const KEY_ENTER: u16 = 28;
const KEY_TAB: u16 = 15;
const KEY_LEFTSHIFT: u16 = 42;
const KEY_LEFTCTRL: u16 = 29;
const KEY_F1: u16 = 59;

/// One `struct input_event` as the kernel writes it on 64-bit Linux.
fn record(kind: u16, code: u16, value: i32) -> [u8; 24] {
    let mut r = [0u8; 24];
    r[0..8].copy_from_slice(&1_733_400_000i64.to_ne_bytes());
    r[8..16].copy_from_slice(&123_456i64.to_ne_bytes());
    r[16..18].copy_from_slice(&kind.to_ne_bytes());
    r[18..20].copy_from_slice(&code.to_ne_bytes());
    r[20..24].copy_from_slice(&value.to_ne_bytes());
    r
}

/// A key pressed and released as a USB keyboard reports it (MSC_SCAN, KEY, SYN each time).
fn tap(out: &mut Vec<u8>, code: u16, value: i32) {
    out.extend(record(EV_MSC, 4, 0x70000 + i32::from(code)));
    out.extend(record(EV_KEY, code, value));
    out.extend(record(EV_SYN, 0, 0));
}

/// The key (and Shift) a scanner sends for `c` on a US layout.
fn key_of(c: char) -> (u16, bool) {
    let digits = "1234567890";
    if let Some(i) = digits.find(c) {
        return (2 + i as u16, false);
    }
    let rows = [("qwertyuiop", 16u16), ("asdfghjkl", 30), ("zxcvbnm", 44)];
    for (row, first) in rows {
        if let Some(i) = row.find(c.to_ascii_lowercase()) {
            return (first + i as u16, c.is_ascii_uppercase());
        }
    }
    match c {
        '-' => (12, false),
        ']' => (27, false),
        _ => panic!("the test types no {c:?}"),
    }
}

/// The records a scanner sends for `line`: `\x1d` as Ctrl+], then the terminator.
fn typed(line: &str, terminator: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for c in line.chars() {
        if c == '\x1d' {
            tap(&mut out, KEY_LEFTCTRL, 1);
            tap(&mut out, 27, 1);
            tap(&mut out, 27, 0);
            tap(&mut out, KEY_LEFTCTRL, 0);
            continue;
        }
        let (code, shift) = key_of(c);
        if shift {
            tap(&mut out, KEY_LEFTSHIFT, 1);
        }
        tap(&mut out, code, 1);
        tap(&mut out, code, 0);
        if shift {
            tap(&mut out, KEY_LEFTSHIFT, 0);
        }
    }
    tap(&mut out, terminator, 1);
    tap(&mut out, terminator, 0);
    out
}

/// The scanner: a FIFO at `path`, held open for writing (so the daemon's reads wait, not end).
struct FakeHid {
    writer: std::fs::File,
}

impl FakeHid {
    fn plug_in(path: &Path) -> FakeHid {
        let st = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo");
        assert!(st.success(), "mkfifo {}", path.display());
        // Read and write: opening never waits for a reader, and the FIFO stays open.
        let writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open the FIFO");
        FakeHid { writer }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write records");
    }

    /// Unplug: the name goes, then the device (the daemon reads end of file and finds no path).
    fn unplug(self, path: &Path) {
        std::fs::remove_file(path).expect("remove the FIFO");
        drop(self.writer);
    }
}

struct Rig {
    edge: Edge,
    path: PathBuf,
    _dir: tempfile::TempDir,
    admin: Device,
}

impl Rig {
    async fn scanner(&self) -> Value {
        let (s, b) = self.edge.get(&self.admin, "/v1/scanner").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let v = self.scanner().await;
            if pred(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "scanner never reached {what}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn scan(&self, hid: &mut FakeHid, bytes: &[u8]) -> Value {
        let before = self.scanner().await;
        let seen = before["scans"].as_u64().expect("scans")
            + before["rejected"].as_u64().expect("rejected");
        hid.send(bytes);
        let v = self
            .wait_for("one more scan", |v| {
                v["scans"].as_u64().unwrap_or(0) + v["rejected"].as_u64().unwrap_or(0) > seen
            })
            .await;
        v["recent"][0].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyboard_mode_scanner_types_scans_into_the_daemon_not_a_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scanner-hid");
    let site = Site::with_config(&format!(
        "[scanner]\nkind = \"hid\"\ndevice = {:?}\nname = \"kasir\"\nretry_max_ms = 200\n",
        path.display().to_string()
    ));
    site.load_demo_data();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    let rig = Rig {
        edge,
        path,
        _dir: dir,
        admin,
    };

    // Not plugged in: absent, naming the udev name to look for.
    let v = rig.wait_for("absent", |v| v["state"] == "absent").await;
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("sentra-scanner-hid"),
        "{v}"
    );

    let mut hid = FakeHid::plug_in(&rig.path);
    let v = rig
        .wait_for("connected", |v| v["state"] == "connected")
        .await;
    // A FIFO is no event node: the grab is refused, and the status says so.
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not an input event device"),
        "{v}"
    );

    // An EAN-13 typed as digits and Enter: a look-up of the part.
    let n = rig.scan(&mut hid, &typed("8991234567891", KEY_ENTER)).await;
    assert_eq!(n["outcome"], "lookup", "{n}");
    assert_eq!(n["stock"]["sku"], "OIL-10W40-1L", "{n}");
    assert_eq!(n["scanner"], "kasir", "{n}");
    // A GS1-128 with its AIM prefix, capitals by Shift, GS by Ctrl+], Tab as the terminator.
    let n = rig
        .scan(
            &mut hid,
            &typed("]C1010899555666777210LOT-7\x1d17271231", KEY_TAB),
        )
        .await;
    assert_eq!(
        (n["outcome"].as_str(), n["symbology"].as_str()),
        (Some("lookup"), Some("gs1-128")),
        "{n}"
    );
    assert_eq!(n["stock"]["sku"], "BRK-PAD-FR", "{n}");
    // A bad check digit is refused like a serial scanner's.
    let n = rig.scan(&mut hid, &typed("8991234567895", KEY_ENTER)).await;
    assert_eq!(n["reason"], "check_digit", "{n}");

    // An unknown key (F1) spoils its line: noise, not a scan; a record cut in two still reads.
    let before = rig.scanner().await;
    let mut bad = Vec::new();
    tap(&mut bad, 9, 1);
    tap(&mut bad, KEY_F1, 1);
    tap(&mut bad, KEY_ENTER, 1);
    hid.send(&bad);
    let good = typed("8990011223340", KEY_ENTER);
    hid.send(&good[..30]);
    let n = rig.scan(&mut hid, &good[30..]).await;
    assert_eq!(n["stock"]["sku"], "FLT-OIL-AVZ", "{n}");
    let after = rig.scanner().await;
    assert_eq!(
        after["noise_bytes"].as_u64().expect("noise")
            - before["noise_bytes"].as_u64().expect("noise"),
        3,
        "8, F1 and Enter: {after}"
    );
    assert_eq!(after["rejected"], before["rejected"], "noise is not a scan");

    // Unplugged and plugged back: absent, then connected again, and scans read.
    hid.unplug(&rig.path);
    rig.wait_for("absent after unplug", |v| v["state"] == "absent")
        .await;
    let mut hid = FakeHid::plug_in(&rig.path);
    let v = rig
        .wait_for("reconnected", |v| {
            v["state"] == "connected" && v["reconnects"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    assert!(v["reconnects"].as_u64().unwrap_or(0) >= 1, "{v}");
    let n = rig.scan(&mut hid, &typed("8991234567891", KEY_ENTER)).await;
    assert_eq!(n["outcome"], "lookup", "{n}");
    assert_eq!(
        rig.edge.stop().await,
        0,
        "a clean stop with the scanner open"
    );
}
