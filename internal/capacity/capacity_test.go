package capacity

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func TestSurgeAndQuota(t *testing.T) {
	pct := intstr.FromString("50%")
	for _, c := range []struct {
		name string
		obj  any
		want int32
	}{
		{"deployment default 25% of 3, rounded up", &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3)}}, 1},
		{"deployment 50% of 5", &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](5), Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &pct}}}}, 3},
		{"recreate", &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](5), Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}}}, 0},
		{"daemonset default", &appsv1.DaemonSet{Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 10}}, 0},
		{"daemonset surge 1", &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType, RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxSurge: ptr.To(intstr.FromInt32(1))}}}, Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 10}}, 1},
		{"statefulset", &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)}}, 0},
	} {
		if got := Surge(c.obj); got != c.want {
			t.Errorf("%s: surge %d, want %d", c.name, got, c.want)
		}
	}
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "q"},
		Spec:   corev1.ResourceQuotaSpec{Hard: rl("requests.cpu", "2", "limits.memory", "10Gi", "pods", "10", "services", "3")},
		Status: corev1.ResourceQuotaStatus{Used: rl("requests.cpu", "1500m", "limits.memory", "1Gi", "pods", "9")}}
	req, lim := rl("cpu", "600m", "memory", "384Mi"), rl("cpu", "2500m", "memory", "1280Mi")
	need, room, short := QuotaShortfall(q, 1, req, lim)
	if FormatList(short) != "requests.cpu 100m" || FormatList(need) != "limits.memory 1280Mi, pods 1, requests.cpu 600m" || FormatList(room) != "limits.memory 9Gi, pods 1, requests.cpu 500m" {
		t.Errorf("surge 1: need %s, room %s, short %s", FormatList(need), FormatList(room), FormatList(short))
	}
	if _, _, short := QuotaShortfall(q, 2, req, lim); FormatList(short) != "pods 1, requests.cpu 700m" {
		t.Errorf("surge 2: short %s", FormatList(short))
	}
	if _, _, short := QuotaShortfall(q, 0, req, lim); len(short) != 0 {
		t.Errorf("no surge: short %s", FormatList(short))
	}
}
