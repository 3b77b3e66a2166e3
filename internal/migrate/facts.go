package migrate

// What the scheduler knows of each restart before it starts (issue 14): its
// surge and maxUnavailable from its strategy, the PodDisruptionBudgets that
// select its pods, the ResourceQuotas it draws on, and its pods' requests;
// and the run's surge budget. Rolling restarts are not limited by PDBs
// (kubernetes/kubernetes#89820, #95374, #123911), so migrate is.

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/capacity"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// podResources are one pod's requests and limits.
type podResources struct{ req, lim corev1.ResourceList }

// gather reads each restart's pod template and fills in its facts. pods
// are the requests of one classic pod of each workload, read with the plan.
// decide sees each restart with its template read (templated) and may turn
// it into a report, before its facts are gathered.
func (p *Plan) gather(ctx context.Context, kube kubernetes.Interface, scope Scope, pods map[inventory.Workload]podResources, decide func(*Item)) error {
	idx := map[inventory.Workload]*Item{}
	for i := range p.Items {
		if p.Items[i].Action == ActionRestart {
			idx[p.Items[i].Workload] = &p.Items[i]
		}
	}
	if len(idx) == 0 {
		return nil
	}
	for w, r := range pods {
		if it := idx[w]; it != nil {
			it.PodRequests, it.podLimits = r.req, r.lim
		}
	}
	opts := metav1.ListOptions{Limit: 500}
	apps := kube.AppsV1()
	ns := scope.Namespace
	set := func(kind string, obj metav1.Object, spec func(*Item)) {
		if it := idx[inventory.Workload{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}]; it != nil {
			it.labels = obj.GetLabels()
			it.templated = true
			spec(it)
		}
	}
	err := inventory.EachListPage(ctx, opts, apps.Deployments(ns).List, func(l *appsv1.DeploymentList) error {
		for i := range l.Items {
			d := &l.Items[i]
			set("Deployment", d, func(it *Item) {
				it.Replicas, it.Surge, it.MaxUnavailable = ptr.Deref(d.Spec.Replicas, 1), capacity.Surge(d), capacity.MaxUnavailable(d)
				it.podLabels, it.podAnnotations = d.Spec.Template.Labels, d.Spec.Template.Annotations
			})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list deployments: %w", err)
	}
	err = inventory.EachListPage(ctx, opts, apps.StatefulSets(ns).List, func(l *appsv1.StatefulSetList) error {
		for i := range l.Items {
			s := &l.Items[i]
			set("StatefulSet", s, func(it *Item) {
				it.Replicas, it.Surge, it.MaxUnavailable = ptr.Deref(s.Spec.Replicas, 1), capacity.Surge(s), capacity.MaxUnavailable(s)
				it.podLabels, it.podAnnotations = s.Spec.Template.Labels, s.Spec.Template.Annotations
				if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ptr.Deref(ru.Partition, 0) > 0 {
					it.Notes = append(it.Notes, fmt.Sprintf("rollingUpdate.partition %d: the StatefulSet controller only replaces pods with an ordinal ≥ %d, so the others stay classic", *ru.Partition, *ru.Partition))
				}
				if s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
					it.Notes = append(it.Notes, "update strategy OnDelete: migrate cannot roll it; it is skipped with what to do")
				}
			})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list statefulsets: %w", err)
	}
	err = inventory.EachListPage(ctx, opts, apps.DaemonSets(ns).List, func(l *appsv1.DaemonSetList) error {
		for i := range l.Items {
			d := &l.Items[i]
			set("DaemonSet", d, func(it *Item) {
				it.Replicas, it.Surge, it.MaxUnavailable = d.Status.DesiredNumberScheduled, capacity.Surge(d), capacity.MaxUnavailable(d)
				it.podLabels, it.podAnnotations = d.Spec.Template.Labels, d.Spec.Template.Annotations
				if d.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
					it.Notes = append(it.Notes, "update strategy OnDelete: migrate cannot roll it; it is skipped with what to do")
				}
			})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list daemonsets: %w", err)
	}
	for w, it := range idx {
		if decide(it); it.Action != ActionRestart {
			it.Notes = nil // of a restart that will not be
			delete(idx, w)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	pdbs, err := listPDBs(ctx, kube, ns)
	if err != nil {
		return err
	}
	quotas, err := listQuotas(ctx, kube, ns)
	if err != nil {
		return err
	}
	for _, it := range idx {
		it.underPDBs(pdbs[it.Namespace])
		sort.Strings(it.PDBs)
		for i := range quotas[it.Namespace] {
			q := &quotas[it.Namespace][i]
			if need, _, _ := capacity.QuotaShortfall(q, 1, it.PodRequests, it.podLimits); len(need) > 0 {
				it.Quotas = append(it.Quotas, q.Name)
			}
			if need, room, short := capacity.QuotaShortfall(q, it.Surge, it.PodRequests, it.podLimits); len(short) > 0 {
				it.Notes = append(it.Notes, fmt.Sprintf("ResourceQuota %s has no room for its surge of %d pod(s) now: it needs %s, the quota has %s left, short of %s; it waits for room while others finish, and fails if there is none", q.Name, it.Surge, capacity.FormatList(need), capacity.FormatList(room), capacity.FormatList(short)))
			}
		}
		sort.Strings(it.Quotas)
	}
	return nil
}

// underPDBs finds the PDBs that select its pods, and notes a PDB whose
// selector is invalid (skipped, never a panic) and one that allows fewer
// disruptions than its rollout makes.
func (it *Item) underPDBs(pdbs []policyv1.PodDisruptionBudget) {
	for _, pdb := range pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			it.Notes = append(it.Notes, fmt.Sprintf("PodDisruptionBudget %s has an invalid selector (%v): it is not a gate of this restart; fix it (kubectl -n %s edit pdb %s)", pdb.Name, err, pdb.Namespace, pdb.Name))
			continue
		}
		// policy/v1: a nil selector selects no pod, an empty one every pod.
		if !sel.Matches(labels.Set(it.podLabels)) {
			continue
		}
		it.PDBs = append(it.PDBs, pdb.Name)
		if allowed := pdb.Status.ExpectedPods - pdb.Status.DesiredHealthy; pdb.Status.ObservedGeneration > 0 && it.MaxUnavailable > allowed {
			it.Notes = append(it.Notes, fmt.Sprintf("its rollout may take down %d pod(s) at once (maxUnavailable), more than the %d PodDisruptionBudget %s allows when all its pods are healthy: lower maxUnavailable (rolling updates do not respect PDBs, kubernetes/kubernetes#89820)", it.MaxUnavailable, allowed, pdb.Name))
		}
	}
}

func listPDBs(ctx context.Context, kube kubernetes.Interface, ns string) (map[string][]policyv1.PodDisruptionBudget, error) {
	out := map[string][]policyv1.PodDisruptionBudget{}
	err := inventory.EachListPage(ctx, metav1.ListOptions{Limit: 500}, kube.PolicyV1().PodDisruptionBudgets(ns).List, func(l *policyv1.PodDisruptionBudgetList) error {
		for _, p := range l.Items {
			out[p.Namespace] = append(out[p.Namespace], p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list poddisruptionbudgets: %w", err)
	}
	return out, nil
}

func listQuotas(ctx context.Context, kube kubernetes.Interface, ns string) (map[string][]corev1.ResourceQuota, error) {
	out := map[string][]corev1.ResourceQuota{}
	err := inventory.EachListPage(ctx, metav1.ListOptions{Limit: 500}, kube.CoreV1().ResourceQuotas(ns).List, func(l *corev1.ResourceQuotaList) error {
		for _, q := range l.Items {
			out[q.Namespace] = append(out[q.Namespace], q)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list resourcequotas: %w", err)
	}
	return out, nil
}

// FreeSurgePods is the default surge budget: how many pods of the plan's
// largest request fit the free allocatable of the Ready, schedulable nodes
// (allocatable minus the requests of the pods bound there, and the free pod
// slots), at least 1. from says how it was derived, for the plan.
func FreeSurgePods(ctx context.Context, kube kubernetes.Interface, p *Plan) (n int32, from string, err error) {
	var nodes []corev1.Node
	err = inventory.EachListPage(ctx, metav1.ListOptions{Limit: 1000}, kube.CoreV1().Nodes().List, func(l *corev1.NodeList) error {
		nodes = append(nodes, l.Items...)
		return nil
	})
	if err != nil {
		return 0, "", fmt.Errorf("list nodes: %w", err)
	}
	used := map[string]corev1.ResourceList{}
	podsOn := map[string]int64{}
	err = inventory.EachListPage(ctx, metav1.ListOptions{Limit: 500}, kube.CoreV1().Pods("").List, func(l *corev1.PodList) error {
		for i := range l.Items {
			pod := &l.Items[i]
			if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				continue
			}
			u := used[pod.Spec.NodeName]
			if u == nil {
				u = corev1.ResourceList{}
				used[pod.Spec.NodeName] = u
			}
			capacity.AddTimes(u, capacity.PodRequests(pod), 1)
			podsOn[pod.Spec.NodeName]++
		}
		return nil
	})
	if err != nil {
		return 0, "", fmt.Errorf("list pods in every namespace, to size the surge budget from the nodes' free allocatable (or pass --max-surge-pods): %w", err)
	}
	per := corev1.ResourceList{}
	for _, it := range p.Items {
		for r, q := range it.PodRequests {
			if cur, ok := per[r]; !ok || q.Cmp(cur) > 0 {
				per[r] = q
			}
		}
	}
	total, ready := int64(0), 0
	for i := range nodes {
		node := &nodes[i]
		if !meshversion.IsReady(node) || node.Spec.Unschedulable {
			continue
		}
		ready++
		fit := int64(-1)
		if slots, ok := node.Status.Allocatable[corev1.ResourcePods]; ok {
			fit = max(0, slots.Value()-podsOn[node.Name])
		}
		for r, q := range per {
			if q.IsZero() {
				continue
			}
			free, ok := node.Status.Allocatable[r]
			if !ok {
				fit = 0
				continue
			}
			free = free.DeepCopy()
			if u, ok := used[node.Name][r]; ok {
				free.Sub(u)
			}
			k := int64(0)
			if free.Sign() > 0 {
				k = free.MilliValue() / max(1, q.MilliValue())
			}
			if fit < 0 || k < fit {
				fit = k
			}
		}
		if fit > 0 {
			total += fit
		}
	}
	n = int32(min(max(total, 1), 1<<20))
	return n, fmt.Sprintf("free allocatable of %d Ready node(s), for pods requesting %s", ready, capacity.FormatList(per)), nil
}

// size orders canary candidates: replicas × the pod's CPU request, then
// memory, then replicas.
func (it *Item) size() (cpu, mem int64) {
	r := int64(max(it.Replicas, 1))
	c, m := it.PodRequests[corev1.ResourceCPU], it.PodRequests[corev1.ResourceMemory]
	return r * c.MilliValue(), r * m.Value()
}
