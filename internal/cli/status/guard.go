package status

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
)

// printGuard says on stderr, above the table, what the placement guard
// (MeshProfile spec.oldNodes: Guard) does: which nodes it keeps native pods
// off, so that classic pods on those nodes read right; or why it is not
// working. Nothing when the guard is off or there is no profile.
func (o *Options) printGuard(ctx context.Context) {
	rc := o.kube.Discovery().RESTClient()
	if rc == nil {
		return
	}
	raw, err := rc.Get().AbsPath("/apis", v1alpha1.GroupVersion.Group, v1alpha1.GroupVersion.Version, "meshprofiles", v1alpha1.MeshProfileName).DoRaw(ctx)
	if err != nil {
		return
	}
	var p v1alpha1.MeshProfile
	if json.Unmarshal(raw, &p) != nil || p.Spec.OldNodes != v1alpha1.OldNodesGuard {
		return
	}
	fmt.Fprintln(o.ErrOut, GuardLine(p.Status.Guard))
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
