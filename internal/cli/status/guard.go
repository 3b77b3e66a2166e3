package status

import (
	"context"
	"fmt"
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/precheck"
)

// printGuard says on stderr, above the table, what the placement guard
// (MeshProfile spec.oldNodes: Guard) does: which nodes it keeps native pods
// off, so that classic pods on those nodes read right; or why it is not
// working. Nothing when the guard is off or there is no profile. When
// nodes are excluded it returns a guardView that says, below the table,
// which pods on them matter.
func (o *Options) printGuard(ctx context.Context) *guardView {
	if o.client == nil {
		return nil
	}
	env := &precheck.Env{Kube: o.kube, Client: o.client}
	p, err := env.Profile(ctx)
	if err != nil || p == nil || p.Spec.OldNodes != v1alpha1.OldNodesGuard {
		return nil
	}
	fmt.Fprintln(o.ErrOut, GuardLine(p.Status.Guard))
	// The nodes the guard keeps native pods off are those its label says
	// cannot run sidecar containers (only they come back: a short list).
	nodes, err := o.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: meshversion.SidecarContainersLabel + "=false"})
	if err != nil || len(nodes.Items) == 0 {
		return nil
	}
	g := &guardView{env: env, namespace: o.namespace}
	for _, n := range nodes.Items {
		g.excluded = append(g.excluded, n.Name)
	}
	return g
}

// GuardLine is the guard's state in one line.
func GuardLine(g *v1alpha1.GuardStatus) string {
	switch {
	case g == nil:
		return "Placement guard: on, but no add-on manager reports its health yet."
	case !g.Healthy:
		return fmt.Sprintf("Placement guard: unhealthy (%s); while it is, old nodes make the mesh classic.", g.Message)
	case g.ExcludedNodes == 0:
		return fmt.Sprintf("Placement guard: healthy; no node is excluded, %d Ready node(s) take native pods.", g.CapableNodes)
	}
	names := strings.Join(g.Excluded, ", ")
	if int(g.ExcludedNodes) > len(g.Excluded) {
		names += fmt.Sprintf(" and %d more", int(g.ExcludedNodes)-len(g.Excluded))
	}
	return fmt.Sprintf("Placement guard: healthy; native pods are kept off %d node(s) (%s), pods pinned there run classic; %d Ready node(s) take native pods.",
		g.ExcludedNodes, names, g.CapableNodes)
}

// guardView names the pods on excluded nodes that are native there, and
// those a restart would make native, which the guard then keeps off those
// nodes: precheck's own finding (precheck.Env.ExcludedPods, one rule for
// both), in status's namespace when it has one.
type guardView struct {
	env       *precheck.Env
	excluded  []string
	namespace string
}

// print writes them on w (stderr), below the table: the pods that matter,
// or why they could not be read; nothing when no pod matters.
func (g *guardView) print(ctx context.Context, w io.Writer) {
	if g == nil {
		return
	}
	found, err := g.env.ExcludedPods(ctx, g.excluded, g.namespace)
	if err != nil {
		fmt.Fprintf(w, "Placement guard: cannot tell which pods on the excluded nodes are or would be native: %v\n", err)
		return
	}
	for _, r := range found {
		if len(r.Pods) == 0 && r.Status == precheck.OK {
			continue
		}
		line := "Placement guard: " + r.Message
		if r.Hint != "" {
			line += "; " + r.Hint
		}
		fmt.Fprintln(w, line+".")
	}
}
