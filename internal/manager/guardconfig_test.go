package manager

import (
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/meshaddon/meshaddon/config"
)

// config/guard's configuration is the one the test bed registers, called
// through the Service instead of a loopback URL.
func TestConfigGuardWebhookMatches(t *testing.T) {
	var got admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(config.GuardWebhook, &got); err != nil {
		t.Fatal(err)
	}
	want := GuardWebhookConfiguration(GuardConfiguration, "aks-istio-system", admissionregistrationv1.WebhookClientConfig{
		Service: &admissionregistrationv1.ServiceReference{Namespace: "meshaddon-system", Name: "meshaddon-guard", Path: ptr.To(GuardPath)},
	})
	if !equality.Semantic.DeepEqual(&got, want) {
		gy, _ := yaml.Marshal(&got)
		wy, _ := yaml.Marshal(want)
		t.Errorf("config/guard/webhook.yaml:\n%s\nwant:\n%s", gy, wy)
	}
}
