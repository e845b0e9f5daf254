#!/usr/bin/env bash
# Starts and stops the real services the integration tests use, on loopback.
#
#   eval "$(scripts/testenv.sh up buildkit registry)"   # prints export lines
#   eval "$(scripts/testenv.sh up buildkit registry kube)"
#   scripts/testenv.sh down                             # stops what up started
#   scripts/testenv.sh down node                        # stops only the parts named
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
#   node      one real Kubernetes node on this host, in the kube part's
#             cluster: containerd (+ Debian's runc), kubelet, kube-proxy
#             (iptables), CNI bridge networking and CoreDNS, built once and
#             cached outside the repository (about 15 minutes cold). Brings
#             buildkit, registry and kube first (it pushes its pause image
#             to the registry and pulls images from it). The node is tainted
#             gantry.dev/real-node=true:NoSchedule and labelled
#             gantry.dev/real-node=true, so only pods that tolerate the
#             taint run there. Exports GANTRY_TEST_NODE (its name) and
#             GANTRY_TEST_NODE_LOGS (the kubelet's container logs: kubectl
#             logs cannot reach it). Needs root; `down` undoes what it
#             changed on the host. Not in a bare `up`.
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
# node: kubelet and kube-proxy come from scripts/kubetools (KUBE_VERSION);
# containerd and the CNI plugins are built from their modules; CoreDNS from
# the tools module scripts/nodetools (pinned there; build_coredns_into checks).
CONTAINERD_VERSION=v2.4.2
CNI_PLUGINS_VERSION=v1.10.0
COREDNS_VERSION=v1.15.0
NODE_NAME=gantry-real-node
NODE_TAINT_KEY=gantry.dev/real-node
# The node's pods get addresses on this bridge; CoreDNS answers on its
# gateway address.
NODE_BRIDGE=gantry-cni0
NODE_POD_CIDR=10.88.0.0/16
NODE_DNS_IP=10.88.0.1
NODE_PARTS=(node-dns node-proxy node-kubelet node-containerd)
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

# --- node -------------------------------------------------------------------

# kube_version_ldflags prints the -X flags that stamp KUBE_VERSION into the
# Kubernetes binaries (what `kubelet --version` and the Node object report).
kube_version_ldflags() {
  local major minor v p
  major="${KUBE_VERSION#v}"
  major="${major%%.*}"
  minor="${KUBE_VERSION#v*.}"
  minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    v+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  done
  echo "$v"
}

# cached_build DIR WHAT FUNC: unless DIR exists, runs FUNC TMP to fill a
# temporary directory that is renamed to DIR when FUNC succeeds, so an
# interrupted build never counts as cached. Prints DIR.
cached_build() {
  local dir="$1" what="$2" fn="$3" tmp start=$SECONDS
  if [ ! -d "$dir" ]; then
    say "building $what (once)"
    mkdir -p "$(dirname "$dir")"
    tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
    chmod 755 "$tmp"
    if ! "$fn" "$tmp" >&2; then
      rm -rf "$tmp"
      die "node: building $what failed"
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir"
    say "built $what in $((SECONDS - start)) s"
  fi
  echo "$dir"
}

# kubelet and kube-proxy: from scripts/kubetools, like the control plane, but
# cached apart so that adding them rebuilt nothing already cached.
build_kubelet_into() {
  GOFLAGS=-mod=readonly GOWORK=off nice -n 10 go build -C "$repo/scripts/kubetools" -trimpath \
    -ldflags "$(kube_version_ldflags)" -o "$1/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

# containerd, its runc shim and ctr: static, from the release's module
# (its own go.mod and go.sum), without the btrfs snapshotter (cgo).
build_containerd_into() {
  local m=github.com/containerd/containerd/v2 src ld
  (cd / && GOWORK=off go mod download "$m@$CONTAINERD_VERSION")
  src="$(go env GOMODCACHE)/$m@$CONTAINERD_VERSION"
  ld="-X $m/version.Version=$CONTAINERD_VERSION"
  GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 nice -n 10 go build -C "$src" -trimpath \
    -tags "urfave_cli_no_docs no_btrfs" -ldflags "$ld" -o "$1/" ./cmd/containerd ./cmd/ctr &&
    GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 nice -n 10 go build -C "$src" -trimpath \
      -tags "urfave_cli_no_docs no_btrfs no_grpc" -ldflags "$ld" -o "$1/" ./cmd/containerd-shim-runc-v2
}

build_cni_into() {
  local m=github.com/containernetworking/plugins src
  (cd / && GOWORK=off go mod download "$m@$CNI_PLUGINS_VERSION")
  src="$(go env GOMODCACHE)/$m@$CNI_PLUGINS_VERSION"
  GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 nice -n 10 go build -C "$src" -trimpath -o "$1/" \
    ./plugins/main/bridge ./plugins/main/loopback ./plugins/ipam/host-local ./plugins/meta/portmap
}

# CoreDNS with only the plugins the node's Corefile uses (scripts/nodetools).
build_coredns_into() {
  grep -Eq "github\.com/coredns/coredns $COREDNS_VERSION( |\$)" "$repo/scripts/nodetools/go.mod" ||
    die "node: scripts/nodetools/go.mod does not require coredns $COREDNS_VERSION"
  CGO_ENABLED=0 GOFLAGS=-mod=readonly GOWORK=off nice -n 10 go build -C "$repo/scripts/nodetools" \
    -trimpath -ldflags "-s -w" -o "$1/coredns" .
}

# The pod sandbox ("pause") image's one binary: Kubernetes' own pause.c from
# the kubernetes module, linked statically (registry.k8s.io is unreachable).
build_pause_into() {
  local src
  src="$(cd "$repo/scripts/kubetools" && GOWORK=off go mod download -json k8s.io/kubernetes | jq -r .Dir)"
  gcc -Os -Wall -Werror -static -DVERSION="$KUBE_VERSION-gantry-testenv" \
    -o "$1/pause" "$src/build/pause/linux/pause.c" && strip "$1/pause"
}

node_ctr() { "$node_bin_containerd/ctr" -a "$state/node/containerd/containerd.sock" -n k8s.io "$@"; }

node_ready() {
  kcurl GET "/api/v1/nodes/$NODE_NAME" |
    jq -e '.status.conditions[]? | select(.type == "Ready" and .status == "True")' >/dev/null
}

node_probe_ready() {
  kcurl GET /api/v1/namespaces/default/pods/gantry-testenv-node-probe |
    jq -e '.status.conditions[]? | select(.type == "Ready" and .status == "True")' >/dev/null
}

node_probe_gone() {
  [ "$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $kube_token" \
    "https://127.0.0.1:$kube_port/api/v1/namespaces/default/pods/gantry-testenv-node-probe")" = 404 ]
}

node_dns_up() { (exec 3<>"/dev/tcp/$NODE_DNS_IP/53") 2>/dev/null; }

# node_pods prints namespace/name of the pods bound to the node.
node_pods() {
  kcurl GET "/api/v1/pods?fieldSelector=spec.nodeName%3D$NODE_NAME" |
    jq -r '.items[] | "\(.metadata.namespace)/\(.metadata.name)"'
}

node_no_pods() { [ -z "$(node_pods)" ] && [ -z "$(node_ctr tasks ls -q 2>/dev/null)" ]; }

node_fail() { # PART MESSAGE
  say "node: $2; last lines of $state/$1.log:"
  tail -n 25 "$state/$1.log" >&2 || true
  stop_node
  die "node did not start (logs: $state/node-*.log)"
}

node_wait() { # SECONDS PART MESSAGE CMD...
  local deadline=$((SECONDS + $1)) part="$2" msg="$3" p
  shift 3
  until "$@" >/dev/null 2>&1; do
    for p in "${NODE_PARTS[@]}"; do
      [ ! -f "$state/$p.pid" ] || running "$p" || node_fail "$p" "$p exited"
    done
    [ $SECONDS -lt $deadline ] || node_fail "$part" "$msg (after $1 s)"
    sleep 0.2
  done
}

node_builds() {
  node_bin_kube="$(cached_build "$cache/kubelet-$KUBE_VERSION" "kubelet and kube-proxy $KUBE_VERSION (about 5 minutes cold)" build_kubelet_into)"
  node_bin_containerd="$(cached_build "$cache/containerd-$CONTAINERD_VERSION" "containerd $CONTAINERD_VERSION (about 5 minutes cold)" build_containerd_into)"
  node_bin_cni="$(cached_build "$cache/cni-plugins-$CNI_PLUGINS_VERSION" "CNI plugins $CNI_PLUGINS_VERSION (about 2 minutes cold)" build_cni_into)"
  node_bin_coredns="$(cached_build "$cache/coredns-$COREDNS_VERSION" "CoreDNS $COREDNS_VERSION (kubernetes, forward, cache; a few minutes cold)" build_coredns_into)"
  node_bin_pause="$(cached_build "$cache/pause-$KUBE_VERSION" "the pause binary" build_pause_into)"
}

start_node() {
  [ "$(id -u)" -eq 0 ] || die "node: containerd and kubelet need root"
  need_pkgs runc runc iptables iptables conntrack conntrack ip iproute2 gcc gcc \
    /usr/include/stdio.h libc6-dev curl curl jq jq
  # What the node needs running first; their export lines are printed too.
  local deps
  deps="$(start_buildkit)"$'\n'"$(start_registry)"$'\n'"$(start_kube)"
  echo "$deps"
  local reg
  reg="$(cat "$state/registry.addr")"
  kube_all_running || die "node: the kube part is not running"
  node_builds
  local p all=1
  for p in "${NODE_PARTS[@]}"; do running "$p" || all=; done
  if [ -n "$all" ] && node_ready; then
    echo "export GANTRY_TEST_NODE=$NODE_NAME"
    echo "export GANTRY_TEST_NODE_LOGS=$state/node/pod-logs"
    return
  fi
  stop_node
  local dir="$state/node" node_ip
  node_ip="$(ip -4 route get 192.0.2.123 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')"
  [ -n "$node_ip" ] || die "node: found no address for the node (no IPv4 route)"
  mkdir -p "$dir"/{cni-conf,pause,certs.d/"$reg"}
  # Remember what stop_node must put back or remove.
  {
    echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
    echo "node_ip=$node_ip"
    for p in /run/containerd /var/lib/kubelet /var/lib/cni /var/log/containers; do
      [ -e "$p" ] || echo "created=$p"
    done
    for p in /run/netns/cni-*; do
      [ ! -e "$p" ] || echo "netns=$p"
    done
  } >"$state/node-host"

  # Pod sandbox image, pushed to the test registry.
  cp "$node_bin_pause/pause" "$dir/pause/"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$dir/pause/Dockerfile"
  local pause="$reg/gantry-testenv/pause:$KUBE_VERSION"
  BUILDKIT_HOST="unix://$state/buildkit/buildkitd.sock" nice -n 10 "$(build_buildkit)/buildctl" build \
    --frontend dockerfile.v0 --local context="$dir/pause" --local dockerfile="$dir/pause" \
    --output "type=image,name=$pause,push=true,registry.insecure=true" >"$state/node-pause.log" 2>&1 ||
    { tail -n 20 "$state/node-pause.log" >&2; die "node: pushing the pause image failed"; }

  cat >"$dir/certs.d/$reg/hosts.toml" <<EOF
server = "http://$reg"
[host."http://$reg"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
  # restrict_oom_score_adj: root here may lack CAP_SYS_RESOURCE, and then
  # runc cannot give the sandbox the oom_score_adj CRI asks for (-998):
  # every pod fails with "can't get final child's PID from pipe: EOF".
  cat >"$dir/containerd.toml" <<EOF
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "$dir/containerd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$pause"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$dir/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$dir/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$node_bin_cni"]
    conf_dir = "$dir/cni-conf"
EOF
  cat >"$dir/cni-conf/10-gantry-testenv.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "gantry-testenv",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$dir/cni-ipam",
              "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_DNS_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # oomScoreAdj 0: see restrict_oom_score_adj above. The kubelet listens on
  # loopback only (anonymous, AlwaysAllow): the apiserver does not reach it,
  # so kubectl logs/exec do not work (container logs are in $dir/pod-logs).
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failSwapOn: false
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
clusterDNS: [$NODE_DNS_IP]
resolvConf: /etc/resolv.conf
podLogsDir: $dir/pod-logs
registerWithTaints:
- {key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
oomScoreAdj: 0
EOF
  # NodePorts on the node's address only: the testenv's own services listen
  # on random loopback ports.
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $NODE_POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$node_ip/32"]
conntrack: {maxPerCore: 0}
clientConnection: {kubeconfig: $state/kube/kubeconfig}
EOF
  cat >"$dir/Corefile" <<EOF
.:53 {
    bind $NODE_DNS_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $state/kube/kubeconfig gantry-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 5
}
EOF

  # The bridge exists before the first pod so that CoreDNS can bind its
  # gateway address; the CNI bridge plugin takes it over.
  ip link add "$NODE_BRIDGE" type bridge
  ip addr add "$NODE_DNS_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1

  say "starting containerd $CONTAINERD_VERSION"
  PATH="$node_bin_containerd:$PATH" kube_start node-containerd "$node_bin_containerd/containerd" --config "$dir/containerd.toml"
  node_wait 30 node-containerd "containerd not answering" node_ctr version
  say "starting kubelet ($NODE_NAME, $node_ip)"
  kube_start node-kubelet "$node_bin_kube/kubelet" --config "$dir/kubelet.yaml" \
    --kubeconfig "$state/kube/kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$node_ip" \
    --node-labels "$NODE_TAINT_KEY=true" --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" --v=1
  say "starting kube-proxy and CoreDNS"
  kube_start node-proxy "$node_bin_kube/kube-proxy" --config "$dir/kube-proxy.yaml" --v=1
  kube_start node-dns "$node_bin_coredns/coredns" -conf "$dir/Corefile"
  node_wait 60 node-dns "CoreDNS not listening on $NODE_DNS_IP:53" node_dns_up
  node_wait 120 node-kubelet "node $NODE_NAME not Ready" node_ready

  # Proof that the node runs pods: the pause image as a pod, scheduled there.
  kcurl POST /api/v1/namespaces/default/pods "$(jq -cn --arg img "$pause" --arg key "$NODE_TAINT_KEY" '{
    apiVersion: "v1", kind: "Pod", metadata: {name: "gantry-testenv-node-probe"},
    spec: {nodeSelector: {($key): "true"}, tolerations: [{key: $key, operator: "Exists", effect: "NoSchedule"}],
      automountServiceAccountToken: false, terminationGracePeriodSeconds: 0,
      containers: [{name: "pause", image: $img}]}}')" >/dev/null ||
    node_fail node-kubelet "creating the probe pod failed"
  node_wait 120 node-kubelet "probe pod not Ready on $NODE_NAME" node_probe_ready
  kcurl DELETE /api/v1/namespaces/default/pods/gantry-testenv-node-probe >/dev/null ||
    node_fail node-kubelet "deleting the probe pod failed"
  node_wait 60 node-kubelet "probe pod not deleted" node_probe_gone
  say "node $NODE_NAME ready"
  echo "export GANTRY_TEST_NODE=$NODE_NAME"
  echo "export GANTRY_TEST_NODE_LOGS=$state/node/pod-logs"
}

# stop_node undoes start_node: the node's pods go first (the kubelet stops
# them, so the CNI plugins remove their addresses and NAT rules), then its
# processes, then what they left on the host: iptables chains, mounts, the
# bridge, cgroups, ip_forward and the directories that did not exist before.
stop_node() {
  local dir="$state/node" p
  [ -f "$state/node-host" ] || [ -d "$dir" ] || return 0
  node_bin_containerd="${node_bin_containerd:-$cache/containerd-$CONTAINERD_VERSION}"
  say "stopping node $NODE_NAME"
  local api=
  kube_all_running 2>/dev/null && api=1
  if [ -n "$api" ] && running node-kubelet && running node-containerd; then
    curl -fsSk --max-time 10 -X PATCH -H "Authorization: Bearer $kube_token" \
      -H "Content-Type: application/merge-patch+json" --data '{"spec":{"unschedulable":true}}' \
      "https://127.0.0.1:$kube_port/api/v1/nodes/$NODE_NAME" >/dev/null 2>&1 || true
    for p in $(node_pods 2>/dev/null); do
      kcurl DELETE "/api/v1/namespaces/${p%%/*}/pods/${p#*/}" '{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":1}' >/dev/null 2>&1 || true
    done
    wait_for 90 node_no_pods || say "node: pods still running after 90 s; killing them"
  fi
  stop_service node-dns node-proxy node-kubelet
  if running node-containerd; then
    for p in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks kill -s SIGKILL "$p" >/dev/null 2>&1 || true; done
    wait_for 15 sh -c "[ -z \"\$('$node_bin_containerd/ctr' -a '$dir/containerd/containerd.sock' -n k8s.io tasks ls -q)\" ]" || true
  fi
  stop_service node-containerd
  # Shims outlive containerd; any left belong to this node's containerd.
  for p in /proc/[0-9]*; do
    if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "-address $dir/containerd/containerd.sock"; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  # iptables: kube-proxy's chains, the kubelet's, and NAT rules of pods
  # whose CNI teardown did not run.
  [ -x "$cache/kubelet-$KUBE_VERSION/kube-proxy" ] &&
    "$cache/kubelet-$KUBE_VERSION/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local ipt t c
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    $ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
    $ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
    for t in filter nat mangle; do
      for c in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
        $ipt -t $t -F $c 2>/dev/null && $ipt -t $t -X $c 2>/dev/null || true
      done
    done
  done
  if command -v iptables >/dev/null; then
    { iptables -t nat -S POSTROUTING 2>/dev/null | grep -- 'name: \\"gantry-testenv\\"' || true; } | sed 's/^-A/-D/' |
      while read -r rule; do
        c="$(sed -n 's/.* -j \(CNI-[0-9a-f]*\).*/\1/p' <<<"$rule")"
        eval "iptables -t nat $rule" 2>/dev/null || true
        [ -z "$c" ] || { iptables -t nat -F "$c" && iptables -t nat -X "$c"; } 2>/dev/null || true
      done
  fi
  # Mounts under the node's directory (the kubelet's own bind mount, pod
  # volumes, container root file systems), deepest first.
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  # Pod network namespaces whose sandbox was never stopped (no drain).
  for p in /run/netns/cni-*; do
    [ -e "$p" ] || continue
    ! grep -qx "netns=$p" "$state/node-host" 2>/dev/null || continue
    umount "$p" 2>/dev/null || true
    rm -f "$p"
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ ! -d "$c" ] || find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if [ -f "$state/node-host" ]; then
    local v
    v="$(sed -n 's/^ip_forward=//p' "$state/node-host")"
    [ -z "$v" ] || sysctl -qw "net.ipv4.ip_forward=$v"
    for p in $(sed -n 's/^created=//p' "$state/node-host"); do
      awk -v d="$p" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount "$m" 2>/dev/null || true; done
      rm -rf "$p"
    done
  fi
  if [ -n "$api" ]; then
    kcurl DELETE "/api/v1/nodes/$NODE_NAME" >/dev/null 2>&1 || true
  fi
  rm -rf "$dir" "$state/node-host"
}

start_service() {
  case "$1" in
  buildkit) start_buildkit ;;
  registry) start_registry ;;
  kube) start_kube ;;
  gitea) start_gitea ;;
  helm) start_helm ;;
  node) start_node ;;
  *) die "unknown service $1 (known: buildkit registry kube gitea helm node)" ;;
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
  if [ $# -gt 0 ]; then # only the parts named
    for s in "$@"; do
      case "$s" in
      node) stop_node ;;
      kube) stop_node && stop_kube ;;
      *) stop_service "$s" ;;
      esac
    done
    exit 0
  fi
  stop_node # its pods while the apiserver runs, then its host changes
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
  echo "usage: $0 up [buildkit] [registry] [kube] [gitea] [helm] [node] | down [PART...] | status" >&2
  exit 2
  ;;
esac
