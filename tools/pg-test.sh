#!/usr/bin/env bash
# A throwaway PostgreSQL for the relay's tests and benchmark, on 127.0.0.1.
#
#   eval "$(tools/pg-test.sh start)"   # prints `export RELAY_TEST_DATABASE_URL=…` and `export PG_TEST_DIR=…`
#   tools/pg-test.sh stop              # stops the server of $PG_TEST_DIR and removes it
#   tools/pg-test.sh run CMD ARGS…     # start, run CMD with those variables, stop (always)
#
# The server refuses to run as root: initdb and pg_ctl run as the `postgres` user,
# in a temporary folder owned by it, on a free port; trust authentication on the
# loopback address only.
set -euo pipefail

bin_dir() {
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v pg_ctl)"
  else
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
  fi
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    BIN=$(bin_dir)
    if [ -z "$BIN" ] || [ ! -x "$BIN/pg_ctl" ]; then
      echo "pg-test: PostgreSQL is not installed (apt-get install -y postgresql)" >&2
      exit 1
    fi
    dir=$(mktemp -d /tmp/relay-pg.XXXXXX)
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_postgres "$BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_postgres "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300 -c shared_buffers=64MB" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "export PG_TEST_DIR=$dir"
    echo "export RELAY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    dir=${PG_TEST_DIR:-${2:-}}
    [ -n "$dir" ] && [ -d "$dir/data" ] || exit 0
    BIN=$(bin_dir)
    as_postgres "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  run)
    shift
    eval "$("$0" start)"
    trap '"$0" stop' EXIT
    "$@"
    ;;
  *)
    echo "usage: $0 start|stop|run CMD…" >&2
    exit 2
    ;;
esac
