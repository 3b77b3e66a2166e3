package ship

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestChartGuardCertManager renders the placement guard's parts of the chart
// with Helm: off by default; its webhook configuration is config/guard's;
// with guard.certManager cert-manager issues the serving certificate, the
// manager only mounts and serves it, and cainjector is asked to write the
// caBundle.
func TestChartGuardCertManager(t *testing.T) {
	helm := tool(t, "helm", "helm")
	root := moduleRoot(t)
	chart := filepath.Join(root, ChartDir)
	for _, set := range []string{
		"guard.webhook.enabled=true",
		"guard.webhook.enabled=true,guard.certManager.enabled=true",
		"guard.certManager.enabled=true,guard.certManager.issuerRef.name=corp-ca,guard.certManager.issuerRef.kind=ClusterIssuer,metrics.certSecret=tls",
	} {
		run(t, root, helm, "lint", "--strict", "--kube-version", kubeVersion, chart, "--set", set)
	}
	render := func(ns, set string) map[string]*unstructured.Unstructured {
		t.Helper()
		args := []string{"template", "meshaddon", chart, "--kube-version", kubeVersion, "--namespace", ns}
		if set != "" {
			args = append(args, "--set", set)
		}
		out := map[string]*unstructured.Unstructured{}
		for _, u := range objects(t, []byte(run(t, root, helm, args...))) {
			out[key(u)] = u
		}
		return out
	}
	str := func(u *unstructured.Unstructured, path ...string) string {
		s, _, _ := unstructured.NestedString(u.Object, path...)
		return s
	}

	// Off: the manager issues its certificate; nothing of cert-manager.
	byKey := render("meshaddon-system", "")
	for k, u := range byKey {
		if strings.HasPrefix(u.GetAPIVersion(), "cert-manager.io/") || u.GetAnnotations()["cert-manager.io/inject-ca-from"] != "" {
			t.Errorf("cert-manager's %s rendered though guard.certManager is off", k)
		}
	}
	if _, ok := byKey["MutatingWebhookConfiguration /meshaddon-placement-guard"]; ok {
		t.Error("the guard's webhook configuration rendered though guard.webhook is off (config/guard is opt-in)")
	}
	dep := byKey["Deployment meshaddon-system/meshaddon-manager"]
	args := toStrings(container(t, dep)["args"])
	if !slices.Contains(args, "--guard-webhook-service=meshaddon-guard.meshaddon-system") || hasPrefix(args, "--guard-webhook-cert-dir") {
		t.Errorf("without cert-manager the manager must issue the certificate: args %q", args)
	}
	if verbs := ruleVerbs(t, byKey, "ClusterRole /meshaddon-manager", "mutatingwebhookconfigurations"); !reflect.DeepEqual(verbs, []string{"get", "patch"}) {
		t.Errorf("without cert-manager the manager writes the caBundle: verbs %v, want get and patch", verbs)
	}
	if verbs := ruleVerbs(t, byKey, "Role meshaddon-system/meshaddon-manager", "secrets"); !reflect.DeepEqual(verbs, []string{"create", "get", "update"}) {
		t.Errorf("without cert-manager the manager keeps its certificate's Secret: verbs %v", verbs)
	}
	if m := mount(t, dep, "/tmp"); m == nil || m["readOnly"] == true {
		t.Errorf("the manager has nowhere to write the certificate it issues (read-only root filesystem): %v", m)
	}

	// The webhook on: exactly config/guard's configuration.
	byKey = render("meshaddon-system", "guard.webhook.enabled=true")
	data, err := os.ReadFile(filepath.Join(root, "config/guard/webhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := objects(t, data)[0]
	if got := byKey["MutatingWebhookConfiguration /meshaddon-placement-guard"]; got == nil || !reflect.DeepEqual(got.Object, want.Object) {
		a, _ := yaml.Marshal(got)
		b, _ := yaml.Marshal(want)
		t.Errorf("the chart's guard configuration is not config/guard's:\nchart:\n%s\nconfig:\n%s", a, b)
	}

	// cert-manager with the chart's own CA, in another namespace and mesh.
	byKey = render("ops", "guard.webhook.enabled=true,guard.certManager.enabled=true,meshNamespace=istio-system")
	self, caCert, caIssuer, cert := byKey["Issuer ops/meshaddon-selfsigned"], byKey["Certificate ops/meshaddon-guard-ca"], byKey["Issuer ops/meshaddon-guard-ca"], byKey["Certificate ops/meshaddon-guard"]
	if self == nil || caCert == nil || caIssuer == nil || cert == nil {
		t.Fatalf("cert-manager's bootstrap and certificate not rendered: %v", keys(byKey))
	}
	if _, ok, _ := unstructured.NestedMap(self.Object, "spec", "selfSigned"); !ok {
		t.Errorf("Issuer meshaddon-selfsigned is not self-signed: %v", self.Object["spec"])
	}
	if ca, _, _ := unstructured.NestedBool(caCert.Object, "spec", "isCA"); !ca || str(caCert, "spec", "issuerRef", "name") != "meshaddon-selfsigned" {
		t.Errorf("the CA Certificate: %v", caCert.Object["spec"])
	}
	if str(caIssuer, "spec", "ca", "secretName") != str(caCert, "spec", "secretName") {
		t.Errorf("Issuer meshaddon-guard-ca signs with Secret %q, the CA is in %q", str(caIssuer, "spec", "ca", "secretName"), str(caCert, "spec", "secretName"))
	}
	if ref, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef"); !reflect.DeepEqual(ref, map[string]string{"name": "meshaddon-guard-ca", "kind": "Issuer", "group": "cert-manager.io"}) {
		t.Errorf("the serving Certificate's issuerRef: %v", ref)
	}
	// The names the API server checks the certificate for: the Service the
	// configuration calls.
	mwc := byKey["MutatingWebhookConfiguration /meshaddon-placement-guard"]
	if mwc == nil {
		t.Fatal("no guard webhook configuration with guard.webhook.enabled")
	}
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	svc, _, _ := unstructured.NestedStringMap(hooks[0].(map[string]any), "clientConfig", "service")
	if _, ok := byKey["Service ops/"+svc["name"]]; !ok || svc["namespace"] != "ops" {
		t.Errorf("the configuration calls Service %v, not the chart's", svc)
	}
	if dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames"); !reflect.DeepEqual(dns, []string{svc["name"] + ".ops.svc", svc["name"] + ".ops.svc.cluster.local"}) {
		t.Errorf("the serving Certificate is for %v", dns)
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(hooks[0].(map[string]any), "clientConfig", "caBundle"); ok {
		t.Error("the chart renders a caBundle: cainjector's would be overwritten at every upgrade")
	}
	if got := mwc.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != "ops/"+cert.GetName() {
		t.Errorf("cert-manager.io/inject-ca-from %q, want ops/%s", got, cert.GetName())
	}
	sel, _, _ := unstructured.NestedSlice(hooks[0].(map[string]any), "namespaceSelector", "matchExpressions")
	if vals := sel[1].(map[string]any)["values"]; !reflect.DeepEqual(vals, []any{"kube-system", "istio-system"}) {
		t.Errorf("the guard leaves out %v, want kube-system and meshNamespace", vals)
	}
	dep = byKey["Deployment ops/meshaddon-manager"]
	args = toStrings(container(t, dep)["args"])
	if !slices.Contains(args, "--guard-webhook-cert-dir=/etc/meshaddon/guard-tls") || hasPrefix(args, "--guard-webhook-service") {
		t.Errorf("with cert-manager the manager must serve its certificate and neither issue one nor write the caBundle: args %q", args)
	}
	// Nor may it: no write on the configuration or on Secrets.
	if verbs := ruleVerbs(t, byKey, "ClusterRole /meshaddon-manager", "mutatingwebhookconfigurations"); !reflect.DeepEqual(verbs, []string{"get"}) {
		t.Errorf("with cert-manager the manager only reads the guard's configuration: verbs %v", verbs)
	}
	if verbs := ruleVerbs(t, byKey, "Role ops/meshaddon-manager", "secrets"); len(verbs) != 0 {
		t.Errorf("with cert-manager the manager needs no Secret: verbs %v", verbs)
	}
	m := mount(t, dep, "/etc/meshaddon/guard-tls")
	if m == nil || m["readOnly"] != true {
		t.Fatalf("cert-manager's Secret is not mounted read-only: %v", m)
	}
	if s := secretOf(t, dep, m["name"].(string)); s != str(cert, "spec", "secretName") {
		t.Errorf("the mounted Secret is %q, the Certificate writes %q", s, str(cert, "spec", "secretName"))
	}

	// A given issuer: no bootstrap, the certificate signed by it.
	byKey = render("ops", "guard.certManager.enabled=true,guard.certManager.issuerRef.name=corp-ca,guard.certManager.issuerRef.kind=ClusterIssuer")
	for _, k := range []string{"Issuer ops/meshaddon-selfsigned", "Certificate ops/meshaddon-guard-ca", "Issuer ops/meshaddon-guard-ca"} {
		if _, ok := byKey[k]; ok {
			t.Errorf("%s rendered though issuerRef is given", k)
		}
	}
	if cert = byKey["Certificate ops/meshaddon-guard"]; cert == nil {
		t.Fatal("no serving Certificate with a given issuer")
	}
	if ref, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef"); !reflect.DeepEqual(ref, map[string]string{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}) {
		t.Errorf("issuerRef %v, want ClusterIssuer corp-ca", ref)
	}

	// An issuerRef without a name is refused with what to do.
	_, stderr, err := runE(root, helm, "template", "meshaddon", chart, "--kube-version", kubeVersion, "--set", "guard.certManager.enabled=true,guard.certManager.issuerRef.kind=ClusterIssuer")
	if err == nil || !strings.Contains(stderr, "guard.certManager.issuerRef has no name") {
		t.Errorf("issuerRef without a name: %v %s", err, stderr)
	}
}

// ruleVerbs returns the verbs a rendered role grants on resource.
func ruleVerbs(t *testing.T, byKey map[string]*unstructured.Unstructured, role, resource string) []string {
	t.Helper()
	r := byKey[role]
	if r == nil {
		t.Fatalf("no %s rendered", role)
	}
	rules, _, _ := unstructured.NestedSlice(r.Object, "rules")
	var verbs []string
	for _, rule := range rules {
		res, _, _ := unstructured.NestedStringSlice(rule.(map[string]any), "resources")
		if slices.Contains(res, resource) {
			v, _, _ := unstructured.NestedStringSlice(rule.(map[string]any), "verbs")
			verbs = append(verbs, v...)
		}
	}
	return verbs
}

func hasPrefix(list []string, prefix string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

// mount returns the manager's volumeMount at path.
func mount(t *testing.T, dep *unstructured.Unstructured, path string) map[string]any {
	t.Helper()
	ms, _ := container(t, dep)["volumeMounts"].([]any)
	for _, m := range ms {
		if m := m.(map[string]any); m["mountPath"] == path {
			return m
		}
	}
	return nil
}

// secretOf returns the Secret a volume of the pod mounts.
func secretOf(t *testing.T, dep *unstructured.Unstructured, volume string) string {
	t.Helper()
	vs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
	for _, v := range vs {
		if v := v.(map[string]any); v["name"] == volume {
			s, _, _ := unstructured.NestedString(v, "secret", "secretName")
			return s
		}
	}
	return ""
}
