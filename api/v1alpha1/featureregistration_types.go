package v1alpha1

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KnownFeatures are the features there are, by name. The CRD's validation
// rule lists the same names in lower case.
var KnownFeatures = []string{"IstioNativeSidecarModePreview"}

// FeatureObjectName is the FeatureRegistration's name for a feature: object
// names are lower case, feature names are not.
func FeatureObjectName(feature string) string { return strings.ToLower(feature) }

// FeatureName is the feature's own spelling for a FeatureRegistration's name.
func FeatureName(objectName string) string {
	for _, f := range KnownFeatures {
		if strings.EqualFold(f, objectName) {
			return f
		}
	}
	return objectName
}

// Feature states, as the platform's feature API names them.
const (
	StateNotRegistered = "NotRegistered"
	StateRegistering   = "Registering"
	StateRegistered    = "Registered"
	StateUnregistering = "Unregistering"
)

// FeatureRegistrationSpec is what the operator asked for.
type FeatureRegistrationSpec struct {
	// DesiredState: Registered (feature register) or NotRegistered (feature unregister).
	// +kubebuilder:validation:Enum=Registered;NotRegistered
	// +kubebuilder:default=Registered
	// +optional
	DesiredState string `json:"desiredState,omitempty"`
}

// FeatureRegistrationStatus is the feature's registration as the platform reports it.
type FeatureRegistrationStatus struct {
	// State moves NotRegistered → Registering → Registered, and
	// Registered → Unregistering → NotRegistered, each step taking a while.
	// +kubebuilder:validation:Enum=NotRegistered;Registering;Registered;Unregistering
	// +optional
	State string `json:"state,omitempty"`
	// LastTransitionTime is when State last changed, to the microsecond:
	// the registration delay is timed from it.
	// +optional
	LastTransitionTime *metav1.MicroTime `json:"lastTransitionTime,omitempty"`
	// AppliedState is State as of the last provider refresh: what the mesh acts on.
	// +optional
	AppliedState string `json:"appliedState,omitempty"`
	// RefreshTime is when the provider registration was last refreshed.
	// +optional
	RefreshTime *metav1.Time `json:"refreshTime,omitempty"`
	// LastHandledRefreshAt echoes the last refresh request the manager acted on.
	// +optional
	LastHandledRefreshAt string `json:"lastHandledRefreshAt,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// FeatureRegistration is a preview feature's registration; its name is the
// feature's in lower case (istionativesidecarmodepreview).
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=feature
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="self.metadata.name in ['istionativesidecarmodepreview']",message="unknown feature: the known feature is IstioNativeSidecarModePreview (object name istionativesidecarmodepreview)"
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Applied",type=string,JSONPath=`.status.appliedState`
// +kubebuilder:printcolumn:name="Refreshed",type=date,JSONPath=`.status.refreshTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FeatureRegistration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   FeatureRegistrationSpec   `json:"spec,omitempty"`
	Status FeatureRegistrationStatus `json:"status,omitempty"`
}

// FeatureRegistrationList is a list of FeatureRegistrations.
// +kubebuilder:object:root=true
type FeatureRegistrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FeatureRegistration `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FeatureRegistration{}, &FeatureRegistrationList{})
}
