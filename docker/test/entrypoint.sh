#!/bin/sh
# Entrypoint of the test's Debian redis/postgres image: does what the official images' entrypoints
# do for docker-compose.yml's redis and postgres services, no more.
set -eu

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

case "${1:-}" in
redis-server)
    # the official image builds redis with protected mode off; without a password protected mode
    # refuses every client that is not on loopback, i.e. every other container
    exec "$@" --protected-mode no ;;
postgres)
    shift
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    PGDATA=${PGDATA:-/var/lib/postgresql/data}
    mkdir -p "$PGDATA" /run/postgresql
    chown -R postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        # UTF8 as in the official image: initdb's default here would be SQL_ASCII, whose text
        # psycopg returns as bytes
        pwfile=$(mktemp)
        printf '%s\n' "${POSTGRES_PASSWORD:?}" > "$pwfile"
        chown postgres "$pwfile"
        as_postgres "$bin/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
        rm -f "$pwfile"
        echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
            echo "CREATE DATABASE \"$POSTGRES_DB\";" \
                | as_postgres "$bin/postgres" --single -D "$PGDATA" postgres > /dev/null
        fi
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$PGDATA" "$@" ;;
*)
    exec "$@" ;;
esac
