#!/usr/bin/env bash
# The README's main flow on the local test bed: the seed document, step by
# step. Each step names the document's step it stands for.
set -euo pipefail
cd "$(dirname "$0")/.."
M=./bin/meshaddon
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
k() { $M local kubectl -- "$@"; }
columns="custom-columns=NAME:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name"
# The document's check of istiod; jq if the machine has it, else the same
# filter as a kubectl JSONPath.
check_istiod() {
  if command -v jq >/dev/null; then
    k get deployment -l app=istiod -n aks-istio-system -o json |
      jq '.items[].spec.template.spec.containers[].env[] | select(.name=="ENABLE_NATIVE_SIDECARS")'
  else
    k get deployment -l app=istiod -n aks-istio-system \
      -o jsonpath='{range .items[*]}{.metadata.name}: {.spec.template.spec.containers[*].env[?(@.name=="ENABLE_NATIVE_SIDECARS")]}{"\n"}{end}'
  fi
}

step "Bring up an existing cluster: 3 nodes on 1.34, one old pool on 1.28, istiod asm-1-27, the add-on manager"
$M local up --pool system=v1.34.4:3 --pool legacy=v1.28.9:1
export KUBECONFIG=$($M local kubeconfig)

step "Deploy the sample (sleep + httpbin) into a namespace labelled istio.io/rev=asm-1-27"
$M local sample
k -n sample rollout status deployment/sleep --timeout=120s
k -n sample get pod -o "$columns"

step "meshaddon status: the same view with how each pod was injected"
$M status -n sample

step "meshaddon precheck: every check of the document at once (fails: no feature, an old pool)"
$M precheck || echo "(precheck failed, as expected: exit $?)"

step "Check istiod: the feature is not registered yet, so the manager keeps classic sidecars"
check_istiod
k get meshprofile default

step "Before you begin 1: register the preview feature (az feature register)"
$M feature register --name IstioNativeSidecarModePreview

step "Before you begin 2: wait until it shows Registered (az feature show)"
until $M feature show --name IstioNativeSidecarModePreview -o table | grep -qw Registered; do sleep 1; done
$M feature show --name IstioNativeSidecarModePreview

step "Before you begin 3: refresh the provider registration (az provider register)"
$M provider register

step "precheck again: the feature passes; the 1.28 pool still fails"
$M precheck || echo "(precheck failed, as expected: exit $?)"

step "Upgrade the old pool to 1.34 (node by node); the manager turns native on by itself"
$M local nodepool upgrade legacy --version v1.34.4

step "Force the reconcile instead of waiting (az aks update)"
$M reconcile

step "Check istiod for injecting native sidecars (the document's kubectl | jq)"
check_istiod

step "Restart workloads so istiod re-injects them: meshaddon migrate (the plan, then the run)"
$M migrate -n sample --dry-run
$M migrate -n sample

step "Where is istio-proxy? (the document's verification command)"
k -n sample get pod -o "$columns"

step "meshaddon status after the restart, and precheck passing"
$M status -n sample
$M precheck

step "Local cluster status"
$M local status
