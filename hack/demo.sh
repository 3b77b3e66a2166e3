#!/usr/bin/env bash
# The README's main flow on the local test bed. Each step prints the command
# it stands for in the seed document.
set -euo pipefail
cd "$(dirname "$0")/.."
M=./bin/meshaddon
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
k() { $M local kubectl -- "$@"; }

step "Bring up the local cluster (control plane, 3 nodes on 1.34, istiod asm-1-27, classic sidecars)"
$M local up
export KUBECONFIG=$($M local kubeconfig)

step "Deploy the sample (sleep + httpbin) into a namespace labelled istio.io/rev=asm-1-27"
$M local sample
k -n sample rollout status deployment/sleep --timeout=120s

step "Where is istio-proxy? (the document's verification command)"
k -n sample get pod -o "custom-columns=NAME:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name"

step "Local cluster status"
$M local status
