#!/usr/bin/env bash
# A short write load against a given sentra-edge binary, to compare builds of the same code
# (musl static opt-level "s" against "z", musl against glibc):
#
#   bash scripts/api-load.sh BINARY [SECONDS] [CONNECTIONS]
#
# Starts `BINARY demo` (a throwaway store with a generated key, free ports), pairs a tablet, then
# wrk posts work orders (each one an acknowledged SQLCipher transaction with its outbox event)
# for SECONDS (10) over CONNECTIONS (16) connections, and prints wrk's figures: requests/s and
# the latency distribution. Needs wrk, curl and jq (apt-get install wrk curl jq).
set -euo pipefail
bin="${1:?usage: api-load.sh BINARY [SECONDS] [CONNECTIONS]}"
secs="${2:-10}"
conns="${3:-16}"

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
for tool in wrk curl jq; do
    command -v "$tool" >/dev/null || die "$tool missing: apt-get install $tool"
done
[ -x "$bin" ] || die "$bin: no such executable"

work="$(mktemp -d)"
demo_pid=
cleanup() {
    if [ -n "$demo_pid" ]; then
        kill "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=warn "$bin" demo > "$work/demo.out" 2> "$work/demo.err" &
demo_pid=$!
for _ in $(seq 1 300); do
    grep -q '^export ADMIN_CODE=' "$work/demo.out" 2>/dev/null && break
    kill -0 "$demo_pid" 2>/dev/null || die "demo exited: $(cat "$work/demo.err")"
    sleep 0.1
done
api="$(sed -n 's/^export API=//p' "$work/demo.out")"
code="$(sed -n 's/^export TABLET_CODE=//p' "$work/demo.out")"
# The API is HTTPS with the box's own certificate: curl pins its key as a tablet does (wrk, which
# only measures, does not check certificates).
pin="$(sed -n 's/^export PIN=//p' "$work/demo.out")"
if [ -z "$api" ] || [ -z "$code" ] || [ -z "$pin" ]; then
    die "demo printed no API, certificate pin and tablet code: $(cat "$work/demo.out")"
fi
answer="$(curl -sS -k --pinnedpubkey "$pin" "$api/v1/pair" -H 'content-type: application/json' \
    -d "{\"code\": \"$code\", \"device_name\": \"load\"}")" || die "pairing failed: $answer"
token="$(jq -r .token <<<"$answer")"
if [ -z "$token" ] || [ "$token" = null ]; then
    die "pairing failed: $answer"
fi

cat > "$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $token"
wrk.body = '{"customer_name": "Budi Santoso", "vehicle_plate": "B 1234 XYZ", "complaint": "Rem bunyi saat mengerem"}'
done = function(summary, latency, requests)
    local non2xx = summary.errors.status
    io.write(string.format("non-2xx answers: %d\n", non2xx))
end
EOF
printf '%s: %s s, %s connections, POST /v1/work-orders\n' "$("$bin" version)" "$secs" "$conns"
wrk -t 2 -c "$conns" -d "${secs}s" --latency -s "$work/post.lua" "$api/v1/work-orders"
