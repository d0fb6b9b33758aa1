#!/usr/bin/env bash
# stress.sh GO COUNT: the service-free tests (make test/unit's set) with the race
# detector, COUNT times each, while one CPU hog per core keeps the machine busy,
# as CI's machine is while Docker images build beside the tests. A test that
# waits on the wall clock or on scheduling luck fails here, not at random in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${1:-go}
COUNT=${2:-20}

hogs=()
stop_hogs() {
	((${#hogs[@]})) && kill "${hogs[@]}" 2>/dev/null
	wait 2>/dev/null || true
}
trap stop_hogs EXIT
for _ in $(seq "$(nproc)"); do
	# A shell loop, not `yes`: no pipe, no output, all CPU.
	bash -c 'while :; do :; done' &
	hogs+=($!)
done
echo "stress: $(nproc) CPU hogs running; go test -short -race -count=$COUNT" >&2

start=$SECONDS
"$GO" test -short -race -count="$COUNT" -timeout 60m ./...
(cd deploy && "$GO" test -short -race -count="$COUNT" -timeout 30m ./...)
echo "stress: passed in $((SECONDS - start))s" >&2
