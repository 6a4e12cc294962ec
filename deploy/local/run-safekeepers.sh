#!/usr/bin/env bash
# Starts three safekeepers on this machine (data in ./.strata), prints how to
# use them, and stops them on Ctrl-C. `make run` calls this until the full
# local cluster (`strata local up`) lands.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${STRATA_BIN_DIR:-$PWD/bin}
DIR=${STRATA_DIR:-$PWD/.strata}
mkdir -p "$DIR"
pids=()
stopped=
cleanup() {
  [ -n "$stopped" ] && return
  stopped=1
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "safekeepers stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
for i in 1 2 3; do
  "$BIN/safekeeper" --id "$i" --datadir "$DIR/sk$i" \
    --listen-pg "127.0.0.1:$((5453 + i * 10 + 1))" --listen-grpc "127.0.0.1:$((5453 + i * 10 + 2))" \
    --listen-http "127.0.0.1:$((7666 + i * 10))" >"$DIR/sk$i.log" 2>&1 &
  pids+=($!)
done
sleep 1
for i in 1 2 3; do
  if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
    echo "safekeeper $i failed to start:"; tail -20 "$DIR/sk$i.log"; exit 1
  fi
done
cat <<MSG
Three safekeepers are running (data and logs in $DIR):
  sk1: libpq 127.0.0.1:5464  gRPC 127.0.0.1:5465  metrics http://127.0.0.1:7676/metrics
  sk2: libpq 127.0.0.1:5474  gRPC 127.0.0.1:5475  metrics http://127.0.0.1:7686/metrics
  sk3: libpq 127.0.0.1:5484  gRPC 127.0.0.1:5485  metrics http://127.0.0.1:7696/metrics
A proposer pushes WAL with START_WAL_PUSH; read a timeline back with
  pg_receivewal -D DIR -d "host=127.0.0.1 port=5464 options='-c tenant_id=<t> timeline_id=<l>'"
Press Ctrl-C to stop them.
MSG
wait
