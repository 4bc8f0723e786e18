#!/usr/bin/env bash
# Puts sentra-edge on a Debian 12 box (or into a root file system being built for one):
#
#   bash provisioning/install.sh [--root DIR] [--bin FILE]
#
# Installs the static binary as /usr/bin/sentra-edge, the systemd unit, sysusers and tmpfiles
# files, the udev rules and the admin wrapper, then creates the `sentra` user (in dialout and lp)
# and its directories. With --root it works on DIR instead of / and starts nothing (what an image
# builder wants); without it, it also reloads systemd and udev. It makes no store key and enables
# nothing: first boot does that, per box (provisioning/README.md). Safe to run again (upgrade).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

root=/
bin="${CARGO_TARGET_DIR:-$here/target}/x86_64-unknown-linux-musl/dist/sentra-edge"
while [ $# -gt 0 ]; do
    case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --bin) bin="${2:?--bin needs a file}"; shift 2 ;;
    *) printf 'usage: install.sh [--root DIR] [--bin FILE]\n' >&2; exit 2 ;;
    esac
done

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || die "run as root (it creates a system user and root-owned files)"
[ -d "$root" ] || die "--root $root: no such directory"
[ -x "$bin" ] || die "$bin: no such executable; build it with: bash scripts/build-static.sh"
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
    die "$bin is not static (readelf -d lists NEEDED libraries); build it with scripts/build-static.sh"
fi

r="${root%/}"
install -D -m 0755 "$bin" "$r/usr/bin/sentra-edge"
install -D -m 0755 "$here/provisioning/sentra-edge-admin" "$r/usr/sbin/sentra-edge-admin"
install -D -m 0644 "$here/systemd/sentra-edge.service" "$r/usr/lib/systemd/system/sentra-edge.service"
install -D -m 0644 "$here/systemd/sentra-edge.sysusers" "$r/usr/lib/sysusers.d/sentra-edge.conf"
install -D -m 0644 "$here/systemd/sentra-edge.tmpfiles" "$r/usr/lib/tmpfiles.d/sentra-edge.conf"
install -D -m 0644 "$here/udev/70-sentra.rules" "$r/usr/lib/udev/rules.d/70-sentra.rules"
install -D -m 0644 "$here/README.md" "$r/usr/share/doc/sentra-edge/README.md"
install -D -m 0644 "$here/provisioning/README.md" "$r/usr/share/doc/sentra-edge/provisioning.md"

systemd-sysusers --root="$root" "$r/usr/lib/sysusers.d/sentra-edge.conf"
systemd-tmpfiles --create --root="$root" "$r/usr/lib/tmpfiles.d/sentra-edge.conf"

if [ "$root" = / ]; then
    systemctl daemon-reload || true
    udevadm control --reload || true
    udevadm trigger --subsystem-match=tty --subsystem-match=usbmisc || true
fi
printf 'installed sentra-edge %s into %s\n' "$("$r/usr/bin/sentra-edge" version | awk '{print $2}')" "$root"
