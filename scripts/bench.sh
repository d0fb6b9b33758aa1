#!/usr/bin/env bash
# bench.sh: measure cmdtrack against the drain limit and a naive peer, on the same broker and database, in one run.
#
# Usage: scripts/bench.sh            (make bench)
#
# For each contender: preload a fresh queue with the same backlog (iotda-sim publish, not timed), start the
# contender and time it draining the backlog (bench/runner: msg/s, peak RSS, CPU seconds):
#   drain     bench/drain: receive and accept, store nothing (what the broker can deliver to one link)
#   naive     bench/naive: per message receive -> one INSERT ... ON CONFLICT -> accept
#   cmdtrack  the real worker binary, on a fresh schema
# then check cmdtrack's database against the stream's expected final state (iotda-sim verify, plus history and
# dead-letter counts), and measure cmdtrack's end-to-end latency at a steady rate (bench/latency).
# Prints a table and writes it to bench/results/latest.txt. See docs/benchmarks.md.
#
# Environment:
#   BENCH_MESSAGES          backlog per contender (default 200000; e.g. 20000 for a quick run)
#   BENCH_NAIVE_MESSAGES    backlog for the naive peer (default: BENCH_MESSAGES)
#   BENCH_LATENCY_RATE      messages per second for the latency run (default 1000)
#   BENCH_LATENCY_SECONDS   length of the latency run (default 30)
#   BENCH_SEED              stream seed (default 1)
#   BENCH_STREAM            stream shape flags for iotda-sim publish
#                           (default "-out-of-order 0.1 -duplicate 0.02 -poison 0.001 -presence")
#   BENCH_DRAIN_WINDOW      credit window of drain and naive (default: CMDTRACK_AMQP_CREDIT/4, as cmdtrack issues)
#   BENCH_KEEP=1            keep the work directory, schemas and queues for inspection
#   BENCH_RESULTS           where to write the table (default bench/results/latest.txt)
#   CMDTRACK_*              worker settings (batch size, credit, pool size, ...) pass through to cmdtrack, except
#                           the database URL, AMQP URL/queue and ops address, which the script sets.
# Needs root (scripts/testenv.sh provisions PostgreSQL and RabbitMQ on loopback), go, psql and rabbitmqctl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

N=${BENCH_MESSAGES:-200000}
NAIVE_N=${BENCH_NAIVE_MESSAGES:-$N}
LAT_RATE=${BENCH_LATENCY_RATE:-1000}
LAT_SECONDS=${BENCH_LATENCY_SECONDS:-30}
SEED=${BENCH_SEED:-1}
STREAM=${BENCH_STREAM:--out-of-order 0.1 -duplicate 0.02 -poison 0.001 -presence}
CREDIT=${CMDTRACK_AMQP_CREDIT:-1024}
WINDOW=${BENCH_DRAIN_WINDOW:-$((CREDIT / 4))}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results/latest.txt}
for v in N NAIVE_N LAT_RATE LAT_SECONDS SEED WINDOW; do
	[[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || {
		echo "bench: $v must be a positive integer, got '${!v}'" >&2
		exit 2
	}
done

log() { printf 'bench: %s\n' "$*" >&2; }

log "provisioning PostgreSQL and RabbitMQ (scripts/testenv.sh up)"
eval "$(scripts/testenv.sh up)"
DB=$CMDTRACK_TEST_DATABASE_URL
# The test cluster runs without fsync for speed; a user's PostgreSQL has it. The benchmark measures with what a user
# has (BENCH_FSYNC=off to compare), and puts the test settings back when it ends.
FSYNC=${BENCH_FSYNC:-on}
durability() {
	psql -X -q "$DB" -c "ALTER SYSTEM SET fsync = $1" -c "ALTER SYSTEM SET synchronous_commit = $1" \
		-c "ALTER SYSTEM SET full_page_writes = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
AMQP=$CMDTRACK_TEST_AMQP_URL
if [[ "$DB" == *\?* ]]; then SEP='&'; else SEP='?'; fi

RUN=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
WORK=$(mktemp -d "/tmp/cmdtrack-bench-$RUN.XXXX")
BIN=$WORK/bin
TSV=$WORK/results.tsv
QUEUES=()
SCHEMAS=()
PIDS=()

cleanup() {
	local rc=$?
	psql -X -q "$DB" -c "ALTER SYSTEM RESET fsync" -c "ALTER SYSTEM RESET synchronous_commit" \
		-c "ALTER SYSTEM RESET full_page_writes" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	if [[ "${BENCH_KEEP:-}" == 1 ]]; then
		log "kept $WORK, schemas ${SCHEMAS[*]:-none}, queues ${QUEUES[*]:-none}"
	else
		for q in "${QUEUES[@]}"; do
			timeout 60 rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
		done
		for s in "${SCHEMAS[@]}"; do
			psql -X -q "$DB" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true
		done
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
durability "$FSYNC"
log "PostgreSQL: fsync, synchronous_commit, full_page_writes $FSYNC"
trap 'exit 130' INT TERM

log "building into $BIN"
mkdir -p "$BIN"
# Not stripped, so that perf can name the worker's functions.
go build -o "$BIN/" ./cmd/cmdtrack ./cmd/iotda-sim ./bench/drain ./bench/naive ./bench/runner ./bench/latency

# new_queue NAME: sets q to a fresh queue address (declared by the first link to attach), deleted on exit.
# Not meant for $(...): the bookkeeping must happen in this shell.
new_queue() {
	QUEUES+=("bench-$RUN-$1")
	q="/queue/bench-$RUN-$1"
}

# new_schema NAME: creates a fresh schema, sets s to its name; dropped on exit.
new_schema() {
	s="bench_${RUN}_$1"
	SCHEMAS+=("$s")
	psql -X -q -v ON_ERROR_STOP=1 "$DB" -c "CREATE SCHEMA $s" >/dev/null
}

# preload QUEUE COUNT [EXTRA FLAGS...]: publish the backlog (untimed); prints iotda-sim's summary line.
preload() {
	local q=$1 n=$2
	shift 2
	# shellcheck disable=SC2086 # STREAM is a list of flags
	"$BIN/iotda-sim" publish -quiet -url "$AMQP" -queue "$q" -messages "$n" -seed "$SEED" $STREAM "$@"
	sleep 2 # let the broker finish writing before the clock starts
}

queue_depth() {
	timeout 60 rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1 == q { print $2 }'
}

free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		if ! grep -qi ":$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo 29464
}

# worker_exports SCHEMA QUEUE PORT: export cmdtrack's environment into the current (sub)shell.
worker_exports() {
	export CMDTRACK_DATABASE_URL="$DB${SEP}search_path=$1" CMDTRACK_AMQP_URL="$AMQP" CMDTRACK_AMQP_QUEUE="$2" \
		CMDTRACK_OPS_ADDR="127.0.0.1:$3" CMDTRACK_LOG_FORMAT=text CMDTRACK_LOG_LEVEL=info
}

# worker_env SCHEMA QUEUE PORT COMMAND...: run COMMAND (as a child) with cmdtrack's environment.
worker_env() {
	(
		worker_exports "$1" "$2" "$3"
		shift 3
		exec "$@"
	)
}

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "backlog: $N messages per contender (naive: $NAIVE_N), stream: -seed $SEED $STREAM"

# 1. Drain limit.
new_queue drain
log "drain: preloading $q"
preload "$q" "$N" >"$WORK/drain.publish"
log "drain: draining"
"$BIN/runner" -name drain -n "$N" -log "$WORK/drain.log" -out "$TSV" -- \
	"$BIN/drain" -url "$AMQP" -queue "$q" -n "$N" -window "$WINDOW" >&2

# 2. Naive peer.
new_queue naive
new_schema naive
log "naive: preloading $q"
preload "$q" "$NAIVE_N" >"$WORK/naive.publish"
log "naive: draining"
"$BIN/runner" -name naive -n "$NAIVE_N" -log "$WORK/naive.log" -out "$TSV" -- \
	"$BIN/naive" -url "$AMQP" -queue "$q" -n "$NAIVE_N" -window "$WINDOW" -database-url "$DB" -schema "$s" >&2

# 3. cmdtrack.
new_queue cmdtrack
new_schema cmdtrack
worker_env "$s" "$q" 0 "$BIN/cmdtrack" migrate >"$WORK/cmdtrack-migrate.log" 2>&1
log "cmdtrack: preloading $q"
# With device status changes in the stream, their expected presence is checked too.
PRESENCE=()
[[ " $STREAM " == *" -presence "* ]] && PRESENCE=(-expect-presence "$WORK/presence.jsonl")
preload "$q" "$N" -expect "$WORK/expect.jsonl" "${PRESENCE[@]}" | tee "$WORK/cmdtrack.publish" >&2
port=$(free_port)
log "cmdtrack: draining (ops on 127.0.0.1:$port)"
worker_env "$s" "$q" "$port" "$BIN/runner" -name cmdtrack -n "$N" -metrics "http://127.0.0.1:$port/metrics" \
	-log "$WORK/cmdtrack.log" -out "$TSV" -- "$BIN/cmdtrack" >&2

log "cmdtrack: verifying the database against the expected final state"
VERIFY_OK=1
worker_env "$s" "$q" 0 "$BIN/iotda-sim" verify -exact -expect "$WORK/expect.jsonl" "${PRESENCE[@]}" >"$WORK/verify.out" 2>&1 || VERIFY_OK=0
head -n 60 "$WORK/verify.out" >&2
want_events=$(sed -n 's/.*, \([0-9]*\) distinct notifications, \([0-9]*\) distinct poison.*/\1/p' "$WORK/cmdtrack.publish")
want_dead=$(sed -n 's/.*, \([0-9]*\) distinct notifications, \([0-9]*\) distinct poison.*/\2/p' "$WORK/cmdtrack.publish")
got_events=$(psql -X -tA "$DB" -c "SELECT count(*) FROM $s.device_command_events")
got_dead=$(psql -X -tA "$DB" -c "SELECT count(*) FROM $s.dead_letters")
left=$(queue_depth "bench-$RUN-cmdtrack")
COUNTS="history rows $got_events (want $want_events), dead letters $got_dead (want $want_dead), left on queue ${left:-?} (want 0)"
log "$COUNTS"
if [[ "$got_events" != "$want_events" || "$got_dead" != "$want_dead" || "${left:-x}" != 0 ]]; then
	VERIFY_OK=0
fi

# 4. Latency at a steady rate.
new_queue latency
new_schema latency
worker_env "$s" "$q" 0 "$BIN/cmdtrack" migrate >"$WORK/latency-migrate.log" 2>&1
port=$(free_port)
log "latency: cmdtrack on an empty queue, $LAT_RATE msg/s for ${LAT_SECONDS}s"
# A subshell that execs, so that $! is the worker itself and SIGTERM reaches it.
(
	worker_exports "$s" "$q" "$port"
	exec "$BIN/cmdtrack"
) >"$WORK/latency-worker.log" 2>&1 &
WORKER=$!
PIDS+=("$WORKER")
for _ in $(seq 300); do
	curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || {
	log "cmdtrack did not become ready; log:"
	tail -n 30 "$WORK/latency-worker.log" >&2
	exit 1
}
LAT_N=$((LAT_RATE * LAT_SECONDS))
(
	worker_exports "$s" "$q" 0
	exec "$BIN/latency" -sent "$WORK/sent.tsv" -n "$LAT_N" -out "$TSV" -timeout "$((LAT_SECONDS + 120))s" \
		-poll 2ms
) >"$WORK/latency.out" 2>&1 &
LATENCY=$!
PIDS+=("$LATENCY")
"$BIN/iotda-sim" publish -quiet -url "$AMQP" -queue "$q" -messages "$LAT_N" -rate "$LAT_RATE" -seed "$((SEED + 1))" \
	-out-of-order 0.1 -sent-log "$WORK/sent.tsv" >&2
LAT_OK=1
wait "$LATENCY" || LAT_OK=0
cat "$WORK/latency.out" >&2
kill -TERM "$WORKER" 2>/dev/null || true
wait "$WORKER" || true

# 5. Report.
ELAPSED=$(($(date +%s) - START))
mkdir -p "$(dirname "$RESULTS")"
{
	echo "cmdtrack benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')"
	echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM;" \
		"RabbitMQ $(timeout 60 rabbitmqctl -q version 2>/dev/null || echo '?'), PostgreSQL $(psql -X -tA "$DB" -c 'SHOW server_version' | cut -d' ' -f1)"
	echo "load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews the figures)"
	echo "stream: -seed $SEED $STREAM; drain/naive credit window $WINDOW; cmdtrack credit $CREDIT, batch ${CMDTRACK_BATCH_SIZE:-256}; PostgreSQL fsync $FSYNC"
	echo
	awk -F'\t' '
		BEGIN {
			printf "%-9s %8s %8s %8s %9s %8s %9s %9s %13s\n", "", "messages", "seconds", "msg/s", "peak RSS", "CPU s", "broker", "postgres", "all CPU/msg"
		}
		$1 != "latency" {
			printf "%-9s %8d %8.2f %8.0f %5.1f MiB %8.2f %7.2f s %7.2f s %10.0f us\n", $1, $2, $3, $4, $5, $6, $7, $8, ($6 + $7 + $8) / $2 * 1e6
			rate[$1] = $4
		}
		$1 == "latency" { lat = sprintf("cmdtrack latency (publish -> committed row, %d msgs): p50 %.1f ms, p99 %.1f ms, max %.1f ms (lower bound p50 %.1f, p99 %.1f)", $2, $3, $4, $5, $6, $7) }
		END {
			print ""
			if (rate["drain"] > 0) printf "cmdtrack / drain limit: %.2fx (target >= 0.80x)\n", rate["cmdtrack"] / rate["drain"]
			if (rate["naive"] > 0) printf "cmdtrack / naive:       %.2fx\n", rate["cmdtrack"] / rate["naive"]
			if (lat != "") print lat
		}' "$TSV"
	echo "(CPU s: the contender's own; broker, postgres: CPU used by RabbitMQ and PostgreSQL over the same span)"
	echo "final state: $(tail -n 1 "$WORK/verify.out"); $COUNTS"
	if ((NAIVE_N != N)); then echo "note: the naive peer drained $NAIVE_N messages, the others $N; msg/s compare"; fi
	echo "total run time: ${ELAPSED}s"
} | tee "$RESULTS"
log "written to $RESULTS"
if ((VERIFY_OK == 0)); then
	log "FAILED: cmdtrack's database does not match the stream's expected final state"
	exit 1
fi
if ((LAT_OK == 0)); then
	log "FAILED: latency run"
	exit 1
fi
