package meshversion

import (
	"fmt"
	"strings"
	"testing"
)

func TestGuardMessages(t *testing.T) {
	nodes := []Node{{Name: "new-0", Pool: "new", KubeletVersion: "v1.34.4", Ready: true}}
	for i := 0; i < 5; i++ {
		nodes = append(nodes, Node{Name: fmt.Sprintf("old-%d", i), Pool: "old", KubeletVersion: "v1.28.9", Ready: true})
	}
	f := Facts{Mode: ModeAuto, FeatureRegistered: true, APIServerVersion: "v1.34.4", Nodes: nodes, Guard: Guard{On: true, Healthy: true}}
	d := Decide(DefaultPolicy, f, "asm-1-27")
	if d.Injection != Native || d.Degraded != "" {
		t.Fatalf("guarded: %+v", d)
	}
	for _, want := range []string{"native, guarded: 5 node(s) excluded (old-0, old-1, old-2, and 2 more)", "1 Ready node(s) take native pods"} {
		if !strings.Contains(d.Message, want) {
			t.Errorf("message %q lacks %q", d.Message, want)
		}
	}

	f.Guard = Guard{On: true, Problem: "configuration meshaddon-guard not found"}
	d = Decide(DefaultPolicy, f, "asm-1-27")
	if d.Injection != Classic || d.Reason != "GuardUnhealthy" || !strings.Contains(d.Message, "configuration meshaddon-guard not found") || !strings.Contains(d.Message, "old-0") {
		t.Fatalf("unhealthy guard: %+v", d)
	}

	f.Mode = ModeEnabled
	d = Decide(DefaultPolicy, f, "asm-1-27")
	if d.Injection != Native || !strings.Contains(d.Degraded, "placement guard is unhealthy") {
		t.Fatalf("Enabled, unhealthy guard: %+v", d)
	}

	f.Mode, f.Guard, f.Nodes = ModeAuto, Guard{On: true, Healthy: true}, nodes[1:]
	d = Decide(DefaultPolicy, f, "asm-1-27")
	if d.Injection != Classic || d.Reason != "NoCapableNodes" {
		t.Fatalf("only old nodes: %+v", d)
	}
}
