// Package capacity is the resource math migrate and precheck share: a
// pod's requests as the scheduler, LimitRange and ResourceQuota count them
// (k8s.io/component-helpers), the surge of a rolling restart, and what a
// surge needs of a ResourceQuota.
package capacity

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	resourcehelper "k8s.io/component-helpers/resource"
	deploymentutil "k8s.io/kubectl/pkg/util/deployment"
	"k8s.io/utils/ptr"
)

// PodRequests and PodLimits are the pod's effective requests and limits as
// the scheduler, LimitRange and ResourceQuota count them.
func PodRequests(p *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
}

func PodLimits(p *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodLimits(p, resourcehelper.PodResourcesOptions{})
}

// SortedNames are l's resource names in order, for stable messages.
func SortedNames(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for r := range l {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Lacking is, for each resource of need above have, how much more is
// needed.
func Lacking(need, have corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for r, q := range need {
		h := have[r]
		if q.Cmp(h) > 0 {
			d := q.DeepCopy()
			d.Sub(h)
			out[r] = d
		}
	}
	return out
}

// Surge is how many extra pods a rolling restart of the workload creates
// at once: a Deployment's maxSurge (25% by default, rounded up, of its
// replicas), 0 for Recreate; a DaemonSet's maxSurge of its scheduled pods
// (0 by default: it deletes before it creates); 0 for a StatefulSet, which
// replaces pods one by one in place.
func Surge(obj any) int32 {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		if w.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
			return 0
		}
		replicas := int32(1)
		if w.Spec.Replicas != nil {
			replicas = *w.Spec.Replicas
		}
		surge := intstr.FromString("25%")
		if ru := w.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
			surge = *ru.MaxSurge
		}
		n, err := intstr.GetScaledValueFromIntOrPercent(&surge, int(replicas), true)
		if err != nil {
			return 0
		}
		return int32(n)
	case *appsv1.DaemonSet:
		if w.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType || w.Spec.UpdateStrategy.RollingUpdate == nil || w.Spec.UpdateStrategy.RollingUpdate.MaxSurge == nil {
			return 0
		}
		n, err := intstr.GetScaledValueFromIntOrPercent(w.Spec.UpdateStrategy.RollingUpdate.MaxSurge, int(w.Status.DesiredNumberScheduled), true)
		if err != nil {
			return 0
		}
		return int32(n)
	}
	return 0
}

// QuotaShortfall is, for each resource that quota q limits and that a
// surge of n pods with these requests and limits would use, how much more
// the surge needs than q has left (hard − used). Empty: room enough.
func QuotaShortfall(q *corev1.ResourceQuota, n int32, req, lim corev1.ResourceList) (need, room, short corev1.ResourceList) {
	need, room, short = corev1.ResourceList{}, corev1.ResourceList{}, corev1.ResourceList{}
	if n <= 0 {
		return need, room, short
	}
	for name, hard := range q.Spec.Hard {
		per, ok := perPod(name, req, lim)
		if !ok {
			continue
		}
		total := per.DeepCopy()
		total.Mul(int64(n))
		left := hard.DeepCopy()
		if used, ok := q.Status.Used[name]; ok {
			left.Sub(used)
		}
		need[name], room[name] = total, left
		if total.Cmp(left) > 0 {
			d := total.DeepCopy()
			d.Sub(left)
			short[name] = d
		}
	}
	return need, room, short
}

// perPod is what one pod uses of a quota's resource: pods, requests.X or
// X (cpu, memory, ephemeral-storage), limits.X.
func perPod(name corev1.ResourceName, req, lim corev1.ResourceList) (resource.Quantity, bool) {
	s := string(name)
	switch {
	case name == corev1.ResourcePods:
		return resource.MustParse("1"), true
	case strings.HasPrefix(s, "requests."):
		q, ok := req[corev1.ResourceName(strings.TrimPrefix(s, "requests."))]
		return q, ok
	case strings.HasPrefix(s, "limits."):
		q, ok := lim[corev1.ResourceName(strings.TrimPrefix(s, "limits."))]
		return q, ok
	case name == corev1.ResourceCPU || name == corev1.ResourceMemory || name == corev1.ResourceEphemeralStorage:
		q, ok := req[name]
		return q, ok
	}
	return resource.Quantity{}, false
}

// FormatList prints a resource list as "cpu 100m, memory 128Mi".
func FormatList(l corev1.ResourceList) string {
	if len(l) == 0 {
		return "nothing"
	}
	var parts []string
	for _, r := range SortedNames(l) {
		q := l[r]
		parts = append(parts, fmt.Sprintf("%s %s", r, q.String()))
	}
	return strings.Join(parts, ", ")
}

// AddTimes adds n×l to sum.
func AddTimes(sum corev1.ResourceList, l corev1.ResourceList, n int) {
	for r, q := range l {
		t := q.DeepCopy()
		t.Mul(int64(n))
		s := sum[r]
		s.Add(t)
		sum[r] = s
	}
}

// MaxUnavailable is how many of the workload's pods its rolling update may
// take down at once: a Deployment's maxUnavailable resolved against its
// replicas as the deployment controller does (kubectl's ResolveFenceposts:
// rounded down, and 1 when maxSurge is 0 too), all of them for Recreate; a
// DaemonSet's maxUnavailable of its scheduled pods (1 by default); 1 for a
// StatefulSet, which replaces one pod at a time, or its maxUnavailable.
func MaxUnavailable(obj any) int32 {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		replicas := ptr.Deref(w.Spec.Replicas, 1)
		if w.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
			return replicas
		}
		surge, unavailable := intstr.FromString("25%"), intstr.FromString("25%")
		if ru := w.Spec.Strategy.RollingUpdate; ru != nil {
			surge, unavailable = ptr.Deref(ru.MaxSurge, surge), ptr.Deref(ru.MaxUnavailable, unavailable)
		}
		_, n, err := deploymentutil.ResolveFenceposts(&surge, &unavailable, replicas)
		if err != nil {
			return 1
		}
		return n
	case *appsv1.DaemonSet:
		ru := w.Spec.UpdateStrategy.RollingUpdate
		if ru == nil || ru.MaxUnavailable == nil {
			return 1
		}
		n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, int(w.Status.DesiredNumberScheduled), false)
		if err != nil {
			return 1
		}
		if n < 1 && (ru.MaxSurge == nil || ru.MaxSurge.IntValue() == 0) {
			n = 1
		}
		return int32(n)
	case *appsv1.StatefulSet:
		ru := w.Spec.UpdateStrategy.RollingUpdate
		if ru == nil || ru.MaxUnavailable == nil {
			return 1
		}
		n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, int(ptr.Deref(w.Spec.Replicas, 1)), false)
		if err != nil || n < 1 {
			return 1
		}
		return int32(n)
	}
	return 1
}
