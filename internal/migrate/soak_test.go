package migrate

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// TestCanarySoak runs the soak on a real API server against pods whose
// status the test writes as a kubelet would: a canary that stays native
// and Ready passes; one whose pod turns not Ready, or restarts a
// container, during the soak fails naming the pod.
func TestCanarySoak(t *testing.T) {
	kc := kubernetes.NewForConfigOrDie(testenv.Start(t))
	ctx := context.Background()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "soak"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(p *corev1.Pod)
		want   string
	}{
		{"stays native and Ready", nil, ""},
		{"a pod turns not Ready", func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }, "pod web-1 is not Ready"},
		{"a container restarts", func(p *corev1.Pod) { p.Status.ContainerStatuses[0].RestartCount++ }, "pod web-1 restarted a container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "web"
			labels := map[string]string{"app": name, "case": strings.ToLower(strings.ReplaceAll(tc.name, " ", "-"))}
			dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: "soak"}, Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}}}
			dep, err := kc.AppsV1().Deployments("soak").Create(ctx, dep, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var pods []*corev1.Pod
			for _, pn := range []string{"web-0", "web-1"} {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pn + "-" + labels["case"], Namespace: "soak", Labels: labels},
					Spec: corev1.PodSpec{
						InitContainers: []corev1.Container{{Name: inventory.ProxyContainer, Image: "proxyv2", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
						Containers:     []corev1.Container{{Name: "app", Image: "app"}}}}
				if p, err = kc.CoreV1().Pods("soak").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: "app", ImageID: "app", Ready: true}}
				if p, err = kc.CoreV1().Pods("soak").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				pods = append(pods, p)
			}
			if tc.change != nil {
				go func() {
					time.Sleep(1500 * time.Millisecond)
					p := pods[1].DeepCopy()
					tc.change(p)
					if _, err := kc.CoreV1().Pods("soak").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
						t.Error(err)
					}
				}()
			}
			p := &Plan{Items: []Item{{WorkloadSummary: inventory.WorkloadSummary{Workload: inventory.Workload{Kind: "Deployment", Namespace: "soak", Name: dep.Name}}, Action: ActionRestart, Canary: true}}}
			results := []Result{{Workload: p.Items[0].Workload, Outcome: Migrated}}
			ok := (&Runner{Kube: kc}).soak(ctx, p, []int{0}, results, 3*time.Second)
			want := strings.ReplaceAll(tc.want, "web-1", "web-1-"+labels["case"])
			switch {
			case tc.want == "" && (!ok || results[0].Outcome != Migrated):
				t.Errorf("soak failed: %+v", results[0])
			case tc.want != "" && (ok || results[0].Outcome != Failed || !strings.Contains(results[0].Message, want)):
				t.Errorf("soak: ok %v, %+v; want it failed with %q", ok, results[0], want)
			}
		})
	}
}
