// Package azure is the managed-cluster provider: the seed document's Azure
// Resource Manager steps (feature registration, provider registration, the
// managed cluster's versions, power states and mesh revisions, the forced
// update) through the official Azure SDK for Go, with the version rules
// from internal/meshversion.
package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armfeatures"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"

	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// ProviderNamespace is the resource provider of managed clusters.
const ProviderNamespace = "Microsoft.ContainerService"

// Target names one managed cluster.
type Target struct {
	Subscription  string
	ResourceGroup string
	Cluster       string
}

// Validate says which part of the target is missing.
func (t Target) Validate() error {
	var missing []string
	if t.Subscription == "" {
		missing = append(missing, "--subscription (or AZURE_SUBSCRIPTION_ID)")
	}
	if t.ResourceGroup == "" {
		missing = append(missing, "--resource-group (or AZURE_RESOURCE_GROUP)")
	}
	if t.Cluster == "" {
		missing = append(missing, "--managed-cluster (or AZURE_AKS_CLUSTER)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the aks provider needs %s", strings.Join(missing, ", "))
	}
	return nil
}

// Provider talks to ARM for one managed cluster.
type Provider struct {
	Target
	features  *armfeatures.Client
	providers *armresources.ProvidersClient
	clusters  *armcontainerservice.ManagedClustersClient
}

// New builds the SDK clients. opts carries the cloud configuration and, in
// tests, the SDK's fake transports.
func New(t Target, cred azcore.TokenCredential, opts *arm.ClientOptions) (*Provider, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	f, err := armfeatures.NewClient(t.Subscription, cred, opts)
	if err != nil {
		return nil, err
	}
	p, err := armresources.NewProvidersClient(t.Subscription, cred, opts)
	if err != nil {
		return nil, err
	}
	c, err := armcontainerservice.NewManagedClustersClient(t.Subscription, cred, opts)
	if err != nil {
		return nil, err
	}
	return &Provider{Target: t, features: f, providers: p, clusters: c}, nil
}

// Feature is a feature as ARM returns it.
type Feature struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		State string `json:"state"`
	} `json:"properties"`
	Type string `json:"type"`
}

func feature(r armfeatures.FeatureResult) Feature {
	var f Feature
	f.ID, f.Name, f.Type = deref(r.ID), deref(r.Name), deref(r.Type)
	if r.Properties != nil {
		f.Properties.State = deref(r.Properties.State)
	}
	return f
}

// RegisterFeature is `az feature register`.
func (p *Provider) RegisterFeature(ctx context.Context, name string) (Feature, error) {
	r, err := p.features.Register(ctx, ProviderNamespace, name, nil)
	if err != nil {
		return Feature{}, p.explain(err, "register feature "+name)
	}
	return feature(r.FeatureResult), nil
}

// GetFeature is `az feature show`.
func (p *Provider) GetFeature(ctx context.Context, name string) (Feature, error) {
	r, err := p.features.Get(ctx, ProviderNamespace, name, nil)
	if err != nil {
		return Feature{}, p.explain(err, "read feature "+name)
	}
	return feature(r.FeatureResult), nil
}

// UnregisterFeature is `az feature unregister`.
func (p *Provider) UnregisterFeature(ctx context.Context, name string) (Feature, error) {
	r, err := p.features.Unregister(ctx, ProviderNamespace, name, nil)
	if err != nil {
		return Feature{}, p.explain(err, "unregister feature "+name)
	}
	return feature(r.FeatureResult), nil
}

// ListFeatures is `az feature list --namespace Microsoft.ContainerService`.
func (p *Provider) ListFeatures(ctx context.Context) ([]Feature, error) {
	var out []Feature
	pager := p.features.NewListPager(ProviderNamespace, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, p.explain(err, "list the features of "+ProviderNamespace)
		}
		for _, r := range page.Value {
			if r != nil {
				out = append(out, feature(*r))
			}
		}
	}
	return out, nil
}

// RegisterProvider is `az provider register`: it refreshes the provider's
// registration so that feature states take effect, and returns its state.
func (p *Provider) RegisterProvider(ctx context.Context) (string, error) {
	r, err := p.providers.Register(ctx, ProviderNamespace, nil)
	if err != nil {
		return "", p.explain(err, "register provider "+ProviderNamespace)
	}
	return deref(r.RegistrationState), nil
}

// Pool is an agent pool as the managed cluster reports it.
type Pool struct {
	Name string
	// Version is currentOrchestratorVersion, else orchestratorVersion.
	Version    string
	Count      int
	PowerState string
}

// Cluster is what the document reads with `az aks show`.
type Cluster struct {
	Location          string
	KubernetesVersion string
	Pools             []Pool
	Revisions         []string
	raw               armcontainerservice.ManagedCluster
}

// GetCluster reads the managed cluster.
func (p *Provider) GetCluster(ctx context.Context) (*Cluster, error) {
	r, err := p.clusters.Get(ctx, p.ResourceGroup, p.Cluster, nil)
	if err != nil {
		return nil, p.explain(err, "read managed cluster "+p.Cluster)
	}
	mc := r.ManagedCluster
	c := &Cluster{Location: deref(mc.Location), raw: mc}
	if pr := mc.Properties; pr != nil {
		c.KubernetesVersion = deref(pr.CurrentKubernetesVersion)
		if c.KubernetesVersion == "" {
			c.KubernetesVersion = deref(pr.KubernetesVersion)
		}
		for _, ap := range pr.AgentPoolProfiles {
			if ap == nil {
				continue
			}
			pool := Pool{Name: deref(ap.Name), Version: deref(ap.CurrentOrchestratorVersion), PowerState: meshversion.PowerRunning}
			if pool.Version == "" {
				pool.Version = deref(ap.OrchestratorVersion)
			}
			if ap.Count != nil {
				pool.Count = int(*ap.Count)
			}
			if ap.PowerState != nil && ap.PowerState.Code != nil {
				pool.PowerState = string(*ap.PowerState.Code)
			}
			c.Pools = append(c.Pools, pool)
		}
		if sm := pr.ServiceMeshProfile; sm != nil && sm.Istio != nil {
			for _, rev := range sm.Istio.Revisions {
				c.Revisions = append(c.Revisions, deref(rev))
			}
		}
	}
	return c, nil
}

// Nodes stands each pool's nodes in for the decision: ARM reports a pool's
// version and count, not its nodes. A stopped pool counts with its version
// (its nodes come back at it).
func (c *Cluster) Nodes() []meshversion.Node {
	var out []meshversion.Node
	for _, p := range c.Pools {
		for i := 0; i < max(p.Count, 1); i++ {
			out = append(out, meshversion.Node{
				Name:           fmt.Sprintf("%s (node %d of %d)", p.Name, i+1, p.Count),
				Pool:           p.Name,
				KubeletVersion: p.Version,
				Ready:          p.PowerState == meshversion.PowerRunning,
			})
		}
	}
	return out
}

// Facts are the decision's inputs as ARM shows them.
func (c *Cluster) Facts(mode meshversion.Mode, featureRegistered bool) meshversion.Facts {
	return meshversion.Facts{Mode: mode, FeatureRegistered: featureRegistered, APIServerVersion: c.KubernetesVersion, Nodes: c.Nodes()}
}

// RevisionCompatibility checks each installed revision against the
// platform's mesh revision profile: which Kubernetes minors it supports.
// It returns one problem per unsupported pair.
func (p *Provider) RevisionCompatibility(ctx context.Context, c *Cluster) ([]string, error) {
	r, err := p.clusters.GetMeshRevisionProfile(ctx, c.Location, "istio", nil)
	if err != nil {
		return nil, p.explain(err, "read the mesh revision profile for "+c.Location)
	}
	supported := map[string][]string{}
	if r.Properties != nil {
		for _, mr := range r.Properties.MeshRevisions {
			if mr == nil {
				continue
			}
			for _, cw := range mr.CompatibleWith {
				if cw != nil && strings.EqualFold(deref(cw.Name), "kubernetes") {
					for _, v := range cw.Versions {
						supported[deref(mr.Revision)] = append(supported[deref(mr.Revision)], deref(v))
					}
				}
			}
		}
	}
	kv, err := meshversion.ParseKube(c.KubernetesVersion)
	if err != nil {
		return nil, err
	}
	minor := meshversion.MinorString(kv)
	var problems []string
	for _, rev := range c.Revisions {
		versions, known := supported[rev]
		if !known {
			problems = append(problems, fmt.Sprintf("revision %s is not in the platform's mesh revision profile for %s", rev, c.Location))
			continue
		}
		ok := false
		for _, v := range versions {
			if v == minor || strings.HasPrefix(c.KubernetesVersion, v+".") {
				ok = true
			}
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("revision %s does not support Kubernetes %s (it supports %s)", rev, minor, strings.Join(versions, ", ")))
		}
	}
	return problems, nil
}

// Update is the platform's forced reconcile (`az aks update`): a PUT of the
// cluster as read, waited on as a long-running operation.
func (p *Provider) Update(ctx context.Context, c *Cluster) error {
	poller, err := p.clusters.BeginCreateOrUpdate(ctx, p.ResourceGroup, p.Cluster, c.raw, nil)
	if err != nil {
		return p.explain(err, "update managed cluster "+p.Cluster)
	}
	if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 2 * time.Second}); err != nil {
		return p.explain(err, "update managed cluster "+p.Cluster)
	}
	return nil
}

// explain turns ARM errors into what a person can act on.
func (p *Provider) explain(err error, doing string) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		if strings.Contains(err.Error(), "DefaultAzureCredential") || strings.Contains(err.Error(), "credential") {
			return fmt.Errorf("%s: not signed in to Azure: %v (run az login, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET)", doing, err)
		}
		return fmt.Errorf("%s: %w", doing, err)
	}
	switch {
	case re.ErrorCode == "SubscriptionNotFound" || re.ErrorCode == "InvalidSubscriptionId":
		return fmt.Errorf("%s: subscription %s not found: check --subscription or AZURE_SUBSCRIPTION_ID (%s)", doing, p.Subscription, re.ErrorCode)
	case re.ErrorCode == "AuthorizationFailed" || re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s: no permission: %s (ask for a role that grants it)", doing, firstLine(re))
	case re.ErrorCode == "ResourceGroupNotFound":
		return fmt.Errorf("%s: resource group %s not found in subscription %s", doing, p.ResourceGroup, p.Subscription)
	case re.ErrorCode == "ResourceNotFound" || re.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: managed cluster %s not found in resource group %s (%s)", doing, p.Cluster, p.ResourceGroup, re.ErrorCode)
	case re.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s: not signed in, or the token was refused: run az login or check AZURE_CLIENT_ID/AZURE_CLIENT_SECRET (%s)", doing, re.ErrorCode)
	case re.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%s: ARM is throttling requests (the SDK retried, honouring Retry-After): try again in a minute", doing)
	}
	return fmt.Errorf("%s: %s: %s", doing, re.ErrorCode, firstLine(re))
}

// firstLine is the message of an ARM error, without the SDK's dump of the
// request and response.
func firstLine(re *azcore.ResponseError) string {
	msg := re.Error()
	for _, l := range strings.Split(msg, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), `"message"`) {
			return strings.Trim(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), `"message":`)), `",`)
		}
	}
	return re.ErrorCode
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// WaitRegistered polls the feature until it is Registered, as the document
// asks, and says how long it has waited if it is not.
func (p *Provider) WaitRegistered(ctx context.Context, name string, every, timeout time.Duration) (Feature, error) {
	return WaitFeature(ctx, name, func(ctx context.Context) (Feature, error) { return p.GetFeature(ctx, name) }, every, timeout)
}

// WaitFeature polls get until the feature is Registered; after timeout it
// says how long it waited and what to do. Both providers wait with it.
func WaitFeature(ctx context.Context, name string, get func(context.Context) (Feature, error), every, timeout time.Duration) (Feature, error) {
	start := time.Now()
	for {
		f, err := get(ctx)
		if err != nil || f.Properties.State == "Registered" {
			return f, err
		}
		if time.Since(start) >= timeout {
			return f, fmt.Errorf("feature %s is still %s after %s: registration can take minutes; run meshaddon feature show --wait again later, then meshaddon provider register",
				name, f.Properties.State, time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-time.After(every):
		}
	}
}
