#!/usr/bin/env bash
# A local Strata cluster on this machine, for `make run`: three safekeepers,
# an unmodified PostgreSQL 15 primary, the walproposer between them, so
# every commit waits until two of the three safekeepers have it on disk,
# and a pageserver that streams the timeline from the safekeepers into
# versioned layer files (the primary's initdb state is imported into it
# before the primary first starts).
# State lives in $STRATA_DIR (default ./.strata); running it again resumes
# the same cluster. Ctrl-C stops everything it started.
#
# (`strata local up` replaces this script when it lands.)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${STRATA_BIN_DIR:-$PWD/bin}
DIR=${STRATA_DIR:-$PWD/.strata}
PGBIN=${STRATA_PG_BINDIR:-/usr/lib/postgresql/15/bin}
PGPORT=${STRATA_PG_PORT:-55432}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

say() { printf '%s\n' "$*"; }
die() { say "run: $*" >&2; exit 1; }
[ -x "$BIN/safekeeper" ] && [ -x "$BIN/walproposer" ] && [ -x "$BIN/pageserver" ] && [ -f "$BIN/walredo.so" ] || die "build first: make build"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
[ -x "$PGBIN/postgres" ] || die "PostgreSQL 15 not found in $PGBIN (apt-get install postgresql-15)"

# PostgreSQL refuses to run as root: run it as the postgres user then.
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user for PostgreSQL"
  aspg() { runuser -u postgres -- "$@"; }
  PGDATA_PARENT=$DIR
  if ! runuser -u postgres -- test -x "$DIR"; then
    PGDATA_PARENT=/var/tmp/strata-local
    say "note: $DIR is not reachable by the postgres user; PostgreSQL data goes to $PGDATA_PARENT"
  fi
  mkdir -p "$PGDATA_PARENT"
else
  aspg() { "$@"; }
  PGDATA_PARENT=$DIR
fi
PGDATA=$PGDATA_PARENT/pg
PGSOCK=$PGDATA_PARENT/pgsock

# Tenant and timeline ids are made once and kept.
if [ ! -f "$DIR/ids" ]; then
  hex() { head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
  printf 'TENANT=%s\nTIMELINE=%s\n' "$(hex)" "$(hex)" > "$DIR/ids"
fi
. "$DIR/ids"

pids=()
stopped=
cleanup() {
  [ -n "$stopped" ] && return
  stopped=1
  say "stopping..."
  [ -n "${WP_PID:-}" ] && kill "$WP_PID" 2>/dev/null || true
  [ -n "${PS_PID:-}" ] && kill "$PS_PID" 2>/dev/null || true
  # runuser does not pass the signal on: stop the pageserver by its pid file.
  [ -f "${PSDIR:-/nonexistent}/pageserver.pid" ] && kill "$(cat "$PSDIR/pageserver.pid")" 2>/dev/null || true
  aspg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  say "stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

SKS=
SKS_GRPC=
for i in 1 2 3; do
  pg=127.0.0.1:$((5453 + i * 10 + 1))
  grpc=127.0.0.1:$((5453 + i * 10 + 2))
  "$BIN/safekeeper" --id "$i" --datadir "$DIR/sk$i" --listen-pg "$pg" \
    --listen-grpc "$grpc" --listen-http "127.0.0.1:$((7666 + i * 10))" \
    >>"$DIR/sk$i.log" 2>&1 &
  pids+=($!)
  SKS=${SKS:+$SKS,}$pg
  SKS_GRPC=${SKS_GRPC:+$SKS_GRPC,}$grpc
done

# The pageserver runs initdb-like work and must not be root either.
PSDIR=$PGDATA_PARENT/pageserver
mkdir -p "$PSDIR"
[ "$(id -u)" = 0 ] && chown postgres: "$PSDIR"
PSBIN=$BIN/pageserver
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$PSBIN"; then
  cp "$PSBIN" "$PSDIR/pageserver-bin" && chmod 755 "$PSDIR/pageserver-bin" && PSBIN=$PSDIR/pageserver-bin
  # The WAL-redo extension the pageserver loads lives next to its binary.
  cp "$BIN/walredo.so" "$PSDIR/walredo.so" && chmod 644 "$PSDIR/walredo.so"
fi
aspg "$PSBIN" --id 1 --datadir "$PSDIR" --safekeepers "$SKS" --safekeepers-grpc "$SKS_GRPC" --listen-http 127.0.0.1:9898 \
  --listen-grpc 127.0.0.1:64001 --listen-pg 127.0.0.1:64000 >>"$DIR/pageserver.log" 2>&1 &
PS_PID=$!
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9898/v1/status >/dev/null && break
  kill -0 "$PS_PID" 2>/dev/null || die "the pageserver exited: see $DIR/pageserver.log"
  sleep 0.1
done

START_LSN_ARG=()
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  say "initdb in $PGDATA"
  mkdir -p "$PGDATA" "$PGSOCK"
  [ "$(id -u)" = 0 ] && chown postgres: "$PGDATA" "$PGSOCK"
  aspg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >/dev/null
  cat >>"$PGDATA/postgresql.conf" <<CONF
# Added by Strata's run.sh
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGSOCK'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
synchronous_standby_names = 'walproposer'
synchronous_commit = on
CONF
  # The pageserver's timeline starts as initdb left the directory; the
  # safekeepers get the WAL from the segment of initdb's last checkpoint.
  CKPT=$(aspg "$PGBIN/pg_controldata" "$PGDATA" | sed -n 's/^Latest checkpoint location: *//p')
  say "importing the new cluster into the pageserver at $CKPT"
  tar -C "$PGDATA" -cf - . | curl -sf -X PUT -T - \
    "http://127.0.0.1:9898/v1/tenant/$TENANT/timeline/$TIMELINE/import_basebackup?base_lsn=$CKPT" >/dev/null \
    || die "import into the pageserver failed: see $DIR/pageserver.log"
  hi=${CKPT%/*}; lo=$((16#${CKPT#*/} & ~0xFFFFFF))
  START_LSN_ARG=(--start-lsn "$(printf '%X/%X' "0x$hi" "$lo")")
fi
if [ ${#START_LSN_ARG[@]} = 0 ] && ! curl -sf "http://127.0.0.1:9898/v1/tenant/$TENANT/timeline/$TIMELINE" >/dev/null; then
  # State from a run whose pageserver lost the timeline (or predates it): a
  # cleanly shut down cluster is imported as it is now; the safekeepers hold
  # the WAL after its checkpoint.
  STATE=$(aspg "$PGBIN/pg_controldata" "$PGDATA" | sed -n 's/^Database cluster state: *//p')
  if [ "$STATE" = "shut down" ]; then
    CKPT=$(aspg "$PGBIN/pg_controldata" "$PGDATA" | sed -n 's/^Latest checkpoint location: *//p')
    say "the pageserver has no copy of the timeline: importing the cluster at $CKPT"
    tar -C "$PGDATA" -cf - . | curl -sf -X PUT -T - \
      "http://127.0.0.1:9898/v1/tenant/$TENANT/timeline/$TIMELINE/import_basebackup?base_lsn=$CKPT" >/dev/null \
      || die "import into the pageserver failed: see $DIR/pageserver.log"
  else
    say "warning: the pageserver has no copy of the timeline and PostgreSQL was not shut down cleanly"
    say "         ($STATE), so it cannot be imported now: no pages or basebackups (rm -rf $DIR for a fresh cluster)"
  fi
fi
PGLOG=$PGDATA_PARENT/postgresql.log
touch "$PGLOG"
[ "$(id -u)" = 0 ] && chown postgres: "$PGLOG"
aspg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w start >/dev/null || die "PostgreSQL did not start: see $PGLOG"

"$BIN/walproposer" --pgconn "host=$PGSOCK port=$PGPORT user=postgres dbname=postgres" --safekeepers "$SKS" \
  --tenant-id "$TENANT" --timeline-id "$TIMELINE" "${START_LSN_ARG[@]}" --listen-http 127.0.0.1:7678 >>"$DIR/walproposer.log" 2>&1 &
WP_PID=$!
for _ in $(seq 100); do
  if aspg "$PGBIN/psql" -h "$PGSOCK" -p "$PGPORT" -U postgres -Atqc \
      "select 1 from pg_stat_replication where application_name = 'walproposer' and sync_state = 'sync'" postgres 2>/dev/null | grep -q 1; then
    break
  fi
  kill -0 "$WP_PID" 2>/dev/null || die "the walproposer exited: see $DIR/walproposer.log"
  sleep 0.1
done

cat <<MSG

Strata is running (state in $DIR; logs there too).

  Connect:   psql "postgresql://postgres@127.0.0.1:$PGPORT/postgres"
             Every commit returns only once 2 of 3 safekeepers have it on disk.

  Safekeepers (libpq / gRPC / metrics):
    sk1  127.0.0.1:5464  127.0.0.1:5465  http://127.0.0.1:7676/metrics
    sk2  127.0.0.1:5474  127.0.0.1:5475  http://127.0.0.1:7686/metrics
    sk3  127.0.0.1:5484  127.0.0.1:5485  http://127.0.0.1:7696/metrics
  Walproposer metrics: http://127.0.0.1:7678/metrics
  Pageserver: http://127.0.0.1:9898/v1/tenant/$TENANT/timeline/$TIMELINE (status), /metrics
    pages and basebackups on libpq 127.0.0.1:64000, e.g. a tar vanilla PostgreSQL starts from:
    psql -h 127.0.0.1 -p 64000 -c "basebackup $TENANT $TIMELINE" > base.tar   (COPY OUT)
  Timeline: tenant $TENANT timeline $TIMELINE
    pg_receivewal -D DIR -d "host=127.0.0.1 port=5464 options='-c tenant_id=$TENANT timeline_id=$TIMELINE'"

Press Ctrl-C to stop.
MSG
wait "$WP_PID"
