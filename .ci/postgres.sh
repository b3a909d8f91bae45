# Source this (bash, as root): starts a throwaway PostgreSQL server for the tests and exports
# TOPHAT_TEST_POSTGRES_URL; the server is stopped and its directory removed when the sourcing
# shell exits (an EXIT trap). Run it alone to try it:
#
#   bash -c 'source .ci/postgres.sh && psql "$TOPHAT_TEST_POSTGRES_URL" -c "select 1"'
#
# PostgreSQL refuses to run as root, so the cluster is made and run as the `postgres` user
# (Debian's package creates it) in a fresh temporary directory: nothing of the machine's own
# clusters is used or touched. It listens on 127.0.0.1 only, on a free port, with a random
# password (scram-sha-256), and on a Unix socket inside that directory.
# shellcheck shell=bash

tophat_pg_start() {
  local bindir pgdir port password
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    apt-get update -qq && apt-get install -y -qq postgresql
  fi
  bindir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)
  pgdir=$(mktemp -d /tmp/tophat-pg.XXXXXX)
  TOPHAT_PG_DIR=$pgdir
  TOPHAT_PG_BIN=$bindir
  trap tophat_pg_stop EXIT
  chown postgres: "$pgdir"
  chmod 700 "$pgdir"
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  # A free loopback port: bound once by the kernel's choice, released, then given to postgres.
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf '%s\n' "$password" >"$pgdir/pwfile"
  chown postgres: "$pgdir/pwfile"
  runuser -u postgres -- "$bindir/initdb" -D "$pgdir/data" -U postgres --pwfile="$pgdir/pwfile" \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$pgdir/initdb.log" 2>&1 ||
    { cat "$pgdir/initdb.log" >&2; return 1; }
  rm -f "$pgdir/pwfile"
  # fsync off: a test cluster that dies with the machine loses nothing anyone wants.
  runuser -u postgres -- "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c fsync=off -c max_connections=200" \
    start >/dev/null || { cat "$pgdir/server.log" >&2; return 1; }
  runuser -u postgres -- env PGPASSWORD="$password" \
    "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres tophat_test
  export TOPHAT_TEST_POSTGRES_URL="postgresql://postgres:$password@127.0.0.1:$port/tophat_test"
  echo "PostgreSQL test server on 127.0.0.1:$port ($pgdir)" >&2
}

tophat_pg_stop() {
  if [ -n "${TOPHAT_PG_DIR:-}" ] && [ -d "$TOPHAT_PG_DIR" ]; then
    runuser -u postgres -- "$TOPHAT_PG_BIN/pg_ctl" -D "$TOPHAT_PG_DIR/data" -m fast -w stop \
      >/dev/null 2>&1 || true
    rm -rf "$TOPHAT_PG_DIR"
  fi
}

tophat_pg_start
