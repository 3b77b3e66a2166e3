package precheck

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/capacity"
	"github.com/meshaddon/meshaddon/internal/inventory"
)

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func ctr(name string, req, lim corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}
}

// nativePod is what the injector makes, native: istio-init, istio-proxy
// (restartable), then the pod's own init container "migrate", which needs
// the network; app.
func nativePod() *corev1.Pod {
	proxy := ctr(inventory.ProxyContainer, rl("cpu", "100m", "memory", "128Mi"), rl("cpu", "2", "memory", "1Gi"))
	proxy.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	return &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			ctr("istio-init", rl("cpu", "10m", "memory", "10Mi"), rl("cpu", "10m", "memory", "10Mi")),
			proxy,
			ctr("migrate", rl("cpu", "500m", "memory", "256Mi"), rl("cpu", "500m", "memory", "256Mi")),
		},
		Containers: []corev1.Container{ctr("app", rl("cpu", "200m", "memory", "64Mi"), rl("cpu", "400m", "memory", "64Mi"))},
	}}
}

func classicPod() *corev1.Pod { return ClassicPod(nativePod()) }

func TestClassicPodAndRequests(t *testing.T) {
	native := nativePod()
	classic := ClassicPod(native)
	if got := names(classic.Spec.InitContainers) + " | " + names(classic.Spec.Containers); got != "migrate,istio-init | app,istio-proxy" {
		t.Fatalf("classic containers: %s", got)
	}
	if classic.Spec.Containers[1].RestartPolicy != nil || len(native.Spec.InitContainers) != 3 {
		t.Errorf("the classic proxy keeps restartPolicy, or the native pod changed")
	}
	// Classic: max(app+proxy = 300m, migrate 500m) = 500m; native: the
	// proxy runs beside migrate: max(300m, 500m+100m) = 600m.
	for _, c := range []struct {
		pod           *corev1.Pod
		cpu, mem, lim string
	}{{classic, "500m", "256Mi", "2400m"}, {native, "600m", "384Mi", "2500m"}} {
		req, lim := capacity.PodRequests(c.pod), capacity.PodLimits(c.pod)
		if req.Cpu().String() != c.cpu || req.Memory().String() != c.mem || lim.Cpu().String() != c.lim {
			t.Errorf("requests %s, limits %s; want cpu %s memory %s, cpu limit %s", capacity.FormatList(req), capacity.FormatList(lim), c.cpu, c.mem, c.lim)
		}
	}
	// A pod without a native proxy comes back as it is.
	if got := ClassicPod(classic); names(got.Spec.Containers) != "app,istio-proxy" {
		t.Errorf("a classic pod changed: %s", names(got.Spec.Containers))
	}
}

func names(cs []corev1.Container) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return strings.Join(out, ",")
}

func limitRange(items ...corev1.LimitRangeItem) *corev1.LimitRange {
	return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "lr"}, Spec: corev1.LimitRangeSpec{Limits: items}}
}

func TestLimitRangeViolations(t *testing.T) {
	native := nativePod()
	for _, c := range []struct {
		name string
		lr   *corev1.LimitRange
		want []string // substrings, one per violation; none: admitted
	}{
		{"roomy", limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: rl("cpu", "4"), Min: rl("cpu", "10m")}), nil},
		{"container max hits the native sidecar", limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: rl("cpu", "1")}),
			[]string{"LimitRange lr: istio-proxy (native sidecar): cpu limit 2 is above the maximum 1"}},
		{"container min hits an init container", limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Min: rl("memory", "32Mi")}),
			[]string{"istio-init (init container): memory request 10Mi is below the minimum 32Mi", "istio-init (init container): memory limit 10Mi is below the minimum 32Mi"}},
		{"ratio", limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: rl("cpu", "4")}),
			[]string{"istio-proxy (native sidecar): cpu limit/request ratio 2/100m is above the maximum 4"}},
		{"pod max on the effective request", limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypePod, Max: rl("cpu", "3", "memory", "350Mi")}),
			[]string{"the pod: memory request 384Mi is above the maximum 350Mi", "the pod: memory limit"}},
		{"a default limit counts", limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: rl("ephemeral-storage", "1Gi"), Default: rl("ephemeral-storage", "2Gi")}),
			[]string{"istio-init (init container): ephemeral-storage limit 2Gi", "migrate", "istio-proxy", "app", "istio-proxy"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := LimitRangeViolations(c.lr, native)
			if len(c.want) == 0 && len(got) != 0 {
				t.Fatalf("want admitted, got %q", got)
			}
			joined := strings.Join(got, "\n")
			for _, w := range c.want {
				if !strings.Contains(joined, w) {
					t.Errorf("lacks %q:\n%s", w, joined)
				}
			}
		})
	}
	// The Pod max above refuses the native pod but not the classic one.
	// A Pod max that the classic pod meets and the native one does not: the
	// proxy's limit now adds to the init container "migrate".
	lr := limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypePod, Max: rl("memory", "1200Mi")})
	if got := LimitRangeViolations(lr, classicPod()); len(got) != 0 {
		t.Errorf("classic pod refused: %q", got)
	}
	if got := LimitRangeViolations(lr, native); len(got) != 1 || got[0] != "LimitRange lr: the pod: memory limit 1280Mi is above the maximum 1200Mi" {
		t.Errorf("native pod: %q", got)
	}
}

func node(name string, ready bool, alloc corev1.ResourceList) corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Allocatable: alloc,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
}

func TestNodeFit(t *testing.T) {
	nodes := []corev1.Node{node("small", true, rl("cpu", "500m", "memory", "1Gi")), node("big-notready", false, rl("cpu", "8", "memory", "32Gi")), node("mid", true, rl("cpu", "550m", "memory", "256Mi"))}
	if fits, n, _, _ := NodeFit(rl("cpu", "500m", "memory", "256Mi"), nodes); !fits {
		t.Errorf("500m/256Mi should fit small, got no fit (largest %s)", n)
	}
	fits, n, alloc, short := NodeFit(rl("cpu", "600m", "memory", "384Mi"), nodes)
	if fits || n != "mid" || alloc.Cpu().String() != "550m" || capacity.FormatList(short) != "cpu 50m, memory 128Mi" {
		t.Errorf("fits %v, largest %s %s, short %s; want no fit on mid (the not-Ready node does not count), short cpu 50m, memory 128Mi", fits, n, capacity.FormatList(alloc), capacity.FormatList(short))
	}
}

func TestJudgeNamespace(t *testing.T) {
	w := resourceWorkload{namespace: "ns", name: "Deployment/web", replicas: 2, classic: classicPod(), native: nativePod(), surge: 1}
	nodes := []corev1.Node{node("n", true, rl("cpu", "4", "memory", "8Gi"))}
	got := judgeNamespace("ns", []resourceWorkload{w}, nil, nil, nodes)
	if len(got) != 1 || got[0].Status != OK || got[0].Message != "ns: ok: 1 workload(s), requests cpu 1, memory 512Mi → cpu 1200m, memory 768Mi" {
		t.Errorf("clean namespace: %+v", got)
	}
	lr := []corev1.LimitRange{*limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypePod, Max: rl("memory", "1200Mi")})}
	quota := []corev1.ResourceQuota{{ObjectMeta: metav1.ObjectMeta{Name: "q"}, Spec: corev1.ResourceQuotaSpec{Hard: rl("pods", "2")}, Status: corev1.ResourceQuotaStatus{Used: rl("pods", "2")}}}
	got = judgeNamespace("ns", []resourceWorkload{w}, lr, quota, nodes[:0])
	var s []string
	for _, r := range got {
		s = append(s, line(r))
	}
	joined := strings.Join(s, "\n")
	for _, want := range []string{"fail: ns/Deployment/web: a new pod with a native istio-proxy would be refused: LimitRange lr: the pod: memory limit 1280Mi is above the maximum 1200Mi namespace=ns",
		"object=LimitRange/lr", "fail: ns/Deployment/web: a new pod requests cpu 600m, memory 384Mi, which no Ready node can hold",
		"warn: ns/Deployment/web: ResourceQuota q has no room for the restart's surge of 1 pod(s): it needs pods 1, the quota has pods 0 left (hard − used), short of pods 1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "refuse the classic pod too") {
		t.Errorf("the Pod max refuses only the native pod:\n%s", joined)
	}
}

func TestDryRunPodKeepsTheTemplatesResourcesOut(t *testing.T) {
	native := nativePod()
	tmpl := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}}
	for _, c := range native.Spec.InitContainers {
		if c.Name == "migrate" {
			tmpl.Spec.InitContainers = append(tmpl.Spec.InitContainers, c)
		}
	}
	tmpl.Spec.Containers = native.Spec.Containers
	sent := withoutResources(tmpl)
	if sent.Annotations[nativeAnnotation] != "true" || len(sent.Spec.InitContainers[0].Resources.Limits) != 0 || len(sent.Spec.Containers[0].Resources.Requests) != 0 {
		t.Fatalf("the dry-run pod: %+v", sent)
	}
	// What the injector would send back, its own containers with their
	// resources: the template's come back.
	back := nativePod()
	for i := range back.Spec.InitContainers {
		if back.Spec.InitContainers[i].Name == "migrate" {
			back.Spec.InitContainers[i].Resources = corev1.ResourceRequirements{}
		}
	}
	back.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
	got := withResourcesOf(back, tmpl)
	if a, b := capacity.FormatList(capacity.PodRequests(got)), capacity.FormatList(capacity.PodRequests(native)); a != b {
		t.Errorf("requests after restoring: %s, want %s", a, b)
	}
	if tmpl.Spec.Containers[0].Resources.Requests.Cpu().IsZero() {
		t.Error("the template was changed")
	}
}
