#!/usr/bin/env bash
# Puts sentra-edge on a Debian 12 box (or into a root file system being built for one):
#
#   bash provisioning/install.sh [--root DIR] [--bin FILE]
#
# Installs the static binary as the first release of the updater's layout
# (/var/lib/sentra/app/releases/<version>/sentra-edge, `current` pointing at it, which the units
# start; /usr/bin/sentra-edge links to `current/sentra-edge`), the systemd units (the daemon, the
# self-update service, its timer and the restart path it triggers), sysusers and tmpfiles files, the udev rules and the admin
# wrapper, after creating the `sentra` user (in dialout and lp) and its directories. With --root it works on DIR instead of / and starts nothing (what an image
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
install -D -m 0755 "$here/provisioning/sentra-edge-admin" "$r/usr/sbin/sentra-edge-admin"
for unit in sentra-edge.service sentra-edge-update.service sentra-edge-update.timer \
    sentra-edge-restart.path sentra-edge-restart.service \
    sentra-edge-backup.service sentra-edge-backup.timer; do
    install -D -m 0644 "$here/systemd/$unit" "$r/usr/lib/systemd/system/$unit"
done
install -D -m 0644 "$here/systemd/sentra-edge.sysusers" "$r/usr/lib/sysusers.d/sentra-edge.conf"
install -D -m 0644 "$here/systemd/sentra-edge.tmpfiles" "$r/usr/lib/tmpfiles.d/sentra-edge.conf"
install -D -m 0644 "$here/udev/70-sentra.rules" "$r/usr/lib/udev/rules.d/70-sentra.rules"
install -D -m 0644 "$here/README.md" "$r/usr/share/doc/sentra-edge/README.md"
install -D -m 0644 "$here/provisioning/README.md" "$r/usr/share/doc/sentra-edge/provisioning.md"

systemd-sysusers --root="$root" "$r/usr/lib/sysusers.d/sentra-edge.conf"
systemd-tmpfiles --create --root="$root" "$r/usr/lib/tmpfiles.d/sentra-edge.conf"

# The updater's layout (appliance/src/update/install.rs): the units start `current/sentra-edge`,
# and the self-update swaps `current` to a newer release beside this one. The binary names its
# own version; a release already there is replaced (a re-install of the same version).
version="$("$bin" version | awk '{print $2}')"
[ -n "$version" ] || die "$bin version printed nothing"
app="$r/var/lib/sentra/app"
install -d -m 0700 "$app/releases"
rm -rf "$app/releases/.$version.tmp"
install -D -m 0755 "$bin" "$app/releases/.$version.tmp/sentra-edge"
rm -rf "$app/releases/$version"
mv "$app/releases/.$version.tmp" "$app/releases/$version"
ln -sfn "releases/$version" "$app/.current.tmp"
mv -T "$app/.current.tmp" "$app/current"
# The updater runs as the daemon's user: the layout is that user's (ids from DIR's passwd).
owner="$(awk -F: '$1 == "sentra" { print $3 ":" $4 }' "$r/etc/passwd")"
[ -n "$owner" ] || die "no user sentra in $r/etc/passwd after systemd-sysusers"
chown -hR "$owner" "$app"
# Relative, so the link also resolves inside an image tree (--root).
install -d -m 0755 "$r/usr/bin"
ln -sfn ../../var/lib/sentra/app/current/sentra-edge "$r/usr/bin/sentra-edge"

if [ "$root" = / ]; then
    systemctl daemon-reload || true
    udevadm control --reload || true
    udevadm trigger --subsystem-match=tty --subsystem-match=usbmisc || true
fi
printf 'installed sentra-edge %s into %s\n' "$("$r/usr/bin/sentra-edge" version | awk '{print $2}')" "$root"
