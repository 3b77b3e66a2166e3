package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/rollout"
)

// ErrNoProfile means the add-on is not set up on the cluster.
var ErrNoProfile = errors.New("no MeshProfile named default: the mesh add-on is not set up on this cluster (on the test bed: meshaddon local up)")

// Reconciled is the outcome of a forced reconcile.
type Reconciled struct {
	// Before maps each istiod Deployment to its ENABLE_NATIVE_SIDECARS
	// value before the reconcile ("unset" when absent).
	Before  map[string]string
	Profile *v1alpha1.MeshProfile
}

// Reconcile is the platform's forced update: it asks the manager to
// reconcile the MeshProfile now, then waits until the profile's status
// has caught up and every istiod Deployment runs, rolled out, with the
// decided ENABLE_NATIVE_SIDECARS.
func Reconcile(ctx context.Context, cl client.Client, meshNamespace string, timeout time.Duration) (*Reconciled, error) {
	var profile v1alpha1.MeshProfile
	if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &profile); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ErrNoProfile
		}
		return nil, fmt.Errorf("read the MeshProfile: %w", err)
	}
	before, err := IstiodEnvs(ctx, cl, meshNamespace)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	patch := client.MergeFrom(profile.DeepCopy())
	if profile.Annotations == nil {
		profile.Annotations = map[string]string{}
	}
	profile.Annotations[v1alpha1.ReconcileRequestAnnotation] = now.Format(time.RFC3339Nano)
	if err := cl.Patch(ctx, &profile, patch); err != nil {
		return nil, fmt.Errorf("request a reconcile: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waiting := "the add-on manager to handle the request (is it running?)"
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &profile); err != nil {
			return false, nil
		}
		handled, err := time.Parse(time.RFC3339Nano, profile.Status.LastHandledReconcileAt)
		if err != nil || handled.Before(now) || profile.Status.ObservedGeneration < profile.Generation {
			return false, nil
		}
		msg, done, err := IstiodsSettled(ctx, cl, &profile, meshNamespace)
		if !done {
			waiting = msg
		}
		return done, err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, &TimeoutError{msg: fmt.Sprintf("timed out after %s waiting for %s", timeout, waiting)}
		}
		return nil, err
	}
	return &Reconciled{Before: before, Profile: &profile}, nil
}

// NotReconciledError is a forced reconcile the add-on manager handled but
// could not carry out: it could not write an istiod Deployment.
type NotReconciledError struct{ msg string }

func (e *NotReconciledError) Error() string { return e.msg }

// IstiodEnvs maps each istiod Deployment in ns to its ENABLE_NATIVE_SIDECARS.
func IstiodEnvs(ctx context.Context, cl client.Client, ns string) (map[string]string, error) {
	var list appsv1.DeploymentList
	sel, err := metav1.ParseToLabelSelector(istiod.Label)
	if err != nil {
		return nil, err
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	if err := cl.List(ctx, &list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: s}); err != nil {
		return nil, fmt.Errorf("list istiod Deployments in %s: %w", ns, err)
	}
	out := map[string]string{}
	for i := range list.Items {
		out[list.Items[i].Name] = istiod.NativeSidecars(&list.Items[i]).String()
	}
	return out, nil
}

// IstiodsSettled reports whether every istiod of the profile runs what the
// manager decided: the decided ENABLE_NATIVE_SIDECARS on its Deployment,
// rolled out as kubectl rollout status judges it. When not, msg says what is
// awaited; a decision the manager could not write is a NotReconciledError.
func IstiodsSettled(ctx context.Context, cl client.Client, profile *v1alpha1.MeshProfile, meshNamespace string) (msg string, done bool, err error) {
	for _, rs := range profile.Status.Revisions {
		if rs.Deployment == "" {
			// No istiod serves this revision (yet: the platform installs
			// it after `mesh enable`). Never settled without it: wait, and
			// a timeout names it.
			return fmt.Sprintf("the istiod of revision %s (a Deployment labelled istio.io/rev=%s in %s; none found)", rs.Name, rs.Name, meshNamespace), false, nil
		}
		if rs.IstiodEnableNativeSidecars != rs.EnableNativeSidecars {
			// The manager handled the request but could not write istiod.
			why := fmt.Sprintf("%s has %s=%s, not the decided %s", rs.Deployment, istiod.NativeSidecarsEnv, rs.IstiodEnableNativeSidecars, rs.EnableNativeSidecars)
			if c := meta.FindStatusCondition(profile.Status.Conditions, v1alpha1.ConditionReconciled); c != nil && c.Status != metav1.ConditionTrue {
				why = c.Message // names the Deployment, the value and the API server's answer
			}
			return "", false, &NotReconciledError{msg: "not reconciled: " + why + " (fix what refuses the write, then reconcile again)"}
		}
		var dep appsv1.Deployment
		if err := cl.Get(ctx, client.ObjectKey{Namespace: meshNamespace, Name: rs.Deployment}, &dep); err != nil {
			return fmt.Sprintf("%s: %v", rs.Deployment, err), false, nil
		}
		if v := istiod.NativeSidecars(&dep).String(); v != rs.EnableNativeSidecars {
			return fmt.Sprintf("%s to have %s=%s (it has %s)", rs.Deployment, istiod.NativeSidecarsEnv, rs.EnableNativeSidecars, v), false, nil
		}
		msg, done, err := rollout.Status(&dep)
		if err != nil || !done {
			return msg, false, err
		}
	}
	return "", true, nil
}
