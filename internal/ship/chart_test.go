package ship

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestChartGenerated: the chart's RBAC and CRDs are what `make generate`
// makes from config/ now.
func TestChartGenerated(t *testing.T) {
	root := moduleRoot(t)
	want, err := ChartFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range want {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(got) != string(data) {
			t.Errorf("%s is not what config/ generates (%v): run make generate", p, err)
		}
	}
	crds, _ := filepath.Glob(filepath.Join(root, chartCRDs, "*"))
	wantCRDs := 0
	for p := range want {
		if strings.HasPrefix(p, chartCRDs+"/") {
			wantCRDs++
		}
	}
	if len(crds) != wantCRDs {
		t.Errorf("%s holds %d files, config/crd/bases %d: run make generate", chartCRDs, len(crds), wantCRDs)
	}
}

// TestVersionsAgree: config/manager, the chart and the release name one
// version of the image.
func TestVersionsAgree(t *testing.T) {
	root := moduleRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "config/manager/manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, u := range objects(t, data) {
		if u.GetKind() == "Deployment" {
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			for _, c := range cs {
				images = append(images, c.(map[string]any)["image"].(string))
			}
		}
	}
	if want := Repository + ":" + Version; len(images) != 1 || images[0] != want {
		t.Errorf("config/manager runs %v, want %s", images, want)
	}
	var chart struct{ Version, AppVersion string }
	data, err = os.ReadFile(filepath.Join(root, ChartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		t.Fatal(err)
	}
	if chart.AppVersion != Version || "v"+chart.Version != Version {
		t.Errorf("Chart.yaml: version %s appVersion %s, want %s", chart.Version, chart.AppVersion, Version)
	}
}

// kubeVersion is the cluster version helm renders for: the test bed's (a
// helm built from the module proxy, without its release's ldflags, assumes
// v1.20, which the chart's kubeVersion refuses).
const kubeVersion = "v1.34.4"

// TestChartHelm lints and renders the chart with Helm itself and checks the
// rendered RBAC and CRDs are config/'s, and the Deployment config/manager's.
func TestChartHelm(t *testing.T) {
	helm := tool(t, "helm", "helm")
	root := moduleRoot(t)
	chart := filepath.Join(root, ChartDir)
	run(t, root, helm, "lint", "--strict", "--kube-version", kubeVersion, chart)
	run(t, root, helm, "lint", "--strict", "--kube-version", kubeVersion, chart, "--set", "metrics.serviceMonitor.enabled=true,metrics.secure=false,metrics.certSecret=tls")

	rendered := objects(t, []byte(run(t, root, helm, "template", "meshaddon", chart, "--kube-version", kubeVersion, "--namespace", "meshaddon-system", "--include-crds")))
	byKey := map[string]*unstructured.Unstructured{}
	for _, u := range rendered {
		byKey[key(u)] = u
	}

	// Every object of config/rbac and config/crd, rendered identically.
	var want []*unstructured.Unstructured
	for _, dir := range []string{"config/rbac", "config/crd/bases"} {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, objects(t, data)...)
		}
	}
	rbacKinds := map[string]bool{"ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true}
	renderedRBAC := 0
	for _, u := range rendered {
		if rbacKinds[u.GetKind()] {
			renderedRBAC++
		}
	}
	wantRBAC := 0
	for _, w := range want {
		if rbacKinds[w.GetKind()] {
			wantRBAC++
		}
		got, ok := byKey[key(w)]
		if !ok {
			t.Errorf("the chart does not render %s", key(w))
			continue
		}
		if !reflect.DeepEqual(got.Object, w.Object) {
			a, _ := yaml.Marshal(got.Object)
			b, _ := yaml.Marshal(w.Object)
			t.Errorf("%s differs from config/:\nchart:\n%s\nconfig:\n%s", key(w), a, b)
		}
	}
	if renderedRBAC != wantRBAC {
		t.Errorf("the chart renders %d RBAC objects, config/rbac has %d", renderedRBAC, wantRBAC)
	}

	// The Deployment: config/manager's pod security, probes and resources.
	data, err := os.ReadFile(filepath.Join(root, "config/manager/manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfgDep *unstructured.Unstructured
	for _, u := range objects(t, data) {
		if u.GetKind() == "Deployment" {
			cfgDep = u
		}
	}
	dep := byKey["Deployment meshaddon-system/meshaddon-manager"]
	if dep == nil {
		t.Fatal("no Deployment rendered")
	}
	for _, path := range [][]string{
		{"spec", "replicas"},
		{"spec", "selector"},
		{"spec", "template", "spec", "securityContext"},
		{"spec", "template", "spec", "serviceAccountName"},
	} {
		g, _, _ := unstructured.NestedFieldNoCopy(dep.Object, path...)
		w, _, _ := unstructured.NestedFieldNoCopy(cfgDep.Object, path...)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: chart %v, config/manager %v", strings.Join(path, "."), g, w)
		}
	}
	gc := container(t, dep)
	wc := container(t, cfgDep)
	for _, f := range []string{"image", "command", "securityContext", "livenessProbe", "readinessProbe", "resources", "ports", "env"} {
		if !reflect.DeepEqual(gc[f], wc[f]) {
			t.Errorf("container %s: chart %v, config/manager %v", f, gc[f], wc[f])
		}
	}
	args := strings.Join(toStrings(gc["args"]), " ")
	for _, want := range []string{"--leader-elect=true", "--metrics-bind-address=:8443", "--metrics-secure=true", "--zap-encoder=json", "--policy=preview", "--mesh-namespace=aks-istio-system"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if _, ok := byKey["Service meshaddon-system/meshaddon-manager-metrics"]; !ok {
		t.Error("no metrics Service rendered")
	}
	if _, ok := byKey["ServiceMonitor meshaddon-system/meshaddon-manager"]; ok {
		t.Error("a ServiceMonitor rendered though not enabled")
	}

	// The values: a ServiceMonitor, plain metrics, a certificate, ga, a
	// digest, another mesh namespace (the Role follows it), console logs.
	rendered = objects(t, []byte(run(t, root, helm, "template", "meshaddon", chart, "--kube-version", kubeVersion, "--namespace", "ops",
		"--set", "metrics.serviceMonitor.enabled=true,metrics.secure=false,metrics.certSecret=tls,policy=ga,log.format=console,meshNamespace=istio-system,image.digest=sha256:0123456789012345678901234567890123456789012345678901234567890123")))
	byKey = map[string]*unstructured.Unstructured{}
	for _, u := range rendered {
		byKey[key(u)] = u
	}
	if _, ok := byKey["ServiceMonitor ops/meshaddon-manager"]; !ok {
		t.Error("no ServiceMonitor with metrics.serviceMonitor.enabled")
	}
	if _, ok := byKey["Role istio-system/meshaddon-manager"]; !ok {
		t.Errorf("the Role to patch istiod does not follow meshNamespace: %v", keys(byKey))
	}
	if sa := byKey["ServiceAccount ops/meshaddon-manager"]; sa == nil {
		t.Error("the ServiceAccount is not in the release's namespace")
	}
	c := container(t, byKey["Deployment ops/meshaddon-manager"])
	args = strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"--metrics-secure=false", "--metrics-cert-dir=/etc/meshaddon/metrics-tls", "--policy=ga", "--zap-encoder=console", "--mesh-namespace=istio-system"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if c["image"] != Repository+"@sha256:0123456789012345678901234567890123456789012345678901234567890123" {
		t.Errorf("image %v, want by digest", c["image"])
	}

	// Upstream Istio in observe mode: the Role follows istiod to
	// istio-system and has no write.
	rendered = objects(t, []byte(run(t, root, helm, "template", "meshaddon", chart, "--kube-version", kubeVersion, "--namespace", "ops",
		"--set", "layout=upstream,meshNamespace=istio-system,observe=true")))
	byKey = map[string]*unstructured.Unstructured{}
	for _, u := range rendered {
		byKey[key(u)] = u
	}
	role := byKey["Role istio-system/meshaddon-manager"]
	if role == nil {
		t.Fatalf("no Role in istio-system: %v", keys(byKey))
	}
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	if len(rules) != 1 || !reflect.DeepEqual(rules[0].(map[string]any)["verbs"], []any{"get", "list", "watch"}) {
		t.Errorf("observe mode's Role in istio-system: %v, want get, list and watch on deployments only", rules)
	}
	args = strings.Join(toStrings(container(t, byKey["Deployment ops/meshaddon-manager"])["args"]), " ")
	for _, want := range []string{"--layout=upstream", "--mesh-namespace=istio-system", "--observe=true"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}

	// Bad values are refused with what is wrong.
	_, stderr, err := runE(root, helm, "template", "meshaddon", chart, "--kube-version", kubeVersion, "--set", "log.format=xml")
	if err == nil || !strings.Contains(stderr, `log.format is "xml": want json or console`) {
		t.Errorf("log.format=xml: %v %s", err, stderr)
	}
	_, stderr, err = runE(root, helm, "template", "meshaddon", chart, "--kube-version", kubeVersion, "--set", "layout=istio")
	if err == nil || !strings.Contains(stderr, `layout is "istio": want aks`) {
		t.Errorf("layout=istio: %v %s", err, stderr)
	}
	_, stderr, err = runE(root, helm, "template", "meshaddon", chart, "--kube-version", kubeVersion, "--set", "meshNamespace=")
	if err == nil || !strings.Contains(stderr, "meshNamespace: the namespace of the istiod Deployments") {
		t.Errorf("meshNamespace empty: %v %s", err, stderr)
	}
}

func container(t *testing.T, dep *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("%d containers", len(cs))
	}
	return cs[0].(map[string]any)
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func keys(m map[string]*unstructured.Unstructured) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
