#!/usr/bin/env bash
# The idle memory of a `sentra-edge` daemon: `bash scripts/idle-rss.sh [BINARY] [SECONDS]`.
#
# Starts BINARY (default: the static build, scripts/build-static.sh) on a fresh store in a
# temporary directory with the API, the broker and the (unenrolled) sync task on, the printer and
# scanner off, on loopback ports picked free, twice: the first start creates the store and its
# certificates, the second opens them as a box does at every boot. After SECONDS (default 10) of
# each it prints the process's resident memory from /proc (VmRSS, its anonymous part, the part in
# transparent huge pages) and its thread count, then stops it. docs/benchmarks.md, "Idle memory".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin="${1:-}"
if [ -z "$bin" ]; then
    bin="$(bash scripts/build-static.sh | tail -1)"
fi
settle="${2:-10}"
[ -x "$bin" ] || { echo "error: $bin is not an executable" >&2; exit 1; }

dir="$(mktemp -d)"
pid=""
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

"$bin" keygen "$dir/key" >/dev/null
cat >"$dir/edge.toml" <<TOML
[store]
data_dir = "$dir/data"
key_file = "$dir/key"
[api]
listen = "127.0.0.1:$(free_port)"
tls_listen = "127.0.0.1:$(free_port)"
[printer]
enabled = false
[scanner]
enabled = false
[mqtt]
listen = "127.0.0.1:$(free_port)"
tls_listen = "127.0.0.1:$(free_port)"
TOML

kib() { awk -v k="$1" '$1 == k":" { print $2 }' "$2"; }

for start in first again; do
    "$bin" run --config "$dir/edge.toml" >"$dir/run.log" 2>&1 &
    pid=$!
    sleep "$settle"
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$dir/run.log" >&2
        echo "error: the daemon exited" >&2
        exit 1
    fi
    printf '%s start, after %s s: VmRSS %s KiB (anonymous %s KiB, in huge pages %s KiB), %s threads\n' \
        "$start" "$settle" \
        "$(kib VmRSS "/proc/$pid/status")" "$(kib RssAnon "/proc/$pid/status")" \
        "$(kib AnonHugePages "/proc/$pid/smaps_rollup")" "$(kib Threads "/proc/$pid/status")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
done
