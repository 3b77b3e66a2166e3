package precheck

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// On upstream Istio's layout the admission proof and the resource and
// lifecycle checks take the mesh's namespaces and workloads from
// meshdiscovery (issue 15), against a real API server (envtest) that
// evaluates Istio's own injector webhook selectors: istio-injection=enabled
// and a tag's namespaces are probed, each probe reaching the one webhook a
// real pod of the namespace would; workloads opted in by their own pod
// labels in an unlabelled namespace are tried as they are; nothing else.
// No istiod runs here: the webhooks only record which pods reach them, so
// every proof comes back without istio-proxy, naming where it was made.
func TestUpstreamMeshAgainstAnAPIServer(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.Start(t)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc := clients.Kube
	must := mustOK(t)

	// Which webhook (the URL path) saw which pod (namespace/workload) on a dry run.
	var mu sync.Mutex
	seen := map[string][]string{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err == nil && ptr.Deref(review.Request.DryRun, false) {
			mu.Lock()
			seen[strings.TrimPrefix(r.URL.Path, "/")] = append(seen[strings.TrimPrefix(r.URL.Path, "/")], review.Request.Namespace+"/"+pod.Labels["app"])
			mu.Unlock()
		}
		review.Response, review.Request = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}, nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	injector := func(name string, labels map[string]string, hooks []admissionregv1.MutatingWebhook) {
		for i := range hooks {
			url := srv.URL + "/" + hooks[i].Name
			hooks[i].ClientConfig = admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca}
			hooks[i].AdmissionReviewVersions = []string{"v1"}
		}
		must(kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Webhooks: hooks}, metav1.CreateOptions{}))
	}
	injector("istio-sidecar-injector", map[string]string{"istio.io/rev": "default"}, istioWebhooks("default", true))
	injector("istio-sidecar-injector-1-27-1", map[string]string{"istio.io/rev": "1-27-1"}, istioWebhooks("1-27-1", false))
	injector("istio-revision-tag-prod", map[string]string{"istio.io/rev": "1-27-1", "istio.io/tag": "prod"}, istioWebhooks("prod", false))

	deployment := func(ns, name string, labels, tmplLabels map[string]string, image string) {
		t.Helper()
		tl := map[string]string{"app": name}
		for k, v := range tmplLabels {
			tl[k] = v
		}
		must(kc.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tl},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: image}}}}}}, metav1.CreateOptions{}))
	}
	for ns, labels := range map[string]map[string]string{
		"istio-system": nil,
		"legacy":       {"istio-injection": "enabled"},
		"shop":         {"istio.io/rev": "prod"},
		"off":          {"istio-injection": "disabled"},
		"plain":        nil,
	} {
		must(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}))
	}
	// istioctl's layout: the default revision's istiod without istio.io/rev.
	deployment("istio-system", "istiod", map[string]string{"app": "istiod"}, nil, "docker.io/istio/pilot:1.27.1")
	deployment("istio-system", "istiod-1-27-1", map[string]string{"app": "istiod", "istio.io/rev": "1-27-1"}, nil, "docker.io/istio/pilot:1.27.1-distroless")
	deployment("legacy", "web", nil, nil, "pause")
	deployment("legacy", "optout", nil, map[string]string{"sidecar.istio.io/inject": "false"}, "pause")
	deployment("shop", "cart", nil, nil, "pause")
	deployment("off", "batch", nil, map[string]string{"istio.io/rev": "1-27-1"}, "pause")
	deployment("plain", "opted", nil, map[string]string{"istio.io/rev": "1-27-1"}, "pause")
	deployment("plain", "optedtrue", nil, map[string]string{"sidecar.istio.io/inject": "true"}, "pause")
	deployment("plain", "bystander", nil, nil, "pause")

	// The API server reads webhooks from an informer: wait until a dry run
	// in legacy reaches the default revision's webhook.
	probe := ProbePod()
	probe.Labels["app"] = "warmup"
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := kc.CoreV1().Pods("legacy").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		mu.Lock()
		defer mu.Unlock()
		return err == nil && len(seen["namespace.sidecar-injector.istio.io"]) > 0, nil
	}); err != nil {
		t.Fatalf("the injector webhooks never answered: %v", err)
	}
	mu.Lock()
	seen = map[string][]string{}
	mu.Unlock()

	// Every namespace, as precheck does without --mesh-namespace.
	e := &Env{Kube: kc, Client: clients.Client}
	res, err := checkAdmission(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	var proven []string
	for _, r := range res {
		if r.Status != Fail || !strings.Contains(r.Message, "without istio-proxy") {
			t.Errorf("unexpected result: %s", line(r))
			continue
		}
		where := strings.Join(r.Namespaces, ",")
		if r.Workload != "" {
			where += "/" + r.Workload
		}
		proven = append(proven, where+"→"+r.Revision)
	}
	sort.Strings(proven)
	want := "legacy→default plain/Deployment/optedtrue→default plain/Deployment/opted→1-27-1 shop→1-27-1" // sorted
	if strings.Join(proven, " ") != want {
		t.Errorf("proofs made: %v\nwant %s", proven, want)
	}
	mu.Lock()
	var reached []string
	for hook, pods := range seen {
		sort.Strings(pods)
		reached = append(reached, hook+": "+strings.Join(pods, ","))
	}
	mu.Unlock()
	sort.Strings(reached)
	// The probe (app label empty) and each workload reach only the webhook a
	// real pod of theirs would: never a rev webhook in legacy (no istio.io/rev
	// on the probe), the tag's own in shop.
	wantReached := []string{
		"namespace.sidecar-injector.istio.io: legacy/",
		"object.sidecar-injector.istio.io: plain/optedtrue",
		"rev.namespace.prod.sidecar-injector.istio.io: shop/",
		"rev.object.1-27-1.sidecar-injector.istio.io: plain/opted",
	}
	if strings.Join(reached, "\n") != strings.Join(wantReached, "\n") {
		t.Errorf("webhooks reached:\n%s\nwant:\n%s", strings.Join(reached, "\n"), strings.Join(wantReached, "\n"))
	}

	// The resource and lifecycle checks judge the same workloads, each
	// with the revision that injects it: not the opted-out one, not the one
	// istio-injection=disabled keeps out, not istiod's own namespace.
	mw, err := e.meshWorkloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tmpls []string
	for _, tm := range mw.templates {
		tmpls = append(tmpls, tm.namespace+"/"+tm.name+"→"+tm.revision)
	}
	sort.Strings(tmpls)
	if got, want := strings.Join(tmpls, " "), "legacy/Deployment/web→default plain/Deployment/optedtrue→default plain/Deployment/opted→1-27-1 shop/Deployment/cart→1-27-1"; got != want {
		t.Errorf("mesh workloads: %s\nwant %s", got, want)
	}

	// Istio's enableNamespacesByDefault adds the "auto." webhook to the
	// default revision's injector: unlabelled namespaces are in the mesh
	// then, and probed through it; kube-system and istiod's own are not.
	hooks, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "istio-sidecar-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	autoHook := hooks.Webhooks[len(hooks.Webhooks)-1].DeepCopy() // the object. webhook's client and rules
	autoHook.Name = "auto.sidecar-injector.istio.io"
	url := srv.URL + "/" + autoHook.Name
	autoHook.ClientConfig.URL = &url
	notExist := metav1.LabelSelectorOpDoesNotExist
	autoHook.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "istio-injection", Operator: notExist}, {Key: "istio.io/rev", Operator: notExist},
		{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}}}}
	autoHook.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "sidecar.istio.io/inject", Operator: notExist}, {Key: "istio.io/rev", Operator: notExist}}}
	hooks.Webhooks = append(hooks.Webhooks, *autoHook)
	must(kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, hooks, metav1.UpdateOptions{}))
	probe = ProbePod()
	probe.Labels["app"] = "warmup"
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := kc.CoreV1().Pods("plain").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		mu.Lock()
		defer mu.Unlock()
		return err == nil && len(seen[autoHook.Name]) > 0, nil
	}); err != nil {
		t.Fatalf("the auto webhook never answered: %v", err)
	}
	mu.Lock()
	seen = map[string][]string{}
	mu.Unlock()
	e = &Env{Kube: kc, Client: clients.Client}
	if res, err = checkAdmission(ctx, e); err != nil {
		t.Fatal(err)
	}
	probed := map[string]string{}
	for _, r := range res {
		for _, ns := range r.Namespaces {
			if r.Workload == "" {
				probed[ns] = r.Revision
			}
		}
	}
	if probed["plain"] != "default" || probed["legacy"] != "default" || probed["shop"] != "1-27-1" {
		t.Errorf("with enableNamespacesByDefault, probed %v; want plain by default too:\n%s", probed, lines(res))
	}
	for _, ns := range []string{"kube-system", "istio-system", "off"} {
		if _, ok := probed[ns]; ok {
			t.Errorf("with enableNamespacesByDefault, %s was probed:\n%s", ns, lines(res))
		}
	}
	mu.Lock()
	autoSaw := seen[autoHook.Name]
	mu.Unlock()
	if len(autoSaw) == 0 {
		t.Errorf("no probe reached %s: %v", autoHook.Name, seen)
	}
	lay, err := checkLayout(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lines(lay), "warn: enableNamespacesByDefault is on (webhook auto.sidecar-injector.istio.io in istio-sidecar-injector)") {
		t.Errorf("precheck's layout does not say enableNamespacesByDefault is on:\n%s", lines(lay))
	}
}
