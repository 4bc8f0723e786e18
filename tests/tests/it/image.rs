//! The cheap part of the disk image's checks (building and booting it takes minutes: `bash
//! image/build.sh && bash image/test.sh`, docs/technician.md, "The disk image"): its scripts parse and pass
//! shellcheck, its own units verify beside ours, the units it enables exist, and its package and
//! kernel-module lists are well-formed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::systemd::{repo, units_in, verify_units};

fn scripts() -> Vec<PathBuf> {
    let image = repo().join("image");
    vec![
        image.join("build.sh"),
        image.join("customize.sh"),
        image.join("test.sh"),
        image.join("files/sentra-edge-firstboot"),
        image.join("files/sentra-edge-ready"),
        image.join("files/sentra-edge-boot-report"),
    ]
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}; scripts/test.sh installs it"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_image_scripts_parse_and_pass_shellcheck() {
    for script in scripts() {
        let shell = if script.extension().is_some_and(|e| e == "sh") {
            "bash"
        } else {
            "sh"
        };
        let (ok, text) = output(Command::new(shell).arg("-n").arg(&script));
        assert!(ok, "{shell} -n {}: {text}", script.display());
        let (ok, text) = output(Command::new("shellcheck").arg(&script));
        assert!(ok, "shellcheck {}:\n{text}", script.display());
    }
}

#[test]
fn the_image_units_verify_beside_ours() {
    let files = repo().join("image/files");
    let mut units = units_in(&files, &["service"]);
    units.extend(units_in(&repo().join("systemd"), &["service"]));
    let edge = sentra_system_tests::bin("sentra-edge");
    let firstboot = files.join("sentra-edge-firstboot");
    let ready = files.join("sentra-edge-ready");
    let report = files.join("sentra-edge-boot-report");
    verify_units(
        &units,
        &[
            ("/var/lib/sentra/app/current/sentra-edge", &edge),
            ("/usr/lib/sentra-edge/firstboot", &firstboot),
            ("/usr/lib/sentra-edge/ready", &ready),
            ("/usr/lib/sentra-edge/boot-report", &report),
        ],
    );
}

/// Our unit names the image's customize step enables, each shipped in systemd/ or image/files/.
#[test]
fn every_unit_the_image_enables_of_ours_exists() {
    let script = std::fs::read_to_string(repo().join("image/customize.sh")).expect("customize.sh");
    let enable = script
        .split("systemctl enable")
        .nth(1)
        .expect("customize.sh enables units");
    let enable = &enable[..enable.find("\n\n").expect("the enable command ends")];
    let ours: Vec<&str> = enable
        .split_whitespace()
        .filter(|w| w.starts_with("sentra-edge"))
        .collect();
    for unit in [
        "sentra-edge.service",
        "sentra-edge-firstboot.service",
        "sentra-edge-ready.service",
        "sentra-edge-update.timer",
        "sentra-edge-restart.path",
        "sentra-edge-backup.timer",
    ] {
        assert!(ours.contains(&unit), "the image does not enable {unit}");
    }
    for unit in ours {
        let found = ["systemd", "image/files"]
            .iter()
            .any(|dir| repo().join(dir).join(unit).is_file());
        assert!(
            found,
            "the image enables {unit}, which is in neither systemd/ nor image/files/"
        );
    }
}

fn list(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_package_and_module_lists_are_well_formed() {
    let packages = list(&repo().join("image/packages"));
    for must in ["systemd", "udev", "linux-image-amd64", "systemd-boot-efi"] {
        assert!(
            packages.iter().any(|p| p == must),
            "image/packages lacks {must}"
        );
    }
    for p in &packages {
        // Debian policy 5.6.1: lower case letters, digits, + - . ; at least two characters.
        let ok = p.len() >= 2
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        assert!(ok, "image/packages: {p:?} is not a Debian package name");
    }

    let modules = list(&repo().join("image/modules.keep"));
    for m in &modules {
        assert!(
            !m.starts_with('/') && !m.split('/').any(|c| c == ".." || c.is_empty()),
            "image/modules.keep: {m:?} must be a path under kernel/"
        );
        assert!(
            m.ends_with(".ko") || m.ends_with("/*"),
            "image/modules.keep: {m:?} names neither a module nor a directory's modules"
        );
    }
    // What the branch's devices and the boot test need.
    for must in [
        "fs/ext4/*",
        "drivers/usb/class/*",
        "drivers/usb/serial/*",
        "drivers/net/ethernet/intel/e1000e/*",
        "drivers/net/ethernet/realtek/r8169.ko",
        "drivers/block/virtio_blk.ko",
        "drivers/char/tpm/*",
    ] {
        assert!(
            modules.iter().any(|m| m == must),
            "image/modules.keep lacks {must}"
        );
    }
}
