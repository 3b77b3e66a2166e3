package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshProfileName is the name of the one MeshProfile of a cluster.
const MeshProfileName = "default"

// MeshProfileSpec says which mesh revisions are installed and how they inject.
type MeshProfileSpec struct {
	// Revisions are the installed mesh revisions, asm-1-NN.
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:Pattern=`^asm-1-(0|[1-9][0-9]{0,2})$`
	// +kubebuilder:validation:items:MaxLength=9
	// +optional
	Revisions []string `json:"revisions,omitempty"`

	// NativeSidecarMode: Auto decides from the cluster's facts; Enabled injects
	// native sidecars wherever the versions allow, even with old nodes
	// (then Degraded); Disabled always injects classic sidecars.
	// +kubebuilder:validation:Enum=Auto;Enabled;Disabled
	// +kubebuilder:default=Auto
	// +optional
	NativeSidecarMode string `json:"nativeSidecarMode,omitempty"`

	// Origin is the kind of cluster the mesh was set up on. NewCluster: the
	// mesh was installed with the cluster, so it gets native sidecars by
	// default when the cluster qualifies; ExistingCluster: the mesh predates
	// the mode, which needs the feature flag. Set at creation only.
	// +kubebuilder:validation:Enum=NewCluster;ExistingCluster
	// +kubebuilder:default=ExistingCluster
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="origin is fixed when the profile is created"
	// +optional
	Origin string `json:"origin,omitempty"`

	// OldNodes is what a node whose kubelet cannot run sidecar containers
	// does to the mesh. Classic: every revision falls back to classic
	// sidecars (as Istio's own auto mode does, istio/istio#48794). Guard:
	// the manager's placement webhook keeps native pods off such nodes and
	// the mesh stays native; while the webhook is unhealthy, Classic.
	// +kubebuilder:validation:Enum=Classic;Guard
	// +kubebuilder:default=Classic
	// +optional
	OldNodes string `json:"oldNodes,omitempty"`
}

// Values of spec.oldNodes.
const (
	OldNodesClassic = "Classic"
	OldNodesGuard   = "Guard"
)

// GuardStatus is the placement guard as the manager sees it.
type GuardStatus struct {
	// Healthy: the webhook serves with a valid certificate and its
	// configuration exists and points at it.
	Healthy bool `json:"healthy"`
	// Message says why it is unhealthy, or what it guards.
	// +optional
	Message string `json:"message,omitempty"`
	// ExcludedNodes counts the nodes labelled unable to run sidecar containers.
	ExcludedNodes int32 `json:"excludedNodes"`
	// Excluded names up to 20 of them, sorted.
	// +optional
	Excluded []string `json:"excluded,omitempty"`
	// CapableNodes counts the Ready nodes native pods may go to.
	CapableNodes int32 `json:"capableNodes"`
}

// Origins of a MeshProfile.
const (
	OriginNewCluster      = "NewCluster"
	OriginExistingCluster = "ExistingCluster"
)

// Condition types of a MeshProfile.
const (
	ConditionFeatureRegistered     = "FeatureRegistered"
	ConditionVersionsCompatible    = "VersionsCompatible"
	ConditionNativeSidecarsEnabled = "NativeSidecarsEnabled"
	ConditionReconciled            = "Reconciled"
	ConditionDegraded              = "Degraded"
)

// Reasons of the Reconciled condition of a manager in observe mode (it
// never writes istiod): ObserveOnly while an istiod differs from the
// decision, its message saying what the manager would write; Observed when
// every istiod already matches. precheck reads them as the manager's verdict.
const (
	ReasonObserveOnly = "ObserveOnly"
	ReasonObserved    = "Observed"
)

// NodePoolStatus is one node pool as its nodes show it.
type NodePoolStatus struct {
	Name string `json:"name"`
	// KubeletVersions are the distinct kubelet versions of the pool's nodes.
	// +optional
	KubeletVersions []string `json:"kubeletVersions,omitempty"`
	Nodes           int32    `json:"nodes"`
	Ready           int32    `json:"ready"`
	// PowerState is Stopped when the pool has nodes and none is Ready.
	PowerState string `json:"powerState"`
}

// RevisionStatus is how one revision injects, and why.
type RevisionStatus struct {
	Name string `json:"name"`
	// Mode is the effective injection: native or classic.
	// +kubebuilder:validation:Enum=native;classic
	Mode string `json:"mode"`
	// Reason is a CamelCase word for the decision; Message explains it.
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Deployment is the istiod Deployment the decision was written to.
	// +optional
	Deployment string `json:"deployment,omitempty"`
	// EnableNativeSidecars is the ENABLE_NATIVE_SIDECARS value decided for
	// istiod: "true" for native, "false" for classic.
	// +optional
	EnableNativeSidecars string `json:"enableNativeSidecars,omitempty"`
	// IstiodEnableNativeSidecars is the value istiod's Deployment has ("unset"
	// when absent): the decided one once the manager wrote it; when they
	// differ the write failed and Reconciled is False saying why.
	// +optional
	IstiodEnableNativeSidecars string `json:"istiodEnableNativeSidecars,omitempty"`
}

// MeshProfileStatus is what the manager observed and did.
type MeshProfileStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Policy is the version policy the manager decides with.
	// +optional
	Policy string `json:"policy,omitempty"`
	// APIServerVersion is the control plane's version.
	// +optional
	APIServerVersion string `json:"apiServerVersion,omitempty"`
	// CreatedQualifying is true when the profile was created as a new
	// cluster's on a cluster that already qualified. Decided once.
	// +optional
	CreatedQualifying *bool `json:"createdQualifying,omitempty"`
	// +listType=map
	// +listMapKey=name
	// +optional
	NodePools []NodePoolStatus `json:"nodePools,omitempty"`
	// +listType=map
	// +listMapKey=name
	// +optional
	Revisions []RevisionStatus `json:"revisions,omitempty"`
	// LastHandledReconcileAt echoes the last reconcile request the manager acted on.
	// +optional
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`
	// Pods counts the cluster's pods by how they were injected, kept by the
	// manager from a watch of pod metadata.
	// +optional
	Pods *PodCensus `json:"pods,omitempty"`
	// Guard is the placement guard's state when spec.oldNodes is Guard.
	// +optional
	Guard *GuardStatus `json:"guard,omitempty"`
}

const (
	// CensusListMax bounds the lists of a PodCensus; the counts are complete.
	CensusListMax = 20
	// CensusHeartbeat is how often the manager confirms an unchanged census.
	CensusHeartbeat = 30 * time.Second
)

// PodCensus is the manager's running count of pods by injection mode: what
// precheck reports without listing every pod of a big cluster. The manager
// writes it within a second of a change and confirms it at least every
// CensusHeartbeat, so a stale ObservedTime means no manager keeps it.
type PodCensus struct {
	// ObservedTime is when the manager last wrote or confirmed the counts.
	ObservedTime metav1.Time `json:"observedTime"`
	// PodsResourceVersion is the resourceVersion of the last pod change
	// the counts include. Used only as a watch's starting point: a watch of
	// pods from it shows whether any pod was created or deleted since.
	// +optional
	PodsResourceVersion string `json:"podsResourceVersion,omitempty"`
	// Total is every pod of the cluster; NotInjected those without istio-proxy.
	Total       int32 `json:"total"`
	NotInjected int32 `json:"notInjected"`
	// Revisions count the injected pods by the revision that injected them.
	// +listType=map
	// +listMapKey=name
	// +optional
	Revisions []RevisionPods `json:"revisions,omitempty"`
	// Overrides are pods annotated sidecar.istio.io/nativeSidecar, as
	// namespace/name=value, sorted, at most CensusListMax of OverrideCount.
	// +optional
	Overrides     []string `json:"overrides,omitempty"`
	OverrideCount int32    `json:"overrideCount"`
	// ClassicJobs are the Jobs and CronJobs whose pods run classic sidecars,
	// as namespace/Kind/name, sorted, at most CensusListMax of ClassicJobCount.
	// +optional
	ClassicJobs     []string `json:"classicJobs,omitempty"`
	ClassicJobCount int32    `json:"classicJobCount"`
}

// RevisionPods counts one revision's injected pods by mode. Name is empty
// for pods whose injecting revision cannot be told.
type RevisionPods struct {
	Name    string `json:"name"`
	Native  int32  `json:"native"`
	Classic int32  `json:"classic"`
}

// MeshProfile is the mesh add-on's configuration: one per cluster, named default.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=mp
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default'",message="a cluster has one MeshProfile and it is named default"
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.nativeSidecarMode`
// +kubebuilder:printcolumn:name="Revisions",type=string,JSONPath=`.spec.revisions`
// +kubebuilder:printcolumn:name="Native",type=string,JSONPath=`.status.conditions[?(@.type=="NativeSidecarsEnabled")].status`
// +kubebuilder:printcolumn:name="Reconciled",type=string,JSONPath=`.status.conditions[?(@.type=="Reconciled")].status`
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MeshProfileSpec   `json:"spec,omitempty"`
	Status MeshProfileStatus `json:"status,omitempty"`
}

// MeshProfileList is a list of MeshProfiles.
// +kubebuilder:object:root=true
type MeshProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshProfile `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MeshProfile{}, &MeshProfileList{})
}
