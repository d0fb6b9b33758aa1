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
# dead-letter counts), and measure cmdtrack's end-to-end latency at a steady rate (bench/latency: from the publish to
# PostgreSQL's commit timestamp of the row, nothing polling meanwhile). Then, to compare what a device message costs
# with what a command costs, cmdtrack drains a backlog of commands only (cmds-only) and one of device messages only
# (msgs-only), the same disorder and duplicates, no presence or poison: CPU and WAL per notification of each.
# Each contender runs BENCH_RUNS times; the report gives the median of the runs with the lowest and highest, and
# the machine facts that move them (fsync latency, steal time, load). Prints a table and writes it to
# bench/results/latest.txt. See docs/benchmarks.md.
#
# Environment:
#   BENCH_MESSAGES          backlog per contender (default 200000; e.g. 20000 for a quick run)
#   BENCH_RUNS              runs per contender, taking turns; the report gives medians and spread (default 3)
#   BENCH_NAIVE_MESSAGES    backlog for the naive peer (default: BENCH_MESSAGES)
#   BENCH_LATENCY_RATE      messages per second for the latency run (default 1000)
#   BENCH_LATENCY_SECONDS   length of the latency run (default 30)
#   BENCH_SEED              stream seed (default 1)
#   BENCH_STREAM            stream shape flags for iotda-sim publish
#                           (default "-out-of-order 0.1 -duplicate 0.02 -poison 0.001 -presence -message-share 0.2")
#   BENCH_KINDS             1: also the cmds-only and msgs-only drains (default 1; 0 when BENCH_CMDTRACK_REF is set,
#                           as a revision from before device messages has no table for them)
#   BENCH_KIND_MESSAGES     backlog of each of those (default: BENCH_MESSAGES/2)
#   BENCH_ONLY_KINDS=1      run only the cmds-only and msgs-only drains (a message's cost against a command's, in
#                           minutes rather than the whole bench's twenty)
#   BENCH_WEBHOOK           1: cmdtrack's contender delivers its outcome events to one webhook endpoint on loopback
#                           (bench/hooks, verifying every signature with the Standard Webhooks library, answering
#                           204); both: cmdtrack runs without and with it, taking turns, and the report gives the
#                           paired difference; 0: no endpoint (default 0: at 100k messages an endpoint cost the drain
#                           about 15 % of its rate and cmdtrack a minute or more of delivery after it, docs/benchmarks.md
#                           "Webhooks' cost", and it would change what every earlier cmdtrack row measured). With an
#                           endpoint the drain's rate is still the messages', and cmdtrack keeps running after the
#                           drain until every event is folded and delivered (its CPU, the broker's and PostgreSQL's
#                           include that); the receiver's CPU is the application's, reported apart. Checked: the
#                           receiver got one webhook-id per outcome counted in outcome_totals, one command.finished
#                           per final command and one message.finished per final message, no bad signature, and the
#                           outbox (webhook_deliveries) emptied within BENCH_WEBHOOK_SETTLE seconds of the drain
#                           (default 600)
#   BENCH_DRAIN_WINDOW      credit window of drain and naive (default: CMDTRACK_AMQP_CREDIT/4, as cmdtrack issues)
#   BENCH_KEEP=1            keep the work directory, schemas and queues for inspection
#   BENCH_RESULTS           where to write the table (default bench/results/latest.txt)
#   BENCH_CMDTRACK_REF      build the cmdtrack contender from this git revision instead of the working tree; the
#                           harness (simulator, drain, naive, runner, latency) stays this tree's, so that two
#                           revisions are measured by the same yardstick (scripts/bench-compare.sh)
#   CMDTRACK_*              worker settings (batch size, credit, pool size, ...) pass through to cmdtrack, except
#                           the database URL, AMQP URL/queue and ops address, which the script sets, and the
#                           webhook endpoints, which BENCH_WEBHOOK sets.
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
RUNS=${BENCH_RUNS:-3}
STREAM=${BENCH_STREAM:--out-of-order 0.1 -duplicate 0.02 -poison 0.001 -presence -message-share 0.2}
KINDS=${BENCH_KINDS:-$([[ -n "${BENCH_CMDTRACK_REF:-}" ]] && echo 0 || echo 1)}
KIND_N=${BENCH_KIND_MESSAGES:-$((N / 2))}
ONLY_KINDS=${BENCH_ONLY_KINDS:-0}
if ((ONLY_KINDS)); then KINDS=1; fi
WEBHOOK=${BENCH_WEBHOOK:-0}
SETTLE=${BENCH_WEBHOOK_SETTLE:-600}
[[ "$WEBHOOK" == 0 || "$WEBHOOK" == 1 || "$WEBHOOK" == both ]] || {
	echo "bench: BENCH_WEBHOOK must be 0, 1 or both, got '$WEBHOOK'" >&2
	exit 2
}
# Only the endpoint BENCH_WEBHOOK gives: one from the caller's environment would be posted to during every run.
unset CMDTRACK_WEBHOOK_URL CMDTRACK_WEBHOOK_SECRET CMDTRACK_WEBHOOKS_FILE
CREDIT=${CMDTRACK_AMQP_CREDIT:-1024}
WINDOW=${BENCH_DRAIN_WINDOW:-$((CREDIT / 4))}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results/latest.txt}
for v in N NAIVE_N LAT_RATE LAT_SECONDS SEED WINDOW RUNS KIND_N SETTLE; do
	[[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || {
		echo "bench: $v must be a positive integer, got '${!v}'" >&2
		exit 2
	}
done

if [[ -n "${BENCH_CMDTRACK_REF:-}" ]]; then
	REV=$(git rev-parse --short "${BENCH_CMDTRACK_REF}^{commit}" 2>/dev/null) || {
		echo "bench: BENCH_CMDTRACK_REF='$BENCH_CMDTRACK_REF' names no commit of this repository (try git log --oneline)" >&2
		exit 2
	}
fi

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
go build -o "$BIN/" ./cmd/iotda-sim ./bench/drain ./bench/naive ./bench/runner ./bench/latency ./bench/hooks
if [[ -n "${BENCH_CMDTRACK_REF:-}" ]]; then
	log "building cmdtrack from $REV"
	mkdir "$WORK/src"
	git archive "$REV" | tar -x -C "$WORK/src"
	(cd "$WORK/src" && go build -o "$BIN/" ./cmd/cmdtrack)
else
	REV="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')"
	go build -o "$BIN/" ./cmd/cmdtrack
fi

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
	# -start: the fixed dates every figure in docs/benchmarks.md was measured with (iotda-sim dates its stream just
	# before now otherwise, into other history partitions than a stream a month old).
	# shellcheck disable=SC2086 # STREAM is a list of flags
	"$BIN/iotda-sim" publish -quiet -url "$AMQP" -queue "$q" -messages "$n" -seed "$SEED" -start 2026-11-01 $STREAM "$@"
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
	# application_name: the runner's -backends finds cmdtrack's own connections by it.
	export CMDTRACK_DATABASE_URL="$DB${SEP}search_path=$1&application_name=cmdtrack-bench-$RUN" CMDTRACK_AMQP_URL="$AMQP" CMDTRACK_AMQP_QUEUE="$2" \
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

# Facts about the machine that move the figures, taken once before the runs.
# fsync: what one WAL flush costs here (pg_test_fsync, fdatasync as PostgreSQL does it on Linux, on the data
# directory's file system): with fsync on, every commit waits for one.
PGDATA_FS=$(psql -X -tA "$DB" -c 'SHOW data_directory' 2>/dev/null || true)
FSYNC_US=?
if PGTF=$(command -v pg_test_fsync || ls /usr/lib/postgresql/*/bin/pg_test_fsync 2>/dev/null | tail -n 1) && [[ -n "$PGTF" && -d "$PGDATA_FS" ]]; then
	f="$(dirname "$PGDATA_FS")/bench-fsync-test.$RUN"
	FSYNC_US=$("$PGTF" -s 2 -f "$f" 2>/dev/null | awk '/fdatasync/ && /usecs\/op/ { print $(NF-1); exit }') || FSYNC_US=?
	rm -f "$f"
fi
# steal and idle from the cpu line of /proc/stat (USER_HZ ticks): steal is time the hypervisor gave another guest.
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9, $5 + $6 }' /proc/stat; }
# wal_bytes: PostgreSQL's WAL written since its statistics were reset (pg_stat_wal, PostgreSQL 14+).
wal_bytes() { psql -X -tA "$DB" -c 'SELECT wal_bytes FROM pg_stat_wal' 2>/dev/null || echo 0; }

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
read -r TICKS0 STEAL0 IDLE0 < <(cpu_ticks)
log "backlog: $N messages per contender (naive: $NAIVE_N), $RUNS runs each, stream: -seed $SEED $STREAM"
log "machine: fsync (fdatasync) ${FSYNC_US} us per flush; load average $LOAD_START"

# checkpoint: a checkpoint just before a timed drain, so that none falls inside it. A drain writes a few hundred MB
# of WAL; with max_wal_size at 1 GB every second or third drain otherwise met a checkpoint (pg_stat_bgwriter's
# checkpoints_req), and every page it touched after that cost a full-page image in the WAL: runs of one code
# differed by whether they met one.
checkpoint() { psql -X -q "$DB" -c CHECKPOINT >/dev/null; }

# wal CONTENDER RUN BYTES: one line of WAL.tsv.
WAL_TSV=$WORK/wal.tsv

# drain_run R: 1. the drain limit.
drain_run() {
	new_queue "drain$1"
	log "run $1 drain: preloading $q"
	preload "$q" "$N" >"$WORK/drain$1.publish"
	log "run $1 drain: draining"
	"$BIN/runner" -name drain -n "$N" -log "$WORK/drain$1.log" -out "$TSV" -- \
		"$BIN/drain" -url "$AMQP" -queue "$q" -n "$N" -window "$WINDOW" >&2
}

# naive_run R: 2. the naive peer.
naive_run() {
	new_queue "naive$1"
	new_schema "naive$1"
	log "run $1 naive: preloading $q"
	preload "$q" "$NAIVE_N" >"$WORK/naive$1.publish"
	log "run $1 naive: draining"
	local w0
	checkpoint
	w0=$(wal_bytes)
	"$BIN/runner" -name naive -n "$NAIVE_N" -log "$WORK/naive$1.log" -out "$TSV" -- \
		"$BIN/naive" -url "$AMQP" -queue "$q" -n "$NAIVE_N" -window "$WINDOW" -database-url "$DB" -schema "$s" >&2
	printf 'naive\t%s\t%s\n' "$1" "$(($(wal_bytes) - w0))" >>"$WAL_TSV"
}

# hooks_start: starts bench/hooks on a free loopback port with a fresh secret; sets hooks_pid, and hook_env to the
# worker's webhook settings.
HOOKS_TSV=$WORK/hooks.tsv
hooks_start() {
	local port secret
	port=$(free_port)
	secret="whsec_$(head -c 32 /dev/urandom | base64 -w0)"
	"$BIN/hooks" -listen "127.0.0.1:$port" -secret "$secret" >"$WORK/hooks-$1.log" 2>&1 &
	hooks_pid=$!
	PIDS+=("$hooks_pid")
	hooks_url="http://127.0.0.1:$port"
	for _ in $(seq 100); do
		curl -fs "$hooks_url/stats" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fs "$hooks_url/stats" >/dev/null || {
		log "the webhook receiver did not start; log:"
		cat "$WORK/hooks-$1.log" >&2
		exit 1
	}
	hook_env=(CMDTRACK_WEBHOOK_URL="$hooks_url/" CMDTRACK_WEBHOOK_SECRET="$secret")
}

# hooks_check NAME R SCHEMA: the receiver's counts against the database's, one line of HOOKS_TSV; stops the receiver.
hooks_check() {
	local name=$1 r=$2 s=$3 stats totals rows cmds msgs
	stats=$(curl -fs "$hooks_url/stats")
	kill "$hooks_pid" 2>/dev/null || true
	wait "$hooks_pid" 2>/dev/null || true
	st() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' <<<"$stats"; }
	totals=$(psql -X -tA "$DB" -c "SELECT coalesce(sum(commands), 0) FROM $s.outcome_totals")
	rows=$(psql -X -tA "$DB" -c "SELECT coalesce((SELECT sum(delivered) FROM $s.webhook_endpoints), 0) + (SELECT count(*) FROM $s.webhook_deliveries)")
	cmds=$(psql -X -tA "$DB" -c "SELECT count(*) FROM $s.device_commands WHERE status_rank = 3")
	msgs=$(psql -X -tA "$DB" -c "SELECT count(*) FROM $s.device_messages WHERE status_rank = 1")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$r" "$(st events)" "$(st ids)" "$(st duplicates)" \
		"$rows" "$totals" "$(st cpu_seconds)" "$(st bad)" "$(st requests)" >>"$HOOKS_TSV"
	HOOKS_COUNTS="webhooks: $(st ids) webhook-ids (want $totals, outcome_totals), $(st duplicates) duplicates, $(st bad) refused;"
	HOOKS_COUNTS+=" command.finished $(st ids.command.finished) ids for $(st subjects.command.finished) commands (want $cmds final),"
	HOOKS_COUNTS+=" message.finished $(st ids.message.finished) ids for $(st subjects.message.finished) messages (want $msgs final);"
	HOOKS_COUNTS+=" outbox rows $rows, left $(psql -X -tA "$DB" -c "SELECT count(*) FROM $s.webhook_deliveries") (want 0)"
	log "run $r $name: $HOOKS_COUNTS"
	if [[ "$(st ids)" != "$totals" || "$(st bad)" != 0 || "$(st ids.command.finished)" != "$cmds" ||
		"$(st subjects.command.finished)" != "$cmds" || "$(st ids.message.finished)" != "$msgs" ||
		"$(st subjects.message.finished)" != "$msgs" || "$rows" != "$totals" ]]; then
		VERIFY_OK=0
	fi
}

# cmdtrack_run R [hooks]: 3. cmdtrack, then its database checked against the stream's expected final state; with
# "hooks", the contender cmdtrack+wh: with one webhook endpoint (BENCH_WEBHOOK), its deliveries checked too.
VERIFY_OK=1
COUNTS=
HOOKS_COUNTS=
FINAL=
cmdtrack_run() {
	local r=$1 port w0 name=cmdtrack sname=cmdtrack
	local hook_env=() until=()
	if [[ "${2:-}" == hooks ]]; then
		sname=cmdtrackwh
		[[ "$WEBHOOK" == both ]] && name=cmdtrack+wh
	fi
	new_queue "$sname$r"
	new_schema "$sname$r"
	worker_env "$s" "$q" 0 "$BIN/cmdtrack" migrate >"$WORK/$sname$r-migrate.log" 2>&1
	if [[ "${2:-}" == hooks ]]; then
		psql -X -tA "$DB" -c "SELECT to_regclass('$s.webhook_deliveries') IS NOT NULL" | grep -qx t || {
			log "BENCH_WEBHOOK: cmdtrack $REV has no webhooks (issue 29); set BENCH_WEBHOOK=0 for it"
			exit 2
		}
		hooks_start "$sname$r"
		# Done once every outcome event is folded into the outbox and every delivery is settled.
		until=(-until-sql "SELECT NOT EXISTS (SELECT FROM outcome_events) AND NOT EXISTS (SELECT FROM webhook_deliveries)"
			-until-timeout "${SETTLE}s")
	fi
	log "run $r $name: preloading $q"
	# With device status changes or device messages in the stream, their expected state is checked too.
	local presence=()
	[[ " $STREAM " == *" -presence "* ]] && presence=(-expect-presence "$WORK/$sname-presence$r.jsonl")
	[[ " $STREAM " == *" -message-share "* ]] && presence+=(-expect-messages "$WORK/$sname-messages$r.jsonl")
	preload "$q" "$N" -expect "$WORK/$sname-expect$r.jsonl" "${presence[@]}" | tee "$WORK/$sname$r.publish" >&2
	port=$(free_port)
	log "run $r $name: draining (ops on 127.0.0.1:$port)"
	checkpoint
	w0=$(wal_bytes)
	worker_env "$s" "$q" "$port" env "${hook_env[@]}" "$BIN/runner" -name "$name" -n "$N" \
		-metrics "http://127.0.0.1:$port/metrics" -backends "cmdtrack-bench-$RUN" "${until[@]}" -log "$WORK/$sname$r.log" -out "$TSV" -- "$BIN/cmdtrack" >&2
	printf '%s\t%s\t%s\n' "$name" "$r" "$(($(wal_bytes) - w0))" >>"$WAL_TSV"
	[[ "${2:-}" != hooks ]] || hooks_check "$name" "$r" "$s"

	log "run $r $name: verifying the database against the expected final state"
	worker_env "$s" "$q" 0 "$BIN/iotda-sim" verify -exact -expect "$WORK/$sname-expect$r.jsonl" "${presence[@]}" >"$WORK/$sname-verify$r.out" 2>&1 || VERIFY_OK=0
	head -n 60 "$WORK/$sname-verify$r.out" >&2
	local want_events want_dead want_msg got_events got_dead got_msg left
	want_events=$(sed -n 's/.*, \([0-9]*\) distinct notifications, \([0-9]*\) distinct poison.*/\1/p' "$WORK/$sname$r.publish")
	want_dead=$(sed -n 's/.*, \([0-9]*\) distinct notifications, \([0-9]*\) distinct poison.*/\2/p' "$WORK/$sname$r.publish")
	want_msg=$(sed -n 's/.*, \([0-9]*\) distinct device message notifications.*/\1/p' "$WORK/$sname$r.publish")
	got_events=$(psql -X -tA "$DB" -c "SELECT count(*) FROM $s.device_command_events")
	got_dead=$(psql -X -tA "$DB" -c "SELECT count(*) FROM $s.dead_letters")
	# A revision from before device messages has no table for them: it skips them (and iotda-sim from before, the
	# harness of such a comparison, prints no count of them).
	got_msg=$(psql -X -tA "$DB" -c "SELECT count(*) FROM $s.device_message_events" 2>/dev/null || echo 0)
	want_msg=${want_msg:-0}
	left=$(queue_depth "bench-$RUN-$sname$r")
	COUNTS="history rows $got_events (want $want_events), message history rows $got_msg (want $want_msg), dead letters $got_dead (want $want_dead), left on queue ${left:-?} (want 0)"
	log "run $r: $COUNTS"
	if [[ "$got_events" != "$want_events" || "$got_msg" != "$want_msg" || "$got_dead" != "$want_dead" || "${left:-x}" != 0 ]]; then
		VERIFY_OK=0
	fi
	FINAL=$(tail -n 1 "$WORK/$sname-verify$r.out")
}

# latency_run R: 4. latency at a steady rate.
LAT_OK=1
latency_run() {
	local r=$1 port worker latency
	new_queue "latency$r"
	new_schema "latency$r"
	worker_env "$s" "$q" 0 "$BIN/cmdtrack" migrate >"$WORK/latency$r-migrate.log" 2>&1
	port=$(free_port)
	log "run $r latency: cmdtrack on an empty queue, $LAT_RATE msg/s for ${LAT_SECONDS}s"
	# A subshell that execs, so that $! is the worker itself and SIGTERM reaches it.
	(
		worker_exports "$s" "$q" "$port"
		exec "$BIN/cmdtrack"
	) >"$WORK/latency$r-worker.log" 2>&1 &
	worker=$!
	PIDS+=("$worker")
	for _ in $(seq 300); do
		curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || {
		log "cmdtrack did not become ready; log:"
		tail -n 30 "$WORK/latency$r-worker.log" >&2
		exit 1
	}
	local lat_n=$((LAT_RATE * LAT_SECONDS))
	(
		worker_exports "$s" "$q" 0
		exec "$BIN/latency" -sent "$WORK/sent$r.tsv" -n "$lat_n" -out "$TSV" -timeout "$((LAT_SECONDS + 120))s"
	) >"$WORK/latency$r.out" 2>&1 &
	latency=$!
	PIDS+=("$latency")
	"$BIN/iotda-sim" publish -quiet -url "$AMQP" -queue "$q" -messages "$lat_n" -rate "$LAT_RATE" -seed "$((SEED + 1))" \
		-start 2026-11-01 -out-of-order 0.1 -sent-log "$WORK/sent$r.tsv" >&2
	wait "$latency" || LAT_OK=0
	cat "$WORK/latency$r.out" >&2
	kill -TERM "$worker" 2>/dev/null || true
	wait "$worker" || true
}

# kind_run NAME SHARE R: cmdtrack draining a backlog of only commands (SHARE 0) or only device messages (SHARE 1),
# with the stream's disorder and duplicates but no presence, poison or foreign messages, so that CPU and WAL per
# notification compare one kind with the other; its database is checked like cmdtrack_run's.
kind_run() {
	local name=$1 share=$2 r=$3 port w0
	new_queue "$name$r"
	new_schema "${name//-/_}$r"
	worker_env "$s" "$q" 0 "$BIN/cmdtrack" migrate >"$WORK/$name$r-migrate.log" 2>&1
	log "run $r $name: preloading $q"
	preload "$q" "$KIND_N" -presence=false -poison 0 -foreign 0 -message-share "$share" \
		-expect "$WORK/$name-expect$r.jsonl" "${kind_expect[@]}" >"$WORK/$name$r.publish"
	port=$(free_port)
	log "run $r $name: draining"
	checkpoint
	w0=$(wal_bytes)
	worker_env "$s" "$q" "$port" "$BIN/runner" -name "$name" -n "$KIND_N" -metrics "http://127.0.0.1:$port/metrics" \
		-log "$WORK/$name$r.log" -out "$TSV" -- "$BIN/cmdtrack" >&2
	printf '%s\t%s\t%s\n' "$name" "$r" "$(($(wal_bytes) - w0))" >>"$WAL_TSV"
	worker_env "$s" "$q" 0 "$BIN/iotda-sim" verify -exact -expect "$WORK/$name-expect$r.jsonl" "${kind_expect[@]}" \
		>"$WORK/$name-verify$r.out" 2>&1 || {
		VERIFY_OK=0
		head -n 20 "$WORK/$name-verify$r.out" >&2
	}
	log "run $r $name: $(tail -n 1 "$WORK/$name-verify$r.out")"
}

# The contenders take turns, run after run, so that a drift of the machine (a checkpoint, a neighbour) spreads
# over all of them instead of landing on one.
for r in $(seq "$RUNS"); do
	if ((!ONLY_KINDS)); then
		drain_run "$r"
		naive_run "$r"
		case "$WEBHOOK" in
		0) cmdtrack_run "$r" ;;
		1) cmdtrack_run "$r" hooks ;;
		# Taking turns, the order swapped every run.
		both) if ((r % 2)); then cmdtrack_run "$r"; cmdtrack_run "$r" hooks; else cmdtrack_run "$r" hooks; cmdtrack_run "$r"; fi ;;
		esac
		latency_run "$r"
	fi
	if ((KINDS)); then
		kind_expect=()
		kind_run cmds-only 0 "$r"
		kind_expect=(-expect-messages "$WORK/msgs-only-messages$r.jsonl")
		kind_run msgs-only 1 "$r"
	fi
done

# 5. Report.
ELAPSED=$(($(date +%s) - START))
read -r TICKS1 STEAL1 IDLE1 < <(cpu_ticks)
STEAL_PCT=$(awk -v t=$((TICKS1 - TICKS0)) -v s=$((STEAL1 - STEAL0)) 'BEGIN { printf "%.1f", (t > 0 ? 100 * s / t : 0) }')
BUSY_PCT=$(awk -v t=$((TICKS1 - TICKS0)) -v i=$((IDLE1 - IDLE0)) 'BEGIN { printf "%.0f", (t > 0 ? 100 * (t - i) / t : 0) }')
mkdir -p "$(dirname "$RESULTS")"
{
	echo "cmdtrack benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), git $REV$([[ -z "${BENCH_CMDTRACK_REF:-}" ]] || echo " (harness: $(git rev-parse --short HEAD))")"
	echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM;" \
		"RabbitMQ $(timeout 60 rabbitmqctl -q version 2>/dev/null || echo '?'), PostgreSQL $(psql -X -tA "$DB" -c 'SHOW server_version' | cut -d' ' -f1)"
	echo "machine facts: fsync (fdatasync, pg_test_fsync) $FSYNC_US us per flush; steal $STEAL_PCT % of CPU time; CPU busy $BUSY_PCT % over the run;" \
		"load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews the figures)"
	echo "stream: -seed $SEED $STREAM; drain/naive credit window $WINDOW; cmdtrack credit $CREDIT, batch ${CMDTRACK_BATCH_SIZE:-256}; PostgreSQL fsync $FSYNC"
	case "$WEBHOOK" in
	0) echo "webhooks: none (BENCH_WEBHOOK=0)" ;;
	1) echo "webhooks: cmdtrack delivers its outcome events to one endpoint on loopback (bench/hooks; BENCH_WEBHOOK=1)" ;;
	both) echo "webhooks: cmdtrack without an endpoint, cmdtrack+wh with one on loopback (bench/hooks), taking turns (BENCH_WEBHOOK=both)" ;;
	esac
	echo "$RUNS runs per contender, taking turns; each figure is the median of the runs [lowest-highest]"
	echo
	# fig(list, format): the median [lowest-highest] of a space-separated list (scripts/figures.awk).
	touch "$HOOKS_TSV"
	awk -F'\t' -v fsync_us="$FSYNC_US" "$(<scripts/figures.awk)"'
		FILENAME == ARGV[1] && $1 != "latency" {
			c = $1; if (!(c in seen)) { seen[c] = 1; order[++nc] = c }
			k = ++runs[c]; rrate[c, k] = $4; rown[c, k] = $6 / $2 * 1e6; rpg[c, k] = $8 / $2 * 1e6
			msgs[c] = $2; rate[c] = rate[c] " " $4; rss[c] = rss[c] " " $5
			own[c] = own[c] " " $6 / $2 * 1e6; brk[c] = brk[c] " " $7 / $2 * 1e6; pg[c] = pg[c] " " $8 / $2 * 1e6
			all[c] = all[c] " " ($6 + $7 + $8) / $2 * 1e6
			if (NF >= 9) settle[c] = settle[c] " " $9
			if (NF >= 10) { pgown[c] = pgown[c] " " $10 / $2 * 1e6; rpgown[c, k] = $10 / $2 * 1e6 }
		}
		FILENAME == ARGV[1] && $1 == "latency" { latn = $2; p50 = p50 " " $3; p99 = p99 " " $4; mx = mx " " $5 }
		FILENAME == ARGV[2] { wal[$1] = wal[$1] " " $3 / msgs[$1]; rwal[$1, $2] = $3 / msgs[$1] }
		# hooks.tsv: name, run, events, webhook-ids, duplicates, outbox rows, outcome_totals, receiver CPU s, refused, requests
		FILENAME == ARGV[3] {
			h = $1; hn = msgs[h]; hooked = h
			hev[h] = hev[h] " " $4 / hn; hrows[h] = hrows[h] " " $6 / hn; hcpu[h] = hcpu[h] " " $8 / hn * 1e6
			rids[$2] = $4
		}
		END {
			printf "%-11s %8s %20s %16s %16s %18s %18s %18s %14s\n", "", "messages", "msg/s", "peak RSS MiB", \
				"own CPU us/msg", "broker CPU us/msg", "postgres us/msg", "all CPU us/msg", "WAL B/msg"
			for (i = 1; i <= nc; i++) {
				c = order[i]
				printf "%-11s %8d %20s %16s %16s %18s %18s %18s %14s\n", c, msgs[c], fig(rate[c], "%.0f"), fig(rss[c], "%.1f"), \
					fig(own[c], "%.0f"), fig(brk[c], "%.0f"), fig(pg[c], "%.0f"), fig(all[c], "%.0f"), \
					(c in wal) ? fig(wal[c], "%.0f") : "-"
			}
			print ""
			if (med(rate["drain"]) > 0) printf "cmdtrack / drain limit:  %.2fx msg/s\n", med(rate["cmdtrack"]) / med(rate["drain"])
			if (med(rate["naive"]) > 0) printf "cmdtrack / naive:        %.2fx msg/s\n", med(rate["cmdtrack"]) / med(rate["naive"])
			if (med(own["drain"]) > 0) printf "worker CPU per message:  %.2fx the bare receiver'\''s (target <= 1.2x)\n", med(own["cmdtrack"]) / med(own["drain"])
			if (med(pg["cmdtrack"]) > 0) printf "PostgreSQL per message:  %.0f us (target <= 40 us)\n", med(pg["cmdtrack"])
			if (med(brk["drain"]) > 0) printf "broker per message:      %.2fx for cmdtrack what it is for the bare receiver (target <= 1.00x)\n", med(brk["cmdtrack"]) / med(brk["drain"])
			if (med(own["cmds-only"]) > 0 && med(own["msgs-only"]) > 0) {
				printf "device message / command, per notification (msgs-only / cmds-only): own CPU %.2fx, postgres %.2fx, all CPU %.2fx, WAL %.2fx (target <= 1.00x)\n", \
					med(own["msgs-only"]) / med(own["cmds-only"]), med(pg["msgs-only"]) / med(pg["cmds-only"]), \
					med(all["msgs-only"]) / med(all["cmds-only"]), \
					(med(wal["cmds-only"]) > 0 ? med(wal["msgs-only"]) / med(wal["cmds-only"]) : 0)
			}
			if (p99 != "") printf "cmdtrack latency (publish -> commit of its row, PostgreSQL'\''s commit timestamp, %d msgs per run): p50 %s ms, p99 %s ms, max %s ms (target p99 <= 50 ms; fsync %s us per flush)\n", \
				latn, fig(p50, "%.1f"), fig(p99, "%.1f"), fig(mx, "%.1f"), fsync_us
			for (i = 1; i <= nc; i++) if (order[i] in pgown) ownl = ownl sprintf(", %s %s", order[i], fig(pgown[order[i]], "%.0f"))
			if (ownl != "") printf "PostgreSQL CPU of cmdtrack'\''s own connections'\'' backends, us/msg (postgres above adds the server'\''s other processes and anyone else'\''s queries): %s\n", substr(ownl, 3)
			if (hooked != "") {
				printf "webhooks (%s, one endpoint on loopback), per notification: %s events delivered, %s outbox rows;" \
					" the outbox empty %s s after the drain; the receiver (the application'\''s, not in the table) %s us CPU\n", \
					hooked, fig(hev[hooked], "%.3f"), fig(hrows[hooked], "%.3f"), fig(settle[hooked], "%.1f"), fig(hcpu[hooked], "%.1f")
			}
			if (hooked == "cmdtrack+wh" && runs["cmdtrack"] > 0) {
				for (r = 1; r <= runs["cmdtrack"]; r++) {
					if (!((hooked, r) in rrate)) continue
					pr = pr " " rrate[hooked, r] / rrate["cmdtrack", r]
					po = po " " rown[hooked, r] - rown["cmdtrack", r]; pp = pp " " rpg[hooked, r] - rpg["cmdtrack", r]
					pw = pw " " rwal[hooked, r] - rwal["cmdtrack", r]; pb = pb " " rpgown[hooked, r] - rpgown["cmdtrack", r]
					if (rids[r] > 0) pe = pe " " (rwal[hooked, r] - rwal["cmdtrack", r]) * msgs[hooked] / rids[r]
				}
				printf "with / without the endpoint, paired by run: msg/s %s; per notification: own CPU %s us, its backends %s us, all of postgres %s us, WAL %s B (%s B per event)\n", \
					fig(pr, "%.3fx"), fig(po, "%+.1f"), fig(pb, "%+.1f"), fig(pp, "%+.1f"), fig(pw, "%+.0f"), fig(pe, "%+.0f")
			}
		}' "$TSV" "$WAL_TSV" "$HOOKS_TSV"
	echo "(own CPU: the contender's; broker, postgres: CPU used by RabbitMQ and PostgreSQL over the same span; WAL: pg_stat_wal's bytes over the drain; with webhooks, the drain and the delivery after it)"
	echo "per run (name, messages, seconds, msg/s, peak RSS MiB, CPU s, broker CPU s, postgres CPU s[, cmdtrack: seconds from the drain's end to an empty outbox (webhooks), its backends' CPU s]; latency: n, p50, p99, max, lower-bound p50, p99):"
	sed 's/^/  /' "$TSV"
	if [[ -s "$HOOKS_TSV" ]]; then
		echo "webhooks per run (name, run, events, webhook-ids, duplicates, outbox rows, outcome_totals, receiver CPU s, refused, requests):"
		sed 's/^/  /' "$HOOKS_TSV"
	fi
	echo "final state of the last run: $FINAL; $COUNTS"
	[[ -z "$HOOKS_COUNTS" ]] || echo "$HOOKS_COUNTS"
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
