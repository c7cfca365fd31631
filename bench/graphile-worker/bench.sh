#!/usr/bin/env bash
# graphile-worker anchor benchmark.
#
# Usage: bench.sh WORKDIR
#
#   WORKDIR  scratch directory (created if missing). It receives the npm
#            install (WORKDIR/app), the throwaway Postgres cluster
#            (WORKDIR/pg), logs and WORKDIR/result.json.
#
# Environment:
#   PGURL        use this existing database instead of starting a throwaway
#                cluster (the graphile_worker schema is installed/updated in it;
#                only jobs of the tasks send_email and noop are touched)
#   PG_BIN       Postgres binaries dir (default: `pg_config --bindir`, else the
#                newest /usr/lib/postgresql/*/bin)
#   PG_PORT      port for the throwaway cluster (default 55432, 127.0.0.1 only)
#   PG_OS_USER   OS user that runs the throwaway cluster when invoked as root
#                (default postgres)
#   SMTP_PORT    port of the SMTP sink (default 2525, 127.0.0.1 only)
#   KEEP_PG=1    leave the throwaway cluster running at the end
#   N, CONCURRENCIES, MODES, TASKS, LAT_SAMPLES, LAT_GAP_MS, LAT_CONCURRENCY,
#   RUN_TIMEOUT_S  benchmark parameters, see bench.mjs / README.md
#
# Output: progress on stderr; the last line on stdout is the result JSON
# (also written to WORKDIR/result.json).
set -euo pipefail

WORKDIR="${1:-${WORKDIR:-}}"
if [[ -z "$WORKDIR" ]]; then
  echo "usage: $0 WORKDIR" >&2
  exit 2
fi
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$WORKDIR"
WORKDIR="$(cd "$WORKDIR" && pwd)"
APP="$WORKDIR/app"
PG_PORT="${PG_PORT:-55432}"
SMTP_PORT="${SMTP_PORT:-2525}"
PG_OS_USER="${PG_OS_USER:-postgres}"
export SMTP_PORT SMTP_HOST=127.0.0.1

log() { echo "[bench.sh] $*" >&2; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

SINK_PID=""
PG_STARTED=""
PG_DIR="$WORKDIR/pg"            # owned by the cluster's OS user
PGDATA_DIR="$PG_DIR/data"

as_pg_user() {
  if [[ "$(id -u)" == "0" ]]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

cleanup() {
  local rc=$?
  if [[ -n "$SINK_PID" ]] && kill -0 "$SINK_PID" 2>/dev/null; then
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    log "SMTP sink (pid $SINK_PID) stopped"
  fi
  if [[ -n "$PG_STARTED" && "${KEEP_PG:-0}" != "1" ]]; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
    log "Postgres cluster stopped"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- npm app --
mkdir -p "$APP"
cp "$SRC_DIR/package.json" "$SRC_DIR/package-lock.json" "$SRC_DIR/bench.mjs" "$SRC_DIR/worker.mjs" \
  "$SRC_DIR/smtp-sink.mjs" "$APP/"
if [[ ! -d "$APP/node_modules/graphile-worker" ]] \
   || ! cmp -s "$APP/package-lock.json" "$APP/.installed-package-lock.json"; then
  log "npm ci in $APP (graphile-worker, nodemailer and pg as package-lock.json pins them)"
  (cd "$APP" && npm ci --no-audit --no-fund --loglevel=error >&2)
  cp "$APP/package-lock.json" "$APP/.installed-package-lock.json"
fi

# --------------------------------------------------------------- postgres --
if [[ -z "${PGURL:-}" ]]; then
  if [[ -z "${PG_BIN:-}" ]]; then
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
      PG_BIN="$(pg_config --bindir)"
    else
      PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    fi
  fi
  [[ -x "$PG_BIN/initdb" ]] || { log "initdb not found (set PG_BIN)"; exit 1; }
  if port_in_use "$PG_PORT"; then log "port $PG_PORT already in use"; exit 1; fi
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  if [[ "$(id -u)" == "0" ]]; then chown "$PG_OS_USER" "$PG_DIR"; fi
  log "initdb ($PG_BIN) -> $PGDATA_DIR"
  as_pg_user "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --no-sync >"$WORKDIR/initdb.log" 2>&1
  as_pg_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_DIR/postgres.log" -w \
    -o "-c port=$PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR" start >&2
  PG_STARTED=1
  PGURL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  psql "$PGURL" -XqAt -c "create database bench" >&2
  PGURL="postgres://postgres@127.0.0.1:$PG_PORT/bench"
fi
export PGURL

# ---------------------------------------------------------------- SMTP sink --
if port_in_use "$SMTP_PORT"; then log "port $SMTP_PORT already in use"; exit 1; fi
node "$APP/smtp-sink.mjs" "$SMTP_PORT" 127.0.0.1 &
SINK_PID=$!
for _ in $(seq 1 100); do port_in_use "$SMTP_PORT" && break; sleep 0.1; done
port_in_use "$SMTP_PORT" || { log "SMTP sink did not start"; exit 1; }

# ------------------------------------------------------------------ schema --
log "installing graphile-worker schema"
(cd "$APP" && ./node_modules/.bin/graphile-worker -c "$PGURL" --schema-only >&2)

# --------------------------------------------------------------- benchmark --
log "running benchmark (progress on stderr)"
(cd "$APP" && node bench.mjs) >"$WORKDIR/result.json"
cat "$WORKDIR/result.json"
