package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// armEnv runs `local arm-env` and returns its exports as NAME=VALUE, the
// way `eval "$(meshaddon local arm-env)"` sets them.
func armEnv(t *testing.T, cluster string) (env []string, get func(string) string) {
	t.Helper()
	vals := map[string]string{}
	for _, line := range strings.Split(mustMeshaddon(t, "local", "arm-env", "--name", cluster).stdout, "\n") {
		kv, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		v = strings.Trim(v, "'")
		vals[k] = v
		env = append(env, k+"="+v)
	}
	for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST", "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_AKS_CLUSTER", "MESHADDON_ARM_ENDPOINT", "MESHADDON_ARM_CA_FILE"} {
		if vals[k] == "" {
			t.Fatalf("local arm-env does not export %s", k)
		}
	}
	return env, func(k string) string { return vals[k] }
}

// apiVersionPolicy makes an SDK client send an older api-version, as an
// older client would.
type apiVersionPolicy string

func (v apiVersionPolicy) Do(req *policy.Request) (*http.Response, error) {
	q := req.Raw().URL.Query()
	q.Set("api-version", string(v))
	req.Raw().URL.RawQuery = q.Encode()
	return req.Next()
}

// TestAKSProvider runs the document's Azure half with --provider aks
// against the test bed's local ARM endpoint, configured only by
// `eval "$(meshaddon local arm-env)"`: register the feature, show it until
// Registered, re-register the provider, precheck from the managed cluster
// (failing on a 1.28 agent pool, passing after an agent pool upgrade
// through ARM), reconcile by updating the managed cluster, and the
// document's istiod check.
func TestAKSProvider(t *testing.T) {
	const cluster = "azure"
	upCluster(t, cluster, "--arm", "--pool", "system="+currentVersion+":2", "--pool", oldPool+"="+oldVersion+":1", "--revision", "asm-1-27")
	kcfg := kubeconfigOf(t, cluster)
	env, get := armEnv(t, cluster)
	aks := func(args ...string) result {
		t.Helper()
		return meshaddonEnv(t, env, append(args, "--provider", "aks", "--kubeconfig", kcfg)...)
	}
	if got := istiodEnvByDocument(t, cluster); !slices.Equal(got, []string{"false"}) {
		t.Fatalf("istiod starts with ENABLE_NATIVE_SIDECARS %v, want [false]", got)
	}

	// SDK clients of our own, for what meshaddon has no command for (the
	// agent pool upgrade) and for an older client.
	hc, err := azure.HTTPClient(get("MESHADDON_ARM_CA_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	copts := azcore.ClientOptions{Cloud: azure.CustomCloud(get("MESHADDON_ARM_ENDPOINT"), ""), Transport: hc}
	cred, err := azidentity.NewClientSecretCredential(get("AZURE_TENANT_ID"), get("AZURE_CLIENT_ID"), get("AZURE_CLIENT_SECRET"),
		&azidentity.ClientSecretCredentialOptions{ClientOptions: copts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rg, name := get("AZURE_RESOURCE_GROUP"), get("AZURE_AKS_CLUSTER")

	t.Run("feature register, show until Registered, provider register", func(t *testing.T) {
		var f azure.Feature
		r := aks("feature", "show")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &f) != nil || f.Properties.State != "NotRegistered" {
			t.Fatalf("feature show before register: %s", r)
		}
		if !strings.Contains(f.ID, "/subscriptions/"+get("AZURE_SUBSCRIPTION_ID")+"/providers/Microsoft.Features/") {
			t.Errorf("feature id %s is not under the local subscription", f.ID)
		}
		r = aks("feature", "register")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &f) != nil || (f.Properties.State != "Registering" && f.Properties.State != "Registered") {
			t.Fatalf("feature register: %s", r)
		}
		r = aks("feature", "show", "--wait", "--timeout", "30s")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &f) != nil || f.Properties.State != "Registered" {
			t.Fatalf("feature show --wait: %s", r)
		}
		var list []azure.Feature
		if r := aks("feature", "list", "-o", "json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) == 0 || list[0].Properties.State != "Registered" {
			t.Errorf("feature list: %s", r)
		}
		if r := aks("provider", "register"); r.code != 0 || !strings.Contains(r.stdout, "Microsoft.ContainerService: Registered") {
			t.Fatalf("provider register: %s", r)
		}
	})

	t.Run("precheck from the managed cluster fails on the 1.28 agent pool", func(t *testing.T) {
		r := aks("precheck", "-o", "json")
		var rep precheckReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 1 || rep.Success {
			t.Fatalf("precheck: %v\n%s", err, r)
		}
		if got := strings.Join(resultsOf(rep, "feature registered"), "\n"); !strings.HasPrefix(got, "ok:") || !strings.Contains(got, get("AZURE_SUBSCRIPTION_ID")) {
			t.Errorf("feature from ARM: %s", got)
		}
		if got := strings.Join(resultsOf(rep, "node versions"), "\n"); !strings.HasPrefix(got, "fail:") || !strings.Contains(got, "pool old") || !strings.Contains(got, "1.28.9") {
			t.Errorf("node versions from the agent pools: %s", got)
		}
	})

	t.Run("agent pool upgrade through ARM", func(t *testing.T) {
		pools, err := armcontainerservice.NewAgentPoolsClient(get("AZURE_SUBSCRIPTION_ID"), cred, &arm.ClientOptions{ClientOptions: policy.ClientOptions(copts)})
		if err != nil {
			t.Fatal(err)
		}
		got, err := pools.Get(ctx, rg, name, oldPool, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v := *got.Properties.CurrentOrchestratorVersion; v != strings.TrimPrefix(oldVersion, "v") {
			t.Fatalf("pool %s reports %s", oldPool, v)
		}
		ap := got.AgentPool
		ap.Properties.OrchestratorVersion = to.Ptr(strings.TrimPrefix(currentVersion, "v"))
		poller, err := pools.BeginCreateOrUpdate(ctx, rg, name, oldPool, ap, nil)
		if err != nil {
			t.Fatal(err)
		}
		done, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if v := *done.Properties.CurrentOrchestratorVersion; v != strings.TrimPrefix(currentVersion, "v") || *done.Properties.ProvisioningState != "Succeeded" {
			t.Errorf("after the upgrade: current %s, state %s", v, *done.Properties.ProvisioningState)
		}
		for _, n := range listPools(t, cluster) {
			if n.Name == oldPool && !slices.Equal(n.Versions, []string{currentVersion}) {
				t.Errorf("the local pool %s runs %v after the ARM upgrade", oldPool, n.Versions)
			}
		}
		r := aks("precheck", "-o", "json")
		var rep precheckReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("precheck: %v\n%s", err, r)
		}
		if got := strings.Join(resultsOf(rep, "node versions"), "\n"); strings.Contains(got, "fail:") {
			t.Errorf("node versions after the upgrade: %s", got)
		}
		// The manager turns istiod native once the facts allow; then
		// every check passes.
		waitFor(t, 30*time.Second, "precheck --provider aks passes", func(context.Context) (bool, string) {
			r := aks("precheck")
			return r.code == 0, r.String()
		})
	})

	t.Run("reconcile updates the managed cluster; the document's check shows true", func(t *testing.T) {
		if r := aks("reconcile"); r.code != 0 || !strings.Contains(r.stdout, "updated managed cluster "+name) {
			t.Fatalf("reconcile: %s", r)
		}
		if got := istiodEnvByDocument(t, cluster); !slices.Equal(got, []string{"true"}) {
			t.Errorf("the document's check after reconcile: %v, want [true]", got)
		}
	})

	t.Run("an older client's PUT leaves the mesh profile it cannot see alone", func(t *testing.T) {
		old := copts
		old.PerCallPolicies = []policy.Policy{apiVersionPolicy("2022-01-01")}
		clusters, err := armcontainerservice.NewManagedClustersClient(get("AZURE_SUBSCRIPTION_ID"), cred, &arm.ClientOptions{ClientOptions: policy.ClientOptions(old)})
		if err != nil {
			t.Fatal(err)
		}
		mc, err := clusters.Get(ctx, rg, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if mc.Properties.ServiceMeshProfile != nil {
			t.Fatalf("api-version 2022-01-01 predates serviceMeshProfile, yet it was returned")
		}
		poller, err := clusters.BeginCreateOrUpdate(ctx, rg, name, mc.ManagedCluster, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Second}); err != nil {
			t.Fatal(err)
		}
		var p v1alpha1.MeshProfile
		if err := ctrlClientFor(t, cluster).Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.Spec.Revisions, []string{"asm-1-27"}) {
			t.Errorf("revisions after an old client's PUT: %v, want [asm-1-27]", p.Spec.Revisions)
		}
	})

	t.Run("the Azure CLI: the document's five az commands as written", func(t *testing.T) {
		azureCLI(t, cluster, "asm-1-27")
	})

	t.Run("an update polled across a restart of the endpoint completes", func(t *testing.T) {
		clusters, err := armcontainerservice.NewManagedClustersClient(get("AZURE_SUBSCRIPTION_ID"), cred, &arm.ClientOptions{ClientOptions: policy.ClientOptions(copts)})
		if err != nil {
			t.Fatal(err)
		}
		mc, err := clusters.Get(ctx, rg, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		poller, err := clusters.BeginCreateOrUpdate(ctx, rg, name, mc.ManagedCluster, nil)
		if err != nil {
			t.Fatal(err)
		}
		token, err := poller.ResumeToken()
		if err != nil {
			t.Fatal(err)
		}
		// kill -9 the endpoint while the update waits for the add-on;
		// local up starts it again.
		if err := syscall.Kill(pidOf(t, cluster, "arm"), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if r := mustMeshaddon(t, "local", "up", "--name", cluster, "--arm", "--pool", "system="+currentVersion+":2", "--pool", oldPool+"="+oldVersion+":1", "--revision", "asm-1-27"); !strings.Contains(r.stdout, "started the local ARM endpoint") {
			t.Errorf("local up did not restart the endpoint:\n%s", r.stdout)
		}
		resumed, err := clusters.BeginCreateOrUpdate(ctx, rg, name, mc.ManagedCluster, &armcontainerservice.ManagedClustersClientBeginCreateOrUpdateOptions{ResumeToken: token})
		if err != nil {
			t.Fatal(err)
		}
		done, err := resumed.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Second})
		if err != nil {
			t.Fatalf("polling the update after the endpoint's restart: %v", err)
		}
		if *done.Properties.ProvisioningState != "Succeeded" {
			t.Errorf("after the restart: provisioningState %s", *done.Properties.ProvisioningState)
		}
	})

	t.Run("a refused write of istiod fails reconcile, locally and through ARM, until it is allowed", func(t *testing.T) {
		const frozen = "aks-istio-system is frozen for maintenance"
		cl := ctrlClientFor(t, cluster)
		unfreeze := testenv.FreezeIstiod(t, cl, istioNS, frozen)
		// Disabled needs istiod written false; the API server refuses it.
		setMode(t, cl, "Disabled")
		waitConditionE2E(t, cl, v1alpha1.ConditionReconciled, metav1.ConditionFalse, "istiod-asm-1-27", frozen)
		r := meshaddon(t, "reconcile", "--timeout", "1m", "--kubeconfig", kcfg)
		if r.code != 1 || !strings.Contains(r.stderr, "istiod-asm-1-27") || !strings.Contains(r.stderr, frozen) {
			t.Errorf("reconcile with the write refused: want exit 1 naming istiod and the refusal: %s", r)
		}
		// The managed cluster's PUT: its long-running operation ends Failed
		// with ARM's error code and the refusal as its message.
		r = aks("reconcile")
		if r.code != 1 || !strings.Contains(r.stderr, "ReconcileFailed") || !strings.Contains(r.stderr, frozen) {
			t.Errorf("reconcile --provider aks with the write refused: want exit 1 with ReconcileFailed and the refusal: %s", r)
		}
		if got := istiodEnvByDocument(t, cluster); !slices.Equal(got, []string{"true"}) {
			t.Errorf("istiod has %v through the policy, want [true]", got)
		}

		unfreeze()
		r = meshaddon(t, "reconcile", "--timeout", "1m", "--kubeconfig", kcfg)
		// The manager retries on its own too, so the write may be made by
		// the time reconcile runs: it reports either way.
		if r.code != 0 || (!strings.Contains(r.stdout, "asm-1-27: now classic sidecars (ENABLE_NATIVE_SIDECARS true → false") &&
			!strings.Contains(r.stdout, "asm-1-27: classic sidecars, unchanged (ENABLE_NATIVE_SIDECARS=false)")) {
			t.Errorf("reconcile once the write is allowed: %s", r)
		}
		if r := aks("reconcile"); r.code != 0 {
			t.Errorf("reconcile --provider aks once the write is allowed: %s", r)
		}
		if got := istiodEnvByDocument(t, cluster); !slices.Equal(got, []string{"false"}) {
			t.Errorf("the document's check after Disabled: %v, want [false]", got)
		}
		waitConditionE2E(t, cl, v1alpha1.ConditionReconciled, metav1.ConditionTrue)
		setMode(t, cl, "Auto")
		waitEnvByDocument(t, cluster, "true", 30*time.Second)
	})

	t.Run("a failed update shows the operation's error", func(t *testing.T) {
		// Without its MeshProfile the platform cannot reconcile the mesh:
		// the PUT is accepted, its long-running operation fails.
		cl := ctrlClientFor(t, cluster)
		if err := cl.Delete(ctx, &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}}); err != nil {
			t.Fatal(err)
		}
		r := aks("reconcile")
		if r.code == 0 || !strings.Contains(r.stderr, "ReconcileFailed") || !strings.Contains(r.stderr, "no MeshProfile named default") {
			t.Errorf("reconcile without a MeshProfile: %s", r)
		}
	})

	t.Run("errors a person can act on", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			env   []string
			args  []string
			wants string
		}{
			{"wrong subscription", nil, []string{"feature", "show", "--subscription", "00000000-0000-0000-0000-000000000000"}, "subscription 00000000-0000-0000-0000-000000000000 not found"},
			{"wrong cluster", nil, []string{"reconcile", "--managed-cluster", "nope"}, "managed cluster nope not found"},
			{"wrong secret", []string{"AZURE_CLIENT_SECRET=wrong"}, []string{"feature", "show"}, "AADSTS7000215"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := meshaddonEnv(t, append(slices.Clone(env), tc.env...), append(tc.args, "--provider", "aks", "--kubeconfig", kcfg)...)
				if r.code == 0 || !strings.Contains(r.stderr, tc.wants) || strings.Contains(r.stderr, "goroutine ") {
					t.Errorf("want a failure saying %q: %s", tc.wants, r)
				}
			})
		}
	})
}
