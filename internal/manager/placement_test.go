package manager

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
)

func capableNodes(names ...string) func(string) bool {
	return func(n string) bool {
		for _, c := range names {
			if c == n {
				return true
			}
		}
		return false
	}
}

func req(key string, op corev1.NodeSelectorOperator, vals ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: vals}
}

func withRequired(terms ...corev1.NodeSelectorTerm) *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}}}
}

func requiredTerms(p *corev1.Pod) []corev1.NodeSelectorTerm {
	return p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

func TestPlaceMergesIntoEveryTerm(t *testing.T) {
	zone := req("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "a")
	pool := req("agentpool", corev1.NodeSelectorOpNotIn, "gpu")
	pod := withRequired(
		corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{zone}},
		corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{pool}, MatchFields: []corev1.NodeSelectorRequirement{req("metadata.name", corev1.NodeSelectorOpNotIn, "x")}},
		corev1.NodeSelectorTerm{}, // matches nothing: must stay so
	)
	pod.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = []corev1.PreferredSchedulingTerm{{Weight: 1, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{zone}}}}
	before := pod.DeepCopy()
	got, err := Place(pod, capableNodes())
	if err != nil || got != PlacedAffinity {
		t.Fatalf("Place = %s, %v", got, err)
	}
	terms := requiredTerms(pod)
	want := [][]corev1.NodeSelectorRequirement{{zone, capableRequirement}, {pool, capableRequirement}, nil}
	for i, w := range want {
		if !equality.Semantic.DeepEqual(terms[i].MatchExpressions, w) {
			t.Errorf("term %d: %v, want %v", i, terms[i].MatchExpressions, w)
		}
	}
	if !equality.Semantic.DeepEqual(terms[1].MatchFields, before.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[1].MatchFields) {
		t.Errorf("matchFields changed: %v", terms[1].MatchFields)
	}
	if pod.Spec.NodeSelector["disk"] != "ssd" || len(pod.Spec.NodeSelector) != 1 {
		t.Errorf("nodeSelector changed: %v", pod.Spec.NodeSelector)
	}
	if !equality.Semantic.DeepEqual(pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution, before.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) {
		t.Errorf("preferred terms changed")
	}
	// Reinvoked: nothing more.
	again := pod.DeepCopy()
	if got, err := Place(again, capableNodes()); err != nil || got != PlacedUnchanged || !equality.Semantic.DeepEqual(again, pod) {
		t.Errorf("second Place = %s, %v, changed=%v", got, err, !equality.Semantic.DeepEqual(again, pod))
	}
}

func TestPlaceNewTermKeepsNodeSelectorAndPodAffinity(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		NodeSelector: map[string]string{"kubernetes.azure.com/agentpool": "new"},
		Affinity:     &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{}},
	}}
	if got, err := Place(pod, capableNodes()); err != nil || got != PlacedAffinity {
		t.Fatalf("Place = %s, %v", got, err)
	}
	terms := requiredTerms(pod)
	if len(terms) != 1 || !equality.Semantic.DeepEqual(terms[0].MatchExpressions, []corev1.NodeSelectorRequirement{capableRequirement}) {
		t.Errorf("terms: %v", terms)
	}
	if pod.Spec.Affinity.PodAntiAffinity == nil || pod.Spec.NodeSelector["kubernetes.azure.com/agentpool"] != "new" {
		t.Errorf("own constraints lost: %+v %v", pod.Spec.Affinity, pod.Spec.NodeSelector)
	}
	// A pod with no affinity at all.
	bare := &corev1.Pod{}
	if got, _ := Place(bare, capableNodes()); got != PlacedAffinity || len(requiredTerms(bare)) != 1 {
		t.Errorf("bare pod: %s %+v", got, bare.Spec.Affinity)
	}
}

func daemonSetPod(node string) *corev1.Pod {
	// As the DaemonSet controller writes it (util.ReplaceDaemonSetPodNodeNameNodeAffinity).
	return withRequired(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{req(metav1.ObjectNameField, corev1.NodeSelectorOpIn, node)}})
}

func TestPlacePinnedPods(t *testing.T) {
	capable := capableNodes("new-0")
	for name, pod := range map[string]*corev1.Pod{
		"nodeName":  {Spec: corev1.PodSpec{NodeName: "old-0"}},
		"daemonset": daemonSetPod("old-0"),
		"unknown":   {Spec: corev1.PodSpec{NodeName: "gone"}},
	} {
		before := pod.Spec.DeepCopy()
		got, err := Place(pod, capable)
		if err != nil || got != PlacedClassic || pod.Annotations[inventory.NativeSidecarOverride] != "false" {
			t.Errorf("%s: Place = %s, %v, annotations %v", name, got, err, pod.Annotations)
		}
		if !equality.Semantic.DeepEqual(before, &pod.Spec) {
			t.Errorf("%s: spec changed", name)
		}
	}
	for name, pod := range map[string]*corev1.Pod{
		"nodeName":  {Spec: corev1.PodSpec{NodeName: "new-0"}},
		"daemonset": daemonSetPod("new-0"),
	} {
		before := pod.DeepCopy()
		if got, err := Place(pod, capable); err != nil || got != PlacedUnchanged || !equality.Semantic.DeepEqual(before, pod) {
			t.Errorf("%s on a capable node: %s, %v", name, got, err)
		}
	}
	// Two terms naming different nodes: not pinned, merged.
	two := withRequired(daemonSetPod("a").Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0],
		daemonSetPod("b").Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0])
	if got, _ := Place(two, capable); got != PlacedAffinity || len(requiredTerms(two)[1].MatchExpressions) != 1 {
		t.Errorf("two nodes: %s %+v", got, requiredTerms(two))
	}
}

// A pod the injector already made native (its configuration sorted first)
// and that is pinned to an old node becomes the classic pod the injector
// would have made.
func TestPlaceAfterInjection(t *testing.T) {
	pod := daemonSetPod("old-0")
	pod.Annotations = map[string]string{inventory.StatusAnnotation: `{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":["istio-envoy"],"revision":"asm-1-27"}`}
	pod.Spec.InitContainers = []corev1.Container{{Name: "istio-init"}, {Name: "istio-proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}, {Name: "app-init"}}
	pod.Spec.Containers = []corev1.Container{{Name: "app"}}
	if !WillBeNative(pod, nil) {
		t.Fatal("an injected native pod is native")
	}
	if got, _ := Place(pod, capableNodes()); got != PlacedClassic {
		t.Fatalf("Place = %s", got)
	}
	names := func(cs []corev1.Container) (out []string) {
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	if got := strings.Join(names(pod.Spec.InitContainers), ","); got != "app-init,istio-init" {
		t.Errorf("init containers: %s", got)
	}
	if got := strings.Join(names(pod.Spec.Containers), ","); got != "app,istio-proxy" || pod.Spec.Containers[1].RestartPolicy != nil {
		t.Errorf("containers: %s", got)
	}
	var st struct{ InitContainers, Containers []string }
	if err := json.Unmarshal([]byte(pod.Annotations[inventory.StatusAnnotation]), &st); err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.InitContainers, ",") != "istio-init" || strings.Join(st.Containers, ",") != "istio-proxy" {
		t.Errorf("status annotation: %s", pod.Annotations[inventory.StatusAnnotation])
	}
	if WillBeNative(pod, map[string]bool{"asm-1-27": true}) {
		t.Error("a classic pod is not native")
	}
}

func TestPlaceMalformedAffinityIsLeftAlone(t *testing.T) {
	for name, r := range map[string]corev1.NodeSelectorRequirement{
		"unknown operator":  req("zone", "Near", "a"),
		"In without values": req("zone", corev1.NodeSelectorOpIn),
		"bad key":           req("not a/valid/key", corev1.NodeSelectorOpExists),
		"Gt not a number":   req("cores", corev1.NodeSelectorOpGt, "many"),
	} {
		pod := withRequired(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{r}})
		before := pod.DeepCopy()
		got, err := Place(pod, capableNodes())
		if err == nil || got != PlacedUnchanged || !equality.Semantic.DeepEqual(before, pod) {
			t.Errorf("%s: Place = %s, %v; changed=%v", name, got, err, !equality.Semantic.DeepEqual(before, pod))
		}
	}
}

func TestWillBeNative(t *testing.T) {
	native := map[string]bool{"asm-1-27": true, "asm-1-19": false}
	for name, c := range map[string]struct {
		pod  corev1.Pod
		revs map[string]bool
		want bool
	}{
		"namespace decides, a native revision": {corev1.Pod{}, native, true},
		"no native revision":                   {corev1.Pod{}, map[string]bool{"asm-1-19": false}, false},
		"pod label, classic revision":          {corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"istio.io/rev": "asm-1-19"}}}, native, false},
		"pod label, native revision":           {corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"istio.io/rev": "asm-1-27"}}}, native, true},
		"not injected":                         {corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"sidecar.istio.io/inject": "false"}}}, native, false},
		"pinned classic":                       {corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{inventory.NativeSidecarOverride: "false"}}}, native, false},
		"asks native":                          {corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{inventory.NativeSidecarOverride: "true"}}}, nil, true},
		"injected classic":                     {corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy"}}}}, native, false},
	} {
		if got := WillBeNative(&c.pod, c.revs); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}
