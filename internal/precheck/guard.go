package precheck

import (
	"context"
	"fmt"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/meshversion"
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
	return out, nil
}
