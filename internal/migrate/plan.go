// Package migrate restarts every workload whose pods still carry classic
// sidecars once their revision's istiod injects native ones: in waves, with
// kubectl's restart mechanism, waiting on watches, verifying the new pods,
// and resumable after any interruption.
package migrate

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshaddon/meshaddon/internal/capacity"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// Kinds migrate restarts; the others are reported.
var restartable = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true}

// Item is one workload in the plan.
type Item struct {
	inventory.WorkloadSummary
	// Action is restart, or report for what migrate does not restart.
	Action string `json:"action"`
	// Advice says what to do with a reported workload.
	Advice string `json:"advice,omitempty"`

	// What the scheduler gates a restart on (see facts.go).
	Replicas int32 `json:"replicas,omitempty"`
	// Surge is how many extra pods its restart creates at once.
	Surge          int32 `json:"surge"`
	MaxUnavailable int32 `json:"maxUnavailable,omitempty"`
	// PDBs are the PodDisruptionBudgets that select its pods.
	PDBs []string `json:"pdbs,omitempty"`
	// Quotas are its namespace's ResourceQuotas its pods draw on.
	Quotas      []string            `json:"quotas,omitempty"`
	PodRequests corev1.ResourceList `json:"podRequests,omitempty"`
	// Wave is the wave it falls in, 1 first, as the scheduler would start
	// it were every restart as long as every other.
	Wave   int  `json:"wave,omitempty"`
	Canary bool `json:"canary,omitempty"`
	// Notes are what the plan reports of it: a PDB it exceeds or skips,
	// a surge above the whole budget, a partition.
	Notes []string `json:"notes,omitempty"`

	podLimits corev1.ResourceList
	// labels are the workload's; podLabels and podAnnotations its pod
	// template's, when templated (read by gather).
	labels, podLabels, podAnnotations map[string]string
	templated                         bool
}

// Actions of a plan item.
const (
	ActionRestart = "restart"
	ActionReport  = "report"
	// ActionRefuse: a restart precheck refused (Advice says why).
	ActionRefuse = "refuse"
)

// Plan is what migrate will do, in order.
type Plan struct {
	Items []Item `json:"items"`
	// NativeRevisions are the revisions whose istiod injects native now.
	NativeRevisions []string `json:"nativeRevisions"`
	// SurgeBudget is how many extra pods may exist at once across the
	// run (--max-surge-pods, or SurgeBudgetFrom).
	SurgeBudget     int32  `json:"surgeBudget"`
	SurgeBudgetFrom string `json:"surgeBudgetFrom"`
	// IgnorePDB: PodDisruptionBudgets do not gate restarts (--ignore-pdb).
	IgnorePDB bool `json:"ignorePDB,omitempty"`
	// CanarySoak is how long the canary stays native and Ready before the
	// rest starts; PauseAfterCanary stops the run after it.
	CanarySoak       time.Duration `json:"canarySoak,omitempty"`
	PauseAfterCanary bool          `json:"pauseAfterCanary,omitempty"`
}

// Refuse turns the restarts that why refuses (a non-empty reason) into
// refusals, and says how many.
func (p *Plan) Refuse(why func(namespace, workload string) string) int {
	n := 0
	for i := range p.Items {
		it := &p.Items[i]
		if it.Action != ActionRestart {
			continue
		}
		if reason := why(it.Namespace, it.Workload.String()); reason != "" {
			it.Action, it.Advice = ActionRefuse, "refused by precheck: "+reason
			n++
		}
	}
	return n
}

// Restarts counts the workloads to restart.
func (p *Plan) Restarts() int {
	n := 0
	for _, it := range p.Items {
		if it.Action == ActionRestart {
			n++
		}
	}
	return n
}

// Scope limits which pods are considered, as kubectl's -n/-A/-l do.
type Scope struct {
	Namespace     string // "" for all
	Selector      string
	MeshNamespace string
	// NamespaceOrder puts these namespaces first, in this order.
	NamespaceOrder []string
	// MaxSurgePods is the surge budget; 0 derives it from the free
	// allocatable of the Ready nodes (which lists pods in every namespace).
	MaxSurgePods int32
}

// never lists namespaces migrate never touches.
var never = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// Untouched is true for the namespaces migrate never restarts anything in:
// the system's and the mesh's own.
func Untouched(namespace, meshNamespace string) bool {
	return never[namespace] || namespace == meshNamespace
}

// BuildPlan finds the workloads with classic pods whose pod template is
// injected now by a revision that injects native (restartRule); the other
// workloads with classic pods are reported with why.
func BuildPlan(ctx context.Context, kube kubernetes.Interface, scope Scope) (*Plan, error) {
	mesh, err := meshdiscovery.Discover(ctx, kube, scope.MeshNamespace)
	if err != nil {
		return nil, err
	}
	native, err := nativeRevisions(ctx, kube, mesh)
	if err != nil {
		return nil, err
	}
	scopeNS, err := namespaceLabels(ctx, kube, mesh)
	if err != nil {
		return nil, err
	}
	rule := &restartRule{mesh: mesh, native: native, nsLabels: scopeNS}
	sum := inventory.NewSummarizer()
	pods := map[inventory.Workload]podResources{}
	// podMeta: one classic pod's metadata of each owner, which stands for
	// the template of a workload migrate reads none of (a Job, a bare pod).
	podMeta := map[inventory.Workload]metav1.ObjectMeta{}
	opts := metav1.ListOptions{LabelSelector: scope.Selector, Limit: 500}
	err = inventory.EachListPage(ctx, opts, kube.CoreV1().Pods(scope.Namespace).List, func(list *corev1.PodList) error {
		kept := make([]inventory.Pod, 0, len(list.Items))
		for i := range list.Items {
			r := inventory.Classify(&list.Items[i])
			if !rule.candidate(r) || Untouched(r.Namespace, scope.MeshNamespace) {
				continue
			}
			kept = append(kept, r)
			if _, ok := pods[r.Owner]; !ok {
				pods[r.Owner] = podResources{capacity.PodRequests(&list.Items[i]), capacity.PodLimits(&list.Items[i])}
				podMeta[r.Owner] = list.Items[i].ObjectMeta
			}
		}
		sum.Add(kept)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	jobs, err := inventory.JobOwners(ctx, kube, scope.Namespace)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	p := &Plan{}
	for r, on := range native {
		if !on {
			continue
		}
		p.NativeRevisions = append(p.NativeRevisions, r)
	}
	sort.Strings(p.NativeRevisions)
	for _, w := range sum.Workloads(jobs) {
		it := Item{WorkloadSummary: w, Action: ActionRestart}
		if !restartable[w.Kind] {
			it.Action, it.Advice = ActionReport, advice(w.Workload)
		}
		p.Items = append(p.Items, it)
	}
	order := map[string]int{}
	for i, ns := range scope.NamespaceOrder {
		order[ns] = i + 1
	}
	sort.SliceStable(p.Items, func(i, j int) bool {
		a, b := order[p.Items[i].Namespace], order[p.Items[j].Namespace]
		if a == 0 {
			a = len(order) + 1
		}
		if b == 0 {
			b = len(order) + 1
		}
		return a < b
	})
	for owner, m := range podMeta {
		if c, ok := jobs[owner]; ok {
			podMeta[c] = m // a CronJob's Jobs: one's pod stands for it
		}
	}
	// What new pods get is decided by the template now (the pods' labels
	// are the template's when they were created); a pod's own stand for a
	// template migrate does not read, or one gone since.
	decide := func(it *Item) {
		l, a := it.podLabels, it.podAnnotations
		if !it.templated {
			m := podMeta[it.Workload]
			l, a = m.Labels, m.Annotations
		}
		rule.apply(it, l, a)
	}
	if err := p.gather(ctx, kube, scope, pods, decide); err != nil {
		return nil, err
	}
	for i := range p.Items {
		if it := &p.Items[i]; !restartable[it.Kind] {
			decide(it)
		}
	}
	p.SurgeBudget, p.SurgeBudgetFrom = scope.MaxSurgePods, "--max-surge-pods"
	if scope.MaxSurgePods <= 0 {
		if p.SurgeBudget, p.SurgeBudgetFrom, err = FreeSurgePods(ctx, kube, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func advice(w inventory.Workload) string {
	switch w.Kind {
	case "CronJob":
		return "its next run gets native sidecars; nothing to do"
	case "Job":
		return fmt.Sprintf("a Job's pods are not restarted: when it is done, recreate it (kubectl -n %s get job %s -o yaml) to run with native sidecars", w.Namespace, w.Name)
	case "Pod":
		return fmt.Sprintf("a bare pod cannot be restarted: delete and recreate it (kubectl -n %s get pod %s -o yaml > pod.yaml; kubectl delete -f pod.yaml; kubectl create -f pod.yaml)", w.Namespace, w.Name)
	}
	return fmt.Sprintf("%s is not restarted by migrate: recreate its pods yourself", w.Kind)
}

// nativeRevisions reads each revision's ENABLE_NATIVE_SIDECARS as its Istio
// version does; unset (or auto) resolves as that version does, by the
// nodes' kubelets from 1.27 (meshversion.ReadEnv, ResolveUnsetFor).
func nativeRevisions(ctx context.Context, kube kubernetes.Interface, mesh *meshdiscovery.Mesh) (map[string]bool, error) {
	out := map[string]bool{}
	var nodes []meshversion.Node
	nodesRead := false
	for _, r := range mesh.Revisions {
		inj, set, err := r.Setting.Injection()
		if err != nil {
			return nil, fmt.Errorf("istiod %s/%s: %w", r.Namespace, r.Deployment, err)
		}
		auto := !set
		if set {
			rd := meshversion.ReadEnv(r.Version, r.Setting.Value, r.Setting.Present)
			switch {
			case rd.Auto:
				auto = true
			case rd.Injection != "":
				inj = rd.Injection
			}
		}
		if auto {
			if !nodesRead {
				if nodes, err = inventory.Nodes(ctx, kube); err != nil {
					return nil, err
				}
				nodesRead = true
			}
			inj = meshversion.ResolveUnsetFor(r.Version, nodes, "").Injection
		}
		out[r.Name] = inj == meshversion.Native
	}
	return out, nil
}

// namespaceLabels are the labels of every namespace migrate may restart
// pods in: not the mesh's own (where discovery found istiods).
func namespaceLabels(ctx context.Context, kube kubernetes.Interface, mesh *meshdiscovery.Mesh) (map[string]map[string]string, error) {
	list, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	own := map[string]bool{}
	for _, ns := range mesh.Namespaces() {
		own[ns] = true
	}
	out := map[string]map[string]string{}
	for _, ns := range list.Items {
		if !own[ns.Name] {
			out[ns.Name] = ns.Labels
		}
	}
	return out, nil
}

// String prints the plan for --dry-run.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "revisions injecting native now: %s\n", strings.Join(p.NativeRevisions, ", "))
	fmt.Fprintf(&b, "surge budget: %d extra pod(s) at once (%s)\n", p.SurgeBudget, p.SurgeBudgetFrom)
	if p.IgnorePDB {
		b.WriteString("PodDisruptionBudgets: ignored (--ignore-pdb)\n")
	}
	for _, it := range p.Items {
		fmt.Fprintf(&b, "%s %s/%s/%s (%d classic pods)", it.Action, it.Namespace, it.Kind, it.Name, it.Classic)
		if it.Action == ActionRestart {
			fmt.Fprintf(&b, " [%s]", it.describe())
		}
		if it.Advice != "" {
			fmt.Fprintf(&b, ": %s", it.Advice)
		}
		b.WriteByte('\n')
		for _, n := range it.Notes {
			fmt.Fprintf(&b, "  note: %s\n", n)
		}
	}
	return b.String()
}
