#!/usr/bin/env bash
# Boots the image image/build.sh made under qemu (software emulation, serial console to a file)
# and waits until sentra-edge reports READY:
#
#   bash image/test.sh [--direct] [--report] [OUT_DIR]
#
# By default the whole disk boots as a mini PC would: UEFI firmware (OVMF), systemd-boot from the
# ESP, the kernel and initrd there, the root partition by PARTUUID. --direct passes the kernel,
# initrd and command line to qemu instead (no firmware, no boot loader). --report (implies
# --direct) adds `sentra.boot_report` to the command line and prints where the boot's time went
# (`systemd-analyze` run in the guest once the boot finished: time, the critical chain to
# sentra-edge.service, the slowest units). The disk is a copy of
# OUT_DIR/sentra-edge.img (default image/out) grown by 1 GiB, so first boot's partition and file
# system growth runs too.
#
# READY is the line sentra-edge-ready.service writes to the kernel log (so to every console) once
# sentra-edge.service is active, i.e. after the daemon's READY=1. Then GET /readyz through qemu's
# forwarded port must answer 200. Prints the time from qemu's start to that line (host clock),
# the guest's uptime in the line, and the image sizes. Fails after BOOT_TIMEOUT seconds (180)
# with the console's last lines. The whole serial console is left in OUT_DIR/boot-console.log.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly IMAGE=sentra-edge.img
readonly BOOT_TIMEOUT="${BOOT_TIMEOUT:-180}"
readonly OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
readonly OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

direct=false
report=false
while :; do
    case "${1:-}" in
    --direct) direct=true ;;
    --report) direct=true report=true ;;
    *) break ;;
    esac
    shift
done
out="$(realpath -m "${1:-$here/out}")"
[ -f "$out/$IMAGE" ] || die "$out/$IMAGE missing; build it first: bash image/build.sh $out"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
command -v curl >/dev/null || die "curl missing: apt-get install curl"
if [ "$direct" = false ]; then
    [ -f "$OVMF_CODE" ] || die "$OVMF_CODE missing (UEFI firmware): apt-get install ovmf, or use --direct"
fi

work="$(mktemp -d "${TMPDIR:-/var/tmp}/sentra-boot.XXXXXX")"
qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ]; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cp --sparse=always "$out/$IMAGE" "$work/disk.raw"
truncate -s +1G "$work/disk.raw"
# Kept for a look afterwards (and shown in part when the boot fails).
console="$out/boot-console.log"
: > "$console"
# A free port on the host for the guest's API (HTTPS, 8443).
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

args=(
    -machine q35 -accel tcg -m 1024 -smp 2
    -display none -monitor none -serial "file:$console" -no-reboot
    -drive "file=$work/disk.raw,format=raw,if=virtio"
    -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$port-:8443"
    -device virtio-rng-pci
)
if [ "$direct" = true ]; then
    # The image's command line names both consoles; the serial one last makes it /dev/console.
    cmdline="$(cat "$out/cmdline")"
    [ "$report" = false ] || cmdline+=" sentra.boot_report"
    args+=(-kernel "$out/vmlinuz" -initrd "$out/initrd.img" -append "$cmdline")
    how="kernel and initrd given to qemu"
else
    cp "$OVMF_VARS" "$work/vars.fd"
    args+=(
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
        -drive "if=pflash,format=raw,unit=1,file=$work/vars.fd"
    )
    how="UEFI firmware, systemd-boot from the ESP"
fi

printf '==> booting %s under qemu (TCG, 2 vCPUs, 1 GiB; %s)\n' "$IMAGE" "$how" >&2
start=$(date +%s.%N)
qemu-system-x86_64 "${args[@]}" &
qemu_pid=$!

line=
deadline=$((SECONDS + BOOT_TIMEOUT))
while [ -z "$line" ]; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
        tail -n 40 "$console" >&2
        die "qemu exited before sentra-edge was ready (console above)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 40 "$console" >&2
        die "sentra-edge not ready after ${BOOT_TIMEOUT} s (console above)"
    fi
    sleep 0.2
    line="$(grep -a -m1 'sentra-edge: ready after' "$console" || true)"
done
ready=$(date +%s.%N)
printf '%s\n' "$line" | tr -d '\r' >&2

# The same API a tablet on the branch LAN would reach, through qemu's port forward. HTTPS with
# the box's own certificate: -k, as this only proves the image serves TLS (a tablet pins the
# fingerprint from its pairing QR; appliance/tests/it/tls.rs tests that).
answer="$(curl -sSk --max-time 10 -w ' HTTP %{http_code}' "https://127.0.0.1:$port/readyz")" ||
    die "GET /readyz through the forwarded port failed"
case "$answer" in
*"HTTP 200") ;;
*) die "GET /readyz: $answer" ;;
esac
printf 'GET /readyz from the host: %s\n' "$answer"

uptime="$(printf '%s\n' "$line" | sed -n 's/.*ready after \([0-9.]*\) s.*/\1/p')"
raw=$(stat -c %s "$out/$IMAGE")
used=$(($(du -k "$out/$IMAGE" | cut -f1) * 1024))
zst=$(stat -c %s "$out/$IMAGE.zst" 2>/dev/null || echo 0)
printf 'boot to ready: %.1f s from qemu start (host clock), %s s of guest uptime (%s)\n' \
    "$(awk -v a="$start" -v b="$ready" 'BEGIN { print b - a }')" "$uptime" "$how"
printf 'image: raw %d MB (%d MB used), compressed %d MB\n' \
    $((raw / 1000000)) $((used / 1000000)) $((zst / 1000000))
if [ "$report" = true ]; then
    until grep -a -q 'sentra-edge boot report: end' "$console"; do
        [ "$SECONDS" -lt "$deadline" ] || die "no boot report after ${BOOT_TIMEOUT} s (is the image older than --report?)"
        sleep 0.5
    done
    printf '\nwhere the boot went (systemd-analyze in the guest):\n'
    grep -a 'sentra-edge boot report: ' "$console" | tr -d '\r' |
        sed -e 's/.*sentra-edge boot report: //' -e '/^end$/d'
fi
