package manager

import (
	"context"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
)

// CensusDelay batches pod events: the census is written at most once per
// CensusDelay, however fast pods come and go.
const CensusDelay = time.Second

// CensusReconciler keeps the MeshProfile's status.pods: every pod counted
// by injection mode and revision, from a cache of pod and Job metadata
// slimmed to what the count reads (inventory.SlimPodMetadata). It is what
// lets precheck report the pods of a 50,000-pod cluster without listing them.
type CensusReconciler struct {
	client.Client
	Clock clock.PassiveClock
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch

var profileRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: v1alpha1.MeshProfileName}}

// Reconcile recounts the cached pods and writes the census when it changed
// or when CensusHeartbeat has passed since it was last confirmed.
func (r *CensusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var profile v1alpha1.MeshProfile
	if err := r.Get(ctx, req.NamespacedName, &profile); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	// Read-only: the cache's objects are not copied, 50,000 of them.
	if err := r.List(ctx, pods, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	jobs := &metav1.PartialObjectMetadataList{}
	jobs.SetGroupVersionKind(batchv1.SchemeGroupVersion.WithKind("JobList"))
	if err := r.List(ctx, jobs, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	c := inventory.NewCensus()
	rows := make([]inventory.Pod, len(pods.Items))
	for i := range pods.Items {
		rows[i] = inventory.ClassifyMetadata(&pods.Items[i])
	}
	c.Add(rows)
	now := r.Clock.Now()
	census := c.Result(inventory.JobOwnersOf(jobs.Items), now)

	if prev := profile.Status.Pods; prev != nil {
		age := now.Sub(prev.ObservedTime.Time)
		census.ObservedTime = prev.ObservedTime
		if equality.Semantic.DeepEqual(*prev, census) && age >= 0 && age < v1alpha1.CensusHeartbeat {
			return ctrl.Result{RequeueAfter: v1alpha1.CensusHeartbeat - age}, nil
		}
		census.ObservedTime = metav1.NewTime(now.UTC().Truncate(time.Second))
	}
	// A merge patch of status.pods alone: the profile controller owns the
	// rest of the status and is not raced.
	patch := client.MergeFrom(profile.DeepCopy())
	profile.Status.Pods = &census
	if err := r.Status().Patch(ctx, &profile, patch); err != nil {
		return ctrl.Result{}, err
	}
	setPodGauges(&census)
	return ctrl.Result{RequeueAfter: v1alpha1.CensusHeartbeat}, nil
}

// SetupWithManager watches pod and Job metadata, batching their events
// into one recount per CensusDelay, and the profile's creation.
func (r *CensusReconciler) SetupWithManager(mgr ctrl.Manager) error {
	batched := handler.Funcs{
		CreateFunc: func(_ context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(profileRequest, CensusDelay)
		},
		UpdateFunc: func(_ context.Context, _ event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(profileRequest, CensusDelay)
		},
		DeleteFunc: func(_ context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(profileRequest, CensusDelay)
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.MeshProfile{}, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		})).
		WatchesMetadata(&corev1.Pod{}, batched, builder.WithPredicates(countedFieldsChanged)).
		WatchesMetadata(&batchv1.Job{}, batched, builder.WithPredicates(countedFieldsChanged)).
		Named("census").
		Complete(r)
}

// countedFieldsChanged passes updates that can change a count: the slim
// cache keeps only counted fields, so a pod's status updates (which bump
// only its resourceVersion there) are dropped.
var countedFieldsChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		return !equality.Semantic.DeepEqual(o.GetAnnotations(), n.GetAnnotations()) ||
			!equality.Semantic.DeepEqual(o.GetLabels(), n.GetLabels()) ||
			!equality.Semantic.DeepEqual(o.GetOwnerReferences(), n.GetOwnerReferences())
	},
}
