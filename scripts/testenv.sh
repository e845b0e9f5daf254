#!/usr/bin/env bash
# Starts and stops the real services the integration tests use, on loopback.
#
#   eval "$(scripts/testenv.sh up buildkit registry)"   # prints export lines
#   scripts/testenv.sh down                             # stops what up started
#   scripts/testenv.sh status
#
# Services (one case each in start_service; add a case to add a service):
#   buildkit  buildkitd (OCI worker, runc, overlayfs, host network) built from
#             the pinned BuildKit release and cached outside the repository;
#             exports BUILDKIT_HOST=unix://...   Needs root.
#   registry  an in-memory OCI registry (go-containerregistry's pkg/registry,
#             scripts/registry); exports GANTRY_TEST_REGISTRY=127.0.0.1:PORT
#
# State (pid files, logs, sockets) lives in $GANTRY_TESTENV_DIR, default
# ${XDG_RUNTIME_DIR:-/tmp}/gantry-testenv. Builds are cached in
# ${XDG_CACHE_HOME:-$HOME/.cache}/gantry/, keyed by version. Progress goes to
# stderr; only the export lines go to stdout.
set -euo pipefail

BUILDKIT_VERSION=v0.34.2

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${GANTRY_TESTENV_DIR:-${XDG_RUNTIME_DIR:-/tmp}/gantry-testenv}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gantry"

say() { echo "testenv: $*" >&2; }
die() { say "$*"; exit 1; }

# need_pkgs installs the Debian packages that provide the named commands,
# running apt-get update at most once.
apt_updated=
need_pkgs() { # pairs: command package
  local missing=()
  while [ $# -gt 1 ]; do
    command -v "$1" >/dev/null 2>&1 || [ -e "$1" ] || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    $sudo apt-get update -qq >&2
    apt_updated=1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

# running NAME: the service's pid file names a live process.
running() {
  local pid
  [ -f "$state/$1.pid" ] || return 1
  pid="$(cat "$state/$1.pid")"
  kill -0 "$pid" 2>/dev/null
}

# wait_for SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

build_buildkit() {
  local dir="$cache/buildkit-$BUILDKIT_VERSION"
  if [ ! -x "$dir/buildkitd" ] || [ ! -x "$dir/buildctl" ]; then
    say "building buildkitd and buildctl $BUILDKIT_VERSION (a few minutes, once)"
    mkdir -p "$dir"
    (cd "$repo" && GOFLAGS=-mod=mod go mod download "github.com/moby/buildkit@$BUILDKIT_VERSION") >&2
    local src
    src="$(go env GOMODCACHE)/github.com/moby/buildkit@$BUILDKIT_VERSION"
    GOFLAGS=-mod=mod go build -C "$src" -trimpath \
      -ldflags "-X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" \
      -o "$dir/" ./cmd/buildkitd ./cmd/buildctl >&2
  fi
  echo "$dir"
}

start_buildkit() {
  [ "$(id -u)" -eq 0 ] || die "buildkit: buildkitd needs root (rootless mode is not set up here)"
  need_pkgs runc runc git git /bin/busybox busybox-static
  local bin sock
  bin="$(build_buildkit)"
  sock="$state/buildkit/buildkitd.sock"
  if ! running buildkit; then
    mkdir -p "$state/buildkit/root"
    rm -f "$sock"
    say "starting buildkitd"
    setsid "$bin/buildkitd" --root "$state/buildkit/root" --addr "unix://$sock" \
      --oci-worker=true --containerd-worker=false \
      --oci-worker-snapshotter=overlayfs --oci-worker-net=host \
      >"$state/buildkit.log" 2>&1 </dev/null &
    echo $! >"$state/buildkit.pid"
    wait_for 30 "$bin/buildctl" --addr "unix://$sock" debug workers ||
      die "buildkitd did not start; see $state/buildkit.log"
  fi
  echo "export BUILDKIT_HOST=unix://$sock"
  echo "export GANTRY_BUILDCTL=$bin/buildctl"
}

start_registry() {
  local bin="$cache/registry/registry"
  if ! running registry; then
    mkdir -p "$(dirname "$bin")"
    (cd "$repo" && go build -o "$bin" ./scripts/registry) >&2
    rm -f "$state/registry.addr"
    say "starting registry"
    setsid "$bin" --addr 127.0.0.1:0 --addr-file "$state/registry.addr" \
      >"$state/registry.log" 2>&1 </dev/null &
    echo $! >"$state/registry.pid"
    wait_for 30 test -s "$state/registry.addr" || die "registry did not start; see $state/registry.log"
  fi
  echo "export GANTRY_TEST_REGISTRY=$(cat "$state/registry.addr")"
}

start_service() {
  case "$1" in
  buildkit) start_buildkit ;;
  registry) start_registry ;;
  *) die "unknown service $1 (known: buildkit registry)" ;;
  esac
}

stop_service() { # NAME: stops the process of its pid file, if alive.
  local name="$1" pid
  [ -f "$state/$name.pid" ] || return 0
  pid="$(cat "$state/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name ($pid)"
    kill -TERM "$pid"
    if ! wait_for 15 sh -c "! kill -0 $pid"; then
      say "$name did not stop; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$state/$name.pid"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
up)
  [ $# -gt 0 ] || set -- buildkit registry
  mkdir -p "$state"
  for s in "$@"; do start_service "$s"; done
  ;;
down)
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    stop_service "$(basename "$f" .pid)"
  done
  # buildkitd's root holds overlay mounts only while it runs; keep the
  # directory (its cache makes the next run fast) unless asked.
  [ "${GANTRY_TESTENV_CLEAN:-}" = 1 ] && rm -rf "$state"
  true
  ;;
status)
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    n="$(basename "$f" .pid)"
    if running "$n"; then echo "$n running (pid $(cat "$f"))"; else echo "$n not running"; fi
  done
  ;;
*)
  echo "usage: $0 up [buildkit] [registry] | down | status" >&2
  exit 2
  ;;
esac
