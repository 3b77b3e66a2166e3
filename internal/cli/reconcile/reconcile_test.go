package reconcile

import (
	"bytes"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
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
