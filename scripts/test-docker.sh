#!/usr/bin/env bash
# test-docker.sh: `make test/docker`, the container path of cmdtrack held to the same standard as the loopback one.
#
#   1. provision: a Docker engine, buildx, Compose v2 and the images (scripts/dockerenv.sh up; a second run reuses them)
#   2. the parallel test suite (go test -race ./...) with PostgreSQL and RabbitMQ from testcontainers-go
#   3. the Dockerfile built and its image run as Kubernetes runs it; docker-compose.yml up, checked and down
#      (deploy/docker_test.go, build tag docker)
#   4. the leak check: a container, network, volume or test image left behind fails the run (and is removed)
#
# Every step runs even if an earlier test step failed, so that the leak check always has its say; the exit status
# is 1 if any step failed. Progress and the time of each step go to stderr.

# shellcheck disable=SC2317 # summary and provision are called through trap and step.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
STEPS=()
FAILED=0

log() { printf 'test/docker: %s\n' "$*" >&2; }

# step NAME COMMAND...: runs COMMAND, records its time and outcome.
step() {
	local name=$1 start=$SECONDS rc=0
	shift
	log "=== $name"
	"$@" || rc=$?
	STEPS+=("$(printf '%-58s %5ds  %s' "$name" $((SECONDS - start)) "$( ((rc == 0)) && echo ok || echo "FAILED (exit $rc)")")")
	((rc == 0)) || FAILED=1
	return "$rc"
}

summary() {
	log "=== summary"
	local s
	for s in "${STEPS[@]}"; do log "  $s"; done
	log "  total: ${SECONDS}s"
}
trap summary EXIT

provision() {
	local exports
	exports=$(scripts/dockerenv.sh up) || return 1
	eval "$exports"
	# The console's browser tests drive Debian's chromium on this machine.
	scripts/testenv.sh chromium || return 1
	printf '%s\n' "$exports" | sed 's/^/test\/docker:   /' >&2
}

# The URLs of loopback services would take precedence over containers: drop them.
unset CMDTRACK_TEST_DATABASE_URL CMDTRACK_TEST_AMQP_URL CMDTRACK_TEST_AMQPS_URL CMDTRACK_TEST_AMQP_CA_FILE CMDTRACK_TEST_IOTDA_AUTH_ADDR

if ! step "provision (engine, plugins, images)" provision; then
	exit 1
fi
step "go test -race ./... (testcontainers-go)" \
	"$GO" test -race -count=1 -timeout 20m ./... || true
step "deploy: Dockerfile image and docker compose (-tags docker)" \
	bash -c "cd deploy && $GO test -tags docker -count=1 -timeout 30m -run '^TestDocker(Image|SimulatorImage|Compose)\$' -v ./..." || true
step "leak check (scripts/dockerenv.sh leaks)" scripts/dockerenv.sh leaks || true
exit "$FAILED"
