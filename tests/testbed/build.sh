#!/usr/bin/env bash
# Builds (once) and caches every test-bed binary: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok and helm from the Go module proxy, and the Kafka broker's and Connect
# worker's jars from Maven Central (the broker through the product's own `kinfer kafka --build`, so the
# demo and the bed share one). A warm run does nothing.
#
#   build.sh [all] [node] [COMPONENT]...
# `all` is the control plane and Kafka. `node` is the opt-in real node (README.md beside this file): the
# static pause binary, runc, containerd (+ its runc shim and ctr), the kubelet and kube-proxy, CoreDNS, and the
# OpenTelemetry Collector that ships the pods' logs in tests/cluster/test_log_shipping.py; it
# first installs the Debian packages they need (install-packages.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${KINFER_CACHE:-$HOME/.cache/kinfer}
mkdir -p "$CACHE"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { printf '[testbed-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# run_once DIR DESC CMD...: run CMD to fill DIR unless DIR/.done exists; build into a temporary
# directory and rename it, so an interrupted build never looks finished.
run_once() {
  local dir=$1 desc=$2; shift 2
  if [[ -f "$dir/.done" ]]; then return 0; fi
  log "building $desc (cold; cached afterwards in $dir)"
  local start=$SECONDS tmp="$dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  "$@" "$tmp"
  touch "$tmp/.done"; rm -rf "$dir"; mv "$tmp" "$dir"
  log "built $desc in $((SECONDS - start)) s"
}

# build_kubernetes_tools DIR PACKAGE...: Kubernetes commands of KUBERNETES_VERSION from the wrapper module go/k8s.
build_kubernetes_tools() {
  local out=$1 minor now ldflags="-s -w"; shift
  minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # Stamp the version: helm's kubeVersion checks and kubectl's skew check read it.
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=$now"
  done
  (cd "$HERE/go/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out/" "$@")
}

build_kubernetes() {
  build_kubernetes_tools "$1" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  (cd "$HERE/go/etcd" && go build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  GOBIN=$1 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok needs Stage definitions to simulate nodes and pods; they ship inside its module.
  local src
  src=$(cd "$1" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": *"\([^"]*\)".*/\1/p')
  for f in stage/node/fast/node-initialize.yaml stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           stage/pod/fast/pod-ready.yaml stage/pod/fast/pod-complete.yaml stage/pod/fast/pod-delete.yaml; do
    cat "$src/kustomize/$f"; echo "---"
  done > "$1/stages.yaml"
}

build_helm() {
  GOBIN=$1 go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

PYTHON_BIN=${PYTHON_BIN:-$HERE/../../.venv/bin/python}

# A Kafka Connect distributed worker (connect-runtime + the file connectors) for the ingestion tests.
build_connect() {
  mvn -B -q -f "$HERE/connect/pom.xml" -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
    -DoutputDirectory="$1/libs" dependency:copy-dependencies -DincludeScope=runtime
}

# The pod sandbox's process (node/pause.c), static: the pause image holds this one file.
build_pause() {
  gcc -static -Os -s -Wall -Wextra -Werror -o "$1/pause" "$HERE/node/pause.c"
}

# runc needs cgo for seccomp (libseccomp); linked statically so it does not depend on the host's libseccomp.so.
build_runc() {
  GOBIN=$1 CGO_ENABLED=1 go install -trimpath -tags "seccomp urfave_cli_no_docs netgo osusergo" \
    -ldflags "-s -w -X main.gitCommit=$RUNC_VERSION -extldflags -static" \
    "github.com/opencontainers/runc@$RUNC_VERSION"
}

# containerd, the runc shim it starts per pod (it must be on containerd's PATH) and ctr (image import).
build_containerd() {
  local pkg=github.com/containerd/containerd/v2 c
  for c in containerd containerd-shim-runc-v2 ctr; do
    GOBIN=$1 go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=$CONTAINERD_VERSION" \
      "$pkg/cmd/$c@$CONTAINERD_VERSION"
  done
}

# The kubelet and kube-proxy from the same wrapper module (and Go build cache) as the control plane.
build_kubernetes_node() {
  build_kubernetes_tools "$1" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

build_coredns() {
  (cd "$HERE/go/coredns" && go build -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$1/coredns" .)
}

# An OpenTelemetry Collector with the components of docs/otelcol.yaml (go/otelcol/main.go), for the log-shipping test.
build_otelcol() {
  (cd "$HERE/go/otelcol" && go build -trimpath -ldflags "-s -w" -o "$1/otelcol" .)
}

# A file's content hash: the cache key of components built from a file of this directory.
content_hash() { sha256sum "$1" | cut -c1-12; }

NODE_TARGETS=(pause runc containerd kubernetes-node coredns otelcol)
targets=()
for what in "${@:-all}"; do
  case $what in
    all) targets+=(kafka connect etcd helm kwok kubernetes) ;;
    node) targets+=("${NODE_TARGETS[@]}") ;;
    *) targets+=("$what") ;;
  esac
done
for what in "${NODE_TARGETS[@]}"; do
  if [[ " ${targets[*]} " == *" $what "* ]]; then
    bash "$HERE/install-packages.sh" node
    # The node's compiles (containerd and CoreDNS take minutes) share the machine: at a lower priority.
    renice -n 10 -p $$ >/dev/null
    break
  fi
done
for what in "${targets[@]}"; do
  case $what in
    kafka) KINFER_CACHE=$CACHE "$PYTHON_BIN" -m kinfer_runtime.tools.local_kafka --build >/dev/null ;;
    connect) run_once "$CACHE/connect-$KAFKA_VERSION" "Kafka Connect $KAFKA_VERSION" build_connect ;;
    etcd) run_once "$CACHE/etcd-$ETCD_VERSION" "etcd $ETCD_VERSION" build_etcd ;;
    helm) run_once "$CACHE/helm-$HELM_VERSION" "helm $HELM_VERSION" build_helm ;;
    kwok) run_once "$CACHE/kwok-$KWOK_VERSION" "kwok $KWOK_VERSION" build_kwok ;;
    kubernetes) run_once "$CACHE/kubernetes-$KUBERNETES_VERSION" "Kubernetes $KUBERNETES_VERSION" build_kubernetes ;;
    pause) run_once "$CACHE/pause-$(content_hash "$HERE/node/pause.c")" "pause" build_pause ;;
    runc) run_once "$CACHE/runc-$RUNC_VERSION" "runc $RUNC_VERSION" build_runc ;;
    containerd)
      run_once "$CACHE/containerd-$CONTAINERD_VERSION" "containerd $CONTAINERD_VERSION" build_containerd ;;
    kubernetes-node) run_once "$CACHE/kubernetes-node-$KUBERNETES_VERSION" \
      "kubelet + kube-proxy $KUBERNETES_VERSION" build_kubernetes_node ;;
    coredns) run_once "$CACHE/coredns-$COREDNS_VERSION-$(content_hash "$HERE/go/coredns/main.go")" \
      "CoreDNS $COREDNS_VERSION (plugins $(sed -n 's/^var directives = \[\]string{\(.*\)}/\1/p' "$HERE/go/coredns/main.go" | tr -d '"'))" \
      build_coredns ;;
    otelcol) run_once "$CACHE/otelcol-$OTELCOL_VERSION-$(cat "$HERE/go/otelcol/main.go" "$HERE/go/otelcol/go.sum" | sha256sum | cut -c1-12)" \
      "OpenTelemetry Collector $OTELCOL_VERSION (log shipping)" build_otelcol ;;
    *) echo "build.sh: unknown target $what (all, node, ${NODE_TARGETS[*]}, kafka, connect, etcd, helm, kwok," \
         "kubernetes)" >&2; exit 2 ;;
  esac
done
