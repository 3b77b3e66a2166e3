package manager

import (
	"context"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
)

// CensusDelay batches pod events: the census is written at most once per
// CensusDelay, however fast pods come and go.
const CensusDelay = time.Second

// CensusReconciler keeps the MeshProfile's status.pods: every pod counted
// by injection mode and revision, from informers of pod and Job metadata
// slimmed to what the count reads (inventory.SlimPodMetadata). It is what
// lets precheck report the pods of a 50,000-pod cluster without listing them.
type CensusReconciler struct {
	client.Client
	Clock clock.PassiveClock
	// Pods and Jobs are the census's own informers (NewCensusInformer).
	Pods, Jobs toolscache.SharedIndexInformer

	// podsRV is the resourceVersion of the last pod event handled: an
	// informer's handlers run after its store holds the event, so a count
	// of the store read after it includes every change up to it.
	podsRV atomic.Value // string
}

// NewCensusInformer is a metadata informer of resource whose objects are
// cut down by slim. Its lists are consistent reads in pages, each page cut
// down as it arrives: an informer's usual first list (resourceVersion 0)
// is served from the watch cache in one piece whatever the limit — every
// pod of the cluster with its managedFields at once, close to 1 GiB at
// 50,000 pods — and only then trimmed.
func NewCensusInformer(md metadata.Interface, resource schema.GroupVersionResource, slim toolscache.TransformFunc) toolscache.SharedIndexInformer {
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			if opts.ResourceVersion == "0" {
				opts.ResourceVersion = ""
			}
			list, err := md.Resource(resource).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for i := range list.Items {
				s, err := slim(&list.Items[i])
				if err != nil {
					return nil, err
				}
				if m, ok := s.(*metav1.PartialObjectMetadata); ok {
					list.Items[i] = *m
				}
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return md.Resource(resource).Watch(ctx, opts)
		},
	}
	inf := toolscache.NewSharedIndexInformer(lw, &metav1.PartialObjectMetadata{}, 0, toolscache.Indexers{})
	_ = inf.SetTransform(slim) // for watch events; fails only once started
	return inf
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
	// A count of half-listed pods would be wrong, not early.
	if !r.Pods.HasSynced() || !r.Jobs.HasSynced() {
		return ctrl.Result{RequeueAfter: CensusDelay}, nil
	}
	// Before the store: the count then includes at least this change.
	rv, _ := r.podsRV.Load().(string)
	// Read-only: the informers' objects are not copied, 50,000 of them.
	pods := r.Pods.GetStore().List()
	rows := make([]inventory.Pod, 0, len(pods))
	for _, o := range pods {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			rows = append(rows, inventory.ClassifyMetadata(m))
		}
	}
	jobOwners := map[inventory.Workload]inventory.Workload{}
	for _, o := range r.Jobs.GetStore().List() {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			inventory.AddCronJobOf(jobOwners, m)
		}
	}
	c := inventory.NewCensus()
	c.Add(rows)
	now := r.Clock.Now()
	census := c.Result(jobOwners, now)
	census.PodsResourceVersion = rv
	setPodGauges(&census)

	if prev := profile.Status.Pods; prev != nil {
		age := now.Sub(prev.ObservedTime.Time)
		counts := *prev
		counts.ObservedTime = census.ObservedTime
		if equality.Semantic.DeepEqual(counts, census) && age >= 0 && age < v1alpha1.CensusHeartbeat {
			censusTime.Set(float64(prev.ObservedTime.Unix()))
			return ctrl.Result{RequeueAfter: v1alpha1.CensusHeartbeat - age}, nil
		}
	}
	// A merge patch of status.pods alone: the profile controller owns the
	// rest of the status and is not raced.
	patch := client.MergeFrom(profile.DeepCopy())
	profile.Status.Pods = &census
	if err := r.Status().Patch(ctx, &profile, patch); err != nil {
		return ctrl.Result{}, err
	}
	censusTime.Set(float64(census.ObservedTime.Unix()))
	return ctrl.Result{RequeueAfter: v1alpha1.CensusHeartbeat}, nil
}

// SetupWithManager runs the informers (on the leader only, as the
// controller) and watches them, batching their events into one recount per
// CensusDelay, and the profile's creation.
func (r *CensusReconciler) SetupWithManager(mgr ctrl.Manager) error {
	for _, inf := range []toolscache.SharedIndexInformer{r.Pods, r.Jobs} {
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			inf.RunWithContext(ctx)
			return nil
		})); err != nil {
			return err
		}
	}
	// Records every pod event's resourceVersion (precheck watches pods
	// from the census's to tell whether it is current).
	record := func(obj any) {
		if m, ok := obj.(metav1.Object); ok {
			r.podsRV.Store(m.GetResourceVersion())
		}
	}
	if _, err := r.Pods.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
		DeleteFunc: record, // a tombstone (no metav1.Object) keeps the older one
	}); err != nil {
		return err
	}
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
		WatchesRawSource(&source.Informer{Informer: r.Pods, Handler: batched, Predicates: []predicate.Predicate{countedFieldsChanged}}).
		WatchesRawSource(&source.Informer{Informer: r.Jobs, Handler: batched, Predicates: []predicate.Predicate{countedFieldsChanged}}).
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
