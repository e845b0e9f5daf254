#!/usr/bin/env bash
# Installs the pinned code-generation tools into a cache outside the repository
# and prints the directory that holds them. Tools come through the Go module
# proxy; a second run finds them cached and returns at once.
set -euo pipefail

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
# The same version as github.com/planetscale/vtprotobuf in go.mod: the
# generated code calls its runtime.
PROTOC_GEN_GO_VTPROTO_VERSION=v0.6.1-0.20240319094008-0393e58bdf10

cache="${XDG_CACHE_HOME:-$HOME/.cache}/gantry/tools/buf-${BUF_VERSION}_go-${PROTOC_GEN_GO_VERSION}_grpc-${PROTOC_GEN_GO_GRPC_VERSION}_vt-${PROTOC_GEN_GO_VTPROTO_VERSION}"
if [ ! -x "$cache/buf" ] || [ ! -x "$cache/protoc-gen-go" ] || [ ! -x "$cache/protoc-gen-go-grpc" ] || [ ! -x "$cache/protoc-gen-go-vtproto" ]; then
  mkdir -p "$cache"
  GOBIN="$cache" GOFLAGS=-mod=mod go install "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}" >&2
  GOBIN="$cache" GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}" >&2
  GOBIN="$cache" GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}" >&2
  GOBIN="$cache" GOFLAGS=-mod=mod go install "github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@${PROTOC_GEN_GO_VTPROTO_VERSION}" >&2
fi
echo "$cache"
