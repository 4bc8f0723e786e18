#!/usr/bin/env bash
# Rough figures for customer notifications: N due rows published to RabbitMQ by
# `notify publish-due`, then sent by one `notify worker` through the sandbox gateway.
# `cargo build -p sentra-cloud && bash scripts/measure-notify.sh` (N=2000 by default; BIN= another
# binary). Needs PostgreSQL (postgres role over TCP) and RabbitMQ on 127.0.0.1, like the tests.
set -euo pipefail
BIN=${BIN:-target/debug/sentra-cloud}
N=${N:-2000}
DB=sentra_notify_measure_$$
Q=sentra_measure.$$
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB"
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export SENTRA_CLOUD__NOTIFY__AMQP_URL='amqp://guest:guest@127.0.0.1:5672/%2f'
export SENTRA_CLOUD__NOTIFY__QUEUE=$Q
export RUST_LOG=warn
export SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN=measure-token
$BIN migrate
psql -q -h 127.0.0.1 -U postgres -d $DB -c "SELECT schedule_notification('measure:' || g, 'booking_confirmed', 'JKT01', '628123456789', '{\"asset_id\":\"a\",\"first_day\":\"2027-01-01\",\"last_day\":\"2027-01-02\"}', now()) FROM generate_series(1, $N) g" >/dev/null
start=$(date +%s.%N)
$BIN notify publish-due
end=$(date +%s.%N)
echo "publish-due: $N in $(echo "$end - $start" | bc) s"
coproc SANDBOX { exec $BIN notify sandbox --listen 127.0.0.1:0; }
read -r line <&"${SANDBOX[0]}"
addr=${line#listening on }
export SENTRA_CLOUD__NOTIFY__GATEWAY_URL=http://$addr
start=$(date +%s.%N)
$BIN notify worker & WORKER=$!
until [ "$(psql -tA -h 127.0.0.1 -U postgres -d $DB -c "SELECT count(*) FROM notifications WHERE state = 'SENT'")" = "$N" ]; do sleep 0.2; done
end=$(date +%s.%N)
echo "worker: $N sent in $(echo "$end - $start" | bc) s"
kill $WORKER; wait $WORKER || true
kill $SANDBOX_PID; wait $SANDBOX_PID 2>/dev/null || true
for q in $Q $Q.dead $Q.retry.2000ms $Q.retry.4000ms $Q.retry.8000ms $Q.retry.16000ms; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE $DB WITH (FORCE)"
