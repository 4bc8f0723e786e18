#!/usr/bin/env bash
# Builds one of our binaries as a fully static x86-64 executable (musl libc, mimalloc):
#   bash scripts/build-static.sh                 # sentra-edge, for the boxes (SQLCipher and its OpenSSL compiled in)
#   bash scripts/build-static.sh sentra-cloud    # sentra-cloud with S3 photo stores, for its container image
#
# Output: target/x86_64-unknown-linux-musl/<profile>/<binary> (stripped; no NEEDED library), its
# path printed last. sentra-edge uses profile `dist` (size first: it is shipped to every box over
# branch links); sentra-cloud uses profile `cloud` (thin LTO: the build is CI's cost, and the
# service wants speed, not bytes; docs/decisions.md). Installs Debian's musl-tools and the rustup
# target when they are missing (installing needs root, like scripts/test.sh). An up-to-date build
# is a no-op. CARGO_TARGET_DIR is honoured. From clean on 2 cores: ~5 minutes for sentra-edge,
# ~8 for sentra-cloud (15 CPU-minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Run from a test (tests/tests/it/static_binary.rs, cloud_image.rs), this inherits what cargo
# sets for the test (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). ring's build script reruns when
# any of those it reads changes, so the build would redo ring and everything above it (the LTO
# link: many minutes) instead of finding the binary that scripts/test.sh has just built.
for var in $(compgen -e); do
    case "$var" in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | CARGO_PRIMARY_PACKAGE | \
        CARGO_TARGET_TMPDIR | CARGO_CFG_*) unset "$var" ;;
    esac
done
# scripts/test.sh compiles the workspace's crates through Clippy (RUSTC_WORKSPACE_WRAPPER, for
# its debug build); the shipped binary is built by plain rustc, the same from the test command
# as by hand, so neither finds the other's build stale.
unset RUSTC_WORKSPACE_WRAPPER

readonly TARGET=x86_64-unknown-linux-musl

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

package="${1:-sentra-edge}"
case "$package" in
sentra-edge)
    profile=dist
    features=()
    # Bytes the box's binary does not need (docs/benchmarks.md, "The static binary"): its
    # relocations packed (DT_RELR, which musl's start-up code applies: 1.09 MB -> 14 KB), and no
    # unwind tables (scripts/static-link.ld: the profile aborts on panic, nothing unwinds).
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-arg=-Wl,-z,pack-relative-relocs -C link-arg=-Wl,--no-eh-frame-hdr -C link-arg=-Wl,-T,$PWD/scripts/static-link.ld"
    ;;
sentra-cloud)
    profile=cloud
    # S3 and S3-compatible photo stores: a replica set shares no disk.
    features=(--features s3)
    ;;
*) die "usage: build-static.sh [sentra-edge|sentra-cloud]" ;;
esac

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
if ! grep -qx "$TARGET" <<<"$(rustup target list --installed)"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET"
fi

if [ "$package" = sentra-cloud ]; then
    # The cloud's TLS is rustls on ring everywhere (its own clients and object_store's reqwest):
    # a C crypto library would need its own cross build for musl, and a second TLS stack in the
    # image is a second thing to patch.
    tree="$(cargo tree --locked -p sentra-cloud "${features[@]}" --target "$TARGET" -e normal --prefix none)"
    for crate in aws-lc-sys aws-lc-rs openssl-sys native-tls; do
        if grep -q "^$crate " <<<"$tree"; then
            die "sentra-cloud ${features[*]} depends on $crate: keep its TLS on rustls with ring"
        fi
    done
fi

# The C parts (SQLCipher, OpenSSL, mimalloc) are compiled by musl's gcc wrapper.
export CC_x86_64_unknown_linux_musl=musl-gcc
log "cargo build --profile $profile --target $TARGET -p $package ${features[*]}"
cargo build --locked --profile "$profile" --target "$TARGET" -p "$package" --bin "$package" "${features[@]}"

bin="${CARGO_TARGET_DIR:-target}/$TARGET/$profile/$package"
[ -x "$bin" ] || die "$bin was not built"
# Read whole before matching: `readelf | grep -q` under pipefail is false when grep's early exit
# kills readelf (SIGPIPE), which would let a dynamic binary through.
dynamic="$(readelf -d "$bin")"
if [[ "$dynamic" == *NEEDED* ]]; then
    die "$bin needs shared libraries: $(grep NEEDED <<<"$dynamic")"
fi
log "static: $(stat -c %s "$bin") bytes, no NEEDED libraries"
printf '%s\n' "$bin"
