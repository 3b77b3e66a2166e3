package meshversion

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/version"
)

func TestIstioRuleFor(t *testing.T) {
	for _, c := range []struct {
		v         string
		ok        bool
		auto, ann bool
	}{
		{"1.4.0", false, false, false},
		{"1.20.0", true, false, false},
		{"1.23.9", true, false, false},
		{"1.24.0", true, false, true},
		{"1.26.3", true, false, true},
		{"1.27.0", true, true, true},
		{"1.31.0", true, true, true},
	} {
		r, ok := IstioRuleFor(version.MustParseGeneric(c.v))
		if ok != c.ok || r.UnsetAuto != c.auto || r.PodAnnotation != c.ann {
			t.Errorf("%s: ok=%v auto=%v annotation=%v, want %v %v %v", c.v, ok, r.UnsetAuto, r.PodAnnotation, c.ok, c.auto, c.ann)
		}
	}
	if _, ok := IstioRuleFor(nil); ok {
		t.Error("a nil version has a rule")
	}
	for i := 1; i < len(IstioRules); i++ {
		if !IstioRules[i].From.GreaterThan(IstioRules[i-1].From) || IstioRules[i].Source == "" {
			t.Errorf("IstioRules[%d] out of order or without a source", i)
		}
	}
}

func TestResolveUnsetFor(t *testing.T) {
	new1 := Node{Name: "n1", KubeletVersion: "v1.34.4"}
	new2 := Node{Name: "n2", KubeletVersion: "v1.33.0"}
	old := Node{Name: "old-0", KubeletVersion: "v1.32.9"}
	unreadable := Node{Name: "weird", KubeletVersion: "vX"}
	v127, v126 := version.MustParseGeneric("1.27.1"), version.MustParseGeneric("1.26.3")
	for _, c := range []struct {
		name    string
		istio   *version.Version
		nodes   []Node
		podNode string
		want    Injection
		auto    bool
		old     []string
		msg     string
	}{
		{"1.26 is classic whatever the nodes", v126, []Node{new1, new2}, "", Classic, false, nil, "Istio 1.26 treats unset as false"},
		{"1.27 all new", v127, []Node{new1, new2}, "", Native, true, nil, "native: all 2 node(s) run kubelet 1.33 or newer"},
		{"1.27 no nodes", v127, nil, "", Native, true, nil, "native"},
		{"1.27 one old node flips every new pod", v127, []Node{new1, old, new2}, "", Classic, true, []string{"old-0"}, "classic for every new pod: node old-0 (kubelet v1.32.9)"},
		{"1.27 unreadable kubelet counts as old", v127, []Node{new1, unreadable}, "", Classic, true, []string{"weird"}, "weird (kubelet vX)"},
		{"1.27 bound to a new node beside an old one", v127, []Node{new1, old}, "n1", Native, true, nil, "native for a pod bound to n1"},
		{"1.27 bound to the old node", v127, []Node{new1, old}, "old-0", Classic, true, []string{"old-0"}, "classic for a pod bound to old-0"},
		{"1.27 bound to a node that is gone: every node", v127, []Node{new1, old}, "gone", Classic, true, []string{"old-0"}, "every new pod"},
		{"unknown version", nil, []Node{new1}, "", "", false, nil, "the Istio version is unknown: classic if it is older than 1.27; from 1.27 native"},
	} {
		got := ResolveUnsetFor(c.istio, c.nodes, c.podNode)
		var names []string
		for _, n := range got.OldNodes {
			names = append(names, n.Name)
		}
		if got.Injection != c.want || got.Auto != c.auto || strings.Join(names, ",") != strings.Join(c.old, ",") || !strings.Contains(got.Message, c.msg) {
			t.Errorf("%s: got %+v, want %s auto=%v old=%v message ~ %q", c.name, got, c.want, c.auto, c.old, c.msg)
		}
	}
	many := []Node{}
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		many = append(many, Node{Name: n, KubeletVersion: "v1.28.0"})
	}
	if got := ResolveUnsetFor(v127, many, ""); !strings.Contains(got.Message, "and 2 more") || len(got.OldNodes) != 7 {
		t.Errorf("seven old nodes: %s", got.Message)
	}
}

func TestReadEnv(t *testing.T) {
	v126, v127 := version.MustParseGeneric("1.26.0"), version.MustParseGeneric("1.27.0")
	for _, c := range []struct {
		istio   *version.Version
		value   string
		present bool
		want    string
	}{
		{v126, "", false, "classic"},
		{v126, "true", true, "native"},
		{v126, "1", true, "native"},
		{v126, "True", true, "native"},
		{v126, "false", true, "classic"},
		{v126, "auto", true, "classic!"},
		{v126, "", true, "classic!"},
		{v127, "", false, "auto"},
		{v127, "auto", true, "auto"},
		{v127, "true", true, "native"},
		{v127, "false", true, "classic"},
		{v127, "1", true, "classic!"},
		{v127, "True", true, "classic!"},
		{v127, "", true, "classic!"},
		{nil, "true", true, "native"},
		{nil, "false", true, "classic"},
		{nil, "", false, "unknown"},
		{nil, "1", true, "unknown"},
	} {
		r := ReadEnv(c.istio, c.value, c.present)
		got := string(r.Injection)
		switch {
		case r.Auto:
			got = "auto"
		case r.Unknown:
			got = "unknown"
		}
		if r.Note != "" && !r.Unknown && c.present {
			got += "!"
		}
		if got != c.want {
			t.Errorf("Istio %v, %q present=%v: %s (%s), want %s", c.istio, c.value, c.present, got, r.Note, c.want)
		}
	}
}

func TestRevisionIstio(t *testing.T) {
	if v, ok := RevisionIstio("asm-1-27"); !ok || MinorString(v) != "1.27" {
		t.Errorf("asm-1-27: %v %v", v, ok)
	}
	if _, ok := RevisionIstio("1-27-1"); ok {
		t.Error("an upstream revision name read as a version")
	}
}

func TestDecideIstio(t *testing.T) {
	newNodes := []Node{{Name: "n1", Pool: "system", KubeletVersion: "v1.34.4", Ready: true}}
	mixed := append([]Node{{Name: "old-0", Pool: "old", KubeletVersion: "v1.32.9", Ready: true}}, newNodes...)
	f := func(mode Mode, nodes []Node) Facts {
		return Facts{Mode: mode, APIServerVersion: "v1.34.4", Nodes: nodes}
	}
	for _, c := range []struct {
		name   string
		istio  string
		facts  Facts
		want   Injection
		reason string
		msg    string
	}{
		{"1.27 auto, new nodes: native as Istio would", "1.27.1", f(ModeAuto, newNodes), Native, "Native", "native by default from Istio 1.27"},
		{"1.27 auto, an old node: classic as Istio would", "1.27.1", f(ModeAuto, mixed), Classic, "NodesTooOld", "pool old has 1 node(s) on kubelet v1.32.9 (old-0)"},
		{"1.26 auto: classic, Istio's unset", "1.26.3", f(ModeAuto, newNodes), Classic, "NotDefaultOn", "Istio 1.26 is not on by default"},
		{"1.26 enabled: native", "1.26.3", f(ModeEnabled, newNodes), Native, "ModeEnabled", "Istio 1.26 is Istio 1.20 or newer"},
		{"1.19 enabled: too old", "1.19.0", f(ModeEnabled, newNodes), Classic, "RevisionTooOld", "Istio 1.19 is older than Istio 1.20"},
		{"unknown version", "", f(ModeEnabled, newNodes), Classic, "IstioVersionUnknown", "the Istio version of revision r is unknown"},
	} {
		var v *version.Version
		if c.istio != "" {
			v = version.MustParseGeneric(c.istio)
		}
		d := DecideIstio(UpstreamPolicy, c.facts, "r", v)
		if d.Injection != c.want || d.Reason != c.reason || !strings.Contains(d.Message, c.msg) || strings.Contains(d.Message, "asm-") {
			t.Errorf("%s: %s %s %q", c.name, d.Injection, d.Reason, d.Message)
		}
	}
}
