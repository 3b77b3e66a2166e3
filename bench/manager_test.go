package bench

// Issue 4: the add-on manager at scale. One cluster with 5,000 nodes in 20
// pools; the manager's memory once it has synced them all, how fast an old
// node joining turns istiod classic, and how long `meshaddon reconcile`
// takes with and without a change.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

// benchIstiod is the Deployment whose ENABLE_NATIVE_SIDECARS is watched.
const benchIstiod = "istiod-asm-1-27"

// TestManagerScale measures the manager with MESHADDON_BENCH_POOLS pools of
// MESHADDON_BENCH_POOL_NODES nodes (20 × 250 = 5,000 by default).
func TestManagerScale(t *testing.T) {
	requireBench(t)
	pools := envInt(t, "MESHADDON_BENCH_POOLS", 20)
	perPool := envInt(t, "MESHADDON_BENCH_POOL_NODES", 250)
	total := pools * perPool
	const name = "scale"

	took := upCluster(t, name, "--pool", fmt.Sprintf("system=%s:%d", currentVersion, perPool), "--revision", "asm-1-27")
	t.Logf("local up with %d nodes took %s", perPool, took.Round(time.Millisecond))
	cfg := restConfig(t, name)
	kc := kubeClient(t, cfg)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl := clients.Client

	start := time.Now()
	addPools(t, name, kc, pools-1, perPool)
	t.Logf("added %d more pools of %d nodes in %s", pools-1, perPool, time.Since(start).Round(time.Second))
	synced := time.Now()
	waitProfileNodes(t, cl, total, 15*time.Minute)
	t.Logf("the MeshProfile counted all %d nodes %s after the last pool was added", total, time.Since(synced).Round(100*time.Millisecond))

	t.Run("manager memory", func(t *testing.T) {
		m := managerMemory(t, name)
		report(t, fmt.Sprintf("manager.vmrss.%d_nodes", total), mib(m.RSS), "MiB", under(100, "< 100 MiB"))
		report(t, fmt.Sprintf("manager.vmhwm.%d_nodes", total), mib(m.HWM), "MiB", under(100, "< 100 MiB"))
	})

	makeNative(t, name, kc)

	t.Run("old node joins: istiod flips to classic", func(t *testing.T) {
		runs := envInt(t, "MESHADDON_BENCH_REPEAT", 5)
		var joins, leaves []time.Duration
		for i := 1; i <= runs; i++ {
			join, leave := oldNodeRoundTrip(t, kc, i)
			joins, leaves = append(joins, join), append(leaves, leave)
			reportDuration(t, fmt.Sprintf("manager.old_node_join_to_classic.run%d", i), join, "s", under(2, "< 2 s"))
			t.Logf("run %d: node deleted → ENABLE_NATIVE_SIDECARS=true in %s", i, leave.Round(time.Millisecond))
		}
		reportDuration(t, "manager.old_node_join_to_classic.median", median(joins), "s", under(2, "< 2 s"))
		reportDuration(t, "manager.old_node_leave_to_native.median", median(leaves), "s", noTarget)
	})

	t.Run("reconcile latency", func(t *testing.T) {
		runs := envInt(t, "MESHADDON_BENCH_REPEAT", 5)
		var still []time.Duration
		for i := 1; i <= runs; i++ {
			r := mustMeshaddon(t, "reconcile", "--kubeconfig", kubeconfigOf(name), "--timeout", "2m")
			if strings.Contains(r.stdout, "now ") {
				t.Logf("run %d: reconcile reported a change where none was expected:\n%s", i, r.stdout)
			}
			still = append(still, r.took)
			reportDuration(t, fmt.Sprintf("manager.reconcile_unchanged.run%d", i), r.took, "s", under(1, "< 1 s"))
		}
		reportDuration(t, "manager.reconcile_unchanged.median", median(still), "s", under(1, "< 1 s"))

		// Each run patches the mode so that istiod must change, then times
		// reconcile: the manager's decision, the Deployment update, and the
		// runner restarting istiod until the rollout is complete.
		var changed []time.Duration
		for i := 1; i <= runs; i++ {
			mode, want := "Disabled", "false"
			if i%2 == 0 {
				mode, want = "Enabled", "true"
			}
			setMode(t, cl, mode)
			r := mustMeshaddon(t, "reconcile", "--kubeconfig", kubeconfigOf(name), "--timeout", "2m")
			if got := istiodEnv(t, kc); got != want {
				t.Errorf("run %d: mode %s: istiod has ENABLE_NATIVE_SIDECARS=%s after reconcile, want %s", i, mode, got, want)
			}
			if !strings.Contains(r.stdout, "now ") {
				t.Logf("run %d: the manager had already applied %s before reconcile asked:\n%s", i, mode, r.stdout)
			}
			changed = append(changed, r.took)
			reportDuration(t, fmt.Sprintf("manager.reconcile_istiod_change.run%d", i), r.took, "s", noTarget)
		}
		reportDuration(t, "manager.reconcile_istiod_change.median", median(changed), "s", noTarget)
	})

	t.Run("manager memory at the end", func(t *testing.T) {
		m := managerMemory(t, name)
		report(t, fmt.Sprintf("manager.vmhwm.%d_nodes.end", total), mib(m.HWM), "MiB", under(100, "< 100 MiB"))
	})
}

// addPools adds n pools p1..pN of perPool current nodes. MESHADDON_BENCH_NODE_ADD
// chooses how: cli runs `local nodepool add`, direct creates the nodes with
// client-go in parallel, auto (the default) uses the CLI and switches to
// direct creation once one pool takes longer than a minute.
func addPools(t *testing.T, name string, kc kubernetes.Interface, n, perPool int) {
	t.Helper()
	mode := os.Getenv("MESHADDON_BENCH_NODE_ADD")
	if mode == "" {
		mode = "auto"
	}
	if mode != "auto" && mode != "cli" && mode != "direct" {
		t.Fatalf("MESHADDON_BENCH_NODE_ADD=%q: want auto, cli or direct", mode)
	}
	for i := 1; i <= n; i++ {
		pool := fmt.Sprintf("p%d", i)
		start := time.Now()
		if mode == "direct" {
			createNodes(t, kc, pool, currentVersion, perPool)
			t.Logf("pool %s: created %d nodes directly in %s", pool, perPool, time.Since(start).Round(100*time.Millisecond))
			continue
		}
		r := mustMeshaddon(t, "local", "nodepool", "add", pool, "--name", name, "--version", currentVersion, "--count", fmt.Sprint(perPool))
		t.Logf("pool %s: local nodepool add took %s", pool, r.took.Round(100*time.Millisecond))
		if mode == "auto" && r.took > time.Minute {
			t.Logf("adding pools with the CLI is slow: creating the remaining pools' nodes directly")
			mode = "direct"
		}
	}
}

// createNodes creates count Ready nodes in pool at version with client-go,
// from parallel goroutines, the way the test bed's node pools build them:
// the pool labels, kwok's annotation, and the kubelet version and Ready
// condition set through the status subresource.
func createNodes(t *testing.T, kc kubernetes.Interface, pool, version string, count int) {
	t.Helper()
	const workers = 16
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("aks-%s-vmss%06d", pool, i)
				if err := createNode(ctx, kc, pool, name, version); err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := 0; i < count; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("pool %s: %v", pool, firstErr)
	}
}

// benchNode is a node like the test bed's: see nodepool.go.
func benchNode(pool, name, version string) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				nodepool.PoolLabel:       pool,
				nodepool.LegacyPoolLabel: pool,
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Status: corev1.NodeStatus{
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: version, OperatingSystem: "linux", Architecture: "amd64"},
		},
	}
	setReady(n)
	return n
}

// createNode creates the node with its kubelet version and Ready condition,
// as a kubelet registers, and sets them again through UpdateStatus if they
// did not stick (kwok updates nodes too: retry on conflict).
func createNode(ctx context.Context, kc kubernetes.Interface, pool, name, version string) error {
	if _, err := kc.CoreV1().Nodes().Create(ctx, benchNode(pool, name, version), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Status.NodeInfo.KubeletVersion == version && meshversion.IsReady(n) {
			return nil
		}
		n.Status.NodeInfo.KubeletVersion = version
		setReady(n)
		_, err = kc.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set the status of node %s: %w", name, err)
	}
	return nil
}

func setReady(n *corev1.Node) {
	now := metav1.Now()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	for i, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			n.Status.Conditions[i] = ready
			return
		}
	}
	n.Status.Conditions = append(n.Status.Conditions, ready)
}

// waitProfileNodes waits until the MeshProfile's status counts want nodes
// over all its pools: the manager has synced them.
func waitProfileNodes(t *testing.T, cl client.Client, want int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("the MeshProfile counts %d nodes", want), func(ctx context.Context) (bool, string) {
		p, err := meshProfile(ctx, cl)
		if err != nil {
			return false, err.Error()
		}
		var n int32
		for _, pool := range p.Status.NodePools {
			n += pool.Nodes
		}
		return int(n) == want, fmt.Sprintf("%d nodes in %d pools", n, len(p.Status.NodePools))
	})
}

func meshProfile(ctx context.Context, cl client.Client) (*v1alpha1.MeshProfile, error) {
	var p v1alpha1.MeshProfile
	err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p)
	return &p, err
}

// setMode sets the MeshProfile's spec.nativeSidecarMode with a merge patch.
func setMode(t *testing.T, cl client.Client, mode string) {
	t.Helper()
	p := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}}
	patch := []byte(fmt.Sprintf(`{"spec":{"nativeSidecarMode":%q}}`, mode))
	if err := cl.Patch(context.Background(), p, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatalf("set nativeSidecarMode=%s: %v", mode, err)
	}
}

// managerMemory reads the manager daemon's VmRSS and VmHWM.
func managerMemory(t *testing.T, name string) memory {
	t.Helper()
	pid := pidFile(name, "manager")
	if pid == 0 {
		t.Fatal("no manager.pid: is the add-on manager running?")
	}
	m, err := readMemory(pid)
	if err != nil {
		t.Fatalf("manager pid %d: %v", pid, err)
	}
	return m
}

// makeNative walks the document on the cluster: register the preview
// feature, wait until it is Registered, refresh the provider, reconcile;
// istiod then runs with ENABLE_NATIVE_SIDECARS=true.
func makeNative(t *testing.T, name string, kc kubernetes.Interface) {
	t.Helper()
	kcfg := kubeconfigOf(name)
	mustMeshaddon(t, "feature", "register", "--name", featureName, "--kubeconfig", kcfg)
	waitFor(t, time.Minute, "feature Registered", func(context.Context) (bool, string) {
		r := mustMeshaddon(t, "feature", "show", "--name", featureName, "--kubeconfig", kcfg)
		var f struct{ Properties struct{ State string } }
		if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
			return false, err.Error()
		}
		return f.Properties.State == "Registered", f.Properties.State
	})
	mustMeshaddon(t, "provider", "register", "--kubeconfig", kcfg)
	r := mustMeshaddon(t, "reconcile", "--kubeconfig", kcfg, "--timeout", "2m")
	if got := istiodEnv(t, kc); got != "true" {
		t.Fatalf("istiod has ENABLE_NATIVE_SIDECARS=%s after register, refresh and reconcile:\n%s", got, r.stdout)
	}
}

// oldNodeRoundTrip creates one v1.28.9 node and times it until istiod's
// Deployment shows ENABLE_NATIVE_SIDECARS=false, then deletes it and times
// it until the Deployment shows true again; then waits for istiod's rollout.
func oldNodeRoundTrip(t *testing.T, kc kubernetes.Interface, i int) (join, leave time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := startEnvWatch(t, ctx, kc)
	defer w.stop()
	if w.env != "true" {
		t.Fatalf("run %d: istiod starts with ENABLE_NATIVE_SIDECARS=%s, want true", i, w.env)
	}
	name := fmt.Sprintf("aks-oldbench-vmss%06d", i)

	t0 := time.Now()
	created, err := kc.CoreV1().Nodes().Create(ctx, benchNode("oldbench", name, oldVersion), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	if created.Status.NodeInfo.KubeletVersion != oldVersion {
		// The API server dropped the status on create: set it (kwok only
		// adds conditions), still within the measured time.
		if err := setKubeletVersion(ctx, kc, name, oldVersion); err != nil {
			t.Fatal(err)
		}
	}
	t1, err := w.until(ctx, "false")
	if err != nil {
		t.Fatalf("run %d: waiting for ENABLE_NATIVE_SIDECARS=false: %v", i, err)
	}

	t2 := time.Now()
	if err := kc.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete node %s: %v", name, err)
	}
	t3, err := w.until(ctx, "true")
	if err != nil {
		t.Fatalf("run %d: waiting for ENABLE_NATIVE_SIDECARS=true: %v", i, err)
	}
	waitRollout(t, kc, benchIstiod, 2*time.Minute)
	return t1.Sub(t0), t3.Sub(t2)
}

// setKubeletVersion sets the node's kubelet version through UpdateStatus.
func setKubeletVersion(ctx context.Context, kc kubernetes.Interface, name, version string) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.NodeInfo.KubeletVersion = version
		_, err = kc.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// envWatch follows istiod's Deployment from a known resource version.
type envWatch struct {
	kc  kubernetes.Interface
	rv  string
	env string // the value at rv
	w   watch.Interface
}

// startEnvWatch reads the Deployment and starts watching it from there.
func startEnvWatch(t *testing.T, ctx context.Context, kc kubernetes.Interface) *envWatch {
	t.Helper()
	d, err := kc.AppsV1().Deployments(istioNS).Get(ctx, benchIstiod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &envWatch{kc: kc, rv: d.ResourceVersion, env: istiod.NativeSidecars(d).String()}
	if err := e.watch(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *envWatch) watch(ctx context.Context) error {
	w, err := e.kc.AppsV1().Deployments(istioNS).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", benchIstiod).String(),
		ResourceVersion: e.rv,
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", benchIstiod, err)
	}
	e.w = w
	return nil
}

// until returns when the first event shows ENABLE_NATIVE_SIDECARS=want; a
// watch the server closes is resumed from the last version seen.
func (e *envWatch) until(ctx context.Context, want string) (time.Time, error) {
	for {
		for ev := range e.w.ResultChan() {
			if ev.Type == watch.Error {
				return time.Time{}, fmt.Errorf("watch %s: %v", benchIstiod, ev.Object)
			}
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok {
				continue
			}
			e.rv, e.env = d.ResourceVersion, istiod.NativeSidecars(d).String()
			if e.env == want {
				return time.Now(), nil
			}
		}
		if err := ctx.Err(); err != nil {
			return time.Time{}, fmt.Errorf("still %s: %w", e.env, err)
		}
		if err := e.watch(ctx); err != nil {
			return time.Time{}, err
		}
	}
}

func (e *envWatch) stop() { e.w.Stop() }

func istiodEnv(t *testing.T, kc kubernetes.Interface) string {
	t.Helper()
	d, err := kc.AppsV1().Deployments(istioNS).Get(context.Background(), benchIstiod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return istiod.NativeSidecars(d).String()
}

// waitRollout waits until the Deployment's rollout is complete: every
// replica updated and available (the runner restarted istiod and it is ready).
func waitRollout(t *testing.T, kc kubernetes.Interface, name string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "rollout of "+name, func(ctx context.Context) (bool, string) {
		d, err := kc.AppsV1().Deployments(istioNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		s := d.Status
		msg := fmt.Sprintf("generation %d/%d, %d updated, %d available, %d total of %d", s.ObservedGeneration, d.Generation, s.UpdatedReplicas, s.AvailableReplicas, s.Replicas, want)
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want, msg
	})
}
