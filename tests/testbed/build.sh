#!/usr/bin/env bash
# Builds (once) and caches every test-bed binary: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok and helm from the Go module proxy, and the Kafka broker's and Connect
# worker's jars from Maven Central (the broker through the product's own `kinfer kafka --build`, so the
# demo and the bed share one). A warm run does nothing.
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

build_kubernetes() {
  local out=$1 minor now ldflags="-s -w"
  minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # Stamp the version: helm's kubeVersion checks and kubectl's skew check read it.
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=$now"
  done
  (cd "$HERE/go/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
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

what=${1:-all}
case $what in
  all|kafka) KINFER_CACHE=$CACHE "$PYTHON_BIN" -m kinfer_runtime.tools.local_kafka --build >/dev/null ;;&
  all|connect) run_once "$CACHE/connect-$KAFKA_VERSION" "Kafka Connect $KAFKA_VERSION" build_connect ;;&
  all|etcd) run_once "$CACHE/etcd-$ETCD_VERSION" "etcd $ETCD_VERSION" build_etcd ;;&
  all|helm) run_once "$CACHE/helm-$HELM_VERSION" "helm $HELM_VERSION" build_helm ;;&
  all|kwok) run_once "$CACHE/kwok-$KWOK_VERSION" "kwok $KWOK_VERSION" build_kwok ;;&
  all|kubernetes) run_once "$CACHE/kubernetes-$KUBERNETES_VERSION" "Kubernetes $KUBERNETES_VERSION" build_kubernetes ;;&
  *) ;;
esac
