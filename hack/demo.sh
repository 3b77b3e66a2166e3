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

step "Bring up an existing cluster: 3 nodes on 1.34, one old pool on 1.28, istiod asm-1-27, the add-on manager, and a local ARM endpoint"
$M local up --pool system=v1.34.4:3 --pool legacy=v1.28.9:1 --arm
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

step "Point --provider aks at the local ARM endpoint (a real subscription works the same, after az login)"
$M local arm-env | sed 's/\(AZURE_CLIENT_SECRET=\).*/\1<secret>/'
eval "$($M local arm-env)"

if command -v az >/dev/null; then
  step "The Azure CLI is installed: point it at the local ARM endpoint too (once; in a config directory of the demo's own, not ~/.azure)"
  AZURE_CONFIG_DIR=$(mktemp -d)
  export AZURE_CONFIG_DIR AZURE_CORE_COLLECT_TELEMETRY=no
  trap 'rm -rf "$AZURE_CONFIG_DIR"' EXIT
  $M local arm-env --az | sed 's/\(--password \)[^ ]*/\1<secret>/'
  eval "$($M local arm-env --az)"

  step "Before you begin 1: register the preview feature"
  az feature register --namespace Microsoft.ContainerService --name IstioNativeSidecarModePreview

  step "Before you begin 2: wait until it shows Registered"
  until [ "$(az feature show --namespace Microsoft.ContainerService --name IstioNativeSidecarModePreview --query properties.state -o tsv)" = Registered ]; do sleep 2; done
  az feature show --namespace Microsoft.ContainerService --name IstioNativeSidecarModePreview

  step "Before you begin 3: refresh the provider registration"
  az provider register --namespace Microsoft.ContainerService

  step "Check versions: the control plane, the agent pools (legacy is on 1.28), the mesh revision (null from an az whose model predates serviceMeshProfile)"
  aks_show() { az aks show --resource-group "$RESOURCE_GROUP" --name "$CLUSTER" -o json; }
  if command -v jq >/dev/null; then
    aks_show | jq ".kubernetesVersion"
    aks_show | jq ".agentPoolProfiles[] | { currentOrchestratorVersion, powerState}"
    aks_show | jq ".serviceMeshProfile.istio.revisions"
  else
    az aks show --resource-group "$RESOURCE_GROUP" --name "$CLUSTER" -o json \
      --query "{kubernetesVersion: kubernetesVersion, agentPools: agentPoolProfiles[].{currentOrchestratorVersion: currentOrchestratorVersion, powerState: powerState}}"
  fi
else
  step "Before you begin 1: register the preview feature (az feature register)"
  $M feature register --name IstioNativeSidecarModePreview --provider aks

  step "Before you begin 2: wait until it shows Registered (az feature show)"
  $M feature show --name IstioNativeSidecarModePreview --provider aks --wait --timeout 2m

  step "Before you begin 3: refresh the provider registration (az provider register)"
  $M provider register --provider aks
fi

step "precheck from the managed cluster (az aks show): the feature passes; the 1.28 agent pool still fails"
$M precheck --provider aks || echo "(precheck failed, as expected: exit $?)"

step "Upgrade the old agent pool through ARM, as az aks nodepool upgrade does (any ARM client works: here curl)"
curl_arm() { curl -sf --cacert "$MESHADDON_ARM_CA_FILE" "$@"; }
token=$(curl_arm --data-urlencode grant_type=client_credentials --data-urlencode client_id="$AZURE_CLIENT_ID" \
  --data-urlencode client_secret="$AZURE_CLIENT_SECRET" --data-urlencode scope="$MESHADDON_ARM_ENDPOINT/.default" \
  "${AZURE_AUTHORITY_HOST}${AZURE_TENANT_ID}/oauth2/v2.0/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
pool="$MESHADDON_ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/$AZURE_RESOURCE_GROUP/providers/Microsoft.ContainerService/managedClusters/$AZURE_AKS_CLUSTER/agentPools/legacy?api-version=2024-05-01"
operation=$(curl_arm -D - -o /dev/null -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"properties":{"orchestratorVersion":"1.34.4"}}' "$pool" | sed -n 's/^[Aa]zure-[Aa]sync[Oo]peration: *\([^[:space:]]*\).*/\1/p')
echo "PUT agentPools/legacy orchestratorVersion=1.34.4: long-running operation $operation"
for _ in $(seq 120); do
  status=$(curl_arm -H "Authorization: Bearer $token" "$operation" | sed -n 's/.*"status":"\([A-Za-z]*\)".*/\1/p')
  [ "$status" = InProgress ] || break
  sleep 1
done
echo "operation $status"
[ "$status" = Succeeded ]
curl_arm -H "Authorization: Bearer $token" "$pool" | grep -o '"[a-zA-Z]*rchestratorVersion":"[^"]*"\|"provisioningState":"[^"]*"'

step "precheck from the managed cluster again: every check passes (the manager turned native on once the pool was upgraded)"
until $M precheck --provider aks >/dev/null; do sleep 1; done
$M precheck --provider aks

if command -v az >/dev/null; then
  step "Force the reconcile instead of waiting: az aks update (--yes answers its question whether to reconcile to the current settings)"
  az aks update --resource-group "$RESOURCE_GROUP" --name "$CLUSTER" --yes --query "{provisioningState: provisioningState, kubernetesVersion: kubernetesVersion}"
else
  step "Force the reconcile instead of waiting (az aks update: a PUT of the managed cluster, waited on as a long-running operation)"
  $M reconcile --provider aks
fi

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
