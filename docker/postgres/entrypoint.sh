#!/bin/sh
# PostgreSQL in a container: initialise $PGDATA on first start, then run the server in the
# foreground (PID 1, so `docker stop` reaches it). Arguments are passed to postgres.
#   POSTGRES_USER        superuser created by initdb (default postgres)
#   POSTGRES_PASSWORD    its password (required on first start; never on a command line)
#   POSTGRES_DATABASES   databases to create on first start, space-separated (default: the user's)
set -eu
: "${PGDATA:?}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DATABASES:=$POSTGRES_USER}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: POSTGRES_PASSWORD must be set to initialise $PGDATA" >&2
    exit 1
  fi
  pwfile=$(mktemp)  # 0600
  trap 'rm -f "$pwfile"' EXIT
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  # Local (socket) connections trust the container's own user, as the official image does;
  # every TCP connection needs the password.
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  {
    echo "listen_addresses = '*'"
    echo "password_encryption = 'scram-sha-256'"
  } >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # Create the databases with no TCP listener, so nothing connects before they exist.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  for db in $POSTGRES_DATABASES; do
    if [ "$db" != postgres ]; then
      echo 'CREATE DATABASE :"db";' | psql -q -v ON_ERROR_STOP=1 -v db="$db" \
        --username="$POSTGRES_USER" --dbname=postgres
    fi
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: initialised $PGDATA (databases: $POSTGRES_DATABASES)"
fi
exec postgres -D "$PGDATA" "$@"
