package meshversion

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// Policy is one platform rule set for native sidecar mode. Policies are data:
// adding the platform's next rule set is adding a row to Policies.
type Policy struct {
	Name        string
	Description string
	// MinKubernetes is the oldest API server and kubelet that may run native sidecars.
	MinKubernetes *version.Version
	// MinRevision is the oldest mesh revision that can inject native sidecars.
	MinRevision Revision
	// FeatureFlag, when set, is the preview flag that opts an existing cluster in.
	FeatureFlag string
	// AutoNewClusterFrom is the first revision that Auto turns native on for a
	// cluster created qualifying ("a new cluster").
	AutoNewClusterFrom Revision
	// AutoExistingClusterFrom, when set, is the first revision that Auto turns
	// native on for an existing cluster without the feature flag.
	AutoExistingClusterFrom *Revision
}

// FeatureNativeSidecarPreview is the preview feature flag of the seed document.
const FeatureNativeSidecarPreview = "IstioNativeSidecarModePreview"

// IstioAutoMinKubelet is the kubelet version from which Istio itself, with
// ENABLE_NATIVE_SIDECARS unset, injects native sidecars (every node must have it).
var IstioAutoMinKubelet = version.MajorMinor(1, 33)

// Policies lists the rule sets; the first is the default.
var Policies = []Policy{
	{
		Name:               "preview",
		Description:        "the seed document: Kubernetes 1.29+, asm-1-20+, opt in with the IstioNativeSidecarModePreview feature; new clusters that qualify get it",
		MinKubernetes:      version.MajorMinor(1, 29),
		MinRevision:        Revision{1, 20},
		FeatureFlag:        FeatureNativeSidecarPreview,
		AutoNewClusterFrom: Revision{1, 20},
	},
	{
		Name:                    "ga",
		Description:             "the later platform rules: Kubernetes 1.33+, on by default from asm-1-27 for new installs and from asm-1-29 on upgrade, no feature flag",
		MinKubernetes:           version.MajorMinor(1, 33),
		MinRevision:             Revision{1, 20},
		AutoNewClusterFrom:      Revision{1, 27},
		AutoExistingClusterFrom: &Revision{1, 29},
	},
}

// DefaultPolicy is the seed document's rule set.
var DefaultPolicy = Policies[0]

// PolicyNames lists the policies' names, for flags and errors.
func PolicyNames() []string {
	names := make([]string, len(Policies))
	for i, p := range Policies {
		names[i] = p.Name
	}
	return names
}

// LookupPolicy finds a policy by name.
func LookupPolicy(name string) (Policy, error) {
	for _, p := range Policies {
		if p.Name == name {
			return p, nil
		}
	}
	return Policy{}, fmt.Errorf("unknown policy %q: want one of %s", name, strings.Join(PolicyNames(), ", "))
}

// OldNodes lists, by pool, the nodes this policy does not allow native
// sidecars on: kubelet older than MinKubernetes, or no readable version.
func (p Policy) OldNodes(nodes []Node) map[string][]Node {
	old := map[string][]Node{}
	for _, n := range nodes {
		if !p.SidecarCapable(n) {
			old[n.Pool] = append(old[n.Pool], n)
		}
	}
	return old
}

// describeOldNodes says which pools and nodes are too old, in a form that
// stays short on a cluster of thousands of nodes.
func describeOldNodes(old map[string][]Node, min *version.Version) string {
	pools := make([]string, 0, len(old))
	for pool := range old {
		pools = append(pools, pool)
	}
	sort.Strings(pools)
	var parts []string
	for _, pool := range pools {
		nodes := old[pool]
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
		versions := map[string]bool{}
		var names []string
		for i, n := range nodes {
			v := n.KubeletVersion
			if v == "" {
				v = "unknown"
			}
			versions[v] = true
			if i < 3 {
				names = append(names, n.Name)
			}
		}
		if len(nodes) > 3 {
			names = append(names, fmt.Sprintf("and %d more", len(nodes)-3))
		}
		parts = append(parts, fmt.Sprintf("pool %s has %d node(s) on kubelet %s (%s)",
			displayPool(pool), len(nodes), strings.Join(sortedKeys(versions), ", "), strings.Join(names, ", ")))
	}
	return fmt.Sprintf("%s, older than %s: upgrade those pools to %s or newer",
		strings.Join(parts, "; "), MinorString(min), MinorString(min))
}

func displayPool(p string) string {
	if p == "" {
		return "<none>"
	}
	return p
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
