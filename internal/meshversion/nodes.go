package meshversion

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Node pool labels: the platform's, then the older short one.
const (
	PoolLabel       = "kubernetes.azure.com/agentpool"
	LegacyPoolLabel = "agentpool"
)

// PoolOf names the node pool a node belongs to, from its labels.
func PoolOf(labels map[string]string) string {
	if p := labels[PoolLabel]; p != "" {
		return p
	}
	return labels[LegacyPoolLabel]
}

// NodeReady is the status of the node's Ready condition, Unknown when it
// reports none: the one readiness rule of the manager, precheck, migrate and
// the test bed.
func NodeReady(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// IsReady reports whether the node is Ready.
func IsReady(n *corev1.Node) bool { return NodeReady(n) == corev1.ConditionTrue }

// NodeOf is a node as the decision sees it.
func NodeOf(n *corev1.Node) Node {
	return Node{Name: n.Name, Pool: PoolOf(n.Labels), KubeletVersion: n.Status.NodeInfo.KubeletVersion, Ready: IsReady(n)}
}

// Power states of a node pool, as far as its nodes show it.
const (
	PowerRunning = "Running"
	PowerStopped = "Stopped"
)

// PoolSummary is one node pool as its nodes show it.
type PoolSummary struct {
	Name            string
	KubeletVersions []string
	Nodes           int
	Ready           int
	// PowerState is Stopped when the pool has nodes and none is Ready.
	PowerState string
}

// SummarizePools groups nodes by pool, sorted by name.
func SummarizePools(nodes []Node) []PoolSummary {
	byName := map[string]*PoolSummary{}
	versions := map[string]map[string]bool{}
	for _, n := range nodes {
		s := byName[n.Pool]
		if s == nil {
			s = &PoolSummary{Name: n.Pool}
			byName[n.Pool] = s
			versions[n.Pool] = map[string]bool{}
		}
		s.Nodes++
		if n.Ready {
			s.Ready++
		}
		v := n.KubeletVersion
		if v == "" {
			v = "unknown"
		}
		versions[n.Pool][v] = true
	}
	out := make([]PoolSummary, 0, len(byName))
	for name, s := range byName {
		s.KubeletVersions = sortedKeys(versions[name])
		s.PowerState = PowerRunning
		if s.Ready == 0 {
			s.PowerState = PowerStopped
		}
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
