#!/usr/bin/env bash
# testenv.sh: provision and drive the local services that cmdtrack's integration tests need:
# PostgreSQL (a throw-away cluster under /var/tmp) and RabbitMQ with its AMQP 1.0 plugin, both on loopback only.
# RabbitMQ also serves an IoTDA-shaped endpoint: AMQPS on 127.0.0.1:5671 with a certificate from a test CA, and
# users checked over HTTP (rabbitmq_auth_backend_http) by the auth service that the tests run on a fixed port
# (internal/testenv/iotdaauth.go). guest keeps working on 5672.
#
# Usage: scripts/testenv.sh COMMAND
#   up                  install (if missing), start and wait for both (and install chromium for the console's browser tests);
#                       prints `export ...` lines on stdout,
#                       so a Makefile can do: eval "$(scripts/testenv.sh up)"
#   env                 print the export lines only (provisions nothing)
#   chromium            install Debian's chromium if missing (the console's browser tests; `up` does it too)
#   down                stop both
#   pg-stop, pg-start   stop / start PostgreSQL only (simulated database outage)
#   rabbit-stop, rabbit-start
#                       stop / start the whole RabbitMQ node (Erlang VM included; ~5 s to start)
#   rabbit-stop-app, rabbit-start-app, rabbit-restart-app
#                       stop / start / bounce only the RabbitMQ application inside a running node
#                       (rabbitmqctl stop_app / start_app): the listener goes away and comes back, much faster
#   status              show what is running (on stderr)
#   ha-up               a highly available PostgreSQL of its own (pg_auto_failover: Debian's
#                       postgresql-NN-auto-failover, installed if missing): a monitor on 127.0.0.1:54340 and two
#                       nodes on 54341/54342 with synchronous replication, under /var/tmp/cmdtrack-testenv/ha;
#                       returns once one node is primary and the other its secondary; prints ha-env's lines
#   ha-env              print its export lines only (CMDTRACK_TEST_HA_DATABASE_URL, multi-host, read-write;
#                       CMDTRACK_TEST_HA_STANDBY_URL, prefer-standby)
#   ha-failover         a planned failover (pg_autoctl perform failover); returns once the pair is whole again
#   ha-kill-primary     the primary node dies: kill -9 its pg_autoctl and PostgreSQL (its whole process group); waits
#                       until the monitor has promoted the other node and it takes writes, then brings the dead node
#                       back as the standby (ha-rejoin); returns once the pair is whole; prints on stdout one line,
#                       `killed=HOST:PORT promoted=HOST:PORT writes_after=SECONDS whole_after=SECONDS`
#   ha-rejoin           ha-up without its output: starts whatever of the pair is not running (a killed node rejoins as
#                       the standby) and returns once the pair is whole
#   ha-down             stop the monitor and both nodes (their data stays, for the next ha-up)
#   ha-state            the monitor's view of the pair (on stderr)
# Every command is idempotent and returns only once the service is really up (or really down).
# Only the export lines go to stdout; all progress and diagnostics go to stderr.
#
# Environment:
#   CMDTRACK_TESTENV_PG_PORT   PostgreSQL TCP port on 127.0.0.1 (default 54329)
# The HA pair is apart from that cluster: the serial tests stop and kill its nodes without disturbing anyone else.
#
# Needs root (it installs packages, edits /etc/rabbitmq and runs the services as their own users).
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
readonly SCRIPT_PATH
# The services must not inherit the caller's cwd (the postgres user may not be able to enter it), and the
# sbin directories hold rabbitmq-server/rabbitmqctl and runuser even when a Makefile runs us with a thin PATH.
cd /
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"
# libpq environment from the caller (PGHOST, PGDATABASE, PGOPTIONS, ...) must not redirect our own psql calls.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGOPTIONS PGSERVICE PGSSLMODE

readonly BASE_DIR=/var/tmp/cmdtrack-testenv
readonly PGDATA_DIR="$BASE_DIR/pg"
readonly PG_LOG="$BASE_DIR/postgresql.log"
readonly PG_CONF_NAME=cmdtrack-testenv.conf
readonly PG_PORT="${CMDTRACK_TESTENV_PG_PORT:-54329}"
readonly PG_DB=cmdtrack
readonly AMQP_PORT=5672
readonly AMQPS_PORT=5671
# The tests' IoTDA auth service listens here (internal/testenv/iotdaauth.go has the same address).
readonly IOTDA_AUTH_ADDR=127.0.0.1:18015
readonly TLS_DIR="$BASE_DIR/tls"
readonly RABBIT_ENV_CONF=/etc/rabbitmq/rabbitmq-env.conf
readonly RABBIT_CONF=/etc/rabbitmq/rabbitmq.conf
readonly RABBIT_PLUGINS_FILE=/etc/rabbitmq/enabled_plugins
readonly RABBIT_START_LOG="$BASE_DIR/rabbitmq-start.log"
readonly RABBIT_PLUGINS=(rabbitmq_amqp1_0 rabbitmq_auth_backend_http)
readonly MARK_BEGIN='# >>> cmdtrack-testenv (managed by scripts/testenv.sh) >>>'
readonly MARK_END='# <<< cmdtrack-testenv <<<'
# Upper bounds for waits; a healthy start takes ~1 s (PostgreSQL) and ~5 s (RabbitMQ).
readonly START_TIMEOUT=90

if ! [[ "$PG_PORT" =~ ^[0-9]+$ ]] || ((PG_PORT < 1 || PG_PORT > 65535)); then
	echo "testenv: CMDTRACK_TESTENV_PG_PORT must be a TCP port number, got '$PG_PORT'" >&2
	exit 2
fi

log() { printf 'testenv: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

print_env() {
	# Single quotes: the '?' in the URL is a glob character for whoever evals this.
	printf "export CMDTRACK_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:%s/%s?sslmode=disable'\n" "$PG_PORT" "$PG_DB"
	printf "export CMDTRACK_TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:%s/'\n" "$AMQP_PORT"
	# localhost, not 127.0.0.1: like IoTDA's endpoint, a host name that the certificate must match.
	printf "export CMDTRACK_TEST_AMQPS_URL='amqps://localhost:%s'\n" "$AMQPS_PORT"
	printf "export CMDTRACK_TEST_AMQP_CA_FILE='%s'\n" "$TLS_DIR/ca.pem"
	printf "export CMDTRACK_TEST_IOTDA_AUTH_ADDR='%s'\n" "$IOTDA_AUTH_ADDR"
}

require_root() {
	[[ $EUID -eq 0 ]] || die "must run as root (installs packages, edits /etc/rabbitmq, switches to service users)"
}

APT_UPDATED=0
apt_install() {
	if ((APT_UPDATED == 0)); then
		log "apt-get update"
		apt-get update >&2
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
}

# True if something listens on TCP port $1 on an address other than loopback (127.0.0.0/8 or ::1).
# Reads /proc directly because ss/netstat are not guaranteed to be installed.
listens_beyond_loopback() {
	local port_hex
	port_hex=$(printf '%04X' "$1")
	awk -v p="$port_hex" '
		FNR > 1 && $4 == "0A" {
			split($2, a, ":")
			if (a[2] != p) next
			addr = a[1]
			if (length(addr) == 8 && substr(addr, 7, 2) == "7F") next   # 127.x.x.x, little-endian
			if (addr == "00000000000000000000000001000000") next          # ::1
			found = 1
		}
		END { exit found ? 0 : 1 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# True if something listens on 127.0.0.1:$1 (or on a wildcard address, which also covers it).
listens_on() {
	local port_hex
	port_hex=$(printf '%04X' "$1")
	awk -v p="$port_hex" '
		FNR > 1 && $4 == "0A" { split($2, a, ":"); if (a[2] == p) found = 1 }
		END { exit found ? 0 : 1 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------------------------

PGBIN=''
PSQL=''

find_pg_bin() {
	local d
	if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
		PGBIN=$(dirname "$(command -v pg_ctl)")
	else
		# Debian keeps the server binaries off PATH, one directory per major version: take the newest.
		for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
			if [[ -x "$d/pg_ctl" && -x "$d/initdb" ]]; then
				PGBIN=$d
				break
			fi
		done
	fi
	[[ -n "$PGBIN" ]] || return 1
	if command -v psql >/dev/null; then
		PSQL=$(command -v psql)
	elif [[ -x "$PGBIN/psql" ]]; then
		PSQL="$PGBIN/psql"
	else
		return 1
	fi
}

ensure_pg_installed() {
	[[ -n "$PGBIN" ]] && return 0
	if ! find_pg_bin; then
		log "PostgreSQL server binaries not found; installing Debian's postgresql"
		apt_install --no-install-recommends postgresql
		find_pg_bin || die "initdb/pg_ctl still not found after installing postgresql"
	fi
	# The package creates this user; a hand-installed server may not have it, and initdb refuses to run as root.
	if ! id -u postgres >/dev/null 2>&1; then
		log "creating system user postgres"
		useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
	fi
}

as_postgres() {
	runuser -u postgres -- "$@"
}

pg_ctl_() {
	as_postgres "$PGBIN/pg_ctl" -D "$PGDATA_DIR" "$@"
}

pg_running() {
	[[ -s "$PGDATA_DIR/PG_VERSION" ]] || return 1
	# Exit 0: running; 3: not running; 4: no usable data directory.
	pg_ctl_ status >/dev/null 2>&1
}

pg_psql() {
	"$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$BASE_DIR" -p "$PG_PORT" -U postgres "$@"
}

pg_settings() {
	# Durability is traded for speed: this cluster holds nothing but test data and is rebuilt at will.
	cat <<EOF
# Managed by scripts/testenv.sh; rewritten on every 'up'.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$BASE_DIR'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
# make bench's latency run reads each history row's commit time (pg_xact_commit_timestamp) instead of polling.
track_commit_timestamp = on
EOF
}

# Writes the settings file; returns 0 if it changed (so a running server must restart to pick it up).
pg_write_settings() {
	local conf="$PGDATA_DIR/$PG_CONF_NAME" want
	want=$(pg_settings)
	# An include keeps initdb's postgresql.conf pristine and lets us rewrite our part wholesale.
	if ! grep -qxF "include_if_exists = '$PG_CONF_NAME'" "$PGDATA_DIR/postgresql.conf"; then
		printf "\ninclude_if_exists = '%s'\n" "$PG_CONF_NAME" >>"$PGDATA_DIR/postgresql.conf"
	fi
	if [[ -f "$conf" ]] && [[ "$(cat "$conf")" == "$want" ]]; then
		return 1
	fi
	printf '%s\n' "$want" >"$conf"
	chown postgres:postgres "$conf"
	return 0
}

pg_init() {
	install -d -o postgres -g postgres -m 0755 "$BASE_DIR"
	[[ -s "$PGDATA_DIR/PG_VERSION" ]] && return 0
	if [[ -e "$PGDATA_DIR" ]]; then
		# A data directory without PG_VERSION is the leftover of an interrupted initdb; initdb refuses non-empty dirs.
		log "removing incomplete data directory $PGDATA_DIR"
		rm -rf "$PGDATA_DIR"
	fi
	log "initdb $PGDATA_DIR"
	# --no-sync: nothing here needs to survive a power cut, and syncing costs seconds.
	as_postgres "$PGBIN/initdb" -D "$PGDATA_DIR" --auth=trust -U postgres --encoding=UTF8 --locale=C --no-sync >&2
}

pg_start_server() {
	log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
	# -l sends the server's output to the log, so it never holds our stdout/stderr (a caller's $(...) would hang).
	if ! pg_ctl_ -l "$PG_LOG" -w -t "$START_TIMEOUT" start </dev/null >&2; then
		tail -n 30 "$PG_LOG" >&2 || true
		die "PostgreSQL did not start"
	fi
}

pg_up() {
	ensure_pg_installed
	pg_init
	local changed=0
	pg_write_settings && changed=1
	if pg_running; then
		if ((changed)); then
			log "PostgreSQL settings changed; restarting"
			pg_ctl_ -m fast -w -t "$START_TIMEOUT" -l "$PG_LOG" restart </dev/null >&2 ||
				{
					tail -n 30 "$PG_LOG" >&2 || true
					die "PostgreSQL did not restart"
				}
		else
			log "PostgreSQL already running"
		fi
	else
		pg_start_server
	fi
	if [[ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
		log "creating database $PG_DB"
		pg_psql -d postgres -c "CREATE DATABASE $PG_DB"
	fi
}

pg_down() {
	find_pg_bin || {
		log "PostgreSQL not installed; nothing to stop"
		return 0
	}
	if pg_running; then
		log "stopping PostgreSQL"
		# -m fast: disconnect clients right away (that is the outage the fault-injection tests want).
		pg_ctl_ -m fast -w -t "$START_TIMEOUT" stop >&2
	else
		log "PostgreSQL not running"
	fi
}

# ---------------------------------------------------------------------------------------------------------------
# Test CA and server certificate for the AMQPS listener
# ---------------------------------------------------------------------------------------------------------------

# True if the server certificate is there, issued by the CA, for localhost and 127.0.0.1, matches its key, and
# both certificates stay valid for another 30 days.
tls_valid() {
	local f sans
	for f in ca.pem server.pem server.key; do
		[[ -s "$TLS_DIR/$f" ]] || return 1
	done
	openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1 || return 1
	openssl x509 -in "$TLS_DIR/ca.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 || return 1
	openssl x509 -in "$TLS_DIR/server.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 || return 1
	sans=$(openssl x509 -in "$TLS_DIR/server.pem" -noout -ext subjectAltName 2>/dev/null) || return 1
	[[ "$sans" == *"DNS:localhost"* && "$sans" == *"IP Address:127.0.0.1"* ]] || return 1
	[[ "$(openssl x509 -in "$TLS_DIR/server.pem" -noout -pubkey 2>/dev/null)" == \
		"$(openssl pkey -in "$TLS_DIR/server.key" -pubout 2>/dev/null)" ]]
}

tls_generate() {
	local tmp
	log "generating a test CA and a server certificate for localhost and 127.0.0.1 in $TLS_DIR"
	install -d -m 0755 "$BASE_DIR"
	rm -rf "$BASE_DIR"/tls-new.* # left by an interrupted run
	tmp=$(mktemp -d "$BASE_DIR/tls-new.XXXXXX")
	# The CA key signs one certificate and is then thrown away; when the certificate is due, both are made anew.
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
		-subj '/CN=cmdtrack test CA' \
		-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' \
		-keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>&1
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=localhost' \
		-keyout "$tmp/server.key" -out "$tmp/server.csr" 2>&1
	printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
		'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost,IP:127.0.0.1' >"$tmp/server.ext"
	openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 -extfile "$tmp/server.ext" \
		-out "$tmp/server.pem" 2>&1
	install -d -m 0755 "$TLS_DIR"
	install -m 0640 -g rabbitmq "$tmp/server.key" "$TLS_DIR/server.key"
	install -m 0644 "$tmp/server.pem" "$TLS_DIR/server.pem"
	install -m 0644 "$tmp/ca.pem" "$TLS_DIR/ca.pem"
	rm -rf "$tmp"
}

# Makes sure the certificates are there and readable by the node (which runs as rabbitmq) and the CA by the
# tests (any user); returns 0 if they were (re)generated.
tls_ensure() {
	local generated=1
	command -v openssl >/dev/null || apt_install openssl
	if ! tls_valid; then
		tls_generate
		tls_valid || die "the certificates generated in $TLS_DIR do not verify"
		generated=0
	fi
	chown root:root "$TLS_DIR" "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem"
	chown root:rabbitmq "$TLS_DIR/server.key"
	chmod 0755 "$TLS_DIR"
	chmod 0644 "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem"
	chmod 0640 "$TLS_DIR/server.key"
	return "$generated"
}

# ---------------------------------------------------------------------------------------------------------------
# RabbitMQ
# ---------------------------------------------------------------------------------------------------------------

# Every rabbitmqctl/rabbitmq-plugins call boots an Erlang VM (~1 s), so calls are kept few. The Debian wrappers
# switch to the rabbitmq user themselves. timeout(1) guards against a wedged node hanging the caller forever.
rmqctl() { timeout 120 rabbitmqctl "$@"; }

ensure_rabbit_installed() {
	if ! command -v rabbitmq-server >/dev/null || ! command -v rabbitmqctl >/dev/null; then
		log "rabbitmq-server not installed; installing"
		apt_install --no-install-recommends rabbitmq-server # not exim4, bsd-mailx, ...: Depends holds every Erlang app the plugins use
	fi
}

# Is the host name (which Erlang distribution uses to reach the node) resolving to loopback? Only then can epmd
# and the distribution port be bound to loopback without locking the CLI tools out.
hostname_is_loopback() {
	local ip
	ip=$(getent ahostsv4 "$(hostname -s)" 2>/dev/null | awk 'NR == 1 { print $1 }')
	[[ "$ip" == 127.* ]]
}

rabbit_env_block() {
	echo "$MARK_BEGIN"
	echo "# AMQP listener on loopback only."
	echo "NODE_IP_ADDRESS=127.0.0.1"
	# Erlang's schedulers spin while idle, by default, before they sleep: on a two-core machine shared with
	# PostgreSQL, the worker and the tests, that is CPU taken from them. They sleep at once instead (RabbitMQ's
	# advice for shared hosts). It did not make make bench's runs agree: see docs/benchmarks.md.
	local args="+sbwt none +sbwtdcpu none +sbwtdio none"
	if hostname_is_loopback; then
		echo "# epmd (port 4369) and Erlang distribution (port 25672) on loopback too."
		echo "ERL_EPMD_ADDRESS=127.0.0.1"
		args="$args -kernel inet_dist_use_interface {127,0,0,1}"
	fi
	echo "SERVER_ADDITIONAL_ERL_ARGS=\"$args\""
	echo "$MARK_END"
}

# Puts block $2 (between our markers) into file $1, keeping the rest of the file; returns 0 if the file changed
# (a running node must restart to read it).
write_managed_block() {
	local file=$1 want=$2 current='' rest=''
	if [[ -f "$file" ]]; then
		# Exact-line matching on the markers (awk, not sed: the markers are full of regex characters).
		current=$(awk -v b="$MARK_BEGIN" -v e="$MARK_END" '$0 == b { on = 1 } on { print } $0 == e { on = 0 }' "$file")
		rest=$(awk -v b="$MARK_BEGIN" -v e="$MARK_END" '$0 == b { on = 1 } !on { print } $0 == e { on = 0 }' "$file")
	fi
	[[ "$current" == "$want" ]] && return 1
	log "writing our settings to $file"
	mkdir -p "$(dirname "$file")"
	# Our block goes last: rabbitmq-env.conf is sourced by sh, so the last assignment wins over any earlier one.
	# Rewriting through '>' keeps the file's owner and mode.
	if [[ -n "$rest" ]]; then
		printf '%s\n%s\n' "$rest" "$want" >"$file"
	else
		printf '%s\n' "$want" >"$file"
	fi
	return 0
}

rabbit_write_env_conf() { write_managed_block "$RABBIT_ENV_CONF" "$(rabbit_env_block)"; }

# The IoTDA-shaped endpoint. The node reads rabbitmq.conf only when it boots.
rabbit_conf_block() {
	local auth="http://$IOTDA_AUTH_ADDR/auth"
	cat <<EOF
$MARK_BEGIN
# AMQPS on loopback with the test CA's server certificate; clients are not asked for a certificate.
listeners.ssl.default = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
# guest stays in the internal database; IoTDA-style users (accessKey=...|timestamp=...|instanceId=...) are
# unknown there and go on to the auth service that the tests run.
auth_backends.1 = internal
auth_backends.2 = http
auth_http.http_method = get
auth_http.user_path = $auth/user
auth_http.vhost_path = $auth/vhost
auth_http.resource_path = $auth/resource
auth_http.topic_path = $auth/topic
# When no test runs the service, a login fails at once rather than after the default 15 s.
auth_http.connection_timeout = 2000
auth_http.request_timeout = 5000
# IoTDA's Open hostname is "default". The AMQP 1.0 plugin maps a hostname "vhost:NAME" to NAME and any other to
# amqp1_0.default_vhost (else the node's default_vhost): pinned to "/", where guest's test queues live.
amqp1_0.default_vhost = /
$MARK_END
EOF
}

rabbit_write_conf() { write_managed_block "$RABBIT_CONF" "$(rabbit_conf_block)"; }

rabbit_plugins_in_file() {
	local p
	[[ -f "$RABBIT_PLUGINS_FILE" ]] || return 1
	for p in "${RABBIT_PLUGINS[@]}"; do
		grep -q "\\b$p\\b" "$RABBIT_PLUGINS_FILE" || return 1
	done
}

# Prints the node's state in one CLI call: "down", or "<rabbit app running> <our plugins all running>",
# e.g. "true true". rabbitmqctl exits 69 (EX_UNAVAILABLE) when it cannot reach the node.
rabbit_state() {
	local out plugins
	plugins=$(
		IFS=,
		echo "${RABBIT_PLUGINS[*]}"
	)
	if out=$(rmqctl -q eval "Apps = application:which_applications(),
		io:format(\"~s ~s~n\", [rabbit:is_running(), lists:all(fun(A) -> lists:keymember(A, 1, Apps) end, [$plugins])])." \
		2>/dev/null); then
		# eval prints the io:format line, then the return value (ok).
		head -n 1 <<<"$out"
	else
		echo down
	fi
}

rabbit_await_app() {
	if ! rmqctl -q await_startup --timeout "$START_TIMEOUT" >&2; then
		die "RabbitMQ application did not start; see /var/log/rabbitmq/"
	fi
}

rabbit_start_node() {
	# An epmd started earlier (e.g. by a CLI call before our env file existed) keeps listening on all
	# addresses; with no node registered it is safe to stop, and the node starts a loopback one.
	if listens_beyond_loopback 4369 && hostname_is_loopback; then
		log "restarting epmd on loopback"
		epmd -kill >/dev/null 2>&1 || true
	fi
	install -d -m 0755 "$BASE_DIR"
	log "starting RabbitMQ node (log: /var/log/rabbitmq/)"
	# -detached: no systemd here. The VM's output goes to a file so it never holds a caller's pipe open.
	rabbitmq-server -detached </dev/null >>"$RABBIT_START_LOG" 2>&1
	# await_startup fails at once while the node has not registered with epmd yet, so poll until a deadline.
	local deadline=$((SECONDS + START_TIMEOUT))
	until rmqctl -q await_startup --timeout "$START_TIMEOUT" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			tail -n 20 "$RABBIT_START_LOG" >&2 || true
			die "RabbitMQ did not start within ${START_TIMEOUT}s; see /var/log/rabbitmq/"
		fi
		sleep 1
	done
}

rabbit_stop_node() {
	log "stopping RabbitMQ node"
	# shutdown waits for the Erlang VM to exit, without needing the PID file path.
	rmqctl -q shutdown >&2
}

rabbit_up() {
	ensure_rabbit_installed
	local conf_changed=0 state port
	rabbit_write_env_conf && conf_changed=1
	# RabbitMQ caches certificates: new ones need a restart too.
	tls_ensure && conf_changed=1
	if ! rabbit_plugins_in_file; then
		log "enabling ${RABBIT_PLUGINS[*]}"
		# --offline only edits enabled_plugins; a running node is handled below. This comes before rabbitmq.conf
		# names auth_http settings, which a node without the plugin refuses to boot with.
		rabbitmq-plugins enable --offline "${RABBIT_PLUGINS[@]}" >&2
	fi
	rabbit_write_conf && conf_changed=1
	state=$(rabbit_state)
	if [[ "$state" != down ]]; then
		# A node started before our env file (e.g. by apt's postinst) listens on every address, and one started
		# before our rabbitmq.conf (or whose restart was interrupted) has no AMQPS listener: restart it.
		if ((conf_changed)) || listens_beyond_loopback "$AMQP_PORT" || ! listens_on "$AMQPS_PORT"; then
			log "RabbitMQ is running with other settings; restarting it"
			rabbit_stop_node
			state=down
		fi
	fi
	if [[ "$state" == down ]]; then
		rabbit_start_node
		state=$(rabbit_state)
	fi
	if [[ "$state" == "false "* ]]; then
		log "RabbitMQ node up but application stopped; start_app"
		rmqctl -q start_app >&2
		rabbit_await_app
		state=$(rabbit_state)
	fi
	if [[ "$state" != *" true" ]]; then
		log "activating ${RABBIT_PLUGINS[*]} on the running node"
		rabbitmq-plugins -q enable "${RABBIT_PLUGINS[@]}" >&2
		state=$(rabbit_state)
	fi
	[[ "$state" == "true true" ]] || die "RabbitMQ not ready (state: $state)"
	for port in "$AMQP_PORT" "$AMQPS_PORT"; do
		listens_on "$port" || die "RabbitMQ is up but nothing listens on port $port; see /var/log/rabbitmq/"
		if listens_beyond_loopback "$port"; then
			die "port $port listens beyond loopback; check $RABBIT_ENV_CONF and $RABBIT_CONF"
		fi
	done
	log "RabbitMQ ready on 127.0.0.1:$AMQP_PORT (amqp) and 127.0.0.1:$AMQPS_PORT (amqps; users checked at http://$IOTDA_AUTH_ADDR)"
}

rabbit_down() {
	if ! command -v rabbitmqctl >/dev/null; then
		log "RabbitMQ not installed; nothing to stop"
		return 0
	fi
	if [[ "$(rabbit_state)" == down ]]; then
		log "RabbitMQ not running"
	else
		rabbit_stop_node
	fi
	# The CLI and the node leave epmd behind; once no Erlang node is registered it serves nothing.
	if command -v epmd >/dev/null && ! epmd -names 2>/dev/null | grep -q '^name '; then
		epmd -kill >/dev/null 2>&1 || true
	fi
}

rabbit_stop_app() {
	local state
	state=$(rabbit_state)
	case "$state" in
	down) log "RabbitMQ node not running" ;;
	"false "*) log "RabbitMQ application already stopped" ;;
	*)
		log "rabbitmqctl stop_app"
		# stop_app returns once the application (and its listeners) are stopped.
		rmqctl -q stop_app >&2
		;;
	esac
}

rabbit_start_app() {
	local state
	state=$(rabbit_state)
	case "$state" in
	down) rabbit_up ;;
	"false "*)
		log "rabbitmqctl start_app"
		rmqctl -q start_app >&2
		rabbit_await_app
		;;
	*) log "RabbitMQ application already running" ;;
	esac
}

# ---------------------------------------------------------------------------------------------------------------
# A highly available PostgreSQL: pg_auto_failover's monitor and two nodes, for the failover test
# (cmd/cmdtrack/failover_test.go). pg_autoctl must run as postgres; its configuration, state and pid files live
# under HA_DIR (XDG_*), so that nothing of it is left elsewhere.
# ---------------------------------------------------------------------------------------------------------------

readonly HA_DIR="$BASE_DIR/ha"
readonly HA_MONITOR_PORT=54340
readonly HA_NODE_PORTS=(54341 54342)
readonly HA_NODES=(node1 node2)
HA_PGBIN=''
HA_KILL_REPORT=''

# The monitor's failover timing for the test pair (the defaults in parentheses). By default a node whose keeper and
# PostgreSQL die is failed over only after 20 s without a report from its keeper, and the standby is then promoted only
# after the 30 s that the monitor gives the lost primary to demote itself: a 50 s outage, most of the failover test's
# run time. On loopback, where a silent keeper is a dead one, shorter is safe:
# - health checks (the monitor connecting to each node) every 1 s (5 s), 2 retries 0.5 s apart (2 s), each within 2 s
#   (5 s): a dead node is known within about 2 s, and a slow connection on a busy machine still passes;
# - node_considered_unhealthy_timeout 5 s (20 s): a node is failed over once its keeper has not reported for this
#   long and its health check fails; the keepers report about every second, so 5 s of silence is no hiccup;
# - primary_demote_timeout 5 s (30 s): how long the monitor waits for the lost primary to stop taking writes before
#   promoting. In production that wait lets a primary cut off by a network partition demote itself (its keeper's
#   network_partition_timeout, 20 s); here the primary is dead, and with synchronous replication a primary that the
#   standby has left cannot commit anyway.
readonly HA_MONITOR_SETTINGS=(
	pgautofailover.health_check_period=1000
	pgautofailover.health_check_retry_delay=500
	pgautofailover.health_check_max_retries=2
	pgautofailover.health_check_timeout=2000
	pgautofailover.node_considered_unhealthy_timeout=5000
	pgautofailover.primary_demote_timeout=5000
)

ha_ensure_installed() {
	ensure_pg_installed
	# pg_autoctl finds postgres next to pg_ctl, so it gets the real directory rather than a symlink's.
	HA_PGBIN=$(dirname "$(readlink -f "$PGBIN/pg_ctl")")
	local major
	major=$("$HA_PGBIN/pg_ctl" --version | awk '{ split($NF, v, "."); print v[1] }')
	if ! command -v pg_autoctl >/dev/null || [[ ! -e "/usr/lib/postgresql/$major/lib/pgautofailover.so" ]]; then
		log "pg_auto_failover not installed; installing postgresql-$major-auto-failover"
		if ((APT_UPDATED == 0)); then
			log "apt-get update"
			apt-get update >&2
			APT_UPDATED=1
		fi
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "postgresql-$major-auto-failover" >&2
		command -v pg_autoctl >/dev/null || die "pg_autoctl still not found after installing postgresql-$major-auto-failover"
	fi
}

ha_autoctl() {
	runuser -u postgres -- env PATH="$HA_PGBIN:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$HA_DIR" \
		XDG_CONFIG_HOME="$HA_DIR/config" XDG_DATA_HOME="$HA_DIR/data" XDG_RUNTIME_DIR="$HA_DIR/run" \
		pg_autoctl "$@"
}

ha_monitor_url() { printf 'postgres://autoctl_node@127.0.0.1:%s/pg_auto_failover?sslmode=disable' "$HA_MONITOR_PORT"; }

# True if the pg_autoctl service of data directory $1 runs.
ha_service_running() {
	ha_autoctl status --pgdata "$1" >/dev/null 2>&1
}

# Starts pg_autoctl in the background, detached, its output in a log: "$@" is `run ...` or `create ... --run`.
ha_spawn() {
	local name=$1
	shift
	log "pg_autoctl $1 $name (log: $HA_DIR/$name.log)"
	runuser -u postgres -- env PATH="$HA_PGBIN:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$HA_DIR" \
		XDG_CONFIG_HOME="$HA_DIR/config" XDG_DATA_HOME="$HA_DIR/data" XDG_RUNTIME_DIR="$HA_DIR/run" \
		setsid pg_autoctl "$@" </dev/null >>"$HA_DIR/$name.log" 2>&1 &
}

ha_created() { [[ -s "$HA_DIR/config/pg_autoctl$HA_DIR/$1/pg_autoctl.cfg" ]]; }

# Waits until $1 (a command) succeeds, at most START_TIMEOUT seconds; $2 says what for.
ha_await() {
	local deadline=$((SECONDS + START_TIMEOUT))
	until "$1"; do
		if ((SECONDS >= deadline)); then
			ha_state >&2 || true
			die "$2 within ${START_TIMEOUT}s; see $HA_DIR/*.log"
		fi
		sleep 0.2
	done
}

ha_monitor_answers() {
	"$PSQL" -X -q -At -h 127.0.0.1 -p "$HA_MONITOR_PORT" -U autoctl_node -d pg_auto_failover -c 'SELECT 1' >/dev/null 2>&1
}

# Applies HA_MONITOR_SETTINGS to the monitor (ALTER SYSTEM and a reload: they take effect at once), if not yet.
ha_monitor_tune() {
	local setting name value current changed=0
	for setting in "${HA_MONITOR_SETTINGS[@]}"; do
		name=${setting%%=*} value=${setting#*=}
		current=$("$PSQL" -X -q -At -h 127.0.0.1 -p "$HA_MONITOR_PORT" -U postgres -d pg_auto_failover \
			-c "SELECT setting FROM pg_settings WHERE name = '$name'")
		[[ -n "$current" ]] || die "the HA monitor has no setting $name (pg_auto_failover too old?)"
		[[ "$current" == "$value" ]] && continue
		log "HA monitor: $name = $value (was $current)"
		"$PSQL" -X -q -h 127.0.0.1 -p "$HA_MONITOR_PORT" -U postgres -d pg_auto_failover \
			-c "ALTER SYSTEM SET $name = '$value'" >&2
		changed=1
	done
	if ((changed)); then
		"$PSQL" -X -q -At -h 127.0.0.1 -p "$HA_MONITOR_PORT" -U postgres -d pg_auto_failover -c 'SELECT pg_reload_conf()' >/dev/null
	fi
}

# The monitor's view: one line per node, "port reported_state assigned_state".
ha_nodes() {
	"$PSQL" -X -q -At -F ' ' -h 127.0.0.1 -p "$HA_MONITOR_PORT" -U autoctl_node -d pg_auto_failover \
		-c 'SELECT nodeport, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeport' 2>/dev/null
}

# True once one node is primary and the other secondary, both as the monitor wants them, and the primary takes a
# write: the pair is whole and the URL's read-write session finds it.
ha_whole() {
	local nodes primary
	nodes=$(ha_nodes) || return 1
	[[ $(grep -c '^[0-9]* primary primary$' <<<"$nodes") == 1 && $(grep -c '^[0-9]* secondary secondary$' <<<"$nodes") == 1 ]] ||
		return 1
	primary=$(awk '$2 == "primary" { print $1 }' <<<"$nodes")
	[[ "$("$PSQL" -X -q -At -h 127.0.0.1 -p "$primary" -U postgres -d "$PG_DB" \
		-c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]
}

# ha_whole, speeding up the standby's clone: pg_basebackup asks for a spread checkpoint (minutes on an idle
# primary), which an immediate one requested meanwhile completes at once.
ha_whole_nudged() {
	ha_whole && return 0
	local nodes primary
	nodes=$(ha_nodes) || return 1
	if grep -q ' catchingup$' <<<"$nodes" && primary=$(awk '$3 ~ /primary$/ { print $1 }' <<<"$nodes") && [[ -n "$primary" ]]; then
		"$PSQL" -X -q -h 127.0.0.1 -p "$primary" -U postgres -d postgres -c CHECKPOINT >/dev/null 2>&1 || true
		sleep 0.8
	fi
	return 1
}

ha_primary_port() { ha_nodes | awk '$2 == "primary" && $3 == "primary" { print $1 }'; }

ha_state() {
	ha_monitor_answers || {
		log "HA monitor not answering on 127.0.0.1:$HA_MONITOR_PORT"
		return 1
	}
	ha_autoctl show state --pgdata "$HA_DIR/monitor" >&2
}

ha_up() {
	require_root
	ha_ensure_installed
	install -d -o postgres -g postgres -m 0755 "$BASE_DIR" "$HA_DIR" "$HA_DIR/config" "$HA_DIR/data" "$HA_DIR/run"
	if ! ha_service_running "$HA_DIR/monitor"; then
		if ha_created monitor; then
			ha_spawn monitor run --pgdata "$HA_DIR/monitor"
		else
			rm -rf "${HA_DIR:?}/monitor"
			ha_spawn monitor create monitor --pgdata "$HA_DIR/monitor" --pgport "$HA_MONITOR_PORT" --listen 127.0.0.1 \
				--hostname 127.0.0.1 --auth trust --no-ssl --run
		fi
	fi
	ha_await ha_monitor_answers "the HA monitor did not answer on 127.0.0.1:$HA_MONITOR_PORT"
	ha_monitor_tune
	ha_rejoin
	local port
	for port in "$HA_MONITOR_PORT" "${HA_NODE_PORTS[@]}"; do
		if listens_beyond_loopback "$port"; then
			die "port $port listens beyond loopback; see $HA_DIR"
		fi
	done
	log "HA PostgreSQL ready: primary on 127.0.0.1:$(ha_primary_port) (nodes ${HA_NODE_PORTS[*]}, monitor $HA_MONITOR_PORT)"
}

# Starts (or creates) the pg_autoctl of each node that is not running, and waits until the pair is whole: a node
# that died comes back as the standby, rewound or cloned from the new primary by its keeper.
ha_rejoin() {
	local i name port
	for i in "${!HA_NODES[@]}"; do
		name=${HA_NODES[$i]} port=${HA_NODE_PORTS[$i]}
		ha_service_running "$HA_DIR/$name" && continue
		if ha_created "$name"; then
			ha_spawn "$name" run --pgdata "$HA_DIR/$name"
		else
			rm -rf "${HA_DIR:?}/$name"
			# Whoever is registered first becomes the primary; the second waits for it, then clones it.
			ha_spawn "$name" create postgres --pgdata "$HA_DIR/$name" --pgport "$port" --listen 127.0.0.1 \
				--hostname 127.0.0.1 --name "$name" --dbname "$PG_DB" --monitor "$(ha_monitor_url)" \
				--auth trust --no-ssl --run
			# The second node's registration must not race the first's.
			ha_await ha_registered "node $name did not register with the monitor"
		fi
	done
	ha_await ha_whole_nudged "the HA pair did not become primary and secondary"
}

ha_registered() {
	[[ "$(ha_nodes | awk -v p="$port" '$1 == p' | wc -l)" == 1 ]]
}

ha_down() {
	local name
	[[ -d "$HA_DIR" ]] || {
		log "HA PostgreSQL not provisioned; nothing to stop"
		return 0
	}
	command -v pg_autoctl >/dev/null && find_pg_bin || return 0
	HA_PGBIN=$(dirname "$(readlink -f "$PGBIN/pg_ctl")")
	for name in "${HA_NODES[@]}" monitor; do
		if ha_service_running "$HA_DIR/$name"; then
			log "stopping pg_autoctl $name"
			ha_autoctl stop --pgdata "$HA_DIR/$name" --fast >&2 || true
			local deadline=$((SECONDS + START_TIMEOUT))
			while ha_service_running "$HA_DIR/$name"; do
				((SECONDS < deadline)) || die "pg_autoctl $name did not stop"
				sleep 0.2
			done
		fi
	done
}

ha_failover() {
	ha_await ha_whole "the HA pair is not whole before the failover"
	local before
	before=$(ha_primary_port)
	log "planned failover away from 127.0.0.1:$before"
	ha_autoctl perform failover --pgdata "$HA_DIR/monitor" --wait "$START_TIMEOUT" >&2
	ha_await ha_whole "the HA pair did not become whole again after the failover"
	log "primary now on 127.0.0.1:$(ha_primary_port)"
}

# The primary node dies, as its host would: its keeper (pg_autoctl, whose service restarts a PostgreSQL that merely
# crashed, so that the monitor never fails over) and its PostgreSQL are killed at once with SIGKILL. ha_spawn ran the
# keeper under setsid, so its process group holds all of them, the postmaster's backends included, and nothing else.
ha_kill_primary() {
	ha_await ha_whole "the HA pair is not whole before the kill"
	local port name pid pgid other started promoted whole
	port=$(ha_primary_port)
	name=$(ha_node_of "$port")
	other=$(ha_other_port "$port")
	pid=$(head -n 1 "$HA_DIR/$name/postmaster.pid")
	pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
	[[ "$pgid" =~ ^[0-9]+$ ]] && ((pgid > 1)) && [[ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]] ||
		die "no process group of its own for node $name's PostgreSQL (pid $pid)"
	log "killing node $name, the primary (127.0.0.1:$port): kill -9 its pg_autoctl and PostgreSQL (process group $pgid)"
	started=$EPOCHREALTIME
	kill -9 -- "-$pgid"
	# Until the backends are gone, the node still answers on connections made before.
	while pgrep -g "$pgid" >/dev/null; do sleep 0.1; done
	HA_PROMOTED_PORT=$other
	ha_await ha_promoted "the monitor did not promote node $(ha_node_of "$other") (127.0.0.1:$other) after node $name died"
	promoted=$(ha_since "$started")
	log "node $(ha_node_of "$other") (127.0.0.1:$other) promoted and taking writes ${promoted}s after the kill; node $name rejoins"
	ha_rejoin
	whole=$(ha_since "$started")
	log "the pair is whole again ${whole}s after the kill: primary on 127.0.0.1:$(ha_primary_port)"
	# For main to print on stdout once the rest has gone to stderr. (Not through a file descriptor of its own: the
	# keeper that ha_rejoin started would inherit it and hold the caller's pipe open.)
	HA_KILL_REPORT="killed=127.0.0.1:$port promoted=127.0.0.1:$other writes_after=$promoted whole_after=$whole"
}

# Seconds since $1 (an EPOCHREALTIME), to a tenth.
ha_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# True once node HA_PROMOTED_PORT is the primary as the monitor sees it (wait_primary: promoted, its standby gone) and
# commits a transaction that has a transaction id: neither in recovery nor read-only, and not waiting for a
# synchronous standby (timeout(1): such a commit would wait forever).
ha_promoted() {
	ha_nodes | grep -Eq "^$HA_PROMOTED_PORT (wait_primary|primary) (wait_primary|primary)\$" || return 1
	[[ "$(timeout 5 "$PSQL" -X -q -At -h 127.0.0.1 -p "$HA_PROMOTED_PORT" -U postgres -d "$PG_DB" -c "SELECT CASE
		WHEN pg_is_in_recovery() OR current_setting('transaction_read_only')::bool THEN 'read-only'
		ELSE pg_current_xact_id()::text END" 2>/dev/null)" =~ ^[0-9]+$ ]]
}

ha_other_port() {
	local p
	for p in "${HA_NODE_PORTS[@]}"; do
		if [[ "$p" != "$1" ]]; then echo "$p"; fi
	done
}

ha_node_of() {
	local i
	for i in "${!HA_NODES[@]}"; do
		if [[ "${HA_NODE_PORTS[$i]}" == "$1" ]]; then echo "${HA_NODES[$i]}"; fi
	done
}

ha_print_env() {
	local hosts
	hosts="127.0.0.1:${HA_NODE_PORTS[0]},127.0.0.1:${HA_NODE_PORTS[1]}"
	printf "export CMDTRACK_TEST_HA_DATABASE_URL='postgres://postgres@%s/%s?sslmode=disable&target_session_attrs=read-write'\n" "$hosts" "$PG_DB"
	printf "export CMDTRACK_TEST_HA_STANDBY_URL='postgres://postgres@%s/%s?sslmode=disable&target_session_attrs=prefer-standby'\n" "$hosts" "$PG_DB"
}

# ---------------------------------------------------------------------------------------------------------------

status() {
	if find_pg_bin && pg_running; then
		log "PostgreSQL: running on 127.0.0.1:$PG_PORT ($PGDATA_DIR)"
	else
		log "PostgreSQL: not running"
	fi
	if command -v rabbitmqctl >/dev/null; then
		log "RabbitMQ (app running, ${RABBIT_PLUGINS[*]} running): $(rabbit_state)"
	else
		log "RabbitMQ: not installed"
	fi
}

usage() {
	sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

# ---------------------------------------------------------------------------------------------------------------
# Chromium (the console's browser tests drive it headless; nothing runs in the background)
# ---------------------------------------------------------------------------------------------------------------

chromium_up() {
	if command -v chromium >/dev/null || [[ -n "${CMDTRACK_TEST_CHROMIUM:-}" ]]; then
		return 0
	fi
	apt_install chromium
	command -v chromium >/dev/null || die "chromium is not on PATH after installing it"
}

main() {
	local cmd="${1:-}"
	case "$cmd" in
	env)
		print_env
		return 0
		;;
	ha-env)
		ha_print_env
		return 0
		;;
	help | -h | --help)
		usage
		return 0
		;;
	'')
		usage
		return 2
		;;
	esac
	require_root
	# Everything but the export lines goes to stderr, including whatever the tools print.
	case "$cmd" in
	up)
		{
			pg_up
			rabbit_up
			chromium_up
		} >&2
		print_env
		;;
	down)
		{
			pg_down
			rabbit_down
		} >&2
		;;
	chromium) chromium_up >&2 ;;
	pg-start) pg_up >&2 ;;
	pg-stop) pg_down >&2 ;;
	rabbit-start) rabbit_up >&2 ;;
	rabbit-stop) rabbit_down >&2 ;;
	rabbit-start-app) rabbit_start_app >&2 ;;
	rabbit-stop-app) rabbit_stop_app >&2 ;;
	rabbit-restart-app)
		{
			rabbit_stop_app
			rabbit_start_app
		} >&2
		;;
	status) status ;;
	ha-up)
		ha_up >&2
		ha_print_env
		;;
	ha-down) ha_down >&2 ;;
	ha-failover) { ha_ensure_installed && ha_failover; } >&2 ;;
	ha-kill-primary)
		{ ha_ensure_installed && ha_kill_primary; } >&2
		printf '%s\n' "$HA_KILL_REPORT"
		;;
	ha-rejoin) ha_up >&2 ;;
	ha-state) { ha_ensure_installed && ha_state; } >&2 ;;
	*)
		log "unknown command: $cmd"
		usage
		return 2
		;;
	esac
}

main "$@"
