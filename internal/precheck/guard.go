package precheck

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/migrate"
)

// guardFacts is the placement guard as the manager reports it, for the
// decision's nodes gate: precheck and the manager then agree that a guarded
// old node does not turn the mesh classic.
func guardFacts(p *v1alpha1.MeshProfile) meshversion.Guard {
	if p == nil || p.Spec.OldNodes != v1alpha1.OldNodesGuard {
		return meshversion.Guard{}
	}
	g := meshversion.Guard{On: true, Problem: "no add-on manager reports its health (status.guard is empty)"}
	if st := p.Status.Guard; st != nil {
		g.Healthy, g.Problem = st.Healthy, st.Message
	}
	return g
}

// checkGuard shows the placement guard (spec.oldNodes: Guard): its health as
// the manager last saw it, the nodes it excludes, and the nodes native pods
// can go to (a native pod that fits none of them stays Pending).
func checkGuard(ctx context.Context, e *Env) ([]Result, error) {
	p, err := e.Profile(ctx)
	if err != nil {
		return nil, err
	}
	if p == nil || p.Spec.OldNodes != v1alpha1.OldNodesGuard {
		return one(OK, "off (spec.oldNodes is Classic): a node whose kubelet cannot run sidecar containers turns the mesh classic", ""), nil
	}
	nodes, err := e.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	pol := e.ActivePolicy(ctx)
	excluded := meshversion.GuardedNodeNames(pol.OldNodes(nodes))
	capable, capableReady := 0, 0
	for _, n := range nodes {
		if pol.SidecarCapable(n) {
			capable++
			if n.Ready {
				capableReady++
			}
		}
	}
	g := guardFacts(p)
	var out []Result
	if g.Healthy {
		out = append(out, Result{Status: OK, Message: "healthy: " + p.Status.Guard.Message})
	} else {
		out = append(out, Result{Status: Warn, Message: "unhealthy: " + g.Problem,
			Hint: "while the guard is unhealthy an old node turns the mesh classic: see the manager's log and its GuardUnhealthy events (kubectl get events -n default)"})
	}
	if len(excluded) > 0 {
		out = append(out, Result{Status: OK, Message: fmt.Sprintf("%d node(s) excluded from native pods: %s", len(excluded), listSome(excluded))})
	}
	capacity := fmt.Sprintf("native-capable capacity: %d of %d node(s) (%d Ready)", capable, len(nodes), capableReady)
	if capableReady == 0 && len(excluded) > 0 {
		out = append(out, Result{Status: Warn, Message: capacity,
			Hint: "no Ready node can run sidecar containers: native pods would stay Pending, so the mesh stays classic; upgrade a pool to " + meshversion.MinorString(pol.MinKubernetes) + "+"})
	} else {
		out = append(out, Result{Status: OK, Message: capacity})
	}
	if len(excluded) == 0 || e.ARM != nil {
		return out, nil
	}
	found, err := e.ExcludedPods(ctx, excluded, "")
	if err != nil {
		return nil, err
	}
	return append(out, found...), nil
}

// ExcludedPods says which pods on the excluded nodes are native now and
// which a restart makes native (the guard then keeps them off those
// nodes), by the one mesh rule (meshScope); in namespace only, when it is
// set. precheck's guard check and status both say it. Not allowed to list
// the pods: a warning, not an error.
func (e *Env) ExcludedPods(ctx context.Context, excluded []string, namespace string) ([]Result, error) {
	p, err := e.Profile(ctx)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, nil
	}
	onExcluded, err := e.podsOnExcluded(ctx, excluded, p)
	if apierrors.IsForbidden(err) {
		return []Result{{Status: Warn, Message: "pods on excluded nodes: unchecked: " + err.Error(),
			Hint: "run this as someone who may list pods cluster-wide"}}, nil
	}
	if err != nil {
		return nil, err
	}
	if namespace != "" {
		onExcluded = slices.DeleteFunc(onExcluded, func(r PodRef) bool { return r.Namespace != namespace })
	}
	return judgeExcludedPods(onExcluded, len(excluded)), nil
}

// judgeExcludedPods reports the pods on excluded nodes that are native now
// (a native sidecar on a kubelet that cannot run it: placed before the
// guard was on, or the node was labelled false since) and those that
// would be native when restarted, which the guard will place elsewhere.
func judgeExcludedPods(pods []PodRef, excluded int) []Result {
	var native, moving []PodRef
	for _, p := range pods {
		if p.Mode == string(inventory.Native) {
			native = append(native, p)
		} else {
			moving = append(moving, p)
		}
	}
	var out []Result
	if len(native) > 0 {
		out = append(out, Result{Status: Warn, Pods: native,
			Message: fmt.Sprintf("%d native pod(s) on excluded nodes, whose kubelet cannot run sidecar containers: %s", len(native), listPods(native)),
			Hint:    "they were placed before the guard was on, or their node was labelled false since: restart their workloads (meshaddon migrate, or kubectl rollout restart) and the guard places the new pods on capable nodes"})
	}
	if len(moving) > 0 {
		out = append(out, Result{Status: OK, Pods: moving,
			Message: fmt.Sprintf("%d pod(s) on excluded nodes would be native when restarted, and the guard will keep them off those nodes: %s", len(moving), listPods(moving))})
	}
	if len(out) == 0 {
		out = append(out, Result{Status: OK, Message: fmt.Sprintf("no pod on the %d excluded node(s) is or would be native", excluded)})
	}
	return out
}

func listPods(pods []PodRef) string {
	names := make([]string, 0, min(len(pods), maxListed))
	for _, p := range pods[:min(len(pods), maxListed)] {
		names = append(names, p.Namespace+"/"+p.Name+" on "+p.Node)
	}
	return listSomeOf(names, len(pods))
}

// excludedPodListers is how many excluded nodes' pods are read at once.
const excludedPodListers = podListers

// podsOnExcluded reads the pods on the excluded nodes, as metadata when
// Metadata is set, and keeps those the guard is about: native now, or
// native when their workload restarts. The cluster-wide pod read (the
// manager's census, or precheck's own paged listing of pod metadata) knows
// no pod's node — metadata has no spec.nodeName — so this reads only the
// excluded nodes' pods, a LIST per node selecting spec.nodeName (the
// kubelet's own query), never every pod of the cluster again. Pods that
// ended are left out, and so are DaemonSet and static pods, which the guard
// pins to their node as classic, and pods in namespaces the guard never
// touches.
func (e *Env) podsOnExcluded(ctx context.Context, excluded []string, p *v1alpha1.MeshProfile) ([]PodRef, error) {
	native := map[string]bool{}
	for _, r := range p.Status.Revisions {
		native[r.Name] = r.Mode == string(meshversion.Native)
	}
	scope, err := e.meshScope(ctx)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var out []PodRef
	keep := func(node string, m metav1.ObjectMeta, row inventory.Pod) {
		if ref, ok := guardedPod(node, m, row, scope.revision, native, e.MeshNamespace); ok {
			mu.Lock()
			out = append(out, ref)
			mu.Unlock()
		}
	}
	// Each node's LIST as a consistent read would make the API server
	// prove its watch cache current first (an etcd progress notification),
	// once per node: 250 excluded nodes took 3.5-11 s. One consistent read
	// instead, then every node's pods not older than it: nothing that
	// existed when the check began is missed, with one proof.
	since, err := e.podsResourceVersion(ctx)
	if err != nil {
		return nil, err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(excludedPodListers)
	for _, node := range excluded {
		opts := metav1.ListOptions{Limit: 1000, ResourceVersion: since, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
			FieldSelector: fields.AndSelectors(
				fields.OneTermEqualSelector("spec.nodeName", node),
				fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
				fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
			).String()}
		g.Go(func() error {
			if e.Metadata != nil {
				return inventory.EachListPage(ctx, opts, e.Metadata.Resource(podsResource).List, func(l *metav1.PartialObjectMetadataList) error {
					for i := range l.Items {
						keep(node, l.Items[i].ObjectMeta, inventory.ClassifyMetadata(&l.Items[i]))
					}
					return nil
				})
			}
			return inventory.EachListPage(ctx, opts, e.Kube.CoreV1().Pods(corev1.NamespaceAll).List, func(l *corev1.PodList) error {
				for i := range l.Items {
					keep(node, l.Items[i].ObjectMeta, inventory.Classify(&l.Items[i]))
				}
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b PodRef) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// guardedPod says whether a pod on an excluded node is one the guard is
// about: native now, or native once restarted (the pod a restart makes
// carries its labels and annotations, and goes to the revision that
// revisionOf — precheck's one mesh rule, meshScope — resolves for them).
func guardedPod(node string, m metav1.ObjectMeta, row inventory.Pod, revisionOf func(ns string, podLabels map[string]string) (string, bool), native map[string]bool, meshNamespace string) (PodRef, bool) {
	ref := PodRef{Namespace: m.Namespace, Name: m.Name, Node: node, Mode: string(row.Mode), Revision: row.Revision}
	if row.Owner.Kind != "" {
		ref.Owner = row.Owner.String()
	}
	if migrate.Untouched(m.Namespace, meshNamespace) || row.PinnedToNode() {
		return ref, false
	}
	if row.Mode == inventory.Native {
		return ref, true
	}
	rev, mesh := revisionOf(m.Namespace, m.Labels)
	if !mesh {
		return ref, false
	}
	labels := maps.Clone(m.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	// The revision, not a tag naming it: native is keyed by revision.
	labels[inventory.RevisionLabel] = rev
	return ref, inventory.InjectsNative(labels, m.Annotations, native)
}
