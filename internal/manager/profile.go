package manager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// IstiodDeployment names a revision's istiod Deployment.
func IstiodDeployment(revision string) string { return "istiod-" + revision }

// ProfileReconciler decides, for every revision of the MeshProfile, whether
// istiod injects native or classic sidecars, writes ENABLE_NATIVE_SIDECARS on
// the istiod Deployment accordingly, puts it back when someone changes it,
// and reports why in the profile's status and events.
type ProfileReconciler struct {
	client.Client
	Versions      discovery.ServerVersionInterface
	Recorder      record.EventRecorder
	Policy        meshversion.Policy
	MeshNamespace string
	// Guard is the placement guard's health (nil: no webhook served);
	// GuardChanged fires when it changes.
	Guard        *GuardHealth
	GuardChanged <-chan event.GenericEvent
	// Layout is the add-on's (spec.revisions, istiod-<revision>) or
	// upstream Istio's (every istiod found, judged by its Istio version).
	Layout meshdiscovery.Layout
	// Observe decides and reports but never writes an istiod: for istiods
	// owned by Helm or a GitOps controller that would revert the write.
	Observe bool
}

// +kubebuilder:rbac:groups=meshaddon.dev,resources=meshprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=meshaddon.dev,resources=meshprofiles/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// Events about the cluster-scoped MeshProfile land in namespace default.
// +kubebuilder:rbac:groups="",namespace=default,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,namespace=aks-istio-system,resources=deployments,verbs=get;list;watch;patch

// Reconcile brings every revision's istiod in line with the decision.
func (r *ProfileReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	defer func() {
		if err != nil {
			reconcilesTotal.WithLabelValues("error").Inc()
		} else {
			reconcilesTotal.WithLabelValues("success").Inc()
		}
	}()
	var profile v1alpha1.MeshProfile
	if err := r.Get(ctx, req.NamespacedName, &profile); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if profile.Name != v1alpha1.MeshProfileName {
		return ctrl.Result{}, nil // the CRD rejects such names; ignore any that slipped in
	}
	facts, err := r.facts(ctx, &profile)
	if err != nil {
		return ctrl.Result{}, err
	}
	status := profile.Status.DeepCopy()
	status.Policy = r.Policy.Name
	status.APIServerVersion = facts.APIServerVersion
	status.NodePools = poolStatus(facts.Nodes)
	setOldNodes(r.Policy, facts.Nodes)
	if status.CreatedQualifying == nil {
		status.CreatedQualifying = ptr.To(profile.Spec.Origin == v1alpha1.OriginNewCluster && r.qualifies(facts, profile.Spec.Revisions))
	}
	facts.CreatedQualifying = *status.CreatedQualifying
	status.Guard = r.guardStatus(facts)

	deps, err := r.istiods(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	revisions := append([]string(nil), profile.Spec.Revisions...)
	decide := func(rev string) meshversion.Decision { return meshversion.Decide(r.Policy, facts, rev) }
	if r.Layout == meshdiscovery.LayoutUpstream {
		if revisions, deps, decide, err = r.upstreamRevisions(ctx, facts); err != nil {
			return ctrl.Result{}, err
		}
	}
	sort.Strings(revisions)
	var decisions []meshversion.Decision
	var revStatus []v1alpha1.RevisionStatus
	var problems []string
	var pending []string
	var writeErr error
	for _, rev := range revisions {
		d := decide(rev)
		decisions = append(decisions, d)
		rs := v1alpha1.RevisionStatus{Name: rev, Mode: string(d.Injection), Reason: d.Reason, Message: d.Message}
		prev := findRevision(profile.Status.Revisions, rev)
		revisionNative.WithLabelValues(rev).Set(boolGauge(d.Injection == meshversion.Native))
		oldNodeSwitches.WithLabelValues(rev) // exported at 0 before the first switch
		dep, ok := deps[IstiodDeployment(rev)]
		if !ok {
			problems = append(problems, fmt.Sprintf("istiod Deployment %s/%s not found: install the revision (meshaddon mesh enable --revision %s)", r.MeshNamespace, IstiodDeployment(rev), rev))
			revStatus = append(revStatus, rs)
			continue
		}
		rs.Deployment = dep.Name
		rs.EnableNativeSidecars = d.Injection.EnvValue()
		if r.Observe {
			has := istiod.NativeSidecars(dep)
			rs.IstiodEnableNativeSidecars = has.String()
			if !(has.Known() && has.Present && has.Value == rs.EnableNativeSidecars) {
				pending = append(pending, fmt.Sprintf("would set %s=%s on %s/%s (it has %s): %s", istiod.NativeSidecarsEnv, rs.EnableNativeSidecars, dep.Namespace, dep.Name, has, d.Message))
				r.wouldWrite(&profile, prev, dep, d, has.String())
			}
			envWouldWrite.WithLabelValues(rev).Set(boolGauge(rs.IstiodEnableNativeSidecars != rs.EnableNativeSidecars))
			r.warnAboutNodes(&profile, prev, d)
			revStatus = append(revStatus, rs)
			continue
		}
		has, err := r.ensureEnv(ctx, &profile, dep, d, prev)
		if err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			// Status says what istiod has, apart from the decision, and
			// why the write failed; the error below retries it.
			problems = append(problems, fmt.Sprintf("cannot set %s=%s on %s/%s (it has %s): %v", istiod.NativeSidecarsEnv, rs.EnableNativeSidecars, dep.Namespace, dep.Name, has, err))
			writeErr = errors.Join(writeErr, fmt.Errorf("write %s on %s: %w", istiod.NativeSidecarsEnv, dep.Name, err))
		}
		rs.IstiodEnableNativeSidecars = has
		r.warnAboutNodes(&profile, prev, d)
		revStatus = append(revStatus, rs)
	}
	status.Revisions = revStatus
	r.setConditions(&profile, status, facts, decisions, problems)
	if r.Observe {
		r.setObserved(&profile, status, problems, pending)
	}
	status.ObservedGeneration = profile.Generation
	if token := profile.Annotations[v1alpha1.ReconcileRequestAnnotation]; token != "" {
		status.LastHandledReconcileAt = token
	}
	if !equality.Semantic.DeepEqual(*status, profile.Status) {
		// A merge patch of what changed: the census writes status.pods
		// beside this, and neither should fail on the other's writes.
		patch := client.MergeFrom(profile.DeepCopy())
		profile.Status = *status
		if err := r.Status().Patch(ctx, &profile, patch); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, err
		}
	}
	if len(problems) > 0 {
		log.FromContext(ctx).Info("not reconciled", "problems", problems)
	}
	// A refused write is retried with backoff; a missing istiod is not:
	// the Deployment watch brings it back here when it appears.
	return ctrl.Result{}, writeErr
}

// facts reads what the decision needs; nodes come from the slim cache.
func (r *ProfileReconciler) facts(ctx context.Context, profile *v1alpha1.MeshProfile) (meshversion.Facts, error) {
	mode, err := meshversion.ParseMode(profile.Spec.NativeSidecarMode)
	if err != nil {
		return meshversion.Facts{}, err
	}
	f := meshversion.Facts{Mode: mode}
	if v, err := r.Versions.ServerVersion(); err == nil {
		f.APIServerVersion = v.GitVersion
	} else {
		return f, fmt.Errorf("read the API server version: %w", err)
	}
	var nodes corev1.NodeList
	if err := r.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return f, err
	}
	f.Nodes = nodeFacts(nodes.Items)
	if profile.Spec.OldNodes == v1alpha1.OldNodesGuard {
		f.Guard.On = true
		f.Guard.Healthy, f.Guard.Problem = r.Guard.Health()
	}
	if r.Policy.FeatureFlag != "" {
		var fr v1alpha1.FeatureRegistration
		err := r.Get(ctx, types.NamespacedName{Name: v1alpha1.FeatureObjectName(r.Policy.FeatureFlag)}, &fr)
		switch {
		case err == nil:
			f.FeatureRegistered = fr.Status.AppliedState == v1alpha1.StateRegistered
		case !apierrors.IsNotFound(err):
			return f, err
		}
	}
	return f, nil
}

// qualifies reports whether the cluster meets the policy's versions, as a
// new cluster must to get native sidecars from the start.
func (r *ProfileReconciler) qualifies(f meshversion.Facts, revisions []string) bool {
	if len(revisions) == 0 {
		return false
	}
	f.Mode = meshversion.ModeEnabled
	for _, rev := range revisions {
		d := meshversion.Decide(r.Policy, f, rev)
		if d.Injection != meshversion.Native || d.Degraded != "" {
			return false
		}
	}
	return true
}

func (r *ProfileReconciler) istiods(ctx context.Context) (map[string]*appsv1.Deployment, error) {
	var list appsv1.DeploymentList
	sel, _ := metav1.ParseToLabelSelector(istiod.Label)
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	if err := r.List(ctx, &list, client.InNamespace(r.MeshNamespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, err
	}
	out := make(map[string]*appsv1.Deployment, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out, nil
}

// ensureEnv writes ENABLE_NATIVE_SIDECARS on istiod's container when it
// differs from the decision, and returns the value istiod has after it:
// the decision's once written, what it had before when the write failed
// ("unset" when absent).
func (r *ProfileReconciler) ensureEnv(ctx context.Context, profile *v1alpha1.MeshProfile, dep *appsv1.Deployment, d meshversion.Decision, prev *v1alpha1.RevisionStatus) (string, error) {
	want := d.Injection.EnvValue()
	have := istiod.NativeSidecars(dep)
	if have.NoContainer {
		return have.String(), fmt.Errorf("it has no %q container", istiod.Container)
	}
	current := have.String()
	if have.Known() && have.Present && have.Value == want {
		return current, nil
	}
	patched := dep.DeepCopy()
	istiod.SetNativeSidecars(patched, want)
	// A strategic merge patch would merge env entries by name and keep a
	// duplicate or a valueFrom; the whole env must become what was set.
	if err := r.Patch(ctx, patched, client.MergeFromWithOptions(dep, client.MergeFromWithOptimisticLock{})); err != nil {
		return current, err
	}
	// Drift: the decision did not change, yet istiod no longer has the value
	// it had last time, so someone edited it by hand.
	if prev != nil && prev.Mode == string(d.Injection) && prev.IstiodEnableNativeSidecars == want {
		envWritesTotal.WithLabelValues("drift").Inc()
		r.Recorder.Eventf(profile, corev1.EventTypeWarning, "DriftReverted",
			"%s on %s/%s was changed to %s outside the add-on; set back to %s (the add-on owns this setting: change spec.nativeSidecarMode instead)",
			istiod.NativeSidecarsEnv, dep.Namespace, dep.Name, current, want)
	} else {
		envWritesTotal.WithLabelValues("decision").Inc()
		reason := "NativeSidecarsDisabled"
		if d.Injection == meshversion.Native {
			reason = "NativeSidecarsEnabled"
		}
		r.Recorder.Eventf(profile, corev1.EventTypeNormal, reason, "%s %s=%s (was %s): %s",
			dep.Name, istiod.NativeSidecarsEnv, want, current, d.Message)
	}
	return want, nil
}

// warnAboutNodes raises the hazard of old kubelets: in Auto a native
// revision falling back to classic, in Enabled native pods that will hang.
func (r *ProfileReconciler) warnAboutNodes(profile *v1alpha1.MeshProfile, prev *v1alpha1.RevisionStatus, d meshversion.Decision) {
	if prev != nil && prev.Mode == string(meshversion.Native) && d.Injection == meshversion.Classic && d.Reason == "NodesTooOld" {
		r.Recorder.Eventf(profile, corev1.EventTypeWarning, "OldKubeletNodes",
			"%s switched to classic sidecars: %s", d.Revision, d.Message)
		oldNodeSwitches.WithLabelValues(d.Revision).Inc()
	}
	if prev != nil && prev.Mode == string(meshversion.Native) && d.Injection == meshversion.Classic && d.Reason == "GuardUnhealthy" {
		r.Recorder.Eventf(profile, corev1.EventTypeWarning, "GuardUnhealthy",
			"%s switched to classic sidecars: %s", d.Revision, d.Message)
	}
	if d.Degraded != "" && !meta.IsStatusConditionTrue(profile.Status.Conditions, v1alpha1.ConditionDegraded) {
		r.Recorder.Eventf(profile, corev1.EventTypeWarning, "NativeSidecarsOnOldNodes", "%s: %s", d.Revision, d.Degraded)
	}
}

func (r *ProfileReconciler) setConditions(profile *v1alpha1.MeshProfile, st *v1alpha1.MeshProfileStatus, f meshversion.Facts, ds []meshversion.Decision, problems []string) {
	gen := profile.Generation
	set := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen})
	}

	switch {
	case r.Policy.FeatureFlag == "":
		set(v1alpha1.ConditionFeatureRegistered, true, "NotRequired", fmt.Sprintf("policy %s needs no feature flag", r.Policy.Name))
	case f.CreatedQualifying:
		set(v1alpha1.ConditionFeatureRegistered, true, "NotRequired", "the mesh was set up on a cluster that qualified: no feature flag needed")
	case f.FeatureRegistered:
		set(v1alpha1.ConditionFeatureRegistered, true, "Registered", fmt.Sprintf("feature %s is registered and the provider refreshed", r.Policy.FeatureFlag))
	default:
		set(v1alpha1.ConditionFeatureRegistered, false, "NotRegistered", fmt.Sprintf(
			"feature %s is not registered, or the provider was not refreshed since: run meshaddon feature register --name %s, wait until it shows Registered, then meshaddon provider register",
			r.Policy.FeatureFlag, r.Policy.FeatureFlag))
	}

	var versionProblems []string
	versionReason := "VersionsCompatible"
	seen := map[string]bool{}
	for _, d := range ds {
		for _, g := range d.Gates {
			if g.Condition == meshversion.ConditionVersionsCompatible && !g.OK && !seen[g.Message] {
				seen[g.Message] = true
				if len(versionProblems) == 0 {
					versionReason = g.Reason
				}
				versionProblems = append(versionProblems, g.Message)
			}
		}
	}
	if len(versionProblems) == 0 {
		set(v1alpha1.ConditionVersionsCompatible, true, versionReason, fmt.Sprintf("API server %s and all %d node(s) run %s or newer; revisions %s",
			f.APIServerVersion, len(f.Nodes), meshversion.MinorString(r.Policy.MinKubernetes), strings.Join(profile.Spec.Revisions, ", ")))
	} else {
		set(v1alpha1.ConditionVersionsCompatible, false, versionReason, strings.Join(versionProblems, "; "))
	}

	var native, classic []string
	for _, d := range ds {
		if d.Injection == meshversion.Native {
			native = append(native, d.Revision)
		} else {
			classic = append(classic, fmt.Sprintf("%s (%s)", d.Revision, d.Message))
		}
	}
	switch {
	case len(ds) == 0:
		set(v1alpha1.ConditionNativeSidecarsEnabled, false, "NoRevisions", "spec.revisions is empty: no istiod to configure")
	case len(classic) == 0:
		set(v1alpha1.ConditionNativeSidecarsEnabled, true, "AllNative", "native sidecars on "+strings.Join(native, ", ")+"; restart workloads so they are re-injected (meshaddon migrate)")
	default:
		reason := ds[0].Reason
		for _, d := range ds {
			if d.Injection == meshversion.Classic {
				reason = d.Reason
				break
			}
		}
		set(v1alpha1.ConditionNativeSidecarsEnabled, false, reason, "classic sidecars on "+strings.Join(classic, "; "))
	}

	if len(problems) == 0 {
		set(v1alpha1.ConditionReconciled, true, "Reconciled", "every istiod runs with the decided "+istiod.NativeSidecarsEnv)
	} else {
		set(v1alpha1.ConditionReconciled, false, "ReconcileFailed", strings.Join(problems, "; "))
	}

	var degraded []string
	for _, d := range ds {
		if d.Degraded != "" {
			degraded = append(degraded, d.Revision+": "+d.Degraded)
		}
	}
	if len(degraded) > 0 {
		set(v1alpha1.ConditionDegraded, true, "NativeSidecarsOnOldNodes", strings.Join(degraded, "; "))
	} else {
		set(v1alpha1.ConditionDegraded, false, "AsExpected", "nothing unsafe found")
	}
}

func poolStatus(nodes []meshversion.Node) []v1alpha1.NodePoolStatus {
	var out []v1alpha1.NodePoolStatus
	for _, p := range meshversion.SummarizePools(nodes) {
		out = append(out, v1alpha1.NodePoolStatus{
			Name: p.Name, KubeletVersions: p.KubeletVersions,
			Nodes: int32(p.Nodes), Ready: int32(p.Ready), PowerState: p.PowerState,
		})
	}
	return out
}

func findRevision(rs []v1alpha1.RevisionStatus, name string) *v1alpha1.RevisionStatus {
	for i := range rs {
		if rs[i].Name == name {
			return &rs[i]
		}
	}
	return nil
}

// SetupWithManager registers the controller: every event that can change a
// decision maps to the one profile.
func (r *ProfileReconciler) SetupWithManager(mgr ctrl.Manager) error {
	toProfile := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: v1alpha1.MeshProfileName}}}
	})
	b := ctrl.NewControllerManagedBy(mgr)
	if r.GuardChanged != nil {
		b = b.WatchesRawSource(source.Channel(r.GuardChanged, toProfile))
	}
	return b.
		For(&v1alpha1.MeshProfile{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&corev1.Node{}, toProfile, builder.WithPredicates(nodeFactChanged)).
		Watches(&appsv1.Deployment{}, toProfile, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.FeatureRegistration{}, toProfile, builder.WithPredicates(featureApplied)).
		Named("meshprofile").
		Complete(r)
}

// featureApplied passes changes of a feature's applied state.
var featureApplied = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*v1alpha1.FeatureRegistration)
		n, ok2 := e.ObjectNew.(*v1alpha1.FeatureRegistration)
		return !ok1 || !ok2 || o.Status.AppliedState != n.Status.AppliedState
	},
}
