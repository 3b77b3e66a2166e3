package precheck

// The resource check: a native sidecar is counted by the scheduler, by
// LimitRange and by ResourceQuota as a restartable init container
// (kubernetes/website#57244), so a pod that fitted as classic may not as
// native, and a restart needs room for its surge. It reads the workloads'
// templates, not their pods (a cluster has far fewer): every Deployment,
// StatefulSet and DaemonSet that migrate may restart gets the pod the real
// injector makes from its template with a native sidecar (a dry run, one
// per distinct template), and that pod and its classic form are measured
// with Kubernetes' own code.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/capacity"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// ClassicPod is the classic form of a native pod (inventory.ClassicPod).
func ClassicPod(native *corev1.Pod) *corev1.Pod { return inventory.ClassicPod(native) }

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
			out = append(out, bounds(lr.Name, "the pod", item, capacity.PodRequests(p), capacity.PodLimits(p))...)
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
	for _, r := range capacity.SortedNames(item.Min) {
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
	for _, r := range capacity.SortedNames(item.Max) {
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
	for _, r := range capacity.SortedNames(item.MaxLimitRequestRatio) {
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

// NodeFit tells whether req fits the allocatable of a Ready node; when
// none does, it names the largest Ready node (by CPU, then memory), its
// allocatable, and what req lacks there.
func NodeFit(req corev1.ResourceList, nodes []corev1.Node) (fits bool, largest string, allocatable, shortfall corev1.ResourceList) {
	var best *corev1.Node
	for i := range nodes {
		n := &nodes[i]
		if !meshversion.IsReady(n) {
			continue
		}
		if len(capacity.Lacking(req, n.Status.Allocatable)) == 0 {
			return true, n.Name, n.Status.Allocatable, nil
		}
		if best == nil || larger(n.Status.Allocatable, best.Status.Allocatable) {
			best = n
		}
	}
	if best == nil {
		return false, "", nil, req
	}
	return false, best.Name, best.Status.Allocatable, capacity.Lacking(req, best.Status.Allocatable)
}

func larger(a, b corev1.ResourceList) bool {
	if c := a.Cpu().Cmp(*b.Cpu()); c != 0 {
		return c > 0
	}
	return a.Memory().Cmp(*b.Memory()) > 0
}

// resourceWorkload is one workload with its pods before and after, and
// its surge.
type resourceWorkload struct {
	namespace, name string // name is Kind/name
	replicas        int32
	classic, native *corev1.Pod
	surge           int32
}

// template is a workload's pod template, before the dry run.
type template struct {
	namespace, name string
	replicas, surge int32
	tmpl            *corev1.PodTemplateSpec
	// revision injects its pods (set for the mesh's templates only).
	revision string
}

func checkResources(ctx context.Context, e *Env) ([]Result, error) {
	mw, err := e.meshWorkloads(ctx)
	if err == nil && mw.injected == 0 {
		return one(Skip, noMeshNamespace, ""), nil
	}
	var res []Result
	if err == nil {
		res, err = measureResources(ctx, e, mw)
	}
	if apierrors.IsForbidden(err) {
		return one(Warn, "unmeasured: "+err.Error(), "run precheck as someone who may list Deployments, StatefulSets, DaemonSets, LimitRanges, ResourceQuotas and nodes cluster-wide and create pods (dry run) in the mesh namespaces"), nil
	}
	return res, err
}

// measureResources is checkResources past the namespaces.
func measureResources(ctx context.Context, e *Env, mw *meshWorkloads) ([]Result, error) {
	tmpls := mw.templates
	if len(tmpls) == 0 {
		return one(Skip, "no Deployment, StatefulSet or DaemonSet in a mesh namespace", ""), nil
	}
	lrs, err := e.LimitRanges(ctx)
	if err != nil {
		return nil, err
	}
	quotas, err := e.ResourceQuotas(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := e.NodeObjects(ctx)
	if err != nil {
		return nil, err
	}
	constrained := map[string]bool{}
	for _, l := range lrs {
		constrained[l.Namespace] = true
	}
	for _, q := range quotas {
		constrained[q.Namespace] = true
	}

	// One dry run per distinct template and revision, in a namespace of
	// the group without a LimitRange or quota where there is one (their
	// verdicts are computed per namespace below); a refusal leaves the
	// group's workloads in that namespace unmeasured, and the next
	// namespace is tried for the rest.
	groups, order := groupTemplates(tmpls)
	type measured struct {
		native   *corev1.Pod
		refusals []Result
		rest     []template // the group's workloads measured with native
	}
	// The groups' dry runs are independent: several at once.
	per := make([]measured, len(order))
	workqueue.ParallelizeUntil(ctx, dryRunsAtOnce, len(order), func(i int) {
		g := groups[order[i]]
		sort.SliceStable(g, func(i, j int) bool { return !constrained[g[i].namespace] && constrained[g[j].namespace] })
		m := &per[i]
		for len(g) > 0 {
			ns := g[0].namespace
			got, err := e.Kube.CoreV1().Pods(ns).Create(ctx, withoutResources(g[0].tmpl), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err == nil {
				m.native = withResourcesOf(got, g[0].tmpl)
				break
			}
			// Refused in ns (a webhook or policy, or a webhook with side
			// effects that a dry run cannot call: the admission check
			// judges those): its workloads of the group are unmeasured.
			rest := g[:0:0]
			for _, t := range g {
				if t.namespace != ns {
					rest = append(rest, t)
					continue
				}
				m.refusals = append(m.refusals, Result{Status: Warn,
					Message:    fmt.Sprintf("%s/%s: unmeasured: the dry run of its pod with a native istio-proxy was refused: %v", ns, t.name, err),
					Hint:       "see the admission check for that namespace; once a pod of it is admitted, run precheck again",
					Namespaces: []string{ns}, Workload: t.name})
			}
			g = rest
		}
		m.rest = g
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	byNS := map[string][]resourceWorkload{}
	var out []Result
	for _, m := range per {
		out = append(out, m.refusals...)
		for _, t := range m.rest {
			byNS[t.namespace] = append(byNS[t.namespace], resourceWorkload{namespace: t.namespace, name: t.name, replicas: t.replicas,
				native: m.native, classic: ClassicPod(m.native), surge: t.surge})
		}
	}
	var namespaces []string
	for ns := range byNS {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	lrsIn := map[string][]corev1.LimitRange{}
	for _, l := range lrs {
		lrsIn[l.Namespace] = append(lrsIn[l.Namespace], l)
	}
	quotasIn := map[string][]corev1.ResourceQuota{}
	for _, q := range quotas {
		quotasIn[q.Namespace] = append(quotasIn[q.Namespace], q)
	}
	for _, ns := range namespaces {
		out = append(out, judgeNamespace(ns, byNS[ns], lrsIn[ns], quotasIn[ns], nodes)...)
	}
	return out, nil
}

// judgeNamespace is the resource check of one namespace's workloads,
// without the API server: findings, else one ok line.
func judgeNamespace(ns string, ws []resourceWorkload, lrs []corev1.LimitRange, quotas []corev1.ResourceQuota, nodes []corev1.Node) []Result {
	var out []Result
	before, after := corev1.ResourceList{}, corev1.ResourceList{}
	for _, w := range ws {
		name := ns + "/" + w.name
		where := []string{ns}
		req, lim := capacity.PodRequests(w.native), capacity.PodLimits(w.native)
		capacity.AddTimes(before, capacity.PodRequests(w.classic), int(w.replicas))
		capacity.AddTimes(after, req, int(w.replicas))
		for i := range lrs {
			if v := LimitRangeViolations(&lrs[i], w.native); len(v) > 0 {
				also := ""
				if len(LimitRangeViolations(&lrs[i], w.classic)) > 0 {
					also = " (it would refuse the classic pod too: a restart is refused with or without native sidecars)"
				}
				out = append(out, Result{Status: Fail,
					Message:    fmt.Sprintf("%s: a new pod with a native istio-proxy would be refused: %s%s", name, strings.Join(v, "; "), also),
					Hint:       fmt.Sprintf("raise the bounds of LimitRange %s/%s, or set the proxy's resources within them (sidecar.istio.io/proxyCPU, proxyMemory, proxyCPULimit, proxyMemoryLimit annotations), then run precheck again", ns, lrs[i].Name),
					Namespaces: where, Workload: w.name, Object: "LimitRange/" + lrs[i].Name})
			}
		}
		if fits, node, alloc, short := NodeFit(req, nodes); !fits {
			msg := fmt.Sprintf("%s: a new pod requests %s, which no Ready node can hold", name, capacity.FormatList(req))
			if node != "" {
				msg += fmt.Sprintf(": the largest, %s, has %s allocatable (short of %s)", node, capacity.FormatList(alloc), capacity.FormatList(short))
			}
			out = append(out, Result{Status: Fail, Message: msg,
				Hint:       "lower the workload's or the proxy's requests, or add a node pool with larger nodes, then run precheck again",
				Namespaces: where, Workload: w.name})
		}
		for i := range quotas {
			q := &quotas[i]
			if len(q.Spec.Scopes) > 0 || q.Spec.ScopeSelector != nil {
				continue // scoped quotas are not evaluated here
			}
			need, room, short := capacity.QuotaShortfall(q, w.surge, req, lim)
			if len(short) == 0 {
				continue
			}
			out = append(out, Result{Status: Warn,
				Message:    fmt.Sprintf("%s: ResourceQuota %s has no room for the restart's surge of %d pod(s): it needs %s, the quota has %s left (hard − used), short of %s", name, q.Name, w.surge, capacity.FormatList(need), capacity.FormatList(room), capacity.FormatList(short)),
				Hint:       fmt.Sprintf("raise ResourceQuota %s/%s, or lower the workload's maxSurge, before migrate restarts it: else the rollout waits for room", ns, q.Name),
				Namespaces: where, Workload: w.name, Object: "ResourceQuota/" + q.Name})
		}
	}
	if len(out) == 0 {
		out = append(out, Result{Status: OK,
			Message:    fmt.Sprintf("%s: ok: %d workload(s), requests %s → %s", ns, len(ws), capacity.FormatList(before), capacity.FormatList(after)),
			Namespaces: []string{ns}})
	}
	return out
}

// withoutResources is the pod the dry run creates from a template: asking
// for a native sidecar, and without the containers' own resources, so that
// what the LimitRange and quota of the namespace say of them is judged
// here, by name, rather than refusing the dry run (the injector's own
// containers are judged by the API server too, and by the check).
func withoutResources(t *corev1.PodTemplateSpec) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: *t.ObjectMeta.DeepCopy(), Spec: *t.Spec.DeepCopy()}
	pod.Name, pod.GenerateName, pod.Namespace = "", ProbeApp+"-", ""
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[nativeAnnotation] = "true"
	pod.Spec.Resources = nil
	for i := range pod.Spec.InitContainers {
		pod.Spec.InitContainers[i].Resources = corev1.ResourceRequirements{}
	}
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].Resources = corev1.ResourceRequirements{}
	}
	return pod
}

// withResourcesOf gives the injected pod's containers that come from the
// template their resources back.
func withResourcesOf(p *corev1.Pod, t *corev1.PodTemplateSpec) *corev1.Pod {
	p = p.DeepCopy()
	p.Spec.Resources = t.Spec.Resources.DeepCopy()
	restore := func(cs []corev1.Container, from []corev1.Container) {
		for i := range cs {
			if j := slices.IndexFunc(from, func(c corev1.Container) bool { return c.Name == cs[i].Name }); j >= 0 {
				cs[i].Resources = *from[j].Resources.DeepCopy()
			}
		}
	}
	restore(p.Spec.InitContainers, t.Spec.InitContainers)
	restore(p.Spec.Containers, t.Spec.Containers)
	return p
}

// groupTemplates groups templates that the injector treats alike: the same
// revision, spec and annotations (labels differ per workload and do not
// change what is injected).
func groupTemplates(tmpls []template) (map[string][]template, []string) {
	groups := map[string][]template{}
	var order []string
	for _, t := range tmpls {
		b, _ := json.Marshal(struct {
			Rev         string
			Annotations map[string]string
			Spec        corev1.PodSpec
		}{t.revision, t.tmpl.Annotations, t.tmpl.Spec})
		key := string(b)
		if groups[key] == nil {
			order = append(order, key)
		}
		groups[key] = append(groups[key], t)
	}
	return groups, order
}

// restartsNative is false for a template whose pods a restart would not
// inject native: pinned to classic (sidecar.istio.io/nativeSidecar:
// "false") or uninjected (sidecar.istio.io/inject: "false").
func restartsNative(t template) bool {
	return t.tmpl.Annotations[nativeAnnotation] != "false" && t.tmpl.Annotations[injectKey] != "false" && t.tmpl.Labels[injectKey] != "false"
}

// Workloads are every Deployment, StatefulSet and DaemonSet, read once,
// cluster-wide and in pages: the resource check measures their templates
// and the admission proof samples them (one list instead of three per mesh
// namespace).
func (e *Env) Workloads(ctx context.Context) ([]template, error) {
	return load(e, "workloads", func() ([]template, error) {
		var out []template
		keep := func(ns, name string, replicas, surge int32, tmpl *corev1.PodTemplateSpec) {
			out = append(out, template{namespace: ns, name: name, replicas: replicas, surge: surge, tmpl: tmpl})
		}
		apps := e.Kube.AppsV1()
		page := metav1.ListOptions{Limit: 500}
		err := inventory.EachListPage(ctx, page, apps.Deployments("").List, func(l *appsv1.DeploymentList) error {
			for i := range l.Items {
				d := &l.Items[i]
				keep(d.Namespace, "Deployment/"+d.Name, ptr.Deref(d.Spec.Replicas, 1), capacity.Surge(d), &d.Spec.Template)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list Deployments: %w", err)
		}
		err = inventory.EachListPage(ctx, page, apps.StatefulSets("").List, func(l *appsv1.StatefulSetList) error {
			for i := range l.Items {
				d := &l.Items[i]
				keep(d.Namespace, "StatefulSet/"+d.Name, ptr.Deref(d.Spec.Replicas, 1), capacity.Surge(d), &d.Spec.Template)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list StatefulSets: %w", err)
		}
		err = inventory.EachListPage(ctx, page, apps.DaemonSets("").List, func(l *appsv1.DaemonSetList) error {
			for i := range l.Items {
				d := &l.Items[i]
				keep(d.Namespace, "DaemonSet/"+d.Name, d.Status.DesiredNumberScheduled, capacity.Surge(d), &d.Spec.Template)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list DaemonSets: %w", err)
		}
		return out, nil
	})
}

// injectKey turns injection off for a pod when "false".
const injectKey = "sidecar.istio.io/inject"

// NodeObjects are every node with its conditions and allocatable, read in
// pages.
func (e *Env) NodeObjects(ctx context.Context) ([]corev1.Node, error) {
	return load(e, "nodeobjects", func() ([]corev1.Node, error) {
		var out []corev1.Node
		err := inventory.EachListPage(ctx, metav1.ListOptions{Limit: 1000}, e.Kube.CoreV1().Nodes().List, func(l *corev1.NodeList) error {
			out = append(out, l.Items...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		return out, nil
	})
}
