#!/usr/bin/env bash
# `recado loadgen` on SQLite and on PostgreSQL with 1, 2 and 3 nodes, side by side, in one session:
#   bash bench/postgres-nodes.sh [ROUNDS] [MESSAGES]
# Each round runs the four in turn (so that a change in the machine's load touches them alike). PostgreSQL is
# a throwaway cluster of Debian's package under a temporary directory, with its default durability (`fsync`
# and `synchronous_commit` on), reached over its Unix socket; every PostgreSQL run gets a new database owned
# by a role without superuser rights, so row-level security applies as in production.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
messages="${2:-20000}"

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  as_root=""
  if [ "$(id -u)" -ne 0 ]; then as_root="sudo"; fi
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
fi
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
cargo build --release --locked
recado="$PWD/target/release/recado"

dir="$(mktemp -d /tmp/recado-bench-pg.XXXXXX)"
# PostgreSQL refuses to run as root: the cluster is the postgres user's then.
owner=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$dir"
  owner=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
stop() {
  "${owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
"${owner[@]}" "$bin/initdb" --auth=trust --username=postgres --encoding=UTF8 --locale=C.UTF-8 -D "$dir/data" >/dev/null
"${owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-k $dir -c listen_addresses= -c max_connections=200 ${PG_EXTRA:-}" start >/dev/null
psql() { "$bin/psql" -h "$dir" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
psql "CREATE ROLE recado LOGIN"
socket="$(printf '%s' "$dir" | sed 's|/|%2F|g')"

run() {
  echo "== $1 (round $2)"
  shift 2
  "$recado" loadgen --messages "$messages" --concurrency 64 "$@"
}
for round in $(seq 1 "$rounds"); do
  run "SQLite" "$round"
  for nodes in 1 2 3; do
    database="bench_${round}_${nodes}"
    psql "CREATE DATABASE $database OWNER recado"
    run "PostgreSQL, $nodes node(s)" "$round" --database-url "postgres://recado@$socket/$database" --nodes "$nodes"
    psql "DROP DATABASE $database"
  done
done
