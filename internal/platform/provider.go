package platform

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
)

// RefreshProvider is the resource provider's re-registration: it asks the
// manager to apply every feature's current state and waits until it has.
func RefreshProvider(ctx context.Context, cl client.Client, timeout time.Duration) ([]v1alpha1.FeatureRegistration, error) {
	var list v1alpha1.FeatureRegistrationList
	if err := cl.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list features: %w", err)
	}
	now := time.Now().UTC()
	token := now.Format(time.RFC3339Nano)
	for i := range list.Items {
		fr := &list.Items[i]
		patch := client.MergeFrom(fr.DeepCopy())
		if fr.Annotations == nil {
			fr.Annotations = map[string]string{}
		}
		fr.Annotations[v1alpha1.RefreshRequestAnnotation] = token
		if err := cl.Patch(ctx, fr, patch); err != nil {
			return nil, fmt.Errorf("refresh %s: %w", fr.Name, err)
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := cl.List(ctx, &list); err != nil {
			return false, nil
		}
		for _, fr := range list.Items {
			if handled, err := time.Parse(time.RFC3339Nano, fr.Status.LastHandledRefreshAt); err != nil || handled.Before(now) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, &TimeoutError{msg: fmt.Sprintf("the add-on manager did not apply the refresh within %s: is it running? (kubectl get pods -n meshaddon-system, or meshaddon local status)", timeout)}
	}
	return list.Items, nil
}
