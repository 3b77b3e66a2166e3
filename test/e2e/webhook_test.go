package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// hostileWebhook serves, on 127.0.0.1 with TLS, a mutating webhook that
// does what operators built on an old k8s.io/api do to pods: it drops
// restartPolicy from every init container (istio/istio#49221). It is
// registered for pod creation in namespaces labelled nsSelector (and, when
// podSelector is set, for pods so labelled only), under a
// configuration name that sorts after Istio's injector, so it runs after
// injection. Everything is removed when the test ends.
func hostileWebhook(t *testing.T, kc kubernetes.Interface, name string, nsSelector, podSelector map[string]string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var patch []map[string]string
		for i, c := range pod.Spec.InitContainers {
			if c.RestartPolicy != nil {
				patch = append(patch, map[string]string{"op": "remove", "path": fmt.Sprintf("/spec/initContainers/%d/restartPolicy", i)})
			}
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		if len(patch) > 0 {
			resp.Patch, _ = json.Marshal(patch)
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
		}
		review.Response, review.Request = resp, nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	url := srv.URL + "/mutate"
	cfg := &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    "strip.hostile.test",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create}, Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: nsSelector},
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if podSelector != nil {
		cfg.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: podSelector}
	}
	ctx := context.Background()
	if _, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete webhook %s: %v", name, err)
		}
	})
}
