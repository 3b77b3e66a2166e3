package manager

import (
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// What the placement guard did to a pod.
const (
	PlacedUnchanged = "unchanged"
	PlacedAffinity  = "affinity"
	PlacedClassic   = "classic"
)

// capableRequirement keeps a pod on nodes that run sidecar containers.
var capableRequirement = corev1.NodeSelectorRequirement{
	Key: meshversion.SidecarContainersLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{"true"},
}

// WillBeNative reports whether the injector will give (or gave) pod a native
// istio-proxy. native tells, per revision, whether that revision's istiod
// injects native now; a pod that names no revision (its namespace's label
// decides, which admission does not show) counts as native when any revision
// is, so the guard errs on the side that never hangs.
func WillBeNative(pod *corev1.Pod, native map[string]bool) bool {
	if i := slices.IndexFunc(pod.Spec.InitContainers, isProxy); i >= 0 {
		return pod.Spec.InitContainers[i].RestartPolicy != nil
	}
	if slices.ContainsFunc(pod.Spec.Containers, isProxy) {
		return false
	}
	return inventory.InjectsNative(pod.Labels, pod.Annotations, native)
}

func isProxy(c corev1.Container) bool { return c.Name == inventory.ProxyContainer }

// Place applies the guard to a pod that will be injected native, in place.
// A pod tied to one node (spec.nodeName, or the matchFields metadata.name
// term a DaemonSet pod carries) is made classic when that node cannot run
// sidecar containers (capable reports it; an unknown node cannot), so
// DaemonSets keep running everywhere. Any other pod gets the requirement
// meshaddon.dev/sidecar-containers In [true] merged into every one of its
// required nodeSelectorTerms (or one new term when it has none), so its own
// affinity and nodeSelector keep their meaning. Applying it twice changes
// nothing (webhooks may be reinvoked). A pod whose required affinity does not
// parse is left as it is, with the error: the API server refuses it anyway,
// and the guard itself never refuses a pod.
func Place(pod *corev1.Pod, capable func(node string) bool) (string, error) {
	if node, ok := pinnedNode(pod); ok {
		if capable(node) {
			return PlacedUnchanged, nil
		}
		makeClassic(pod)
		return PlacedClassic, nil
	}
	var required *corev1.NodeSelector
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		required = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	if required != nil {
		if _, err := nodeaffinity.NewNodeSelector(required); err != nil {
			return PlacedUnchanged, fmt.Errorf("its required node affinity cannot be merged with the guard's: %w", err)
		}
	}
	if pod.Spec.Affinity == nil {
		pod.Spec.Affinity = &corev1.Affinity{}
	}
	if pod.Spec.Affinity.NodeAffinity == nil {
		pod.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := pod.Spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	terms := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms = []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{capableRequirement},
		}}
		return PlacedAffinity, nil
	}
	changed := false
	for i := range terms {
		t := &terms[i]
		// An empty term matches no node; adding to it would widen it.
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			continue
		}
		if !slices.ContainsFunc(t.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
			return r.Key == capableRequirement.Key && r.Operator == capableRequirement.Operator && slices.Equal(r.Values, capableRequirement.Values)
		}) {
			t.MatchExpressions = append(t.MatchExpressions, *capableRequirement.DeepCopy())
			changed = true
		}
	}
	if !changed {
		return PlacedUnchanged, nil
	}
	return PlacedAffinity, nil
}

// pinnedNode names the one node a pod can only run on: spec.nodeName, or
// the node every required term names with matchFields metadata.name In, as
// the DaemonSet controller pins its pods.
func pinnedNode(pod *corev1.Pod) (string, bool) {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName, true
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return "", false
	}
	var node string
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		name := ""
		for _, f := range t.MatchFields {
			if f.Key == metav1.ObjectNameField && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
				name = f.Values[0]
			}
		}
		if name == "" || (node != "" && name != node) {
			return "", false
		}
		node = name
	}
	return node, node != ""
}

// makeClassic asks the injector for a classic istio-proxy. When the injector
// already ran (its configuration sorts before the guard's), it turns the
// native proxy into the classic form the injector would have made: a
// regular container again, and istio-init last among the init containers,
// with the injector's status annotation saying so (the census reads it).
func makeClassic(pod *corev1.Pod) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[inventory.NativeSidecarOverride] = "false"
	at := slices.IndexFunc(pod.Spec.InitContainers, isProxy)
	if at < 0 {
		return
	}
	classic := inventory.ClassicPod(pod)
	pod.Spec = classic.Spec
	var st map[string]any
	if err := json.Unmarshal([]byte(pod.Annotations[inventory.StatusAnnotation]), &st); err != nil {
		return
	}
	move := func(from, to string) {
		list, _ := st[from].([]any)
		for i, v := range list {
			if v == inventory.ProxyContainer {
				st[from] = append(list[:i:i], list[i+1:]...)
				other, _ := st[to].([]any)
				st[to] = append(other, v)
				return
			}
		}
	}
	move("initContainers", "containers")
	if b, err := json.Marshal(st); err == nil {
		pod.Annotations[inventory.StatusAnnotation] = string(b)
	}
}
