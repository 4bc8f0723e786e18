//! The shipped binary: `scripts/build-static.sh` builds `sentra-edge` for x86_64 musl (a no-op
//! when `scripts/test.sh` has just built it), and this checks that `readelf -d` lists no NEEDED
//! library, that it runs inside an empty chroot (no libc, no /proc, nothing but itself: `version`,
//! then `demo` serving `/readyz` from an encrypted store in the chroot's /tmp), and
//! that `provisioning/install.sh --root` puts it and our files into a scratch root with the
//! daemon's user and directories. Prints the stripped size.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::systemd::{assert_user_and_dirs, repo, scratch_root};

fn build_static() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/build-static.sh"))
        .current_dir(repo())
        .output()
        .expect("run scripts/build-static.sh");
    assert!(
        out.status.success(),
        "scripts/build-static.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("the script prints the binary's path")
        .to_owned();
    let path = PathBuf::from(path);
    if path.is_absolute() {
        path
    } else {
        repo().join(path)
    }
}

#[test]
fn the_static_binary_needs_no_library_and_installs_into_a_root() {
    assert!(
        is_root(),
        "this test chroots and chowns: run it as root (CI and scripts/test.sh on a box do)"
    );
    let bin = build_static();

    let readelf = Command::new("readelf")
        .arg("-d")
        .arg(&bin)
        .output()
        .expect("run readelf (binutils)");
    assert!(readelf.status.success(), "readelf -d {}", bin.display());
    let dynamic = String::from_utf8_lossy(&readelf.stdout);
    assert!(
        !dynamic.contains("NEEDED"),
        "{} needs shared libraries:\n{dynamic}",
        bin.display()
    );
    // What keeps it small (scripts/build-static.sh): packed relocations, no unwind tables. A
    // RUSTFLAGS of the caller's own replaces those flags; this says so instead of a silent 2 MB.
    assert!(
        dynamic.contains("(RELR)"),
        "{} has no packed relocations (was RUSTFLAGS set?):\n{dynamic}",
        bin.display()
    );
    let sections = Command::new("readelf")
        .arg("-SW")
        .arg(&bin)
        .output()
        .expect("run readelf -S");
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(
        !sections.contains(".eh_frame_hdr"),
        "{} carries unwind tables:\n{sections}",
        bin.display()
    );
    let size = std::fs::metadata(&bin).expect("stat").len();
    eprintln!(
        "static sentra-edge: {size} bytes ({:.1} MB) stripped, no NEEDED entries: {}",
        size as f64 / 1e6,
        bin.display()
    );

    // An empty root with nothing but the binary: no libc, no loader, no /proc, no /etc.
    let jail = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&bin, jail.path().join("sentra-edge")).expect("copy into the chroot");
    let out = Command::new("/usr/sbin/chroot")
        .arg(jail.path())
        .args(["/sentra-edge", "version"])
        .env_clear()
        .output()
        .expect("run /usr/sbin/chroot (coreutils)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("sentra-edge "),
        "sentra-edge version in an empty chroot: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And the daemon itself serves from there: the demo (SQLCipher store in the chroot's /tmp,
    // generated key, a real socket) answers /readyz.
    std::fs::create_dir(jail.path().join("tmp")).expect("mkdir /tmp in the chroot");
    let mut demo = Command::new("/usr/sbin/chroot")
        .arg(jail.path())
        .args(["/sentra-edge", "demo"])
        .env_clear()
        .env("TMPDIR", "/tmp")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the demo in the chroot");
    let lines = BufReader::new(demo.stdout.take().expect("piped"));
    let url = lines
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("sentra-edge: api listening on http://")
                .map(str::to_owned)
        })
        .expect("the demo in the chroot prints its address");
    let mut conn = TcpStream::connect(&url).expect("connect to the demo");
    conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read");
    let _ = Command::new("kill").arg(demo.id().to_string()).status();
    let _ = demo.wait();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the static demo's /readyz: {answer}"
    );

    let root = scratch_root();
    let out = Command::new("bash")
        .arg(repo().join("provisioning/install.sh"))
        .arg("--root")
        .arg(root.path())
        .arg("--bin")
        .arg(&bin)
        .output()
        .expect("run provisioning/install.sh");
    assert!(
        out.status.success(),
        "install.sh --root: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "usr/bin/sentra-edge",
        "usr/sbin/sentra-edge-admin",
        "usr/lib/systemd/system/sentra-edge.service",
        "usr/lib/sysusers.d/sentra-edge.conf",
        "usr/lib/tmpfiles.d/sentra-edge.conf",
        "usr/lib/udev/rules.d/70-sentra.rules",
    ] {
        assert!(
            root.path().join(file).is_file(),
            "install.sh left out /{file}"
        );
    }
    assert_user_and_dirs(root.path());

    // install.sh refuses a binary that is not static.
    let glibc = sentra_system_tests::bin("sentra-edge");
    let out = Command::new("bash")
        .arg(repo().join("provisioning/install.sh"))
        .arg("--root")
        .arg(root.path())
        .arg("--bin")
        .arg(&glibc)
        .output()
        .expect("run provisioning/install.sh");
    assert!(!out.status.success(), "install.sh took a dynamic binary");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not static"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
