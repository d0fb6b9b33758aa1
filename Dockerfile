# syntax=docker/dockerfile:1
#
# cmdtrack container image: a static binary on a distroless base, running as
# the unprivileged user 65532. The same image carries the IoTDA simulator
# (/iotda-sim) used by docker-compose.yml as a load generator.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t cmdtrack .
#   docker build --target iotda-sim -t iotda-sim .     # simulator only
#
# Base images are build arguments so that a mirror or a pinned digest can be
# used without editing this file, e.g.
#   --build-arg GO_IMAGE=registry.example/golang:1.26-bookworm@sha256:...
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# ---- build ------------------------------------------------------------------
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# go.mod may name a newer patch release than the base image ships.
ENV GOTOOLCHAIN=auto GOFLAGS=-buildvcs=false
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X main.Version=${VERSION}" \
      -o /out/ ./cmd/cmdtrack ./cmd/iotda-sim

# ---- simulator only (docker build --target iotda-sim) -----------------------
FROM ${RUNTIME_IMAGE} AS iotda-sim
COPY --from=build /out/iotda-sim /iotda-sim
USER 65532:65532
ENTRYPOINT ["/iotda-sim"]

# ---- cmdtrack (default target: keep it last) --------------------------------
FROM ${RUNTIME_IMAGE} AS cmdtrack
ARG VERSION=dev
LABEL org.opencontainers.image.title="cmdtrack" \
      org.opencontainers.image.description="Stores Huawei IoTDA command-status notifications in PostgreSQL" \
      org.opencontainers.image.source="https://github.com/cmdtrack/cmdtrack" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/cmdtrack /cmdtrack
COPY --from=build /out/iotda-sim /iotda-sim
# Inside a container a loopback-only ops listener would be unreachable for
# probes and Prometheus.
ENV CMDTRACK_OPS_ADDR=:9464
EXPOSE 9464
USER 65532:65532
ENTRYPOINT ["/cmdtrack"]
