#!/usr/bin/env bash
# Builds the container image of `sentra-cloud` without a container daemon: `bash scripts/build-cloud-image.sh`.
#
# The image holds nothing but the static binary (scripts/build-static.sh sentra-cloud: musl,
# S3 photo stores), the CA certificates it trusts, a passwd and group entry for its user
# (65532, not root), and empty /tmp and /var/lib/sentra-cloud. No shell, no package manager, no
# libc. Entrypoint `sentra-cloud`, command `serve`, port 8090; run `migrate` and `notify worker`
# by overriding the command (docs/deploy.md).
#
# Output: an OCI image layout at target/oci/sentra-cloud, tagged with the crate's version, and
# the same as one archive, target/oci/sentra-cloud-<version>.tar (`skopeo copy
# oci-archive:...` or `podman load -i ...`). Prints `<layout>:<tag>` last. Reproducible where it
# is cheap: every file's time and the image's creation time are the last commit's
# (SOURCE_DATE_EPOCH overrides), so building the same commit again gives the same layer digest.
# Installs Debian's umoci and ca-certificates when missing (as root, like scripts/test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The image's user: the "nonroot" number distroless images use, so policies written for them fit.
readonly UID_GID=65532
readonly PORT=8090
readonly CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

missing=()
command -v umoci >/dev/null || missing+=(umoci)
[ -f "$CA_BUNDLE" ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing: ${missing[*]}; apt-get install ${missing[*]}, or run this script as root"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Unpacking and repacking keep the files' owners, which needs root (or umoci's --rootless,
# which would record our own uid instead of the image user's).
[ "$(id -u)" = 0 ] || die "run as root: the image's files are owned by root and by uid $UID_GID"

bin="$(bash scripts/build-static.sh sentra-cloud | tail -n 1)"
[ -x "$bin" ] || die "scripts/build-static.sh sentra-cloud printed no binary"
version="$("$bin" version | awk '{print $2}')"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "cannot read the version from $bin version: $version"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"

out="${CARGO_TARGET_DIR:-target}/oci"
layout="$out/sentra-cloud"
archive="$out/sentra-cloud-$version.tar"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
rm -rf "$layout" "$archive"

log "image sentra-cloud:$version ($revision) in $layout"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"

install -d -m 0755 "$rootfs/etc" "$rootfs/etc/ssl" "$rootfs/etc/ssl/certs" \
    "$rootfs/usr" "$rootfs/usr/local" "$rootfs/usr/local/bin" "$rootfs/var" "$rootfs/var/lib"
install -m 0755 "$bin" "$rootfs/usr/local/bin/sentra-cloud"
install -m 0644 "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
# A name for the uid (logs, `ps`), a home nobody can write and no login shell: there is none.
printf 'root:x:0:0:root:/root:/sbin/nologin\nsentra:x:%s:%s:sentra-cloud:/nonexistent:/sbin/nologin\n' \
    "$UID_GID" "$UID_GID" >"$rootfs/etc/passwd"
printf 'root:x:0:\nsentra:x:%s:\n' "$UID_GID" >"$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
# blobs.url's default (file:///var/lib/sentra-cloud/blobs) for a single replica with a volume.
install -d -m 0750 -o "$UID_GID" -g "$UID_GID" "$rootfs/var/lib/sentra-cloud"
install -d -m 1777 "$rootfs/tmp"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

umoci repack --image "$layout:$version" --history.created "$created" \
    --history.created_by "scripts/build-cloud-image.sh" "$work/bundle" >/dev/null
umoci config --image "$layout:$version" --created "$created" \
    --history.created "$created" --history.created_by "scripts/build-cloud-image.sh (config)" \
    --os linux --architecture amd64 \
    --config.user "$UID_GID:$UID_GID" \
    --config.entrypoint /usr/local/bin/sentra-cloud --config.cmd serve \
    --config.workingdir / --config.stopsignal SIGTERM \
    --config.exposedports "$PORT/tcp" \
    --config.env "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    --config.label "org.opencontainers.image.title=sentra-cloud" \
    --config.label "org.opencontainers.image.description=The cloud service Sentra Edge boxes sync with" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.revision=$revision" \
    --config.label "org.opencontainers.image.created=$created"
# `umoci new` and `config` leave the replaced blobs behind.
umoci gc --layout "$layout"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$archive" .

log "image: $(du -sh "$layout" | cut -f1) ($archive)"
printf '%s:%s\n' "$layout" "$version"
