package azure

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8"
	acsfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armfeatures"
	featuresfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armfeatures/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"
	resfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3/fake"

	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// router sends each request to the SDK's own fake server for its API, so
// one set of client options serves all three clients, as in production.
type router struct {
	features, providers, clusters policy.Transporter
}

func (r router) Do(req *http.Request) (*http.Response, error) {
	switch p := req.URL.Path; {
	case strings.Contains(p, "/Microsoft.Features/"):
		return r.features.Do(req)
	case strings.HasSuffix(p, "/providers/Microsoft.ContainerService/register"):
		return r.providers.Do(req)
	}
	return r.clusters.Do(req)
}

// world is a fake subscription: one feature, one managed cluster.
type world struct {
	mu           sync.Mutex
	featureState string
	cluster      armcontainerservice.ManagedCluster
	puts         int
	getErr       *azfake.ErrorResponder
	// stuck keeps the feature Registering, as a slow platform does.
	stuck bool
}

func (w *world) provider(t *testing.T) *Provider {
	t.Helper()
	fsrv := featuresfake.Server{
		Register: func(_ context.Context, ns, name string, _ *armfeatures.ClientRegisterOptions) (resp azfake.Responder[armfeatures.ClientRegisterResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.featureState = "Registering"
			resp.SetResponse(http.StatusOK, armfeatures.ClientRegisterResponse{FeatureResult: w.feature(ns, name)}, nil)
			return
		},
		Get: func(_ context.Context, ns, name string, _ *armfeatures.ClientGetOptions) (resp azfake.Responder[armfeatures.ClientGetResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if name != meshversion.FeatureNativeSidecarPreview {
				errResp.SetResponseError(http.StatusNotFound, "FeatureNotFound")
				return
			}
			resp.SetResponse(http.StatusOK, armfeatures.ClientGetResponse{FeatureResult: w.feature(ns, name)}, nil)
			if w.featureState == "Registering" && !w.stuck {
				w.featureState = "Registered" // the next look finds it done
			}
			return
		},
	}
	psrv := resfake.ProvidersServer{
		Register: func(_ context.Context, ns string, _ *armresources.ProvidersClientRegisterOptions) (resp azfake.Responder[armresources.ProvidersClientRegisterResponse], errResp azfake.ErrorResponder) {
			resp.SetResponse(http.StatusOK, armresources.ProvidersClientRegisterResponse{Provider: armresources.Provider{Namespace: to.Ptr(ns), RegistrationState: to.Ptr("Registered")}}, nil)
			return
		},
	}
	csrv := acsfake.ManagedClustersServer{
		Get: func(_ context.Context, rg, name string, _ *armcontainerservice.ManagedClustersClientGetOptions) (resp azfake.Responder[armcontainerservice.ManagedClustersClientGetResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.getErr != nil {
				return resp, *w.getErr
			}
			resp.SetResponse(http.StatusOK, armcontainerservice.ManagedClustersClientGetResponse{ManagedCluster: w.cluster}, nil)
			return
		},
		BeginCreateOrUpdate: func(_ context.Context, rg, name string, mc armcontainerservice.ManagedCluster, _ *armcontainerservice.ManagedClustersClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcontainerservice.ManagedClustersClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.puts++
			resp.AddNonTerminalResponse(http.StatusOK, nil)
			resp.SetTerminalResponse(http.StatusOK, armcontainerservice.ManagedClustersClientCreateOrUpdateResponse{ManagedCluster: mc}, nil)
			return
		},
		GetMeshRevisionProfile: func(_ context.Context, location, mode string, _ *armcontainerservice.ManagedClustersClientGetMeshRevisionProfileOptions) (resp azfake.Responder[armcontainerservice.ManagedClustersClientGetMeshRevisionProfileResponse], errResp azfake.ErrorResponder) {
			k := func(vs ...string) []*armcontainerservice.CompatibleVersions {
				return []*armcontainerservice.CompatibleVersions{{Name: to.Ptr("kubernetes"), Versions: to.SliceOfPtrs(vs...)}}
			}
			resp.SetResponse(http.StatusOK, armcontainerservice.ManagedClustersClientGetMeshRevisionProfileResponse{MeshRevisionProfile: armcontainerservice.MeshRevisionProfile{
				Properties: &armcontainerservice.MeshRevisionProfileProperties{MeshRevisions: []*armcontainerservice.MeshRevision{
					{Revision: to.Ptr("asm-1-26"), CompatibleWith: k("1.30", "1.31", "1.32")},
					{Revision: to.Ptr("asm-1-27"), CompatibleWith: k("1.31", "1.32", "1.33", "1.34")},
				}},
			}}, nil)
			return
		},
	}
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{Transport: router{
		features:  featuresfake.NewServerTransport(&fsrv),
		providers: resfake.NewProvidersServerTransport(&psrv),
		clusters:  acsfake.NewManagedClustersServerTransport(&csrv),
	}}}
	p, err := New(Target{Subscription: "00000000-0000-0000-0000-000000000000", ResourceGroup: "rg", Cluster: "aks"}, &azfake.TokenCredential{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (w *world) feature(ns, name string) armfeatures.FeatureResult {
	state := w.featureState
	if state == "" {
		state = "NotRegistered"
	}
	return armfeatures.FeatureResult{
		ID:         to.Ptr("/subscriptions/0/providers/Microsoft.Features/providers/" + ns + "/features/" + name),
		Name:       to.Ptr(ns + "/" + name),
		Properties: &armfeatures.FeatureProperties{State: to.Ptr(state)},
		Type:       to.Ptr("Microsoft.Features/providers/features"),
	}
}

func cluster(k8s string, revisions []string, pools ...*armcontainerservice.ManagedClusterAgentPoolProfile) armcontainerservice.ManagedCluster {
	return armcontainerservice.ManagedCluster{
		Location: to.Ptr("westeurope"),
		Properties: &armcontainerservice.ManagedClusterProperties{
			KubernetesVersion:        to.Ptr(k8s),
			CurrentKubernetesVersion: to.Ptr(k8s),
			AgentPoolProfiles:        pools,
			ServiceMeshProfile: &armcontainerservice.ServiceMeshProfile{
				Mode:  to.Ptr(armcontainerservice.ServiceMeshModeIstio),
				Istio: &armcontainerservice.IstioServiceMesh{Revisions: to.SliceOfPtrs(revisions...)},
			},
		},
	}
}

func pool(name, version string, count int32, state armcontainerservice.Code) *armcontainerservice.ManagedClusterAgentPoolProfile {
	return &armcontainerservice.ManagedClusterAgentPoolProfile{
		Name: to.Ptr(name), Count: to.Ptr(count), OrchestratorVersion: to.Ptr(version), CurrentOrchestratorVersion: to.Ptr(version),
		PowerState: &armcontainerservice.PowerState{Code: to.Ptr(state)},
	}
}

func TestDocumentFlowThroughTheSDK(t *testing.T) {
	w := &world{cluster: cluster("1.34.1", []string{"asm-1-27"},
		pool("system", "1.34.1", 3, armcontainerservice.CodeRunning),
		pool("old", "1.28.9", 2, armcontainerservice.CodeRunning))}
	p := w.provider(t)
	ctx := context.Background()

	f, err := p.RegisterFeature(ctx, meshversion.FeatureNativeSidecarPreview)
	if err != nil || f.Properties.State != "Registering" || f.Name != "Microsoft.ContainerService/IstioNativeSidecarModePreview" {
		t.Fatalf("register: %+v %v", f, err)
	}
	f, err = p.WaitRegistered(ctx, meshversion.FeatureNativeSidecarPreview, time.Millisecond, time.Second)
	if err != nil || f.Properties.State != "Registered" {
		t.Fatalf("wait registered: %+v %v", f, err)
	}
	if state, err := p.RegisterProvider(ctx); err != nil || state != "Registered" {
		t.Fatalf("provider register: %q %v", state, err)
	}

	c, err := p.GetCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.KubernetesVersion != "1.34.1" || len(c.Pools) != 2 || c.Pools[1].Version != "1.28.9" || c.Revisions[0] != "asm-1-27" {
		t.Fatalf("cluster: %+v", c)
	}
	// The in-cluster rules, from ARM's facts: the old pool keeps it classic.
	d := meshversion.Decide(meshversion.DefaultPolicy, c.Facts(meshversion.ModeAuto, true), "asm-1-27")
	if d.Injection != meshversion.Classic || d.Reason != "NodesTooOld" || !strings.Contains(d.Message, "pool old has 2 node(s) on kubelet 1.28.9") {
		t.Fatalf("decision with a 1.28 pool: %+v", d)
	}
	// After the pool's upgrade, native.
	w.cluster = cluster("1.34.1", []string{"asm-1-27"}, pool("system", "1.34.1", 3, armcontainerservice.CodeRunning), pool("old", "1.34.1", 2, armcontainerservice.CodeRunning))
	c, _ = p.GetCluster(ctx)
	if d := meshversion.Decide(meshversion.DefaultPolicy, c.Facts(meshversion.ModeAuto, true), "asm-1-27"); d.Injection != meshversion.Native {
		t.Fatalf("decision after the upgrade: %+v", d)
	}
	if err := p.Update(ctx, c); err != nil || w.puts != 1 {
		t.Fatalf("update: puts %d, %v", w.puts, err)
	}
}

func TestRevisionCompatibility(t *testing.T) {
	w := &world{cluster: cluster("1.34.1", []string{"asm-1-26", "asm-1-27", "asm-1-19"}, pool("system", "1.34.1", 1, armcontainerservice.CodeRunning))}
	p := w.provider(t)
	c, err := p.GetCluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	problems, err := p.RevisionCompatibility(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(problems, "\n")
	want := "revision asm-1-26 does not support Kubernetes 1.34 (it supports 1.30, 1.31, 1.32)\nrevision asm-1-19 is not in the platform's mesh revision profile for westeurope"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestErrorsSayWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   string
	}{
		{http.StatusNotFound, "ResourceNotFound", "managed cluster aks not found in resource group rg"},
		{http.StatusNotFound, "ResourceGroupNotFound", "resource group rg not found"},
		{http.StatusNotFound, "SubscriptionNotFound", "subscription 00000000-0000-0000-0000-000000000000 not found"},
		{http.StatusForbidden, "AuthorizationFailed", "no permission"},
		{http.StatusUnauthorized, "InvalidAuthenticationToken", "not signed in"},
	} {
		w := &world{getErr: &azfake.ErrorResponder{}}
		w.getErr.SetResponseError(tc.status, tc.code)
		_, err := w.provider(t).GetCluster(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.code, err, tc.want)
		}
	}
	if err := (Target{Subscription: "s"}).Validate(); err == nil || !strings.Contains(err.Error(), "--resource-group (or AZURE_RESOURCE_GROUP), --managed-cluster") {
		t.Errorf("Validate: %v", err)
	}
}

func TestFeatureStuckInRegisteringSaysHowLong(t *testing.T) {
	w := &world{featureState: "Registering", stuck: true}
	p := w.provider(t)
	_, err := p.WaitRegistered(context.Background(), meshversion.FeatureNativeSidecarPreview, time.Millisecond, 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "is still Registering after") || !strings.Contains(err.Error(), "meshaddon provider register") {
		t.Errorf("stuck feature: %v", err)
	}
	_, err = p.WaitRegistered(context.Background(), "NoSuchFeature", time.Millisecond, 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "FeatureNotFound") {
		t.Errorf("unknown feature: %v", err)
	}
}
