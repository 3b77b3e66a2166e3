package precheck

import (
	"strings"
	"testing"
)

func TestSplitRefusesNamespacesAndWorkloads(t *testing.T) {
	r := &Report{Groups: []GroupReport{
		{Name: "Admission", Checks: []CheckReport{{Name: "native sidecar admitted in each mesh namespace", Results: []Result{
			{Status: OK, Message: "1 of 3 proven"},
			{Status: Fail, Message: "hostile, other: stripped", Namespaces: []string{"hostile", "other"}},
			{Status: Fail, Message: "mix/Deployment/legacy: stripped", Namespaces: []string{"mix"}, Workload: "Deployment/legacy"},
			{Status: Warn, Message: "side: unproven", Namespaces: []string{"side"}},
		}}}},
		{Name: "Resources", Checks: []CheckReport{{Name: "requests, limits and quotas of native pods", Results: []Result{
			{Status: Fail, Message: "mix/Deployment/withinit: LimitRange", Namespaces: []string{"mix"}, Workload: "Deployment/withinit", Object: "LimitRange/lr"},
			{Status: Warn, Message: "mix/Deployment/web: quota", Namespaces: []string{"mix"}, Workload: "Deployment/web"},
		}}}},
	}}
	ref, global := r.Split()
	if global != nil {
		t.Fatalf("scoped failures only, yet a global report: %+v", global)
	}
	for _, c := range []struct{ ns, w, want string }{
		{"hostile", "Deployment/a", "hostile, other: stripped"},
		{"other", "StatefulSet/b", "hostile, other: stripped"},
		{"mix", "Deployment/legacy", "mix/Deployment/legacy: stripped"},
		{"mix", "Deployment/withinit", "mix/Deployment/withinit: LimitRange"},
		{"mix", "Deployment/web", ""}, // a warning refuses nothing
		{"side", "Deployment/a", ""},
	} {
		if got := ref.Why(c.ns, c.w); got != c.want {
			t.Errorf("Why(%s, %s) = %q, want %q", c.ns, c.w, got, c.want)
		}
	}

	// A failure elsewhere, or a scoped one that names no namespace, stands
	// for the whole cluster.
	r.Groups = append(r.Groups, GroupReport{Name: "Node pools", Checks: []CheckReport{{Name: "node versions", Results: []Result{
		{Status: OK, Message: "pool a"}, {Status: Fail, Message: "pool old is 1.28"}}}}})
	r.Groups[0].Checks[0].Results = append(r.Groups[0].Checks[0].Results, Result{Status: Fail, Message: "cannot tell"})
	_, global = r.Split()
	if global == nil || len(global.Groups) != 2 {
		t.Fatalf("global = %+v, want the admission failure without a namespace and the pool", global)
	}
	var got []string
	for _, g := range global.Groups {
		for _, c := range g.Checks {
			for _, res := range c.Results {
				got = append(got, g.Name+": "+res.Message)
			}
		}
	}
	if strings.Join(got, "|") != "Admission: cannot tell|Node pools: pool old is 1.28" {
		t.Errorf("global failures: %v", got)
	}
}
