package precheck

import (
	"context"
	"strings"
	"testing"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8"

	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/azure/azurefake"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// The Feature, Control plane, Node pools and Mesh checks read ARM's facts
// with --provider aks; these run them against the SDK's fake servers.
func TestChecksFromARM(t *testing.T) {
	w := &azurefake.World{
		KnownFeature: meshversion.FeatureNativeSidecarPreview,
		FeatureState: "Registered",
		Cluster: azurefake.Cluster("1.34.1", []string{"asm-1-26"},
			azurefake.Pool("system", "1.34.1", 3, armcontainerservice.CodeRunning),
			azurefake.Pool("batch", "1.28.9", 2, armcontainerservice.CodeStopped)),
		Compatible: map[string][]string{"asm-1-26": {"1.30", "1.31", "1.32"}},
	}
	p, err := azure.New(azure.Target{Subscription: "sub", ResourceGroup: "rg", Cluster: "aks"}, &azfake.TokenCredential{}, w.Options())
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{ARM: p, Policy: meshversion.DefaultPolicy}
	ctx := context.Background()
	run := func(check func(context.Context, *Env) ([]Result, error)) string {
		t.Helper()
		rs, err := check(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, r := range rs {
			lines = append(lines, string(r.Status)+": "+r.Message+" "+strings.Join(r.Details, " "))
		}
		return strings.Join(lines, "\n")
	}
	for _, tc := range []struct {
		name  string
		check func(context.Context, *Env) ([]Result, error)
		want  []string
	}{
		{"feature", checkFeature, []string{"ok: IstioNativeSidecarModePreview is Registered in subscription sub"}},
		{"api server", checkAPIServer, []string{"ok: the API server runs 1.34.1"}},
		{"pools", checkPools, []string{"ok: pool system: 3 node(s), 3 Ready, kubelet 1.34.1, running", "warn: pool batch: 2 node(s), 0 Ready, kubelet 1.28.9, stopped"}},
		{"node versions", checkNodeVersions, []string{"fail: pool batch has 2 node(s) on kubelet 1.28.9"}},
		{"revisions", checkRevisions, []string{"ok: asm-1-26 is asm-1-20 or newer"}},
		{"compatibility", checkRevisionCompatibility, []string{"fail: revision asm-1-26 does not support Kubernetes 1.34 (it supports 1.30, 1.31, 1.32)"}},
	} {
		got := run(tc.check)
		for _, want := range tc.want {
			if !strings.Contains(got, want) {
				t.Errorf("%s: got\n%s\nwant %q", tc.name, got, want)
			}
		}
	}
}
