#!/usr/bin/env bash
# Builds `sentra-edge` as one fully static x86-64 executable (musl libc, mimalloc, SQLCipher and
# its OpenSSL compiled in): `bash scripts/build-static.sh`.
#
# Output: target/x86_64-unknown-linux-musl/dist/sentra-edge (profile `dist`; stripped; no
# NEEDED library), its path printed last. Installs Debian's musl-tools and the rustup target when
# they are missing (installing needs root, like scripts/test.sh). An up-to-date build is a no-op.
# CARGO_TARGET_DIR is honoured. Takes ~5 minutes from clean on 2 cores (LTO, one codegen unit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly TARGET=x86_64-unknown-linux-musl

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

if ! command -v musl-gcc >/dev/null; then
    [ "$(id -u)" = 0 ] || die "musl-gcc missing; install it (apt-get install musl-tools) or run this script as root"
    log "apt-get install musl-tools"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends musl-tools >/dev/null
fi
# SQLCipher's vendored OpenSSL is configured by perl and built by make.
for tool in perl make; do
    command -v "$tool" >/dev/null || die "$tool missing; apt-get install perl make (scripts/test.sh installs them)"
done
if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET"
fi

# The C parts (SQLCipher, OpenSSL, mimalloc) are compiled by musl's gcc wrapper.
export CC_x86_64_unknown_linux_musl=musl-gcc
log "cargo build --profile dist --target $TARGET -p sentra-edge"
cargo build --locked --profile dist --target "$TARGET" -p sentra-edge --bin sentra-edge

bin="${CARGO_TARGET_DIR:-target}/$TARGET/dist/sentra-edge"
[ -x "$bin" ] || die "$bin was not built"
if readelf -d "$bin" | grep -q NEEDED; then
    die "$bin needs shared libraries: $(readelf -d "$bin" | grep NEEDED)"
fi
log "static: $(stat -c %s "$bin") bytes, no NEEDED libraries"
printf '%s\n' "$bin"
