package meshversion

import (
	"fmt"
	"sort"
	"strings"
)

// Guard is the placement guard (MeshProfile spec.oldNodes: Guard) as a
// decision fact: with the guard on and healthy, old nodes are excluded from
// native pods instead of turning the mesh classic.
type Guard struct {
	// On: spec.oldNodes is Guard.
	On bool
	// Healthy: the manager's placement webhook serves with a valid
	// certificate and its configuration exists and points at it.
	Healthy bool
	// Problem says why it is not healthy.
	Problem string
}

// SidecarCapable reports whether a node's kubelet runs sidecar containers
// under p: the rule behind the node label the guard places pods by. A node
// whose version cannot be read is not capable.
func (p Policy) SidecarCapable(n Node) bool {
	v, err := ParseKube(n.KubeletVersion)
	return err == nil && v.AtLeast(p.MinKubernetes)
}

// guardOldNodes is the nodes gate's verdict when some nodes are old: guarded
// (native, with those nodes excluded) when the guard is on, healthy and at
// least one node can take native pods; otherwise the old nodes fail the gate,
// saying why the guard could not help.
func guardOldNodes(p Policy, f Facts, old map[string][]Node) (bool, string, string) {
	msg := describeOldNodes(old, p.MinKubernetes)
	if !f.Guard.On {
		return false, "NodesTooOld", msg
	}
	if !f.Guard.Healthy {
		return false, "GuardUnhealthy", fmt.Sprintf("the placement guard is unhealthy (%s), so %s", f.Guard.Problem, msg)
	}
	capable := 0
	for _, n := range f.Nodes {
		if p.SidecarCapable(n) && n.Ready {
			capable++
		}
	}
	if capable == 0 {
		return false, "NoCapableNodes", "no Ready node can run sidecar containers, so the placement guard cannot place native pods: " + msg
	}
	names := GuardedNodeNames(old)
	shown := names
	if len(shown) > 3 {
		shown = append(shown[:3:3], fmt.Sprintf("and %d more", len(names)-3))
	}
	return true, "NodesGuarded", fmt.Sprintf("native, guarded: %d node(s) excluded (%s), on kubelet older than %s; %d Ready node(s) take native pods",
		len(names), strings.Join(shown, ", "), MinorString(p.MinKubernetes), capable)
}

// GuardedNodeNames lists the old nodes' names, sorted.
func GuardedNodeNames(old map[string][]Node) []string {
	var names []string
	for _, nodes := range old {
		for _, n := range nodes {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	return names
}

// SidecarContainersLabel is the node label the manager keeps: "true" when the
// node's kubelet runs sidecar containers under the active policy, else
// "false". The placement guard requires it "true" for native pods.
const SidecarContainersLabel = "meshaddon.dev/sidecar-containers"

// SidecarLabelValue is the label's value for a node.
func (p Policy) SidecarLabelValue(n Node) string {
	if p.SidecarCapable(n) {
		return "true"
	}
	return "false"
}
