#!/usr/bin/env bash
# Builds the bootable disk image for the branch's mini PC: `bash image/build.sh [OUT_DIR]`.
#
# Debian 12 (bookworm, from deb.debian.org) made by mmdebstrap (minbase + image/packages), with
# the static sentra-edge (scripts/build-static.sh), our units, sysusers, tmpfiles and udev rules
# (provisioning/install.sh --root), the default config, a first boot that seals a new store key
# (image/files/), units the box does not use masked, kernel modules cut to image/modules.keep.
# No Docker, no loop devices, no mounts: the root file system is written by `mkfs.ext4 -d`, the
# EFI system partition by mtools, and both are put into a GPT disk file with sfdisk; the boot
# loader is systemd-boot.
#
# OUT_DIR (default: image/out) receives:
#   sentra-edge.img.zst   the disk to flash (zstd): GPT, ESP (systemd-boot, kernel, initrd), root
#   sentra-edge.img.bmap  its block map for `bmaptool copy` (only the used blocks are written)
#   SHA256SUMS            SHA-256 of the compressed and of the raw image
#   vmlinuz, initrd.img, cmdline   the same kernel, initrd and command line, for qemu -kernel
#   sentra-edge.img       the raw disk (sparse), used by image/test.sh
#
# Mode: as root, mmdebstrap --mode=root; as another user, --mode=unshare (needs /etc/subuid and
# /etc/subgid entries and user namespaces); the hooks run inside that namespace, where the tree
# is root's. Missing tools are installed when run as root (apt-get), else named. Environment:
# SENTRA_BIN (a static sentra-edge to use instead of building one), MIRROR (Debian mirror),
# APT_CACHE (a directory that keeps the downloaded .debs between builds), ZSTD_LEVEL (19 unless
# set: the smallest download for the boxes, but most of the build's time; scripts/test.sh builds
# the image for the life-cycle test with 3, as the test boots the raw disk and never reads the .zst).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
out="$(realpath -m "${1:-$here/out}")"
readonly SUITE=bookworm
readonly MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# The EFI system partition: systemd-boot, one kernel and its initrd, room for a second pair.
readonly ESP_MB=128
readonly IMAGE=sentra-edge.img
readonly ZSTD_LEVEL="${ZSTD_LEVEL:-19}"
case "$ZSTD_LEVEL" in
[1-9] | 1[0-9]) ;;
*) printf 'error: ZSTD_LEVEL=%s: a level from 1 to 19\n' "$ZSTD_LEVEL" >&2 && exit 2 ;;
esac

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# tool → Debian package
declare -A tools=(
    [mmdebstrap]=mmdebstrap [mkfs.ext4]=e2fsprogs [mkfs.vfat]=dosfstools [mcopy]=mtools
    [sfdisk]=fdisk [zstd]=zstd [bmaptool]=bmap-tools [readelf]=binutils [systemd-sysusers]=systemd
)
missing=()
for tool in "${!tools[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${tools[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing tools; install them: apt-get install ${missing[*]}"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ]; then
    mode=root
else
    mode=unshare
    grep -q "^$(id -un):" /etc/subuid 2>/dev/null ||
        die "not root and no /etc/subuid entry for $(id -un): mmdebstrap --mode=unshare needs one (or run as root)"
fi

bin="${SENTRA_BIN:-}"
if [ -z "$bin" ]; then
    log "static sentra-edge (scripts/build-static.sh)"
    bin="$(bash "$repo/scripts/build-static.sh" | tail -1)"
fi
[ -x "$bin" ] || die "$bin: no such executable"
bin="$(realpath "$bin")"

mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/sentra-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# The hook runs as the namespace's root in unshare mode: let it write here.
chmod 0777 "$work"
started=$SECONDS

esp_uuid="$(cat /proc/sys/kernel/random/uuid)"
root_uuid="$(cat /proc/sys/kernel/random/uuid)"
packages="$(grep -v '^\s*\(#\|$\)' "$here/packages" | paste -sd, -)"
# mmdebstrap's documented way to reuse downloaded packages: in before, out after installing.
cache_hooks=()
if [ -n "${APT_CACHE:-}" ]; then
    mkdir -p "$APT_CACHE"
    APT_CACHE="$(realpath "$APT_CACHE")"
    cache_hooks=(
        --skip=essential/unlink
        --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\""
        --setup-hook="sync-in '$APT_CACHE' /var/cache/apt/archives/"
        --customize-hook="sync-out /var/cache/apt/archives '$APT_CACHE'"
    )
fi
log "mmdebstrap --mode=$mode $SUITE: $packages"
# Documentation, man pages and translations are never read on the box. The hooks get the tree's
# path as $1 (mmdebstrap runs them with sh).
# shellcheck disable=SC2016
mmdebstrap --mode="$mode" --variant=minbase --format=null \
    --components=main,non-free-firmware \
    --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "${cache_hooks[@]}" \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "MODULES=list\nCOMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/sentra.conf"' \
    --customize-hook="bash '$here/customize.sh' \"\$1\" '$work' '$bin' '$root_uuid'" \
    "$SUITE" /dev/null "$MIRROR" >&2

log "EFI system partition: systemd-boot, kernel, initrd"
# Kernel messages up to "notice" (the ready line) and systemd's errors on the consoles; the serial
# one last, so it is /dev/console (qemu's test reads it; a screen shows the same lines).
cmdline="root=PARTUUID=$root_uuid ro console=tty0 console=ttyS0,115200n8 loglevel=6 systemd.show_status=error"
echo "$cmdline" > "$work/cmdline"
esp="$work/esp.vfat"
mkfs.vfat -F 32 -n ESP -C "$esp" $((ESP_MB * 1024)) >/dev/null
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$esp" "$work/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$work/vmlinuz" ::/vmlinuz
mcopy -i "$esp" "$work/initrd.img" ::/initrd.img
printf 'default sentra-edge.conf\ntimeout 0\n' > "$work/loader.conf"
printf 'title Sentra Edge\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$cmdline" > "$work/entry.conf"
mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$esp" "$work/entry.conf" ::/loader/entries/sentra-edge.conf

log "GPT disk: ESP + root"
root_bytes=$(stat -c %s "$work/root.ext4")
root_mb=$(( (root_bytes + 1048575) / 1048576 ))
disk="$work/$IMAGE"
# 1 MiB before the ESP (GPT), 1 MiB after root (the backup GPT).
disk_mb=$((1 + ESP_MB + root_mb + 1))
rm -f "$disk"
truncate -s "${disk_mb}M" "$disk"
sfdisk --quiet --no-reread --no-tell-kernel "$disk" <<EOF
label: gpt
unit: sectors
start=2048, size=$((ESP_MB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_uuid, name=esp
start=$(((1 + ESP_MB) * 2048)), size=$((root_mb * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_uuid, name=root
EOF
dd if="$esp" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$disk" bs=1M seek=$((1 + ESP_MB)) conv=notrunc,sparse status=none

log "compress, checksum, block map"
mv "$disk" "$out/$IMAGE"
cp "$work/vmlinuz" "$work/initrd.img" "$work/cmdline" "$out/"
bmaptool -q create -o "$out/$IMAGE.bmap" "$out/$IMAGE"
zstd -q -f -T0 "-$ZSTD_LEVEL" "$out/$IMAGE" -o "$out/$IMAGE.zst"
(cd "$out" && sha256sum "$IMAGE.zst" "$IMAGE" > SHA256SUMS)

raw=$(stat -c %s "$out/$IMAGE")
used=$(( $(du -k "$out/$IMAGE" | cut -f1) * 1024 ))
zst=$(stat -c %s "$out/$IMAGE.zst")
printf 'image: %s\n' "$out/$IMAGE.zst"
printf 'kernel %s; raw %d MB (%d MB used), compressed %d MB; built in %d s\n' \
    "$(cat "$work/kernel-version")" $((raw / 1000000)) $((used / 1000000)) $((zst / 1000000)) \
    $((SECONDS - started))
