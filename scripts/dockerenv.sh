#!/usr/bin/env bash
# dockerenv.sh: provision what the container path of cmdtrack's tests needs (`make test/docker`): a Docker engine, the
# Compose v2 and buildx CLI plugins, and the images the tests run: the official ones where they are present or can be
# pulled, local stand-ins built from Debian's packages where they cannot (a registry-less machine).
#
# Usage: scripts/dockerenv.sh COMMAND
#   up       make everything ready (idempotent; a second run reuses what the first built) and print `export ...`
#            lines on stdout, so a Makefile can do: eval "$(scripts/dockerenv.sh up)"
#   env      print the export lines for what is ready already (builds, pulls and starts nothing)
#   images   print the images the tests use, with their sizes
#   leaks    list what tests left behind (containers, networks, volumes, test images), remove it, and exit 1 if
#            there was anything
#   down     stop the private engine (never an engine this script did not start)
#   status   show the engine in use and the images (on stderr)
#
# The engine: the one in DOCKER_HOST if set (it must answer); else the machine's default one if `docker info` answers;
# else a private dockerd that this script starts (installing Debian's docker.io if needed) on its own socket
# (unix:///run/cmdtrack-docker.sock), data root and bridge, publishing container ports on 127.0.0.1 only. The
# machine's default socket stays unanswered, so `make test` elsewhere on the machine keeps taking the loopback path.
#
# Local images are tagged cmdtrack-local/NAME:VERSION-HASH, HASH covering their build inputs (scripts/images/NAME,
# the base image, and for Go the toolchain and go.sum), so a changed input builds a new image and an unchanged one is
# reused. Go programs that are missing (docker-compose, docker-buildx, BuildKit's Dockerfile frontend) are built from
# the Go module proxy into /var/cache/cmdtrack-docker.
#
# Environment:
#   CMDTRACK_DOCKER_IMAGES   auto (default): official images if present or pullable, else local ones;
#                            local: always the local ones; official: only the official ones (fail if unavailable)
#   CMDTRACK_DEBIAN_MIRROR   Debian mirror for the local base image (default http://deb.debian.org/debian)
#   CMDTRACK_DOCKER_CACHE    where built tools are kept (default /var/cache/cmdtrack-docker)
#
# Only the export lines go to stdout; all progress and diagnostics go to stderr. Needs root for the private engine.
set -Eeuo pipefail
# A failure inside $(...) must stop the script too, and say where it happened.
shopt -s inherit_errexit
trap 'echo "dockerenv: ERROR: \"$BASH_COMMAND\" failed (line $LINENO)" >&2' ERR

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
readonly SCRIPT_PATH
REPO_ROOT=$(dirname "$(dirname "$SCRIPT_PATH")")
readonly REPO_ROOT
readonly IMAGES_DIR="$REPO_ROOT/scripts/images"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

readonly ENGINE_SOCK=/run/cmdtrack-docker.sock
readonly ENGINE_DATA_ROOT=/var/lib/cmdtrack-docker
readonly ENGINE_EXEC_ROOT=/run/cmdtrack-docker
readonly ENGINE_PIDFILE="$ENGINE_EXEC_ROOT/dockerd.pid"
readonly ENGINE_CONFIG_DIR=/etc/cmdtrack-docker
readonly ENGINE_CONFIG="$ENGINE_CONFIG_DIR/daemon.json"
readonly ENGINE_LOG=/var/log/cmdtrack-docker.log
readonly ENGINE_BRIDGE=cmdtrack0
readonly ENGINE_BRIDGE_ADDR=10.213.0.1/24
# User-defined networks (testcontainers', Compose's) come from this pool, apart from anything else on the machine.
readonly ENGINE_POOL=10.213.128.0/17
readonly START_TIMEOUT=60

readonly CACHE_DIR="${CMDTRACK_DOCKER_CACHE:-/var/cache/cmdtrack-docker}"
# Scratch directories, one per kind, emptied before each use: whatever an interrupted run left goes then.
readonly WORK_DIR="$CACHE_DIR/work"
readonly IMAGES_MODE="${CMDTRACK_DOCKER_IMAGES:-auto}"
readonly DEBIAN_MIRROR="${CMDTRACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
readonly DEBIAN_SUITE=bookworm
# Debian's archive keys, which debootstrap checks the suite's Release file against (bookworm's package names the file
# .gpg, later ones .pgp). Without a keyring, as on a host that is not Debian, debootstrap only warns and fetches the
# packages unverified: base_image refuses that.
readonly DEBIAN_KEYRINGS=(/usr/share/keyrings/debian-archive-keyring.gpg /usr/share/keyrings/debian-archive-keyring.pgp)
readonly LOCAL_REPO=cmdtrack-local
# Pinned versions of the tools built from the Go module proxy when missing. BuildKit's module gives the Dockerfile
# frontend that `# syntax=docker/dockerfile:1` names (frontend 1.19 is in BuildKit 0.25).
readonly COMPOSE_MODULE=github.com/docker/compose/v2 COMPOSE_VERSION=v2.40.3
readonly BUILDX_MODULE=github.com/docker/buildx BUILDX_VERSION=v0.29.1
readonly BUILDKIT_MODULE=github.com/moby/buildkit BUILDKIT_VERSION=v0.25.1

# The official images the tests and the Dockerfile name by default.
readonly OFFICIAL_POSTGRES=postgres:15-alpine
readonly OFFICIAL_RABBITMQ=rabbitmq:3.13

if [[ "$IMAGES_MODE" != auto && "$IMAGES_MODE" != local && "$IMAGES_MODE" != official ]]; then
	echo "dockerenv: CMDTRACK_DOCKER_IMAGES must be auto, local or official, got '$IMAGES_MODE'" >&2
	exit 2
fi

log() { printf 'dockerenv: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# PROVISION=0 (the env command): only look, never build, pull or start anything.
PROVISION=1
# PRIVATE=1 when the engine is the one this script runs.
PRIVATE=0

APT_UPDATED=0
apt_install() {
	if ((APT_UPDATED == 0)); then
		log "apt-get update"
		apt-get update >&2
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
}

require_root() {
	[[ $EUID -eq 0 ]] || die "must run as root to $1"
}

# The Dockerfile's default for a build argument (ARG NAME=VALUE before the first FROM).
dockerfile_arg() {
	sed -n "s/^ARG $1=//p" "$REPO_ROOT/Dockerfile" | head -n 1
}

# scratch NAME: an empty scratch directory. --one-file-system: debootstrap mounts /proc and /sys in its target, and a
# run interrupted there must never make us delete through them.
scratch() {
	local dir="$WORK_DIR/$1"
	if [[ -d "$dir" ]]; then
		umount -R "$dir/rootfs/proc" "$dir/rootfs/sys" 2>/dev/null || true
		rm -rf --one-file-system "$dir"
	fi
	install -d -m 0700 "$dir"
	echo "$dir"
}

short_hash() {
	sha256sum | cut -c1-12
}

# A hash of a directory's files: names, modes and contents.
dir_hash() {
	tar -C "$1" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -c . | short_hash
}

# ---------------------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------------------

engine_answers() {
	timeout 20 docker info >/dev/null 2>&1
}

ensure_docker_installed() {
	if command -v docker >/dev/null && command -v dockerd >/dev/null && command -v containerd >/dev/null &&
		command -v runc >/dev/null; then
		return 0
	fi
	require_root "install Docker"
	# Debian's postinst would start the packaged service on /var/run/docker.sock: the machine's default engine, which
	# would switch everybody's `make test` to the container path. policy-rc.d (exit 101) keeps it from starting.
	local made_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	local rc=0 start=$SECONDS
	apt_install docker.io iptables iproute2 || rc=$?
	if ((made_policy)); then
		rm -f /usr/sbin/policy-rc.d
	fi
	((rc == 0)) || die "could not install docker.io"
	log "installed docker.io in $((SECONDS - start))s"
}

engine_config() {
	cat <<EOF
{
  "hosts": ["unix://$ENGINE_SOCK"],
  "data-root": "$ENGINE_DATA_ROOT",
  "exec-root": "$ENGINE_EXEC_ROOT",
  "pidfile": "$ENGINE_PIDFILE",
  "bridge": "$ENGINE_BRIDGE",
  "ip": "127.0.0.1",
  "default-address-pools": [{"base": "$ENGINE_POOL", "size": 24}],
  "features": {"buildkit": true},
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}
}
EOF
}

engine_start() {
	require_root "start a Docker engine"
	ensure_docker_installed
	command -v ip >/dev/null || apt_install iproute2
	# Its own bridge, so that it never fights a default engine over docker0.
	if ! ip link show "$ENGINE_BRIDGE" >/dev/null 2>&1; then
		log "creating bridge $ENGINE_BRIDGE ($ENGINE_BRIDGE_ADDR)"
		ip link add "$ENGINE_BRIDGE" type bridge
		ip addr add "$ENGINE_BRIDGE_ADDR" dev "$ENGINE_BRIDGE"
	fi
	ip link set "$ENGINE_BRIDGE" up
	install -d -m 0755 "$ENGINE_CONFIG_DIR" "$ENGINE_DATA_ROOT" "$ENGINE_EXEC_ROOT"
	local want
	want=$(engine_config)
	if [[ ! -f "$ENGINE_CONFIG" || "$(cat "$ENGINE_CONFIG")" != "$want" ]]; then
		printf '%s\n' "$want" >"$ENGINE_CONFIG"
	fi
	# A dockerd of ours that is still starting (or stuck) holds the pidfile; never start a second one.
	if [[ -s "$ENGINE_PIDFILE" ]] && kill -0 "$(cat "$ENGINE_PIDFILE")" 2>/dev/null; then
		log "dockerd $(cat "$ENGINE_PIDFILE") is running but does not answer yet"
	else
		log "starting dockerd on unix://$ENGINE_SOCK (data: $ENGINE_DATA_ROOT, log: $ENGINE_LOG)"
		# setsid and its own log: it must outlive this script and never hold a caller's $(...) open.
		setsid dockerd --config-file "$ENGINE_CONFIG" </dev/null >>"$ENGINE_LOG" 2>&1 &
	fi
	local start=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
	until engine_answers; do
		if ((SECONDS >= deadline)); then
			tail -n 30 "$ENGINE_LOG" >&2 || true
			die "dockerd did not answer within ${START_TIMEOUT}s; see $ENGINE_LOG"
		fi
		sleep 1
	done
	log "dockerd answers after $((SECONDS - start))s"
}

# Chooses the engine and exports DOCKER_HOST for what follows.
engine_up() {
	command -v docker >/dev/null || { ((PROVISION)) && ensure_docker_installed; } || die "no docker CLI"
	if [[ -n "${DOCKER_HOST:-}" ]]; then
		[[ "$DOCKER_HOST" == "unix://$ENGINE_SOCK" ]] && PRIVATE=1
		if ! engine_answers; then
			((PRIVATE && PROVISION)) || die "DOCKER_HOST=$DOCKER_HOST does not answer"
			engine_start
		fi
		return 0
	fi
	if engine_answers; then
		log "using the Docker engine that answers: $(docker context show 2>/dev/null || echo default)"
		return 0
	fi
	export DOCKER_HOST="unix://$ENGINE_SOCK"
	PRIVATE=1
	if engine_answers; then
		return 0
	fi
	((PROVISION)) || die "no Docker engine answers; run: scripts/dockerenv.sh up"
	engine_start
}

engine_down() {
	if [[ ! -s "$ENGINE_PIDFILE" ]] || ! kill -0 "$(cat "$ENGINE_PIDFILE")" 2>/dev/null; then
		log "private engine not running"
		return 0
	fi
	local pid
	pid=$(cat "$ENGINE_PIDFILE")
	log "stopping dockerd $pid"
	kill -TERM "$pid"
	local deadline=$((SECONDS + START_TIMEOUT))
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS < deadline)) || die "dockerd $pid did not stop within ${START_TIMEOUT}s"
		sleep 1
	done
}

# ---------------------------------------------------------------------------------------------------------------
# Tools built from the Go module proxy
# ---------------------------------------------------------------------------------------------------------------

# go_build_module MODULE VERSION PACKAGE OUT [go build flags...]: builds a command of a module at a version, in a
# writable copy of the module (`go install` refuses modules with replace or exclude directives).
go_build_module() {
	local module=$1 version=$2 pkg=$3 out=$4
	shift 4
	[[ -x "$out" ]] && return 0
	command -v go >/dev/null || die "go is needed to build $module"
	log "building $module@$version ./$pkg (from the Go module proxy; a few minutes)"
	local dir src start=$SECONDS
	# Outside any module, so that nothing of the repository's go.mod applies.
	dir=$(cd / && go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -n "$dir" && -d "$dir" ]] || die "go mod download $module@$version gave no directory"
	src="$(scratch "src-$(basename "$out")")/src"
	cp -r "$dir/." "$src"
	chmod -R u+w "$src"
	install -d "$(dirname "$out")"
	(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath "$@" -o "$out.tmp" "./$pkg" >&2) ||
		die "building $module@$version failed"
	rm -rf "$(dirname "$src")"
	mv "$out.tmp" "$out"
	log "built $(basename "$out") in $((SECONDS - start))s"
}

plugin_dir() {
	echo "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
}

ensure_compose() {
	if docker compose version --short >/dev/null 2>&1; then
		return 0
	fi
	((PROVISION)) || die "docker compose (v2) is missing; run: scripts/dockerenv.sh up"
	local bin="$CACHE_DIR/bin/docker-compose-$COMPOSE_VERSION"
	go_build_module "$COMPOSE_MODULE" "$COMPOSE_VERSION" cmd "$bin" \
		-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION"
	install -D -m 0755 "$bin" "$(plugin_dir)/docker-compose"
	docker compose version >&2 || die "docker compose does not run"
}

ensure_buildx() {
	if docker buildx version >/dev/null 2>&1; then
		return 0
	fi
	((PROVISION)) || die "docker buildx is missing; run: scripts/dockerenv.sh up"
	local bin="$CACHE_DIR/bin/docker-buildx-$BUILDX_VERSION"
	go_build_module "$BUILDX_MODULE" "$BUILDX_VERSION" cmd/buildx "$bin" \
		-ldflags "-s -w -X github.com/docker/buildx/version.Version=$BUILDX_VERSION"
	install -D -m 0755 "$bin" "$(plugin_dir)/docker-buildx"
	docker buildx version >&2 || die "docker buildx does not run"
}

# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------

image_present() {
	docker image inspect "$1" >/dev/null 2>&1
}

# available IMAGE: present, or pulled now (auto and official modes). A registry-less machine fails the pull at once.
available() {
	image_present "$1" && return 0
	[[ "$IMAGES_MODE" == local ]] && return 1
	((PROVISION)) || return 1
	local out
	if out=$(timeout 600 docker pull -q "$1" 2>&1); then
		log "pulled $1"
		return 0
	fi
	log "$1 cannot be pulled: $(tail -n 1 <<<"$out")"
	return 1
}

# pick OFFICIAL BUILDER: prints the image to use, the official one or the one BUILDER prints.
pick() {
	local official=$1 builder=$2
	if [[ "$IMAGES_MODE" != local ]] && available "$official"; then
		echo "$official"
		return 0
	fi
	[[ "$IMAGES_MODE" == official ]] && die "$official is not available and CMDTRACK_DOCKER_IMAGES=official"
	"$builder"
}

# local_image TAG: true if TAG exists; with PROVISION=0 a missing one is an error.
local_image() {
	image_present "$1" && return 0
	((PROVISION)) || die "$1 is not built; run: scripts/dockerenv.sh up"
	return 1
}

# Files the base image gets on top of debootstrap's: what Debian's official images set up for apt in containers.
write_base_files() {
	local root=$1
	cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $DEBIAN_SUITE-security main
EOF
	# Packages installed in a build must not try to start their services.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
	echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
	echo 'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
}

# The keyring debootstrap verifies the archive with, installed if missing; no keyring stops the script.
debian_keyring() {
	local k
	for k in "${DEBIAN_KEYRINGS[@]}"; do
		[[ -s "$k" ]] && echo "$k" && return 0
	done
	apt_install debian-archive-keyring || true
	for k in "${DEBIAN_KEYRINGS[@]}"; do
		[[ -s "$k" ]] && echo "$k" && return 0
	done
	die "no Debian archive keyring (${DEBIAN_KEYRINGS[*]}) to verify the base image's packages with; install the" \
		"debian-archive-keyring package (or pull $OFFICIAL_POSTGRES and $OFFICIAL_RABBITMQ instead of building)"
}

# The Debian base: debootstrap (minbase) into a directory, imported as an image.
base_image() {
	local tag
	tag="$LOCAL_REPO/debian:$DEBIAN_SUITE-$({
		echo "debootstrap --variant=minbase $DEBIAN_SUITE $DEBIAN_MIRROR"
		declare -f write_base_files
	} | short_hash)"
	if ! local_image "$tag"; then
		require_root "debootstrap a base image"
		command -v debootstrap >/dev/null || apt_install debootstrap
		# debootstrap checks signatures with gpgv, and fails without it once given a keyring.
		command -v gpgv >/dev/null || apt_install gpgv
		local work root keyring start=$SECONDS
		keyring=$(debian_keyring)
		work=$(scratch base)
		root="$work/rootfs"
		log "debootstrap $DEBIAN_SUITE (minbase) from $DEBIAN_MIRROR into $root, verified with $keyring"
		debootstrap --variant=minbase --keyring="$keyring" "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >&2 ||
			die "debootstrap failed"
		write_base_files "$root"
		log "importing $tag"
		tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
			docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
				--change 'CMD ["bash"]' --message "debootstrap --variant=minbase $DEBIAN_SUITE" - "$tag" >&2 ||
			die "docker import failed"
		scratch base >/dev/null
		log "made $tag in $((SECONDS - start))s"
	fi
	echo "$tag"
}

# build_image NAME VERSION CONTEXT HASH BASE: builds scripts/images/NAME's Dockerfile from CONTEXT on BASE.
build_image() {
	local name=$1 version=$2 context=$3 hash=$4 base=$5
	local tag="$LOCAL_REPO/$name:$version-$hash"
	if ! local_image "$tag"; then
		local start=$SECONDS
		log "building $tag"
		docker build --progress=plain --build-arg BASE_IMAGE="$base" --label cmdtrack.local=true \
			-f "$context/Dockerfile" -t "$tag" "$context" >&2 || die "building $tag failed"
		log "built $tag in $((SECONDS - start))s"
	fi
	echo "$tag"
}

# simple_image NAME VERSION: an image whose build context is scripts/images/NAME as it is.
simple_image() {
	local name=$1 version=$2 base
	base=$(base_image)
	build_image "$name" "$version" "$IMAGES_DIR/$name" "$({
		echo "$base"
		dir_hash "$IMAGES_DIR/$name"
	} | short_hash)" "$base"
}

postgres_image() { simple_image postgres 15; }
rabbitmq_image() { simple_image rabbitmq 3.10; }
runtime_image() { simple_image static nonroot; }

# The Go toolchain of this machine plus the modules go.mod needs, laid out as a module proxy directory.
go_image() {
	local base goversion hash tag
	base=$(base_image)
	goversion=$(go env GOVERSION)
	hash=$({
		echo "$base $goversion"
		dir_hash "$IMAGES_DIR/golang"
		cat "$REPO_ROOT/go.mod" "$REPO_ROOT/go.sum"
	} | short_hash)
	tag="$LOCAL_REPO/golang:${goversion#go}-$hash"
	if ! local_image "$tag"; then
		local ctx start=$SECONDS
		ctx=$(scratch golang)
		log "collecting the modules of go.mod into a module proxy directory"
		# From this machine's module cache where it has them, else from the Go module proxy.
		(cd "$REPO_ROOT" && GOFLAGS=-modcacherw GOMODCACHE="$ctx/modcache" \
			GOPROXY="file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)" go mod download >&2) ||
			die "go mod download failed"
		install -d "$ctx/build"
		cp "$IMAGES_DIR/golang/Dockerfile" "$ctx/build/"
		mv "$ctx/modcache/cache/download" "$ctx/build/goproxy"
		# Hard links where possible: the toolchain is a few hundred megabytes.
		cp -al "$(go env GOROOT)" "$ctx/build/go" 2>/dev/null || cp -a "$(go env GOROOT)" "$ctx/build/go"
		build_image golang "${goversion#go}" "$ctx/build" "$hash" "$base" >/dev/null
		scratch golang >/dev/null
		log "made $tag in $((SECONDS - start))s (modules and build)"
	fi
	echo "$tag"
}

# The Dockerfile frontend the Dockerfile's `# syntax=` line names, built from BuildKit's module and tagged with that
# name, where it cannot be pulled: BuildKit looks for it locally first.
ensure_frontend() {
	local syntax
	syntax=$(sed -n '1s/^# *syntax=//p' "$REPO_ROOT/Dockerfile")
	[[ -z "$syntax" ]] && return 0
	if [[ "$IMAGES_MODE" != local ]] && available "$syntax"; then
		return 0
	fi
	[[ "$IMAGES_MODE" == official ]] && die "$syntax is not available and CMDTRACK_DOCKER_IMAGES=official"
	image_present "$syntax" && return 0
	((PROVISION)) || die "$syntax is missing; run: scripts/dockerenv.sh up"
	local bin="$CACHE_DIR/bin/dockerfile-frontend-$BUILDKIT_VERSION" ctx
	go_build_module "$BUILDKIT_MODULE" "$BUILDKIT_VERSION" frontend/dockerfile/cmd/dockerfile-frontend "$bin" \
		-tags "netgo static_build osusergo" -ldflags "-s -w -X main.Version=buildkit-$BUILDKIT_VERSION"
	ctx=$(scratch frontend)
	cp "$IMAGES_DIR/dockerfile-frontend/Dockerfile" "$ctx/"
	cp "$bin" "$ctx/dockerfile-frontend"
	log "building $syntax (BuildKit $BUILDKIT_VERSION's frontend)"
	docker build --progress=plain --label cmdtrack.local=true -t "$syntax" "$ctx" >&2 || die "building $syntax failed"
	scratch frontend >/dev/null
}

# testcontainers-go's reaper image, as the version in go.mod names it (empty if it cannot be told).
ryuk_image() {
	local dir
	dir=$(cd "$REPO_ROOT" && go mod download -json github.com/testcontainers/testcontainers-go |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
	[[ -n "$dir" ]] || return 0
	grep -rhoE 'testcontainers/ryuk:[0-9.]+' "$dir/internal/config/" 2>/dev/null | head -n 1 || true
}

# ---------------------------------------------------------------------------------------------------------------

# The images, chosen and (with PROVISION=1) made ready, as NAME=IMAGE lines.
resolve_images() {
	local pg rmq goimg runtime
	ensure_frontend
	pg=$(pick "$OFFICIAL_POSTGRES" postgres_image)
	rmq=$(pick "$OFFICIAL_RABBITMQ" rabbitmq_image)
	goimg=$(pick "$(dockerfile_arg GO_IMAGE)" go_image)
	runtime=$(pick "$(dockerfile_arg RUNTIME_IMAGE)" runtime_image)
	printf '%s\n' "CMDTRACK_TEST_POSTGRES_IMAGE=$pg" "CMDTRACK_TEST_RABBITMQ_IMAGE=$rmq" \
		"CMDTRACK_TEST_GO_IMAGE=$goimg" "CMDTRACK_TEST_RUNTIME_IMAGE=$runtime"
}

print_env() {
	local images=$1 ryuk
	if ((PRIVATE)); then
		printf "export DOCKER_HOST='%s'\n" "$DOCKER_HOST"
		# Ports are published on 127.0.0.1, and testcontainers-go would otherwise take the bridge's gateway for the
		# host wherever /.dockerenv exists (as on machines made from a container image).
		printf "export TESTCONTAINERS_HOST_OVERRIDE='127.0.0.1'\n"
	fi
	ryuk=$(ryuk_image)
	if [[ -n "$ryuk" ]] && ! available "$ryuk"; then
		# testenv.Main removes the containers instead; `dockerenv.sh leaks` checks that it did.
		log "no $ryuk: testcontainers' reaper is off"
		printf "export TESTCONTAINERS_RYUK_DISABLED='true'\n"
	fi
	local line
	while IFS= read -r line; do
		printf "export %s='%s'\n" "${line%%=*}" "${line#*=}"
	done <<<"$images"
}

# ---------------------------------------------------------------------------------------------------------------
# Leaks: what tests leave behind. On the private engine nothing but the tests runs, so any container, volume or
# network of its own is a leak; on a shared engine only what carries the tests' labels.
# ---------------------------------------------------------------------------------------------------------------

readonly TEST_LABELS=(org.testcontainers=true cmdtrack.test=true)
readonly TEST_COMPOSE_PREFIX=cmdtrack-test-

leaks() {
	local containers networks volumes images filters=() l
	for l in "${TEST_LABELS[@]}"; do filters+=("$l"); done
	containers=$(
		if ((PRIVATE)); then docker ps -aq; fi
		for l in "${filters[@]}"; do docker ps -aq --filter "label=$l"; done
		docker ps -a --filter label=com.docker.compose.project --format '{{.ID}} {{.Label "com.docker.compose.project"}}' |
			awk -v p="$TEST_COMPOSE_PREFIX" 'index($2, p) == 1 { print $1 }'
	)
	networks=$(
		if ((PRIVATE)); then docker network ls --format '{{.Name}}' | grep -vxE 'bridge|host|none' || true; fi
		for l in "${filters[@]}"; do docker network ls --format '{{.Name}}' --filter "label=$l"; done
		docker network ls --filter label=com.docker.compose.project --format '{{.Name}} {{.Label "com.docker.compose.project"}}' |
			awk -v p="$TEST_COMPOSE_PREFIX" 'index($2, p) == 1 { print $1 }'
	)
	volumes=$(
		if ((PRIVATE)); then docker volume ls -q; fi
		for l in "${filters[@]}"; do docker volume ls -q --filter "label=$l"; done
		docker volume ls --filter label=com.docker.compose.project --format '{{.Name}} {{.Label "com.docker.compose.project"}}' |
			awk -v p="$TEST_COMPOSE_PREFIX" 'index($2, p) == 1 { print $1 }'
	)
	# Images the tests build are named cmdtrack-test/...
	images=$(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep '^cmdtrack-test/' || true)
	containers=$(sort -u <<<"$containers" | sed '/^$/d')
	networks=$(sort -u <<<"$networks" | sed '/^$/d')
	volumes=$(sort -u <<<"$volumes" | sed '/^$/d')
	if [[ -z "$containers$networks$volumes$images" ]]; then
		log "no leftovers: no test container, network, volume or image"
		return 0
	fi
	log "ERROR: tests left these behind (removing them now):"
	local x
	for x in $containers; do
		log "  container $(docker ps -a --filter "id=$x" --format '{{.ID}} {{.Image}} {{.Names}} {{.Status}}' || echo "$x")"
	done
	for x in $networks; do log "  network $x"; done
	for x in $volumes; do log "  volume $x"; done
	for x in $images; do log "  image $x"; done
	for x in $containers; do docker rm -f -v "$x" >/dev/null || true; done
	for x in $networks; do docker network rm "$x" >/dev/null || true; done
	for x in $volumes; do docker volume rm -f "$x" >/dev/null || true; done
	for x in $images; do docker image rm -f "$x" >/dev/null || true; done
	return 1
}

# ---------------------------------------------------------------------------------------------------------------

images_table() {
	local images=$1 line img
	while IFS= read -r line; do
		img=${line#*=}
		printf '%-30s %-60s %s\n' "${line%%=*}" "$img" "$(docker image inspect --format '{{.Size}}' "$img" |
			awk '{ printf "%.1f MB", $1 / 1e6 }')"
	done <<<"$images"
}

usage() {
	# The opening comment, up to the line before the first `set -`.
	sed -n '2,/^set -/p' "$SCRIPT_PATH" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

main() {
	local cmd="${1:-}" images
	case "$cmd" in
	help | -h | --help)
		usage
		return 0
		;;
	'')
		usage
		return 2
		;;
	up)
		engine_up
		ensure_buildx
		ensure_compose
		images=$(resolve_images)
		print_env "$images"
		;;
	env)
		PROVISION=0
		engine_up
		ensure_buildx
		ensure_compose
		images=$(resolve_images)
		print_env "$images"
		;;
	images)
		PROVISION=0
		engine_up
		images_table "$(resolve_images)"
		;;
	leaks)
		PROVISION=0
		engine_up
		leaks || exit 1
		;;
	down) engine_down ;;
	status)
		PROVISION=0
		engine_up
		log "engine: ${DOCKER_HOST:-default} ($(docker version --format '{{.Server.Version}}'))"
		images_table "$(resolve_images)" >&2
		;;
	*)
		log "unknown command: $cmd"
		usage
		return 2
		;;
	esac
}

main "$@"
