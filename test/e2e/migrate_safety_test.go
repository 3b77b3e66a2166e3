package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
)

// TestMigrateSafety: migrate on a busy cluster (issue 14), on one cluster
// whose pods take 2 s to become Ready: PodDisruptionBudgets, the surge
// budget, quotas, rollouts an admission webhook blocks, the canary, a kill
// in the middle of PDB-gated waves, and bad input. Each step migrates its
// own namespaces.
func TestMigrateSafety(t *testing.T) {
	const cluster = "safety"
	kc := upCluster(t, cluster, "--pool", systemPool+"="+currentVersion+":2", "--revision", "asm-1-27",
		"--native-sidecars", "false", "--pod-start-delay", "2s", "--manager=false")
	kcfg := kubeconfigOf(t, cluster)
	ctx := context.Background()

	// Everything is created classic, then istiod turns native.
	namespaces := []string{"pdb", "pdb-ignored", "surge", "quota-one", "quota-none", "blocked", "canary", "waves"}
	for _, ns := range namespaces {
		createNamespace(t, kc, ns, "asm-1-27")
	}
	front := map[string]string{"tier": "front"}
	for _, name := range []string{"a", "b"} {
		// Each takes one pod down at a time: two at once would take the
		// PDB's service below its budget.
		safetyDeployment(t, kc, "pdb", name, 2, 0, 1, front)
	}
	createPDB(t, kc, "pdb", "front", 3, front)
	for _, name := range []string{"a", "b"} {
		safetyDeployment(t, kc, "pdb-ignored", name, 2, 0, 1, front)
	}
	createPDB(t, kc, "pdb-ignored", "front", 3, front)
	for i := 0; i < 20; i++ {
		safetyDeployment(t, kc, "surge", fmt.Sprintf("web-%02d", i), 1, 1, 0, nil)
	}
	step := map[string]string{"step": "quota"}
	for i := 0; i < 3; i++ {
		safetyDeployment(t, kc, "quota-one", fmt.Sprintf("svc-%d", i), 1, 1, 0, step)
	}
	safetyDeployment(t, kc, "quota-none", "full", 1, 1, 0, step)
	safetyDeployment(t, kc, "blocked", "web", 1, 1, 0, nil)
	for i := 0; i < 6; i++ {
		safetyDeployment(t, kc, "canary", fmt.Sprintf("svc-%d", i), 1, 1, 0, nil)
	}
	for i := 0; i < 3; i++ {
		pair := map[string]string{"pair": fmt.Sprint(i)}
		safetyDeployment(t, kc, "waves", fmt.Sprintf("p%d-a", i), 2, 0, 1, pair)
		safetyDeployment(t, kc, "waves", fmt.Sprintf("p%d-b", i), 2, 0, 1, pair)
		createPDB(t, kc, "waves", fmt.Sprintf("pair-%d", i), 3, pair)
	}
	for _, ns := range namespaces {
		waitAllRolledOut(t, kc, ns)
	}
	// Quotas once the pods are there: room for one surge pod, and none.
	createQuota(t, kc, "quota-one", "room-for-one", 4)
	createQuota(t, kc, "quota-none", "no-room", 1)
	for _, ns := range []string{"quota-one", "quota-none"} {
		waitFor(t, time.Minute, "quota status of "+ns, func(ctx context.Context) (bool, string) {
			qs, err := kc.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
			if err != nil || len(qs.Items) != 1 {
				return false, fmt.Sprint(err)
			}
			used := qs.Items[0].Status.Used[corev1.ResourcePods]
			return used.Value() > 0, "used " + used.String()
		})
	}
	setIstiodEnv(t, kc, "istiod-asm-1-27", "true")
	waitFor(t, 2*time.Minute, "istiod asm-1-27 injects native", func(ctx context.Context) (bool, string) {
		pod, err := tryDryRunPod(ctx, kc, "pdb", nil)
		if err != nil {
			return false, err.Error()
		}
		return names(pod.Spec.InitContainers) == "istio-init,istio-proxy", "init " + names(pod.Spec.InitContainers)
	})
	waitDeploymentAvailable(t, kc, istioNS, "istiod-asm-1-27")
	migrate := func(args ...string) result {
		return meshaddon(t, append([]string{"migrate", "--skip-precheck", "--kubeconfig", kcfg}, args...)...)
	}

	t.Run("bad input is a usage error", func(t *testing.T) {
		for _, args := range [][]string{
			{"-n", "pdb", "--max-surge-pods", "0"},
			{"-n", "pdb", "--max-surge-pods", "-3"},
			{"-n", "pdb", "--canary-soak", "soon", "--canary", "1"},
			{"-n", "pdb", "--canary", "3"}, // the plan has 2
			{"-n", "pdb", "--pause-after-canary"},
		} {
			r := migrate(args...)
			if r.code != 2 || strings.Contains(r.stderr, "panic") || !strings.Contains(r.stderr, "error:") {
				t.Errorf("migrate %s: %s, want exit 2 with an error", strings.Join(args, " "), r)
			}
		}
		if g := generations(t, kc, "pdb"); g["Deployment/a"] != 1 || g["Deployment/b"] != 1 {
			t.Errorf("bad input restarted something: %v", g)
		}
	})

	t.Run("the plan shows each workload's PDB, surge, quota and wave", func(t *testing.T) {
		r := migrate("-A", "--dry-run", "--max-surge-pods", "4")
		for _, want := range []string{
			"surge budget: 4 extra pod(s) at once (--max-surge-pods)",
			"restart pdb/Deployment/a (2 classic pods) [wave 1, surge 0, PDB front]",
			"restart pdb/Deployment/b (2 classic pods) [wave 2, surge 0, PDB front]",
			"surge 1, quota room-for-one]",
			"ResourceQuota no-room has no room for its surge of 1 pod(s) now",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("plan lacks %q:\n%s", want, r.stdout)
			}
		}
		var plan struct {
			SurgeBudget int32 `json:"surgeBudget"`
			Items       []struct {
				inventory.Workload
				Surge  int32    `json:"surge"`
				PDBs   []string `json:"pdbs"`
				Quotas []string `json:"quotas"`
				Wave   int      `json:"wave"`
			} `json:"items"`
		}
		j := migrate("-n", "surge", "--dry-run", "-o", "json")
		if err := json.Unmarshal([]byte(j.stdout), &plan); err != nil {
			t.Fatalf("%v: %s", err, j)
		}
		if plan.SurgeBudget < 1 || len(plan.Items) != 20 || plan.Items[0].Surge != 1 || plan.Items[0].Wave != 1 {
			t.Errorf("plan -o json: %s", j.stdout)
		}
	})

	t.Run("two Deployments under one PDB never restart at once", func(t *testing.T) {
		r, overlap, belowBudget := watchPDBRun(t, kc, "pdb", func() result { return migrate("-n", "pdb", "--concurrency", "10") })
		if r.code != 0 {
			t.Fatalf("migrate: %s", r)
		}
		if len(overlap) > 0 {
			t.Errorf("a and b were rolling at once at %v", overlap)
		}
		if len(belowBudget) > 0 {
			t.Errorf("the PDB went below its budget: %v", belowBudget)
		}
		if !strings.Contains(r.stderr, "waiting pdb/Deployment/b: PodDisruptionBudget front") && !strings.Contains(r.stderr, "waiting pdb/Deployment/a: PodDisruptionBudget front") {
			t.Errorf("progress does not say who waited on the PDB:\n%s", r.stderr)
		}
		if m := podModes(t, kc, "pdb"); m[inventory.Classic] != 0 || m[inventory.Native] != 4 {
			t.Errorf("pdb after migrate: %v", m)
		}
	})

	t.Run("--ignore-pdb: both at once, with a warning (the watch above sees an overlap)", func(t *testing.T) {
		r, overlap, belowBudget := watchPDBRun(t, kc, "pdb-ignored", func() result { return migrate("-n", "pdb-ignored", "--concurrency", "10", "--ignore-pdb") })
		if r.code != 0 || !strings.Contains(r.stderr, "warning: --ignore-pdb") {
			t.Fatalf("migrate: %s", r)
		}
		if len(overlap) == 0 || len(belowBudget) == 0 {
			t.Errorf("with --ignore-pdb: overlaps %v, below budget %v; want both seen", overlap, belowBudget)
		}
	})

	t.Run("--max-surge-pods 4: never more than 4 pods above the desired", func(t *testing.T) {
		watchCtx, stop := context.WithCancel(ctx)
		live := map[string]bool{}
		most := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			watchEach(watchCtx, t, func(ctx context.Context) (watch.Interface, error) {
				return kc.CoreV1().Pods("surge").Watch(ctx, metav1.ListOptions{})
			}, func(obj any) {
				p := obj.(*corev1.Pod)
				live[p.Name] = p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
				n := 0
				for _, l := range live {
					if l {
						n++
					}
				}
				most = max(most, n-20)
			}, func(name string) { delete(live, name) })
		}()
		before := generations(t, kc, "surge")
		r := migrate("-n", "surge", "--concurrency", "20", "--max-surge-pods", "4")
		stop()
		<-done
		if r.code != 0 {
			t.Fatalf("migrate: %s", r)
		}
		checkRestartedOnce(t, before, generations(t, kc, "surge"))
		if most > 4 || most < 2 {
			t.Errorf("at most %d pods above the 20 desired, want 2..4 (the budget used, never exceeded)", most)
		}
	})

	t.Run("quotas: one surge at a time where there is room for one, a fast failure where there is none", func(t *testing.T) {
		start := time.Now()
		r, lines := migrateTimed(t, kcfg, "-A", "-l", "step=quota", "--concurrency", "10")
		if r.code != 1 || !strings.Contains(r.stderr, "ResourceQuota no-room has no room for its surge of 1 pod(s)") {
			t.Fatalf("migrate: %s, want exit 1 naming the quota", r)
		}
		t.Logf("%s", r)
		failedAt, ok := lines["failed quota-none/Deployment/full"]
		if !ok || failedAt.Sub(start) > 10*time.Second {
			t.Errorf("quota-none/full failed after %s (seen %v), want within 10 s", failedAt.Sub(start), ok)
		}
		if m := podModes(t, kc, "quota-one"); m[inventory.Classic] != 0 || m[inventory.Native] != 3 {
			t.Errorf("quota-one after migrate: %v, want all 3 migrated", m)
		}
		// One at a time: each restart's start follows the previous one's end.
		var order []string
		for _, l := range strings.Split(r.stderr, "\n") {
			if strings.Contains(l, "quota-one/") && (strings.HasPrefix(l, "restarting ") || strings.HasPrefix(l, "migrated ")) {
				order = append(order, strings.Fields(l)[0])
			}
		}
		if strings.Join(order, ",") != "restarting,migrated,restarting,migrated,restarting,migrated" {
			t.Errorf("quota-one restarts overlapped: %v\n%s", order, r.stderr)
		}
	})

	t.Run("a rollout an admission webhook blocks fails within 10 s", func(t *testing.T) {
		refusingWebhook(t, kc, "zz-refuse-blocked", "blocked", "no new pods in blocked today")
		start := time.Now()
		r := migrate("-n", "blocked", "--timeout", "5m")
		took := time.Since(start)
		t.Logf("%s", r)
		if r.code != 1 || !strings.Contains(r.stderr, "no new pods in blocked today") || !strings.Contains(r.stderr, "cannot be created") {
			t.Fatalf("migrate: %s, want exit 1 with the webhook's message", r)
		}
		if took > 10*time.Second {
			t.Errorf("failed after %s, want within 10 s (not at --timeout)", took)
		}
	})

	t.Run("--canary 3 --pause-after-canary, then the printed command continues", func(t *testing.T) {
		before := generations(t, kc, "canary")
		r := migrate("-n", "canary", "--canary", "3", "--canary-soak", "3s", "--pause-after-canary")
		if r.code != 0 {
			t.Fatalf("migrate: %s", r)
		}
		restarted := 0
		for w, g := range generations(t, kc, "canary") {
			if g > before[w] {
				restarted++
			}
		}
		if restarted != 3 {
			t.Errorf("%d restarted after the canary, want 3:\n%s", restarted, r.stdout)
		}
		_, cont, ok := strings.Cut(r.stderr, "To migrate the rest, run:\n")
		cont = strings.TrimSpace(strings.SplitN(cont, "\n", 2)[0])
		if !ok || strings.Contains(cont, "--canary") || strings.Contains(cont, "--pause-after-canary") || !strings.Contains(cont, "migrate -n canary") && !strings.Contains(cont, " -n canary") {
			t.Fatalf("no command that continues:\n%s", r.stderr)
		}
		out, err := exec.Command("sh", "-c", cont).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cont, err, out)
		}
		checkRestartedOnce(t, before, generations(t, kc, "canary"))
		if m := podModes(t, kc, "canary"); m[inventory.Classic] != 0 || m[inventory.Native] != 6 {
			t.Errorf("canary after the rerun: %v", m)
		}
	})

	t.Run("kill -9 in the middle of PDB-gated waves, run again: nothing restarted twice", func(t *testing.T) {
		before := generations(t, kc, "waves")
		cmd := exec.Command(meshaddonBin, "migrate", "-n", "waves", "--concurrency", "10", "--skip-precheck", "--kubeconfig", kcfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the first wave under way", func(context.Context) (bool, string) {
			changed := 0
			for w, g := range generations(t, kc, "waves") {
				if g > before[w] {
					changed++
				}
			}
			return changed >= 2, fmt.Sprintf("%d restarted", changed)
		})
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		_, _ = cmd.Process.Wait()
		mid := 0
		for w, g := range generations(t, kc, "waves") {
			if g > before[w] {
				mid++
			}
		}
		if mid == len(before) {
			t.Fatalf("all %d restarted before the kill: not the middle", mid)
		}
		r := migrate("-n", "waves", "--concurrency", "10")
		if r.code != 0 {
			t.Fatalf("rerun: %s", r)
		}
		checkRestartedOnce(t, before, generations(t, kc, "waves"))
		if m := podModes(t, kc, "waves"); m[inventory.Classic] != 0 || m[inventory.Native] != 12 {
			t.Errorf("waves after the rerun: %v", m)
		}
	})
}

// watchPDBRun runs migrate on ns while watching its Deployments a and b
// and its PDB: when both were rolling at once, and when the PDB counted
// fewer healthy pods than it requires.
func watchPDBRun(t *testing.T, kc kubernetes.Interface, ns string, run func() result) (r result, overlap, belowBudget []string) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		rolling := map[string]bool{}
		watchEach(ctx, t, func(ctx context.Context) (watch.Interface, error) {
			return kc.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{})
		}, func(obj any) {
			d := obj.(*appsv1.Deployment)
			s := d.Status
			rolling[d.Name] = s.ObservedGeneration < d.Generation || s.UpdatedReplicas < *d.Spec.Replicas || s.Replicas != *d.Spec.Replicas || s.AvailableReplicas < *d.Spec.Replicas
			if rolling["a"] && rolling["b"] {
				overlap = append(overlap, time.Now().Format(time.StampMilli))
			}
		})
	}()
	go func() {
		defer wg.Done()
		watchEach(ctx, t, func(ctx context.Context) (watch.Interface, error) {
			return kc.PolicyV1().PodDisruptionBudgets(ns).Watch(ctx, metav1.ListOptions{})
		}, func(obj any) {
			s := obj.(*policyv1.PodDisruptionBudget).Status
			if s.DisruptionsAllowed < 0 || s.ExpectedPods > 0 && s.CurrentHealthy < s.DesiredHealthy {
				belowBudget = append(belowBudget, fmt.Sprintf("disruptionsAllowed %d, %d healthy of %d required", s.DisruptionsAllowed, s.CurrentHealthy, s.DesiredHealthy))
			}
		})
	}()
	r = run()
	stop()
	wg.Wait()
	return r, overlap, belowBudget
}

// safetyDeployment is a Deployment of pause pods with this rolling update
// (maxSurge, maxUnavailable as pod counts) and extra pod labels.
func safetyDeployment(t *testing.T, kc kubernetes.Interface, ns, name string, replicas, surge, unavailable int32, extra map[string]string) {
	t.Helper()
	labels := map[string]string{"app": name}
	for k, v := range extra {
		labels[k] = v
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intstr.FromInt32(surge)), MaxUnavailable: ptr.To(intstr.FromInt32(unavailable))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
	if _, err := kc.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createPDB(t *testing.T, kc kubernetes.Interface, ns, name string, minAvailable int32, selector map[string]string) {
	t.Helper()
	p := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(minAvailable)), Selector: &metav1.LabelSelector{MatchLabels: selector}}}
	if _, err := kc.PolicyV1().PodDisruptionBudgets(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createQuota(t *testing.T, kc kubernetes.Interface, ns, name string, pods int64) {
	t.Helper()
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI)}}}
	if _, err := kc.CoreV1().ResourceQuotas(ns).Create(context.Background(), q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// watchEach calls seen with every object the watch reports until ctx
// ends, and gone with the name of each one deleted; it watches again if
// the server closes the watch.
func watchEach(ctx context.Context, t *testing.T, start func(context.Context) (watch.Interface, error), seen func(any), gone ...func(string)) {
	for ctx.Err() == nil {
		w, err := start(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("watch: %v", err)
			}
			return
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				continue
			}
			if ev.Type == watch.Deleted {
				if m, ok := ev.Object.(metav1.Object); ok {
					for _, g := range gone {
						g(m.GetName())
					}
				}
				continue
			}
			seen(ev.Object)
		}
		w.Stop()
	}
}

// migrateTimed runs migrate and notes when each progress line ("failed
// ns/Kind/name", "migrated …") first appeared on stderr.
func migrateTimed(t *testing.T, kcfg string, args ...string) (result, map[string]time.Time) {
	t.Helper()
	cmd := exec.Command(meshaddonBin, append([]string{"migrate", "--skip-precheck", "--kubeconfig", kcfg}, args...)...)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := map[string]time.Time{}
	var stderr strings.Builder
	sc := bufio.NewScanner(errPipe)
	for sc.Scan() {
		l := sc.Text()
		stderr.WriteString(l + "\n")
		if f := strings.Fields(l); len(f) >= 2 {
			if _, ok := lines[f[0]+" "+f[1]]; !ok {
				lines[f[0]+" "+f[1]] = time.Now()
			}
		}
	}
	code := 0
	if err := cmd.Wait(); err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}, lines
}

// refusingWebhook serves, on 127.0.0.1 with TLS, a validating webhook that
// refuses every pod created in namespace with message.
func refusingWebhook(t *testing.T, kc kubernetes.Interface, name, namespace, message string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: false, Result: &metav1.Status{Message: message, Code: http.StatusForbidden}}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	url := srv.URL + "/validate"
	cfg := &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:                    "refuse.blocked.test",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create}, Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace}},
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	ctx := context.Background()
	if _, err := kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete webhook %s: %v", name, err)
		}
	})
	// The API server applies a new configuration within a moment: wait
	// until a dry-run pod there is refused.
	waitFor(t, 30*time.Second, "the webhook refuses pods in "+namespace, func(ctx context.Context) (bool, string) {
		_, err := tryDryRunPod(ctx, kc, namespace, nil)
		return err != nil && strings.Contains(err.Error(), message), fmt.Sprint(err)
	})
}
