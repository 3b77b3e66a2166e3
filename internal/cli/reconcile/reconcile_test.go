package reconcile

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
)

func TestReport(t *testing.T) {
	p := &v1alpha1.MeshProfile{Status: v1alpha1.MeshProfileStatus{
		Revisions: []v1alpha1.RevisionStatus{
			{Name: "asm-1-27", Mode: "native", Deployment: "istiod-asm-1-27", EnableNativeSidecars: "true", Message: "feature registered"},
			{Name: "asm-1-26", Mode: "classic", Deployment: "istiod-asm-1-26", EnableNativeSidecars: "false", Message: "pool old is too old"},
			{Name: "asm-1-25", Mode: "classic", Message: "no istiod"},
		},
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionVersionsCompatible, Status: metav1.ConditionFalse, Reason: "NodesTooOld", Message: "pool old has 1 node(s)"},
			{Type: v1alpha1.ConditionDegraded, Status: metav1.ConditionFalse, Reason: "AsExpected"},
			{Type: v1alpha1.ConditionReconciled, Status: metav1.ConditionTrue, Reason: "Reconciled"},
		},
	}}
	var out bytes.Buffer
	Report(&out, map[string]string{"istiod-asm-1-27": "false", "istiod-asm-1-26": "false"}, p)
	want := `asm-1-27: now native sidecars (ENABLE_NATIVE_SIDECARS false → true, istiod restarted): feature registered
asm-1-26: classic sidecars, unchanged (ENABLE_NATIVE_SIDECARS=false): pool old is too old
asm-1-25: classic, but its istiod is missing
VersionsCompatible=False (NodesTooOld): pool old has 1 node(s)
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

// Without --mesh-namespace, reconcile waits where discovery finds istiod:
// istio-system on upstream Istio, the add-on's namespace before any istiod
// is installed, and asks for the flag when istiods run in several.
func TestMeshNamespace(t *testing.T) {
	istiod := func(ns, name, rev string) *appsv1.Deployment {
		l := map[string]string{"app": "istiod"}
		if rev != "" {
			l["istio.io/rev"] = rev
		}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l}}
	}
	ctx := context.Background()
	for _, c := range []struct {
		name string
		objs []*appsv1.Deployment
		want string
	}{
		{"upstream", []*appsv1.Deployment{istiod("istio-system", "istiod", ""), istiod("istio-system", "istiod-canary", "canary")}, "istio-system"},
		{"add-on", []*appsv1.Deployment{istiod("aks-istio-system", "istiod-asm-1-27", "asm-1-27")}, "aks-istio-system"},
		{"none yet", nil, "aks-istio-system"},
	} {
		kc := fake.NewClientset()
		for _, d := range c.objs {
			if _, err := kc.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := MeshNamespace(ctx, kc)
		if err != nil || got != c.want {
			t.Errorf("%s: MeshNamespace = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	kc := fake.NewClientset(istiod("istio-system", "istiod", ""), istiod("mesh-b", "istiod-b", "b"))
	_, err := MeshNamespace(ctx, kc)
	var coded *exitcode.Error
	if err == nil || !strings.Contains(err.Error(), "istio-system, mesh-b") || !strings.Contains(err.Error(), "--mesh-namespace") ||
		!errors.As(err, &coded) || coded.Code != exitcode.Usage {
		t.Errorf("istiods in two namespaces: %v, want a usage error naming both and --mesh-namespace", err)
	}
}
