package manager

import (
	"testing"

	clientfeatures "k8s.io/client-go/features"
)

// The manager's informers stream their first lists unless the user's
// KUBE_FEATURE_WatchListClient says otherwise.
func TestStreamInitialLists(t *testing.T) {
	orig := clientfeatures.FeatureGates()
	t.Cleanup(func() { clientfeatures.ReplaceFeatureGates(orig) })

	streamInitialLists()
	if !clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
		t.Error("WatchListClient is off after streamInitialLists")
	}
	if got, want := clientfeatures.FeatureGates().Enabled(clientfeatures.InformerResourceVersion), orig.Enabled(clientfeatures.InformerResourceVersion); got != want {
		t.Errorf("InformerResourceVersion = %t after streamInitialLists, was %t: other gates must keep their values", got, want)
	}

	clientfeatures.ReplaceFeatureGates(orig)
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	streamInitialLists()
	if clientfeatures.FeatureGates() != orig {
		t.Error("streamInitialLists replaced the gates although KUBE_FEATURE_WatchListClient is set")
	}
}
