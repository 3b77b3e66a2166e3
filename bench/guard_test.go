package bench

// Issue 16: the placement guard at scale. One cluster of 5,000 nodes with
// MeshProfile spec.oldNodes: Guard — the manager labelling every node and
// serving the placement webhook — measures the manager's memory, how fast
// 250 old nodes joining at once are all labelled false, and the webhook's
// latency at 200 pod creations per second (called as the API server calls
// it: this machine's test bed creates pods through the API server at only
// about a quarter of that rate, which is measured too).

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/precheck"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

// TestGuardScale measures the guard on MESHADDON_BENCH_POOLS ×
// MESHADDON_BENCH_POOL_NODES nodes (20 × 250 by default), then 250 old
// nodes (MESHADDON_BENCH_OLD_NODES) joining at once, then pods created at
// MESHADDON_BENCH_GUARD_RATE per second (200) for
// MESHADDON_BENCH_GUARD_SECONDS (20), through the API server and then
// straight to the webhook; MESHADDON_BENCH_GUARD_QUIET=1 pauses kwok and
// the controller-manager while the old nodes join and the pods are created
// through the API server (the direct calls always run so).
func TestGuardScale(t *testing.T) {
	requireBench(t)
	pools := envInt(t, "MESHADDON_BENCH_POOLS", 20)
	perPool := envInt(t, "MESHADDON_BENCH_POOL_NODES", 250)
	oldNodes := envInt(t, "MESHADDON_BENCH_OLD_NODES", 250)
	rate := envInt(t, "MESHADDON_BENCH_GUARD_RATE", 200)
	seconds := envInt(t, "MESHADDON_BENCH_GUARD_SECONDS", 20)
	total := pools * perPool
	const name = "guard"

	took := upCluster(t, name, "--pool", fmt.Sprintf("system=%s:%d", currentVersion, perPool), "--revision", "asm-1-27")
	t.Logf("local up with %d nodes took %s", perPool, took.Round(time.Millisecond))
	cfg := restConfig(t, name)
	kc := kubeClient(t, cfg)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl := clients.Client
	setOldNodes(t, cl, v1alpha1.OldNodesGuard)

	start := time.Now()
	addPools(t, name, kc, pools-1, perPool)
	t.Logf("added %d more pools of %d nodes in %s", pools-1, perPool, time.Since(start).Round(time.Second))
	synced := time.Now()
	waitProfileNodes(t, cl, total, 15*time.Minute)
	waitLabelled(t, kc, "true", total, 5*time.Minute)
	t.Logf("all %d nodes counted and labelled %s=true %s after the last pool was added",
		total, meshversion.SidecarContainersLabel, time.Since(synced).Round(100*time.Millisecond))

	t.Run("manager memory, guard on", func(t *testing.T) {
		m := managerMemory(t, name)
		report(t, fmt.Sprintf("guard.manager.vmrss.%d_nodes", total), mib(m.RSS), "MiB", under(100, "< 100 MiB"))
		report(t, fmt.Sprintf("guard.manager.vmhwm.%d_nodes", total), mib(m.HWM), "MiB", under(100, "< 100 MiB"))
	})

	makeNative(t, name, kc)
	waitGuardHealthy(t, cl)

	quiet := os.Getenv("MESHADDON_BENCH_GUARD_QUIET") == "1"
	t.Run(fmt.Sprintf("%d old nodes join at once: all labelled false", oldNodes), func(t *testing.T) {
		labelConvergence(t, name, kc, cl, oldNodes, quiet)
	})

	t.Run(fmt.Sprintf("pods created through the API server at up to %d per second", rate), func(t *testing.T) {
		webhookLatency(t, name, kc, rate, seconds, quiet)
	})

	t.Run(fmt.Sprintf("webhook latency at %d pod creations per second", rate), func(t *testing.T) {
		webhookDirectLatency(t, name, kc, rate, seconds)
	})

	t.Run(fmt.Sprintf("precheck with %d excluded nodes", oldNodes), func(t *testing.T) {
		// precheck's guard check alone, in this process, with the clients
		// the CLI uses (pods as metadata): the profile, every node, and the
		// excluded nodes' pods, one LIST each.
		md, err := metadata.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var guardChecks []precheck.Check
		for _, c := range precheck.Checks {
			if c.Name == "placement guard" {
				guardChecks = append(guardChecks, c)
			}
		}
		if len(guardChecks) != 1 {
			t.Fatalf("precheck has %d checks named \"placement guard\"", len(guardChecks))
		}
		e := &precheck.Env{Kube: kc, Metadata: md, Client: cl, MeshNamespace: istioNS, Policy: meshversion.DefaultPolicy}
		s := time.Now()
		rep := precheck.Run(context.Background(), e, guardChecks)
		took := time.Since(s)
		var lines []string
		for _, g := range rep.Groups {
			for _, c := range g.Checks {
				for _, r := range c.Results {
					lines = append(lines, string(r.Status)+": "+r.Message)
				}
			}
		}
		all := strings.Join(lines, "\n")
		t.Logf("precheck's guard check:\n%s", all)
		if !strings.Contains(all, fmt.Sprintf("no pod on the %d excluded node(s) is or would be native", oldNodes)) {
			t.Errorf("the guard check does not say that no guarded pod runs on the %d old nodes", oldNodes)
		}
		reportDuration(t, fmt.Sprintf("guard.precheck_guard_check.%d_excluded_nodes", oldNodes), took, "s", noTarget)
	})

	t.Run("manager memory at the end", func(t *testing.T) {
		m := managerMemory(t, name)
		report(t, fmt.Sprintf("guard.manager.vmhwm.%d_nodes.end", total), mib(m.HWM), "MiB", under(100, "< 100 MiB"))
	})
}

// setOldNodes sets the MeshProfile's spec.oldNodes with a merge patch.
func setOldNodes(t *testing.T, cl client.Client, value string) {
	t.Helper()
	p := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}}
	patch := []byte(fmt.Sprintf(`{"spec":{"oldNodes":%q}}`, value))
	if err := cl.Patch(context.Background(), p, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatalf("set oldNodes=%s: %v", value, err)
	}
}

// waitLabelled waits until want nodes carry the sidecar-containers label
// with value.
func waitLabelled(t *testing.T, kc kubernetes.Interface, value string, want int, timeout time.Duration) {
	t.Helper()
	sel := meshversion.SidecarContainersLabel + "=" + value
	waitFor(t, timeout, fmt.Sprintf("%d nodes labelled %s", want, sel), func(ctx context.Context) (bool, string) {
		list, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: "0"})
		if err != nil {
			return false, err.Error()
		}
		return len(list.Items) >= want, fmt.Sprintf("%d nodes labelled", len(list.Items))
	})
}

// waitGuardHealthy waits until the manager reports the guard healthy.
func waitGuardHealthy(t *testing.T, cl client.Client) {
	t.Helper()
	waitFor(t, time.Minute, "the placement guard healthy", func(ctx context.Context) (bool, string) {
		p, err := meshProfile(ctx, cl)
		if err != nil {
			return false, err.Error()
		}
		if p.Status.Guard == nil {
			return false, "no status.guard"
		}
		return p.Status.Guard.Healthy, p.Status.Guard.Message
	})
}

// labelConvergence creates count nodes with an old kubelet at once (64
// at a time, each as createNode does) and times, from the first creation,
// until a watch has seen every one of them labelled false — the target:
// it includes the creations, which the test bed cannot make instant — and
// from the last creation; then until status.guard counts them. The mesh
// must stay native meanwhile. quiet pauses kwok and the controller-manager
// meanwhile (5,000 nodes' heartbeats on the API server's 2 cores).
func labelConvergence(t *testing.T, name string, kc kubernetes.Interface, cl client.Client, count int, quiet bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const pool = "oldguard"
	sel := nodepool.PoolLabel + "=" + pool
	list, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) > 0 {
		t.Fatalf("%d nodes of pool %s exist already: use a fresh cluster", len(list.Items), pool)
	}
	w, err := kc.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	type seen struct {
		at  time.Time
		err error
		// labelled is when each node was first seen labelled false.
		labelled map[string]time.Time
	}
	done := make(chan seen, 1)
	go func() {
		labelled := map[string]time.Time{}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				done <- seen{err: apierrors.FromObject(ev.Object)}
				return
			}
			n, ok := ev.Object.(*corev1.Node)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			if _, was := labelled[n.Name]; !was && n.Labels[meshversion.SidecarContainersLabel] == "false" {
				labelled[n.Name] = time.Now()
			}
			if len(labelled) == count {
				done <- seen{at: time.Now(), labelled: labelled}
				return
			}
		}
		done <- seen{err: fmt.Errorf("the watch of nodes ended: %v", ctx.Err())}
	}()

	if quiet {
		defer pauseComponents(t, name, "kwok-controller", "kube-controller-manager")()
	}
	// Keeping when each node's creation started.
	var createdAt sync.Map
	t0 := time.Now()
	parallel(t, 64, count, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("aks-%s-vmss%06d", pool, i)
		createdAt.Store(name, time.Now())
		return createNode(ctx, kc, pool, name, oldVersion)
	})
	created := time.Since(t0)
	var s seen
	select {
	case s = <-done:
	case <-ctx.Done():
		t.Fatalf("not every one of %d old nodes was labelled false within 5 minutes", count)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Logf("%d nodes created (each with its kubelet version %s and Ready; kwok and the controller-manager paused: %t) in %s",
		count, oldVersion, quiet, created.Round(time.Millisecond))
	reportDuration(t, fmt.Sprintf("guard.label_convergence.%d_old_nodes", count), s.at.Sub(t0), "s", under(5, "< 5 s"))
	reportDuration(t, fmt.Sprintf("guard.label_convergence.%d_old_nodes.after_the_last_join", count), max(s.at.Sub(t0)-created, 0), "s", noTarget)
	reportDuration(t, fmt.Sprintf("guard.old_nodes_created.%d", count), created, "s", noTarget)
	// Each node's own wait: from its creation to its label.
	var lags []time.Duration
	for name, at := range s.labelled {
		if c, ok := createdAt.Load(name); ok {
			lags = append(lags, at.Sub(c.(time.Time)))
		}
	}
	sorted := sortedCopy(lags)
	reportDuration(t, fmt.Sprintf("guard.node_label_lag.%d_old_nodes.p50", count), percentile(sorted, 50), "s", noTarget)
	reportDuration(t, fmt.Sprintf("guard.node_label_lag.%d_old_nodes.max", count), sorted[len(sorted)-1], "s", noTarget)

	waitFor(t, time.Minute, "status.guard counts the old nodes", func(ctx context.Context) (bool, string) {
		p, err := meshProfile(ctx, cl)
		if err != nil || p.Status.Guard == nil {
			return false, fmt.Sprint(err)
		}
		return int(p.Status.Guard.ExcludedNodes) >= count, p.Status.Guard.Message
	})
	reportDuration(t, fmt.Sprintf("guard.status_excluded.%d_old_nodes", count), time.Since(t0), "s", noTarget)
	if got := istiodEnv(t, kc); got != "true" {
		t.Errorf("istiod has ENABLE_NATIVE_SIDECARS=%s after %d old nodes joined under the guard, want true", got, count)
	}
}

// webhookLatency creates pods in a mesh namespace at rate per second for
// seconds, open loop (each creation starts on its own schedule from a pool
// of workers, whatever the earlier ones take), quiet: with kwok and the
// controller-manager paused, and reports the placement
// webhook's own handling latency — controller-runtime's histogram of it,
// read from the manager's metrics before and after — and every Create's
// latency as the client sees it (the API server, istiod's injector and the
// guard).
func webhookLatency(t *testing.T, name string, kc kubernetes.Interface, rate, seconds int, quiet bool) {
	const namespace = "bench-guard"
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{mesh.RevisionLabel: "asm-1-27"}}}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// The API server matches namespaceSelectors against its namespace
	// informer: wait until a dry run is injected native and guarded.
	waitFor(t, time.Minute, namespace+" is injected native and guarded", func(ctx context.Context) (bool, string) {
		got, err := kc.CoreV1().Pods(namespace).Create(ctx, benchPod("warmup"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error()
		}
		return nativeAndGuarded(got), fmt.Sprintf("native and guarded: %t", nativeAndGuarded(got))
	})
	scrape := managerScraper(t, name, kc)
	if quiet {
		// As the status figures: no node heartbeats or pod status writes
		// from kwok's 5,000 nodes, and no controller-manager to notice
		// (the scheduler still binds every pod). After the namespace's
		// service account exists: the controller-manager makes it.
		defer pauseComponents(t, name, "kwok-controller", "kube-controller-manager")()
	}
	before := scrape(t)
	hooksBefore := webhookCallMetrics(t, kc)

	n := rate * seconds
	interval := time.Second / time.Duration(rate)
	latencies := make([]time.Duration, n)
	var unguarded atomic.Int64
	var firstErr error
	var once sync.Once
	elapsed, late := openLoop(rate, n, func(i int) {
		pod := benchPod(fmt.Sprintf("guard-%05d", i))
		s := time.Now()
		got, err := kc.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
		latencies[i] = time.Since(s)
		if err != nil {
			once.Do(func() { firstErr = err })
			return
		}
		if !nativeAndGuarded(got) {
			unguarded.Add(1)
		}
	})
	if firstErr != nil {
		t.Fatalf("create a pod: %v", firstErr)
	}
	if u := unguarded.Load(); u > 0 {
		t.Fatalf("%d of %d pods were not injected native with the guard's affinity: the measurement would be meaningless", u, n)
	}
	after := scrape(t)
	h := after.minus(before)
	t.Logf("%d pods in %s: %.1f creations/s achieved (%d started more than %s late); the webhook handled %d requests",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), late, interval, h.count)
	if h.count < uint64(n) {
		t.Errorf("the guard's webhook counted %d requests for %d pods created", h.count, n)
	}
	// Where a creation's time goes, as the API server saw each webhook
	// (its buckets are coarse: 5, 25, 100, 500 ms, ...).
	for hook, h := range webhookCallMetrics(t, kc) {
		d := h.minus(hooksBefore[hook])
		t.Logf("the API server's calls of webhook %s: %d, p50 ≈ %s, p99 ≈ %s (%s)", hook, d.count,
			d.quantile(0.5).Round(100*time.Microsecond), d.quantile(0.99).Round(100*time.Microsecond), d)
	}
	// This machine's test bed reaches well under rate (istiod's injection
	// and the API server share 2 cores): the target is measured by
	// webhookDirectLatency; these say what a whole creation costs.
	r := "through_apiserver"
	report(t, "guard."+r+".pods_per_s", float64(n)/elapsed.Seconds(), "pods/s", noTarget)
	reportDuration(t, "guard."+r+".webhook_handling.p50", h.quantile(0.50), "ms", noTarget)
	reportDuration(t, "guard."+r+".webhook_handling.p99", h.quantile(0.99), "ms", noTarget)
	sorted := sortedCopy(latencies)
	reportDuration(t, "guard."+r+".create_pod.p50", percentile(sorted, 50), "ms", noTarget)
	reportDuration(t, "guard."+r+".create_pod.p99", percentile(sorted, 99), "ms", noTarget)
	reportDuration(t, "guard."+r+".create_pod.max", sorted[len(sorted)-1], "ms", noTarget)
}

// nativeAndGuarded: istiod gave the pod a native istio-proxy and the guard
// its required node affinity.
func nativeAndGuarded(p *corev1.Pod) bool {
	native := slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool {
		return c.Name == "istio-proxy" && c.RestartPolicy != nil
	})
	a := p.Spec.Affinity
	if !native || a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, r := range term.MatchExpressions {
			if r.Key == meshversion.SidecarContainersLabel && slices.Equal(r.Values, []string{"true"}) {
				return true
			}
		}
	}
	return false
}

// --- the manager's metrics ---

// managerScraper returns a reader of the guard webhook's latency histogram
// from the manager's metrics server, which serves only tokens allowed
// /metrics: a service account bound to config/rbac's metrics-reader role.
func managerScraper(t *testing.T, name string, kc kubernetes.Interface) func(*testing.T) nativeHistogram {
	t.Helper()
	ctx := context.Background()
	addr := managerFlag(t, name, "--metrics-bind-address")
	const sa, nsName = "bench-scraper", "meshaddon-system"
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "meshaddon-metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
	if _, err := kc.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().ServiceAccounts(nsName).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: nsName}}}
	if _, err := kc.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr, err := kc.CoreV1().ServiceAccounts(nsName).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token
	// The manager's own self-signed certificate: what matters here is the
	// histogram, not who signed it.
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return func(t *testing.T) nativeHistogram {
		t.Helper()
		var h nativeHistogram
		var last string
		// The role binding reaches the authorizer's cache within a moment.
		waitFor(t, 30*time.Second, "a scrape of the manager's metrics", func(ctx context.Context) (bool, string) {
			var err error
			h, err = scrapeGuardLatency(ctx, hc, addr, token)
			if err != nil {
				last = err.Error()
				return false, last
			}
			return true, ""
		})
		return h
	}
}

// managerFlag reads a flag's value from the manager daemon's command line.
func managerFlag(t *testing.T, name, flag string) string {
	t.Helper()
	pid := pidFile(name, "manager")
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("manager pid %d: %v", pid, err)
	}
	args := strings.Split(string(raw), "\x00")
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	t.Fatalf("the manager (pid %d) runs without %s", pid, flag)
	return ""
}

// scrapeGuardLatency reads controller_runtime_webhook_latency_seconds for
// the guard's path in Prometheus's protobuf format, which carries the
// histogram's native (exponential, 1.09× wide) buckets: the text format
// has only the classic ones (5, 10, 25 ms, ...), too coarse for a 10 ms
// target.
func scrapeGuardLatency(ctx context.Context, hc *http.Client, addr, token string) (nativeHistogram, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		return nativeHistogram{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := hc.Do(req)
	if err != nil {
		return nativeHistogram{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nativeHistogram{}, fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			return nativeHistogram{}, fmt.Errorf("no controller_runtime_webhook_latency_seconds{webhook=%q} in the manager's metrics (%v)", manager.GuardPath, err)
		}
		if mf.GetName() != "controller_runtime_webhook_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == manager.GuardPath {
					return parseNative(m.GetHistogram())
				}
			}
		}
	}
}

// nativeHistogram is a native histogram's buckets by index (bucket i holds
// values in (base^(i-1), base^i], base = 2^(2^-schema)), plus the zero
// bucket.
type nativeHistogram struct {
	schema  int32
	zero    uint64
	buckets map[int32]uint64
	count   uint64
}

func parseNative(h *dto.Histogram) (nativeHistogram, error) {
	if h == nil || (len(h.GetPositiveSpan()) == 0 && h.GetZeroCount() == 0 && h.GetSampleCount() > 0) {
		return nativeHistogram{}, fmt.Errorf("the webhook latency histogram has no native buckets")
	}
	out := nativeHistogram{schema: h.GetSchema(), zero: h.GetZeroCount(), buckets: map[int32]uint64{}, count: h.GetSampleCount()}
	deltas := h.GetPositiveDelta()
	var idx int32
	var c int64
	k := 0
	for _, s := range h.GetPositiveSpan() {
		idx += s.GetOffset()
		for j := uint32(0); j < s.GetLength(); j++ {
			if k >= len(deltas) {
				return nativeHistogram{}, fmt.Errorf("native histogram: spans longer than deltas")
			}
			c += deltas[k]
			k++
			out.buckets[idx] = uint64(c)
			idx++
		}
	}
	return out, nil
}

func (h nativeHistogram) minus(o nativeHistogram) nativeHistogram {
	d := nativeHistogram{schema: h.schema, zero: h.zero - o.zero, buckets: map[int32]uint64{}, count: h.count - o.count}
	for i, c := range h.buckets {
		d.buckets[i] = c - o.buckets[i]
	}
	return d
}

// quantile is the upper bound of the bucket the q-quantile falls in: at
// most 9% above the true value.
func (h nativeHistogram) quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	seen := h.zero
	if seen >= rank {
		return 0
	}
	base := math.Pow(2, math.Pow(2, -float64(h.schema)))
	idx := make([]int32, 0, len(h.buckets))
	for i := range h.buckets {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		seen += h.buckets[i]
		if seen >= rank {
			return time.Duration(math.Pow(base, float64(i)) * float64(time.Second))
		}
	}
	return time.Duration(math.Pow(base, float64(idx[len(idx)-1])) * float64(time.Second))
}

var webhookLine = regexp.MustCompile(`^apiserver_admission_webhook_admission_duration_seconds_(bucket|count)\{([^}]*)\} (\S+)$`)

// webhookCallMetrics reads the API server's histograms of its calls of
// each admission webhook on creations (of pods, here), by webhook name.
func webhookCallMetrics(t *testing.T, kc kubernetes.Interface) map[string]histogram {
	t.Helper()
	raw, err := kc.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("read the API server's metrics: %v", err)
	}
	out := map[string]histogram{}
	nameLabel := regexp.MustCompile(`(?:^|,)name="([^"]+)"`)
	for _, line := range strings.Split(string(raw), "\n") {
		m := webhookLine.FindStringSubmatch(line)
		if m == nil || !strings.Contains(m[2], `operation="CREATE"`) {
			continue
		}
		nm := nameLabel.FindStringSubmatch(m[2])
		if nm == nil {
			continue
		}
		h, ok := out[nm[1]]
		if !ok {
			h = histogram{buckets: map[float64]float64{}}
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		if m[1] == "count" {
			h.count += int(v)
		} else if le := leLabel.FindStringSubmatch(m[2]); le != nil {
			bound, err := strconv.ParseFloat(le[1], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			h.buckets[bound] += v
		}
		out[nm[1]] = h
	}
	return out
}

// webhookDirectLatency sends the guard's webhook what the API server sends
// it for pods created at rate per second — two AdmissionReviews per pod, the
// call after istiod's injection (the guard adds its affinity) and the
// reinvocation (already guarded: no patch) — open loop for seconds, over
// HTTPS to the URL and CA of its MutatingWebhookConfiguration with kept-alive
// connections, as the API server's webhook client does. The pods are one
// real pod injected by istiod and guarded, from a dry run, renamed per
// request. Reported: each call's round trip as this client sees it (the
// webhook's latency at that load, without the API server's own queueing on
// this 2-core machine, which the through-the-API-server figures above
// carry), and the webhook's own histogram.
func webhookDirectLatency(t *testing.T, name string, kc kubernetes.Interface, rate, seconds int) {
	const namespace = "bench-guard"
	ctx := context.Background()
	cfg, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, manager.GuardConfiguration, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Webhooks) != 1 || cfg.Webhooks[0].ClientConfig.URL == nil {
		t.Fatalf("%s: want one webhook with a URL (the test bed's loopback), got %+v", cfg.Name, cfg.Webhooks)
	}
	url := *cfg.Webhooks[0].ClientConfig.URL
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle) {
		t.Fatalf("%s: no certificate in its caBundle", cfg.Name)
	}
	guarded, err := kc.CoreV1().Pods(namespace).Create(ctx, benchPod("direct"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if !nativeAndGuarded(guarded) {
		t.Fatalf("a dry run in %s is not native and guarded", namespace)
	}
	injected := guarded.DeepCopy()
	injected.Spec.Affinity = nil // benchPod has none of its own
	review := func(i int, p *corev1.Pod) []byte {
		p = p.DeepCopy()
		p.Name = fmt.Sprintf("direct-%06d", i)
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:       types.UID(fmt.Sprintf("bench-%06d-%d", i, len(p.Spec.InitContainers))),
				Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace: namespace, Name: p.Name, Operation: admissionv1.Create,
				UserInfo: authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller"},
				Object:   runtime.RawExtension{Raw: raw},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: false}}
	// call sends one review and checks the answer: allowed, with a patch
	// exactly when the pod was not guarded yet.
	call := func(body []byte, wantPatch bool) (time.Duration, error) {
		s := time.Now()
		resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(s)
		if err != nil {
			return 0, err
		}
		var r admissionv1.AdmissionReview
		if err := json.Unmarshal(out, &r); err != nil || r.Response == nil {
			return 0, fmt.Errorf("%s: %s: not an AdmissionReview answer: %v", url, resp.Status, err)
		}
		if !r.Response.Allowed {
			return 0, fmt.Errorf("the guard refused a pod: %+v", r.Response.Result)
		}
		if got := len(r.Response.Patch) > 0; got != wantPatch {
			return 0, fmt.Errorf("the guard answered with a patch: %t, want %t (%s)", got, wantPatch, r.Response.Patch)
		}
		return took, nil
	}
	// Warm the connections and the server, as a running API server has them.
	for i := 0; i < 64; i++ {
		if _, err := call(review(i, injected), true); err != nil {
			t.Fatal(err)
		}
	}
	scrape := managerScraper(t, name, kc)
	defer pauseComponents(t, name, "kwok-controller", "kube-controller-manager")()
	n := rate * seconds
	bodies := make([][2][]byte, n)
	for i := range bodies {
		bodies[i] = [2][]byte{review(i, injected), review(i, guarded)}
	}
	before := scrape(t)
	latencies := make([]time.Duration, 0, 2*n)
	var mu sync.Mutex
	var firstErr error
	elapsed, late := openLoop(rate, n, func(i int) {
		a, errA := call(bodies[i][0], true)
		b, errB := call(bodies[i][1], false)
		mu.Lock()
		defer mu.Unlock()
		if err := cmp.Or(errA, errB); err != nil && firstErr == nil {
			firstErr = err
		}
		latencies = append(latencies, a, b)
	})
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	h := scrape(t).minus(before)
	t.Logf("%d pods (%d webhook calls) in %s: %.1f pods/s achieved (%d started more than %s late); the webhook counted %d calls",
		n, 2*n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), late, time.Second/time.Duration(rate), h.count)
	if h.count < uint64(2*n) {
		t.Errorf("the guard's webhook counted %d calls, %d were sent", h.count, 2*n)
	}
	r := fmt.Sprintf("%d_pods_per_s", rate)
	sorted := sortedCopy(latencies)
	reportDuration(t, "guard.webhook_latency."+r+".p50", percentile(sorted, 50), "ms", noTarget)
	reportDuration(t, "guard.webhook_latency."+r+".p99", percentile(sorted, 99), "ms", under(10, "< 10 ms"))
	reportDuration(t, "guard.webhook_latency."+r+".max", sorted[len(sorted)-1], "ms", noTarget)
	reportDuration(t, "guard.webhook_handling."+r+".p50", h.quantile(0.50), "ms", noTarget)
	reportDuration(t, "guard.webhook_handling."+r+".p99", h.quantile(0.99), "ms", noTarget)
}

// openLoop calls fn(i) for i in [0, n), each started on its own schedule at
// rate per second by one of 64 workers, whatever the earlier calls take
// (open loop: a slow answer does not slow the arrivals, as pods created by
// many controllers at once). It returns how long it took and how many calls
// started more than one interval late (every worker busy).
func openLoop(rate, n int, fn func(i int)) (time.Duration, int64) {
	interval := time.Second / time.Duration(rate)
	jobs := make(chan int, n)
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				fn(i)
			}
		}()
	}
	var late int64
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if d < -interval {
			late++
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return time.Since(start), late
}
