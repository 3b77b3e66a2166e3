package nodepool

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshaddon/meshaddon/internal/testbed/stage"
)

func TestParseSpec(t *testing.T) {
	good := map[string]Spec{
		"system=v1.34.4:3": {Name: "system", Version: "v1.34.4", Count: 3},
		"old=1.28:2":       {Name: "old", Version: "v1.28.0", Count: 2},
		"p1=1.29.3:0":      {Name: "p1", Version: "v1.29.3", Count: 0},
	}
	for in, want := range good {
		got, err := ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"system:3":              "NAME=VERSION:COUNT",
		"system=v1.34.4":        "NAME=VERSION:COUNT",
		"System=v1.34.4:3":      "invalid node pool name",
		"averyveryverylong=1:1": "invalid node pool name",
		"system=latest:3":       "not a Kubernetes version",
		"system=v2.0.0:3":       "not a Kubernetes version",
		"system=v1.34.4:-1":     "whole number",
		"system=v1.34.4:x":      "whole number",
	}
	for in, want := range bad {
		if _, err := ParseSpec(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSpec(%q) error %v, want it to say %q", in, err, want)
		}
	}
}

func node(name, pool, version string, ready, stopped bool) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{PoolLabel: pool}}}
	n.Status.NodeInfo.KubeletVersion = version
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}
	if stopped {
		n.Labels[stage.PowerStateLabel] = stage.PowerStopped
	}
	return n
}

func TestSummarize(t *testing.T) {
	nodes := []corev1.Node{
		node("a1", "a", "v1.34.4", true, false),
		node("a2", "a", "v1.33.0", false, false),
		node("b1", "b", "v1.28.9", false, true),
		{ObjectMeta: metav1.ObjectMeta{Name: "legacy", Labels: map[string]string{LegacyPoolLabel: "c"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "nopool"}},
	}
	got := Summarize(nodes)
	want := []Pool{
		{Name: "a", Versions: []string{"v1.33.0", "v1.34.4"}, Nodes: 2, Ready: 1},
		{Name: "b", Versions: []string{"v1.28.9"}, Nodes: 1, Stopped: true},
		{Name: "c", Versions: []string{""}, Nodes: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || strings.Join(got[i].Versions, ",") != strings.Join(want[i].Versions, ",") ||
			got[i].Nodes != want[i].Nodes || got[i].Ready != want[i].Ready || got[i].Stopped != want[i].Stopped {
			t.Errorf("pool %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if got[1].PowerState() != "Stopped" || got[0].PowerState() != "Running" {
		t.Errorf("power states %s %s", got[0].PowerState(), got[1].PowerState())
	}
}

func TestOldNodes(t *testing.T) {
	nodes := []corev1.Node{
		node("new", "a", "v1.29.0", true, false),
		node("old", "a", "v1.28.15", true, false),
		node("garbage", "a", "kwok-v0.7.0", true, false),
	}
	if got := strings.Join(OldNodes(nodes), ","); got != "old,garbage" {
		t.Errorf("OldNodes = %s, want old,garbage (an unknown version is not trusted)", got)
	}
}

func TestNodeNames(t *testing.T) {
	n := nodeName("system", 12)
	if n != "aks-system-vmss000012" || nodeIndex("system", n) != 12 || nodeIndex("other", n) != -1 {
		t.Errorf("node name %s round trip failed", n)
	}
}
