package meshversion

import (
	"sort"
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
