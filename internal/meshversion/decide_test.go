package meshversion

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDecideExhaustive walks every combination of the facts that matter and
// checks Decide against the rules as the issue states them, written here as
// plain boolean expressions independent of the gate table.
func TestDecideExhaustive(t *testing.T) {
	apiVersions := []string{"v1.28.15", "v1.29.0", "v1.32.3", "v1.33.1", "v1.34.4", "", "garbage"}
	nodeSets := map[string][]Node{
		"none":         nil,
		"all-1.34":     {{Name: "a", Pool: "system", KubeletVersion: "v1.34.4", Ready: true}},
		"all-1.30":     {{Name: "a", Pool: "system", KubeletVersion: "v1.30.1", Ready: true}},
		"one-1.28":     {{Name: "a", Pool: "system", KubeletVersion: "v1.34.4", Ready: true}, {Name: "b", Pool: "old", KubeletVersion: "v1.28.9", Ready: true}},
		"unknown":      {{Name: "a", Pool: "system", KubeletVersion: "", Ready: false}},
		"stopped-1.34": {{Name: "a", Pool: "system", KubeletVersion: "v1.34.4", Ready: false}},
	}
	revisions := []string{"asm-1-19", "asm-1-20", "asm-1-26", "asm-1-27", "asm-1-28", "asm-1-29", "asm-1-31"}
	guards := []Guard{{}, {On: true, Healthy: true}, {On: true, Problem: "not serving"}, {Healthy: true}}
	count := 0
	for _, p := range Policies {
		for _, mode := range []Mode{ModeAuto, ModeEnabled, ModeDisabled} {
			for _, feature := range []bool{false, true} {
				for _, cq := range []bool{false, true} {
					for _, api := range apiVersions {
						for setName, nodes := range nodeSets {
							for _, rev := range revisions {
								for _, guard := range guards {
									f := Facts{Mode: mode, FeatureRegistered: feature, CreatedQualifying: cq, APIServerVersion: api, Nodes: nodes, Guard: guard}
									d := Decide(p, f, rev)
									wantNative, wantDegraded := oracle(p.Name, mode, feature, cq, api, setName, rev, guard.On && guard.Healthy)
									name := fmt.Sprintf("%s/%s/feature=%v/cq=%v/api=%q/nodes=%s/%s/guard=%+v", p.Name, mode, feature, cq, api, setName, rev, guard)
									if (d.Injection == Native) != wantNative {
										t.Errorf("%s: got %s (%s: %s), want native=%v", name, d.Injection, d.Reason, d.Message, wantNative)
									}
									if (d.Degraded != "") != wantDegraded {
										t.Errorf("%s: degraded %q, want degraded=%v", name, d.Degraded, wantDegraded)
									}
									if d.Reason == "" || d.Message == "" {
										t.Errorf("%s: decision without a reason: %+v", name, d)
									}
									count++
								}
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d combinations", count)
}

func oracle(policy string, mode Mode, feature, cq bool, api, nodes, rev string, guarded bool) (native, degraded bool) {
	minor := map[string]int{"v1.28.15": 28, "v1.29.0": 29, "v1.32.3": 32, "v1.33.1": 33, "v1.34.4": 34}
	nodeMin := map[string]int{"none": 99, "all-1.34": 34, "all-1.30": 30, "one-1.28": 28, "unknown": 0, "stopped-1.34": 34}
	var r int
	fmt.Sscanf(rev, "asm-1-%d", &r)
	min := 29
	if policy == "ga" {
		min = 33
	}
	apiOK := minor[api] >= min
	nodesOK := nodeMin[nodes] >= min
	// spec.oldNodes: Guard, healthy: old nodes are excluded from native
	// pods, which needs at least one Ready node that can take them.
	capableReady := map[string]int{"all-1.34": 34, "all-1.30": 30, "one-1.28": 34}
	if guarded && capableReady[nodes] >= min {
		nodesOK = true
	}
	revOK := r >= 20
	var optIn bool
	switch policy {
	case "preview":
		optIn = feature || cq
	case "ga":
		optIn = (cq && r >= 27) || r >= 29
	}
	switch mode {
	case ModeDisabled:
		return false, false
	case ModeEnabled:
		return apiOK && revOK, !nodesOK
	default:
		return optIn && apiOK && nodesOK && revOK, false
	}
}

func TestDecideMessagesNamePoolsAndNodes(t *testing.T) {
	nodes := []Node{{Name: "aks-system-vmss000000", Pool: "system", KubeletVersion: "v1.34.4", Ready: true}}
	for i := 0; i < 5; i++ {
		nodes = append(nodes, Node{Name: fmt.Sprintf("aks-old-vmss%06d", i), Pool: "old", KubeletVersion: "v1.28.9", Ready: true})
	}
	d := Decide(DefaultPolicy, Facts{Mode: ModeAuto, FeatureRegistered: true, APIServerVersion: "v1.34.4", Nodes: nodes}, "asm-1-27")
	if d.Injection != Classic || d.Reason != "NodesTooOld" {
		t.Fatalf("got %s %s", d.Injection, d.Reason)
	}
	for _, want := range []string{"pool old has 5 node(s) on kubelet v1.28.9", "aks-old-vmss000000", "and 2 more", "upgrade those pools to 1.29"} {
		if !strings.Contains(d.Message, want) {
			t.Errorf("message %q lacks %q", d.Message, want)
		}
	}
	if strings.Contains(d.Message, "system") {
		t.Errorf("message names a pool that qualifies: %q", d.Message)
	}

	d = Decide(DefaultPolicy, Facts{Mode: ModeEnabled, APIServerVersion: "v1.34.4", Nodes: nodes}, "asm-1-27")
	if d.Injection != Native || !strings.Contains(d.Degraded, "hang in Init") || !strings.Contains(d.Degraded, "aks-old-vmss000000") {
		t.Fatalf("Enabled with an old node: %+v", d)
	}

	d = Decide(DefaultPolicy, Facts{Mode: ModeAuto, APIServerVersion: "v1.34.4"}, "asm-1-27")
	if d.Reason != "FeatureNotRegistered" || !strings.Contains(d.Message, "meshaddon feature register --name IstioNativeSidecarModePreview") {
		t.Fatalf("feature not registered: %+v", d)
	}
	d = Decide(DefaultPolicy, Facts{Mode: ModeAuto, APIServerVersion: "v1.34.4", FeatureRegistered: true}, "istio-1-27")
	if d.Injection != Classic || d.Reason != "InvalidRevision" {
		t.Fatalf("bad revision: %+v", d)
	}
}

// Istio's auto mode for a pod not yet bound: native only when every node's
// kubelet is 1.33+ (a cluster with no nodes counts as native).
func TestResolveAutoUnbound(t *testing.T) {
	for _, tc := range []struct {
		nodes []string
		want  Injection
	}{
		{nil, Native},
		{[]string{"v1.33.0", "v1.34.4"}, Native},
		{[]string{"v1.33.0", "v1.32.9"}, Classic},
		{[]string{"v1.34.4", ""}, Classic},
	} {
		var nodes []Node
		for i, v := range tc.nodes {
			nodes = append(nodes, Node{Name: fmt.Sprint(i), KubeletVersion: v})
		}
		if got := resolveAuto(nodes, "").Injection; got != tc.want {
			t.Errorf("%v: got %s, want %s", tc.nodes, got, tc.want)
		}
	}
}

func TestParseEnv(t *testing.T) {
	for _, tc := range []struct {
		value   string
		present bool
		inj     Injection
		set     bool
		err     bool
	}{
		{"", false, "", false, false},
		{"", true, "", false, false},
		{"true", true, Native, true, false},
		{"1", true, Native, true, false},
		{"False", true, Classic, true, false},
		{"yes", true, "", true, true},
	} {
		inj, set, err := ParseEnv(tc.value, tc.present)
		if inj != tc.inj || set != tc.set || (err != nil) != tc.err {
			t.Errorf("ParseEnv(%q,%v) = %q %v %v", tc.value, tc.present, inj, set, err)
		}
	}
}

func TestLookupPolicyAndMode(t *testing.T) {
	if _, err := LookupPolicy("nope"); err == nil || !strings.Contains(err.Error(), "preview, ga") {
		t.Errorf("LookupPolicy(nope) = %v", err)
	}
	if m, err := ParseMode("enabled"); err != nil || m != ModeEnabled {
		t.Errorf("ParseMode(enabled) = %v %v", m, err)
	}
	if _, err := ParseMode("On"); err == nil {
		t.Error("ParseMode(On) accepted")
	}
}

func TestSummarizePools(t *testing.T) {
	got := SummarizePools([]Node{
		{Name: "a", Pool: "user", KubeletVersion: "v1.29.1", Ready: true},
		{Name: "b", Pool: "user", KubeletVersion: "v1.28.9", Ready: false},
		{Name: "c", Pool: "batch", KubeletVersion: "v1.34.4", Ready: false},
	})
	want := `[{batch [v1.34.4] 1 0 Stopped} {user [v1.28.9 v1.29.1] 2 1 Running}]`
	if fmt.Sprint(got) != want {
		t.Errorf("got %v\nwant %s", got, want)
	}
	if PoolOf(map[string]string{"agentpool": "x"}) != "x" || PoolOf(map[string]string{PoolLabel: "y", "agentpool": "x"}) != "y" {
		t.Error("PoolOf does not prefer the platform label")
	}
}

func TestNodeOf(t *testing.T) {
	ready := func(s corev1.ConditionStatus) []corev1.NodeCondition {
		return []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue}, {Type: corev1.NodeReady, Status: s}}
	}
	cases := []struct {
		node corev1.Node
		want Node
	}{
		{corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{PoolLabel: "sys", LegacyPoolLabel: "old"}}, Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionTrue), NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.34.4"}}},
			Node{Name: "a", Pool: "sys", KubeletVersion: "v1.34.4", Ready: true}},
		{corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{LegacyPoolLabel: "old"}}, Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionUnknown)}},
			Node{Name: "b", Pool: "old"}},
		{corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, Node{Name: "c"}},
	}
	for _, c := range cases {
		if got := NodeOf(&c.node); got != c.want {
			t.Errorf("NodeOf(%s) = %+v, want %+v", c.node.Name, got, c.want)
		}
	}
}
