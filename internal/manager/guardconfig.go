package manager

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
)

// GuardWebhookConfiguration is the guard's MutatingWebhookConfiguration:
// pod creations in mesh namespaces (an istio.io/rev label), never in
// kube-system or the mesh's own namespace. failurePolicy Ignore: the guard
// never blocks a pod; the manager watches its health and falls back to
// classic when it cannot work. reinvocationPolicy IfNeeded: when the
// injector runs after it and changes the pod, the guard sees the result.
func GuardWebhookConfiguration(name, meshNamespace string, cc admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "meshaddon"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         inventory.GuardWebhook,
			ClientConfig: cc,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: inventory.RevisionLabel, Operator: metav1.LabelSelectorOpExists},
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", meshNamespace}},
			}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			TimeoutSeconds:          ptr.To[int32](2),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// WriteLoopbackGuardCert writes a serving certificate for 127.0.0.1, valid
// for maxAge (0: a year), as tls.crt and tls.key into dir, and returns the
// caBundle that trusts it. The webhook server reloads changed files.
func WriteLoopbackGuardCert(dir string, maxAge time.Duration) ([]byte, error) {
	crt, key, err := certutil.GenerateSelfSignedCertKeyWithOptions(certutil.SelfSignedCertKeyOptions{
		Host: "127.0.0.1", AlternateIPs: []net.IP{net.ParseIP("127.0.0.1")}, MaxAge: maxAge,
	})
	if err != nil {
		return nil, fmt.Errorf("issue the guard's serving certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Key first: the server reloads on the certificate's change.
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), crt, 0o600); err != nil {
		return nil, err
	}
	return crt, nil
}
