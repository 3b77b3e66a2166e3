package azure_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8"

	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/azure/azurefake"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

const running = armcontainerservice.CodeRunning

func provider(t *testing.T, w *azurefake.World) *azure.Provider {
	t.Helper()
	if w.KnownFeature == "" {
		w.KnownFeature = meshversion.FeatureNativeSidecarPreview
	}
	p, err := azure.New(azure.Target{Subscription: "00000000-0000-0000-0000-000000000000", ResourceGroup: "rg", Cluster: "aks"}, &azfake.TokenCredential{}, w.Options())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDocumentFlowThroughTheSDK(t *testing.T) {
	w := &azurefake.World{Cluster: azurefake.Cluster("1.34.1", []string{"asm-1-27"},
		azurefake.Pool("system", "1.34.1", 3, running), azurefake.Pool("old", "1.28.9", 2, running))}
	p := provider(t, w)
	ctx := context.Background()

	f, err := p.RegisterFeature(ctx, meshversion.FeatureNativeSidecarPreview)
	if err != nil || f.Properties.State != "Registering" || f.Name != "Microsoft.ContainerService/IstioNativeSidecarModePreview" {
		t.Fatalf("register: %+v %v", f, err)
	}
	f, err = p.WaitRegistered(ctx, meshversion.FeatureNativeSidecarPreview, time.Millisecond, time.Second)
	if err != nil || f.Properties.State != "Registered" {
		t.Fatalf("wait registered: %+v %v", f, err)
	}
	if list, err := p.ListFeatures(ctx); err != nil || len(list) != 1 || list[0].Properties.State != "Registered" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if state, err := p.RegisterProvider(ctx); err != nil || state != "Registered" {
		t.Fatalf("provider register: %q %v", state, err)
	}

	c, err := p.GetCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.KubernetesVersion != "1.34.1" || len(c.Pools) != 2 || c.Pools[1].Version != "1.28.9" || c.Revisions[0] != "asm-1-27" {
		t.Fatalf("cluster: %+v", c)
	}
	// The in-cluster rules, from ARM's facts: the old pool keeps it classic.
	d := meshversion.Decide(meshversion.DefaultPolicy, c.Facts(meshversion.ModeAuto, true), "asm-1-27")
	if d.Injection != meshversion.Classic || d.Reason != "NodesTooOld" || !strings.Contains(d.Message, "pool old has 2 node(s) on kubelet 1.28.9") {
		t.Fatalf("decision with a 1.28 pool: %+v", d)
	}
	// After the pool's upgrade, native.
	w.Do(func(w *azurefake.World) {
		w.Cluster = azurefake.Cluster("1.34.1", []string{"asm-1-27"}, azurefake.Pool("system", "1.34.1", 3, running), azurefake.Pool("old", "1.34.1", 2, running))
	})
	c, _ = p.GetCluster(ctx)
	if d := meshversion.Decide(meshversion.DefaultPolicy, c.Facts(meshversion.ModeAuto, true), "asm-1-27"); d.Injection != meshversion.Native {
		t.Fatalf("decision after the upgrade: %+v", d)
	}
	if err := p.Update(ctx, c); err != nil || w.Puts != 1 {
		t.Fatalf("update: puts %d, %v", w.Puts, err)
	}
	if f, err := p.UnregisterFeature(ctx, meshversion.FeatureNativeSidecarPreview); err != nil || f.Properties.State != "Unregistering" {
		t.Fatalf("unregister: %+v %v", f, err)
	}
}

func TestRevisionCompatibility(t *testing.T) {
	w := &azurefake.World{
		Cluster:    azurefake.Cluster("1.34.1", []string{"asm-1-26", "asm-1-27", "asm-1-19"}, azurefake.Pool("system", "1.34.1", 1, running)),
		Compatible: map[string][]string{"asm-1-26": {"1.30", "1.31", "1.32"}, "asm-1-27": {"1.31", "1.32", "1.33", "1.34"}},
	}
	p := provider(t, w)
	c, err := p.GetCluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	problems, err := p.RevisionCompatibility(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(problems, "\n")
	want := "revision asm-1-26 does not support Kubernetes 1.34 (it supports 1.30, 1.31, 1.32)\nrevision asm-1-19 is not in the platform's mesh revision profile for westeurope"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestErrorsSayWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   string
	}{
		{http.StatusNotFound, "ResourceNotFound", "managed cluster aks not found in resource group rg"},
		{http.StatusNotFound, "ResourceGroupNotFound", "resource group rg not found"},
		{http.StatusNotFound, "SubscriptionNotFound", "subscription 00000000-0000-0000-0000-000000000000 not found"},
		{http.StatusForbidden, "AuthorizationFailed", "no permission"},
		{http.StatusUnauthorized, "InvalidAuthenticationToken", "not signed in"},
	} {
		w := &azurefake.World{GetErr: &azfake.ErrorResponder{}}
		w.GetErr.SetResponseError(tc.status, tc.code)
		_, err := provider(t, w).GetCluster(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.code, err, tc.want)
		}
	}
	// Throttling: the SDK's retry policy honours Retry-After (retries are
	// off here to keep the test fast); what is left is said plainly.
	w := &azurefake.World{GetErr: &azfake.ErrorResponder{}, KnownFeature: meshversion.FeatureNativeSidecarPreview}
	w.GetErr.SetResponseError(http.StatusTooManyRequests, "TooManyRequests")
	opts := w.Options()
	opts.Retry.MaxRetries = -1
	p, err := azure.New(azure.Target{Subscription: "s", ResourceGroup: "rg", Cluster: "aks"}, &azfake.TokenCredential{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetCluster(context.Background()); err == nil || !strings.Contains(err.Error(), "throttling") || !strings.Contains(err.Error(), "Retry-After") {
		t.Errorf("429: %v", err)
	}
	if err := (azure.Target{Subscription: "s"}).Validate(); err == nil || !strings.Contains(err.Error(), "--resource-group (or AZURE_RESOURCE_GROUP), --managed-cluster") {
		t.Errorf("Validate: %v", err)
	}
}

func TestFeatureStuckInRegisteringSaysHowLong(t *testing.T) {
	w := &azurefake.World{FeatureState: "Registering", Stuck: true}
	p := provider(t, w)
	_, err := p.WaitRegistered(context.Background(), meshversion.FeatureNativeSidecarPreview, time.Millisecond, 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "is still Registering after") || !strings.Contains(err.Error(), "meshaddon provider register") {
		t.Errorf("stuck feature: %v", err)
	}
	_, err = p.WaitRegistered(context.Background(), "NoSuchFeature", time.Millisecond, 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "FeatureNotFound") {
		t.Errorf("unknown feature: %v", err)
	}
}
