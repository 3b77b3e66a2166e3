package bench

// Issue 6: `meshaddon migrate` against the naive loop the document implies,
// side by side on one test-bed cluster whose pods take 2 s to start.
//
//	for d in $(kubectl -n NS get deploy -o name); do
//	  kubectl -n NS rollout restart $d && kubectl -n NS rollout status $d
//	done
//
// Targets: at least 5× faster end to end than the loop, and within 1.3× of
// the ideal for the chosen concurrency, ceil(N / C) × one Deployment's
// rollout alone.
//
// Knobs (environment variables):
//
//	MESHADDON_BENCH_MIGRATE_DEPLOYMENTS=N   Deployments (× 2 replicas) per namespace (default 500)
//	MESHADDON_BENCH_MIGRATE_CONCURRENCY=C   migrate --concurrency (default 50)
//	MESHADDON_BENCH_LOOP_SAMPLE=S           Deployments the naive loop really restarts (default 50);
//	                                        its time is extrapolated linearly to N

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/rollout"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
)

const (
	migrateCluster  = "migratebench"
	migrateRevision = "asm-1-27"
	// loopNS is restarted by the naive loop, migrateNS by meshaddon migrate,
	// singleNS's few Deployments one at a time for the ideal.
	loopNS    = "loop"
	migrateNS = "migrate"
	singleNS  = "single"
	// singleRuns Deployments of singleNS are restarted alone, one after another.
	singleRuns      = 5
	migrateReplicas = 2
	// migrateWorkers create the Deployments in parallel.
	migrateWorkers = 32
	podStartDelay  = "2s"
)

// TestMigrateVersusLoop measures, on one cluster, the naive kubectl loop
// over a sample of MESHADDON_BENCH_LOOP_SAMPLE Deployments (extrapolated to
// N), `meshaddon migrate --concurrency C` over all N, and one Deployment's
// rollout alone, from which the ideal ceil(N / C) × single is computed.
func TestMigrateVersusLoop(t *testing.T) {
	requireBench(t)
	n := envInt(t, "MESHADDON_BENCH_MIGRATE_DEPLOYMENTS", 500)
	conc := envInt(t, "MESHADDON_BENCH_MIGRATE_CONCURRENCY", 50)
	sample := min(envInt(t, "MESHADDON_BENCH_LOOP_SAMPLE", 50), n)

	took := upCluster(t, migrateCluster, "--pool", "system="+currentVersion+":20", "--revision", migrateRevision, "--pod-start-delay", podStartDelay)
	t.Logf("local up (20 nodes, revision %s, pod start delay %s) took %s", migrateRevision, podStartDelay, took.Round(time.Millisecond))
	kubectl := cachedKubectl(t)
	kcfg := kubeconfigOf(migrateCluster)
	cfg := restConfig(t, migrateCluster)
	kc := fastClient(t, cfg)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// Everything is created while istiod injects classic: the preview
	// feature is not registered, so the manager's Auto keeps it off.
	start := time.Now()
	counts := map[string]int{loopNS: n, migrateNS: n, singleNS: singleRuns}
	for _, ns := range []string{loopNS, migrateNS, singleNS} {
		createNamespace(t, kc, ns, map[string]string{mesh.RevisionLabel: migrateRevision})
	}
	createDeployments(t, kc, counts)
	t.Logf("created %d + %d + %d Deployments × %d replicas with %d workers in %s",
		n, n, singleRuns, migrateReplicas, migrateWorkers, time.Since(start).Round(100*time.Millisecond))
	for _, ns := range []string{loopNS, migrateNS, singleNS} {
		waitDeploymentsRolledOut(t, kc, ns, counts[ns], 20*time.Minute)
	}
	t.Logf("all %d Deployments available %s after the first create", 2*n+singleRuns, time.Since(start).Round(100*time.Millisecond))
	for _, ns := range []string{loopNS, migrateNS, singleNS} {
		if m := livePodModes(t, kc, ns); m[inventory.Classic] != counts[ns]*migrateReplicas || m[inventory.Native] != 0 {
			t.Fatalf("%s before the switch: %v, want %d classic pods", ns, m, counts[ns]*migrateReplicas)
		}
	}

	// Switch istiod to native.
	start = time.Now()
	setMode(t, clients.Client, "Enabled")
	waitFor(t, 3*time.Minute, "istiod injects native in "+migrateNS, func(ctx context.Context) (bool, string) {
		p := benchPod("probe")
		got, err := kc.CoreV1().Pods(migrateNS).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error()
		}
		return inventory.ModeOf(&got.Spec) == inventory.Native, "init containers [" + containerNames(got.Spec.InitContainers) + "]"
	})
	t.Logf("nativeSidecarMode=Enabled → istiod injects native after %s", time.Since(start).Round(100*time.Millisecond))

	// (c) One rollout alone, for the ideal.
	var singles []time.Duration
	for i := 0; i < singleRuns; i++ {
		d := timeSingleRollout(t, kc, singleNS, deploymentName(i))
		singles = append(singles, d)
		t.Logf("single rollout %d: %s", i+1, d.Round(time.Millisecond))
	}
	single := median(singles)
	waves := (n + conc - 1) / conc
	ideal := time.Duration(waves) * single
	if m := livePodModes(t, kc, singleNS); m[inventory.Native] != singleRuns*migrateReplicas {
		t.Errorf("%s after the single rollouts: %v, want %d native pods", singleNS, m, singleRuns*migrateReplicas)
	}

	// (a) The naive loop over a sample.
	cacheDir := t.TempDir() // kubectl's discovery cache, warmed before timing
	kubectlRun := func(args ...string) {
		t.Helper()
		args = append([]string{"--kubeconfig", kcfg, "--cache-dir", cacheDir}, args...)
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, kubectl, args...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	kubectlRun("-n", loopNS, "get", "deployment", deploymentName(0))
	var perLoop []time.Duration
	start = time.Now()
	for i := 0; i < sample; i++ {
		one := time.Now()
		d := "deployment/" + deploymentName(i)
		kubectlRun("-n", loopNS, "rollout", "restart", d)
		kubectlRun("-n", loopNS, "rollout", "status", d, "--timeout=5m")
		perLoop = append(perLoop, time.Since(one))
	}
	loopWall := time.Since(start)
	perDeployment := loopWall / time.Duration(sample)
	loopTotal := perDeployment * time.Duration(n)
	sorted := sortedCopy(perLoop)
	t.Logf("naive loop: %d of %d Deployments in %s; per Deployment p50 %s, max %s",
		sample, n, loopWall.Round(time.Millisecond), percentile(sorted, 50).Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
	if m := livePodModes(t, kc, loopNS); m[inventory.Native] != sample*migrateReplicas {
		t.Errorf("%s after the loop: %v, want %d native pods", loopNS, m, sample*migrateReplicas)
	}

	// (b) meshaddon migrate over all N.
	before := deploymentGenerations(t, kc, migrateNS)
	r := mustMeshaddon(t, "migrate", "-n", migrateNS, "--concurrency", strconv.Itoa(conc), "--skip-precheck", "--kubeconfig", kcfg)
	migrateWall := r.took
	durations, outcomes := migrateTable(t, r.stdout)
	t.Logf("meshaddon migrate: %d Deployments at concurrency %d in %s; outcomes %v", n, conc, migrateWall.Round(time.Millisecond), outcomes)
	if len(durations) > 0 {
		s := sortedCopy(durations)
		t.Logf("per-workload durations under migrate: p50 %s, p95 %s, max %s (single alone: %s)",
			percentile(s, 50), percentile(s, 95), s[len(s)-1], single.Round(time.Millisecond))
	}
	if outcomes["migrated"] != n {
		t.Errorf("migrate reported %d migrated, want %d:\n%s", outcomes["migrated"], n, lastLines(r.stdout, 10))
	}
	after := deploymentGenerations(t, kc, migrateNS)
	wrong := 0
	for name, g := range before {
		if after[name] != g+1 {
			if wrong < 5 {
				t.Errorf("%s/%s: generation %d → %d, want exactly one restart", migrateNS, name, g, after[name])
			}
			wrong++
		}
	}
	if wrong > 0 || len(before) != n {
		t.Errorf("%d of %d Deployments not restarted exactly once", wrong, len(before))
	}
	if m := livePodModes(t, kc, migrateNS); m[inventory.Native] != n*migrateReplicas || len(m) != 1 {
		t.Errorf("%s after migrate: %v, want all %d pods native (istio-proxy an init container with restartPolicy Always)", migrateNS, m, n*migrateReplicas)
	} else {
		t.Logf("all %d pods of %s native after migrate", n*migrateReplicas, migrateNS)
	}

	t.Logf("N=%d Deployments × %d replicas, concurrency %d (%d waves), loop sample %d, pod start delay %s",
		n, migrateReplicas, conc, waves, sample, podStartDelay)
	reportDuration(t, "migrate.loop.sample_wall", loopWall, "s", target{text: fmt.Sprintf("— (measured, %d Deployments)", sample)})
	reportDuration(t, "migrate.loop.per_deployment", perDeployment, "s", noTarget)
	extrapolated := "— (extrapolated: per_deployment × N)"
	if sample == n {
		extrapolated = "— (measured: the sample is all N)"
	}
	reportDuration(t, "migrate.loop.extrapolated_wall", loopTotal, "s", target{text: extrapolated})
	reportDuration(t, "migrate.meshaddon.wall", migrateWall, "s", noTarget)
	reportDuration(t, "migrate.single_rollout", single, "s", target{text: fmt.Sprintf("— (median of %d)", singleRuns)})
	reportDuration(t, "migrate.ideal", ideal, "s", target{text: fmt.Sprintf("— (ceil(%d/%d) × single)", n, conc)})
	reportRatio(t, "migrate.speedup", "loop.extrapolated_wall / meshaddon.wall", float64(loopTotal)/float64(migrateWall), atLeast(5))
	reportRatio(t, "migrate.ideal_ratio", "meshaddon.wall / ideal", float64(migrateWall)/float64(ideal), atMost(1.3))
}

func deploymentName(i int) string { return fmt.Sprintf("app-%04d", i) }

// migrateDeployment is a Deployment of migrateReplicas pause pods with the
// default rolling update (25% surge, 25% unavailable: one pod at a time).
func migrateDeployment(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](migrateReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: pauseImage}}},
			},
		},
	}
}

// createDeployments creates counts[ns] Deployments in each namespace from
// migrateWorkers goroutines, retrying what a loaded API server may answer.
func createDeployments(t *testing.T, kc kubernetes.Interface, counts map[string]int) {
	t.Helper()
	type job struct {
		ns string
		i  int
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
		created  atomic.Int64
	)
	jobs := make(chan job)
	for w := 0; w < migrateWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				d := migrateDeployment(j.ns, deploymentName(j.i))
				var err error
				for attempt := 0; attempt < 6; attempt++ {
					_, err = kc.AppsV1().Deployments(j.ns).Create(ctx, d, metav1.CreateOptions{})
					if err == nil || apierrors.IsAlreadyExists(err) || ctx.Err() != nil {
						break
					}
					time.Sleep(time.Duration(attempt+1) * 500 * time.Millisecond)
				}
				if err != nil && !apierrors.IsAlreadyExists(err) {
					once.Do(func() { firstErr = fmt.Errorf("create deployment %s/%s: %w", j.ns, d.Name, err); cancel() })
					continue
				}
				created.Add(1)
			}
		}()
	}
feed:
	for _, ns := range slices.Sorted(maps.Keys(counts)) {
		for i := 0; i < counts[ns]; i++ {
			select {
			case jobs <- job{ns, i}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("after %d Deployments: %v", created.Load(), firstErr)
	}
}

// waitDeploymentsRolledOut waits until want Deployments of ns are rolled
// out as kubectl rollout status judges it.
func waitDeploymentsRolledOut(t *testing.T, kc kubernetes.Interface, ns string, want int, timeout time.Duration) {
	t.Helper()
	start, lastLog := time.Now(), time.Now()
	waitFor(t, timeout, fmt.Sprintf("%d Deployments of %s rolled out", want, ns), func(ctx context.Context) (bool, string) {
		list, err := kc.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		done, pending := 0, ""
		for i := range list.Items {
			msg, ok, err := rollout.Status(&list.Items[i])
			if err != nil {
				return false, fmt.Sprintf("%s: %v", list.Items[i].Name, err)
			}
			if ok {
				done++
			} else if pending == "" {
				pending = list.Items[i].Name + ": " + msg
			}
		}
		msg := fmt.Sprintf("%d of %d rolled out (%s)", done, want, pending)
		if time.Since(lastLog) > 30*time.Second {
			t.Logf("  %s: %s after %s", ns, msg, time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
		return len(list.Items) == want && done == want, msg
	})
}

// livePodModes counts the pods of ns that are not being deleted, by mode.
func livePodModes(t *testing.T, kc kubernetes.Interface, ns string) map[inventory.Mode]int {
	t.Helper()
	list, err := kc.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[inventory.Mode]int{}
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			out[inventory.ModeOf(&list.Items[i].Spec)]++
		}
	}
	return out
}

// timeSingleRollout restarts one Deployment as kubectl rollout restart does
// (the restartedAt annotation of its template) and times it until kubectl
// rollout status would say it is done, following it on a watch opened
// before the patch.
func timeSingleRollout(t *testing.T, kc kubernetes.Interface, ns, name string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	deps := kc.AppsV1().Deployments(ns)
	d, err := deps.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := deps.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: d.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	start := time.Now()
	got, err := deps.Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			t.Fatalf("watch %s/%s: %v", ns, name, apierrors.FromObject(ev.Object))
		}
		dep, ok := ev.Object.(*appsv1.Deployment)
		if !ok || dep.Generation < got.Generation {
			continue
		}
		msg, done, err := rollout.Status(dep)
		if err != nil {
			t.Fatalf("%s/%s: %v", ns, name, err)
		}
		if done {
			return time.Since(start)
		}
		last = msg
	}
	t.Fatalf("%s/%s: the watch ended before the rollout was done (%s): %v", ns, name, last, ctx.Err())
	return 0
}

// deploymentGenerations maps each Deployment of ns to its metadata.generation.
func deploymentGenerations(t *testing.T, kc kubernetes.Interface, ns string) map[string]int64 {
	t.Helper()
	list, err := kc.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64, len(list.Items))
	for _, d := range list.Items {
		out[d.Name] = d.Generation
	}
	return out
}

// migrateTable reads migrate's final table (NAMESPACE KIND NAME RESULT
// DURATION MESSAGE): the durations of the migrated workloads and how many
// ended with each result.
func migrateTable(t *testing.T, stdout string) ([]time.Duration, map[string]int) {
	t.Helper()
	var durations []time.Duration
	outcomes := map[string]int{}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) == 0 || !strings.HasPrefix(strings.TrimSpace(lines[0]), "NAMESPACE") {
		t.Errorf("migrate printed no table:\n%s", lastLines(stdout, 10))
		return nil, outcomes
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		outcomes[f[3]]++
		if f[3] == "migrated" {
			if d, err := time.ParseDuration(f[4]); err == nil {
				durations = append(durations, d)
			}
		}
	}
	return durations, outcomes
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
