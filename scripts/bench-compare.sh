#!/usr/bin/env bash
# bench-compare.sh: is the working tree's cmdtrack as fast as an earlier revision's? make bench, one run of each
# at a time, taking turns, then the medians and the paired ratios.
#
# Usage: scripts/bench-compare.sh REF [ROUNDS]     (make bench/compare REF=c8a16b3 ROUNDS=6)
#
# This machine's throughput moves by 10-15 % from one run to the next (docs/benchmarks.md), more than the
# differences worth knowing, so one run each proves nothing. Each round runs scripts/bench.sh once for REF's worker
# and once for the working tree's, the order swapped every round, with the same harness and stream
# (BENCH_CMDTRACK_REF). The summary gives each side's median [lowest-highest] and two paired figures per round,
# whose medians say more than the medians' difference:
#   new/old        the working tree's msg/s over REF's, in the same round
#   new/old, each over its drain
#                  the same, each divided by the bare receiver's rate of its own run (the machine's speed of the
#                  moment)
#
# Environment: what scripts/bench.sh reads, with these defaults for a comparison (set them to change):
#   BENCH_MESSAGES=200000 BENCH_NAIVE_MESSAGES=2000 BENCH_LATENCY_SECONDS=5
#   BENCH_STREAM="-out-of-order 0.1 -duplicate 0.02 -poison 0.001" (no device status changes: a revision before
#   presence skips them, which is no work to compare)
#   BENCH_COMPARE_WEBHOOK=1 the working tree's side delivers its outcome events to one webhook endpoint on loopback
#                           (scripts/bench.sh's BENCH_WEBHOOK=1), REF's side to none: what a revision with webhooks
#                           costs against one without, in the drain's rate (default 0: neither side)
#   BENCH_COMPARE_DIR       where each run's table is kept (default bench/results/compare; the summary is
#                           summary.txt there)
# A round takes about 5 minutes at the defaults.
set -euo pipefail

usage() { # usage EXIT: the opening comment, then exit
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit "$1"
}
[[ "${1:-}" != -h && "${1:-}" != --help ]] || usage 0
[[ $# -ge 1 && $# -le 2 && -n "$1" ]] || usage 2
REF=$1
ROUNDS=${2:-6}
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -gt 0 ]] || {
	echo "bench-compare: ROUNDS must be a positive integer, got '$ROUNDS'" >&2
	exit 2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
git rev-parse --verify --quiet "$REF^{commit}" >/dev/null || {
	echo "bench-compare: '$REF' names no commit of this repository (try git log --oneline)" >&2
	exit 2
}
export BENCH_MESSAGES=${BENCH_MESSAGES:-200000} BENCH_NAIVE_MESSAGES=${BENCH_NAIVE_MESSAGES:-2000}
export BENCH_LATENCY_SECONDS=${BENCH_LATENCY_SECONDS:-5} BENCH_RUNS=1
export BENCH_STREAM=${BENCH_STREAM:--out-of-order 0.1 -duplicate 0.02 -poison 0.001}
# The cmds-only and msgs-only drains measure a kind's cost, not the comparison:
# both sides skip them (the old side would anyway).
export BENCH_KINDS=${BENCH_KINDS:-0}
COMPARE_WEBHOOK=${BENCH_COMPARE_WEBHOOK:-0}
[[ "$COMPARE_WEBHOOK" == 0 || "$COMPARE_WEBHOOK" == 1 ]] || {
	echo "bench-compare: BENCH_COMPARE_WEBHOOK must be 0 or 1, got '$COMPARE_WEBHOOK'" >&2
	exit 2
}
OUT=${BENCH_COMPARE_DIR:-$ROOT/bench/results/compare}
mkdir -p "$OUT"
rm -f "$OUT"/old.* "$OUT"/new.* "$OUT"/rounds.tsv "$OUT"/summary.txt

run() { # run SIDE ROUND
	local ref="" hooks=$COMPARE_WEBHOOK
	[[ $1 == old ]] && ref=$REF hooks=0
	echo "bench-compare: round $2 of $ROUNDS, ${1} (${ref:-working tree})" >&2
	BENCH_WEBHOOK=$hooks BENCH_CMDTRACK_REF=$ref BENCH_RESULTS="$OUT/$1.$2.txt" scripts/bench.sh >"$OUT/$1.$2.log" 2>&1 || {
		echo "bench-compare: scripts/bench.sh failed; its output is in $OUT/$1.$2.log" >&2
		exit 1
	}
}
for r in $(seq 1 "$ROUNDS"); do
	if ((r % 2)); then run old "$r"; run new "$r"; else run new "$r"; run old "$r"; fi
done

# row FILE: cmdtrack's msg/s, worker, broker and PostgreSQL CPU us/msg, WAL B/msg, and the drain's msg/s.
row() {
	awk '/^drain  /{d=$3} /^cmdtrack  /{print $3, $5, $6, $7, $9, d}' "$1"
}
# med FORMAT: the median [lowest-highest] of the numbers on stdin, as make bench prints its figures.
med() {
	awk -v f="$1" "$(<scripts/figures.awk)"'{ s = s " " $1 } END { printf "%s", fig(s, f) }'
}
{
	echo "cmdtrack: working tree ($(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')) against $(git rev-parse --short "$REF"), $ROUNDS rounds, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "each: $BENCH_MESSAGES messages, stream $BENCH_STREAM; one run of each per round, taking turns; median [lowest-highest]"
	if ((COMPARE_WEBHOOK)); then echo "the working tree delivers its outcome events to one webhook endpoint on loopback; $(git rev-parse --short "$REF") to none"; fi
	for r in $(seq 1 "$ROUNDS"); do
		echo "$r $(row "$OUT/old.$r.txt") $(row "$OUT/new.$r.txt")"
	done >"$OUT/rounds.tsv"
	printf '%-34s %-28s %s\n' "" "$(git rev-parse --short "$REF")" "working tree"
	col() { awk -v c="$1" '{print $c}' "$OUT/rounds.tsv" | med "$2"; }
	printf '%-34s %-28s %s\n' "cmdtrack msg/s" "$(col 2 %.0f)" "$(col 8 %.0f)"
	printf '%-34s %-28s %s\n' "bare receiver (drain) msg/s" "$(col 7 %.0f)" "$(col 13 %.0f)"
	printf '%-34s %-28s %s\n' "worker CPU us/msg" "$(col 3 %.0f)" "$(col 9 %.0f)"
	printf '%-34s %-28s %s\n' "RabbitMQ CPU us/msg" "$(col 4 %.0f)" "$(col 10 %.0f)"
	printf '%-34s %-28s %s\n' "PostgreSQL CPU us/msg" "$(col 5 %.0f)" "$(col 11 %.0f)"
	printf '%-34s %-28s %s\n' "WAL B/msg" "$(col 6 %.0f)" "$(col 12 %.0f)"
	echo "new/old msg/s, paired by round:          $(awk '{print $8 / $2}' "$OUT/rounds.tsv" | med %.3f)"
	echo "new/old, each over its drain, by round:  $(awk '{print ($8 / $13) / ($2 / $7)}' "$OUT/rounds.tsv" | med %.3f)"
	echo "rounds the working tree was faster:      $(awk '$8 > $2 {n++} END {print n + 0}' "$OUT/rounds.tsv") of $ROUNDS"
} | tee "$OUT/summary.txt"
