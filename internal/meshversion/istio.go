package meshversion

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// IstioRule is what one range of Istio releases does about native sidecars
// on its own, whatever installed it. Rules are data: a release that changes
// the behaviour is a new row of IstioRules (issue 15).
type IstioRule struct {
	// From is the first Istio minor the row holds for.
	From *version.Version
	// UnsetAuto: with ENABLE_NATIVE_SIDECARS unset istiod decides by the
	// nodes' kubelets (Istio's "auto"); otherwise unset means classic.
	UnsetAuto bool
	// PodAnnotation: istiod honours the per-pod annotation
	// sidecar.istio.io/nativeSidecar ("true"/"false" beats the env).
	PodAnnotation bool
	// Source cites where the behaviour is in Istio's code.
	Source string
}

// PodAnnotation is Istio's per-pod override of the injection mode.
const PodAnnotation = "sidecar.istio.io/nativeSidecar"

// IstioRules, oldest first. The citations are to the istio.io/istio source
// the test bed pins (internal/testbed/cache/pins.go).
var IstioRules = []IstioRule{
	{
		From:   version.MajorMinor(1, 5),
		Source: "before 1.24 only ENABLE_NATIVE_SIDECARS (a boolean, default false) chose native injection",
	},
	{
		// pkg/kube/inject/inject.go:523-528: "The sidecar.istio.io/nativeSidecar
		// annotation takes precedence over the global feature flag."
		From:          version.MajorMinor(1, 24),
		PodAnnotation: true,
		Source:        "pkg/kube/inject/inject.go:523-528 (the per-pod annotation beats the env); the env still a boolean defaulting to false",
	},
	{
		// istio/istio#48794, PR istio/istio#56428 (1.27):
		// pilot/pkg/features/pilot.go:337-353 registers ENABLE_NATIVE_SIDECARS
		// with default "auto" (any value but true/false/auto means disabled);
		// pkg/kube/inject/webhook.go:1308-1358 DetectNativeSidecar: in auto,
		// the bound node's kubelet when the pod names one (1.33+), else every
		// node's kubelet must be 1.33+ — one older node makes every new pod classic.
		From:          version.MajorMinor(1, 27),
		UnsetAuto:     true,
		PodAnnotation: true,
		Source:        "pilot/pkg/features/pilot.go:337-353 (default auto) and pkg/kube/inject/webhook.go:1308-1358 (DetectNativeSidecar: kubelet 1.33+ on the pod's node, or on every node)",
	},
}

// IstioRuleFor is the row for an Istio version; ok is false for a version
// that is unknown (nil) or older than any row.
func IstioRuleFor(v *version.Version) (rule IstioRule, ok bool) {
	if v == nil {
		return IstioRule{}, false
	}
	for _, r := range IstioRules {
		if v.AtLeast(r.From) {
			rule, ok = r, true
		}
	}
	return rule, ok
}

// UnsetVerdict is what ENABLE_NATIVE_SIDECARS unset means for one istiod on
// one cluster.
type UnsetVerdict struct {
	// Injection is native or classic; empty when the Istio version is unknown
	// and the answer depends on it.
	Injection Injection
	// Auto: Istio decides by the kubelets (1.27+).
	Auto bool
	// OldNodes are the nodes whose kubelet makes it classic (older than 1.33
	// or unreadable), sorted as given.
	OldNodes []Node
	// Message says it in one line, naming the nodes.
	Message string
}

// ResolveUnsetFor says how an istiod of Istio version istio injects with
// ENABLE_NATIVE_SIDECARS unset: classic before 1.27; from 1.27 by the
// kubelet of podNode when the pod is bound to a node that exists, else by
// every node's (istio/istio#48794). An unknown version gives both answers.
func ResolveUnsetFor(istio *version.Version, nodes []Node, podNode string) UnsetVerdict {
	auto := resolveAuto(nodes, podNode)
	rule, ok := IstioRuleFor(istio)
	switch {
	case !ok:
		auto.Injection, auto.Auto = "", false
		auto.Message = fmt.Sprintf("the Istio version is unknown: classic if it is older than 1.27; from 1.27 %s", auto.Message)
		return auto
	case !rule.UnsetAuto:
		return UnsetVerdict{Injection: Classic, Message: fmt.Sprintf("Istio %s treats unset as false: classic (Istio decides by the kubelets only from 1.27)", MinorString(istio))}
	}
	auto.Message = fmt.Sprintf("Istio %s decides by the kubelets: %s", MinorString(istio), auto.Message)
	return auto
}

// resolveAuto is DetectNativeSidecar's auto branch.
func resolveAuto(nodes []Node, podNode string) UnsetVerdict {
	v := UnsetVerdict{Injection: Native, Auto: true}
	if podNode != "" {
		for _, n := range nodes {
			if n.Name == podNode {
				if !kubeletAtLeast(n, IstioAutoMinKubelet) {
					v.Injection, v.OldNodes = Classic, []Node{n}
					v.Message = fmt.Sprintf("classic for a pod bound to %s (kubelet %s, older than %s)", n.Name, kubeletOf(n), MinorString(IstioAutoMinKubelet))
					return v
				}
				v.Message = fmt.Sprintf("native for a pod bound to %s (kubelet %s)", n.Name, kubeletOf(n))
				return v
			}
		}
	}
	for _, n := range nodes {
		if !kubeletAtLeast(n, IstioAutoMinKubelet) {
			v.OldNodes = append(v.OldNodes, n)
		}
	}
	if len(v.OldNodes) > 0 {
		v.Injection = Classic
		var names []string
		for i, n := range v.OldNodes {
			if i == 5 {
				names = append(names, fmt.Sprintf("and %d more", len(v.OldNodes)-5))
				break
			}
			names = append(names, n.Name+" (kubelet "+kubeletOf(n)+")")
		}
		v.Message = fmt.Sprintf("classic for every new pod: node %s older than %s", strings.Join(names, ", "), MinorString(IstioAutoMinKubelet))
		return v
	}
	v.Message = fmt.Sprintf("native: all %d node(s) run kubelet %s or newer", len(nodes), MinorString(IstioAutoMinKubelet))
	return v
}

func kubeletAtLeast(n Node, min *version.Version) bool {
	v, err := ParseKube(n.KubeletVersion)
	return err == nil && v.AtLeast(min)
}

func kubeletOf(n Node) string {
	if n.KubeletVersion == "" {
		return "unknown"
	}
	return n.KubeletVersion
}

// RevisionIstio is the Istio version an add-on revision asm-1-NN runs
// (1.NN), the add-on's naming; upstream revision names carry no version.
func RevisionIstio(revision string) (*version.Version, bool) {
	r, err := ParseRevision(revision)
	if err != nil {
		return nil, false
	}
	return r.Istio(), true
}

// EnvReading is how an istiod reads its ENABLE_NATIVE_SIDECARS.
type EnvReading struct {
	// Injection is native or classic when the value decides alone.
	Injection Injection
	// Auto: the value leaves it to the kubelets (ResolveUnsetFor).
	Auto bool
	// Unknown: the Istio version is unknown and the versions read it differently.
	Unknown bool
	// Note says how a surprising value is read (empty, "1", "True", "auto" before 1.27).
	Note string
}

// ReadEnv reads an ENABLE_NATIVE_SIDECARS value as an istiod of Istio version
// istio does. Before 1.27 it is a boolean (pkg/env BoolVar: strconv.ParseBool,
// anything unparseable or unset is the default, false). From 1.27
// (pilot/pkg/features/pilot.go:337-353) it is a string: exactly "true",
// "false" or "auto", unset is "auto", and anything else — "", "1", "True" —
// is disabled with a warning in istiod's log.
func ReadEnv(istio *version.Version, value string, present bool) EnvReading {
	rule, ok := IstioRuleFor(istio)
	if !ok {
		pre, post := readBool(value, present), readAutoString(value, present)
		if pre == post {
			return pre
		}
		return EnvReading{Unknown: true, Note: fmt.Sprintf("the Istio version is unknown: before 1.27 %s, from 1.27 %s", pre.describe(), post.describe())}
	}
	if rule.UnsetAuto {
		return readAutoString(value, present)
	}
	return readBool(value, present)
}

func readBool(value string, present bool) EnvReading {
	if !present {
		return EnvReading{Injection: Classic, Note: "unset means false before Istio 1.27"}
	}
	b, err := strconv.ParseBool(value)
	if err != nil {
		return EnvReading{Injection: Classic, Note: fmt.Sprintf("%q is not a boolean: istiod before 1.27 reads it as false", value)}
	}
	if b {
		return EnvReading{Injection: Native}
	}
	return EnvReading{Injection: Classic}
}

func readAutoString(value string, present bool) EnvReading {
	switch {
	case !present || value == "auto":
		return EnvReading{Auto: true}
	case value == "true":
		return EnvReading{Injection: Native}
	case value == "false":
		return EnvReading{Injection: Classic}
	}
	return EnvReading{Injection: Classic, Note: fmt.Sprintf("%q is not true, false or auto: istiod 1.27+ reads it as false", value)}
}

func (r EnvReading) describe() string {
	if r.Auto {
		return "auto (by the kubelets)"
	}
	return string(r.Injection)
}

// Istio is the Istio version (1.NN) an add-on revision asm-1-NN runs.
func (r Revision) Istio() *version.Version {
	return version.MajorMinor(uint(r.Major), uint(r.Minor))
}

// UpstreamPolicy is upstream Istio's own rule set, for the manager's
// upstream layout: no platform feature flag; native injection needs Istio
// 1.20+ (MinRevision, the same floor as the add-on's); Auto is native from
// Istio 1.27 on every cluster whose kubelets are all 1.33+, as Istio
// itself does with ENABLE_NATIVE_SIDECARS unset (IstioRules), so an
// explicit decision never surprises a cluster that relied on the default.
var UpstreamPolicy = Policy{
	Name:                    "upstream",
	Description:             "upstream Istio's own rules: Istio 1.20+, native by default from Istio 1.27 when every kubelet is 1.33+ (istio/istio#48794)",
	MinKubernetes:           IstioAutoMinKubelet,
	MinRevision:             Revision{1, 20},
	AutoNewClusterFrom:      Revision{1, 27},
	AutoExistingClusterFrom: &Revision{1, 27},
}

// asmName matches the add-on's revision names in the gates' messages.
var asmName = regexp.MustCompile(`\basm-(\d+)-(\d+)\b`)

// DecideIstio decides for an upstream revision, named freely, by the Istio
// version its istiod runs (nil: unknown, so classic, with the reason). The
// gates speak the add-on's asm-1-NN naming; here they speak Istio versions.
func DecideIstio(p Policy, f Facts, name string, istio *version.Version) Decision {
	if istio == nil || istio.Major() != 1 {
		return Decision{Revision: name, Injection: Classic, Reason: "IstioVersionUnknown",
			Message: "the Istio version of revision " + name + " is unknown: meshaddon keeps it classic (run a released pilot image, 1.NN.P)"}
	}
	d := decide(p, f, name, Revision{Major: 1, Minor: int(istio.Minor())})
	speak := func(s string) string { return asmName.ReplaceAllString(s, "Istio $1.$2") }
	d.Message, d.Degraded = speak(d.Message), speak(d.Degraded)
	for i := range d.Gates {
		d.Gates[i].Message = speak(d.Gates[i].Message)
	}
	return d
}
