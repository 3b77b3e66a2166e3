package precheck

import (
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshaddon/meshaddon/internal/meshversion"
)

func istiodDep(ns, name, rev, image string, env ...corev1.EnvVar) *appsv1.Deployment {
	labels := map[string]string{"app": "istiod"}
	if rev != "" {
		labels["istio.io/rev"] = rev
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "discovery", Image: image, Env: env}},
		}}},
		Status: appsv1.DeploymentStatus{Replicas: 1, AvailableReplicas: 1},
	}
}

func kubeletNode(name, kubelet string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{meshversion.PoolLabel: strings.TrimRight(name, "-0123456789")}},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: kubelet},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

// injector is a revision's injection webhook configuration, as istiod
// leaves it (with a caBundle).
func injector(name, rev string) *admissionv1.MutatingWebhookConfiguration {
	return &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"istio.io/rev": rev}},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:         "rev.namespace.sidecar-injector.istio.io",
			ClientConfig: admissionv1.WebhookClientConfig{CABundle: []byte("ca")},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}},
	}
}

// report runs the checks of groups and flattens them to
// "status: message" lines (details indented).
func report(t *testing.T, e *Env, groups ...string) string {
	t.Helper()
	var checks []Check
	for _, c := range Checks {
		for _, g := range groups {
			if c.Group == g {
				checks = append(checks, c)
			}
		}
	}
	r := Run(context.Background(), e, checks)
	var lines []string
	for _, g := range r.Groups {
		for _, c := range g.Checks {
			for _, res := range c.Results {
				lines = append(lines, string(res.Status)+": "+res.Message)
				for _, d := range res.Details {
					lines = append(lines, "  "+d)
				}
			}
		}
	}
	return strings.Join(lines, "\n")
}

func wantLines(t *testing.T, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
}

// An upstream cluster: a default revision on Istio 1.26 and 1-27-1 on 1.27
// with a tag, both leaving ENABLE_NATIVE_SIDECARS unset, and one old node.
func TestPrecheckUpstreamLayout(t *testing.T) {
	objs := []runtime.Object{
		istiodDep("istio-system", "istiod", "", "docker.io/istio/pilot:1.26.3"),
		istiodDep("istio-system", "istiod-1-27-1", "1-27-1", "docker.io/istio/pilot:1.27.1-distroless"),
		&admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-prod", Labels: map[string]string{"istio.io/tag": "prod", "istio.io/rev": "1-27-1"}}},
		injector("istio-sidecar-injector", "default"), injector("istio-sidecar-injector-1-27-1", "1-27-1"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"istio-injection": "enabled"}}},
		kubeletNode("system-0", "v1.34.4"), kubeletNode("old-0", "v1.32.9"),
	}
	e := &Env{Kube: fake.NewClientset(objs...), Policy: meshversion.DefaultPolicy}
	got := report(t, e, "Feature", "Mesh", "Injection")
	wantLines(t, got,
		"skip: upstream Istio: no platform feature flag",
		"ok: layout upstream: 2 revision(s), 1 tag(s) in every namespace",
		"  revision default: istio-system/istiod, Istio 1.26.3 (image docker.io/istio/pilot:1.26.3)",
		"  revision 1-27-1: istio-system/istiod-1-27-1, Istio 1.27.1 (image docker.io/istio/pilot:1.27.1-distroless), tags prod",
		"ok: revision default runs Istio 1.26.3, 1.20 or newer",
		"ok: revision 1-27-1 runs Istio 1.27.1, 1.20 or newer",
		"ok: istiod is available",
		"ok: 1 namespace(s) labelled istio-injection=enabled, injected by default (namespace label istio-injection=enabled): shop",
		"warn: istiod: ENABLE_NATIVE_SIDECARS is unset: Istio 1.26 treats unset as false: classic",
		"warn: istiod-1-27-1: ENABLE_NATIVE_SIDECARS is unset, so Istio decides: native only if every node's kubelet is 1.33+; on this cluster it resolves to classic (Istio 1.27 decides by the kubelets: classic for every new pod: node old-0 (kubelet v1.32.9) older than 1.33)",
		"  node old-0 (pool old): kubelet v1.32.9",
	)
	if strings.Contains(got, "fail:") {
		t.Errorf("a sound upstream mesh fails precheck:\n%s", got)
	}

	// Istio 1.27 reads "1" as false; a dangling tag and no default revision.
	objs = []runtime.Object{
		istiodDep("istio-system", "istiod-1-27-1", "1-27-1", "docker.io/istio/pilot:1.27.1", corev1.EnvVar{Name: "ENABLE_NATIVE_SIDECARS", Value: "1"}),
		&admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-prod", Labels: map[string]string{"istio.io/tag": "prod", "istio.io/rev": "1-28-0"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"istio-injection": "enabled"}}},
		kubeletNode("system-0", "v1.34.4"),
	}
	got = report(t, &Env{Kube: fake.NewClientset(objs...), Policy: meshversion.DefaultPolicy}, "Mesh", "Injection")
	wantLines(t, got,
		"fail: revision tag prod (MutatingWebhookConfiguration istio-revision-tag-prod) points at revision 1-28-0, which has no istiod",
		"fail: 1 namespace(s) labelled istio-injection=enabled, but no default revision or default tag serves them: shop",
		`warn: istiod-1-27-1: ENABLE_NATIVE_SIDECARS="1": "1" is not true, false or auto: istiod 1.27+ reads it as false`,
		"fail: istiod-1-27-1: ENABLE_NATIVE_SIDECARS=1: istiod injects classic sidecars",
	)
}

// The add-on's layout reads as before: asm-1-27's version from its name.
func TestPrecheckAKSLayoutUnchanged(t *testing.T) {
	objs := []runtime.Object{
		istiodDep("aks-istio-system", "istiod-asm-1-27", "asm-1-27", "registry.istio.io/testing/pilot:latest"),
		kubeletNode("system-0", "v1.34.4"),
	}
	got := report(t, &Env{Kube: fake.NewClientset(objs...), MeshNamespace: "aks-istio-system", Policy: meshversion.DefaultPolicy}, "Mesh", "Injection")
	wantLines(t, got,
		"ok: layout aks: 1 revision(s), 0 tag(s) in namespace aks-istio-system",
		"  revision asm-1-27: aks-istio-system/istiod-asm-1-27, Istio 1.27 (revision name asm-1-27)",
		"warn: istiod-asm-1-27: ENABLE_NATIVE_SIDECARS is unset, so Istio decides: native only if every node's kubelet is 1.33+; on this cluster it resolves to native",
	)
}

// enableNamespacesByDefault: the "auto." webhook is said as a warning and
// puts unlabelled namespaces in the mesh; injector values that ask for it
// without the webhook installed are said too (the webhooks are followed).
func TestPrecheckEnableNamespacesByDefault(t *testing.T) {
	auto := injector("istio-sidecar-injector", "default")
	auto.Webhooks = append(auto.Webhooks, admissionv1.MutatingWebhook{Name: "auto.sidecar-injector.istio.io",
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "istio-injection", Operator: metav1.LabelSelectorOpDoesNotExist}, {Key: "istio.io/rev", Operator: metav1.LabelSelectorOpDoesNotExist}}}})
	values := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-sidecar-injector"},
		Data: map[string]string{"values": `{"global":{},"sidecarInjectorWebhook":{"enableNamespacesByDefault":true}}`}}
	objs := []runtime.Object{
		istiodDep("istio-system", "istiod", "", "docker.io/istio/pilot:1.27.1"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		kubeletNode("system-0", "v1.34.4"),
		values,
	}
	got := report(t, &Env{Kube: fake.NewClientset(append(objs, auto)...), Policy: meshversion.DefaultPolicy}, "Mesh")
	wantLines(t, got, "warn: enableNamespacesByDefault is on (webhook auto.sidecar-injector.istio.io in istio-sidecar-injector): every namespace without istio-injection or istio.io/rev labels is in the mesh, injected by default")
	if strings.Contains(got, "no webhook auto.sidecar-injector.istio.io is installed") {
		t.Errorf("the webhook is installed, yet precheck says it is not:\n%s", got)
	}
	got = report(t, &Env{Kube: fake.NewClientset(append(objs, injector("istio-sidecar-injector", "default"))...), Policy: meshversion.DefaultPolicy}, "Mesh")
	wantLines(t, got, "warn: revision default was installed with sidecarInjectorWebhook.enableNamespacesByDefault=true, but no webhook auto.sidecar-injector.istio.io is installed")
	if strings.Contains(got, "enableNamespacesByDefault is on") {
		t.Errorf("no auto webhook, yet precheck says it is on:\n%s", got)
	}
}
