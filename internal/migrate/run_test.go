package migrate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
)

// pod is a pod made from a template restarted at restartedAt ("" for one
// never restarted), with a classic or native sidecar.
func pod(restartedAt string, native bool, annotations ...string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-" + restartedAt, Annotations: map[string]string{}}}
	if restartedAt != "" {
		p.Annotations[RestartedAtAnnotation] = restartedAt
	}
	for i := 0; i+1 < len(annotations); i += 2 {
		p.Annotations[annotations[i]] = annotations[i+1]
	}
	proxy := corev1.Container{Name: inventory.ProxyContainer}
	if native {
		proxy.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		p.Spec.InitContainers = []corev1.Container{proxy}
		p.Spec.Containers = []corev1.Container{{Name: "app"}}
	} else {
		p.Spec.Containers = []corev1.Container{{Name: "app"}, proxy}
	}
	return p
}

func TestResumes(t *testing.T) {
	const first, second = "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"
	for _, tc := range []struct {
		name  string
		stamp string
		pods  []corev1.Pod
		want  bool
	}{
		// A run killed mid-rollout: the classic pods are the ones the
		// marked restart is replacing.
		{"killed before any new pod", first, []corev1.Pod{pod("", false), pod("", false)}, true},
		{"killed mid-rollout", first, []corev1.Pod{pod("", false), pod(first, true)}, true},
		{"classic pods from an older restart", second, []corev1.Pod{pod(first, false), pod(second, true)}, true},
		{"the rollout finished before this run looked", first, []corev1.Pod{pod(first, true), pod(first, true)}, true},
		{"no pods (being rescheduled)", first, nil, true},
		// The marked restart is over: its own template's pods are classic.
		{"mesh went classic and back: pods recreated classic", first, []corev1.Pod{pod(first, false), pod(first, false)}, false},
		{"a scale-up while classic", first, []corev1.Pod{pod(first, true), pod(first, false)}, false},
		{"a drain while classic, mid-way", first, []corev1.Pod{pod("", false), pod(first, false)}, false},
		// A pod pinned classic by the per-pod override is not migrate's to fix.
		{"overridden classic pod", first, []corev1.Pod{pod(first, false, inventory.NativeSidecarOverride, "false")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resumes(tc.stamp, tc.pods); got != tc.want {
				t.Errorf("resumes(%s) = %v, want %v", tc.stamp, got, tc.want)
			}
		})
	}
}

func TestRefusedRestartsAreNotStarted(t *testing.T) {
	item := func(ns, kind, name, action string) Item {
		return Item{WorkloadSummary: inventory.WorkloadSummary{Workload: inventory.Workload{Kind: kind, Namespace: ns, Name: name}}, Action: action}
	}
	p := &Plan{Items: []Item{
		item("hostile", "Deployment", "a", ActionRestart),
		item("mix", "Deployment", "withinit", ActionRestart),
		item("hostile", "Job", "j", ActionReport),
	}}
	why := map[string]string{"hostile/Deployment/a": "refused there", "mix/Deployment/withinit": "LimitRange lr", "hostile/Job/j": "not a restart"}
	if n := p.Refuse(func(ns, w string) string { return why[ns+"/"+w] }); n != 2 || p.Restarts() != 0 {
		t.Fatalf("refused %d, restarts left %d; want 2 and 0", n, p.Restarts())
	}
	// Nothing restarts, so the runner needs no API server.
	res := (&Runner{Concurrency: 1}).Run(t.Context(), p)
	want := []string{"refused: refused by precheck: refused there", "refused: refused by precheck: LimitRange lr", "reported: "}
	for i, r := range res {
		if got := r.Outcome + ": " + r.Message; got != want[i] {
			t.Errorf("%s: %q, want %q", r.Workload, got, want[i])
		}
	}
}

func TestOwnEvent(t *testing.T) {
	web := inventory.Workload{Kind: "Deployment", Namespace: "shop", Name: "web"}
	for obj, want := range map[string]bool{"web-5d9c8b7f6": true, "web-api-5d9c8b7f6": false, "web": false, "web-": false, "webx-5d9c8b7f6": false} {
		if got := ownEvent(web, obj); got != want {
			t.Errorf("ownEvent(web, %s) = %v", obj, got)
		}
	}
	if !ownEvent(inventory.Workload{Kind: "StatefulSet", Name: "db"}, "db") || ownEvent(inventory.Workload{Kind: "StatefulSet", Name: "db"}, "db-0") {
		t.Error("a StatefulSet's events are its own")
	}
}
