// Package nodepool manages the test bed's node pools: groups of kwok fake
// nodes that share the agent pool label and a kubelet version, created,
// upgraded node by node, stopped and started the way a managed cluster does.
package nodepool

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"

	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testbed/stage"
)

// The node pool labels, as on AKS (the rule lives in meshversion).
const (
	PoolLabel       = meshversion.PoolLabel
	LegacyPoolLabel = meshversion.LegacyPoolLabel
)

// kwokAnnotation hands a node to the kwok controller.
const kwokAnnotation = "kwok.x-k8s.io/node"

// surgeForAnnotation names the node a surge node replaces, so that an
// upgrade run again after an interruption (the local ARM endpoint resumes
// its operations) takes that surge node instead of adding another.
const surgeForAnnotation = "meshaddon.dev/surge-for"

// Spec is one pool as asked for: NAME=VERSION:COUNT.
type Spec struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Count   int    `json:"count"`
}

func (s Spec) String() string { return fmt.Sprintf("%s=%s:%d", s.Name, s.Version, s.Count) }

// ParseSpec parses NAME=VERSION:COUNT, e.g. system=v1.34.4:3.
func ParseSpec(s string) (Spec, error) {
	name, rest, ok := strings.Cut(s, "=")
	ver, count, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return Spec{}, fmt.Errorf("invalid node pool %q: want NAME=VERSION:COUNT, e.g. system=v1.34.4:3", s)
	}
	if err := ValidateName(name); err != nil {
		return Spec{}, err
	}
	v, err := NormalizeVersion(ver)
	if err != nil {
		return Spec{}, fmt.Errorf("invalid node pool %q: %w", s, err)
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 0 || n > 10000 {
		return Spec{}, fmt.Errorf("invalid node pool %q: count %q must be a whole number from 0 to 10000", s, count)
	}
	return Spec{Name: name, Version: v, Count: n}, nil
}

// ValidateName checks a pool name the way AKS does: lower-case letters and
// digits, starting with a letter, at most 12 characters.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > 12 || !(name[0] >= 'a' && name[0] <= 'z') ||
		strings.IndexFunc(name, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) >= 0 {
		return fmt.Errorf("invalid node pool name %q: use 1 to 12 lower-case letters and digits, starting with a letter", name)
	}
	return nil
}

// NormalizeVersion turns "1.29", "v1.29.3" into "v1.29.0", "v1.29.3".
func NormalizeVersion(v string) (string, error) {
	parsed, err := utilversion.ParseGeneric(strings.TrimSpace(v))
	if err != nil || parsed.Major() != 1 {
		return "", fmt.Errorf("%q is not a Kubernetes version: want one such as v1.34.4 or 1.29", v)
	}
	return fmt.Sprintf("v%d.%d.%d", parsed.Major(), parsed.Minor(), parsed.Patch()), nil
}

// Pool is a node pool as the cluster shows it.
type Pool struct {
	Name     string   `json:"name"`
	Versions []string `json:"versions"`
	Nodes    int      `json:"nodes"`
	Ready    int      `json:"ready"`
	Stopped  bool     `json:"stopped"`
}

// PowerState is Running or Stopped, as ARM reports it.
func (p Pool) PowerState() string {
	if p.Stopped {
		return "Stopped"
	}
	return "Running"
}

// Manager changes node pools through the API server.
type Manager struct {
	Client kubernetes.Interface
	// Out receives a line per node created, drained or deleted (may be nil).
	Out io.Writer
	// AfterChange runs after nodes are created or deleted, so that stages that
	// depend on node versions can be rewritten (may be nil).
	AfterChange func(ctx context.Context) error
}

func (m *Manager) printf(format string, args ...any) {
	if m.Out != nil {
		fmt.Fprintf(m.Out, format+"\n", args...)
	}
}

func (m *Manager) changed(ctx context.Context) error {
	if m.AfterChange == nil {
		return nil
	}
	return m.AfterChange(ctx)
}

// Nodes lists the pool's nodes, sorted by name; an empty pool name lists all.
func (m *Manager) Nodes(ctx context.Context, pool string) ([]corev1.Node, error) {
	opts := metav1.ListOptions{}
	if pool != "" {
		opts.LabelSelector = labels.SelectorFromSet(labels.Set{PoolLabel: pool}).String()
	}
	list, err := m.Client.CoreV1().Nodes().List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// List returns every pool, by name.
func (m *Manager) List(ctx context.Context) ([]Pool, error) {
	nodes, err := m.Nodes(ctx, "")
	if err != nil {
		return nil, err
	}
	return Summarize(nodes), nil
}

// Summarize groups nodes into pools.
func Summarize(nodes []corev1.Node) []Pool {
	byName := map[string]*Pool{}
	var names []string
	for i := range nodes {
		n := &nodes[i]
		name := meshversion.PoolOf(n.Labels)
		if name == "" {
			continue
		}
		p := byName[name]
		if p == nil {
			p = &Pool{Name: name}
			byName[name] = p
			names = append(names, name)
		}
		p.Nodes++
		if meshversion.IsReady(n) {
			p.Ready++
		}
		if n.Labels[stage.PowerStateLabel] == stage.PowerStopped {
			p.Stopped = true
		}
		v := n.Status.NodeInfo.KubeletVersion
		if !contains(p.Versions, v) {
			p.Versions = append(p.Versions, v)
		}
	}
	sort.Strings(names)
	out := make([]Pool, 0, len(names))
	for _, n := range names {
		sort.Strings(byName[n].Versions)
		out = append(out, *byName[n])
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nodeName follows AKS's scale-set naming: aks-<pool>-<index>.
func nodeName(pool string, index int) string { return fmt.Sprintf("aks-%s-vmss%06d", pool, index) }

func nodeIndex(pool, name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "aks-"+pool+"-vmss"))
	if err != nil {
		return -1
	}
	return n
}

func newNode(pool, name, version string, stopped bool) *corev1.Node {
	lbls := map[string]string{
		PoolLabel:                pool,
		LegacyPoolLabel:          pool,
		"kubernetes.io/hostname": name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
	}
	if stopped {
		lbls[stage.PowerStateLabel] = stage.PowerStopped
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      lbls,
			Annotations: map[string]string{kwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{Unschedulable: stopped},
		Status: corev1.NodeStatus{
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: version, OperatingSystem: "linux", Architecture: "amd64"},
		},
	}
}

// Ensure makes the pool have at least spec.Count nodes, creating missing
// ones at spec.Version, and returns what it created.
func (m *Manager) Ensure(ctx context.Context, spec Spec) ([]string, error) {
	nodes, err := m.Nodes(ctx, spec.Name)
	if err != nil {
		return nil, err
	}
	var created []string
	next := nextIndex(spec.Name, nodes)
	for i := len(nodes); i < spec.Count; i++ {
		name := nodeName(spec.Name, next)
		next++
		if _, err := m.Client.CoreV1().Nodes().Create(ctx, newNode(spec.Name, name, spec.Version, false), metav1.CreateOptions{}); err != nil {
			return created, fmt.Errorf("create node %s: %w", name, err)
		}
		created = append(created, name)
	}
	if len(created) > 0 {
		if err := m.changed(ctx); err != nil {
			return created, err
		}
		if err := m.waitReady(ctx, created); err != nil {
			return created, err
		}
	}
	return created, nil
}

func nextIndex(pool string, nodes []corev1.Node) int {
	next := 0
	for _, n := range nodes {
		if i := nodeIndex(pool, n.Name); i >= next {
			next = i + 1
		}
	}
	return next
}

// Add creates a new pool; it fails if the pool already has nodes.
func (m *Manager) Add(ctx context.Context, spec Spec) error {
	nodes, err := m.Nodes(ctx, spec.Name)
	if err != nil {
		return err
	}
	if len(nodes) > 0 {
		return fmt.Errorf("node pool %q already exists with %d nodes; use `meshaddon local nodepool upgrade` to change its version", spec.Name, len(nodes))
	}
	created, err := m.Ensure(ctx, spec)
	if err == nil {
		m.printf("node pool %s: created %d nodes at %s", spec.Name, len(created), spec.Version)
	}
	return err
}

func (m *Manager) existing(ctx context.Context, pool string) ([]corev1.Node, error) {
	nodes, err := m.Nodes(ctx, pool)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("node pool %q not found; `meshaddon local nodepool list` shows the pools", pool)
	}
	return nodes, nil
}

// Upgrade moves every node of the pool to version, one at a time as a
// managed upgrade does: add a surge node at the new version, wait until it is
// Ready, drain the old node (evictions honour PodDisruptionBudgets), delete it.
func (m *Manager) Upgrade(ctx context.Context, pool, version string) error {
	version, err := NormalizeVersion(version)
	if err != nil {
		return err
	}
	nodes, err := m.existing(ctx, pool)
	if err != nil {
		return err
	}
	stopped := nodes[0].Labels[stage.PowerStateLabel] == stage.PowerStopped
	if stopped {
		return fmt.Errorf("node pool %q is stopped; start it first with `meshaddon local nodepool start %s`", pool, pool)
	}
	next := nextIndex(pool, nodes)
	surge := map[string]string{} // old node → its surge node, left by an interrupted run
	for _, n := range nodes {
		if old := n.Annotations[surgeForAnnotation]; old != "" && n.Status.NodeInfo.KubeletVersion == version {
			surge[old] = n.Name
		}
	}
	for _, old := range nodes {
		if old.Status.NodeInfo.KubeletVersion == version {
			continue
		}
		name := surge[old.Name]
		if name == "" {
			name = nodeName(pool, next)
			next++
			n := newNode(pool, name, version, false)
			n.Annotations[surgeForAnnotation] = old.Name
			if _, err := m.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("upgrade %s: create surge node %s: %w", pool, name, err)
			}
			if err := m.changed(ctx); err != nil {
				return err
			}
		}
		if err := m.waitReady(ctx, []string{name}); err != nil {
			return fmt.Errorf("upgrade %s: %w", pool, err)
		}
		if err := m.drain(ctx, old.Name); err != nil {
			return fmt.Errorf("upgrade %s: %w", pool, err)
		}
		if err := m.Client.CoreV1().Nodes().Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("upgrade %s: delete node %s: %w", pool, old.Name, err)
		}
		if err := m.changed(ctx); err != nil {
			return err
		}
		m.printf("node pool %s: replaced %s (%s) with %s (%s)", pool, old.Name, old.Status.NodeInfo.KubeletVersion, name, version)
	}
	return nil
}

// drain cordons the node and evicts its pods with kubectl's own drain code
// (k8s.io/kubectl/pkg/drain, what `kubectl drain --ignore-daemonsets
// --delete-emptydir-data --force` runs): evictions honour
// PodDisruptionBudgets (a 429 is retried), DaemonSet pods stay, and it
// returns once the evicted pods are gone, as a managed node-pool upgrade
// waits before it deletes the node.
func (m *Manager) drain(ctx context.Context, node string) error {
	h := &drain.Helper{
		Ctx:                 ctx,
		Client:              m.Client,
		Force:               true, // bare pods too: the node is going away
		GracePeriodSeconds:  -1,   // each pod's own terminationGracePeriodSeconds
		IgnoreAllDaemonSets: true,
		DeleteEmptyDirData:  true,
		Timeout:             2 * time.Minute,
		Out:                 io.Discard,
		ErrOut:              io.Discard,
	}
	n, err := m.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cordon %s: %w", node, err)
	}
	if err := drain.RunCordonOrUncordon(h, n, true); err != nil {
		return fmt.Errorf("cordon %s: %w", node, err)
	}
	if err := drain.RunNodeDrain(h, node); err != nil {
		return fmt.Errorf("drain %s: %w", node, err)
	}
	return nil
}

func (m *Manager) Stop(ctx context.Context, pool string) error {
	return m.setPower(ctx, pool, true)
}

// Start powers the pool back on.
func (m *Manager) Start(ctx context.Context, pool string) error {
	return m.setPower(ctx, pool, false)
}

func (m *Manager) setPower(ctx context.Context, pool string, stop bool) error {
	nodes, err := m.existing(ctx, pool)
	if err != nil {
		return err
	}
	var names []string
	for _, n := range nodes {
		var patch string
		if stop {
			patch = fmt.Sprintf(`{"metadata":{"labels":{%q:%q}},"spec":{"unschedulable":true}}`, stage.PowerStateLabel, stage.PowerStopped)
		} else {
			patch = fmt.Sprintf(`{"metadata":{"labels":{%q:null}},"spec":{"unschedulable":null}}`, stage.PowerStateLabel)
		}
		if _, err := m.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("set power state of %s: %w", n.Name, err)
		}
		names = append(names, n.Name)
	}
	if stop {
		err = m.waitCondition(ctx, names, false)
	} else {
		err = m.waitReady(ctx, names)
	}
	if err != nil {
		return err
	}
	state := "started"
	if stop {
		state = "stopped"
	}
	m.printf("node pool %s: %s (%d nodes)", pool, state, len(names))
	return nil
}

// Delete removes the pool's nodes.
func (m *Manager) Delete(ctx context.Context, pool string) error {
	nodes, err := m.existing(ctx, pool)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if err := m.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete node %s: %w", n.Name, err)
		}
	}
	m.printf("node pool %s: deleted %d nodes", pool, len(nodes))
	return m.changed(ctx)
}

func (m *Manager) waitReady(ctx context.Context, names []string) error {
	return m.waitCondition(ctx, names, true)
}

// waitCondition waits until every named node's Ready condition is want.
func (m *Manager) waitCondition(ctx context.Context, names []string, want bool) error {
	pending := map[string]bool{}
	for _, n := range names {
		pending[n] = true
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for name := range pending {
			n, err := m.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			if meshversion.IsReady(n) == want {
				delete(pending, name)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		var left []string
		for n := range pending {
			left = append(left, n)
		}
		sort.Strings(left)
		return fmt.Errorf("nodes %s did not become Ready=%t in time (is the kwok controller running?): %w", strings.Join(left, ", "), want, err)
	}
	return nil
}

// OldNodes returns the nodes whose kubelet predates sidecar containers (1.29).
func OldNodes(nodes []corev1.Node) []string {
	min := utilversion.MajorMinor(1, 29)
	var out []string
	for _, n := range nodes {
		v, err := utilversion.ParseGeneric(n.Status.NodeInfo.KubeletVersion)
		if err != nil || v.LessThan(min) {
			out = append(out, n.Name)
		}
	}
	return out
}
