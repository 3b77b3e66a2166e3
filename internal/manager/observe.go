package manager

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// The Reconciled condition's reasons in observe mode.
const (
	ReasonObserveOnly = v1alpha1.ReasonObserveOnly
	ReasonObserved    = v1alpha1.ReasonObserved
)

// upstreamRevisions are the revisions of upstream Istio's layout: every
// istiod found in MeshNamespace (all namespaces when empty), its revision
// its istio.io/rev ("default" when absent), each decided by the Istio version
// its image says (issue 15). deps is keyed as the add-on's layout keys it
// (IstiodDeployment(revision)); two istiods claiming one revision: the first.
func (r *ProfileReconciler) upstreamRevisions(ctx context.Context, f meshversion.Facts) ([]string, map[string]*appsv1.Deployment, func(string) meshversion.Decision, error) {
	var list appsv1.DeploymentList
	if err := r.List(ctx, &list, client.InNamespace(r.MeshNamespace), client.MatchingLabels{"app": "istiod"}); err != nil {
		return nil, nil, nil, err
	}
	mesh := meshdiscovery.FromObjects(list.Items, nil)
	revisions := make([]string, 0, len(mesh.Revisions))
	deps := map[string]*appsv1.Deployment{}
	for _, rev := range mesh.Revisions {
		revisions = append(revisions, rev.Name)
		for i := range list.Items {
			if d := &list.Items[i]; d.Namespace == rev.Namespace && d.Name == rev.Deployment {
				deps[IstiodDeployment(rev.Name)] = d
			}
		}
	}
	decide := func(name string) meshversion.Decision {
		rev, _ := mesh.Revision(name)
		return meshversion.DecideIstio(r.Policy, f, name, rev.Version)
	}
	return revisions, deps, decide, nil
}

// wouldWrite tells, once per change of the decision or of what istiod has,
// what observe mode leaves unwritten.
func (r *ProfileReconciler) wouldWrite(profile *v1alpha1.MeshProfile, prev *v1alpha1.RevisionStatus, dep *appsv1.Deployment, d meshversion.Decision, has string) {
	want := d.Injection.EnvValue()
	if prev != nil && prev.EnableNativeSidecars == want && prev.IstiodEnableNativeSidecars == has {
		return
	}
	r.Recorder.Eventf(profile, corev1.EventTypeNormal, "WouldSetNativeSidecars",
		"observe mode: would set %s=%s on %s/%s (it has %s): %s", istiod.NativeSidecarsEnv, want, dep.Namespace, dep.Name, has, d.Message)
}

// setObserved replaces the Reconciled condition in observe mode: nothing is
// written, so it says whether istiod already matches and, if not, what the
// manager would write.
func (r *ProfileReconciler) setObserved(profile *v1alpha1.MeshProfile, st *v1alpha1.MeshProfileStatus, problems, pending []string) {
	c := metav1.Condition{Type: v1alpha1.ConditionReconciled, ObservedGeneration: profile.Generation}
	switch {
	case len(pending) > 0 || len(problems) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonObserveOnly
		c.Message = "observe mode, nothing written: " + strings.Join(append(pending, problems...), "; ")
	default:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonObserved
		c.Message = fmt.Sprintf("observe mode, nothing written: every istiod already runs with the decided %s", istiod.NativeSidecarsEnv)
	}
	meta.SetStatusCondition(&st.Conditions, c)
}
