# Gantry: `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN ?= bin/gantry
TEST_FLAGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build: ## build the gantry binary into bin/ (gantry version says $(VERSION))
	$(GO) build -ldflags "-X github.com/gantryci/gantry/internal/version.Version=$(VERSION)" -o $(BIN) ./cmd/gantry

run: build ## run gantry dev (single node, embedded NATS, local agent)
	$(BIN) dev

UNIT_PKGS = $$($(GO) list ./... | grep -v '/test/')

test: ## every test: unit, 3-node cluster, process end-to-end (with -race)
	$(GO) test -race $(TEST_FLAGS) -timeout 20m $(UNIT_PKGS)
	@# One integration package at a time: they start many servers on loopback ports.
	$(GO) test -race -p 1 -count=1 $(TEST_FLAGS) -timeout 30m ./test/...

test-short: ## fast tests only (-short skips cluster and process tests)
	$(GO) test -short ./...

test-race: test ## the same as test (the race detector is always on)

test-norace: ## every test, without the race detector (faster)
	$(GO) test $(TEST_FLAGS) -timeout 20m $(UNIT_PKGS)
	$(GO) test -p 1 -count=1 $(TEST_FLAGS) -timeout 30m ./test/...

test-e2e: ## integration and end-to-end tests only (test/)
	$(GO) test -race -p 1 -count=1 $(TEST_FLAGS) -timeout 30m ./test/...

bench: ## benchmarks: Raft stores and batching, GitOps controller at scale, scheduling over a deep queue, memory and snapshot of retained jobs, drift detection (with scripts/testenv.sh up kube); prints figures
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./coordinator/consensus/
	$(GO) test -run '^$$' -bench ReconcilePass -benchtime 20x ./coordinator/gitops/
	$(GO) test -run '^$$' -bench SchedulePass -benchtime 20x ./coordinator/dispatch/
	$(GO) test -run '^$$' -bench RetainedJobs -benchtime 1x ./coordinator/fsm/
	$(GO) test -run '^$$' -bench GitOpsDrift -benchtime 10x ./test/e2e/

SEEDS ?= 10
FAULTS ?= 12
CHAOS_LOG ?= chaos.log
chaos: ## randomized, seed-reproducible fault schedules on a 3-node cluster: make chaos SEEDS=100 (full log in chaos.log)
	set -o pipefail; $(GO) test -count=1 -timeout 0 -v -run 'TestChaos' ./test/cluster/ -chaos.seeds=$(SEEDS) -chaos.faults=$(FAULTS) 2>&1 \
	  | tee $(CHAOS_LOG) | grep -E '^(--- |\s+--- FAIL|\s+chaos_test|ok|FAIL|PASS|panic:)' \
	  || { echo "full log: $(CHAOS_LOG)"; exit 1; }

lint: ## go vet, gofmt and buf lint
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt needed"; exit 1)
	PATH="$$(scripts/tools.sh):$$PATH" buf lint

proto: ## regenerate the Go code of proto/ with the pinned buf and plugins
	PATH="$$(scripts/tools.sh):$$PATH" buf generate

verify: proto ## regenerate, then fail if anything generated differs from what is committed
	$(GO) mod tidy
	@git diff --exit-code -- proto go.mod go.sum || (echo "generated files or go.mod are stale: run make proto / go mod tidy and commit"; exit 1)

breaking: ## buf breaking: proto/ (API and Raft log) against the main this work started from (scripts/breaking-base.sh)
	@base=$$(scripts/breaking-base.sh) && echo "buf breaking against $$base" && \
	  PATH="$$(scripts/tools.sh):$$PATH" buf breaking --against ".git#ref=$$base,subdir=." 

.PHONY: help build run test test-short test-race test-norace test-e2e bench chaos lint proto verify breaking
