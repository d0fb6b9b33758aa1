#!/usr/bin/env bash
# bench-cost.sh: where a notification's database cost goes (issue 30). One cmdtrack drain of make bench's default
# stream on a fresh schema, then: its WAL split by record type and by relation (pg_waldump over the drain's LSN
# range, only the records that touch this schema's relations and the commits of the transactions that did), the
# full-page images' share, each table's HOT share (pg_stat_user_tables), each relation's size, the history tables'
# bytes per row (payload against the rest, pg_column_size), and the CPU of this drain's own PostgreSQL backends.
#
# Usage: scripts/bench-cost.sh [OUTDIR]      (default bench/results/cost)
#
# Environment:
#   BENCH_MESSAGES      backlog (default 100000)
#   BENCH_SEED          stream seed (default 1)
#   BENCH_STREAM        as scripts/bench.sh (default its default stream)
#   BENCH_FSYNC         fsync, synchronous_commit and full_page_writes over the drain (default on, as make bench)
#   BENCH_CMDTRACK_REF  build cmdtrack from this revision instead of the working tree (a paired before/after)
#   BENCH_KEEP=1        keep the schema, queue and work directory
#   BENCH_COST_SCHEMA   drain into this existing schema (one an earlier run kept) instead of a fresh one: a warm
#                       drain, whose pages exist before the checkpoint, so that it pays the full-page images a
#                       long-running database pays (use another BENCH_SEED: the same stream would all be duplicates)
#   BENCH_COST_ANALYZE  only analyse the kept work directory of an earlier run
# Other engineers' tests write to the same cluster: pg_stat_wal's figure over the drain includes them, the
# per-relation tally does not. Run it under flock /tmp/cmdtrack-bench.lock, like make bench.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
OUT=${1:-$ROOT/bench/results/cost}
N=${BENCH_MESSAGES:-100000}
SEED=${BENCH_SEED:-1}
STREAM=${BENCH_STREAM:--out-of-order 0.1 -duplicate 0.02 -poison 0.001 -presence -message-share 0.2}
FSYNC=${BENCH_FSYNC:-on}
log() { printf 'bench-cost: %s\n' "$*" >&2; }

eval "$(scripts/testenv.sh up)"
DB=$CMDTRACK_TEST_DATABASE_URL
AMQP=$CMDTRACK_TEST_AMQP_URL
if [[ "$DB" == *\?* ]]; then SEP='&'; else SEP='?'; fi
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_waldump | tail -n 1)")
PGDATA=$(psql -X -tA "$DB" -c 'SHOW data_directory')

RUN=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
WORK=${BENCH_COST_ANALYZE:-$(mktemp -d "/tmp/cmdtrack-cost-$RUN.XXXX")}
S=${BENCH_COST_SCHEMA:-cost_$RUN}
Q="cost-$RUN"
APP="cmdtrack-cost-$RUN"
SAMPLER=
cleanup() {
	local rc=$?
	[[ -z "$SAMPLER" ]] || kill "$SAMPLER" 2>/dev/null || true
	psql -X -q "$DB" -c "ALTER SYSTEM RESET fsync" -c "ALTER SYSTEM RESET synchronous_commit" \
		-c "ALTER SYSTEM RESET full_page_writes" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	if [[ "${BENCH_KEEP:-}" == 1 ]]; then
		log "kept $WORK, schema $S, queue $Q"
	else
		timeout 60 rabbitmqctl -q delete_queue "$Q" >/dev/null 2>&1 || true
		[[ -n "${BENCH_COST_SCHEMA:-}" ]] || psql -X -q "$DB" -c "DROP SCHEMA IF EXISTS $S CASCADE" >/dev/null 2>&1 || true
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

drain() {
	BIN=$WORK/bin
	mkdir -p "$BIN" "$OUT"
	go build -o "$BIN/" ./cmd/iotda-sim ./bench/runner
	if [[ -n "${BENCH_CMDTRACK_REF:-}" ]]; then
		REV=$(git rev-parse --short "${BENCH_CMDTRACK_REF}^{commit}")
		mkdir "$WORK/src"
		git archive "$REV" | tar -x -C "$WORK/src"
		(cd "$WORK/src" && go build -o "$BIN/" ./cmd/cmdtrack)
	else
		REV="$(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
		go build -o "$BIN/" ./cmd/cmdtrack
	fi

	if [[ -n "${BENCH_COST_SCHEMA:-}" ]]; then
		# A warm drain: the kept schema of an earlier one, its statistics reset so that they count this drain only.
		psql -X -q -v ON_ERROR_STOP=1 "$DB" -c "SELECT pg_stat_reset_single_table_counters(c.oid) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$S'" >/dev/null
	else
		psql -X -q -v ON_ERROR_STOP=1 "$DB" -c "CREATE SCHEMA $S" >/dev/null
	fi
	export CMDTRACK_DATABASE_URL="$DB${SEP}search_path=$S&application_name=$APP" CMDTRACK_AMQP_URL="$AMQP" \
		CMDTRACK_AMQP_QUEUE="/queue/$Q" CMDTRACK_LOG_FORMAT=text CMDTRACK_LOG_LEVEL=info
	CMDTRACK_OPS_ADDR=127.0.0.1:0 "$BIN/cmdtrack" migrate >"$WORK/migrate.log" 2>&1
	log "preloading $N messages into $Q (-seed $SEED $STREAM)"
	# shellcheck disable=SC2086 # STREAM is a list of flags
	"$BIN/iotda-sim" publish -quiet -url "$AMQP" -queue "/queue/$Q" -messages "$N" -seed "$SEED" -start 2026-11-01 $STREAM \
		-expect "$WORK/expect.jsonl" | tee "$WORK/publish.txt" >&2
	sleep 2

	psql -X -q "$DB" -c "ALTER SYSTEM SET fsync = $FSYNC" -c "ALTER SYSTEM SET synchronous_commit = $FSYNC" \
		-c "ALTER SYSTEM SET full_page_writes = $FSYNC" -c "SELECT pg_reload_conf()" >/dev/null
	# The backends of this drain, by application name: their CPU (utime + stime, ticks) sampled until they exit.
	(
		while :; do
			for pid in $(psql -X -tA "$DB" -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$APP'" 2>/dev/null); do
				t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) && echo "$pid $t"
			done
			sleep 0.5
		done
	) >"$WORK/backend-cpu.txt" &
	SAMPLER=$!
	psql -X -q "$DB" -c CHECKPOINT >/dev/null
	LSN0=$(psql -X -tA "$DB" -c 'SELECT pg_current_wal_insert_lsn()')
	W0=$(psql -X -tA "$DB" -c 'SELECT wal_bytes FROM pg_stat_wal')
	PORT=$((20000 + RANDOM % 20000))
	CMDTRACK_OPS_ADDR=127.0.0.1:$PORT "$BIN/runner" -name cmdtrack -n "$N" -metrics "http://127.0.0.1:$PORT/metrics" \
		-log "$WORK/cmdtrack.log" -out "$WORK/runner.tsv" -- "$BIN/cmdtrack" >&2
	LSN1=$(psql -X -tA "$DB" -c 'SELECT pg_current_wal_insert_lsn()')
	W1=$(psql -X -tA "$DB" -c 'SELECT wal_bytes FROM pg_stat_wal')
	kill "$SAMPLER" 2>/dev/null || true
	wait "$SAMPLER" 2>/dev/null || true
	SAMPLER=
	psql -X -q "$DB" -c "ALTER SYSTEM RESET fsync" -c "ALTER SYSTEM RESET synchronous_commit" \
		-c "ALTER SYSTEM RESET full_page_writes" -c "SELECT pg_reload_conf()" >/dev/null
	log "drain done: LSN $LSN0 .. $LSN1; checking the final state"
	# A warm drain's schema also holds the earlier drain's commands: the check is of this stream's rows only.
	local exact=-exact
	[[ -z "${BENCH_COST_SCHEMA:-}" ]] || exact=
	# shellcheck disable=SC2086 # exact is one flag or none
	"$BIN/iotda-sim" verify $exact -expect "$WORK/expect.jsonl" >"$WORK/verify.txt" 2>&1 || {
		tail -n 20 "$WORK/verify.txt" >&2
		log "FAILED: the database does not match the stream's expected final state"
		exit 1
	}

	log "pg_waldump over the drain"
	"$PGBIN/pg_waldump" -p "$PGDATA/pg_wal" -s "$LSN0" -e "$LSN1" >"$WORK/waldump.txt" 2>"$WORK/waldump.err" || true
	"$PGBIN/pg_waldump" -p "$PGDATA/pg_wal" -s "$LSN0" -e "$LSN1" --stats=record >"$WORK/waldump-stats.txt" 2>&1 || true
	sleep 1 # the backends' statistics reach pg_stat_user_tables when they exit
	declare -p N SEED STREAM FSYNC S REV RUN LSN0 LSN1 W0 W1 >"$WORK/state.env"
}

analyze() {
	# shellcheck disable=SC1091
	source "$WORK/state.env"
	# relfilenode -> name: this schema's relations, partitions and partition indexes under their root, TOAST tables
	# and their indexes under their owner's name.
	psql -X -tA -F $'\t' "$DB" >"$WORK/rels.tsv" <<-SQL
	WITH r AS (
	  SELECT c.oid, c.relfilenode, c.relkind, c.relname,
	         coalesce((SELECT p.relname FROM pg_class p WHERE p.oid = pg_partition_root(c.oid)), c.relname) AS root
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  WHERE n.nspname = '$S' AND c.relfilenode <> 0
	)
	SELECT relfilenode, root, relkind FROM r
	UNION ALL
	SELECT t.relfilenode, r.root || ' (TOAST)', 't' FROM r JOIN pg_class o ON o.oid = r.oid JOIN pg_class t ON t.oid = o.reltoastrelid
	UNION ALL
	SELECT i.relfilenode, r.root || ' (TOAST index)', 'i' FROM r JOIN pg_class o ON o.oid = r.oid
	  JOIN pg_index x ON x.indrelid = o.reltoastrelid JOIN pg_class i ON i.oid = x.indexrelid;
	SQL

	# The tally: each record that touches one of these relations (its first block reference's relation), and each
	# transaction record (COMMIT) of a transaction that wrote one; rec = the record's own bytes, tot = with its
	# full-page images.
	awk -v n="$N" -v relsfile="$WORK/rels.tsv" -v out="$WORK" '
		BEGIN { FS = "\t"; while ((getline l < relsfile) > 0) { split(l, g, "\t"); name[g[1]] = g[2] } FS = " " }
		{
			if (!match($0, /len \(rec\/tot\): *[0-9]+\/ *[0-9]+/)) next
			s = substr($0, RSTART, RLENGTH); gsub(/[^0-9\/]/, "", s); split(s, lt, "/"); rec = lt[2]; tot = lt[3]
			match($0, /^rmgr: [A-Za-z0-9]+/); rm = substr($0, 7, RLENGTH - 6)
			tx = 0; if (match($0, /tx: *[0-9]+/)) { t = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", t); tx = t }
			op = ""; if (match($0, /desc: [A-Z_0-9+]+/)) op = substr($0, RSTART + 6, RLENGTH - 6)
			rel = ""; if (match($0, /blkref #0: rel [0-9]+\/[0-9]+\/[0-9]+/)) { r = substr($0, RSTART, RLENGTH); sub(/.*\//, "", r); rel = r }
			fork = ($0 ~ /blkref #0: rel [0-9\/]+ fork /) ? "fsm/vm" : ""
			if (rel != "" && (rel in name)) {
				who = name[rel] (fork != "" ? " (" fork ")" : "")
				mine[tx] = 1
			} else if (rm == "Transaction" && (tx in mine)) {
				who = "(commit records)"
			} else { other += tot; next }
			key = rm "/" op
			tc[key]++; tr[key] += rec; tt[key] += tot
			rc[who]++; rr[who] += rec; rt[who] += tot
			all += tot; allrec += rec
		}
		# A COMMIT can come before the tally has seen the transaction touch a relation only if the transaction wrote
		# nothing: none of this schema. So one pass suffices.
		END {
			f = out "/by-type.tsv"
			for (k in tc) printf "%s\t%d\t%d\t%d\n", k, tc[k], tr[k], tt[k] - tr[k] > f
			f = out "/by-rel.tsv"
			for (k in rc) printf "%s\t%d\t%d\t%d\n", k, rc[k], rr[k], rt[k] - rr[k] > f
			printf "%d\t%d\t%d\n", all, allrec, other > (out "/totals.tsv")
		}' "$WORK/waldump.txt"
	read -r ALL ALLREC OTHER <"$WORK/totals.tsv"

	{
		echo "cmdtrack cost of a notification, $(date -u '+%Y-%m-%d %H:%M UTC'), git $REV, PostgreSQL $(psql -X -tA "$DB" -c 'SHOW server_version' | cut -d' ' -f1), fsync/full_page_writes $FSYNC, wal_compression $(psql -X -tA "$DB" -c 'SHOW wal_compression')"
		echo "stream: $N messages, -seed $SEED $STREAM; $(tail -n 1 "$WORK/verify.txt")"
		echo "load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
		awk -F'\t' -v n="$N" '{ printf "drain: %.1f s, %.0f msg/s, worker CPU %.1f us/msg, all postgres CPU %.1f us/msg (the whole cluster, others included)\n", $3, $4, $6 / n * 1e6, $8 / n * 1e6 }' "$WORK/runner.tsv"
		awk -v n="$N" '{ last[$1] = $2 } END { s = 0; for (p in last) s += last[p]; printf "this drain'\''s backends: %d, CPU %.1f us/msg (utime+stime, sampled every 0.5 s)\n", length(last), s * 1e4 / n }' "$WORK/backend-cpu.txt"
		echo "WAL: this schema's records and commits $ALL B = $(awk -v a="$ALL" -v n="$N" 'BEGIN { printf "%.0f", a / n }') B/msg; of which full-page images $(awk -v a="$ALL" -v r="$ALLREC" 'BEGIN { printf "%.1f %%", 100 * (a - r) / a }'); pg_stat_wal over the drain $(((W1 - W0) / N)) B/msg (cluster-wide); other sessions' records in the range $((OTHER / N)) B/msg"
		echo
		echo "WAL by record type (this schema): records, B/msg, of which FPI B/msg, share"
		sort -t$'\t' -k3,3nr -k4,4nr "$WORK/by-type.tsv" | awk -F'\t' -v n="$N" -v a="$ALL" '{ printf "  %-28s %9d %8.1f %8.1f %6.1f %%\n", $1, $2, ($3 + $4) / n, $4 / n, 100 * ($3 + $4) / a }' | sort -k3,3nr
		echo
		echo "WAL by relation: records, B/msg, of which FPI B/msg, share"
		awk -F'\t' -v n="$N" -v a="$ALL" '{ printf "%.1f\t  %-52s %9d %8.1f %8.1f %6.1f %%\n", ($3 + $4) / n, $1, $2, ($3 + $4) / n, $4 / n, 100 * ($3 + $4) / a }' "$WORK/by-rel.tsv" | sort -t$'\t' -k1,1nr | cut -f2-
		echo
		echo "Tables: inserts, updates, HOT updates (share), deletes, heap, indexes, TOAST (bytes per message)"
		psql -X -tA -F $'\t' "$DB" -c "
			SELECT coalesce(pr.relname, c.relname), sum(s.n_tup_ins), sum(s.n_tup_upd), sum(s.n_tup_hot_upd), sum(s.n_tup_del),
			       sum(pg_relation_size(c.oid)), sum(pg_indexes_size(c.oid)),
			       sum(coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0))
			FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
			LEFT JOIN pg_class pr ON pr.oid = pg_partition_root(c.oid)
			WHERE s.schemaname = '$S' GROUP BY 1 HAVING sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del) > 0 ORDER BY 6 DESC" |
			awk -F'\t' -v n="$N" '{ printf "  %-34s ins %8d upd %8d hot %8d (%5.1f %%) del %7d  heap %7.1f idx %7.1f toast %6.1f\n", $1, $2, $3, $4, ($3 > 0 ? 100 * $4 / $3 : 0), $5, $6 / n, $7 / n, $8 / n }'
		echo
		echo "Indexes: size (bytes per message), scans over the drain"
		psql -X -tA -F $'\t' "$DB" -c "
			SELECT coalesce(pr.relname, c.relname), sum(pg_relation_size(c.oid)), sum(s.idx_scan)
			FROM pg_stat_user_indexes s JOIN pg_class c ON c.oid = s.indexrelid
			LEFT JOIN pg_class pr ON pr.oid = pg_partition_root(c.oid)
			WHERE s.schemaname = '$S' GROUP BY 1 HAVING sum(pg_relation_size(c.oid)) > 8192 ORDER BY 2 DESC" |
			awk -F'\t' -v n="$N" '{ printf "  %-52s %8.1f B/msg  scans %d\n", $1, $2 / n, $3 }'
		echo
		echo "History rows: rows, bytes per row: row (pg_column_size), payload stored, payload as text, heap+TOAST+indexes on disk"
		for t in device_command_events device_message_events device_presence_events; do
			psql -X -tA -F $'\t' "$DB" -c "SELECT to_regclass('$S.$t') IS NOT NULL" | grep -q t || continue
			# The command history stores its payloads without the header once migration 027 is in (stored_payload).
			col=$(psql -X -tA "$DB" -c "SELECT attname FROM pg_attribute WHERE attrelid = '$S.$t'::regclass
				AND attname IN ('payload', 'stored_payload') AND NOT attisdropped ORDER BY attname DESC LIMIT 1")
			psql -X -tA -F $'\t' "$DB" -c "
				SELECT '$t', count(*), avg(pg_column_size(e.*)), avg(pg_column_size(e.$col)), avg(octet_length(e.$col::text)),
				       (SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i WHERE i.inhparent = '$S.$t'::regclass) / greatest(count(*), 1)
				FROM $S.$t e" 2>/dev/null |
				awk -F'\t' '{ printf "  %-26s %8d rows  row %6.1f B  payload %6.1f B stored, %6.1f B as text  on disk %6.1f B/row\n", $1, $2, $3, $4, $5, $6 }'
		done
		echo
		echo "pg_waldump --stats=record over the range (the whole cluster, others included):"
		sed 's/^/  /' "$WORK/waldump-stats.txt" | head -n 60
	} | tee "$OUT/cost-$REV-$RUN.txt"
	log "written to $OUT/cost-$REV-$RUN.txt"
}


if [[ -n "${BENCH_COST_ANALYZE:-}" ]]; then
	BENCH_KEEP=1
else
	drain
fi
analyze
