package precheck

// The resource check: a native sidecar is counted by the scheduler, by
// LimitRange and by ResourceQuota as a restartable init container
// (kubernetes/website#57244), so a pod that fitted as classic may not as
// native, and a restart needs room for its surge. For every workload that
// migrate would restart (its plan, asked as if every revision injected
// native), one of its classic pods is turned into the native pod the
// injector will make, and both are measured with Kubernetes' own code.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/pager"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/migrate"
)

// nativeInitOrder is how Istio's injector orders the init containers of a
// native pod (reorderPod in pkg/kube/inject/webhook.go): istio-init or
// istio-validation, then the proxy, then enable-core-dump, then the pod's
// own, which thus run beside the proxy. Classic, istio-init runs last.
var nativeInitOrder = []string{"istio-init", "istio-validation", inventory.ProxyContainer, "enable-core-dump"}

// NativePod is classic with istio-proxy moved from the containers to a
// restartable init container, ordered as the injector orders a native pod:
// what native injection changes. A pod without istio-proxy among its
// containers comes back as it is.
func NativePod(classic *corev1.Pod) *corev1.Pod {
	p := classic.DeepCopy()
	at := -1
	for i, c := range p.Spec.Containers {
		if c.Name == inventory.ProxyContainer {
			at = i
		}
	}
	if at < 0 {
		return p
	}
	proxy := p.Spec.Containers[at]
	proxy.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
	p.Spec.Containers = append(p.Spec.Containers[:at:at], p.Spec.Containers[at+1:]...)
	all := append([]corev1.Container{proxy}, p.Spec.InitContainers...)
	var inits []corev1.Container
	for _, name := range nativeInitOrder {
		for _, c := range all {
			if c.Name == name {
				inits = append(inits, c)
			}
		}
	}
	for _, c := range all {
		if !slices.Contains(nativeInitOrder, c.Name) {
			inits = append(inits, c)
		}
	}
	p.Spec.InitContainers = inits
	return p
}

// PodRequests and PodLimits are the pod's effective requests and limits as
// the scheduler, LimitRange and ResourceQuota count them.
func PodRequests(p *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
}

func PodLimits(p *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodLimits(p, resourcehelper.PodResourcesOptions{})
}

// withLimitRangeDefaults is p as the LimitRanger admission sees it after
// filling the Container defaults of lr into containers that lack them (a
// pod created before the LimitRange did not get them).
func withLimitRangeDefaults(lr *corev1.LimitRange, p *corev1.Pod) *corev1.Pod {
	p = p.DeepCopy()
	for _, item := range lr.Spec.Limits {
		if item.Type != corev1.LimitTypeContainer {
			continue
		}
		fill := func(c *corev1.Container) {
			if c.Resources.Limits == nil {
				c.Resources.Limits = corev1.ResourceList{}
			}
			if c.Resources.Requests == nil {
				c.Resources.Requests = corev1.ResourceList{}
			}
			for r, q := range item.Default {
				if _, ok := c.Resources.Limits[r]; !ok {
					c.Resources.Limits[r] = q.DeepCopy()
				}
			}
			for r, q := range item.DefaultRequest {
				if _, ok := c.Resources.Requests[r]; !ok {
					c.Resources.Requests[r] = q.DeepCopy()
				}
			}
			// As the API defaults it: a limit without a request is also
			// the request.
			for r, q := range c.Resources.Limits {
				if _, ok := c.Resources.Requests[r]; !ok {
					c.Resources.Requests[r] = q.DeepCopy()
				}
			}
		}
		for i := range p.Spec.InitContainers {
			fill(&p.Spec.InitContainers[i])
		}
		for i := range p.Spec.Containers {
			fill(&p.Spec.Containers[i])
		}
	}
	return p
}

// LimitRangeViolations says why lr's LimitRanger would refuse p: the
// Container limits on every container, init containers included, and the
// Pod limits on the pod's effective requests and limits, as
// plugin/pkg/admission/limitranger checks them. Empty: admitted.
func LimitRangeViolations(lr *corev1.LimitRange, p *corev1.Pod) []string {
	p = withLimitRangeDefaults(lr, p)
	var out []string
	for _, item := range lr.Spec.Limits {
		switch item.Type {
		case corev1.LimitTypeContainer:
			for _, c := range p.Spec.InitContainers {
				what := c.Name + " (init container)"
				if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
					what = c.Name + " (native sidecar)"
				}
				out = append(out, bounds(lr.Name, what, item, c.Resources.Requests, c.Resources.Limits)...)
			}
			for _, c := range p.Spec.Containers {
				out = append(out, bounds(lr.Name, c.Name, item, c.Resources.Requests, c.Resources.Limits)...)
			}
		case corev1.LimitTypePod:
			out = append(out, bounds(lr.Name, "the pod", item, PodRequests(p), PodLimits(p))...)
		}
	}
	return out
}

// bounds checks one LimitRange item's min, max and maxLimitRequestRatio on
// what (a container or the pod).
func bounds(lr, what string, item corev1.LimitRangeItem, req, lim corev1.ResourceList) []string {
	var out []string
	bad := func(format string, a ...any) {
		out = append(out, fmt.Sprintf("LimitRange %s: %s: ", lr, what)+fmt.Sprintf(format, a...))
	}
	for _, r := range sortedNames(item.Min) {
		min := item.Min[r]
		q, ok := req[r]
		switch {
		case !ok:
			bad("no %s request, but the minimum is %s", r, min.String())
		case q.Cmp(min) < 0:
			bad("%s request %s is below the minimum %s", r, q.String(), min.String())
		}
		if l, ok := lim[r]; ok && l.Cmp(min) < 0 {
			bad("%s limit %s is below the minimum %s", r, l.String(), min.String())
		}
	}
	for _, r := range sortedNames(item.Max) {
		max := item.Max[r]
		l, ok := lim[r]
		switch {
		case !ok:
			bad("no %s limit, but the maximum is %s", r, max.String())
		case l.Cmp(max) > 0:
			bad("%s limit %s is above the maximum %s", r, l.String(), max.String())
		}
		if q, ok := req[r]; ok && q.Cmp(max) > 0 {
			bad("%s request %s is above the maximum %s", r, q.String(), max.String())
		}
	}
	for _, r := range sortedNames(item.MaxLimitRequestRatio) {
		ratio := item.MaxLimitRequestRatio[r]
		q, qok := req[r]
		l, lok := lim[r]
		switch {
		case !qok || q.IsZero():
			bad("no %s request, but the limit/request ratio may be at most %s", r, ratio.String())
		case !lok:
			bad("no %s limit, but the limit/request ratio may be at most %s", r, ratio.String())
		case float64(l.MilliValue())/float64(q.MilliValue()) > ratio.AsApproximateFloat64():
			bad("%s limit/request ratio %s/%s is above the maximum %s", r, l.String(), q.String(), ratio.String())
		}
	}
	return out
}

func sortedNames(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for r := range l {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// NodeFit tells whether req fits the allocatable of a Ready node; when
// none does, it names the largest Ready node (by CPU, then memory), its
// allocatable, and what req lacks there.
func NodeFit(req corev1.ResourceList, nodes []corev1.Node) (fits bool, largest string, allocatable, shortfall corev1.ResourceList) {
	var best *corev1.Node
	for i := range nodes {
		n := &nodes[i]
		if !nodeReady(n) {
			continue
		}
		if len(lacking(req, n.Status.Allocatable)) == 0 {
			return true, n.Name, n.Status.Allocatable, nil
		}
		if best == nil || larger(n.Status.Allocatable, best.Status.Allocatable) {
			best = n
		}
	}
	if best == nil {
		return false, "", nil, req
	}
	return false, best.Name, best.Status.Allocatable, lacking(req, best.Status.Allocatable)
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func larger(a, b corev1.ResourceList) bool {
	if c := a.Cpu().Cmp(*b.Cpu()); c != 0 {
		return c > 0
	}
	return a.Memory().Cmp(*b.Memory()) > 0
}

// lacking is, for each resource of need above have, how much more is
// needed.
func lacking(need, have corev1.ResourceList) corev1.ResourceList {
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

// formatList prints a resource list as "cpu 100m, memory 128Mi".
func formatList(l corev1.ResourceList) string {
	if len(l) == 0 {
		return "nothing"
	}
	var parts []string
	for _, r := range sortedNames(l) {
		q := l[r]
		parts = append(parts, fmt.Sprintf("%s %s", r, q.String()))
	}
	return strings.Join(parts, ", ")
}

// addTimes adds n×l to sum.
func addTimes(sum corev1.ResourceList, l corev1.ResourceList, n int) {
	for r, q := range l {
		t := q.DeepCopy()
		t.Mul(int64(n))
		s := sum[r]
		s.Add(t)
		sum[r] = s
	}
}

// resourceWorkload is one workload of the plan with its pods before and
// after, and its surge.
type resourceWorkload struct {
	migrate.Item
	classic, native *corev1.Pod
	surge           int32
}

func checkResources(ctx context.Context, e *Env) ([]Result, error) {
	revs, err := e.Revisions(ctx)
	if err != nil {
		return nil, err
	}
	native := map[string]bool{}
	for _, r := range revs {
		native[r] = true
	}
	plan, err := migrate.PlanFor(ctx, e.Kube, migrate.Scope{MeshNamespace: e.MeshNamespace}, native)
	if err != nil {
		return nil, err
	}
	if len(plan.Items) == 0 {
		return one(Skip, "no workload has classic sidecars to restart", ""), nil
	}
	byNS := map[string][]resourceWorkload{}
	var namespaces []string
	for _, it := range plan.Items {
		pod, err := e.Kube.CoreV1().Pods(it.Namespace).Get(ctx, it.Sample, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // gone since it was listed: nothing to restart
		}
		if err != nil {
			return nil, fmt.Errorf("get pod %s/%s: %w", it.Namespace, it.Sample, err)
		}
		w := resourceWorkload{Item: it, classic: pod, native: NativePod(pod)}
		if it.Action == migrate.ActionRestart {
			if w.surge, err = workloadSurge(ctx, e, it.Workload); err != nil {
				return nil, err
			}
		}
		if byNS[it.Namespace] == nil {
			namespaces = append(namespaces, it.Namespace)
		}
		byNS[it.Namespace] = append(byNS[it.Namespace], w)
	}
	nodes, err := e.NodeObjects(ctx)
	if err != nil {
		return nil, err
	}
	sort.Strings(namespaces)
	var out []Result
	for _, ns := range namespaces {
		lrs, err := e.Kube.CoreV1().LimitRanges(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list LimitRanges in %s: %w", ns, err)
		}
		quotas, err := e.Kube.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list ResourceQuotas in %s: %w", ns, err)
		}
		found := judgeNamespace(ns, byNS[ns], lrs.Items, quotas.Items, nodes)
		out = append(out, found...)
	}
	return out, nil
}

// judgeNamespace is the resource check of one namespace's workloads,
// without the API server: findings, else one ok line.
func judgeNamespace(ns string, ws []resourceWorkload, lrs []corev1.LimitRange, quotas []corev1.ResourceQuota, nodes []corev1.Node) []Result {
	var out []Result
	before, after := corev1.ResourceList{}, corev1.ResourceList{}
	for _, w := range ws {
		name := ns + "/" + w.Workload.String()
		details := []string{"namespace=" + ns, "workload=" + w.Workload.String()}
		req, lim := PodRequests(w.native), PodLimits(w.native)
		addTimes(before, PodRequests(w.classic), w.Classic)
		addTimes(after, req, w.Classic)
		for i := range lrs {
			if v := LimitRangeViolations(&lrs[i], w.native); len(v) > 0 {
				also := ""
				if len(LimitRangeViolations(&lrs[i], w.classic)) > 0 {
					also = " (it would refuse the classic pod too: the LimitRange is newer than the pod)"
				}
				out = append(out, Result{Status: Fail,
					Message: fmt.Sprintf("%s: a new pod with a native istio-proxy would be refused: %s%s", name, strings.Join(v, "; "), also),
					Hint:    fmt.Sprintf("raise the bounds of LimitRange %s/%s, or set the proxy's resources within them (sidecar.istio.io/proxyCPU, proxyMemory, proxyCPULimit, proxyMemoryLimit annotations), then run precheck again", ns, lrs[i].Name),
					Details: append(details, "limitrange="+lrs[i].Name)})
			}
		}
		if fits, node, alloc, short := NodeFit(req, nodes); !fits {
			msg := fmt.Sprintf("%s: a new pod requests %s, which no Ready node can hold", name, formatList(req))
			if node != "" {
				msg += fmt.Sprintf(": the largest, %s, has %s allocatable (short of %s)", node, formatList(alloc), formatList(short))
			}
			out = append(out, Result{Status: Fail, Message: msg,
				Hint:    "lower the workload's or the proxy's requests, or add a node pool with larger nodes, then run precheck again",
				Details: details})
		}
		for i := range quotas {
			q := &quotas[i]
			if len(q.Spec.Scopes) > 0 || q.Spec.ScopeSelector != nil {
				continue // scoped quotas are not evaluated here
			}
			need, room, short := QuotaShortfall(q, w.surge, req, lim)
			if len(short) == 0 {
				continue
			}
			out = append(out, Result{Status: Warn,
				Message: fmt.Sprintf("%s: ResourceQuota %s has no room for the restart's surge of %d pod(s): it needs %s, the quota has %s left (hard − used), short of %s", name, q.Name, w.surge, formatList(need), formatList(room), formatList(short)),
				Hint:    fmt.Sprintf("raise ResourceQuota %s/%s, or lower the workload's maxSurge, before migrate restarts it: else the rollout waits for room", ns, q.Name),
				Details: append(details, "resourcequota="+q.Name)})
		}
	}
	if len(out) == 0 {
		out = append(out, Result{Status: OK,
			Message: fmt.Sprintf("%s: ok: %d workloads, requests %s → %s", ns, len(ws), formatList(before), formatList(after)),
			Details: []string{"namespace=" + ns}})
	}
	return out
}

// workloadSurge reads a restartable workload's strategy.
func workloadSurge(ctx context.Context, e *Env, w inventory.Workload) (int32, error) {
	apps := e.Kube.AppsV1()
	var obj any
	var err error
	switch w.Kind {
	case "Deployment":
		obj, err = apps.Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	case "DaemonSet":
		obj, err = apps.DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	default:
		return 0, nil
	}
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get %s/%s: %w", w.Namespace, w, err)
	}
	return Surge(obj), nil
}

// NodeObjects are every node with its conditions and allocatable, read in
// pages.
func (e *Env) NodeObjects(ctx context.Context) ([]corev1.Node, error) {
	return load(e, "nodeobjects", func() ([]corev1.Node, error) {
		var out []corev1.Node
		p := pager.New(func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return e.Kube.CoreV1().Nodes().List(ctx, o)
		})
		err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
			out = append(out, *obj.(*corev1.Node))
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		return out, nil
	})
}
