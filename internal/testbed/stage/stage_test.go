package stage

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kwokv1alpha1 "sigs.k8s.io/kwok/pkg/apis/v1alpha1"
	"sigs.k8s.io/kwok/pkg/utils/expression"
)

func pod(node string, native bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "web"}}}
	p.Spec.NodeName = node
	p.Spec.InitContainers = []corev1.Container{{Name: "istio-init"}}
	if native {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "istio-proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)})
	}
	p.Spec.Containers = []corev1.Container{{Name: "web"}}
	return p
}

// eval runs a selector key through kwok's own jq evaluator.
func eval(t *testing.T, key string, obj any) string {
	t.Helper()
	q, err := expression.NewQuery(key)
	if err != nil {
		t.Fatalf("key %q does not compile: %v", key, err)
	}
	out, err := q.Execute(context.Background(), obj)
	if err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
	if len(out) != 1 {
		return fmt.Sprint(out)
	}
	return fmt.Sprint(out[0])
}

func TestHangsKey(t *testing.T) {
	key := hangsKey([]string{"old-1", "old-2"})
	cases := []struct {
		name  string
		pod   *corev1.Pod
		hangs string
	}{
		{"native on an old node", pod("old-2", true), "true"},
		{"classic on an old node", pod("old-1", false), "false"},
		{"native on a new node", pod("new-1", true), "false"},
		{"native, not bound yet", pod("", true), "false"},
	}
	for _, tc := range cases {
		if got := eval(t, key, tc.pod); got != tc.hangs {
			t.Errorf("%s: key says %s, want %s", tc.name, got, tc.hangs)
		}
	}
	if got := eval(t, hangsKey(nil), pod("x", true)); got != "false" {
		t.Errorf("no old nodes: %s", got)
	}
}

func TestRunnerKey(t *testing.T) {
	p := pod("n", false)
	p.Namespace, p.Labels["app"] = "aks-istio-system", "istiod"
	if got := eval(t, runnerKey, p); got != "aks-istio-system/istiod" {
		t.Errorf("runner key %q", got)
	}
}

func TestBuild(t *testing.T) {
	stages, err := Build(Options{PodStartDelay: 2 * time.Second, OldNodes: []string{"b", "a"}, RunnerPods: []string{"aks-istio-system/istiod"}})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*kwokv1alpha1.Stage{}
	for _, s := range stages {
		if s.Labels[ManagedByLabel] != ManagedBy || s.Kind != "Stage" {
			t.Errorf("stage %s lacks its kind or label", s.Name)
		}
		for _, e := range s.Spec.Selector.MatchExpressions {
			if _, err := expression.NewQuery(e.Key); err != nil {
				t.Errorf("stage %s: key %q does not compile: %v", s.Name, e.Key, err)
			}
		}
		byName[s.Name] = s
	}
	for _, n := range []string{"node-initialize", "node-heartbeat-with-lease", nodeStoppedName, "pod-ready", podHangsName, "pod-complete", "pod-delete"} {
		if byName[n] == nil {
			t.Errorf("missing stage %s", n)
		}
	}
	ready := byName["pod-ready"]
	if ready.Spec.Delay == nil || *ready.Spec.Delay.DurationMilliseconds != 2000 {
		t.Errorf("pod-ready delay %+v, want 2000ms", ready.Spec.Delay)
	}
	// The old-node list is sorted so rewriting it with the same nodes is a no-op.
	again, _ := Build(Options{PodStartDelay: 2 * time.Second, OldNodes: []string{"a", "b"}, RunnerPods: []string{"aks-istio-system/istiod"}})
	for i := range stages {
		if !reflect.DeepEqual(stages[i].Spec, again[i].Spec) {
			t.Errorf("stage %s depends on the order of old nodes", stages[i].Name)
		}
	}
}
