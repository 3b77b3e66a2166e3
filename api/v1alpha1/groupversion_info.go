// Package v1alpha1 is the meshaddon.dev API: the MeshProfile that says how
// the mesh injects sidecars, and the FeatureRegistration of preview features.
// +kubebuilder:object:generate=true
// +groupName=meshaddon.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API's group and version.
	GroupVersion = schema.GroupVersion{Group: "meshaddon.dev", Version: "v1alpha1"}
	// SchemeBuilder registers the types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}
	// AddToScheme adds the types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Annotations that ask the manager to act now, in the style of Flux's
// reconcile.fluxcd.io/requestedAt: the CLI writes a fresh token, the manager
// echoes it into status when it has acted.
const (
	// ReconcileRequestAnnotation on the MeshProfile forces a reconcile (the
	// platform's "update"); status.lastHandledReconcileAt echoes it.
	ReconcileRequestAnnotation = "meshaddon.dev/reconcile-requested-at"
	// RefreshRequestAnnotation on a FeatureRegistration refreshes the
	// provider registration; status.lastHandledRefreshAt echoes it.
	RefreshRequestAnnotation = "meshaddon.dev/refresh-requested-at"
)
