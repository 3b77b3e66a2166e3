package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/capacity"
	"github.com/meshaddon/meshaddon/internal/precheck"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

// precheckReport is the part of `precheck -o json` the tests read.
type precheckReport struct {
	Success bool
	Groups  []struct {
		Name   string
		Checks []struct {
			Name    string
			Results []precheckResult
		}
	}
}

// precheckResult is one finding of `precheck -o json`.
type precheckResult struct {
	Status, Message, Hint string
	Namespaces            []string
	Workload              string
	Webhooks              []struct{ Kind, Configuration, Name string }
	Revision, Object      string
	Details               []string
}

// String is "status: message" and where it stands (namespace=,
// workload=, object=, revision=, webhook=).
func (r precheckResult) String() string {
	tags := []string{r.Status + ": " + r.Message}
	for _, ns := range r.Namespaces {
		tags = append(tags, "namespace="+ns)
	}
	for _, kv := range [][2]string{{"workload", r.Workload}, {"object", r.Object}, {"revision", r.Revision}} {
		if kv[1] != "" {
			tags = append(tags, kv[0]+"="+kv[1])
		}
	}
	for _, w := range r.Webhooks {
		tags = append(tags, "webhook="+w.Configuration+"/"+w.Name)
	}
	return strings.Join(append(tags, r.Details...), " ")
}

func runPrecheck(t *testing.T, cluster string) (precheckReport, result) {
	t.Helper()
	r := meshaddon(t, "precheck", "-o", "json", "--kubeconfig", kubeconfigOf(t, cluster))
	var rep precheckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("precheck -o json: %v\n%s", err, r)
	}
	return rep, r
}

// resultsOf returns "status: message" lines of one check.
func resultsOf(rep precheckReport, check string) []string {
	var out []string
	for _, g := range rep.Groups {
		for _, c := range g.Checks {
			if c.Name == check {
				for _, r := range c.Results {
					out = append(out, r.String())
				}
			}
		}
	}
	return out
}

// TestPrecheckAndStatus: precheck on a cluster with a 1.28 pool fails naming
// it, passes after the upgrade; status classifies every kind of pod as
// kubectl's own columns show them.
func TestPrecheckAndStatus(t *testing.T) {
	const cluster = "checks"
	kc := upCluster(t, cluster, "--pool", "system="+currentVersion+":2", "--pool", oldPool+"="+oldVersion+":1", "--revision", "asm-1-27", "--audit")
	kcfg := kubeconfigOf(t, cluster)

	t.Run("fails on a 1.28 pool, naming pool and nodes", func(t *testing.T) {
		mustMeshaddon(t, "feature", "register", "--kubeconfig", kcfg)
		waitFor(t, 30*time.Second, "feature Registered", func(context.Context) (bool, string) {
			r := mustMeshaddon(t, "feature", "show", "-o", "table", "--kubeconfig", kcfg)
			return strings.Contains(r.stdout, " Registered "), r.stdout
		})
		mustMeshaddon(t, "provider", "register", "--kubeconfig", kcfg)
		// istiod still injects classic here: a pod for the status test.
		createNamespace(t, kc, "mix", "asm-1-27")
		// On a system node: the old pool's upgrade below drains its nodes.
		createPod(t, kc, "mix", "classic", poolNodes(t, kc, "system")[0], nil)
		// A Deployment with classic pods and an init container of its own,
		// for the resource check below.
		createWithInit(t, kc)
		rep, r := runPrecheck(t, cluster)
		if r.code != 1 || rep.Success {
			t.Fatalf("precheck with a 1.28 pool: exit %d, success %v", r.code, rep.Success)
		}
		old := poolNodes(t, kc, oldPool)[0]
		got := strings.Join(resultsOf(rep, "node versions"), "\n")
		if !strings.HasPrefix(got, "fail:") || !strings.Contains(got, "pool old") || !strings.Contains(got, old) || !strings.Contains(got, oldVersion) {
			t.Errorf("node versions check: %s", got)
		}
		if got := resultsOf(rep, "feature registered"); len(got) != 1 || !strings.HasPrefix(got[0], "ok:") {
			t.Errorf("feature check after register and refresh: %v", got)
		}
		// The text form says the same, linkerd-style.
		text := meshaddon(t, "precheck", "--kubeconfig", kcfg)
		for _, want := range []string{"Node pools\n----------", "× pool old has 1 node(s) on kubelet " + oldVersion, "    see: ", "Status check results are ×"} {
			if !strings.Contains(text.stdout, want) {
				t.Errorf("precheck text lacks %q:\n%s", want, text.stdout)
			}
		}
	})

	t.Run("passes after the pool is upgraded", func(t *testing.T) {
		mustMeshaddon(t, "local", "nodepool", "upgrade", oldPool, "--name", cluster, "--version", currentVersion)
		waitEnvByDocument(t, cluster, "true", time.Minute)
		waitDeploymentAvailable(t, kc, istioNS, "istiod-asm-1-27")
		rep, r := runPrecheck(t, cluster)
		if r.code != 0 || !rep.Success {
			t.Fatalf("precheck after the upgrade: %s", r)
		}
		if got := strings.Join(resultsOf(rep, "ENABLE_NATIVE_SIDECARS"), "\n"); !strings.Contains(got, "ok: istiod-asm-1-27: ENABLE_NATIVE_SIDECARS=true") {
			t.Errorf("injection check: %s", got)
		}
	})

	t.Run("admission proof: a webhook that drops restartPolicy fails precheck, naming namespace and webhook", func(t *testing.T) {
		const check = "native sidecar admitted in each mesh namespace"
		createNamespace(t, kc, "hostile", "asm-1-27")
		// A workload in mix whose pods alone meet a webhook (objectSelector
		// app=legacy); no replicas, so no pod of it is refused for real.
		createDeployment(t, kc, "mix", "legacy", 0, nil, nil)
		t.Run("hostile", func(t *testing.T) {
			addHazard(t, cluster, "strip-restart-policy", "hostile")
			addHazard(t, cluster, "strip-restart-policy", "mix", "--pod-selector", "app=legacy")
			rep, r := runPrecheck(t, cluster)
			got := resultsOf(rep, check)
			if r.code != 1 || rep.Success {
				t.Errorf("precheck with a webhook that drops restartPolicy: exit %d\n%s", r.code, strings.Join(got, "\n"))
			}
			var failed, workload, proven bool
			for _, l := range got {
				switch {
				case strings.HasPrefix(l, "fail: hostile:") && strings.Contains(l, "hazard-strip-restart-policy-hostile") && !strings.Contains(l, "mix"):
					failed = true
				case strings.HasPrefix(l, "fail: mix/Deployment/legacy ") && strings.Contains(l, "webhook=hazard-strip-restart-policy-mix/") && !strings.Contains(l, "-hostile"):
					workload = true
				case strings.HasPrefix(l, "ok: ") && strings.Contains(l, "1 of 2 mesh namespaces") && strings.Contains(l, "(3 dry-run probes)"):
					proven = true
				}
			}
			if !failed || !workload || !proven {
				t.Errorf("admission results (want hostile failed naming its webhook, mix/Deployment/legacy failed naming its own, mix proven, 3 probes):\n%s", strings.Join(got, "\n"))
			}
		})
		// The webhooks are gone: every namespace is proven again.
		rep, r := runPrecheck(t, cluster)
		if got := resultsOf(rep, check); r.code != 0 || len(got) != 1 || !strings.Contains(got[0], "2 of 2 mesh namespaces") {
			t.Errorf("precheck without the webhooks: exit %d: %v", r.code, got)
		}
		_ = kc.CoreV1().Namespaces().Delete(context.Background(), "hostile", metav1.DeleteOptions{})
		_ = kc.AppsV1().Deployments("mix").Delete(context.Background(), "legacy", metav1.DeleteOptions{})
	})

	t.Run("resources: a LimitRange the native proxy breaks and a quota without room for the surge, in mix only", func(t *testing.T) {
		const check = "requests, limits and quotas of native pods"
		ctx := context.Background()
		// Classic, withinit's pod limits memory 1Gi (its init container
		// 900Mi runs alone); native, the proxy's 1Gi runs beside it.
		lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "pod-bounds"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
			{Type: corev1.LimitTypePod, Max: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1500Mi")}}}}}
		if _, err := kc.CoreV1().LimitRanges("mix").Create(ctx, lr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Room for one more pod (the admission probe), not for withinit's
		// surge of 2.
		pods, err := kc.CoreV1().Pods("mix").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-surge-room"}, Spec: corev1.ResourceQuotaSpec{
			Hard: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(int64(len(pods.Items)+1), resource.DecimalSI)}}}
		if _, err := kc.CoreV1().ResourceQuotas("mix").Create(ctx, q, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the quota's usage", func(ctx context.Context) (bool, string) {
			got, err := kc.CoreV1().ResourceQuotas("mix").Get(ctx, q.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			_, ok := got.Status.Used[corev1.ResourcePods]
			return ok, fmt.Sprint(got.Status)
		})
		rep, r := runPrecheck(t, cluster)
		got := resultsOf(rep, check)
		if r.code != 1 || rep.Success {
			t.Errorf("precheck with the LimitRange and the quota: exit %d\n%s", r.code, strings.Join(failures(rep), "\n"))
		}
		var limited, quota bool
		for _, l := range got {
			switch {
			case strings.HasPrefix(l, "fail: mix/Deployment/withinit: ") && strings.Contains(l, "LimitRange pod-bounds: the pod: memory limit") &&
				strings.Contains(l, "above the maximum 1500Mi") && !strings.Contains(l, "classic pod too"):
				limited = true
			case strings.HasPrefix(l, "warn: mix/Deployment/withinit: ResourceQuota no-surge-room has no room for the restart's surge of 2 pod(s)") && strings.Contains(l, "short of pods 1"):
				quota = true
			case !strings.HasPrefix(l, "ok: "):
				t.Errorf("a finding elsewhere or unexpected: %s", l)
			}
		}
		if !limited || !quota {
			t.Errorf("resource results (want withinit refused by pod-bounds, its surge short of a pod in no-surge-room):\n%s", strings.Join(got, "\n"))
		}
		// migrate refuses withinit alone, says why, and exits 1; the quota's
		// warning refuses nothing.
		mr := meshaddon(t, "migrate", "-A", "--dry-run", "--kubeconfig", kcfg)
		if mr.code != 1 || !strings.Contains(mr.stdout, "refuse mix/Deployment/withinit (1 classic pods): refused by precheck: mix/Deployment/withinit: a new pod with a native istio-proxy would be refused: LimitRange pod-bounds") ||
			!strings.Contains(mr.stdout, "report mix/Pod/classic") || !strings.Contains(mr.stdout, "0 workload(s) would be restarted, 1 refused") ||
			!strings.Contains(mr.stderr, "precheck refused 1 workload(s)") {
			t.Errorf("migrate --dry-run with withinit refused: %s", mr)
		}
		// Both removed: the same cluster passes.
		_ = kc.CoreV1().LimitRanges("mix").Delete(ctx, lr.Name, metav1.DeleteOptions{})
		_ = kc.CoreV1().ResourceQuotas("mix").Delete(ctx, q.Name, metav1.DeleteOptions{})
		rep, r = runPrecheck(t, cluster)
		got = resultsOf(rep, check)
		if r.code != 0 || !rep.Success || !strings.Contains(strings.Join(got, "\n"), "ok: mix: ok: 1 workload(s), requests ") {
			t.Errorf("precheck without them: exit %d\n%s\nfailures:\n%s", r.code, strings.Join(got, "\n"), strings.Join(failures(rep), "\n"))
		}
		// The classic pod precheck measures "before" (precheck.ClassicPod of
		// the injector's native pod) is withinit's real classic pod: same
		// containers in the same order, same effective request.
		pods, err = kc.CoreV1().Pods("mix").List(ctx, metav1.ListOptions{LabelSelector: "app=withinit"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("withinit's pod: %v %d", err, len(pods.Items))
		}
		d, err := kc.AppsV1().Deployments("mix").Get(ctx, "withinit", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &corev1.Pod{ObjectMeta: *d.Spec.Template.ObjectMeta.DeepCopy(), Spec: *d.Spec.Template.Spec.DeepCopy()}
		tmpl.GenerateName, tmpl.Annotations[nativeAnnot] = "withinit-", "true"
		injected, err := kc.CoreV1().Pods("mix").Create(ctx, tmpl, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		model, real := precheck.ClassicPod(injected), &pods.Items[0]
		if m, g := names(model.Spec.InitContainers)+" | "+names(model.Spec.Containers), names(real.Spec.InitContainers)+" | "+names(real.Spec.Containers); m != g {
			t.Errorf("containers: precheck's classic pod %s, the real one %s", m, g)
		}
		if m, g := capacity.PodRequests(model), capacity.PodRequests(real); !m.Memory().Equal(*g.Memory()) || !m.Cpu().Equal(*g.Cpu()) {
			t.Errorf("effective requests: precheck's classic pod %v, the real one %v", m, g)
		}
		// Gone before the status test counts mix's pods.
		_ = kc.AppsV1().Deployments("mix").Delete(ctx, "withinit", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
		waitFor(t, time.Minute, "withinit's pods gone", func(ctx context.Context) (bool, string) {
			list, err := kc.CoreV1().Pods("mix").List(ctx, metav1.ListOptions{LabelSelector: "app=withinit"})
			return err == nil && len(list.Items) == 0, fmt.Sprint(err)
		})
	})

	t.Run("hazards: each found in its namespace alone and named, nothing left behind, only dry runs in the audit log", func(t *testing.T) {
		testHazards(t, cluster, kc)
	})

	t.Run("status classifies native, classic, overridden and uninjected pods as kubectl shows them", func(t *testing.T) {
		ns := "mix"
		// istiod injects native now.
		createPod(t, kc, ns, "native", "", nil)
		createPod(t, kc, ns, "overridden", "", map[string]string{nativeAnnot: "false"})
		createPod(t, kc, ns, "plain", "", map[string]string{"sidecar.istio.io/inject": "false"})
		want := map[string]string{"classic": "classic", "native": "native", "overridden": "classic", "plain": "none"}

		r := mustMeshaddon(t, "status", "-n", ns, "--kubeconfig", kcfg)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "MODE") {
			t.Fatalf("status header: %q", lines[0])
		}
		ours := map[string][]string{}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			ours[f[0]] = f
			if f[3] != want[f[0]] {
				t.Errorf("pod %s: mode %s, want %s (%s)", f[0], f[3], want[f[0]], l)
			}
		}
		for name := range want {
			if ours[name] == nil {
				t.Errorf("status lacks pod %s:\n%s", name, r.stdout)
			}
		}
		k := mustMeshaddon(t, "local", "kubectl", "--name", cluster, "--", "get", "pod", "-n", ns, "-o",
			"custom-columns=NAME:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name", "--no-headers")
		kl := strings.Split(strings.TrimSpace(k.stdout), "\n")
		if len(kl) != len(lines)-1 {
			t.Fatalf("kubectl shows %d pods, status %d", len(kl), len(lines)-1)
		}
		for _, l := range kl {
			f := strings.Fields(l)
			o := ours[f[0]]
			if o == nil || o[1] != f[1] || o[2] != f[2] {
				t.Errorf("kubectl: %v, status: %v", f, o)
			}
		}
		if o := ours["plain"]; o == nil || o[1] != "<none>" {
			t.Errorf("an uninjected pod without init containers shows %v, want <none>", o)
		}

		r = mustMeshaddon(t, "status", "-A", "--mode", "native", "--workloads", "-o", "json", "--kubeconfig", kcfg)
		var ws []struct {
			Kind, Namespace, Name string
			Native, Classic, None int
		}
		if err := json.Unmarshal([]byte(r.stdout), &ws); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, w := range ws {
			if w.Namespace == ns && w.Kind == "Pod" && w.Name == "native" && w.Native == 1 {
				found = true
			}
			if w.Native == 0 {
				t.Errorf("--mode native kept %+v", w)
			}
		}
		if !found {
			t.Errorf("--workloads lacks the bare pod mix/native: %s", r.stdout)
		}
	})

	t.Run("the manager's pod census counts as a listing does", func(t *testing.T) {
		counts := func(args ...string) (string, string) {
			r := meshaddon(t, append([]string{"precheck", "-o", "json", "--kubeconfig", kcfg}, args...)...)
			var rep precheckReport
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("precheck -o json %v: %v\n%s", args, err, r)
			}
			modes := resultsOf(rep, "pods by mode")
			if len(modes) == 0 {
				t.Fatalf("no pods by mode in %s", r.stdout)
			}
			// The first line ends with where its counts come from.
			first, source, _ := strings.Cut(modes[0], " (")
			modes[0] = first
			all := append(modes, resultsOf(rep, "per-pod overrides")...)
			all = append(all, resultsOf(rep, "jobs with classic sidecars")...)
			return strings.Join(all, "\n"), source
		}
		listed, source := counts("--list-pods")
		if !strings.HasPrefix(source, "listed by precheck") || !strings.Contains(listed, "asm-1-27: 1 native, 2 classic") || !strings.Contains(listed, "mix/overridden=false") {
			t.Fatalf("precheck --list-pods counts (%s):\n%s", source, listed)
		}
		waitFor(t, 30*time.Second, "the census equals the listing", func(context.Context) (bool, string) {
			got, source := counts()
			return got == listed && strings.HasPrefix(source, "counted by the add-on manager"), source + "\n" + got + "\nlisted:\n" + listed
		})
	})

	t.Run("bad input is a clear usage error", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"status", "-o", "xml"}, `unable to match a printer suitable for the output format "xml", allowed formats are:`},
			{[]string{"status", "-l", "app in (a"}, "invalid selector"},
			{[]string{"status", "-n", "nosuch"}, `namespace "nosuch" does not exist`},
			{[]string{"status", "--mode", "half"}, "want native, classic or none"},
			{[]string{"precheck", "-o", "xml"}, `unable to match a printer suitable for the output format "xml", allowed formats are:`},
			{[]string{"precheck", "--wait", "-1s"}, "--wait must not be negative"},
		} {
			r := meshaddon(t, append(c.args, "--kubeconfig", kcfg)...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("%v: want exit 2 with %q, got %s", c.args, c.want, r)
			}
		}
	})

	t.Run("an unreachable API server is exit 2 with one line", func(t *testing.T) {
		data, err := os.ReadFile(kcfg)
		if err != nil {
			t.Fatal(err)
		}
		dead := filepath.Join(t.TempDir(), "kubeconfig")
		cfg := string(data)
		i := strings.Index(cfg, "server: ")
		j := strings.Index(cfg[i:], "\n")
		cfg = cfg[:i] + "server: https://127.0.0.1:1" + cfg[i+j:]
		if err := os.WriteFile(dead, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		r := meshaddon(t, "precheck", "--kubeconfig", dead)
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "cannot reach the cluster") || strings.Contains(r.stderr, "goroutine") {
			t.Errorf("unreachable: %s", r)
		}
	})
}

// TestPrecheckInjectionSettings: unset, false and true each reported right.
// failures are the failing results of every check.
func failures(rep precheckReport) []string {
	var out []string
	for _, g := range rep.Groups {
		for _, c := range g.Checks {
			for _, r := range c.Results {
				if r.Status == "fail" {
					out = append(out, c.Name+": "+r.Message)
				}
			}
		}
	}
	return out
}

// createWithInit makes mix/withinit while istiod still injects classic: one
// pod on the system pool (the old pool's upgrade drains the others), an init
// container with a 900Mi limit, the proxy's memory pinned at 128Mi..1Gi, and
// maxSurge 2.
func createWithInit(t *testing.T, kc kubernetes.Interface) {
	t.Helper()
	labels := map[string]string{"app": "withinit"}
	mem := func(s string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(s)}
	}
	surge := intstr.FromInt32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "withinit", Namespace: "mix"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"sidecar.istio.io/proxyMemory": "128Mi", "sidecar.istio.io/proxyMemoryLimit": "1Gi"}},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{nodepool.PoolLabel: "system"},
					InitContainers: []corev1.Container{{Name: "setup", Image: "registry.k8s.io/pause:3.10",
						Resources: corev1.ResourceRequirements{Requests: mem("900Mi"), Limits: mem("900Mi")}}},
					Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
				},
			},
		},
	}
	if _, err := kc.AppsV1().Deployments("mix").Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "withinit's classic pod", func(ctx context.Context) (bool, string) {
		list, err := kc.CoreV1().Pods("mix").List(ctx, metav1.ListOptions{LabelSelector: "app=withinit"})
		if err != nil || len(list.Items) == 0 {
			return false, fmt.Sprint(err)
		}
		return container(list.Items[0].Spec.Containers, "istio-proxy") != nil, names(list.Items[0].Spec.Containers)
	})
}

func TestPrecheckInjectionSettings(t *testing.T) {
	const cluster = "unset"
	kc := upCluster(t, cluster, "--pool", "system="+currentVersion+":1", "--revision", "asm-1-27", "--native-sidecars", "unset", "--manager=false")
	check := func(want string) {
		t.Helper()
		rep, _ := runPrecheck(t, cluster)
		if got := strings.Join(resultsOf(rep, "ENABLE_NATIVE_SIDECARS"), "\n"); !strings.Contains(got, want) {
			t.Errorf("want %q, got %s", want, got)
		}
	}
	check("warn: istiod-asm-1-27: ENABLE_NATIVE_SIDECARS is unset, so Istio decides: native only if every node's kubelet is 1.33+; on this cluster it resolves to native")
	setIstiodEnv(t, kc, "istiod-asm-1-27", "false")
	check("fail: istiod-asm-1-27: ENABLE_NATIVE_SIDECARS=false: istiod injects classic sidecars")
	setIstiodEnv(t, kc, "istiod-asm-1-27", "true")
	check("ok: istiod-asm-1-27: ENABLE_NATIVE_SIDECARS=true")
}
