package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/testbed/cluster"
)

// The checks that judge a namespace or a workload.
var scopedChecks = []string{"native sidecar admitted in each mesh namespace", "requests, limits and quotas of native pods",
	"vertical pod autoscalers", "holdApplicationUntilProxyStarts", "shutdown that depends on the proxy"}

// findings are the warnings and failures of the scoped checks, as
// "check | status | namespaces | webhooks, object, workload".
func findings(rep precheckReport) []string {
	var out []string
	for _, g := range rep.Groups {
		for _, c := range g.Checks {
			for _, want := range scopedChecks {
				if c.Name != want {
					continue
				}
				for _, r := range c.Results {
					if r.Status == "ok" || r.Status == "skip" {
						continue
					}
					var tags []string
					for _, w := range r.Webhooks {
						tags = append(tags, "webhook="+w.Configuration)
					}
					if r.Object != "" {
						tags = append(tags, "object="+r.Object)
					}
					if r.Workload != "" {
						tags = append(tags, "workload="+r.Workload)
					}
					out = append(out, fmt.Sprintf("%s | %s | %s | %s", c.Name, r.Status, strings.Join(r.Namespaces, ","), strings.Join(tags, " ")))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// hazardWeb is the same template in each namespace it is made in (one dry
// run measures it, in the namespace without a LimitRange or quota): no
// replicas, a surge of two.
func hazardWeb(t *testing.T, kc kubernetes.Interface, ns, name string, preStop bool) {
	t.Helper()
	labels := map[string]string{"app": name}
	c := corev1.Container{Name: "app", Image: "registry.k8s.io/pause:3.10"}
	if preStop {
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}}
	}
	surge := intstr.FromInt32(2)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}}}
	if _, err := kc.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// testHazards puts every hazard of the test bed into a namespace of its
// own and checks that precheck names each there and nowhere else (exit 1),
// that a down or slow webhook with failurePolicy Ignore leaves its
// namespace unproven within its timeout (exit 0, warnings), that the
// cluster passes once they are gone, that no pod or event is left, and
// that the API server's audit log shows precheck wrote nothing but dry
// runs.
func testHazards(t *testing.T, name string, kc kubernetes.Interface) {
	ctx := context.Background()
	nss := []string{"h-strip", "h-refuse", "h-side", "h-down", "h-slow", "h-limit", "h-quota", "h-vpa"}
	for _, ns := range nss {
		createNamespace(t, kc, ns, "asm-1-27")
	}
	t.Cleanup(func() {
		for _, ns := range nss {
			_ = kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	for _, ns := range []string{"h-limit", "h-quota", "h-vpa"} {
		hazardWeb(t, kc, ns, "web", false)
	}
	hazardWeb(t, kc, "h-vpa", "stopper", true)

	addHazard(t, name, "strip-restart-policy", "h-strip")
	addHazard(t, name, "refuse-restart-policy", "h-refuse")
	addHazard(t, name, "side-effects", "h-side")
	addHazard(t, name, "down", "h-down")
	addHazard(t, name, "slow", "h-slow")
	addHazard(t, name, "limitrange", "h-limit")
	addHazard(t, name, "quota", "h-quota")
	addHazard(t, name, "vpa", "h-vpa", "--target", "web")
	if l := mustMeshaddon(t, "local", "hazard", "list", "--name", name).stdout; strings.Count(l, "\n") != 9 || !strings.Contains(l, "ValidatingWebhookConfiguration/hazard-slow-h-slow") {
		t.Errorf("hazard list:\n%s", l)
	}

	admission, resources, vpa, shutdown := scopedChecks[0], scopedChecks[1], scopedChecks[2], scopedChecks[4]
	rep, r := runPrecheck(t, name)
	want := []string{
		admission + " | fail | h-down | webhook=hazard-down-h-down",
		admission + " | fail | h-limit | ",
		admission + " | fail | h-refuse | webhook=hazard-refuse-restart-policy-h-refuse",
		admission + " | fail | h-slow | webhook=hazard-slow-h-slow",
		admission + " | fail | h-strip | webhook=hazard-strip-restart-policy-h-strip",
		admission + " | warn | h-side | webhook=hazard-side-effects-h-side",
		resources + " | fail | h-limit | object=LimitRange/hazard-limitrange workload=Deployment/web",
		resources + " | warn | h-quota | object=ResourceQuota/hazard-quota workload=Deployment/web",
		shutdown + " | warn | h-vpa | workload=Deployment/stopper",
		vpa + " | warn | h-vpa | object=VerticalPodAutoscaler/hazard-vpa workload=Deployment/web",
	}
	sort.Strings(want)
	if got := findings(rep); r.code != 1 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("precheck with every hazard: exit %d, findings:\n%s\nwant:\n%s\nall:\n%s", r.code, strings.Join(got, "\n"), strings.Join(want, "\n"), strings.Join(resultsOf(rep, admission), "\n"))
	}
	for _, l := range resultsOf(rep, admission) {
		switch {
		case strings.Contains(l, "namespace=h-down") && !strings.Contains(l, "did not answer within its timeoutSeconds (2s)"),
			strings.Contains(l, "namespace=h-slow") && !strings.Contains(l, "did not answer within its timeoutSeconds (2s)"),
			strings.Contains(l, "namespace=h-side") && !strings.Contains(l, "unproven: mutating hazard-side-effects-h-side/side-effects.hazard.meshaddon.dev may have side effects"),
			strings.Contains(l, "namespace=h-limit") && !strings.Contains(l, "maximum cpu usage per Container is 1"),
			strings.Contains(l, "namespace=h-refuse") && !strings.Contains(l, "sets restartPolicy, which this policy does not allow"):
			t.Errorf("admission finding does not say why: %s", l)
		}
	}

	t.Run("a down or slow webhook with failurePolicy Ignore leaves its namespace unproven, within its timeout", func(t *testing.T) {
		for k, ns := range map[string]string{"strip-restart-policy": "h-strip", "refuse-restart-policy": "h-refuse", "side-effects": "h-side", "limitrange": "h-limit", "quota": "h-quota", "vpa": "h-vpa"} {
			removeHazard(t, name, k, ns)
		}
		removeHazard(t, name, "down", "h-down")
		removeHazard(t, name, "slow", "h-slow")
		addHazard(t, name, "down", "h-down", "--failure-policy", "Ignore")
		addHazard(t, name, "slow", "h-slow", "--failure-policy", "Ignore")
		start := time.Now()
		rep, r := runPrecheck(t, name)
		took := time.Since(start)
		want := []string{
			admission + " | warn | h-down | webhook=hazard-down-h-down",
			admission + " | warn | h-slow | webhook=hazard-slow-h-slow",
			shutdown + " | warn | h-vpa | workload=Deployment/stopper",
		}
		if got := findings(rep); r.code != 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("precheck with Ignore webhooks down and slow: exit %d, findings:\n%s\nwant:\n%s\nfailures: %v", r.code, strings.Join(got, "\n"), strings.Join(want, "\n"), failures(rep))
		}
		for _, l := range resultsOf(rep, admission) {
			if (strings.Contains(l, "namespace=h-down") || strings.Contains(l, "namespace=h-slow")) && !strings.Contains(l, "failed open") {
				t.Errorf("an Ignore webhook's namespace not unproven by its fail-open: %s", l)
			}
		}
		// Two webhooks of 2s each, and the rest of precheck.
		if took > 30*time.Second {
			t.Errorf("precheck took %s", took)
		}
	})

	t.Run("passes once the hazards are gone", func(t *testing.T) {
		removeHazard(t, name, "down", "h-down")
		removeHazard(t, name, "slow", "h-slow")
		_ = kc.AppsV1().Deployments("h-vpa").Delete(ctx, "stopper", metav1.DeleteOptions{})
		rep, r := runPrecheck(t, name)
		got := resultsOf(rep, admission)
		if r.code != 0 || len(findings(rep)) != 0 || len(got) != 1 || !strings.HasPrefix(got[0], "ok: ") {
			t.Errorf("precheck without hazards: exit %d\n%s\nfindings: %v", r.code, strings.Join(got, "\n"), findings(rep))
		}
		var proven, total int
		if _, err := fmt.Sscanf(strings.TrimPrefix(got[0], "ok: "), "%d of %d mesh namespaces", &proven, &total); err != nil || proven != total || total < len(nss) {
			t.Errorf("not every mesh namespace proven: %s", got[0])
		}
		if l := mustMeshaddon(t, "local", "hazard", "list", "--name", name).stdout; strings.TrimSpace(l) != "no hazard" {
			t.Errorf("hazard list after removing them all: %s", l)
		}
	})

	t.Run("nothing left behind: no pod, no event of a probe; the audit log shows only dry-run writes", func(t *testing.T) {
		for _, ns := range nss {
			pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil || len(pods.Items) != 0 {
				t.Errorf("pods in %s after precheck: %v %d", ns, err, len(pods.Items))
			}
			events, err := kc.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range events.Items {
				if e.InvolvedObject.Kind == "Pod" || strings.Contains(e.InvolvedObject.Name, "meshaddon-admission-probe") {
					t.Errorf("event in %s after precheck: %s %s: %s", ns, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
				}
			}
		}
		c, err := cluster.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(c.AuditLogPath())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
		dryRuns := 0
		for sc.Scan() {
			var ev struct {
				Verb, RequestURI, UserAgent string
				ObjectRef                   struct{ Resource, Namespace string }
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("audit line: %v: %s", err, sc.Text())
			}
			if !strings.HasPrefix(ev.UserAgent, "meshaddon-precheck") {
				continue
			}
			switch {
			case ev.Verb == "create" && ev.ObjectRef.Resource == "pods" && strings.Contains(ev.RequestURI, "dryRun=All"):
				dryRuns++
			case ev.Verb == "create" && ev.ObjectRef.Resource == "selfsubjectaccessreviews":
			default:
				t.Errorf("precheck wrote for real: %s %s", ev.Verb, ev.RequestURI)
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		if dryRuns == 0 {
			t.Errorf("the audit log shows no dry run by precheck (%s)", c.AuditLogPath())
		}
	})
}
