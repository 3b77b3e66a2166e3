// Package azurefake is a fake subscription for tests: one feature and one
// managed cluster, served through the Azure SDK's own fake server
// transports, so the real SDK clients run against it unchanged.
package azurefake

import (
	"context"
	"net/http"
	"strings"
	"sync"

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
)

// World is the subscription's state. Tests set it and read it back.
type World struct {
	mu sync.Mutex
	// KnownFeature is the only feature name Get knows.
	KnownFeature string
	FeatureState string
	// Stuck keeps a Registering feature Registering; otherwise the next
	// Get finds it Registered, as a fast platform would.
	Stuck   bool
	Cluster armcontainerservice.ManagedCluster
	// Puts counts managed cluster updates.
	Puts int
	// GetErr, if set, answers every managed cluster GET.
	GetErr *azfake.ErrorResponder
	// Compatible maps a revision to the Kubernetes minors it supports.
	Compatible map[string][]string
}

// Do runs fn with the world locked, for tests changing it mid-run.
func (w *World) Do(fn func(w *World)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(w)
}

// router sends each request to the fake server of its API, so one set of
// client options serves every client, as in production.
type router struct{ features, providers, clusters policy.Transporter }

func (r router) Do(req *http.Request) (*http.Response, error) {
	switch p := req.URL.Path; {
	case strings.Contains(p, "/Microsoft.Features/"):
		return r.features.Do(req)
	case strings.HasSuffix(p, "/providers/Microsoft.ContainerService/register"):
		return r.providers.Do(req)
	}
	return r.clusters.Do(req)
}

// Options returns client options whose transport is the world.
func (w *World) Options() *arm.ClientOptions {
	fsrv := featuresfake.Server{
		Register: func(_ context.Context, ns, name string, _ *armfeatures.ClientRegisterOptions) (resp azfake.Responder[armfeatures.ClientRegisterResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.FeatureState = "Registering"
			resp.SetResponse(http.StatusOK, armfeatures.ClientRegisterResponse{FeatureResult: w.feature(ns, name)}, nil)
			return
		},
		Unregister: func(_ context.Context, ns, name string, _ *armfeatures.ClientUnregisterOptions) (resp azfake.Responder[armfeatures.ClientUnregisterResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.FeatureState = "Unregistering"
			resp.SetResponse(http.StatusOK, armfeatures.ClientUnregisterResponse{FeatureResult: w.feature(ns, name)}, nil)
			return
		},
		NewListPager: func(ns string, _ *armfeatures.ClientListOptions) (resp azfake.PagerResponder[armfeatures.ClientListResponse]) {
			w.mu.Lock()
			defer w.mu.Unlock()
			f := w.feature(ns, w.KnownFeature)
			resp.AddPage(http.StatusOK, armfeatures.ClientListResponse{FeatureOperationsListResult: armfeatures.FeatureOperationsListResult{Value: []*armfeatures.FeatureResult{&f}}}, nil)
			return
		},
		Get: func(_ context.Context, ns, name string, _ *armfeatures.ClientGetOptions) (resp azfake.Responder[armfeatures.ClientGetResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if name != w.KnownFeature {
				errResp.SetResponseError(http.StatusNotFound, "FeatureNotFound")
				return
			}
			resp.SetResponse(http.StatusOK, armfeatures.ClientGetResponse{FeatureResult: w.feature(ns, name)}, nil)
			if w.FeatureState == "Registering" && !w.Stuck {
				w.FeatureState = "Registered"
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
			if w.GetErr != nil {
				return resp, *w.GetErr
			}
			resp.SetResponse(http.StatusOK, armcontainerservice.ManagedClustersClientGetResponse{ManagedCluster: w.Cluster}, nil)
			return
		},
		BeginCreateOrUpdate: func(_ context.Context, rg, name string, mc armcontainerservice.ManagedCluster, _ *armcontainerservice.ManagedClustersClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcontainerservice.ManagedClustersClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.Puts++
			resp.AddNonTerminalResponse(http.StatusOK, nil)
			resp.SetTerminalResponse(http.StatusOK, armcontainerservice.ManagedClustersClientCreateOrUpdateResponse{ManagedCluster: mc}, nil)
			return
		},
		GetMeshRevisionProfile: func(_ context.Context, location, mode string, _ *armcontainerservice.ManagedClustersClientGetMeshRevisionProfileOptions) (resp azfake.Responder[armcontainerservice.ManagedClustersClientGetMeshRevisionProfileResponse], errResp azfake.ErrorResponder) {
			w.mu.Lock()
			defer w.mu.Unlock()
			var revs []*armcontainerservice.MeshRevision
			for rev, versions := range w.Compatible {
				revs = append(revs, &armcontainerservice.MeshRevision{Revision: to.Ptr(rev),
					CompatibleWith: []*armcontainerservice.CompatibleVersions{{Name: to.Ptr("kubernetes"), Versions: to.SliceOfPtrs(versions...)}}})
			}
			resp.SetResponse(http.StatusOK, armcontainerservice.ManagedClustersClientGetMeshRevisionProfileResponse{MeshRevisionProfile: armcontainerservice.MeshRevisionProfile{
				Properties: &armcontainerservice.MeshRevisionProfileProperties{MeshRevisions: revs}}}, nil)
			return
		},
	}
	return &arm.ClientOptions{ClientOptions: policy.ClientOptions{Transport: router{
		features:  featuresfake.NewServerTransport(&fsrv),
		providers: resfake.NewProvidersServerTransport(&psrv),
		clusters:  acsfake.NewManagedClustersServerTransport(&csrv),
	}}}
}

func (w *World) feature(ns, name string) armfeatures.FeatureResult {
	state := w.FeatureState
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

// Cluster builds a managed cluster on k8s with the mesh's revisions.
func Cluster(k8s string, revisions []string, pools ...*armcontainerservice.ManagedClusterAgentPoolProfile) armcontainerservice.ManagedCluster {
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

// Pool builds an agent pool of count nodes on version.
func Pool(name, version string, count int32, state armcontainerservice.Code) *armcontainerservice.ManagedClusterAgentPoolProfile {
	return &armcontainerservice.ManagedClusterAgentPoolProfile{
		Name: to.Ptr(name), Count: to.Ptr(count), OrchestratorVersion: to.Ptr(version), CurrentOrchestratorVersion: to.Ptr(version),
		PowerState: &armcontainerservice.PowerState{Code: to.Ptr(state)},
	}
}
