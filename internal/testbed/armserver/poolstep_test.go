package armserver

import (
	"testing"

	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

// A pool whose nodes report no kubelet version (a node joining, or one
// whose status was wiped) can still be upgraded: there is no version to
// downgrade from. This panicked in LessThan(nil).
func TestPoolStepWithoutNodeVersions(t *testing.T) {
	for _, versions := range [][]string{nil, {""}, {"not-a-version"}} {
		snap := &snapshot{version: "1.34.4", pools: []nodepool.Pool{{Name: "old", Versions: versions, Nodes: 1, Ready: 1}}}
		want := "1.34"
		st, armErr := (&Server{}).poolStep(snap, "old", &want, nil, nil)
		if armErr != nil {
			t.Fatalf("versions %q: %v", versions, armErr.Message)
		}
		if st == nil || st.Kind != "Upgrading" || st.Version != "1.34.4" {
			t.Errorf("versions %q: step %+v, want Upgrading to 1.34.4", versions, st)
		}
	}
}

// Whatever the request and the nodes say, the endpoint answers with a step
// or ARM's error, never a panic; and it never takes a pool backwards.
func FuzzPoolStep(f *testing.F) {
	for _, seed := range [][2]string{{"1.34", "v1.28.9"}, {"1.28.9", "v1.34.4"}, {"v1.30", ""}, {"", "v1.29.2"}, {"1", "x"}, {"1.34.4.5", "v1.34.4-eks-1"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, requested, nodeVersion string) {
		snap := &snapshot{version: "1.34.4", pools: []nodepool.Pool{{Name: "pool", Versions: []string{nodeVersion}, Nodes: 1}}}
		st, armErr := (&Server{}).poolStep(snap, "pool", &requested, nil, nil)
		if armErr != nil {
			if armErr.Code == "" || armErr.Message == "" {
				t.Errorf("error without code or message: %+v", armErr)
			}
			return
		}
		if st == nil || st.Kind != "Upgrading" {
			return
		}
		to, err := meshversion.ParseKube(st.Version)
		if err != nil {
			t.Fatalf("upgrade to %q, not a version", st.Version)
		}
		if from, err := meshversion.ParseKube(nodeVersion); err == nil && to.LessThan(from) {
			t.Errorf("requested %q on nodes at %q: a downgrade to %s", requested, nodeVersion, to)
		}
	})
}
