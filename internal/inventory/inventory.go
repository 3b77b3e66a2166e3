// Package inventory classifies pods by how istio-proxy was injected —
// native (an init container with restartPolicy Always), classic (a regular
// container) or none — and groups them by the workload that owns them. It
// works page by page, keeping only small rows, so it scales to clusters of
// tens of thousands of pods.
package inventory

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// Mode is how a pod's proxy was injected.
type Mode string

const (
	Native  Mode = "native"
	Classic Mode = "classic"
	None    Mode = "none"
)

// ParseMode accepts native, classic or none.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case Native, Classic, None:
		return Mode(s), nil
	}
	return "", fmt.Errorf("unknown mode %q: want native, classic or none", s)
}

// Istio's names on pods.
const (
	ProxyContainer        = "istio-proxy"
	StatusAnnotation      = "sidecar.istio.io/status"
	NativeSidecarOverride = "sidecar.istio.io/nativeSidecar"
	RevisionLabel         = "istio.io/rev"
)

// Pod is what the views need of one pod.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Init and Containers are the container names, comma-separated, as
	// kubectl's custom-columns prints them ("<none>" when empty).
	Init       string `json:"init"`
	Containers string `json:"containers"`
	Mode       Mode   `json:"mode"`
	Revision   string `json:"revision,omitempty"`
	// Override is the sidecar.istio.io/nativeSidecar annotation, if set.
	Override string   `json:"override,omitempty"`
	Node     string   `json:"node,omitempty"`
	Phase    string   `json:"phase,omitempty"`
	Owner    Workload `json:"owner"`
}

// Workload is the object that owns pods and that a restart acts on.
type Workload struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (w Workload) String() string { return w.Kind + "/" + w.Name }

// PinnedToNode is true for a DaemonSet's pods and static pods (owned by
// their Node): they stay on their node, so the placement guard makes them
// classic there rather than moving them.
func (p Pod) PinnedToNode() bool { return p.Owner.Kind == "DaemonSet" || p.Owner.Kind == "Node" }

// Classify reads one pod.
func Classify(p *corev1.Pod) Pod {
	out := Pod{
		Namespace:  p.Namespace,
		Name:       p.Name,
		Init:       names(p.Spec.InitContainers),
		Containers: names(p.Spec.Containers),
		Mode:       ModeOf(&p.Spec),
		Override:   p.Annotations[NativeSidecarOverride],
		Node:       p.Spec.NodeName,
		Phase:      string(p.Status.Phase),
		Owner:      ownerOf(p),
	}
	// The revision that injected it; an uninjected pod has none.
	if out.Mode != None {
		out.Revision = revisionOf(p)
	}
	return out
}

// ModeOf tells how istio-proxy sits in a pod spec.
func ModeOf(spec *corev1.PodSpec) Mode {
	for _, c := range spec.InitContainers {
		if c.Name == ProxyContainer && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return Native
		}
	}
	for _, c := range spec.Containers {
		if c.Name == ProxyContainer {
			return Classic
		}
	}
	return None
}

// revisionOf finds the revision that injected the pod: the injector records
// it in the status annotation; the pod's istio.io/rev label is the fallback.
func revisionOf(p metav1.Object) string {
	st, _ := parseStatus(p.GetAnnotations()[StatusAnnotation])
	return st.revisionOr(p.GetLabels()[RevisionLabel])
}

// revisionOr is the recorded revision, or label when it records none. An
// istiod installed without a revision records "default", which is upstream
// Istio's default revision (issue 15): it stands unless the pod's own label
// names one.
func (st injectorStatus) revisionOr(label string) string {
	if st.Revision != "" && (st.Revision != "default" || label == "") {
		return st.Revision
	}
	return label
}

func names(cs []corev1.Container) string {
	if len(cs) == 0 {
		return "<none>"
	}
	n := make([]string, len(cs))
	for i, c := range cs {
		n[i] = c.Name
	}
	return strings.Join(n, ",")
}

// ownerOf names the workload a pod belongs to without extra reads: a
// ReplicaSet's Deployment is its name minus the pod-template-hash suffix. A
// Job's CronJob needs the Job itself; Resolver.Resolve fills that in.
func ownerOf(p metav1.Object) Workload {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return Workload{Kind: "Pod", Namespace: p.GetNamespace(), Name: p.GetName()}
	}
	w := Workload{Kind: ref.Kind, Namespace: p.GetNamespace(), Name: ref.Name}
	if ref.Kind == "ReplicaSet" {
		if hash := p.GetLabels()["pod-template-hash"]; hash != "" && strings.HasSuffix(ref.Name, "-"+hash) {
			w = Workload{Kind: "Deployment", Namespace: p.GetNamespace(), Name: strings.TrimSuffix(ref.Name, "-"+hash)}
		}
	}
	return w
}

// ListOptions scope a listing, as kubectl's -n, -A and -l do.
type ListOptions struct {
	// Namespace is "" for all namespaces.
	Namespace string
	Selector  string
	// PageSize is the number of pods per LIST call.
	PageSize int64
}

// EachPage lists pods page by page and calls fn with each page's rows; the
// full pod objects of a page are dropped before the next is read.
func EachPage(ctx context.Context, kube kubernetes.Interface, o ListOptions, fn func([]Pod) error) error {
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	opts := metav1.ListOptions{LabelSelector: o.Selector, Limit: o.PageSize}
	return EachListPage(ctx, opts, kube.CoreV1().Pods(o.Namespace).List, func(list *corev1.PodList) error {
		rows := make([]Pod, len(list.Items))
		for i := range list.Items {
			rows[i] = Classify(&list.Items[i])
		}
		return fn(rows)
	})
}

// Nodes lists every node in pages, as the decision sees them: pool,
// kubelet version and readiness.
func Nodes(ctx context.Context, kube kubernetes.Interface) ([]meshversion.Node, error) {
	var out []meshversion.Node
	err := EachListPage(ctx, metav1.ListOptions{Limit: 1000}, kube.CoreV1().Nodes().List, func(list *corev1.NodeList) error {
		for i := range list.Items {
			out = append(out, meshversion.NodeOf(&list.Items[i]))
		}
		return nil
	})
	return out, err
}

// EachPageInOrder lists the pods of namespaces, workers namespaces at a
// time, and calls fn with their pages in namespace order and, within a
// namespace, as the server returns them: for namespaces sorted by name the
// output is the same as one all-namespaces listing's, but the server
// answers several requests at once. Only pages of namespaces ahead of the
// one being printed wait in memory, as rows, not pod objects.
func EachPageInOrder(ctx context.Context, kube kubernetes.Interface, namespaces []string, o ListOptions, workers int, fn func([]Pod) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type page struct {
		rows []Pod
		err  error
	}
	pages := make([]chan page, len(namespaces))
	for i := range pages {
		pages[i] = make(chan page, 64)
	}
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range namespaces {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range max(workers, 1) {
		go func() {
			for i := range next {
				scoped := o
				scoped.Namespace = namespaces[i]
				err := EachPage(ctx, kube, scoped, func(rows []Pod) error {
					select {
					case pages[i] <- page{rows: rows}:
						return nil
					case <-ctx.Done():
						return context.Cause(ctx)
					}
				})
				if err != nil {
					select {
					case pages[i] <- page{err: err}:
					case <-ctx.Done():
					}
				}
				close(pages[i])
			}
		}()
	}
	for i := range namespaces {
		for p := range pages[i] {
			if p.err != nil {
				cancel(p.err)
				return p.err
			}
			if err := fn(p.rows); err != nil {
				cancel(err)
				return err
			}
		}
	}
	return nil
}
