#!/usr/bin/env bash
# Entrypoint of the local PostgreSQL image: the official image's behaviour,
# reduced to what cmdtrack's tests and docker-compose.yml use.
set -Eeuo pipefail

log() { printf '%s\n' "$*" >&2; }

# `docker run IMAGE -c fsync=off` means `postgres -c fsync=off`.
if [[ "${1:-}" == -* ]]; then
	set -- postgres "$@"
fi

if [[ "${1:-}" == postgres && "$(id -u)" == 0 ]]; then
	# A fresh volume belongs to root: hand it to postgres, then step down.
	install -d -o postgres -g postgres -m 0700 "$PGDATA"
	chown postgres:postgres "$PGDATA"
	chmod 0700 "$PGDATA"
	install -d -o postgres -g postgres -m 3777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [[ "${1:-}" == postgres && ! -s "$PGDATA/PG_VERSION" ]]; then
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
	if [[ -z "${POSTGRES_PASSWORD:-}" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
		log 'Error: Database is uninitialized and superuser password is not specified.'
		log '       You must specify POSTGRES_PASSWORD to a non-empty value for the'
		log '       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".'
		exit 1
	fi
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image.
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
		--encoding=UTF8 ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	# The init server listens on the socket only, so nobody connects before
	# the database and the init scripts are in place.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
	export PGUSER="$POSTGRES_USER" PGPASSWORD="${POSTGRES_PASSWORD:-}" PGHOST=/var/run/postgresql
	psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password)
	if [[ "$POSTGRES_DB" != postgres ]]; then
		"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		# Executable scripts run; others are sourced, as in the official image.
		# shellcheck disable=SC1090
		case "$f" in
		*.sh) log "running $f"; if [[ -x "$f" ]]; then "$f"; else . "$f"; fi ;;
		*.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
		*.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
		*) [[ -e "$f" ]] && log "ignoring $f" ;;
		esac
	done
	unset PGPASSWORD
	pg_ctl -D "$PGDATA" -m fast -w stop
	log 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
