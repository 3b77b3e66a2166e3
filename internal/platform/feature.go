package platform

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
)

// SetFeature records the desired state of feature name (Registered or
// NotRegistered) and waits briefly for the manager to start the
// transition, so the state returned is the platform's answer. A feature
// never registered that is unregistered is left without an object.
func SetFeature(ctx context.Context, cl client.Client, name, desired string) (*v1alpha1.FeatureRegistration, error) {
	fr := &v1alpha1.FeatureRegistration{}
	err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.FeatureObjectName(name)}, fr)
	switch {
	case apierrors.IsNotFound(err):
		if desired == v1alpha1.StateNotRegistered {
			return &v1alpha1.FeatureRegistration{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.FeatureObjectName(name)}}, nil
		}
		fr = &v1alpha1.FeatureRegistration{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.FeatureObjectName(name)}, Spec: v1alpha1.FeatureRegistrationSpec{DesiredState: desired}}
		if err := cl.Create(ctx, fr); err != nil {
			return nil, fmt.Errorf("register %s: %w", name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("read feature %s: %w", name, err)
	case fr.Spec.DesiredState != desired:
		patch := client.MergeFrom(fr.DeepCopy())
		fr.Spec.DesiredState = desired
		if err := cl.Patch(ctx, fr, patch); err != nil {
			return nil, fmt.Errorf("update feature %s: %w", name, err)
		}
	}
	moving := map[string][]string{
		v1alpha1.StateRegistered:    {v1alpha1.StateRegistering, v1alpha1.StateRegistered},
		v1alpha1.StateNotRegistered: {v1alpha1.StateUnregistering, v1alpha1.StateNotRegistered},
	}[desired]
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.FeatureObjectName(name)}, fr); err != nil {
			return false, nil
		}
		return slices.Contains(moving, fr.Status.State), nil
	})
	return fr, nil
}

// FeatureState is the state the platform shows for a feature; one never
// asked for (no object, or no status yet) is NotRegistered.
func FeatureState(fr *v1alpha1.FeatureRegistration) string {
	if fr != nil && fr.Status.State != "" {
		return fr.Status.State
	}
	return v1alpha1.StateNotRegistered
}

// GetFeature reads feature name; a missing object is not an error.
func GetFeature(ctx context.Context, cl client.Client, name string) (*v1alpha1.FeatureRegistration, error) {
	fr := &v1alpha1.FeatureRegistration{}
	err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.FeatureObjectName(name)}, fr)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read feature %s: %w", name, err)
	}
	return fr, nil
}

// ListFeatures returns every known feature with its object (nil when the
// feature was never asked for), in the order of v1alpha1.KnownFeatures.
func ListFeatures(ctx context.Context, cl client.Client) (map[string]*v1alpha1.FeatureRegistration, error) {
	var list v1alpha1.FeatureRegistrationList
	if err := cl.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list features: %w", err)
	}
	out := map[string]*v1alpha1.FeatureRegistration{}
	for _, name := range v1alpha1.KnownFeatures {
		out[name] = nil
		for i := range list.Items {
			if list.Items[i].Name == v1alpha1.FeatureObjectName(name) {
				out[name] = &list.Items[i]
			}
		}
	}
	return out, nil
}
