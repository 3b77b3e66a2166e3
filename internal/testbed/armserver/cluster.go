package armserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8"
	acsfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/platform"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

const clusterType = "Microsoft.ContainerService/managedClusters"

// clusterID is the managed cluster's resource id, spelled as the platform
// returns it.
func (s *Server) clusterID() string {
	return fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/%s/%s", s.ID.SubscriptionID, s.ID.ResourceGroup, clusterType, s.ID.Cluster)
}

// snapshot is the cluster as the endpoint reads it for one answer.
type snapshot struct {
	version string // the API server's, without the v: 1.34.4
	pools   []nodepool.Pool
	profile *v1alpha1.MeshProfile // nil when the add-on is not set up
}

func (s *Server) snapshot(ctx context.Context) (*snapshot, error) {
	v, err := s.Kube.Discovery().ServerVersion()
	if err != nil {
		return nil, internalError(fmt.Errorf("read the API server's version: %w", err))
	}
	kv, err := meshversion.ParseKube(v.GitVersion)
	if err != nil {
		return nil, internalError(err)
	}
	pools, err := s.Pools.List(ctx)
	if err != nil {
		return nil, internalError(err)
	}
	snap := &snapshot{version: kv.String(), pools: pools}
	var p v1alpha1.MeshProfile
	switch err := s.Client.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); {
	case err == nil:
		snap.profile = &p
	case !apierrors.IsNotFound(err):
		return nil, internalError(err)
	}
	return snap, nil
}

func (snap *snapshot) pool(name string) *nodepool.Pool {
	for i := range snap.pools {
		if snap.pools[i].Name == name {
			return &snap.pools[i]
		}
	}
	return nil
}

// systemPool is the pool in System mode: the one named system, else the
// first by name (the test bed's pools carry no mode).
func (snap *snapshot) systemPool() string {
	names := make([]string, len(snap.pools))
	for i, p := range snap.pools {
		names[i] = p.Name
	}
	if slices.Contains(names, "system") || len(names) == 0 {
		return "system"
	}
	sort.Strings(names)
	return names[0]
}

// currentVersion is what the pool's nodes run: the oldest kubelet, so a
// half-upgraded pool is not reported as upgraded.
func currentVersion(p nodepool.Pool) string {
	var oldest *version.Version
	for _, v := range p.Versions {
		if kv, err := meshversion.ParseKube(v); err == nil && (oldest == nil || kv.LessThan(oldest)) {
			oldest = kv
		}
	}
	if oldest == nil {
		return ""
	}
	return oldest.String()
}

// poolProperties is an agent pool as the platform shows it.
func (s *Server) poolProperties(snap *snapshot, p nodepool.Pool) *armcontainerservice.ManagedClusterAgentPoolProfileProperties {
	current := currentVersion(p)
	target, state := current, "Succeeded"
	if op := s.ops.running(s.clusterID() + "/agentPools/" + p.Name); op != nil {
		state = op.Kind
		if op.Version != "" {
			target = op.Version
		}
	}
	mode := armcontainerservice.AgentPoolModeUser
	if p.Name == snap.systemPool() {
		mode = armcontainerservice.AgentPoolModeSystem
	}
	power := armcontainerservice.CodeRunning
	if p.Stopped {
		power = armcontainerservice.CodeStopped
	}
	return &armcontainerservice.ManagedClusterAgentPoolProfileProperties{
		Count:                      to.Ptr(int32(p.Nodes)),
		VMSize:                     to.Ptr("Standard_D4s_v5"),
		OSDiskSizeGB:               to.Ptr(int32(128)),
		OSDiskType:                 to.Ptr(armcontainerservice.OSDiskTypeManaged),
		OSType:                     to.Ptr(armcontainerservice.OSTypeLinux),
		OSSKU:                      to.Ptr(armcontainerservice.OSSKUUbuntu),
		MaxPods:                    to.Ptr(int32(110)),
		Type:                       to.Ptr(armcontainerservice.AgentPoolTypeVirtualMachineScaleSets),
		Mode:                       to.Ptr(mode),
		EnableAutoScaling:          to.Ptr(false),
		OrchestratorVersion:        to.Ptr(target),
		CurrentOrchestratorVersion: to.Ptr(current),
		ProvisioningState:          to.Ptr(state),
		PowerState:                 &armcontainerservice.PowerState{Code: to.Ptr(power)},
		NodeImageVersion:           to.Ptr("AKSUbuntu-2204gen2containerd-local"),
		UpgradeSettings:            &armcontainerservice.AgentPoolUpgradeSettings{MaxSurge: to.Ptr("1")},
	}
}

// agentPool is the pool as the agent pools API returns it.
func (s *Server) agentPool(props *armcontainerservice.ManagedClusterAgentPoolProfileProperties, name string) armcontainerservice.AgentPool {
	return armcontainerservice.AgentPool{
		ID:         to.Ptr(s.clusterID() + "/agentPools/" + name),
		Name:       to.Ptr(name),
		Type:       to.Ptr(clusterType + "/agentPools"),
		Properties: props,
	}
}

// poolProfile is the pool as the managed cluster embeds it: the same
// fields with its name, converted through the SDK's own JSON.
func poolProfile(props *armcontainerservice.ManagedClusterAgentPoolProfileProperties, name string) *armcontainerservice.ManagedClusterAgentPoolProfile {
	var out armcontainerservice.ManagedClusterAgentPoolProfile
	data, err := json.Marshal(props)
	if err == nil {
		err = json.Unmarshal(data, &out)
	}
	if err != nil {
		panic(err) // the two SDK types share their fields
	}
	out.Name = to.Ptr(name)
	return &out
}

// managedCluster is the cluster as ARM returns it at apiVersion.
func (s *Server) managedCluster(snap *snapshot, apiVersion string) armcontainerservice.ManagedCluster {
	state := "Succeeded"
	if op := s.ops.running(s.clusterID()); op != nil && strings.EqualFold(op.Target, s.clusterID()) {
		state = op.Kind
	}
	var pools []*armcontainerservice.ManagedClusterAgentPoolProfile
	for _, p := range snap.pools {
		pools = append(pools, poolProfile(s.poolProperties(snap, p), p.Name))
	}
	dns := s.ID.Cluster + "-dns"
	nodeRG := fmt.Sprintf("MC_%s_%s_%s", s.ID.ResourceGroup, s.ID.Cluster, s.ID.Location)
	props := &armcontainerservice.ManagedClusterProperties{
		ProvisioningState:        to.Ptr(state),
		PowerState:               &armcontainerservice.PowerState{Code: to.Ptr(armcontainerservice.CodeRunning)},
		KubernetesVersion:        to.Ptr(snap.version),
		CurrentKubernetesVersion: to.Ptr(snap.version),
		DNSPrefix:                to.Ptr(dns),
		Fqdn:                     to.Ptr(dns + ".hcp." + s.ID.Location + ".azmk8s.io"),
		AzurePortalFQDN:          to.Ptr(dns + ".portal.hcp." + s.ID.Location + ".azmk8s.io"),
		AgentPoolProfiles:        pools,
		NodeResourceGroup:        to.Ptr(nodeRG),
		EnableRBAC:               to.Ptr(true),
		MaxAgentPools:            to.Ptr(int32(100)),
		SupportPlan:              to.Ptr(armcontainerservice.KubernetesSupportPlanKubernetesOfficial),
		// What clients read besides the versions: the Azure CLI's update
		// reads the network, service principal and identity profiles.
		NetworkProfile: &armcontainerservice.NetworkProfile{
			NetworkPlugin:   to.Ptr(armcontainerservice.NetworkPluginKubenet),
			ServiceCidr:     to.Ptr("10.0.0.0/16"),
			ServiceCidrs:    to.SliceOfPtrs("10.0.0.0/16"),
			DNSServiceIP:    to.Ptr("10.0.0.10"),
			PodCidr:         to.Ptr("10.244.0.0/16"),
			PodCidrs:        to.SliceOfPtrs("10.244.0.0/16"),
			IPFamilies:      to.SliceOfPtrs(armcontainerservice.IPFamilyIPv4),
			LoadBalancerSKU: to.Ptr(armcontainerservice.LoadBalancerSKUStandard),
			OutboundType:    to.Ptr(armcontainerservice.OutboundTypeLoadBalancer),
			LoadBalancerProfile: &armcontainerservice.ManagedClusterLoadBalancerProfile{
				ManagedOutboundIPs:   &armcontainerservice.ManagedClusterLoadBalancerProfileManagedOutboundIPs{Count: to.Ptr(int32(1))},
				EffectiveOutboundIPs: []*armcontainerservice.ResourceReference{{ID: to.Ptr(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/publicIPAddresses/outbound-ip", s.ID.SubscriptionID, nodeRG))}},
				BackendPoolType:      to.Ptr(armcontainerservice.BackendPoolTypeNodeIPConfiguration),
			},
		},
		// A managed identity cluster: the platform shows "msi" here.
		ServicePrincipalProfile: &armcontainerservice.ManagedClusterServicePrincipalProfile{ClientID: to.Ptr("msi")},
		IdentityProfile: map[string]*armcontainerservice.UserAssignedIdentity{"kubeletidentity": {
			ResourceID: to.Ptr(fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%s-agentpool", s.ID.SubscriptionID, nodeRG, s.ID.Cluster)),
			ClientID:   to.Ptr(s.ID.ClientID),
			ObjectID:   to.Ptr(s.ID.ClientID),
		}},
		OidcIssuerProfile:    &armcontainerservice.ManagedClusterOIDCIssuerProfile{Enabled: to.Ptr(false)},
		AutoUpgradeProfile:   &armcontainerservice.ManagedClusterAutoUpgradeProfile{UpgradeChannel: to.Ptr(armcontainerservice.UpgradeChannelNone), NodeOSUpgradeChannel: to.Ptr(armcontainerservice.NodeOSUpgradeChannelNodeImage)},
		DisableLocalAccounts: to.Ptr(false),
	}
	if atLeast(apiVersion, meshProfileSince) {
		mesh := &armcontainerservice.ServiceMeshProfile{Mode: to.Ptr(armcontainerservice.ServiceMeshModeDisabled)}
		if snap.profile != nil && len(snap.profile.Spec.Revisions) > 0 {
			mesh = &armcontainerservice.ServiceMeshProfile{
				Mode:  to.Ptr(armcontainerservice.ServiceMeshModeIstio),
				Istio: &armcontainerservice.IstioServiceMesh{Revisions: to.SliceOfPtrs(snap.profile.Spec.Revisions...)},
			}
		}
		props.ServiceMeshProfile = mesh
	}
	return armcontainerservice.ManagedCluster{
		ID:       to.Ptr(s.clusterID()),
		Name:     to.Ptr(s.ID.Cluster),
		Type:     to.Ptr(clusterType),
		Location: to.Ptr(s.ID.Location),
		Tags:     s.tags.get(s.clusterID()),
		SKU:      &armcontainerservice.ManagedClusterSKU{Name: to.Ptr(armcontainerservice.ManagedClusterSKUNameBase), Tier: to.Ptr(armcontainerservice.ManagedClusterSKUTierFree)},
		Identity: &armcontainerservice.ManagedClusterIdentity{
			Type:     to.Ptr(armcontainerservice.ResourceIdentityTypeSystemAssigned),
			TenantID: to.Ptr(s.ID.TenantID),
		},
		Properties: props,
	}
}

// step is one agent pool change a PUT asks for, run inside its
// operation; it is data, kept with the operation, so that a restarted
// endpoint can run it again.
type step struct {
	Kind    string `json:"kind"` // the pool's provisioningState meanwhile: Creating, Upgrading, Stopping, Starting
	Pool    string `json:"pool"`
	Version string `json:"version,omitempty"` // a new pool's or an upgrade's version, without the v
	Count   int    `json:"count,omitempty"`   // a new pool's nodes
}

// runStep makes the change; each can run again after an interruption.
func (s *Server) runStep(ctx context.Context, st step) error {
	switch st.Kind {
	case "Creating":
		_, err := s.Pools.Ensure(ctx, nodepool.Spec{Name: st.Pool, Version: "v" + st.Version, Count: st.Count})
		return err
	case "Upgrading":
		return s.Pools.Upgrade(ctx, st.Pool, "v"+st.Version)
	case "Stopping":
		return s.Pools.Stop(ctx, st.Pool)
	case "Starting":
		return s.Pools.Start(ctx, st.Pool)
	}
	return fmt.Errorf("unknown agent pool change %q", st.Kind)
}

// runOperation is an operation's work: its agent pool changes, then, for
// a managed cluster update, the add-on's reconcile.
func (s *Server) runOperation(ctx context.Context, op *operation) error {
	for _, st := range op.Steps {
		if err := s.runStep(ctx, st); err != nil {
			return &Error{Code: "AgentPool" + st.Kind + "Failed", Message: err.Error()}
		}
	}
	if op.Reconcile {
		_, err := platform.Reconcile(ctx, s.Client, s.MeshNamespace, s.ReconcileTimeout)
		if err != nil {
			return &Error{Code: "ReconcileFailed", Message: "the mesh add-on did not reconcile: " + err.Error()}
		}
	}
	return nil
}

// sameVersion compares a requested version (1.29 or 1.29.2) with a full one.
func sameVersion(requested, full string) bool {
	requested = strings.TrimPrefix(requested, "v")
	return requested == full || strings.Count(requested, ".") == 1 && strings.HasPrefix(full, requested+".")
}

// poolStep is what a PUT of pool name with these fields changes: a new
// pool, an upgrade, a stop or a start. A nil step changes nothing.
func (s *Server) poolStep(snap *snapshot, name string, version *string, count *int32, power *armcontainerservice.PowerState) (*step, *Error) {
	bad := func(code, format string, args ...any) (*step, *Error) {
		return nil, &Error{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
	}
	if err := nodepool.ValidateName(name); err != nil {
		return bad("InvalidParameter", "The agent pool name '%s' is invalid: %v.", name, err)
	}
	want := snap.version
	if version != nil && *version != "" {
		want = strings.TrimPrefix(*version, "v")
		if sameVersion(want, snap.version) {
			want = snap.version
		}
	}
	kv, err := meshversion.ParseKube(want)
	if err != nil {
		return bad("InvalidParameter", "The orchestratorVersion '%s' is invalid: %v.", want, err)
	}
	if cp, _ := meshversion.ParseKube(snap.version); cp.LessThan(kv) {
		return bad("NodePoolMcVersionIncompatible", "Node pool version %s is newer than the control plane version %s: node pools cannot run a newer version than the control plane.", want, snap.version)
	}
	p := snap.pool(name)
	if p == nil {
		n := int32(1)
		if count != nil {
			n = *count
		}
		if n < 1 || n > 1000 {
			return bad("InvalidParameter", "The count %d of agent pool %s is out of range [1, 1000].", n, name)
		}
		return &step{Kind: "Creating", Pool: name, Version: kv.String(), Count: int(n)}, nil
	}
	if count != nil && int(*count) != p.Nodes {
		return bad("OperationNotSupported", "Scaling agent pool %s from %d to %d nodes is not supported by the local ARM endpoint: use meshaddon local nodepool add or delete.", name, p.Nodes, *count)
	}
	current := currentVersion(*p)
	if version != nil && *version != "" && !sameVersion(*version, current) {
		// A pool whose nodes report no version has nothing to downgrade from.
		if cv, err := meshversion.ParseKube(current); err == nil && kv.LessThan(cv) {
			return bad("NotAllowedAgentPoolVersionDowngrade", "Agent pool %s runs %s: downgrading it to %s is not allowed.", name, current, want)
		}
		return &step{Kind: "Upgrading", Pool: name, Version: kv.String()}, nil
	}
	if power != nil && power.Code != nil {
		switch {
		case *power.Code == armcontainerservice.CodeStopped && !p.Stopped:
			return &step{Kind: "Stopping", Pool: name}, nil
		case *power.Code == armcontainerservice.CodeRunning && p.Stopped:
			return &step{Kind: "Starting", Pool: name}, nil
		}
	}
	return nil, nil
}

// inProgress is ARM's answer to a change while another one runs.
func inProgress(op *operation) *Error {
	return &Error{Status: http.StatusConflict, Code: "OperationNotAllowed",
		Message: fmt.Sprintf("Operation is not allowed because there's an in progress %s operation (%s) on %s. Please wait for it to finish before starting a new operation.", strings.ToLower(op.Kind), op.ID, op.Target)}
}

// setRevisions changes the MeshProfile's revisions as a serviceMeshProfile
// in a PUT asks; a profile left out of the PUT changes nothing.
func (s *Server) setRevisions(ctx context.Context, snap *snapshot, mesh *armcontainerservice.ServiceMeshProfile) *Error {
	if mesh == nil || snap.profile == nil {
		return nil
	}
	var want []string
	switch {
	case mesh.Mode != nil && *mesh.Mode == armcontainerservice.ServiceMeshModeDisabled:
		want = nil
	case mesh.Istio == nil || mesh.Istio.Revisions == nil:
		return nil
	default:
		for _, r := range mesh.Istio.Revisions {
			if r == nil {
				continue
			}
			if _, err := meshversion.ParseRevision(*r); err != nil {
				return &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: fmt.Sprintf("serviceMeshProfile.istio.revisions: %v.", err)}
			}
			if _, ok := compatibleKubernetes(*r); !ok {
				return &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: fmt.Sprintf("serviceMeshProfile.istio.revisions: revision %s is not in the mesh revision profile of %s (%s).", *r, s.ID.Location, strings.Join(knownRevisions(), ", "))}
			}
			want = append(want, *r)
		}
	}
	if slices.Equal(want, snap.profile.Spec.Revisions) {
		return nil
	}
	patch := client.MergeFrom(snap.profile.DeepCopy())
	snap.profile.Spec.Revisions = want
	if err := s.Client.Patch(ctx, snap.profile, patch); err != nil {
		if apierrors.IsInvalid(err) {
			return &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: "serviceMeshProfile: " + err.Error()}
		}
		return internalError(err)
	}
	return nil
}

func (s *Server) managedClustersServer() *acsfake.ManagedClustersServer {
	return &acsfake.ManagedClustersServer{
		Get: func(ctx context.Context, rg, name string, _ *armcontainerservice.ManagedClustersClientGetOptions) (resp azfake.Responder[armcontainerservice.ManagedClustersClientGetResponse], errResp azfake.ErrorResponder) {
			if !strings.EqualFold(name, s.ID.Cluster) {
				errResp.SetError(notFound(clusterType, name, rg))
				return
			}
			snap, err := s.snapshot(ctx)
			if err != nil {
				errResp.SetError(err)
				return
			}
			resp.SetResponse(http.StatusOK, armcontainerservice.ManagedClustersClientGetResponse{ManagedCluster: s.managedCluster(snap, infoOf(ctx).apiVersion)}, nil)
			return
		},
		BeginCreateOrUpdate: func(ctx context.Context, rg, name string, mc armcontainerservice.ManagedCluster, _ *armcontainerservice.ManagedClustersClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcontainerservice.ManagedClustersClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			out, err := s.putCluster(ctx, name, mc)
			if err != nil {
				errResp.SetError(err)
				return
			}
			resp.SetTerminalResponse(http.StatusOK, armcontainerservice.ManagedClustersClientCreateOrUpdateResponse{ManagedCluster: out}, nil)
			return
		},
		BeginUpdateTags: func(ctx context.Context, rg, name string, tags armcontainerservice.TagsObject, _ *armcontainerservice.ManagedClustersClientBeginUpdateTagsOptions) (resp azfake.PollerResponder[armcontainerservice.ManagedClustersClientUpdateTagsResponse], errResp azfake.ErrorResponder) {
			if !strings.EqualFold(name, s.ID.Cluster) {
				errResp.SetError(notFound(clusterType, name, rg))
				return
			}
			if tags.Tags != nil {
				if err := s.tags.set(s.clusterID(), tags.Tags); err != nil {
					errResp.SetError(internalError(err))
					return
				}
			}
			snap, err := s.snapshot(ctx)
			if err != nil {
				errResp.SetError(err)
				return
			}
			resp.SetTerminalResponse(http.StatusOK, armcontainerservice.ManagedClustersClientUpdateTagsResponse{ManagedCluster: s.managedCluster(snap, infoOf(ctx).apiVersion)}, nil)
			return
		},
		NewListByResourceGroupPager: func(string, *armcontainerservice.ManagedClustersClientListByResourceGroupOptions) (resp azfake.PagerResponder[armcontainerservice.ManagedClustersClientListByResourceGroupResponse]) {
			list, err := s.clusterList()
			if err != nil {
				resp.AddError(err)
				return
			}
			resp.AddPage(http.StatusOK, armcontainerservice.ManagedClustersClientListByResourceGroupResponse{ManagedClusterListResult: list}, nil)
			return
		},
		NewListPager: func(*armcontainerservice.ManagedClustersClientListOptions) (resp azfake.PagerResponder[armcontainerservice.ManagedClustersClientListResponse]) {
			list, err := s.clusterList()
			if err != nil {
				resp.AddError(err)
				return
			}
			resp.AddPage(http.StatusOK, armcontainerservice.ManagedClustersClientListResponse{ManagedClusterListResult: list}, nil)
			return
		},
		GetMeshRevisionProfile: func(_ context.Context, location, mode string, _ *armcontainerservice.ManagedClustersClientGetMeshRevisionProfileOptions) (resp azfake.Responder[armcontainerservice.ManagedClustersClientGetMeshRevisionProfileResponse], errResp azfake.ErrorResponder) {
			if !strings.EqualFold(location, s.ID.Location) || !strings.EqualFold(mode, "istio") {
				errResp.SetError(&Error{Status: http.StatusNotFound, Code: "NotFound", Message: fmt.Sprintf("No mesh revision profile for mode '%s' in location '%s': the local endpoint has mode istio in location %s.", mode, location, s.ID.Location)})
				return
			}
			resp.SetResponse(http.StatusOK, armcontainerservice.ManagedClustersClientGetMeshRevisionProfileResponse{MeshRevisionProfile: s.meshRevisionProfile()}, nil)
			return
		},
		NewListMeshRevisionProfilesPager: func(location string, _ *armcontainerservice.ManagedClustersClientListMeshRevisionProfilesOptions) (resp azfake.PagerResponder[armcontainerservice.ManagedClustersClientListMeshRevisionProfilesResponse]) {
			var list armcontainerservice.MeshRevisionProfileList
			if strings.EqualFold(location, s.ID.Location) {
				p := s.meshRevisionProfile()
				list.Value = []*armcontainerservice.MeshRevisionProfile{&p}
			}
			resp.AddPage(http.StatusOK, armcontainerservice.ManagedClustersClientListMeshRevisionProfilesResponse{MeshRevisionProfileList: list}, nil)
			return
		},
	}
}

// clusterList is the subscription's (and resource group's) one cluster,
// in the newest shape: list pagers carry no api-version to go by.
func (s *Server) clusterList() (armcontainerservice.ManagedClusterListResult, error) {
	snap, err := s.snapshot(context.Background())
	if err != nil {
		return armcontainerservice.ManagedClusterListResult{}, err
	}
	mc := s.managedCluster(snap, aksVersions[len(aksVersions)-1])
	return armcontainerservice.ManagedClusterListResult{Value: []*armcontainerservice.ManagedCluster{&mc}}, nil
}

// putCluster is `az aks update`: it checks what the PUT changes, applies
// the mesh revisions at once and the pool changes in an operation that
// ends with the manager's reconcile, and returns the cluster as Updating.
func (s *Server) putCluster(ctx context.Context, name string, mc armcontainerservice.ManagedCluster) (armcontainerservice.ManagedCluster, error) {
	if !strings.EqualFold(name, s.ID.Cluster) {
		return mc, &Error{Status: http.StatusBadRequest, Code: "OperationNotSupported",
			Message: fmt.Sprintf("The local ARM endpoint serves one managed cluster, %s: creating managed cluster %s is not supported (run meshaddon local up --arm --name %s for another test bed).", s.ID.Cluster, name, name)}
	}
	if op := s.ops.running(s.clusterID()); op != nil {
		return mc, inProgress(op)
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return mc, err
	}
	if mc.Location != nil && !strings.EqualFold(strings.ReplaceAll(*mc.Location, " ", ""), s.ID.Location) {
		return mc, &Error{Status: http.StatusBadRequest, Code: "PropertyChangeNotAllowed", Message: fmt.Sprintf("Changing property 'location' is not allowed: the cluster is in %s.", s.ID.Location)}
	}
	apiVersion := infoOf(ctx).apiVersion
	var steps []step
	if pr := mc.Properties; pr != nil {
		if pr.KubernetesVersion != nil && *pr.KubernetesVersion != "" && !sameVersion(*pr.KubernetesVersion, snap.version) {
			return mc, &Error{Status: http.StatusBadRequest, Code: "OperationNotSupported",
				Message: fmt.Sprintf("The local control plane runs Kubernetes %s and cannot be upgraded to %s: upgrade agent pools (orchestratorVersion) instead.", snap.version, *pr.KubernetesVersion)}
		}
		for _, ap := range pr.AgentPoolProfiles {
			if ap == nil || ap.Name == nil {
				return mc, &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: "Every agentPoolProfiles entry needs a name."}
			}
			st, err := s.poolStep(snap, *ap.Name, ap.OrchestratorVersion, ap.Count, ap.PowerState)
			if err != nil {
				return mc, err
			}
			if st != nil {
				steps = append(steps, *st)
			}
		}
		// Clients of api-versions before serviceMeshProfile cannot send
		// one; a profile left out is unchanged, never removed.
		if atLeast(apiVersion, meshProfileSince) {
			if err := s.setRevisions(ctx, snap, pr.ServiceMeshProfile); err != nil {
				return mc, err
			}
		}
	}
	if mc.Tags != nil {
		if err := s.tags.set(s.clusterID(), mc.Tags); err != nil {
			return mc, internalError(err)
		}
	}
	op, err := s.ops.start(ctx, &operation{Target: s.clusterID(), Kind: "Updating", Steps: steps, Reconcile: true})
	if err != nil {
		return mc, err
	}
	s.pollHeaders(infoOf(ctx).header, op)
	if snap, err = s.snapshot(ctx); err != nil {
		return mc, err
	}
	out := s.managedCluster(snap, apiVersion)
	// The answer to the PUT shows the operation as accepted, even if it
	// has already ended: clients take a terminal provisioningState here as
	// the result and would not poll for a failure.
	out.Properties.ProvisioningState = to.Ptr(op.Kind)
	return out, nil
}

func (s *Server) agentPoolsServer() *acsfake.AgentPoolsServer {
	return &acsfake.AgentPoolsServer{
		Get: func(ctx context.Context, rg, cluster, name string, _ *armcontainerservice.AgentPoolsClientGetOptions) (resp azfake.Responder[armcontainerservice.AgentPoolsClientGetResponse], errResp azfake.ErrorResponder) {
			snap, err := s.poolsOf(ctx, rg, cluster)
			if err != nil {
				errResp.SetError(err)
				return
			}
			p := snap.pool(name)
			if p == nil {
				errResp.SetError(notFound(clusterType+"/"+cluster+"/agentPools", name, rg))
				return
			}
			resp.SetResponse(http.StatusOK, armcontainerservice.AgentPoolsClientGetResponse{AgentPool: s.agentPool(s.poolProperties(snap, *p), name)}, nil)
			return
		},
		NewListPager: func(rg, cluster string, _ *armcontainerservice.AgentPoolsClientListOptions) (resp azfake.PagerResponder[armcontainerservice.AgentPoolsClientListResponse]) {
			snap, err := s.poolsOf(context.Background(), rg, cluster)
			if err != nil {
				resp.AddError(err)
				return
			}
			var list armcontainerservice.AgentPoolListResult
			for _, p := range snap.pools {
				ap := s.agentPool(s.poolProperties(snap, p), p.Name)
				list.Value = append(list.Value, &ap)
			}
			resp.AddPage(http.StatusOK, armcontainerservice.AgentPoolsClientListResponse{AgentPoolListResult: list}, nil)
			return
		},
		BeginCreateOrUpdate: func(ctx context.Context, rg, cluster, name string, ap armcontainerservice.AgentPool, _ *armcontainerservice.AgentPoolsClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcontainerservice.AgentPoolsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			out, status, err := s.putPool(ctx, rg, cluster, name, ap)
			if err != nil {
				errResp.SetError(err)
				return
			}
			resp.SetTerminalResponse(status, armcontainerservice.AgentPoolsClientCreateOrUpdateResponse{AgentPool: out}, nil)
			return
		},
	}
}

// poolsOf reads the cluster for an agent pool call, after checking the
// parent cluster's name.
func (s *Server) poolsOf(ctx context.Context, rg, cluster string) (*snapshot, error) {
	if !strings.EqualFold(cluster, s.ID.Cluster) {
		return nil, notFound(clusterType, cluster, rg)
	}
	return s.snapshot(ctx)
}

// putPool creates or changes one agent pool in an operation: an upgrade
// with a new orchestratorVersion, a stop or start with powerState.
func (s *Server) putPool(ctx context.Context, rg, cluster, name string, ap armcontainerservice.AgentPool) (armcontainerservice.AgentPool, int, error) {
	snap, err := s.poolsOf(ctx, rg, cluster)
	if err != nil {
		return ap, 0, err
	}
	target := s.clusterID() + "/agentPools/" + name
	if op := s.ops.running(target); op != nil {
		return ap, 0, inProgress(op)
	}
	if op := s.ops.running(s.clusterID()); op != nil && strings.EqualFold(op.Target, s.clusterID()) {
		return ap, 0, inProgress(op)
	}
	props := ap.Properties
	if props == nil {
		props = &armcontainerservice.ManagedClusterAgentPoolProfileProperties{}
	}
	st, serr := s.poolStep(snap, name, props.OrchestratorVersion, props.Count, props.PowerState)
	if serr != nil {
		return ap, 0, serr
	}
	status := http.StatusOK
	if st != nil {
		if snap.pool(name) == nil {
			status = http.StatusCreated
		}
		op, err := s.ops.start(ctx, &operation{Target: target, Kind: st.Kind, Version: st.Version, Steps: []step{*st}})
		if err != nil {
			return ap, 0, err
		}
		s.pollHeaders(infoOf(ctx).header, op)
	}
	if snap, err = s.snapshot(ctx); err != nil {
		return ap, 0, err
	}
	p := snap.pool(name)
	if p == nil {
		// Created in the background: show the request as accepted.
		props.ProvisioningState = to.Ptr("Creating")
		props.CurrentOrchestratorVersion = to.Ptr(st.Version)
		props.OrchestratorVersion = to.Ptr(st.Version)
		return s.agentPool(props, name), status, nil
	}
	props = s.poolProperties(snap, *p)
	if st != nil {
		props.ProvisioningState = to.Ptr(st.Kind) // accepted; see putCluster
	}
	return s.agentPool(props, name), status, nil
}

// --- mesh revision profile ---

// compatibleKubernetes is the platform's support window of a revision on
// the test bed: asm-1-NN supports Kubernetes 1.(NN+5) to 1.(NN+9), the
// five minors the platform publishes for each revision.
func compatibleKubernetes(revision string) ([]string, bool) {
	r, err := meshversion.ParseRevision(revision)
	if err != nil || r.Minor < 20 || r.Minor > 28 {
		return nil, false
	}
	var out []string
	for m := r.Minor + 5; m <= r.Minor+9; m++ {
		out = append(out, fmt.Sprintf("1.%d", m))
	}
	return out, true
}

func knownRevisions() []string {
	var out []string
	for m := 20; m <= 28; m++ {
		out = append(out, fmt.Sprintf("asm-1-%d", m))
	}
	return out
}

func (s *Server) meshRevisionProfile() armcontainerservice.MeshRevisionProfile {
	var revs []*armcontainerservice.MeshRevision
	known := knownRevisions()
	for i, rev := range known {
		k8s, _ := compatibleKubernetes(rev)
		revs = append(revs, &armcontainerservice.MeshRevision{
			Revision:       to.Ptr(rev),
			Upgrades:       to.SliceOfPtrs(known[i+1 : min(i+3, len(known))]...),
			CompatibleWith: []*armcontainerservice.CompatibleVersions{{Name: to.Ptr("kubernetes"), Versions: to.SliceOfPtrs(k8s...)}},
		})
	}
	return armcontainerservice.MeshRevisionProfile{
		ID:         to.Ptr(fmt.Sprintf("/subscriptions/%s/providers/Microsoft.ContainerService/locations/%s/meshRevisionProfiles/istio", s.ID.SubscriptionID, s.ID.Location)),
		Name:       to.Ptr("istio"),
		Type:       to.Ptr("Microsoft.ContainerService/locations/meshRevisionProfiles"),
		Properties: &armcontainerservice.MeshRevisionProfileProperties{MeshRevisions: revs},
	}
}
