# cmdtrack: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

GO      ?= go
BIN     ?= bin
TOOLS   := $(CURDIR)/bin/tools
TESTENV := scripts/testenv.sh
DOCKERENV := scripts/dockerenv.sh
GOLANGCI_LINT_VERSION := v2.15.0
PROMETHEUS_VERSION := v0.316.0
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.Version=$(VERSION)

# Integration tests need PostgreSQL and an AMQP 1.0 broker; they never skip.
# TEST_SERVICES says where the parallel tests get them:
#   auto (default)  containers (testcontainers-go) where a Docker engine answers
#                   `docker info`, else loopback; CMDTRACK_TEST_DATABASE_URL and
#                   CMDTRACK_TEST_AMQP_URL, if set, win over both
#   loopback        scripts/testenv.sh's services on 127.0.0.1 (installed if missing)
#   containers      testcontainers-go on the engine, plugins and images
#                   scripts/dockerenv.sh provides (started and built if missing)
TEST_SERVICES ?= auto
# make test/stress runs each service-free test this many times.
STRESS_COUNT ?= 20
define with_services
	$(TESTENV) chromium; \
	case "$(TEST_SERVICES)" in \
	auto) if [ -z "$${CMDTRACK_TEST_DATABASE_URL:-}" ] && ! docker info >/dev/null 2>&1; then \
		eval "$$($(TESTENV) up)"; fi ;; \
	loopback) eval "$$($(TESTENV) up)" ;; \
	containers) unset CMDTRACK_TEST_DATABASE_URL CMDTRACK_TEST_AMQP_URL; eval "$$($(DOCKERENV) up)" ;; \
	*) echo "TEST_SERVICES must be auto, loopback or containers, not '$(TEST_SERVICES)'" >&2; exit 2 ;; \
	esac; \
	$(1)
endef

.PHONY: help
help: ## list targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z\/_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build cmdtrack into ./bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

.PHONY: run
run: build ## run the worker against local PostgreSQL and RabbitMQ (provisioned on loopback)
	@eval "$$($(TESTENV) up)"; \
	export CMDTRACK_DATABASE_URL="$${CMDTRACK_DATABASE_URL:-$$CMDTRACK_TEST_DATABASE_URL}" \
	       CMDTRACK_AMQP_URL="$${CMDTRACK_AMQP_URL:-$$CMDTRACK_TEST_AMQP_URL}" \
	       CMDTRACK_AMQP_QUEUE="$${CMDTRACK_AMQP_QUEUE:-/queue/cmdtrack}" \
	       CMDTRACK_LOG_FORMAT="$${CMDTRACK_LOG_FORMAT:-text}"; \
	exec $(BIN)/cmdtrack

.PHONY: test
test: test/rules ## the alerting rules; every test with the race detector; then the service-restart tests (serial); then 20s of fuzzing
	@$(call with_services,$(GO) test -race -count=1 -timeout 20m ./...)
	cd deploy && $(GO) test -count=1 -timeout 5m ./...
	@# Restarting the shared services would disturb the parallel tests above,
	@# so these run alone. They drive scripts/testenv.sh's services, and
	@# TestRestartFailover* its highly available PostgreSQL (ha-up).
	@eval "$$($(TESTENV) up)"; eval "$$($(TESTENV) ha-up)"; $(GO) test -race -count=1 -timeout 10m -tags restart -run 'TestRestart' ./cmd/cmdtrack/
	$(GO) test ./notification -run '^$$' -fuzz FuzzDecode -fuzztime 20s

.PHONY: test/rules
test/rules: $(TOOLS)/promtool ## check deploy/prometheus's alerting rules and run their unit tests with promtool
	$(TOOLS)/promtool check rules deploy/prometheus/cmdtrack.rules.yml
	cd deploy/prometheus && $(TOOLS)/promtool test rules cmdtrack.rules.test.yml

.PHONY: test/docker
test/docker: ## the container path for real: the suite on testcontainers-go, the Dockerfile's image, docker compose; no leaks
	@GO=$(GO) scripts/test-docker.sh

.PHONY: test/unit
test/unit: ## the tests that need no service (pipeline, decoder, store logic, config, deploy files): seconds
	$(GO) test -short -count=1 -timeout 2m ./...
	cd deploy && $(GO) test -short -count=1 -timeout 2m ./...

.PHONY: test/stress
test/stress: ## make test/unit's tests with -race -count=$(STRESS_COUNT) while CPU hogs keep every core busy: a test that flakes under load fails here
	@scripts/stress.sh $(GO) $(STRESS_COUNT)

.PHONY: test/short
test/short: ## run the tests without the race detector (faster)
	@$(call with_services,$(GO) test -count=1 -timeout 20m ./...)

.PHONY: docs/screenshots
docs/screenshots: ## the console's screenshots in docs/screenshots, made by its browser tests
	@$(call with_services,CMDTRACK_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run 'TestBrowser(Walk|HostileStream)' ./console/)

.PHONY: bench
bench: ## drain limit vs naive peer vs cmdtrack on a 200k backlog, plus latency (BENCH_MESSAGES=20000 for a quick run)
	@scripts/bench.sh

.PHONY: bench/compare
bench/compare: ## the working tree's throughput against REF's, ROUNDS runs each taking turns (REF=c8a16b3 ROUNDS=6)
	@scripts/bench-compare.sh "$(REF)" $(or $(ROUNDS),6)

.PHONY: bench/memory
bench/memory: ## peak RSS and bytes held with a backlog of large messages while the database is down
	@eval "$$($(TESTENV) up)"; set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	$(GO) build -o $$dir/cmdtrack ./cmd/cmdtrack; $(GO) build -o $$dir/memory ./bench/memory; \
	{ $$dir/memory -cmdtrack $$dir/cmdtrack -messages 1000 -size 262144; \
	  $$dir/memory -cmdtrack $$dir/cmdtrack -messages 300 -size 1000000; } | tee bench/results/memory.txt

.PHONY: bench/scale
bench/scale: ## the schema at fleet size: 10M commands, 40M history rows, 10M device messages (BENCH_SCALE_COMMANDS, BENCH_SCALE_MESSAGES to change; ~45 GB of disk)
	@eval "$$($(TESTENV) up)"; $(GO) run ./bench/scale -commands $${BENCH_SCALE_COMMANDS:-10000000} -messages $${BENCH_SCALE_MESSAGES:-10000000} -out bench/results/scale.txt

.PHONY: bench/upgrade
bench/upgrade: ## each migration after version 23 timed on fleet-sized tables (BENCH_UPGRADE_ROWS commands, messages and history rows of each; 10M, ~25 GB)
	@eval "$$($(TESTENV) up)"; $(GO) run ./bench/scale -upgrade $${BENCH_UPGRADE_ROWS:-10000000} -out bench/results/upgrade.txt

.PHONY: bench/go
bench/go: ## Go benchmarks: decoder and upsert path (needs the services, like make test)
	@$(call with_services,$(GO) test -run '^$$' -bench . -benchmem ./notification/ ./ingest/ ./consumer/ ./store/)

# The decoder's fuzz targets: DecodeAt (checked against encoding/json on
# every input, see notification/export_test.go), the fast path against
# encoding/json, Key against its first version, the time parser against
# time.Parse, canonical, and the device status and device message decoders.
FUZZ_TARGETS := FuzzDecode FuzzFastMatchesStd FuzzKeyMatchesV0 FuzzParseStamp FuzzCanonical FuzzPresence FuzzMessage

.PHONY: fuzz
fuzz: ## fuzz the decoder's targets, one after the other (FUZZTIME=1m each by default)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $$t"; \
		$(GO) test ./notification -run '^$$' -fuzz "^$$t\$$" -fuzztime $${FUZZTIME:-1m}; \
	done

.PHONY: lint
lint: $(TOOLS)/golangci-lint ## golangci-lint (.golangci.yml: vet, staticcheck, revive, ...) and gofmt, on both modules
	$(TOOLS)/golangci-lint run ./...
	cd deploy && $(TOOLS)/golangci-lint run --config ../.golangci.yml ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# golangci-lint comes from the Go module proxy, at a pinned version, into
# bin/tools (built once; about a minute).
$(TOOLS)/golangci-lint:
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

# promtool checks and unit-tests deploy/prometheus's alerting rules. It comes
# from the Go module proxy at a pinned version (Prometheus v3's module tag),
# into bin/tools, built once (about eight minutes: it is most of Prometheus).
$(TOOLS)/promtool:
	GOBIN=$(TOOLS) $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)

.PHONY: services
services: ## provision and start local PostgreSQL and RabbitMQ; prints their URLs
	@$(TESTENV) up

.PHONY: services/down
services/down: ## stop the local services
	@$(TESTENV) down

.PHONY: docker/down
docker/down: ## stop the private Docker engine that make test/docker started (its images stay cached)
	@$(DOCKERENV) down

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
