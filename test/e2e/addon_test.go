package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/itchyny/gojq"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/ship"
	"github.com/meshaddon/meshaddon/internal/testbed/cache"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

// The seed document's check of istiod, verbatim: its kubectl command, and its
// jq filter evaluated by gojq.
const (
	documentJQ      = `.items[].spec.template.spec.containers[].env[] | select(.name=="ENABLE_NATIVE_SIDECARS")`
	featureName     = "IstioNativeSidecarModePreview"
	managerSA       = "system:serviceaccount:meshaddon-system:meshaddon-manager"
	addonCluster    = "addon"
	addonPoolSystem = "system=" + currentVersion + ":2"
)

// istiodEnvByDocument runs `kubectl get deployment -l app=istiod -n
// aks-istio-system -o json | jq '<filter>'` and returns the values found.
func istiodEnvByDocument(t *testing.T, cluster string) []string {
	t.Helper()
	r := mustMeshaddon(t, "local", "kubectl", "--name", cluster, "--", "get", "deployment", "-l", "app=istiod", "-n", "aks-istio-system", "-o", "json")
	var doc any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("kubectl -o json: %v", err)
	}
	q, err := gojq.Parse(documentJQ)
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	it := q.Run(doc)
	for {
		v, ok := it.Next()
		if !ok {
			break
		}
		if err, ok := v.(error); ok {
			t.Fatalf("jq: %v", err)
		}
		m := v.(map[string]any)
		values = append(values, fmt.Sprint(m["value"]))
	}
	return values
}

func ctrlClientFor(t *testing.T, cluster string) client.Client {
	t.Helper()
	path := strings.TrimSpace(mustMeshaddon(t, "local", "kubeconfig", "--name", cluster).stdout)
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c.Client
}

func meshProfile(ctx context.Context, cl client.Client) (*v1alpha1.MeshProfile, error) {
	var p v1alpha1.MeshProfile
	err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p)
	return &p, err
}

func setMode(t *testing.T, cl client.Client, mode string) {
	t.Helper()
	p, err := meshProfile(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.NativeSidecarMode = mode
	if err := cl.Patch(context.Background(), p, patch); err != nil {
		t.Fatal(err)
	}
}

// waitEnv waits until the document's check shows want on every istiod.
func waitEnvByDocument(t *testing.T, cluster, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, within, "istiod "+"ENABLE_NATIVE_SIDECARS="+want, func(context.Context) (bool, string) {
		got := istiodEnvByDocument(t, cluster)
		for _, v := range got {
			if v != want {
				return false, strings.Join(got, ",")
			}
		}
		return len(got) > 0, strings.Join(got, ",")
	})
	return time.Since(start)
}

func waitConditionE2E(t *testing.T, cl client.Client, typ string, status metav1.ConditionStatus, msgHas ...string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%s=%s %v", typ, status, msgHas), func(ctx context.Context) (bool, string) {
		p, err := meshProfile(ctx, cl)
		if err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(p.Status.Conditions, typ)
		if c == nil {
			return false, "absent"
		}
		got := fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
		if c.Status != status {
			return false, got
		}
		for _, m := range msgHas {
			if !strings.Contains(c.Message, m) {
				return false, got
			}
		}
		return true, got
	})
}

func waitEventE2E(t *testing.T, kc kubernetes.Interface, reason string, msgHas ...string) {
	t.Helper()
	waitFor(t, 30*time.Second, "event "+reason, func(ctx context.Context) (bool, string) {
		evs, err := kc.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "reason=" + reason})
		if err != nil {
			return false, err.Error()
		}
	next:
		for _, e := range evs.Items {
			for _, m := range msgHas {
				if !strings.Contains(e.Message, m) {
					continue next
				}
			}
			return true, ""
		}
		return false, fmt.Sprintf("%d %s events, none mentioning %v", len(evs.Items), reason, msgHas)
	})
}

func checkPodsMode(t *testing.T, kc kubernetes.Interface, ns, app string, native bool) {
	t.Helper()
	for _, p := range runningPods(t, kc, ns, app) {
		init := names(p.Spec.InitContainers)
		if native && init != "istio-init,istio-proxy" {
			t.Errorf("pod %s: init %q, want native (istio-init,istio-proxy)", p.Name, init)
		}
		if !native && container(p.Spec.Containers, "istio-proxy") == nil {
			t.Errorf("pod %s: containers %q, want classic (istio-proxy among them)", p.Name, names(p.Spec.Containers))
		}
	}
}

func managerPID(t *testing.T, cluster string) int {
	t.Helper()
	return pidOf(t, cluster, "manager")
}

// pidOf reads the pid file of one of the cluster's daemons.
func pidOf(t *testing.T, cluster, daemon string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(stateDir, "clusters", cluster, daemon+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestAddon walks the seed document on an existing cluster with the add-on
// manager running, then the hazards the manager exists for.
func TestAddon(t *testing.T) {
	kc := upCluster(t, addonCluster, "--pool", addonPoolSystem, "--revision", "asm-1-27")
	cl := ctrlClientFor(t, addonCluster)
	ctx := context.Background()

	t.Run("an existing cluster starts classic", func(t *testing.T) {
		if got := istiodEnvByDocument(t, addonCluster); strings.Join(got, ",") != "false" {
			t.Errorf("the document's check shows %v, want false", got)
		}
		waitConditionE2E(t, cl, v1alpha1.ConditionFeatureRegistered, metav1.ConditionFalse, "meshaddon feature register --name "+featureName)
		waitConditionE2E(t, cl, v1alpha1.ConditionVersionsCompatible, metav1.ConditionTrue)
		createNamespace(t, kc, "shop", "asm-1-27")
		createDeployment(t, kc, "shop", "web", 2, nil, nil)
		waitRollout(t, kc, "shop", "web")
		checkPodsMode(t, kc, "shop", "web", false)
	})

	t.Run("the manager serves readiness on loopback, and metrics over HTTPS only to authorized scrapers", func(t *testing.T) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", managerPID(t, addonCluster)))
		if err != nil {
			t.Fatal(err)
		}
		flags := map[string]string{}
		args := strings.Split(string(cmdline), "\x00")
		for i := 0; i+1 < len(args); i++ {
			flags[args[i]] = args[i+1]
		}
		get := func(addr, path string) string {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatalf("GET %s%s: %v", addr, path, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s%s: %s", addr, path, resp.Status)
			}
			return string(body)
		}
		get(flags["--health-probe-bind-address"], "/readyz")
		get(flags["--health-probe-bind-address"], "/healthz")

		addr := flags["--metrics-bind-address"]
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("metrics bound to %q, want loopback", addr)
		}
		// The metrics server makes its self-signed certificate (two RSA
		// keys) while the manager reconciles: it may listen a little later.
		waitFor(t, 30*time.Second, "the metrics server listens", func(ctx context.Context) (bool, string) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return false, err.Error()
			}
			c.Close()
			return true, ""
		})
		// The certificate is the manager's own self-signed one: the scrape
		// skips verifying it, as a Prometheus without the CA would; what is
		// checked here is who may read.
		hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		scrape := func(token string) (int, string) {
			t.Helper()
			req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("scrape: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("metrics served over plain HTTP: %s", body)
			}
		}
		if code, body := scrape(""); code != http.StatusUnauthorized {
			t.Errorf("an unauthenticated scrape got %d, want 401: %.200s", code, body)
		}
		// controller-runtime's filter answers 500 when the TokenReview
		// reports an error, as it does for a malformed token: refused too.
		if code, body := scrape("not-a-token"); code == http.StatusOK {
			t.Errorf("a scrape with a bad token was served: %.200s", body)
		}
		// Two service accounts: one bound to config/'s metrics-reader role.
		kubectl := func(args ...string) string {
			t.Helper()
			return strings.TrimSpace(mustMeshaddon(t, append([]string{"local", "kubectl", "--name", addonCluster, "--"}, args...)...).stdout)
		}
		kubectl("apply", "-f", "../../config/rbac/metrics_reader_role.yaml")
		kubectl("create", "serviceaccount", "scraper", "-n", "meshaddon-system")
		kubectl("create", "serviceaccount", "stranger", "-n", "meshaddon-system")
		kubectl("create", "clusterrolebinding", "meshaddon-scraper", "--clusterrole=meshaddon-metrics-reader", "--serviceaccount=meshaddon-system:scraper")
		if code, body := scrape(kubectl("create", "token", "stranger", "-n", "meshaddon-system")); code != http.StatusForbidden {
			t.Errorf("a scrape by a service account without the role got %d, want 403: %.200s", code, body)
		}
		code, metrics := scrape(kubectl("create", "token", "scraper", "-n", "meshaddon-system"))
		if code != http.StatusOK {
			t.Fatalf("a scrape by the metrics reader got %d: %.200s", code, metrics)
		}
		for _, want := range []string{`meshaddon_revision_native_sidecars{revision="asm-1-27"} 0`, `meshaddon_profile_reconciles_total{result="success"}`, "controller_runtime_reconcile_total"} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %q", want)
			}
		}
		// Every metric config/monitoring's alerts and dashboard read is
		// exported, each with a series (a family with none is not printed).
		names, err := ship.MonitoringMetrics("../..")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `[{ ]`).MatchString(metrics) {
				t.Errorf("config/monitoring reads %s, which the manager does not export", name)
			}
		}
	})

	t.Run("register, refresh, reconcile: istiod injects native and restarted pods are native", func(t *testing.T) {
		r := mustMeshaddon(t, "feature", "register", "--name", featureName, "--kubeconfig", kubeconfigOf(t, addonCluster))
		var f struct {
			Name       string
			Properties struct{ State string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &f); err != nil || f.Name != "Microsoft.ContainerService/"+featureName {
			t.Fatalf("feature register printed %q (%v)", r.stdout, err)
		}
		if f.Properties.State != "Registering" && f.Properties.State != "Registered" {
			t.Errorf("state after register: %s", f.Properties.State)
		}
		waitFor(t, 30*time.Second, "feature Registered", func(context.Context) (bool, string) {
			r := mustMeshaddon(t, "feature", "show", "--name", featureName, "--kubeconfig", kubeconfigOf(t, addonCluster))
			_ = json.Unmarshal([]byte(r.stdout), &f)
			return f.Properties.State == "Registered", f.Properties.State
		})
		// Registered alone changes nothing: the provider must be refreshed.
		if got := istiodEnvByDocument(t, addonCluster); strings.Join(got, ",") != "false" {
			t.Errorf("istiod changed before the provider refresh: %v", got)
		}
		pidBefore := istiodPID(t, addonCluster, "istiod-asm-1-27")
		mustMeshaddon(t, "provider", "register", "--kubeconfig", kubeconfigOf(t, addonCluster))
		// The manager acts on the refresh as soon as it sees it, so by the
		// time reconcile runs the change may already be made: it reports
		// either way (TestReport covers the wording of a change).
		r = mustMeshaddon(t, "reconcile", "--timeout", "2m", "--kubeconfig", kubeconfigOf(t, addonCluster))
		if !strings.Contains(r.stdout, "asm-1-27: now native sidecars (ENABLE_NATIVE_SIDECARS false → true") &&
			!strings.Contains(r.stdout, "asm-1-27: native sidecars, unchanged (ENABLE_NATIVE_SIDECARS=true)") {
			t.Errorf("reconcile did not report asm-1-27 native:\n%s", r.stdout)
		}
		if got := istiodEnvByDocument(t, addonCluster); strings.Join(got, ",") != "true" {
			t.Fatalf("the document's check shows %v after reconcile, want true", got)
		}
		if pid := istiodPID(t, addonCluster, "istiod-asm-1-27"); pid == pidBefore {
			t.Errorf("the runner did not restart istiod (pid %d)", pid)
		}
		restart(t, kc, "shop", "web")
		waitRollout(t, kc, "shop", "web")
		checkPodsMode(t, kc, "shop", "web", true)
		waitConditionE2E(t, cl, v1alpha1.ConditionNativeSidecarsEnabled, metav1.ConditionTrue)
	})

	t.Run("an old node joining switches to classic and warns, an upgrade switches back", func(t *testing.T) {
		mustMeshaddon(t, "local", "nodepool", "add", "old", "--name", addonCluster, "--version", oldVersion, "--count", "1")
		took := waitEnvByDocument(t, addonCluster, "false", 20*time.Second)
		t.Logf("istiod env flipped %s after the pool was Ready (bench/ measures node join → flip)", took.Round(time.Millisecond))
		oldNode := poolNodes(t, kc, "old")[0]
		waitEventE2E(t, kc, "OldKubeletNodes", oldNode)
		waitConditionE2E(t, cl, v1alpha1.ConditionVersionsCompatible, metav1.ConditionFalse, "pool old", oldNode, oldVersion)

		mustMeshaddon(t, "local", "nodepool", "upgrade", "old", "--name", addonCluster, "--version", currentVersion)
		waitEnvByDocument(t, addonCluster, "true", 30*time.Second)
		waitConditionE2E(t, cl, v1alpha1.ConditionVersionsCompatible, metav1.ConditionTrue)
		mustMeshaddon(t, "local", "nodepool", "delete", "old", "--name", addonCluster)
	})

	t.Run("Enabled with an old node stays native, is Degraded, and the hang it warns of is real", func(t *testing.T) {
		mustMeshaddon(t, "local", "nodepool", "add", "legacy", "--name", addonCluster, "--version", oldVersion, "--count", "1")
		waitEnvByDocument(t, addonCluster, "false", 20*time.Second)
		setMode(t, cl, "Enabled")
		waitEnvByDocument(t, addonCluster, "true", 20*time.Second)
		legacy := poolNodes(t, kc, "legacy")[0]
		waitConditionE2E(t, cl, v1alpha1.ConditionDegraded, metav1.ConditionTrue, "hang in Init", legacy)
		waitEventE2E(t, kc, "NativeSidecarsOnOldNodes", legacy)
		// Wait for the restarted istiod to inject native, then place one pod
		// on the old node and one on a current node.
		waitFor(t, time.Minute, "istiod injects native", func(ctx context.Context) (bool, string) {
			p, err := tryDryRunPod(ctx, kc, "shop", nil)
			if err != nil {
				return false, err.Error()
			}
			return names(p.Spec.InitContainers) == "istio-init,istio-proxy", names(p.Spec.InitContainers)
		})
		createPod(t, kc, "shop", "on-legacy", legacy, nil)
		createPod(t, kc, "shop", "on-current", poolNodes(t, kc, systemPool)[0], nil)
		waitFor(t, 30*time.Second, "pod on-current Running", func(ctx context.Context) (bool, string) {
			p, err := kc.CoreV1().Pods("shop").Get(ctx, "on-current", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return p.Status.Phase == corev1.PodRunning && podReady(p), string(p.Status.Phase)
		})
		time.Sleep(3 * time.Second) // long enough for any stage to have moved it
		p, err := kc.CoreV1().Pods("shop").Get(ctx, "on-legacy", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase != corev1.PodPending || podReady(p) {
			t.Errorf("native pod on the %s node: phase %s, ready %t; want it hanging in Init", oldVersion, p.Status.Phase, podReady(p))
		}
		for _, name := range []string{"on-legacy", "on-current"} {
			_ = kc.CoreV1().Pods("shop").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
		mustMeshaddon(t, "local", "nodepool", "delete", "legacy", "--name", addonCluster)
		waitConditionE2E(t, cl, v1alpha1.ConditionDegraded, metav1.ConditionFalse)
	})

	t.Run("a hand edit of istiod's env is put back", func(t *testing.T) {
		setIstiodEnv(t, kc, "istiod-asm-1-27", "false")
		took := waitEnvByDocument(t, addonCluster, "true", 20*time.Second)
		t.Logf("hand edit reverted within %s", took.Round(time.Millisecond))
		waitEventE2E(t, kc, "DriftReverted", "istiod-asm-1-27", "changed to false")
	})

	t.Run("Disabled is classic whatever the versions", func(t *testing.T) {
		setMode(t, cl, "Disabled")
		waitEnvByDocument(t, addonCluster, "false", 20*time.Second)
		waitConditionE2E(t, cl, v1alpha1.ConditionNativeSidecarsEnabled, metav1.ConditionFalse, "Disabled")
	})

	t.Run("mesh enable installs a revision and the manager configures it", func(t *testing.T) {
		setMode(t, cl, "Auto")
		mustMeshaddon(t, "mesh", "enable", "--revision", "asm-1-26", "--kubeconfig", kubeconfigOf(t, addonCluster))
		waitDeploymentAvailable(t, kc, istioNS, "istiod-asm-1-26")
		waitEnvByDocument(t, addonCluster, "true", time.Minute)
		r := mustMeshaddon(t, "mesh", "get-revisions", "--kubeconfig", kubeconfigOf(t, addonCluster))
		for _, want := range []string{"asm-1-26", "asm-1-27", "native"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("get-revisions lacks %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("the Helm chart, rendered by helm and applied server-side, grants config/rbac's rights", func(t *testing.T) {
		helm := helmBinary(t)
		out, err := exec.Command(helm, "template", "meshaddon", "../../charts/meshaddon", "--kube-version", cache.KubernetesVersion, "--namespace", "meshaddon-system", "--include-crds").Output()
		if err != nil {
			t.Fatalf("helm template: %v", err)
		}
		// Not under t.TempDir(): kubectl -f splits its argument at the
		// commas of this test's name.
		dir, err := os.MkdirTemp("", "meshaddon-chart-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		rendered := filepath.Join(dir, "chart.yaml")
		if err := os.WriteFile(rendered, out, 0o644); err != nil {
			t.Fatal(err)
		}
		canListNodes := func() string {
			return strings.TrimSpace(meshaddon(t, "local", "kubectl", "--name", addonCluster, "--", "auth", "can-i", "--as", managerSA, "list", "nodes").stdout)
		}
		if got := canListNodes(); got != "no" {
			t.Fatalf("the manager's service account may list nodes (%q) before any RBAC is applied: the check below would prove nothing", got)
		}
		mustMeshaddon(t, "local", "kubectl", "--name", addonCluster, "--", "apply", "--server-side", "--field-manager=helm-chart", "-f", rendered)
		checkManagerRBAC(t)

		// Take the chart's RBAC away again, so the next step proves
		// config/default's on its own.
		out, err = exec.Command(helm, "template", "meshaddon", "../../charts/meshaddon", "--kube-version", cache.KubernetesVersion, "--namespace", "meshaddon-system", "--show-only", "templates/rbac.yaml").Output()
		if err != nil {
			t.Fatalf("helm template --show-only templates/rbac.yaml: %v", err)
		}
		if err := os.WriteFile(rendered, out, 0o644); err != nil {
			t.Fatal(err)
		}
		mustMeshaddon(t, "local", "kubectl", "--name", addonCluster, "--", "delete", "-f", rendered)
		waitFor(t, 10*time.Second, "the chart's RBAC is gone", func(context.Context) (bool, string) {
			got := canListNodes()
			return got == "no", "can-i list nodes: " + got
		})
	})

	t.Run("config/default applies on the real API server with least-privilege RBAC", func(t *testing.T) {
		mustMeshaddon(t, "local", "kubectl", "--name", addonCluster, "--", "apply", "-k", "../../config/default")
		checkManagerRBAC(t)
		// The manager does write leader election's events there.
		evs, err := kc.CoreV1().Events("meshaddon-system").List(ctx, metav1.ListOptions{FieldSelector: "reason=LeaderElection"})
		if err != nil || len(evs.Items) == 0 {
			t.Errorf("no LeaderElection event in meshaddon-system (%v): the Role's events right there would be unused", err)
		}
	})

	t.Run("two managers: one leads, the other takes over after kill -9 and converges", func(t *testing.T) {
		// A second instance, running as the manager's service account: it
		// also proves config/rbac is enough for the manager to work.
		logPath := filepath.Join(t.TempDir(), "standby.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		standby := exec.Command(meshaddonBin, "manager", "--kubeconfig", kubeconfigOf(t, addonCluster), "--as", managerSA,
			"--leader-election-namespace", "meshaddon-system", "--leader-election-lease-duration", "6s",
			"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--feature-registration-delay", "3s")
		standby.Stdout, standby.Stderr = logFile, logFile
		if err := standby.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = standby.Process.Kill(); _, _ = standby.Process.Wait() }()
		time.Sleep(5 * time.Second)
		if log, _ := os.ReadFile(logPath); strings.Contains(string(log), "successfully acquired lease") {
			t.Fatalf("the standby acquired the lease while the leader runs:\n%s", log)
		}

		// Kill the leader right after asking for a change: it may be in the
		// middle of that reconcile. The change after it must come from the
		// standby (istiod is native now; Disabled needs a write).
		setMode(t, cl, "Enabled")
		if err := syscall.Kill(managerPID(t, addonCluster), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		setMode(t, cl, "Disabled")
		waitFor(t, 30*time.Second, "the standby takes the lease", func(context.Context) (bool, string) {
			log, _ := os.ReadFile(logPath)
			return strings.Contains(string(log), "successfully acquired lease"), "not yet"
		})
		waitEnvByDocument(t, addonCluster, "false", 30*time.Second)
		waitFor(t, 30*time.Second, "the profile reconciled at its generation", func(ctx context.Context) (bool, string) {
			p, err := meshProfile(ctx, cl)
			if err != nil {
				return false, err.Error()
			}
			return p.Status.ObservedGeneration == p.Generation, fmt.Sprintf("observed %d of %d", p.Status.ObservedGeneration, p.Generation)
		})

		// local up restarts the killed manager, which now stands by.
		r := mustMeshaddon(t, "local", "up", "--name", addonCluster, "--pool", addonPoolSystem, "--revision", "asm-1-27")
		if !strings.Contains(r.stdout, "started the add-on manager") {
			t.Errorf("up did not restart the manager:\n%s", r.stdout)
		}
	})
}

// checkManagerRBAC asks the API server, with kubectl auth can-i, what the
// manager's service account may do: exactly what config/rbac grants (the
// Helm chart's RBAC is generated from it).
func checkManagerRBAC(t *testing.T) {
	t.Helper()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"patch", "deployments", "-n", "aks-istio-system"}, "yes"},
		{[]string{"list", "nodes"}, "yes"},
		{[]string{"update", "meshprofiles.meshaddon.dev", "--subresource=status"}, "yes"},
		{[]string{"patch", "deployments", "-n", "kube-system"}, "no"},
		{[]string{"patch", "deployments", "-n", "shop"}, "no"},
		// The pod census reads pods and Jobs, and nothing else of them.
		{[]string{"watch", "pods", "-n", "shop"}, "yes"},
		{[]string{"list", "jobs.batch", "-A"}, "yes"},
		{[]string{"delete", "pods", "-n", "shop"}, "no"},
		{[]string{"patch", "pods", "-n", "shop"}, "no"},
		{[]string{"get", "secrets", "-n", "shop"}, "no"},
		{[]string{"update", "nodes"}, "no"},
		// The placement guard: one label on nodes (a merge patch), and
		// a read of its one webhook configuration.
		{[]string{"patch", "nodes"}, "yes"},
		{[]string{"delete", "nodes"}, "no"},
		{[]string{"get", "mutatingwebhookconfigurations.admissionregistration.k8s.io/" + manager.GuardConfiguration}, "yes"},
		{[]string{"get", "mutatingwebhookconfigurations.admissionregistration.k8s.io/istio-sidecar-injector-asm-1-27-aks-istio-system"}, "no"},
		{[]string{"patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/" + manager.GuardConfiguration}, "yes"},
		{[]string{"patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/istio-sidecar-injector-asm-1-27-aks-istio-system"}, "no"},
		{[]string{"get", "secrets/" + manager.GuardCertSecret, "-n", "meshaddon-system"}, "yes"},
		{[]string{"get", "secrets", "-n", "meshaddon-system"}, "no"},
		{[]string{"update", "secrets/other", "-n", "meshaddon-system"}, "no"},
		{[]string{"update", "meshprofiles.meshaddon.dev"}, "no"},
		// The metrics server checks scrapers with the API server.
		{[]string{"create", "tokenreviews.authentication.k8s.io"}, "yes"},
		{[]string{"create", "subjectaccessreviews.authorization.k8s.io"}, "yes"},
		// Events: about the profile in default, leader election's on
		// the lease in meshaddon-system, nowhere else.
		{[]string{"create", "events", "-n", "default"}, "yes"},
		{[]string{"create", "events", "-n", "meshaddon-system"}, "yes"},
		{[]string{"create", "events", "-n", "shop"}, "no"},
	} {
		args := append([]string{"local", "kubectl", "--name", addonCluster, "--", "auth", "can-i", "--as", managerSA}, c.args...)
		r := meshaddon(t, args...)
		if got := strings.TrimSpace(r.stdout); got != c.want {
			t.Errorf("can-i %v: %q, want %q (%s)", c.args, got, c.want, r.stderr)
		}
	}
}

// helmBinary is helm, built once into the test bed's cache at the pinned
// version (internal/testbed/cache.HelmVersion).
func helmBinary(t *testing.T) string {
	t.Helper()
	c, err := cache.New(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := c.Ensure(context.Background(), cache.Helm)
	if err != nil {
		t.Fatal(err)
	}
	return bins.Path("helm")
}

// TestAddonNewCluster: a cluster set up qualifying gets native sidecars from
// the start, with no feature registered.
func TestAddonNewCluster(t *testing.T) {
	kc := upCluster(t, "fresh", "--pool", "system="+currentVersion+":1", "--revision", "asm-1-27", "--new-cluster")
	cl := ctrlClientFor(t, "fresh")
	if got := istiodEnvByDocument(t, "fresh"); strings.Join(got, ",") != "true" {
		t.Errorf("the document's check shows %v on a new cluster, want true", got)
	}
	p, err := meshProfile(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.CreatedQualifying == nil || !*p.Status.CreatedQualifying {
		t.Errorf("createdQualifying = %v", p.Status.CreatedQualifying)
	}
	createNamespace(t, kc, "shop", "asm-1-27")
	createDeployment(t, kc, "shop", "web", 1, map[string]string{nodepool.PoolLabel: systemPool}, nil)
	waitRollout(t, kc, "shop", "web")
	checkPodsMode(t, kc, "shop", "web", true)
}

func kubeconfigOf(t *testing.T, cluster string) string {
	t.Helper()
	return filepath.Join(stateDir, "clusters", cluster, "kubeconfig")
}
