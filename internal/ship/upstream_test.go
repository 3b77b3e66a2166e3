package ship

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomize builds a kustomization of config/ as kubectl apply -k does.
func kustomize(t *testing.T, dir string) map[string]*unstructured.Unstructured {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(moduleRoot(t), dir))
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	y, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for _, u := range objects(t, y) {
		out[key(u)] = u
	}
	return out
}

// config/upstream is config/default with the manager's one namespaced right
// on Deployments where upstream Istio runs istiod (istio-system) instead of
// the add-on's namespace, and the manager told so: no right more, none in
// aks-istio-system (issue 15).
func TestConfigUpstream(t *testing.T) {
	def, up := kustomize(t, "config/default"), kustomize(t, "config/upstream")
	if len(def) != len(up) {
		t.Errorf("config/upstream has %d objects, config/default %d: want the same objects", len(up), len(def))
	}
	moved := map[string]string{
		"Role aks-istio-system/meshaddon-manager":        "Role istio-system/meshaddon-manager",
		"RoleBinding aks-istio-system/meshaddon-manager": "RoleBinding istio-system/meshaddon-manager",
	}
	for k, d := range def {
		if k == "Deployment meshaddon-system/meshaddon-manager" {
			continue
		}
		want := k
		if m, ok := moved[k]; ok {
			want = m
		}
		u, ok := up[want]
		if !ok {
			t.Errorf("config/upstream lacks %s (config/default's %s)", want, k)
			continue
		}
		d, u := d.DeepCopy(), u.DeepCopy()
		d.SetNamespace("")
		u.SetNamespace("")
		if !reflect.DeepEqual(d.Object, u.Object) {
			t.Errorf("%s differs from config/default's %s beyond its namespace", want, k)
		}
	}
	for k := range up {
		if strings.Contains(k, " aks-istio-system/") {
			t.Errorf("config/upstream grants %s in the add-on's namespace", k)
		}
	}
	role := up["Role istio-system/meshaddon-manager"]
	if role == nil {
		t.Fatal("no Role in istio-system")
	}
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	if len(rules) != 1 || !reflect.DeepEqual(rules[0].(map[string]any)["resources"], []any{"deployments"}) ||
		!reflect.DeepEqual(rules[0].(map[string]any)["verbs"], []any{"get", "list", "patch", "watch"}) {
		t.Errorf("the Role in istio-system grants %v, want get, list, patch and watch on deployments only", rules)
	}
	args := toStrings(container(t, up["Deployment meshaddon-system/meshaddon-manager"])["args"])
	for _, want := range []string{"--layout=upstream", "--mesh-namespace=istio-system"} {
		if !slices.Contains(args, want) {
			t.Errorf("the manager's args %v lack %s", args, want)
		}
	}
}
