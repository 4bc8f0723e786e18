#!/usr/bin/env bash
# The part of image/build.sh that works inside the root file system mmdebstrap made, run as
# mmdebstrap's last customize hook (so in --mode=unshare it sees the tree as root, inside the
# user namespace):
#
#   customize.sh ROOTFS WORK BIN PARTUUID_ROOT
#
# Puts our files in (provisioning/install.sh --root, the image's own units and network config),
# enables the units, cuts the kernel modules down to image/modules.keep (plus their
# dependencies), rebuilds the initrd for that set, copies the kernel and initrd to WORK and
# writes the root file system with `mkfs.ext4 -d` to WORK/root.ext4.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
root="${1:?rootfs}"
work="${2:?work dir}"
bin="${3:?sentra-edge binary}"
root_partuuid="${4:?root PARTUUID}"

log() { printf '==> %s\n' "$*" >&2; }

# Our files: the binary in the updater's layout, units, sysusers, tmpfiles, udev, admin wrapper.
bash "$repo/provisioning/install.sh" --root "$root" --bin "$bin" >&2

files="$here/files"
install -D -m 0755 "$files/sentra-edge-firstboot" "$root/usr/lib/sentra-edge/firstboot"
# The configuration's defaults, written now as the first boot would (it skips a file that
# exists): one start of the binary fewer on the box's first boot.
chroot "$root" /usr/lib/sentra-edge/firstboot config >&2
install -D -m 0755 "$files/sentra-edge-ready" "$root/usr/lib/sentra-edge/ready"
install -D -m 0644 "$files/sentra-edge-firstboot.service" "$root/usr/lib/systemd/system/sentra-edge-firstboot.service"
install -D -m 0644 "$files/sentra-edge-ready.service" "$root/usr/lib/systemd/system/sentra-edge-ready.service"
install -D -m 0755 "$files/sentra-edge-boot-report" "$root/usr/lib/sentra-edge/boot-report"
install -D -m 0644 "$files/sentra-edge-boot-report.service" "$root/usr/lib/systemd/system/sentra-edge-boot-report.service"
install -D -m 0644 "$files/80-wired.network" "$root/etc/systemd/network/80-wired.network"
install -D -m 0644 "$files/wait-online.conf" "$root/etc/systemd/system/systemd-networkd-wait-online.service.d/sentra.conf"
install -D -m 0644 "$files/50-root.conf" "$root/etc/repart.d/50-root.conf"
# The firewall: input dropped but for the LAN's services (API, MQTT, mDNS) and what the network
# needs; replaces the nftables package's empty example, loaded by nftables.service.
install -D -m 0644 "$files/nftables.conf" "$root/etc/nftables.conf"

# The root partition by its GPT id (the disk's name differs between a SATA, NVMe or eMMC box);
# the ESP is mounted on demand only. growfs follows systemd-repart's growth of the partition.
cat > "$root/etc/fstab" <<EOF
PARTUUID=$root_partuuid / ext4 rw,noatime,errors=remount-ro,x-systemd.growfs 0 1
PARTLABEL=esp /boot/efi vfat noauto,x-systemd.automount,umask=0077 0 2
EOF
mkdir -p "$root/boot/efi"
echo sentra-edge > "$root/etc/hostname"
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# Each box makes its own machine id at first boot (and with it its credential host key).
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/credential.secret"
# The technician's first console login as root asks for a new password (provisioning/README.md).
chroot "$root" passwd -q -d root
chroot "$root" chage -d 0 root

log "enable units"
chroot "$root" systemctl enable --quiet \
    systemd-networkd.service systemd-resolved.service systemd-timesyncd.service nftables.service \
    sentra-edge-firstboot.service sentra-edge.service sentra-edge-ready.service \
    sentra-edge-boot-report.service \
    sentra-edge-update.timer sentra-edge-restart.path sentra-edge-backup.timer

# Units a stock Debian boot starts that this box has no use for. Under emulation the boot is
# short of CPU, not waiting on a chain, so each process started costs time to READY. And less
# runs: no debugfs or tracefs mounted (a hardening, too), no e2scrub snapshot reaper (no LVM),
# no huge pages, POSIX message queues, FUSE, configfs or binfmt_misc, no modprobe for drivers
# the trimmed module set does not have.
log "mask units the box does not use"
chroot "$root" systemctl mask --quiet \
    e2scrub_reap.service e2scrub_all.timer \
    sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
    sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
    proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount systemd-binfmt.service \
    modprobe@drm.service modprobe@fuse.service modprobe@configfs.service modprobe@dm_mod.service

log "kernel modules: keep image/modules.keep and their dependencies"
kver="$(basename "$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -1)")"
mods="$root/lib/modules/$kver"
keep="$(mktemp)"
(
    cd "$mods"
    grep -v '^\s*\(#\|$\)' "$here/modules.keep" | while read -r pattern; do
        # shellcheck disable=SC2086 # the pattern is a glob on purpose
        for f in kernel/$pattern; do
            [ -e "$f" ] || [ -e "$f.xz" ] || { printf 'warning: modules.keep: nothing matches %s\n' "$pattern" >&2; continue; }
            find "$f" "$f.xz" -name '*.ko*' 2>/dev/null || true
        done
    done
) | sort -u > "$keep"
# Close over modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko").
while :; do
    before=$(wc -l < "$keep")
    awk -F': *' 'NR == FNR { want[$0] = 1; next } ($1 in want) && NF > 1 { n = split($2, d, " "); for (i = 1; i <= n; i++) print d[i] }' \
        "$keep" "$mods/modules.dep" | cat - "$keep" | sort -u > "$keep.new"
    mv "$keep.new" "$keep"
    [ "$(wc -l < "$keep")" -gt "$before" ] || break
done
before_kb=$(du -sk "$mods" | cut -f1)
(cd "$mods" && find kernel -name '*.ko*' | sort | comm -23 - "$keep" | xargs -r rm -f)
find "$mods/kernel" -type d -empty -delete
chroot "$root" depmod "$kver"
log "kept $(wc -l < "$keep") modules: ${before_kb} KiB -> $(du -sk "$mods" | cut -f1) KiB"
rm -f "$keep"

log "initrd: only what mounts the root file system"
cat > "$root/etc/initramfs-tools/conf.d/sentra.conf" <<'EOF'
# image/customize.sh: a small initrd with the modules listed in ../modules, zstd-compressed.
MODULES=list
COMPRESS=zstd
EOF
cat > "$root/etc/initramfs-tools/modules" <<'EOF'
# Disks a mini PC boots from, and qemu's virtio disk; then the root file system.
ahci
nvme
sd_mod
mmc_block
sdhci_pci
sdhci_acpi
virtio_pci
virtio_blk
ext4
EOF
chroot "$root" update-initramfs -u -k "$kver" >&2

# Nothing the box needs at run time: package lists and caches (apt update fetches them again).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/debconf/*-old \
    "$root"/var/log/*.log "$root"/tmp/* "$root"/var/tmp/*

log "kernel and initrd out, root file system into root.ext4"
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
cp "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$work/systemd-bootx64.efi"
# mmdebstrap has /proc, /sys and /dev mounted in the tree while its hooks run: copy the tree
# without them (their mount points stay, empty) and make the file system from the copy.
tree="$work/tree"
rm -rf "$tree"
mkdir "$tree"
cp -a --one-file-system "$root/." "$tree/"
# Room for the store to start in; systemd-repart grows the partition to the disk at first boot.
used_kb=$(du -sk --apparent-size "$tree" | cut -f1)
size_mb=$(( (used_kb * 13 / 10) / 1024 + 256 ))
rm -f "$work/root.ext4"
mkfs.ext4 -q -F -L sentra-root -d "$tree" "$work/root.ext4" "${size_mb}M"
rm -rf "$tree"
echo "$kver" > "$work/kernel-version"
