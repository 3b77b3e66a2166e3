package testbed

import (
	"fmt"
	"os"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/yaml"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testbed/cache"
	"github.com/meshaddon/meshaddon/internal/testbed/cluster"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

// DefaultRevision is the mesh revision installed when none is asked for.
const DefaultRevision = "asm-1-27"

// Spec is what a test bed cluster is created with: the flags of
// `meshaddon local up`, or the same fields in its --config file.
type Spec struct {
	Name      string          `json:"name"`
	Pools     []nodepool.Spec `json:"pools"`
	Revisions []string        `json:"revisions"`
	// NativeSidecars is istiod's initial ENABLE_NATIVE_SIDECARS: "true",
	// "false" (default: a cluster that has not turned the mode on) or "unset".
	NativeSidecars string `json:"nativeSidecars"`
	// PodStartDelay is how long after binding a pod becomes Ready (default 0).
	PodStartDelay metav1.Duration `json:"podStartDelay"`
	// APIServerPort is kube-apiserver's port on 127.0.0.1 (default: a free one).
	APIServerPort int `json:"apiServerPort,omitempty"`
	// Manager runs the add-on manager (default true); without it istiod
	// keeps NativeSidecars as set.
	Manager bool `json:"manager"`
	// NewCluster creates the MeshProfile as a new cluster's (origin
	// NewCluster) instead of an existing one's.
	NewCluster bool `json:"newCluster"`
	// Policy is the manager's version policy (default preview).
	Policy string `json:"policy"`
	// ARM also serves the local Azure Resource Manager endpoint. Once on,
	// it stays on for the cluster's life (it is not part of Diff).
	ARM bool `json:"arm,omitempty"`
	// Audit keeps the API server's audit log of every write in the
	// cluster's directory (cluster.AuditLogPath); only when it is created.
	Audit bool `json:"audit,omitempty"`
	// Layout is aks (default: asm-1-NN revisions in aks-istio-system) or
	// upstream (upstream Istio's: istio-system, the default revision and
	// free-form ones, revision tags; issue 15).
	Layout string `json:"layout,omitempty"`
	// Tags are upstream revision tags, TAG=REVISION.
	Tags []string `json:"tags,omitempty"`
	// Observe runs the manager with --observe: it never writes istiod.
	Observe bool `json:"observe,omitempty"`
}

// Upstream reports whether the cluster has upstream Istio's layout.
func (s *Spec) Upstream() bool { return s.Layout == string(meshdiscovery.LayoutUpstream) }

// MeshNamespace is where the cluster's istiods run.
func (s *Spec) MeshNamespace() string {
	if s.Upstream() {
		return mesh.UpstreamNamespace
	}
	return mesh.Namespace
}

// TagsOf are the tags pointing at revision.
func (s *Spec) TagsOf(revision string) []string {
	var out []string
	for _, t := range s.Tags {
		if name, rev, _ := strings.Cut(t, "="); rev == revision {
			out = append(out, name)
		}
	}
	return out
}

// DefaultSpec is one pool of three nodes at the API server's version and the
// current revision, injecting classic sidecars.
func DefaultSpec() Spec {
	return Spec{
		Name:           cluster.DefaultName,
		Pools:          []nodepool.Spec{{Name: "system", Version: cache.KubernetesVersion, Count: 3}},
		Revisions:      []string{DefaultRevision},
		NativeSidecars: "false",
		Manager:        true,
		Policy:         meshversion.DefaultPolicy.Name,
	}
}

// NewestRevision is the newest of the mesh revisions the cluster was
// created with: what a command acting on one revision defaults to.
func (s *Spec) NewestRevision() (string, error) {
	if s.Upstream() && len(s.Revisions) > 0 {
		return s.Revisions[len(s.Revisions)-1], nil
	}
	var newest *meshversion.Revision
	for _, r := range s.Revisions {
		if rev, err := meshversion.ParseRevision(r); err == nil && (newest == nil || !newest.AtLeast(rev)) {
			newest = &rev
		}
	}
	if newest == nil {
		return "", fmt.Errorf("the cluster's spec lists no mesh revision (%q): pass --revision asm-1-NN", s.Revisions)
	}
	return newest.String(), nil
}

// LoadSpecFile reads a YAML config file; fields it leaves out keep their
// defaults.
func LoadSpecFile(path string) (Spec, error) {
	spec := DefaultSpec()
	data, err := os.ReadFile(path)
	if err != nil {
		return spec, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &spec); err != nil {
		return spec, fmt.Errorf("config %s: %w", path, err)
	}
	return spec, nil
}

// Validate checks every field and reports all problems at once.
func (s *Spec) Validate() error {
	var errs []error
	if _, err := cluster.Open(s.Name); err != nil {
		errs = append(errs, err)
	}
	if len(s.Pools) == 0 {
		errs = append(errs, fmt.Errorf("at least one node pool is needed"))
	}
	seen := map[string]bool{}
	for i, p := range s.Pools {
		if err := nodepool.ValidateName(p.Name); err != nil {
			errs = append(errs, err)
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("node pool %q is given twice", p.Name))
		}
		seen[p.Name] = true
		v, err := nodepool.NormalizeVersion(p.Version)
		if err != nil {
			errs = append(errs, fmt.Errorf("node pool %q: %w", p.Name, err))
		}
		s.Pools[i].Version = v
		if p.Count < 0 || p.Count > 10000 {
			errs = append(errs, fmt.Errorf("node pool %q: count %d must be from 0 to 10000", p.Name, p.Count))
		}
	}
	if len(s.Revisions) == 0 {
		errs = append(errs, fmt.Errorf("at least one mesh revision is needed"))
	}
	revs := map[string]bool{}
	if s.Layout != "" {
		if _, err := meshdiscovery.ParseLayout(s.Layout); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range s.Revisions {
		if s.Upstream() {
			// Upstream revisions are free-form names (labels, and part of
			// the istiod Deployment's name).
			for _, msg := range validation.IsDNS1123Label(r) {
				errs = append(errs, fmt.Errorf("invalid revision %q: %s", r, msg))
			}
		} else if _, err := meshversion.ParseRevision(r); err != nil {
			errs = append(errs, err)
		}
		if revs[r] {
			errs = append(errs, fmt.Errorf("mesh revision %q is given twice", r))
		}
		revs[r] = true
	}
	for _, t := range s.Tags {
		name, rev, ok := strings.Cut(t, "=")
		switch {
		case !s.Upstream():
			errs = append(errs, fmt.Errorf("revision tag %q: tags are upstream Istio's: add --layout upstream", t))
		case !ok || len(validation.IsDNS1123Label(name)) > 0:
			errs = append(errs, fmt.Errorf("invalid revision tag %q: want TAG=REVISION, e.g. prod=1-27-1", t))
		case !revs[rev]:
			errs = append(errs, fmt.Errorf("revision tag %q points at revision %q, which is not installed (--revision)", t, rev))
		}
	}
	switch s.NativeSidecars {
	case "true", "false", "unset":
	default:
		errs = append(errs, fmt.Errorf("invalid native sidecars setting %q: want true, false or unset", s.NativeSidecars))
	}
	if s.PodStartDelay.Duration < 0 {
		errs = append(errs, fmt.Errorf("pod start delay %s must not be negative", s.PodStartDelay.Duration))
	}
	if s.APIServerPort < 0 || s.APIServerPort > 65535 {
		errs = append(errs, fmt.Errorf("API server port %d must be from 1 to 65535", s.APIServerPort))
	}
	if _, err := meshversion.LookupPolicy(s.Policy); err != nil {
		errs = append(errs, err)
	}
	return kerrors.NewAggregate(errs)
}

// Diff lists the settings in which other differs from s.
func (s Spec) Diff(other Spec) []string {
	var d []string
	if a, b := poolList(s.Pools), poolList(other.Pools); a != b {
		d = append(d, fmt.Sprintf("pools %s, asked %s", a, b))
	}
	if a, b := strings.Join(s.Revisions, ","), strings.Join(other.Revisions, ","); a != b {
		d = append(d, fmt.Sprintf("revisions %s, asked %s", a, b))
	}
	if s.NativeSidecars != other.NativeSidecars {
		d = append(d, fmt.Sprintf("native sidecars %s, asked %s", s.NativeSidecars, other.NativeSidecars))
	}
	if s.PodStartDelay != other.PodStartDelay {
		d = append(d, fmt.Sprintf("pod start delay %s, asked %s", s.PodStartDelay.Duration, other.PodStartDelay.Duration))
	}
	if s.APIServerPort != other.APIServerPort {
		d = append(d, fmt.Sprintf("API server port %d, asked %d", s.APIServerPort, other.APIServerPort))
	}
	if s.Manager != other.Manager {
		d = append(d, fmt.Sprintf("manager %t, asked %t", s.Manager, other.Manager))
	}
	if s.NewCluster != other.NewCluster {
		d = append(d, fmt.Sprintf("new cluster %t, asked %t", s.NewCluster, other.NewCluster))
	}
	if s.Layout != other.Layout {
		d = append(d, fmt.Sprintf("layout %s, asked %s", s.Layout, other.Layout))
	}
	if a, b := strings.Join(s.Tags, ","), strings.Join(other.Tags, ","); a != b {
		d = append(d, fmt.Sprintf("tags %s, asked %s", a, b))
	}
	if s.Observe != other.Observe {
		d = append(d, fmt.Sprintf("observe %t, asked %t", s.Observe, other.Observe))
	}
	if s.Policy != other.Policy {
		d = append(d, fmt.Sprintf("policy %s, asked %s", s.Policy, other.Policy))
	}
	if s.Audit != other.Audit {
		d = append(d, fmt.Sprintf("audit %t, asked %t", s.Audit, other.Audit))
	}
	return d
}

func poolList(ps []nodepool.Spec) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}
