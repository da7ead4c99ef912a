#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the store tests and prints its URL (source-able: `eval "$(scripts/postgres.sh)"`).
# The cluster lives in a temp directory, owned by the `postgres` user (initdb refuses root), listens on 127.0.0.1 at a
# free port with trust auth, and skips fsync: nothing in it outlives the run. Stop it with `scripts/postgres.sh stop DIR`.
set -euo pipefail

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ "${1:-}" = "stop" ]; then
  dir="$2"
  bin="$(find_bin)"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit 0
fi

bin="$(find_bin)"
if [ -z "$bin" ]; then
  echo "installing PostgreSQL from Debian packages" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin="$(find_bin)"
fi
[ -n "$bin" ] || { echo "error: PostgreSQL binaries not found after install" >&2; exit 1; }

dir="$(mktemp -d /tmp/portway-pg.XXXXXX)"
chown postgres "$dir"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U portway -A trust --no-sync -E UTF8 >/dev/null
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null
echo "export PORTWAY_TEST_POSTGRES_URL=postgresql://portway@127.0.0.1:$port/postgres"
echo "export PORTWAY_TEST_POSTGRES_DIR=$dir"
