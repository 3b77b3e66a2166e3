package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// printGuard says on stderr, above the table, what the placement guard
// (MeshProfile spec.oldNodes: Guard) does: which nodes it keeps native pods
// off, so that classic pods on those nodes read right; or why it is not
// working. Nothing when the guard is off or there is no profile. When
// nodes are excluded it returns a guardView that collects, from the pods
// status lists anyway, those on excluded nodes.
func (o *Options) printGuard(ctx context.Context) *guardView {
	rc := o.kube.Discovery().RESTClient()
	if rc == nil {
		return nil
	}
	raw, err := rc.Get().AbsPath("/apis", v1alpha1.GroupVersion.Group, v1alpha1.GroupVersion.Version, "meshprofiles", v1alpha1.MeshProfileName).DoRaw(ctx)
	if err != nil {
		return nil
	}
	var p v1alpha1.MeshProfile
	if json.Unmarshal(raw, &p) != nil || p.Spec.OldNodes != v1alpha1.OldNodesGuard {
		return nil
	}
	fmt.Fprintln(o.ErrOut, GuardLine(p.Status.Guard))
	// The nodes the guard keeps native pods off are those its label says
	// cannot run sidecar containers (only they come back: a short list).
	nodes, err := o.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: meshversion.SidecarContainersLabel + "=false"})
	if err != nil || len(nodes.Items) == 0 {
		return nil
	}
	g := &guardView{excluded: map[string]bool{}, native: map[string]bool{}}
	for _, n := range nodes.Items {
		g.excluded[n.Name] = true
	}
	for _, r := range p.Status.Revisions {
		g.native[r.Name] = r.Mode == string(meshversion.Native)
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

// guardView collects, from the pods listed, those on excluded nodes that
// are native there, and the injected ones a restart would make native,
// which the guard then keeps off those nodes. (An uninjected pod's
// restart depends on labels status does not read: precheck names those.)
type guardView struct {
	excluded map[string]bool
	// native: which revisions inject native now, as the manager decided.
	native          map[string]bool
	nativeNow, move []string
}

// sample is how many pods a line names.
const sample = 5

func (g *guardView) add(rows []inventory.Pod) {
	if g == nil {
		return
	}
	for _, r := range rows {
		if !g.excluded[r.Node] || r.PinnedToNode() {
			continue
		}
		name := r.Namespace + "/" + r.Name + " on " + r.Node
		switch {
		case r.Mode == inventory.Native:
			g.nativeNow = append(g.nativeNow, name)
		case r.Mode == inventory.Classic && r.Override != "false" && (r.Override == "true" || g.native[r.Revision]):
			g.move = append(g.move, name)
		}
	}
}

// print writes what was collected on w (stderr), below the table.
func (g *guardView) print(w io.Writer) {
	if g == nil {
		return
	}
	if len(g.nativeNow) > 0 {
		fmt.Fprintf(w, "Placement guard: %d native pod(s) on excluded nodes, whose kubelet cannot run sidecar containers: %s; restart their workloads and the guard places them on capable nodes.\n",
			len(g.nativeNow), some(g.nativeNow))
	}
	if len(g.move) > 0 {
		fmt.Fprintf(w, "Placement guard: %d classic pod(s) on excluded nodes would be native when restarted, and the guard will keep them off those nodes: %s.\n",
			len(g.move), some(g.move))
	}
}

func some(items []string) string {
	if len(items) <= sample {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:sample], ", "), len(items)-sample)
}
