#!/usr/bin/env bash
# Starts and stops the real services the integration tests use, on loopback.
#
#   eval "$(scripts/testenv.sh up buildkit registry)"   # prints export lines
#   eval "$(scripts/testenv.sh up buildkit registry kube)"
#   scripts/testenv.sh down                             # stops what up started
#   scripts/testenv.sh status
#
# Services (one case each in start_service; add a case to add a service):
#   buildkit  buildkitd (OCI worker, runc, overlayfs, host network) built from
#             the pinned BuildKit release and cached outside the repository;
#             exports BUILDKIT_HOST=unix://...   Needs root.
#   registry  an in-memory OCI registry (go-containerregistry's pkg/registry,
#             scripts/registry); exports GANTRY_TEST_REGISTRY=127.0.0.1:PORT
#   kube      a Kubernetes control plane: etcd, kube-apiserver,
#             kube-controller-manager, kube-scheduler and kwok (two fake
#             nodes; pods become Ready without containers), built by the tools
#             module scripts/kubetools and cached outside the repository
#             (10-15 minutes cold). An empty cluster on every start; up returns
#             once a Deployment has become Available. Exports KUBECONFIG and
#             GANTRY_TEST_KUBECONFIG (token auth). Not in a bare `up`.
#   gitea     a Gitea forge (built from its Go module and cached outside the
#             repository, 10-15 minutes cold) on SQLite at 127.0.0.1, fresh on
#             every start, with an admin user and an API token. Exports
#             GANTRY_TEST_GITEA_URL, GANTRY_TEST_GITEA_USER and
#             GANTRY_TEST_GITEA_TOKEN. Not in a bare `up`.
#   helm      not a service: the helm command, built by the tools module
#             scripts/helmtool and cached outside the repository (about 8
#             minutes cold). Exports HELM (its path). Not in a bare `up`.
#
# State (pid files, logs, sockets) lives in $GANTRY_TESTENV_DIR, default
# ${XDG_RUNTIME_DIR:-/tmp}/gantry-testenv. Builds are cached in
# ${XDG_CACHE_HOME:-$HOME/.cache}/gantry/, keyed by version. Progress goes to
# stderr; only the export lines go to stdout.
set -euo pipefail

BUILDKIT_VERSION=v0.34.2
# kube: the versions are pinned by scripts/kubetools/go.mod; KUBE_VERSION
# names the cache and is stamped into the binaries.
KUBE_VERSION=v1.37.2
GITEA_VERSION=v1.27.3
# helm: pinned by scripts/helmtool/go.mod (build_helm checks they agree);
# HELM_VERSION names the cache and is stamped into the binary.
HELM_VERSION=v3.22.0
KUBE_PARTS=(kube-etcd kube-apiserver kube-controller-manager kube-scheduler kube-kwok)

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

# --- kube -------------------------------------------------------------------

# build_kube prints the directory holding kube-apiserver,
# kube-controller-manager, kube-scheduler, server (etcd) and kwok, building
# them first if any is missing. The build goes to a temporary directory that is
# renamed into place, so an interrupted build never counts as cached.
build_kube() {
  local dir="$cache/kube-$KUBE_VERSION/bin" b missing=
  for b in kube-apiserver kube-controller-manager kube-scheduler server kwok; do
    [ -x "$dir/$b" ] || missing=1
  done
  if [ -n "$missing" ]; then
    say "building kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok (10-15 minutes cold on 2 cores, once)"
    mkdir -p "$(dirname "$dir")"
    local tmp major minor v
    major="${KUBE_VERSION#v}"
    major="${major%%.*}"
    minor="${KUBE_VERSION#v*.}"
    minor="${minor%%.*}"
    v="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    v+=" -X k8s.io/component-base/version.gitMajor=$major"
    v+=" -X k8s.io/component-base/version.gitMinor=$minor"
    v+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
    v+=" -X k8s.io/client-go/pkg/version.gitMajor=$major"
    v+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    tmp="$(mktemp -d "$(dirname "$dir")/bin.tmp.XXXXXX")"
    chmod 755 "$tmp"
    if ! GOFLAGS=-mod=readonly GOWORK=off go build -C "$repo/scripts/kubetools" -trimpath \
      -ldflags "$v" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      go.etcd.io/etcd/server/v3 \
      sigs.k8s.io/kwok/cmd/kwok >&2; then
      rm -rf "$tmp"
      die "kube: build failed"
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  echo "$dir"
}

# free_port sets free_port_result to a loopback port nothing listens on, below
# the ephemeral range and not handed out before by this run.
used_ports=" "
free_port() {
  local p i
  for i in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    case "$used_ports" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      free_port_result="$p"
      return
    fi
  done
  die "kube: found no free port"
}

# kcurl METHOD PATH [JSON]: a request to the test apiserver as the admin.
kcurl() {
  local args=(-fsSk --max-time 10 -X "$1" -H "Authorization: Bearer $kube_token"
    -H "Content-Type: application/json" -H "Accept: application/json")
  [ $# -lt 3 ] || args+=(--data "$3")
  curl "${args[@]}" "https://127.0.0.1:$kube_port$2"
}

kube_fail() { # PART MESSAGE: shows PART's log, stops the control plane, exits.
  say "kube: $2; last lines of $state/$1.log:"
  tail -n 25 "$state/$1.log" >&2 || true
  stop_kube
  die "kube did not start (logs: $state/kube-*.log)"
}

# kube_wait SECONDS PART MESSAGE CMD...: polls CMD until it succeeds; fails
# with PART's log when the deadline passes, or with the log of a started part
# that has exited.
kube_wait() {
  local deadline=$((SECONDS + $1)) part="$2" msg="$3" p
  shift 3
  until "$@" >/dev/null 2>&1; do
    for p in "${KUBE_PARTS[@]}"; do
      [ ! -f "$state/$p.pid" ] || running "$p" || kube_fail "$p" "$p exited"
    done
    [ $SECONDS -lt $deadline ] || kube_fail "$part" "$msg (after $1 s)"
    sleep 0.1
  done
}

kube_start() { # PART ARGS...: starts a detached process with a pid file and log.
  local part="$1"
  shift
  setsid "$@" >"$state/$part.log" 2>&1 </dev/null &
  echo $! >"$state/$part.pid"
}

kube_ready() { kcurl GET /readyz >/dev/null; }

kube_nodes_ready() {
  [ "$(kcurl GET '/api/v1/nodes?labelSelector=type%3Dkwok' |
    jq '[.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length')" = 2 ]
}

kube_probe_available() {
  [ "$(kcurl GET /apis/apps/v1/namespaces/default/deployments/gantry-testenv-probe |
    jq -r '"\(.status.availableReplicas // 0) \([.status.conditions[]? | select(.type == "Available") | .status] | join(""))"')" = "1 True" ]
}

kube_probe_gone() {
  local code
  code="$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $kube_token" \
    "https://127.0.0.1:$kube_port/apis/apps/v1/namespaces/default/deployments/gantry-testenv-probe")"
  [ "$code" = 404 ] || return 1
  [ "$(kcurl GET '/api/v1/namespaces/default/pods?labelSelector=app%3Dgantry-testenv-probe' | jq '.items | length')" = 0 ]
}

# kube_all_running: every part runs and the apiserver is ready; loads
# kube_port and kube_token.
kube_all_running() {
  local p
  for p in "${KUBE_PARTS[@]}"; do running "$p" || return 1; done
  [ -f "$state/kube/env" ] || return 1
  # shellcheck disable=SC1091
  . "$state/kube/env"
  kube_ready >/dev/null 2>&1
}

stop_kube() { # the apiserver's clients, then the apiserver, then etcd
  stop_service kube-kwok kube-scheduler kube-controller-manager
  stop_service kube-apiserver
  stop_service kube-etcd
}

start_kube() {
  need_pkgs curl curl openssl openssl jq jq
  local dir="$state/kube" bin
  bin="$(build_kube)"
  if ! kube_all_running; then
    stop_kube
    rm -rf "$dir"
    mkdir -p "$dir"
    local etcd_port peer_port
    free_port && etcd_port="$free_port_result"
    free_port && peer_port="$free_port_result"
    free_port && kube_port="$free_port_result"
    kube_token="$(openssl rand -hex 24)"
    openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    (
      umask 077
      echo "$kube_token,gantry-admin,gantry-admin,system:masters" >"$dir/tokens.csv"
      printf 'kube_port=%s\nkube_token=%s\n' "$kube_port" "$kube_token" >"$dir/env"
      cat >"$dir/kubeconfig" <<KUBECONFIG_END
apiVersion: v1
kind: Config
clusters:
- name: gantry-test
  cluster:
    server: https://127.0.0.1:$kube_port
    insecure-skip-tls-verify: true
users:
- name: gantry-admin
  user:
    token: $kube_token
contexts:
- name: gantry-test
  context:
    cluster: gantry-test
    user: gantry-admin
    namespace: default
current-context: gantry-test
KUBECONFIG_END
    )

    say "starting etcd (127.0.0.1:$etcd_port)"
    kube_start kube-etcd "$bin/server" --name gantry-test --data-dir "$dir/etcd" \
      --listen-client-urls "http://127.0.0.1:$etcd_port" \
      --advertise-client-urls "http://127.0.0.1:$etcd_port" \
      --listen-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-cluster "gantry-test=http://127.0.0.1:$peer_port" \
      --unsafe-no-fsync --log-level warn
    kube_wait 30 kube-etcd "etcd not healthy" curl -fsS "http://127.0.0.1:$etcd_port/health"

    say "starting kube-apiserver (https://127.0.0.1:$kube_port)"
    kube_start kube-apiserver "$bin/kube-apiserver" \
      --etcd-servers "http://127.0.0.1:$etcd_port" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$kube_port" \
      --cert-dir "$dir/pki" \
      --endpoint-reconciler-type none \
      --service-cluster-ip-range 10.0.0.0/24 \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "$dir/sa.key" \
      --service-account-signing-key-file "$dir/sa.key" \
      --token-auth-file "$dir/tokens.csv" \
      --authorization-mode RBAC \
      --profiling=false
    kube_wait 120 kube-apiserver "kube-apiserver not ready" kube_ready
    # Its self-signed apiserver.crt holds the serving certificate, then the
    # CA; kube-root-ca.crt (and the ClusterTrustBundle) want the CA alone.
    awk '/BEGIN CERTIFICATE/ { b = "" } { b = b $0 "\n" } END { printf "%s", b }' \
      "$dir/pki/apiserver.crt" >"$dir/ca.crt"

    # The stale-controller consistency checks (beta, on by default since
    # 1.36) made the ReplicaSet controller stall for many seconds after a
    # "read version is not as new as written version" error on this loaded
    # two-core machine, so rollouts the tests wait for sometimes took longer
    # than their health timeouts. Workload controllers behave as before 1.36.
    kube_cm_gates=StaleControllerConsistencyReplicaSet=false,StaleControllerConsistencyDaemonSet=false,StaleControllerConsistencyStatefulSet=false,StaleControllerConsistencyJob=false
    say "starting kube-controller-manager, kube-scheduler, kwok"
    kube_start kube-controller-manager "$bin/kube-controller-manager" \
      --kubeconfig "$dir/kubeconfig" --leader-elect=false \
      --bind-address 127.0.0.1 --secure-port 0 \
      --use-service-account-credentials=false \
      --service-account-private-key-file "$dir/sa.key" \
      --root-ca-file "$dir/ca.crt" \
      --feature-gates "$kube_cm_gates" \
      --profiling=false
    kube_start kube-scheduler "$bin/kube-scheduler" \
      --kubeconfig "$dir/kubeconfig" --leader-elect=false \
      --bind-address 127.0.0.1 --secure-port 0 --profiling=false
    local stages=() f
    for f in "$repo"/scripts/kube/*.yaml; do stages+=(--config "$f"); done
    # Node leases: the heartbeat-with-lease stage refreshes node status only
    # every 10-20 minutes and leaves liveness to the lease; without
    # --node-lease-duration-seconds kwok keeps no lease, and the node
    # lifecycle controller marks both nodes NotReady every ~55 s.
    kube_start kube-kwok "$bin/kwok" --kubeconfig "$dir/kubeconfig" \
      "${stages[@]}" \
      --manage-all-nodes=false \
      --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
      --node-lease-duration-seconds 40 \
      --cidr 10.244.0.0/16 --node-ip 127.0.0.1

    local i
    for i in 0 1; do
      kcurl POST /api/v1/nodes "$(jq -cn --arg n "kwok-node-$i" '{
        apiVersion: "v1", kind: "Node",
        metadata: {name: $n,
          annotations: {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
          labels: {type: "kwok", "kubernetes.io/hostname": $n, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64"}},
        status: {allocatable: {cpu: "32", memory: "256Gi", pods: "110"},
          capacity: {cpu: "32", memory: "256Gi", pods: "110"}}}')" >/dev/null ||
        kube_fail kube-apiserver "creating node kwok-node-$i failed"
    done
    kube_wait 60 kube-kwok "fake nodes not Ready" kube_nodes_ready
    kube_wait 60 kube-controller-manager "no default ServiceAccount in namespace default" \
      kcurl GET /api/v1/namespaces/default/serviceaccounts/default

    # Proof that the control plane works: a Deployment becomes Available
    # (controller-manager, scheduler and kwok all take part), then goes away
    # with its pods.
    kcurl POST /apis/apps/v1/namespaces/default/deployments '{
      "apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": "gantry-testenv-probe"},
      "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": "gantry-testenv-probe"}},
        "template": {"metadata": {"labels": {"app": "gantry-testenv-probe"}},
          "spec": {"nodeSelector": {"type": "kwok"},
            "containers": [{"name": "probe", "image": "probe"}]}}}}' >/dev/null ||
      kube_fail kube-apiserver "creating the probe Deployment failed"
    kube_wait 60 kube-controller-manager "probe Deployment not Available" kube_probe_available
    kcurl DELETE /apis/apps/v1/namespaces/default/deployments/gantry-testenv-probe \
      '{"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}' >/dev/null ||
      kube_fail kube-apiserver "deleting the probe Deployment failed"
    kube_wait 60 kube-controller-manager "probe Deployment not deleted" kube_probe_gone
    say "kube ready (https://127.0.0.1:$kube_port)"
  fi
  echo "export KUBECONFIG=$dir/kubeconfig"
  echo "export GANTRY_TEST_KUBECONFIG=$dir/kubeconfig"
}

# --- gitea ------------------------------------------------------------------

# build_gitea prints the directory holding the gitea binary and the options/
# tree it reads at run time (locales; without them `gitea web` exits). Gitea's
# go.mod has replace directives, so `go install` refuses it: build in place in
# the module cache, into a temporary directory renamed when complete.
build_gitea() {
  local dir="$cache/gitea-$GITEA_VERSION"
  if [ ! -x "$dir/gitea" ] || [ ! -d "$dir/options" ]; then
    say "building gitea $GITEA_VERSION (10-15 minutes, once)"
    local tmp="$dir.tmp.$$" src
    rm -rf "$tmp" && mkdir -p "$tmp"
    (cd "$repo" && GOFLAGS=-mod=mod go mod download "code.gitea.io/gitea@$GITEA_VERSION") >&2
    src="$(go env GOMODCACHE)/code.gitea.io/gitea@$GITEA_VERSION"
    (cd "$src" && GOFLAGS=-mod=mod go mod download) >&2
    GOFLAGS=-mod=mod nice -n 10 go build -C "$src" -trimpath \
      -ldflags "-s -w -X main.Version=${GITEA_VERSION#v} -X main.Tags=" -o "$tmp/gitea" . >&2
    cp -r "$src/options" "$tmp/options"
    chmod -R u+w "$tmp/options"
    rm -rf "$dir" && mv "$tmp" "$dir"
  fi
  echo "$dir"
}

gitea_healthy() { curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$1/api/healthz"; }

start_gitea() {
  need_pkgs curl curl git git
  local dir="$state/gitea" bin port
  bin="$(build_gitea)"
  if ! running gitea || [ ! -s "$dir/env" ]; then
    stop_service gitea
    rm -rf "$dir"
    mkdir -p "$dir/custom/conf" "$dir/data" "$dir/log"
    free_port && port="$free_port_result"
    local secret_key internal_token
    secret_key="$("$bin/gitea" generate secret SECRET_KEY)"
    internal_token="$("$bin/gitea" generate secret INTERNAL_TOKEN)"
    (
      umask 077
      cat >"$dir/custom/conf/app.ini" <<GITEA_INI
APP_NAME = gantry-test-gitea
RUN_MODE = prod
RUN_USER = $(id -un)
WORK_PATH = $dir

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $port
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:$port/
STATIC_ROOT_PATH = $bin
APP_DATA_PATH = $dir/data
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false

[database]
DB_TYPE = sqlite3
PATH = $dir/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = $dir/data/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = $secret_key
INTERNAL_TOKEN = $internal_token
PASSWORD_COMPLEXITY = off
MIN_PASSWORD_LENGTH = 6
ALLOWED_HOST_LIST = loopback

[service]
DISABLE_REGISTRATION = true

[webhook]
DELIVER_TIMEOUT = 5

[mailer]
ENABLED = false
[session]
PROVIDER = memory
[cache]
ADAPTER = memory
[queue]
TYPE = channel
[indexer]
REPO_INDEXER_ENABLED = false
[cron]
ENABLED = false
[actions]
ENABLED = false
[log]
MODE = file
LEVEL = info
ROOT_PATH = $dir/log
GITEA_INI
    )
    say "starting gitea on 127.0.0.1:$port"
    # Gitea refuses to run as root unless told; the test forge is loopback only.
    GITEA_WORK_DIR="$dir" GITEA_CUSTOM="$dir/custom" GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true \
      setsid "$bin/gitea" web --config "$dir/custom/conf/app.ini" \
      >"$state/gitea.log" 2>&1 </dev/null &
    echo $! >"$state/gitea.pid"
    wait_for 60 gitea_healthy "$port" || die "gitea did not start; see $state/gitea.log and $dir/log"
    local token
    token="$(GITEA_WORK_DIR="$dir" GITEA_CUSTOM="$dir/custom" GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true \
      "$bin/gitea" --config "$dir/custom/conf/app.ini" admin user create --admin \
      --username gantry --password gantry-test-pass --email gantry@example.invalid \
      --must-change-password=false --access-token --access-token-name gantry-test \
      --access-token-scopes all 2>>"$state/gitea.log" | sed -n 's/.*created\.\.\. *//p')"
    [ -n "$token" ] || die "gitea: creating the admin user and token failed; see $state/gitea.log"
    (
      umask 077
      printf 'export GANTRY_TEST_GITEA_URL=http://127.0.0.1:%s\nexport GANTRY_TEST_GITEA_USER=gantry\nexport GANTRY_TEST_GITEA_TOKEN=%s\n' \
        "$port" "$token" >"$dir/env"
    )
    say "gitea ready (http://127.0.0.1:$port)"
  fi
  cat "$dir/env"
}

# --- helm -------------------------------------------------------------------

# build_helm prints the path of the helm binary, building it first if it is
# missing: from the tools module scripts/helmtool (its own go.mod, which the
# project's does not see), into a temporary directory renamed into place.
# Stamped as helm's Makefile does: its version, and the Kubernetes version
# of its client-go (v0.X.Y is 1.X) as what `helm template` and `helm lint`
# assume without a cluster.
build_helm() {
  local dir="$cache/helm-$HELM_VERSION" mod="$repo/scripts/helmtool/go.mod"
  if [ ! -x "$dir/helm" ]; then
    grep -Eq "^[[:space:]]*helm\.sh/helm/v3 $HELM_VERSION( |\$)" "$mod" ||
      die "helm: scripts/helmtool/go.mod does not require helm.sh/helm/v3 $HELM_VERSION"
    local kminor tmp v p
    kminor="$(awk '$1 == "k8s.io/client-go" { split($2, p, "."); print p[2] }' "$mod")"
    [ -n "$kminor" ] || die "helm: no k8s.io/client-go in $mod"
    say "building helm $HELM_VERSION (about 8 minutes cold on 2 loaded cores, once)"
    v="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    v+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      v+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kminor"
    done
    mkdir -p "$(dirname "$dir")"
    tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
    chmod 755 "$tmp"
    if ! CGO_ENABLED=0 GOFLAGS=-mod=readonly GOWORK=off nice -n 10 go build -C "$repo/scripts/helmtool" \
      -trimpath -ldflags "-s -w $v" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm >&2; then
      rm -rf "$tmp"
      die "helm: build failed"
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  echo "$dir/helm"
}

start_helm() {
  local bin
  bin="$(build_helm)"
  echo "export HELM=$bin"
}

start_service() {
  case "$1" in
  buildkit) start_buildkit ;;
  registry) start_registry ;;
  kube) start_kube ;;
  gitea) start_gitea ;;
  helm) start_helm ;;
  *) die "unknown service $1 (known: buildkit registry kube gitea helm)" ;;
  esac
}

stop_service() { # NAME...: stops the processes of their pid files, if alive,
  # all at once: SIGTERM to each, then SIGKILL to those alive after 15 s.
  local name pid names=() pids=()
  for name in "$@"; do
    [ -f "$state/$name.pid" ] || continue
    pid="$(cat "$state/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping $name ($pid)"
      kill -TERM "$pid"
      names+=("$name")
      pids+=("$pid")
    fi
  done
  local i
  for i in "${!pids[@]}"; do
    if ! wait_for 15 sh -c "! kill -0 ${pids[i]}"; then
      say "${names[i]} did not stop; killing it"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
  done
  for name in "$@"; do rm -f "$state/$name.pid"; done
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
  stop_kube # its parts in order, then whatever else has a pid file
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
  if [ -f "$state/kube-apiserver.pid" ]; then
    if kube_all_running; then
      echo "kube ready (https://127.0.0.1:$kube_port, KUBECONFIG=$state/kube/kubeconfig)"
    else
      echo "kube not ready"
    fi
  fi
  ;;
*)
  echo "usage: $0 up [buildkit] [registry] [kube] [gitea] [helm] | down | status" >&2
  exit 2
  ;;
esac
