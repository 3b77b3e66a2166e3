// Package armserver is the test bed's local Azure Resource Manager
// endpoint: the subset of ARM the seed document uses (preview features,
// the Microsoft.ContainerService provider, the managed cluster with its
// agent pools and mesh revision profiles, long-running operations) and a
// token authority for the client-credentials sign-in, on 127.0.0.1 with
// TLS. Every answer comes from the local cluster and the add-on manager's
// objects, and goes out through the Azure SDK's own fake server transports,
// so the wire format is the SDK's, not hand-written JSON.
package armserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	acsfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8/fake"
	featuresfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armfeatures/fake"
	resfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3/fake"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

// Server is the local ARM endpoint of one test bed cluster.
type Server struct {
	ID *Identity
	// Kube and Client reach the test bed's API server.
	Kube   kubernetes.Interface
	Client client.Client
	// Pools performs agent pool upgrades, stops and starts.
	Pools *nodepool.Manager
	// MeshNamespace holds the istiod Deployments.
	MeshNamespace string
	// ReconcileTimeout bounds the wait of a managed cluster update.
	ReconcileTimeout time.Duration
	// Log receives one line per request (may be nil).
	Log io.Writer
	// OperationsNamespace keeps the long-running operations (one
	// ConfigMap each), so that they outlive a restart of the endpoint.
	OperationsNamespace string

	routes   []route
	mutating sync.Mutex
	ops      operations
	tags     tagStore
	logMu    sync.Mutex
}

// New returns the server for id, backed by the cluster behind kube and cl.
func New(id *Identity, kube kubernetes.Interface, cl client.Client, pools *nodepool.Manager, meshNamespace string) *Server {
	s := &Server{ID: id, Kube: kube, Client: cl, Pools: pools, MeshNamespace: meshNamespace, ReconcileTimeout: 5 * time.Minute}
	s.tags = tagStore{path: filepath.Join(id.Dir, "tags.json")}
	s.ops = operations{m: map[string]*operation{}, run: s.runOperation, logf: s.logf}
	features := featuresfake.NewServerTransport(s.featureServer())
	providers := resfake.NewProvidersServerTransport(s.providersServer())
	clusters := acsfake.NewManagedClustersServerTransport(s.managedClustersServer())
	pools2 := acsfake.NewAgentPoolsServerTransport(s.agentPoolsServer())
	const (
		sub     = "/subscriptions/{sub}"
		feats   = sub + "/providers/Microsoft.Features"
		cluster = sub + "/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}"
		loc     = sub + "/providers/Microsoft.ContainerService/locations/{location}"
	)
	s.routes = []route{
		{template: feats + "/providers/{ns}/features/{feature}/register", kind: "features", fake: features, apis: map[string]string{http.MethodPost: "Client.Register"}},
		{template: feats + "/providers/{ns}/features/{feature}/unregister", kind: "features", fake: features, apis: map[string]string{http.MethodPost: "Client.Unregister"}},
		{template: feats + "/providers/{ns}/features/{feature}", kind: "features", fake: features, apis: map[string]string{http.MethodGet: "Client.Get"}},
		{template: feats + "/providers/{ns}/features", kind: "features", fake: features, apis: map[string]string{http.MethodGet: "Client.NewListPager"}},
		{template: feats + "/features", kind: "features", fake: features, apis: map[string]string{http.MethodGet: "Client.NewListAllPager"}},
		{template: cluster + "/agentPools/{pool}", kind: "agentPools", fake: pools2, apis: map[string]string{
			http.MethodGet: "AgentPoolsClient.Get", http.MethodPut: "AgentPoolsClient.BeginCreateOrUpdate"}},
		{template: cluster + "/agentPools", kind: "agentPools", fake: pools2, apis: map[string]string{http.MethodGet: "AgentPoolsClient.NewListPager"}},
		{template: cluster, kind: "managedClusters", fake: clusters, apis: map[string]string{
			http.MethodGet:   "ManagedClustersClient.Get",
			http.MethodPut:   "ManagedClustersClient.BeginCreateOrUpdate",
			http.MethodPatch: "ManagedClustersClient.BeginUpdateTags"}},
		{template: sub + "/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters", kind: "managedClusters", fake: clusters, apis: map[string]string{
			http.MethodGet: "ManagedClustersClient.NewListByResourceGroupPager"}},
		{template: sub + "/providers/Microsoft.ContainerService/managedClusters", kind: "managedClusters", fake: clusters, apis: map[string]string{
			http.MethodGet: "ManagedClustersClient.NewListPager"}},
		{template: loc + "/meshRevisionProfiles/{mode}", kind: "meshRevisionProfiles", fake: clusters, apis: map[string]string{
			http.MethodGet: "ManagedClustersClient.GetMeshRevisionProfile"}},
		{template: loc + "/meshRevisionProfiles", kind: "meshRevisionProfiles", fake: clusters, apis: map[string]string{
			http.MethodGet: "ManagedClustersClient.NewListMeshRevisionProfilesPager"}},
		{template: loc + "/operations/{operation}", kind: "operations", handle: s.operationStatus},
		{template: sub + "/providers/{ns}/register", kind: "providers", fake: providers, apis: map[string]string{http.MethodPost: "ProvidersClient.Register"}},
		{template: sub + "/providers/{ns}", kind: "providers", fake: providers, apis: map[string]string{http.MethodGet: "ProvidersClient.Get"}},
		{template: sub, kind: "subscriptions", handle: s.getSubscription},
		{template: "/subscriptions", kind: "subscriptions", handle: s.listSubscriptions},
		{template: "/tenants", kind: "tenants", handle: s.listTenants},
	}
	for i := range s.routes {
		s.routes[i].compile()
	}
	return s
}

func (s *Server) logf(format string, args ...any) {
	if s.Log == nil {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.Log, time.Now().Format(time.RFC3339)+" "+format+"\n", args...)
}

// Serve listens on 127.0.0.1 at the identity's port with its certificate
// until ctx ends, after resuming the long-running operations a previous
// run left in progress; those it runs stop with it, to be resumed by the
// next.
func (s *Server) Serve(ctx context.Context) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.ID.Dir, certFile), filepath.Join(s.ID.Dir, keyFile))
	if err != nil {
		return fmt.Errorf("load the endpoint's certificate: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ID.Port)))
	if err != nil {
		return fmt.Errorf("listen for the local ARM endpoint: %w", err)
	}
	s.ops.ctx = ctx
	if s.Kube != nil {
		if s.OperationsNamespace == "" {
			return errors.New("the local ARM endpoint needs a namespace for its operations")
		}
		s.ops.kube, s.ops.namespace = s.Kube, s.OperationsNamespace
		if err := s.ops.load(ctx); err != nil {
			return err
		}
	}
	srv := &http.Server{
		Handler:           s,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	s.logf("local ARM endpoint on %s for subscription %s, managed cluster %s/%s", s.ID.Endpoint(), s.ID.SubscriptionID, s.ID.ResourceGroup, s.ID.Cluster)
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
