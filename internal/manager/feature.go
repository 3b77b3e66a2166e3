package manager

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
)

// FeatureReconciler plays the platform's feature registration: a feature
// asked for moves NotRegistered → Registering → Registered after Delay (and
// back through Unregistering), and a provider refresh request makes the
// state as of that moment the applied one.
type FeatureReconciler struct {
	client.Client
	Delay time.Duration
	Clock clock.PassiveClock
}

// +kubebuilder:rbac:groups=meshaddon.dev,resources=featureregistrations,verbs=get;list;watch
// +kubebuilder:rbac:groups=meshaddon.dev,resources=featureregistrations/status,verbs=get;update;patch

// Reconcile moves one feature's registration a step.
func (r *FeatureReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var fr v1alpha1.FeatureRegistration
	if err := r.Get(ctx, req.NamespacedName, &fr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	now := r.Clock.Now()
	st := fr.Status.DeepCopy()
	if st.State == "" {
		st.State = v1alpha1.StateNotRegistered
	}
	next, wait := step(fr.Spec.DesiredState, st, now, r.Delay)
	if next != st.State {
		st.State = next
		st.LastTransitionTime = &metav1.MicroTime{Time: now}
	}
	if token := fr.Annotations[v1alpha1.RefreshRequestAnnotation]; token != "" && token != st.LastHandledRefreshAt {
		st.AppliedState = st.State
		st.RefreshTime = &metav1.Time{Time: now}
		st.LastHandledRefreshAt = token
	}
	st.ObservedGeneration = fr.Generation
	if !equality.Semantic.DeepEqual(*st, fr.Status) {
		fr.Status = *st
		if err := r.Status().Update(ctx, &fr); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// step returns the state after now and, while a transition is under way,
// how long until it completes.
func step(desired string, st *v1alpha1.FeatureRegistrationStatus, now time.Time, delay time.Duration) (string, time.Duration) {
	if desired == "" {
		desired = v1alpha1.StateRegistered
	}
	since := time.Duration(0)
	if st.LastTransitionTime != nil {
		since = now.Sub(st.LastTransitionTime.Time)
	}
	switch {
	case desired == v1alpha1.StateRegistered && (st.State == v1alpha1.StateNotRegistered || st.State == v1alpha1.StateUnregistering):
		return v1alpha1.StateRegistering, delay
	case desired == v1alpha1.StateNotRegistered && (st.State == v1alpha1.StateRegistered || st.State == v1alpha1.StateRegistering):
		return v1alpha1.StateUnregistering, delay
	case st.State == v1alpha1.StateRegistering || st.State == v1alpha1.StateUnregistering:
		if since < delay {
			return st.State, delay - since
		}
		if st.State == v1alpha1.StateRegistering {
			return v1alpha1.StateRegistered, 0
		}
		return v1alpha1.StateNotRegistered, 0
	}
	return st.State, 0
}

// SetupWithManager registers the controller.
func (r *FeatureReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.FeatureRegistration{}).
		Named("featureregistration").
		Complete(r)
}
