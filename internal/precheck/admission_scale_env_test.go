package precheck

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// The admission proof's cost on a real API server (envtest) with many mesh
// namespaces (issue 13's benchmark: 1,000 namespaces in 10 classes): it
// reads the workloads' templates with one cluster-wide list, not three per
// namespace, and its dry runs (one per class, one per sampled template)
// overlap instead of queueing, as a slow webhook on 127.0.0.1 shows.
func TestAdmissionProofCostDoesNotGrowWithNamespaces(t *testing.T) {
	ctx := context.Background()
	cfg := rest.CopyConfig(testenv.Start(t))
	var perNamespaceLists, clusterLists atomic.Int64
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && r.URL.Query().Get("watch") == "" {
				for _, res := range []string{"deployments", "statefulsets", "daemonsets"} {
					switch {
					case strings.HasPrefix(r.URL.Path, "/apis/apps/v1/namespaces/c") && strings.HasSuffix(r.URL.Path, "/"+res): // a mesh namespace
						perNamespaceLists.Add(1)
					case r.URL.Path == "/apis/apps/v1/"+res:
						clusterLists.Add(1)
					}
				}
			}
			return rt.RoundTrip(r)
		})
	})
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc := clients.Kube
	must := mustOK(t)

	// A webhook server that takes 300 ms per review and records how many
	// it has in flight at once.
	var inFlight, maxInFlight, reviews atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		if ptr.Deref(review.Request.DryRun, false) {
			reviews.Add(1)
			time.Sleep(300 * time.Millisecond)
		}
		review.Response, review.Request = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}, nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	// 3 webhooks tell 8 classes of namespaces apart by the bits of their
	// class; the third also selects pods labelled tier=web.
	const classes, perClass = 8, 5
	// Mutating: the API server calls those of one request one after
	// another, so more than one in flight means requests overlapped.
	var hooks []admissionregv1.MutatingWebhook
	for k := 0; k < 3; k++ {
		url := srv.URL + "/mutate"
		h := admissionregv1.MutatingWebhook{Name: fmt.Sprintf("bit%d.bench.test", k), ClientConfig: admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   []admissionregv1.RuleWithOperations{podRule(admissionregv1.Create)},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{fmt.Sprintf("bit%d", k): "on"}},
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: ptr.To[int32](10)}
		if k == 2 {
			h.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}
		}
		hooks = append(hooks, h)
	}
	must(kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bits"}, Webhooks: hooks}, metav1.CreateOptions{}))

	// The revision's istiod (its labels are all the proof reads of it).
	must(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{}))
	deployment := func(ns, name string, labels, tmplLabels map[string]string) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: tmplLabels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tmplLabels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "pause"}}}}}}
	}
	must(kc.AppsV1().Deployments("istio-system").Create(ctx, deployment("istio-system", "istiod-asm-1-27",
		map[string]string{"app": "istiod", "istio.io/rev": "asm-1-27"}, map[string]string{"app": "istiod"}), metav1.CreateOptions{}))
	for c := 0; c < classes; c++ {
		for i := 0; i < perClass; i++ {
			ns := fmt.Sprintf("c%d-%d", c, i)
			labels := map[string]string{"istio.io/rev": "asm-1-27"}
			for k := 0; k < 3; k++ {
				if c&(1<<k) != 0 {
					labels[fmt.Sprintf("bit%d", k)] = "on"
				}
			}
			must(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}))
			must(kc.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "web", nil, map[string]string{"app": "web", "tier": "web"}), metav1.CreateOptions{}))
			must(kc.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "api", nil, map[string]string{"app": "api"}), metav1.CreateOptions{}))
		}
	}
	// The API server reads webhooks and namespaces from informers: wait
	// until a dry run in the last class meets all three.
	web := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Labels: map[string]string{"tier": "web"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "pause"}}}}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		before := reviews.Load()
		_, err := kc.CoreV1().Pods(fmt.Sprintf("c%d-0", classes-1)).Create(ctx, web, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && reviews.Load()-before == 3, nil
	}); err != nil {
		t.Fatalf("the webhooks never all answered: %v", err)
	}
	perNamespaceLists.Store(0)
	clusterLists.Store(0)
	reviews.Store(0)
	maxInFlight.Store(0)

	e := &Env{Kube: kc, Client: clients.Client, MeshNamespace: "istio-system"}
	start := time.Now()
	res, err := checkAdmission(ctx, e)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// No istiod injects here: every probe comes back without istio-proxy,
	// one failure per class and one per sampled template (tier=web in the
	// four classes whose third webhook selects on it).
	fails := 0
	for _, r := range res {
		if r.Status == Fail && strings.Contains(r.Message, "without istio-proxy") {
			fails++
		}
	}
	if want := classes + classes/2; fails != want {
		var lines []string
		for _, r := range res {
			lines = append(lines, string(r.Status)+": "+r.Message)
		}
		t.Errorf("%d probes failed as uninjected, want %d (one per class, one per sampled template):\n%s", fails, want, strings.Join(lines, "\n"))
	}
	t.Logf("%d mesh namespaces in %d classes: %s, %d dry-run reviews at the webhook, at most %d at once; workload lists: %d cluster-wide, %d per namespace",
		classes*perClass, classes, took.Round(time.Millisecond), reviews.Load(), maxInFlight.Load(), clusterLists.Load(), perNamespaceLists.Load())
	if n := perNamespaceLists.Load(); n != 0 {
		t.Errorf("the proof listed workloads namespace by namespace (%d lists for %d namespaces): want one cluster-wide list of each kind", n, classes*perClass)
	}
	if n := clusterLists.Load(); n != 3 {
		t.Errorf("%d cluster-wide lists of Deployments, StatefulSets and DaemonSets, want 3", n)
	}
	if maxInFlight.Load() < 2 {
		t.Errorf("the dry runs ran one after another (at most %d at the webhook at once): want them to overlap", maxInFlight.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
