package bench

// `meshaddon status` and `meshaddon precheck` at scale: one cluster with
// 5,000 nodes and 50,000 pods, half of them carrying a classic-injected
// spec. Side by side in the same run: the document's kubectl custom-columns
// command, `meshaddon status -A`, and the floor (bare paged LISTs of every
// pod, three namespaces at once as status lists them, and one sequential
// LIST for reference), each timed and its peak RSS read from the kernel; then `meshaddon
// precheck`.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testbed/cache"
	clusterpkg "github.com/meshaddon/meshaddon/internal/testbed/cluster"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

const (
	// statusSystemNodes is the size of the cluster's first pool; the
	// benchmark adds MESHADDON_BENCH_POOLS more of MESHADDON_BENCH_POOL_NODES.
	statusSystemNodes = 100
	// statusNamespaces are bench-0..bench-9; pod n lives in bench-(n%10).
	statusNamespaces = 10
	// statusApps is how many app=bench-N labels the pods share.
	statusApps = 50
	// statusWorkers create the pods in parallel.
	statusWorkers = 32
	// statusSample pods are compared cell by cell between kubectl and status.
	statusSample = 100
	pauseImage   = "registry.k8s.io/pause:3.10"
	// kubectlColumns is the document's verification command.
	kubectlColumns = "custom-columns=NAME:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name"
)

// TestStatusAndPrecheckAtScale measures status and precheck on
// statusSystemNodes + MESHADDON_BENCH_POOLS × MESHADDON_BENCH_POOL_NODES
// nodes (100 + 20 × 245 = 5,000 by default) and MESHADDON_BENCH_STATUS_PODS
// pods (default 50,000). Every command runs MESHADDON_BENCH_REPEAT times
// (default 3) after one untimed run whose output is checked; the medians are
// reported. The measurements run with kwok and the controller-manager paused
// (MESHADDON_BENCH_QUIET=0 keeps them running).
func TestStatusAndPrecheckAtScale(t *testing.T) {
	requireBench(t)
	pools := envInt(t, "MESHADDON_BENCH_POOLS", 20)
	perPool := envInt(t, "MESHADDON_BENCH_POOL_NODES", 245)
	pods := envInt(t, "MESHADDON_BENCH_STATUS_PODS", 50000)
	runs := envInt(t, "MESHADDON_BENCH_REPEAT", 3)
	totalNodes := statusSystemNodes + pools*perPool
	const name = "statusbench"
	tools := buildStatusTools(t)

	upArgs := []string{"--pool", fmt.Sprintf("system=%s:%d", currentVersion, statusSystemNodes), "--revision", "asm-1-27", "--manager=true"}
	took := upCluster(t, name, upArgs...)
	t.Logf("local up with %d nodes took %s", statusSystemNodes, took.Round(time.Millisecond))
	kubectl := cachedKubectl(t)
	cfg := restConfig(t, name)
	kc := kubeClient(t, cfg)

	fast := fastClient(t, cfg)
	reused := reuseKeptCluster(t, name, upArgs, kc, fast, pods, totalNodes)
	start := time.Now()
	if !reused {
		addPools(t, name, kc, pools, perPool)
		t.Logf("added %d pools of %d nodes in %s", pools, perPool, time.Since(start).Round(time.Second))
		nodes := nodeNames(t, kc, totalNodes)
		tmpl := injectedTemplate(t, kc)
		start = time.Now()
		createStatusPods(t, fast, tmpl, nodes, pods)
		t.Logf("created %d pods (%d classic-injected, %d plain) on %d nodes with %d workers in %s",
			pods, (pods+1)/2, pods/2, len(nodes), statusWorkers, time.Since(start).Round(100*time.Millisecond))
	}
	nodes := nodeNames(t, kc, totalNodes)
	if os.Getenv("MESHADDON_BENCH_SETUP_ONLY") == "1" {
		waitStatusPodsRunning(t, fast, pods)
		t.Skip("MESHADDON_BENCH_SETUP_ONLY: the cluster is set up; measure with a later run")
	}
	waitFor(t, 10*time.Minute, fmt.Sprintf("a paged LIST counts %d bench pods", pods), func(ctx context.Context) (bool, string) {
		n, _, err := countStatusPods(ctx, fast)
		if err != nil {
			return false, err.Error()
		}
		return n == pods, fmt.Sprintf("%d pods", n)
	})
	t.Logf("a paged LIST counts all %d pods %s after the first create", pods, time.Since(start).Round(100*time.Millisecond))
	// Let kwok bring the pods up before measuring: the objects then carry a
	// status as real ones do, and the API server is quiet again.
	waitStatusPodsRunning(t, fast, pods)

	// Measure on a quiet API server, as the reference figures were:
	// kwok (node heartbeats of 5,000 nodes, pod status) and the
	// controller-manager (which would mark the silent nodes NotReady and
	// evict) are paused; only the commands measured talk to the server.
	if os.Getenv("MESHADDON_BENCH_QUIET") != "0" {
		resume := pauseComponents(t, name, "kwok-controller", "kube-controller-manager")
		t.Cleanup(resume)
	}

	kcfg := kubeconfigOf(name)
	cacheDir := t.TempDir() // kubectl's discovery cache, warmed by the check run
	commands := []statusCommand{
		{key: "kubectl", bin: kubectl, args: []string{"get", "pod", "-A", "-o", kubectlColumns, "--kubeconfig", kcfg, "--cache-dir", cacheDir}},
		{key: "meshaddon", bin: meshaddonBin, args: []string{"status", "-A", "--kubeconfig", kcfg}},
		// The floor lists as status does (three namespaces at once); the
		// sequential one, one all-namespaces LIST, is shown for reference.
		{key: "floor", bin: tools.floor, args: []string{"--kubeconfig", kcfg}},
		{key: "floor-sequential", bin: tools.floor, args: []string{"--kubeconfig", kcfg, "--namespaces-at-once", "0"}},
	}

	t.Run("output matches kubectl", func(t *testing.T) {
		outs := map[string][]byte{}
		for _, c := range commands {
			var out bytes.Buffer
			s := runMeasured(t, tools.rusage, &out, c.bin, c.args...)
			if s.code != 0 {
				t.Fatalf("%s exited %d:\n%s", c.key, s.code, s.stderr)
			}
			t.Logf("check run: %s took %s, peak RSS %.1f MiB, %d bytes of output", c.key, s.wall.Round(time.Millisecond), mib(s.maxrss), out.Len())
			outs[c.key] = out.Bytes()
		}
		checkStatusOutput(t, outs["kubectl"], outs["meshaddon"], pods)
		for _, key := range []string{"floor", "floor-sequential"} {
			if got := strings.TrimSpace(string(outs[key])); !strings.HasSuffix(got, " pods") {
				t.Errorf("%s printed %q", key, got)
			} else {
				t.Logf("%s listed %s", key, got)
			}
		}
	})

	t.Run("wall time and peak RSS", func(t *testing.T) {
		walls := map[string][]time.Duration{}
		rss := map[string][]int64{}
		for i := 1; i <= runs; i++ {
			for _, c := range commands {
				s := runMeasured(t, tools.rusage, io.Discard, c.bin, c.args...)
				if s.code != 0 {
					t.Fatalf("run %d: %s exited %d:\n%s", i, c.key, s.code, s.stderr)
				}
				walls[c.key] = append(walls[c.key], s.wall)
				rss[c.key] = append(rss[c.key], s.maxrss)
				t.Logf("run %d: %-9s %8s  peak RSS %8.1f MiB", i, c.key, s.wall.Round(time.Millisecond), mib(s.maxrss))
			}
		}
		t.Logf("%d pods on %d nodes; medians of %d runs", pods, len(nodes), runs)
		wall := map[string]time.Duration{}
		peak := map[string]int64{}
		for _, c := range commands {
			wall[c.key], peak[c.key] = median(walls[c.key]), medianInt64(rss[c.key])
			reportDuration(t, "status."+c.key+".wall", wall[c.key], "s", noTarget)
			report(t, "status."+c.key+".maxrss", mib(peak[c.key]), "MiB", noTarget)
		}
		reportRatio(t, "status.speedup", "kubectl.wall / meshaddon.wall",
			float64(wall["kubectl"])/float64(wall["meshaddon"]), atLeast(10))
		reportRatio(t, "status.rss_ratio", "kubectl.maxrss / meshaddon.maxrss",
			float64(peak["kubectl"])/float64(peak["meshaddon"]), atLeast(20))
		reportRatio(t, "status.floor_ratio", "meshaddon.wall / floor.wall",
			float64(wall["meshaddon"])/float64(wall["floor"]), atMost(2))
	})

	// precheck counts pods from the add-on manager's census: one GET of the
	// MeshProfile. Side by side: precheck --list-pods, which lists them.
	t.Run("precheck", func(t *testing.T) {
		census := waitCensus(t, cfg, pods)
		t.Logf("the manager's census: %d pods, %d not injected, revisions %+v", census.Total, census.NotInjected, census.Revisions)
		m := managerMemory(t, name)
		report(t, "manager.census.vmrss", mib(m.RSS), "MiB", noTarget)
		report(t, "manager.census.vmhwm", mib(m.HWM), "MiB", noTarget)
		for _, c := range []struct {
			key    string
			args   []string
			target target
		}{
			{"precheck", nil, under(2, "< 2 s")},
			{"precheck_list_pods", []string{"--list-pods"}, noTarget},
		} {
			var walls []time.Duration
			for i := 1; i <= runs; i++ {
				var out bytes.Buffer
				s := runMeasured(t, tools.rusage, &out, meshaddonBin, append([]string{"precheck", "--kubeconfig", kcfg}, c.args...)...)
				// 1 is expected: the preview feature is not registered.
				if s.code != 0 && s.code != 1 {
					t.Fatalf("run %d: %s exited %d:\nstdout:\n%s\nstderr:\n%s", i, c.key, s.code, out.String(), s.stderr)
				}
				if i == 1 {
					t.Logf("%s exited %d: %s\n%s", c.key, s.code, lastLine(out.String()), podsLine(out.String()))
				}
				walls = append(walls, s.wall)
				t.Logf("run %d: %s %s  peak RSS %.1f MiB", i, c.key, s.wall.Round(time.Millisecond), mib(s.maxrss))
			}
			reportDuration(t, c.key+".wall", median(walls), "s", c.target)
		}
	})
}

// waitCensus waits until the manager's census counts at least want pods
// and returns it.
func waitCensus(t *testing.T, cfg *rest.Config, want int) *v1alpha1.PodCensus {
	t.Helper()
	cl, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	var got *v1alpha1.PodCensus
	waitFor(t, 5*time.Minute, fmt.Sprintf("the manager's census counts %d pods", want), func(ctx context.Context) (bool, string) {
		var p v1alpha1.MeshProfile
		if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
			return false, err.Error()
		}
		got = p.Status.Pods
		if got == nil {
			return false, "no census"
		}
		return int(got.Total) >= want, fmt.Sprintf("%d pods", got.Total)
	})
	return got
}

// podsLine is precheck's line with the pod counts.
func podsLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " injected, ") {
			return strings.TrimSpace(l)
		}
	}
	return "(no pod counts)"
}

// pauseComponents stops the named control-plane processes with SIGSTOP
// and returns the function that resumes them.
func pauseComponents(t *testing.T, cluster string, names ...string) func() {
	t.Helper()
	c, err := clusterpkg.Open(cluster)
	if err != nil {
		t.Fatal(err)
	}
	comps := c.Components()
	var paused []int
	for _, n := range names {
		pid, ok := comps[n]
		if !ok {
			t.Fatalf("no %s among the control plane's processes %v", n, comps)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("pause %s: %v", n, err)
		}
		paused = append(paused, pid)
	}
	t.Logf("paused %s for the measurements", strings.Join(names, " and "))
	time.Sleep(5 * time.Second) // let in-flight writes drain
	return func() {
		for _, pid := range paused {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
}

// --- tools ---

// statusTools are the benchmark's helper programs, built for this run.
type statusTools struct {
	floor  string // bench/floor: the bare paged LIST
	rusage string // bench/rusage: the launcher that reads a command's peak RSS
}

func buildStatusTools(t *testing.T) statusTools {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./floor", "./rusage")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build bench/floor and bench/rusage: %v\n%s", err, out)
	}
	return statusTools{floor: filepath.Join(dir, "floor"), rusage: filepath.Join(dir, "rusage")}
}

// cachedKubectl is the kubectl `meshaddon local kubectl` runs: the test
// bed's, in $MESHADDON_CACHE or ~/.cache/meshaddon (warm after local up).
func cachedKubectl(t *testing.T) string {
	t.Helper()
	c, err := cache.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := c.Ensure(context.Background(), cache.Kubernetes)
	if err != nil {
		t.Fatal(err)
	}
	path := bins.Path("kubectl")
	if path == "" {
		t.Fatalf("no kubectl in the cache %s", c.Dir)
	}
	return path
}

// statusCommand is one of the commands compared.
type statusCommand struct {
	key  string
	bin  string
	args []string
}

// measuredRun is one run of a command under bench/rusage.
type measuredRun struct {
	wall   time.Duration
	maxrss int64 // bytes
	code   int
	stderr string
}

// runMeasured runs bin under the rusage launcher, its stdout going to out (a
// pipe the test drains, unless out is an *os.File), and returns the
// command's own wall time, peak RSS (ru_maxrss) and exit code.
func runMeasured(t *testing.T, launcher string, out io.Writer, bin string, args ...string) measuredRun {
	t.Helper()
	stat, err := os.CreateTemp("", "meshaddon-bench-rusage-")
	if err != nil {
		t.Fatal(err)
	}
	stat.Close()
	defer os.Remove(stat.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, launcher, append([]string{stat.Name(), bin}, args...)...)
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("run %s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, errOut.String())
	}
	data, err := os.ReadFile(stat.Name())
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) != 3 {
		t.Fatalf("rusage wrote %q", data)
	}
	var n [3]int64
	for i, s := range f {
		if n[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("rusage wrote %q: %v", data, err)
		}
	}
	// ru_maxrss is in KiB on Linux.
	return measuredRun{wall: time.Duration(n[0]), maxrss: n[1] * 1024, code: int(n[2]), stderr: errOut.String()}
}

// --- the cluster's contents ---

// nodeNames waits until the cluster has want nodes and lists them once.
func nodeNames(t *testing.T, kc kubernetes.Interface, want int) []string {
	t.Helper()
	var names []string
	waitFor(t, 5*time.Minute, fmt.Sprintf("%d nodes", want), func(ctx context.Context) (bool, string) {
		list, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		names = names[:0]
		for _, n := range list.Items {
			names = append(names, n.Name)
		}
		return len(names) >= want, fmt.Sprintf("%d nodes", len(names))
	})
	slices.Sort(names)
	return names
}

// fastClient is a protobuf client whose rate limits stay out of the way of
// 32 parallel writers.
func fastClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c := kube.Protobuf(cfg)
	c.QPS, c.Burst = 2000, 4000
	return kubeClient(t, c)
}

// injectedTemplate asks istiod for one injected pod, by a server-side dry
// run in a namespace labelled istio.io/rev=asm-1-27, so that half the bench
// pods look injected without 25,000 webhook calls.
func injectedTemplate(t *testing.T, kc kubernetes.Interface) *corev1.Pod {
	t.Helper()
	const ns = "bench-inject"
	createNamespace(t, kc, ns, map[string]string{mesh.RevisionLabel: "asm-1-27"})
	var pod *corev1.Pod
	// The API server matches the webhook's namespaceSelector against its
	// namespace informer: retry until the dry run comes back injected.
	waitFor(t, time.Minute, ns+" injects", func(ctx context.Context) (bool, string) {
		got, err := kc.CoreV1().Pods(ns).Create(ctx, benchPod("template"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error()
		}
		pod = got
		_, injected := got.Annotations[sidecarStatus]
		return injected, fmt.Sprintf("injected %t", injected)
	})
	t.Logf("istiod injected the template %s: init [%s], containers [%s], %d annotations",
		inventory.ModeOf(&pod.Spec), containerNames(pod.Spec.InitContainers), containerNames(pod.Spec.Containers), len(pod.Annotations))
	return pod
}

func containerNames(cs []corev1.Container) string {
	n := make([]string, len(cs))
	for i, c := range cs {
		n[i] = c.Name
	}
	return strings.Join(n, ",")
}

func createNamespace(t *testing.T, kc kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := kc.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// statusPodName names pod n; names are unique over all namespaces, since
// kubectl's custom columns do not print the namespace.
func statusPodName(n int) string { return fmt.Sprintf("pod-%06d", n) }

// statusPod is pod n: even ones copy the injected template's spec,
// annotations and labels (classic-injected look), odd ones are plain. All
// are bound to a node, so the scheduler has nothing to do, and none lives in
// a namespace with the revision label, so no webhook runs.
func statusPod(n int, tmpl *corev1.Pod, nodes []string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name:      statusPodName(n),
		Namespace: fmt.Sprintf("bench-%d", n%statusNamespaces),
		Labels:    map[string]string{},
	}}
	if n%2 == 0 {
		p.Spec = *tmpl.Spec.DeepCopy()
		p.Annotations = maps.Clone(tmpl.Annotations)
		for k, v := range tmpl.Labels {
			// The revision label would make istiod's object webhook inject
			// the pod again.
			if k != mesh.RevisionLabel {
				p.Labels[k] = v
			}
		}
	} else {
		p.Spec = corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: pauseImage}}}
	}
	p.Labels["app"] = fmt.Sprintf("bench-%d", n%statusApps)
	p.Spec.NodeName = nodes[n%len(nodes)]
	return p
}

// createStatusPods creates the namespaces bench-0..9 and count pods in them
// from statusWorkers goroutines.
func createStatusPods(t *testing.T, kc kubernetes.Interface, tmpl *corev1.Pod, nodes []string, count int) {
	t.Helper()
	for i := 0; i < statusNamespaces; i++ {
		ns := fmt.Sprintf("bench-%d", i)
		createNamespace(t, kc, ns, nil)
		// The ServiceAccount admission plugin rejects pods until the
		// namespace's default ServiceAccount exists.
		waitFor(t, time.Minute, "the default ServiceAccount of "+ns, func(ctx context.Context) (bool, string) {
			_, err := kc.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, fmt.Sprint(err)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
		created  atomic.Int64
	)
	next := make(chan int)
	for w := 0; w < statusWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range next {
				if err := createPodRetrying(ctx, kc, statusPod(n, tmpl, nodes)); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					continue
				}
				created.Add(1)
			}
		}()
	}
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	start := time.Now()
feed:
	for n := 0; n < count; n++ {
		select {
		case next <- n:
		case <-progress.C:
			t.Logf("  %d of %d pods created after %s", created.Load(), count, time.Since(start).Round(time.Second))
			n-- // not sent: send it again
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("after %d of %d pods: %v", created.Load(), count, firstErr)
	}
}

// createPodRetrying creates the pod, retrying what a loaded API server may
// answer (throttling, timeouts); a pod that already exists was created by an
// earlier attempt whose answer was lost.
func createPodRetrying(ctx context.Context, kc kubernetes.Interface, p *corev1.Pod) error {
	var err error
	for attempt := 0; attempt < 6; attempt++ {
		_, err = kc.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 500 * time.Millisecond)
	}
	return fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
}

// countStatusPods counts the bench pods, and those Running, with a paged LIST.
func countStatusPods(ctx context.Context, kc kubernetes.Interface) (total, running int, err error) {
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := kc.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			return total, running, err
		}
		for i := range list.Items {
			p := &list.Items[i]
			if !strings.HasPrefix(p.Namespace, "bench-") || !strings.HasPrefix(p.Name, "pod-") {
				continue
			}
			total++
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if list.Continue == "" {
			return total, running, nil
		}
		opts.Continue = list.Continue
	}
}

// waitStatusPodsRunning waits until kwok runs every bench pod; when it stops
// making progress for two minutes (or after 20), it logs and goes on.
func waitStatusPodsRunning(t *testing.T, kc kubernetes.Interface, want int) {
	t.Helper()
	runningWait := 20 * time.Minute
	if v := os.Getenv("MESHADDON_BENCH_RUNNING_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MESHADDON_BENCH_RUNNING_WAIT=%q: %v", v, err)
		}
		runningWait = d
	}
	start, lastChange, last := time.Now(), time.Now(), -1
	for {
		_, running, err := countStatusPods(context.Background(), kc)
		if err == nil {
			if running >= want {
				t.Logf("all %d pods Running after %s more", want, time.Since(start).Round(100*time.Millisecond))
				return
			}
			if running != last {
				last, lastChange = running, time.Now()
			}
		}
		if time.Since(lastChange) > 2*time.Minute || time.Since(start) > runningWait {
			t.Logf("only %d of %d pods Running after %s; measuring anyway", last, want, time.Since(start).Round(time.Second))
			return
		}
		time.Sleep(5 * time.Second)
	}
}

// --- checking the output ---

// checkStatusOutput compares `meshaddon status -A` with kubectl's custom
// columns: the same rows, statusSample pods equal cell by cell, and the
// bench pods' modes and revisions as created.
func checkStatusOutput(t *testing.T, kubectlOut, statusOut []byte, pods int) {
	t.Helper()
	kubectlRows := tableRows(t, "kubectl", kubectlOut, []string{"NAME", "INIT", "CONTAINERS"})
	statusRows := tableRows(t, "meshaddon status", statusOut, []string{"NAMESPACE", "NAME", "INIT", "CONTAINERS", "MODE", "REVISION"})
	if len(statusRows) != len(kubectlRows) {
		t.Errorf("meshaddon status printed %d rows, kubectl %d", len(statusRows), len(kubectlRows))
	}
	byName := map[string][]string{}
	for _, r := range kubectlRows {
		byName[r[0]] = r
	}
	bench := map[string][]string{}
	for _, r := range statusRows {
		if strings.HasPrefix(r[0], "bench-") {
			bench[r[1]] = r
		}
	}
	if len(bench) != pods {
		t.Errorf("meshaddon status printed %d bench pods, want %d", len(bench), pods)
	}
	t.Logf("meshaddon status: %d data rows + header, %d of them bench pods; kubectl: %d data rows + header", len(statusRows), len(bench), len(kubectlRows))

	// The bench pods as created: even ones classic by asm-1-27, odd ones none.
	wrong := 0
	for n := 0; n < pods; n++ {
		r, ok := bench[statusPodName(n)]
		if !ok {
			continue
		}
		mode, rev := string(inventory.None), "<none>"
		if n%2 == 0 {
			mode, rev = string(inventory.Classic), "asm-1-27"
		}
		if r[4] != mode || r[5] != rev {
			if wrong < 5 {
				t.Errorf("%s: MODE %s REVISION %s, want %s %s", r[1], r[4], r[5], mode, rev)
			}
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("%d bench pods with the wrong MODE or REVISION", wrong)
	}

	// A sample spread over all pods, cell by cell.
	sample := min(statusSample, pods)
	matched := 0
	for i := 0; i < sample; i++ {
		name := statusPodName(i * pods / sample)
		want, ok := byName[name]
		if !ok {
			t.Errorf("kubectl did not print %s", name)
			continue
		}
		got, ok := bench[name]
		if !ok {
			t.Errorf("meshaddon status did not print %s", name)
			continue
		}
		if !slices.Equal(got[1:4], want) {
			t.Errorf("%s: meshaddon status NAME INIT CONTAINERS = %v, kubectl %v", name, got[1:4], want)
			continue
		}
		matched++
	}
	t.Logf("%d of %d sampled pods have the same NAME, INIT and CONTAINERS in both", matched, sample)
}

// tableRows splits a table by whitespace, checks its header and that every
// row has as many fields, and returns the data rows.
func tableRows(t *testing.T, what string, out []byte, header []string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 || !slices.Equal(strings.Fields(lines[0]), header) {
		t.Fatalf("%s: header %q, want %q", what, lines[0], strings.Join(header, " "))
	}
	rows := make([][]string, 0, len(lines)-1)
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != len(header) {
			t.Fatalf("%s: row %q has %d fields, want %d", what, l, len(f), len(header))
		}
		rows = append(rows, f)
	}
	return rows
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// --- reporting ratios ---

// ratioTarget bounds a ratio from below (atLeast) or above (atMost).
type ratioTarget struct {
	bound float64
	floor bool // the ratio should be at least bound
}

func atLeast(v float64) ratioTarget { return ratioTarget{bound: v, floor: true} }
func atMost(v float64) ratioTarget  { return ratioTarget{bound: v} }

// reportRatio prints and records a ratio as report does, with two decimals
// and a target that can be a minimum.
func reportRatio(t *testing.T, name, of string, value float64, tgt ratioTarget) {
	t.Helper()
	text := fmt.Sprintf("<= %g×", tgt.bound)
	met := value <= tgt.bound
	if tgt.floor {
		text = fmt.Sprintf(">= %g×", tgt.bound)
		met = value >= tgt.bound
	}
	verdict := "met"
	if !met {
		verdict = "MISSED"
	}
	val := strconv.FormatFloat(value, 'f', 2, 64) + " ×"
	t.Logf("RESULT %s=%s   (%s; target %s: %s)", name, val, of, text, verdict)
	if err := appendRow(name, val, text+" ("+verdict+")"); err != nil {
		t.Errorf("write %s: %v", resultsFile, err)
	}
}

// medianInt64 is median for byte counts.
func medianInt64(values []int64) int64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// reuseKeptCluster says whether a cluster kept by MESHADDON_BENCH_KEEP
// already has its nodes and bench pods; if so it restarts the manager from
// this build (the kept one may be an older build's).
func reuseKeptCluster(t *testing.T, name string, upArgs []string, kc, fast kubernetes.Interface, pods, totalNodes int) bool {
	t.Helper()
	if !keepClusters() {
		return false
	}
	n, _, err := countStatusPods(context.Background(), fast)
	list, lerr := kc.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil || lerr != nil || n != pods || len(list.Items) < totalNodes {
		return false
	}
	t.Logf("MESHADDON_BENCH_KEEP: reusing %s with its %d nodes and %d bench pods", name, len(list.Items), n)
	if pid := pidFile(name, "manager"); pid != 0 {
		if err := proc.StopGroup(pid, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	mustMeshaddon(t, append([]string{"local", "up", "--name", name}, upArgs...)...)
	return true
}
