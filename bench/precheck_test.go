package bench

// `meshaddon precheck` with the admission proof at scale (issue 13's
// performance target): 1,000 mesh namespaces in 10 label classes that real
// webhooks tell apart, 5,000 nodes, 50,000 pods in Deployments. precheck
// dry-runs one probe pod per group of namespaces that every webhook treats
// alike, a sample per distinct pod template a webhook's objectSelector
// picks, and one pod per distinct workload template for the resource check;
// the benchmark measures the whole command as a user runs it, counts its
// dry-run requests on the API server (apiserver_request_duration_seconds,
// dry_run="All") and reads their latency from the same histogram.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/precheck"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
)

const (
	// admissionClasses: namespace n is in class n % admissionClasses.
	admissionClasses = 10
	// admissionPolicies webhooks tell the classes apart: class c has the
	// label of policy k when bit k of c+1 is set (10 distinct sets).
	admissionPolicies = 4
	classLabel        = "bench.meshaddon.dev/class"
	policyLabelPrefix = "bench.meshaddon.dev/policy-"
	// tierLabel on a pod template is what the last policy's webhook also
	// selects on (objectSelector): the proof samples such templates.
	tierLabel = "bench.meshaddon.dev/tier"
	// admissionApps distinct pod specs (images) the Deployments share.
	admissionApps = 50
)

// TestPrecheckAdmissionAtScale measures precheck with the admission proof
// on MESHADDON_BENCH_MESH_NAMESPACES mesh namespaces (default 1,000),
// 100 + MESHADDON_BENCH_POOLS × MESHADDON_BENCH_POOL_NODES nodes (5,000) and
// MESHADDON_BENCH_DEPLOYMENTS (5 per namespace) Deployments ×
// MESHADDON_BENCH_REPLICAS (10) pods: 50,000. The pods are created directly
// (bound to nodes, owned by a ReplicaSet of their Deployment, carrying a
// classic injection copied from istiod's answer) with the controller-manager
// paused, so no controller races the setup; the Deployments are paused so
// that none rolls when it resumes. Measured with kwok and the
// controller-manager paused, as the status benchmark is.
func TestPrecheckAdmissionAtScale(t *testing.T) {
	requireBench(t)
	pools := envInt(t, "MESHADDON_BENCH_POOLS", 20)
	perPool := envInt(t, "MESHADDON_BENCH_POOL_NODES", 245)
	nss := envInt(t, "MESHADDON_BENCH_MESH_NAMESPACES", 1000)
	deps := envInt(t, "MESHADDON_BENCH_DEPLOYMENTS", 5*nss)
	replicas := envInt(t, "MESHADDON_BENCH_REPLICAS", 10)
	runs := envInt(t, "MESHADDON_BENCH_REPEAT", 5)
	pods := deps * replicas
	totalNodes := statusSystemNodes + pools*perPool
	const name = "precheckbench"
	tools := buildStatusTools(t)

	upArgs := []string{"--pool", fmt.Sprintf("system=%s:%d", currentVersion, statusSystemNodes), "--revision", "asm-1-27", "--manager=true"}
	took := upCluster(t, name, upArgs...)
	t.Logf("local up with %d nodes took %s", statusSystemNodes, took.Round(time.Millisecond))
	cfg := restConfig(t, name)
	kc := kubeClient(t, cfg)
	fast := fastClient(t, cfg)

	reused := reuseKeptCluster(t, name, upArgs, kc, fast, pods, totalNodes)
	if !reused {
		// A kept cluster whose setup stopped half-way is set up again:
		// every step below takes what is already there.
		start := time.Now()
		if list, err := kc.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err == nil && len(list.Items) >= totalNodes {
			t.Logf("the kept cluster has its %d nodes already", len(list.Items))
		} else {
			addPools(t, name, kc, pools, perPool)
			t.Logf("added %d pools of %d nodes in %s", pools, perPool, time.Since(start).Round(time.Second))
		}
		nodes := nodeNames(t, kc, totalNodes)
		revLabel := func(value string) {
			patch := []byte(`{"metadata":{"labels":{"` + mesh.RevisionLabel + `":` + value + `}}}`)
			_, err := kc.CoreV1().Namespaces().Patch(context.Background(), "bench-inject", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		revLabel(`"asm-1-27"`)
		tmpl := injectedTemplate(t, kc)
		// The template's namespace is not a mesh namespace of the benchmark.
		revLabel("null")
		start = time.Now()
		createMeshNamespaces(t, kc, nss)
		t.Logf("created %d namespaces in %d classes and their ServiceAccounts in %s", nss, admissionClasses, time.Since(start).Round(100*time.Millisecond))
		// No controller may act on the workloads while they are built:
		// the ReplicaSet controller would create the pods itself.
		t.Cleanup(pauseComponents(t, name, "kube-controller-manager"))
		start = time.Now()
		createMeshWorkloads(t, fast, tmpl, nodes, nss, deps, replicas)
		t.Logf("created %d Deployments, their ReplicaSets and %d pods on %d nodes in %s", deps, pods, len(nodes), time.Since(start).Round(time.Second))
		// Only now the revision label: no pod above went through a webhook.
		start = time.Now()
		labelMeshNamespaces(t, fast, nss)
		t.Logf("labelled %d namespaces %s=asm-1-27 in %s", nss, mesh.RevisionLabel, time.Since(start).Round(100*time.Millisecond))
	}
	if os.Getenv("MESHADDON_BENCH_SETUP_ONLY") == "1" {
		waitStatusPodsRunning(t, fast, pods)
		t.Skip("MESHADDON_BENCH_SETUP_ONLY: the cluster is set up; measure with a later run")
	}
	waitStatusPodsRunning(t, fast, pods)

	hooks := startBenchWebhooks(t, kc)
	if os.Getenv("MESHADDON_BENCH_QUIET") != "0" {
		t.Cleanup(pauseComponents(t, name, "kwok-controller", "kube-controller-manager"))
	}
	census := waitCensus(t, cfg, pods)
	t.Logf("the manager's census: %d pods, %d not injected, revisions %+v", census.Total, census.NotInjected, census.Revisions)
	kcfg := kubeconfigOf(name)
	prof := buildPrecheckProf(t)
	// MESHADDON_BENCH_PRECHECK_BEFORE (a meshaddon binary) and
	// MESHADDON_BENCH_PRECHECKPROF_BEFORE (its bench/precheckprof) measure
	// another build's precheck on the same cluster, the runs interleaved
	// with this build's so that both meet the same load (the code before a
	// change).
	builds := []precheckBuild{{key: "precheck_admission", bin: meshaddonBin, prof: prof}}
	if b := os.Getenv("MESHADDON_BENCH_PRECHECK_BEFORE"); b != "" {
		builds = append(builds, precheckBuild{key: "precheck_admission_before", bin: b, prof: os.Getenv("MESHADDON_BENCH_PRECHECKPROF_BEFORE")})
		t.Logf("MESHADDON_BENCH_PRECHECK_BEFORE: also measuring the precheck of %s", b)
	}

	// One untimed run in JSON each: what precheck found, and that the
	// proof ran on every mesh namespace.
	t.Run("check run", func(t *testing.T) {
		for _, b := range builds {
			var out bytes.Buffer
			before := dryRunMetrics(t, kc)
			hooks.dryRuns.Store(0)
			s := runMeasured(t, tools.rusage, &out, b.bin, "precheck", "--kubeconfig", kcfg, "-o", "json")
			after := dryRunMetrics(t, kc)
			if s.code != 0 && s.code != 1 { // 1: the preview feature is not registered
				t.Fatalf("%s exited %d:\n%s\n%s", b.key, s.code, out.String(), s.stderr)
			}
			var rep precheck.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("%s -o json: %v\n%s", b.key, err, out.String())
			}
			t.Logf("%s:", b.key)
			for _, g := range rep.Groups {
				for _, c := range g.Checks {
					for i, r := range c.Results {
						if g.Name == "Resources" && r.Status == precheck.OK && i > 2 {
							continue // one ok line per namespace
						}
						t.Logf("  %s / %s: %s %s", g.Name, c.Name, r.Status, r.Message)
					}
				}
			}
			admitted := admissionLine(rep)
			want := fmt.Sprintf("%d of %d mesh namespaces admit", nss, nss)
			if !strings.Contains(admitted, want) {
				t.Errorf("%s: the admission proof says %q, want %q", b.key, admitted, want)
			}
			d := after.minus(before)
			t.Logf("check run of %s: %s, peak RSS %.1f MiB, exit %d; %d dry-run pod creates on the API server; the bench webhooks saw %d dry-run reviews",
				b.key, s.wall.Round(time.Millisecond), mib(s.maxrss), s.code, d.count, hooks.dryRuns.Load())
		}
	})

	t.Run("wall time, peak RSS and dry runs", func(t *testing.T) {
		walls := map[string][]time.Duration{}
		rss := map[string][]int64{}
		counts := map[string][]int{}
		hist := map[string]histogram{}
		for i := 1; i <= runs; i++ {
			for _, b := range builds {
				before := dryRunMetrics(t, kc)
				s := runMeasured(t, tools.rusage, &bytes.Buffer{}, b.bin, "precheck", "--kubeconfig", kcfg)
				after := dryRunMetrics(t, kc)
				if s.code != 0 && s.code != 1 {
					t.Fatalf("run %d: %s exited %d:\n%s", i, b.key, s.code, s.stderr)
				}
				d := after.minus(before)
				hist[b.key] = hist[b.key].plus(d)
				walls[b.key], rss[b.key], counts[b.key] = append(walls[b.key], s.wall), append(rss[b.key], s.maxrss), append(counts[b.key], d.count)
				t.Logf("run %d: %-25s %8s  peak RSS %.1f MiB  %d dry runs (server p50 %s, p99 %s)", i, b.key, s.wall.Round(time.Millisecond), mib(s.maxrss),
					d.count, d.quantile(0.5).Round(time.Millisecond), d.quantile(0.99).Round(time.Millisecond))
			}
		}
		t.Logf("%d mesh namespaces in %d classes, %d Deployments, %d pods, %d nodes; %d runs each", nss, admissionClasses, deps, pods, totalNodes, runs)
		logLoad(t)
		for _, b := range builds {
			k := b.key
			reportDuration(t, k+".wall.best", slices.Min(walls[k]), "s", noTarget)
			reportDuration(t, k+".wall.median", median(walls[k]), "s", under(1, "< 1 s"))
			report(t, k+".maxrss", mib(medianInt64(rss[k])), "MiB", noTarget)
			report(t, k+".dry_runs", float64(slices.Max(counts[k])), "requests", noTarget)
			if slices.Min(counts[k]) != slices.Max(counts[k]) {
				t.Logf("%s: the dry-run count varied between runs: %v", k, counts[k])
			}
			reportDuration(t, k+".dry_run.p50", hist[k].quantile(0.5), "ms", noTarget)
			reportDuration(t, k+".dry_run.p99", hist[k].quantile(0.99), "ms", noTarget)
			t.Logf("%s: dry-run latency on the API server over %d runs (its buckets, upper bound → count): %s", k, runs, hist[k])
		}
	})

	// Where the time goes: each check's wall time and every request, by
	// bench/precheckprof (precheck's code with a timing transport).
	t.Run("profile", func(t *testing.T) {
		for _, b := range builds {
			if b.prof == "" {
				continue
			}
			for i := 1; i <= 2; i++ {
				out, err := exec.Command(b.prof, "--kubeconfig", kcfg).CombinedOutput()
				if err != nil {
					t.Fatalf("%s: precheckprof: %v\n%s", b.key, err, out)
				}
				t.Logf("%s, precheckprof run %d:\n%s", b.key, i, out)
			}
		}
	})
}

// precheckBuild is one build of precheck the benchmark measures.
type precheckBuild struct {
	key  string
	bin  string // meshaddon
	prof string // its bench/precheckprof, or ""
}

// buildPrecheckProf builds bench/precheckprof from this tree.
func buildPrecheckProf(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "precheckprof")
	if b, err := exec.Command("go", "build", "-o", out, "./precheckprof").CombinedOutput(); err != nil {
		t.Fatalf("build bench/precheckprof: %v\n%s", err, b)
	}
	return out
}

// admissionLine is the admission proof's summary line.
func admissionLine(r precheck.Report) string {
	for _, g := range r.Groups {
		if g.Name != "Admission" {
			continue
		}
		for _, c := range g.Checks {
			for _, res := range c.Results {
				if res.Status == precheck.OK {
					return res.Message
				}
			}
		}
	}
	return "(no ok line in the Admission group)"
}

// --- the cluster's contents ---

func meshNamespace(n int) string { return fmt.Sprintf("bench-mesh-%04d", n) }

// classLabels are the labels of namespace n: its class, and the policy
// labels that the class's bits switch on.
func classLabels(n int) map[string]string {
	c := n % admissionClasses
	l := map[string]string{classLabel: fmt.Sprintf("c%d", c)}
	for k := 0; k < admissionPolicies; k++ {
		if (c+1)&(1<<k) != 0 {
			l[policyLabelPrefix+strconv.Itoa(k)] = "enforce"
		}
	}
	return l
}

// createMeshNamespaces creates the namespaces with their class labels (the
// revision label comes after the pods) and waits for their default
// ServiceAccounts, which pods need.
func createMeshNamespaces(t *testing.T, kc kubernetes.Interface, count int) {
	t.Helper()
	parallel(t, 16, count, func(ctx context.Context, n int) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: meshNamespace(n), Labels: classLabels(n)}}
		_, err := kc.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	waitFor(t, 20*time.Minute, fmt.Sprintf("the default ServiceAccounts of %d namespaces", count), func(ctx context.Context) (bool, string) {
		list, err := kc.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=default"})
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, sa := range list.Items {
			if strings.HasPrefix(sa.Namespace, "bench-mesh-") {
				n++
			}
		}
		return n == count, fmt.Sprintf("%d ServiceAccounts", n)
	})
}

// labelMeshNamespaces puts the revision label on every bench namespace.
func labelMeshNamespaces(t *testing.T, kc kubernetes.Interface, count int) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"` + mesh.RevisionLabel + `":"asm-1-27"}}}`)
	parallel(t, 16, count, func(ctx context.Context, n int) error {
		_, err := kc.CoreV1().Namespaces().Patch(ctx, meshNamespace(n), types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		return err
	})
}

// appTemplate is the pod template of Deployment dep running app, one of
// admissionApps specs (image and requests); every fifth app is tier=web,
// which one bench webhook selects on.
func appTemplate(app int, dep string) corev1.PodTemplateSpec {
	labels := map[string]string{"app": fmt.Sprintf("app-%d", app), "deployment": dep}
	if app%5 == 0 {
		labels[tierLabel] = "web"
	}
	req := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(fmt.Sprintf("%dm", 50+10*(app%10))),
		corev1.ResourceMemory: resource.MustParse(fmt.Sprintf("%dMi", 64+16*(app%8))),
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: fmt.Sprintf("registry.example/bench/app-%d:1.0", app),
			Resources: corev1.ResourceRequirements{Requests: req},
		}}},
	}
}

// createMeshWorkloads creates, for each Deployment d (in namespace
// d % namespaces), the paused Deployment, its ReplicaSet and its replicas
// pods. The pods carry the injected template's spec and annotations with
// the Deployment's container, as istiod would have injected them classic.
func createMeshWorkloads(t *testing.T, kc kubernetes.Interface, tmpl *corev1.Pod, nodes []string, namespaces, deployments, replicas int) {
	t.Helper()
	var created atomic.Int64
	start := time.Now()
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				t.Logf("  %d of %d Deployments with their pods after %s", created.Load(), deployments, time.Since(start).Round(time.Second))
			}
		}
	}()
	parallel(t, statusWorkers, deployments, func(ctx context.Context, d int) error {
		ns := meshNamespace(d % namespaces)
		name := fmt.Sprintf("dep-%05d", d)
		// The Deployments of a namespace run different apps; every
		// namespace has one tier=web.
		pt := appTemplate((d+d/namespaces)%admissionApps, name)
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": pt.Labels["app"]}},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(replicas)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"deployment": name}},
				Template: pt,
				Paused:   true,
			},
		}
		dep, err := createOrGet(ctx, dep, kc.AppsV1().Deployments(ns).Create, kc.AppsV1().Deployments(ns).Get)
		if err != nil {
			return err
		}
		const hash = "5d8f7c9b4"
		rsTmpl := *pt.DeepCopy()
		rsTmpl.Labels["pod-template-hash"] = hash
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + hash, Namespace: ns, Labels: rsTmpl.Labels,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
			Spec: appsv1.ReplicaSetSpec{
				Replicas: ptr.To(int32(replicas)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"deployment": name, "pod-template-hash": hash}},
				Template: rsTmpl,
			},
		}
		rs, err = createOrGet(ctx, rs, kc.AppsV1().ReplicaSets(ns).Create, kc.AppsV1().ReplicaSets(ns).Get)
		if err != nil {
			return err
		}
		for r := 0; r < replicas; r++ {
			n := d*replicas + r
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
				Name:            statusPodName(n),
				Namespace:       ns,
				Labels:          maps.Clone(rsTmpl.Labels),
				Annotations:     maps.Clone(tmpl.Annotations),
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))},
			}}
			for k, v := range tmpl.Labels {
				// The revision label would make istiod's object webhook
				// inject the pod again.
				if k != mesh.RevisionLabel && k != "app" {
					p.Labels[k] = v
				}
			}
			p.Spec = *tmpl.Spec.DeepCopy()
			for i := range p.Spec.Containers {
				if p.Spec.Containers[i].Name == "app" {
					p.Spec.Containers[i].Image = pt.Spec.Containers[0].Image
					p.Spec.Containers[i].Resources = *pt.Spec.Containers[0].Resources.DeepCopy()
				}
			}
			p.Spec.NodeName = nodes[n%len(nodes)]
			if err := createPodRetrying(ctx, kc, p); err != nil {
				return err
			}
		}
		created.Add(1)
		return nil
	})
}

// createOrGet creates obj, or reads it when an earlier attempt whose answer
// was lost created it; it retries what a loaded API server may answer.
func createOrGet[T metav1.Object](ctx context.Context, obj T,
	create func(context.Context, T, metav1.CreateOptions) (T, error),
	get func(context.Context, string, metav1.GetOptions) (T, error)) (T, error) {
	var err error
	var got T
	for attempt := 0; attempt < 6; attempt++ {
		got, err = create(ctx, obj, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			got, err = get(ctx, obj.GetName(), metav1.GetOptions{})
		}
		if err == nil || ctx.Err() != nil {
			return got, err
		}
		time.Sleep(time.Duration(attempt+1) * 500 * time.Millisecond)
	}
	return got, fmt.Errorf("create %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
}

// parallel runs fn for 0..count-1 from workers goroutines and fails the
// benchmark with the first error.
func parallel(t *testing.T, workers, count int, fn func(ctx context.Context, i int) error) {
	t.Helper()
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
				if err := fn(ctx, i); err != nil {
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
		t.Fatal(firstErr)
	}
}

// --- the webhooks ---

// benchWebhooks is one TLS server on 127.0.0.1 behind every bench webhook
// configuration: policy-0 and policy-1 mutate (they add an annotation, as
// defaulting webhooks do), policy-2 and policy-3 validate and allow;
// policy-3 also selects pods by tierLabel=web.
type benchWebhooks struct {
	dryRuns atomic.Int64 // reviews of dry-run requests
}

// startBenchWebhooks serves the webhooks and registers their
// configurations (replacing any a kept cluster has from an earlier run),
// all removed when the benchmark ends.
func startBenchWebhooks(t *testing.T, kc kubernetes.Interface) *benchWebhooks {
	t.Helper()
	h := &benchWebhooks{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		if ptr.Deref(review.Request.DryRun, false) {
			h.dryRuns.Add(1)
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		if strings.HasPrefix(r.URL.Path, "/mutate/") {
			var pod corev1.Pod
			if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			key := "bench.meshaddon.dev~1" + strings.TrimPrefix(r.URL.Path, "/mutate/")
			var patch []map[string]any
			if pod.Annotations == nil {
				patch = append(patch, map[string]any{"op": "add", "path": "/metadata/annotations", "value": map[string]string{}})
			}
			patch = append(patch, map[string]any{"op": "add", "path": "/metadata/annotations/" + key, "value": "defaulted"})
			resp.Patch, _ = json.Marshal(patch)
			resp.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
		}
		review.Response, review.Request = resp, nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	rules := []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create},
		Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}
	nsSel := func(k int) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{policyLabelPrefix + strconv.Itoa(k): "enforce"}}
	}
	ctx := context.Background()
	api := kc.AdmissionregistrationV1()
	for k := 0; k < 2; k++ {
		name := fmt.Sprintf("bench-policy-%d", k)
		url := fmt.Sprintf("%s/mutate/policy-%d", srv.URL, k)
		cfg := &admissionregv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Webhooks: []admissionregv1.MutatingWebhook{{
				Name: fmt.Sprintf("policy-%d.bench.meshaddon.dev", k), ClientConfig: admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca},
				Rules: rules, NamespaceSelector: nsSel(k), SideEffects: ptr.To(admissionregv1.SideEffectClassNone),
				FailurePolicy: ptr.To(admissionregv1.Fail), TimeoutSeconds: ptr.To(int32(5)), AdmissionReviewVersions: []string{"v1"},
			}},
		}
		_ = api.MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
		if _, err := api.MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = api.MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	for k := 2; k < admissionPolicies; k++ {
		name := fmt.Sprintf("bench-policy-%d", k)
		url := fmt.Sprintf("%s/validate/policy-%d", srv.URL, k)
		wh := admissionregv1.ValidatingWebhook{
			Name: fmt.Sprintf("policy-%d.bench.meshaddon.dev", k), ClientConfig: admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules: rules, NamespaceSelector: nsSel(k), SideEffects: ptr.To(admissionregv1.SideEffectClassNone),
			FailurePolicy: ptr.To(admissionregv1.Fail), TimeoutSeconds: ptr.To(int32(5)), AdmissionReviewVersions: []string{"v1"},
		}
		if k == admissionPolicies-1 {
			wh.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{tierLabel: "web"}}
		}
		cfg := &admissionregv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}, Webhooks: []admissionregv1.ValidatingWebhook{wh}}
		_ = api.ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
		if _, err := api.ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = api.ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	// The API server reads webhook configurations from an informer: wait
	// until a dry run in a class of each policy is seen by the server.
	waitFor(t, time.Minute, "the bench webhooks answer", func(ctx context.Context) (bool, string) {
		before := h.dryRuns.Load()
		p := appTemplate(0, "ready") // tier=web
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-webhook-ready-", Labels: p.Labels}, Spec: p.Spec}
		// Class 9 (bits of 10: policies 1 and 3), class 4 (bits of 5: 0 and 2).
		for _, n := range []int{9, 4} {
			if _, err := kc.CoreV1().Pods(meshNamespace(n)).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
				return false, err.Error()
			}
		}
		got := h.dryRuns.Load() - before
		return got == 4, fmt.Sprintf("%d of 4 reviews", got)
	})
	t.Logf("4 bench webhook configurations (2 mutating, 2 validating) on %s", srv.URL)
	h.dryRuns.Store(0)
	return h
}

// --- the API server's count and latency of dry runs ---

// histogram is the API server's apiserver_request_duration_seconds for dry-run
// pod creates: cumulative counts by upper bound (seconds), and the count.
type histogram struct {
	buckets map[float64]float64
	count   int
}

var (
	durationLine = regexp.MustCompile(`^apiserver_request_duration_seconds_(bucket|count)\{([^}]*)\} (\S+)$`)
	leLabel      = regexp.MustCompile(`le="([^"]+)"`)
)

// dryRunMetrics reads the API server's metrics and sums the histogram of
// dry-run pod creates (verb POST, resource pods, dry_run All).
func dryRunMetrics(t *testing.T, kc kubernetes.Interface) histogram {
	t.Helper()
	raw, err := kc.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("read the API server's metrics: %v", err)
	}
	h := histogram{buckets: map[float64]float64{}}
	for _, line := range strings.Split(string(raw), "\n") {
		m := durationLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := m[2]
		if !strings.Contains(labels, `verb="POST"`) || !strings.Contains(labels, `resource="pods"`) ||
			!strings.Contains(labels, `dry_run="All"`) || !strings.Contains(labels, `subresource=""`) {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		if m[1] == "count" {
			h.count += int(v)
			continue
		}
		le := leLabel.FindStringSubmatch(labels)
		if le == nil {
			continue
		}
		bound, err := strconv.ParseFloat(le[1], 64) // "+Inf" parses
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		h.buckets[bound] += v
	}
	return h
}

func (h histogram) minus(o histogram) histogram {
	d := histogram{buckets: map[float64]float64{}, count: h.count - o.count}
	for le, v := range h.buckets {
		d.buckets[le] = v - o.buckets[le]
	}
	return d
}

func (h histogram) plus(o histogram) histogram {
	s := histogram{buckets: map[float64]float64{}, count: h.count + o.count}
	for le, v := range h.buckets {
		s.buckets[le] += v
	}
	for le, v := range o.buckets {
		s.buckets[le] += v
	}
	return s
}

// quantile interpolates linearly within the bucket the quantile falls in,
// as Prometheus's histogram_quantile does: the answer is only as fine as
// the API server's buckets (5, 25, 50, 100, 200, 400 ms, ...).
func (h histogram) quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	bounds := slices.Sorted(maps.Keys(h.buckets))
	rank := q * float64(h.count)
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		c := h.buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return time.Duration(lower * float64(time.Second))
			}
			frac := 0.0
			if c > below {
				frac = (rank - below) / (c - below)
			}
			return time.Duration((lower + (le-lower)*frac) * float64(time.Second))
		}
		lower, below = le, c
	}
	return time.Duration(lower * float64(time.Second))
}

func (h histogram) String() string {
	bounds := slices.Sorted(maps.Keys(h.buckets))
	var parts []string
	prev := 0.0
	for _, le := range bounds {
		if n := h.buckets[le] - prev; n > 0 {
			parts = append(parts, fmt.Sprintf("≤%gs:%d", le, int(n)))
		}
		prev = h.buckets[le]
	}
	return strings.Join(parts, " ")
}
