package precheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testbed/hazard"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

func TestParseFailOpen(t *testing.T) {
	got := parseFailOpen([]byte(`# HELP apiserver_admission_webhook_fail_open_count [ALPHA] ...
apiserver_admission_webhook_fail_open_count{name="a.io",type="validating"} 2
apiserver_admission_webhook_fail_open_count{name="a.io",type="admit"} 1
apiserver_admission_webhook_fail_open_count{name="b.io",type="admit"} 4
apiserver_admission_webhook_rejection_count{name="a.io"} 9
`))
	if got["a.io"] != 3 || got["b.io"] != 4 || len(got) != 2 {
		t.Errorf("parsed %v", got)
	}
}

// A webhook that is down or slower than its timeoutSeconds, against a real
// API server and a real slow server on 127.0.0.1: with failurePolicy Fail
// the proof fails naming it, with Ignore (the API server goes on without
// it) the namespace is unproven naming it, never passed; each answer comes
// within the webhook's timeout and a few seconds.
func TestDownAndSlowWebhooks(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.Start(t)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc := clients.Kube
	srv := hazard.Server{Dir: t.TempDir()}
	sctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go func() { _ = srv.Serve(sctx) }()
	ca := waitServer(t, srv)
	slowURL, err := srv.URL("/slow")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "https://127.0.0.1:1/down"
	webhook := func(ns, url string, fp admissionv1.FailurePolicyType) {
		t.Helper()
		c := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: ns},
			Webhooks: []admissionv1.ValidatingWebhook{{Name: ns + ".test.io", ClientConfig: admissionv1.WebhookClientConfig{URL: &url, CABundle: ca},
				Rules: []admissionv1.RuleWithOperations{podRule(admissionv1.Create)}, SideEffects: ptr.To(admissionv1.SideEffectClassNone),
				FailurePolicy: &fp, TimeoutSeconds: ptr.To[int32](1), AdmissionReviewVersions: []string{"v1"},
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}}}}
		if _, err := kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"clean", "down-ignore", "slow-ignore", "slow-fail", "down-fail"} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	webhook("down-ignore", downURL, admissionv1.Ignore)
	webhook("slow-ignore", slowURL, admissionv1.Ignore)
	webhook("slow-fail", slowURL, admissionv1.Fail)
	webhook("down-fail", downURL, admissionv1.Fail) // last: once it acts, the API server has them all
	// A pod as the injector makes it: the proof judges the webhooks alone.
	pod := func() *corev1.Pod {
		p := ProbePod()
		p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy", Image: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
			StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)}}}}}
		return p
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := kc.CoreV1().Pods("down-fail").Create(ctx, pod(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil, nil
	}); err != nil {
		t.Fatal("the down webhook never acted")
	}
	val, err := kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Kube: kc}
	for _, c := range []struct{ ns, want string }{
		{"clean", ""},
		{"down-ignore", "warn: down-ignore: unproven: webhook validating down-ignore/down-ignore.test.io failed open (the API server's apiserver_admission_webhook_fail_open_count rose); with failurePolicy Ignore"},
		{"slow-ignore", "warn: slow-ignore: unproven: webhook validating slow-ignore/slow-ignore.test.io failed open"},
		{"slow-fail", "fail: slow-fail: webhook validating slow-fail/slow-fail.test.io (failurePolicy Fail) did not answer within its timeoutSeconds (1s), so the API server refuses every pod there"},
		{"down-fail", "fail: down-fail: webhook validating down-fail/down-fail.test.io (failurePolicy Fail) did not answer within its timeoutSeconds (1s)"},
	} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns, Labels: map[string]string{corev1.LabelMetadataName: c.ns}}}
		var whs []PodWebhook
		for _, w := range PodWebhooks(nil, val.Items) {
			if selects(w.NamespaceSelector, ns.Labels) {
				whs = append(whs, w)
			}
		}
		start := time.Now()
		r := dryRun(ctx, e, c.ns, pod(), c.ns, whs)
		took := time.Since(start)
		got := ""
		if r != nil {
			got = line(*r)
		}
		if !strings.HasPrefix(got, c.want) || (c.want != "" && !strings.Contains(got, "webhook="+c.ns+"/"+c.ns+".test.io")) {
			t.Errorf("%s:\n got %s\nwant %s", c.ns, got, c.want)
		}
		if took > 6*time.Second {
			t.Errorf("%s: the proof took %s, past the webhook's 1s timeout and a few seconds", c.ns, took)
		}
	}
}

// waitServer waits until srv answers over TLS and returns its CA bundle.
func waitServer(t *testing.T, srv hazard.Server) []byte {
	t.Helper()
	var ca []byte
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		var err error
		if ca, err = srv.CABundle(); err != nil {
			return false, nil
		}
		url, err := srv.URL("/healthz")
		if err != nil {
			return false, nil
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("the hazard server never answered: %v", err)
	}
	return ca
}

// The mesh's own webhooks (Istio's injector, the placement guard) are never
// blamed for a slow dry run (TestPrecheckAndStatus's slow webhook once
// named the guard): with failurePolicy Ignore and a timeout shorter than
// the run, only the other webhook is named.
func TestFailOpenLeavesMeshWebhooksOut(t *testing.T) {
	ignore := ptr.To(admissionv1.Ignore)
	guard := PodWebhook{Kind: "MutatingWebhookConfiguration", Configuration: "meshaddon-placement-guard", Name: "pods.guard.meshaddon.dev",
		FailurePolicy: ignore, TimeoutSeconds: ptr.To[int32](2), Mesh: true}
	slow := PodWebhook{Kind: "ValidatingWebhookConfiguration", Configuration: "slow", Name: "slow.example.com", FailurePolicy: ignore, TimeoutSeconds: ptr.To[int32](5)}
	strict := PodWebhook{Kind: "ValidatingWebhookConfiguration", Configuration: "strict", Name: "strict.example.com", TimeoutSeconds: ptr.To[int32](1)}
	w := &failOpenWatch{e: &Env{}, ignored: mayFailOpen([]PodWebhook{guard, slow, strict}), err: errors.New("metrics not readable in this test")}
	got, why := w.silent(context.Background(), 6*time.Second)
	if len(got) != 1 || got[0].Name != slow.Name {
		t.Errorf("blamed %v, want only %s (%s)", got, slow.Name, why)
	}
}
