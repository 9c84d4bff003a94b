#!/usr/bin/env bash
# Redis + PostgreSQL on 127.0.0.1 for the cluster-mode tests (tests/test_cluster.py, tests/test_api.py[postgres]).
# Installs Debian's redis-server and postgresql when missing (as root), starts both in a data folder (idempotent:
# servers already running there are reused), creates the database and user, and prints the URLs as `export` lines:
#   eval "$(scripts/services.sh)"        # -> RENDER_TEST_REDIS_URL, RENDER_TEST_POSTGRES_URL
#   scripts/services.sh stop             # stops both
# Logs go to stderr and to the data folder. Env: RENDER_SERVICES_DIR (default /tmp/render-services),
# RENDER_SERVICES_REDIS_PORT (default 56379), RENDER_SERVICES_PG_PORT (default 55432).
set -euo pipefail

DIR=${RENDER_SERVICES_DIR:-/tmp/render-services}
REDIS_PORT=${RENDER_SERVICES_REDIS_PORT:-56379}
PG_PORT=${RENDER_SERVICES_PG_PORT:-55432}
PG_DB=render_test PG_USER=render PG_PASSWORD=render
log() { echo "services.sh: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }
as_pg() {  # run as the postgres user when we are root (postgres refuses to run as root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = stop ]; then
  [ -f "$DIR/redis.pid" ] && kill "$(cat "$DIR/redis.pid")" 2>/dev/null || true
  [ -d "$DIR/pg" ] && as_pg "$(pg_bin)/pg_ctl" -D "$DIR/pg" -m fast stop >&2 || true
  exit 0
fi

if ! command -v redis-server >/dev/null || [ -z "$(pg_bin)" ]; then
  if [ "$(id -u)" != 0 ]; then
    log "redis-server / postgresql missing; run as root or: sudo apt-get install -y redis-server postgresql"
    exit 1
  fi
  log "installing redis-server and postgresql (apt)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql >/dev/null
fi
PG=$(pg_bin)
mkdir -p "$DIR"
chmod 755 "$DIR"

# --- Redis: in-memory only (the job store is the record; the queue needs no persistence for tests) ---
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  log "starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$DIR" --save "" --appendonly no \
    --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >&2
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null || { log "redis did not start"; exit 1; }
fi

# --- PostgreSQL: a private test cluster in $DIR/pg, listening on 127.0.0.1 only (trust auth: tests only) ---
if [ ! -f "$DIR/pg/PG_VERSION" ]; then
  log "initdb $DIR/pg"
  mkdir -p "$DIR/pg"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR/pg"
  as_pg "$PG/initdb" -D "$DIR/pg" -U postgres --auth=trust \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; exit 1; }
fi
if ! "$PG/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q; then
  log "starting postgres on 127.0.0.1:$PG_PORT"
  # fsync off: a test database (a crash loses nothing the tests need); unix socket in the data folder.
  as_pg "$PG/pg_ctl" -D "$DIR/pg" -l "$DIR/pg/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $DIR/pg -c fsync=off -c synchronous_commit=off -c max_connections=200" \
    start >&2
fi
psql_admin() { as_pg "$PG/psql" -h "$DIR/pg" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
  psql_admin -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >&2
fi

echo "export RENDER_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
echo "export RENDER_TEST_POSTGRES_URL=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
