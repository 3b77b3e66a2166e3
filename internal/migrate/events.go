package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/meshaddon/meshaddon/internal/inventory"
)

// failedCreates watches the FailedCreate events of the namespaces a run
// restarts in, one informer per namespace for the whole run (not one per
// workload: two more requests per restart would cost a 500-workload run
// seconds of its client's rate limit), and tells each restarting workload
// of its own: a quota or an admission webhook refused one of its new pods
// (a rollout otherwise waits silently until --timeout).
type failedCreates struct {
	ctx  context.Context
	kube kubernetes.Interface
	mu   sync.Mutex
	ns   map[string]*nsEvents
}

type nsEvents struct {
	store toolscache.Store
	subs  map[*eventSub]bool
	// denied is the last Forbidden answer to its list or watch.
	denied error
}

type eventSub struct {
	w       inventory.Workload
	since   time.Time
	stalled func(reason string)
	denied  func(error)
}

func newFailedCreates(ctx context.Context, kube kubernetes.Interface) *failedCreates {
	return &failedCreates{ctx: ctx, kube: kube, ns: map[string]*nsEvents{}}
}

// subscribe calls stalled with the first FailedCreate of w's controller (a
// Deployment's ReplicaSets, a StatefulSet, a DaemonSet) newer than since,
// and denied if the events may not be listed or watched, until the
// returned func is called.
func (f *failedCreates) subscribe(w inventory.Workload, since time.Time, stalled func(string), denied func(error)) func() {
	// Events are stamped by the controller-manager's clock: allow it a
	// little skew.
	s := &eventSub{w: w, since: since.Add(-2 * time.Second), stalled: stalled, denied: denied}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.ns[w.Namespace]
	if n == nil {
		n = &nsEvents{subs: map[*eventSub]bool{}}
		f.ns[w.Namespace] = n
		f.start(w.Namespace, n)
	}
	n.subs[s] = true
	if n.denied != nil {
		denied(n.denied)
	}
	for _, obj := range n.store.List() {
		if e, ok := obj.(*corev1.Event); ok && s.matches(e) {
			stalled(s.reason(e))
		}
	}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(n.subs, s)
	}
}

// start runs the namespace's informer until the run ends (f.mu held).
func (f *failedCreates) start(ns string, n *nsEvents) {
	sel := fields.OneTermEqualSelector("reason", "FailedCreate")
	lw := guarded(toolscache.NewListWatchFromClient(f.kube.CoreV1().RESTClient(), "events", ns, sel), func(err error) {
		if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		n.denied = err
		for s := range n.subs {
			s.denied(err)
		}
	})
	seen := func(obj any) {
		e, ok := obj.(*corev1.Event)
		if !ok {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for s := range n.subs {
			if s.matches(e) {
				s.stalled(s.reason(e))
			}
		}
	}
	store, ctrl := toolscache.NewInformerWithOptions(toolscache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Event{},
		Handler: toolscache.ResourceEventHandlerFuncs{
			AddFunc:    seen,
			UpdateFunc: func(_, obj any) { seen(obj) },
		},
	})
	n.store = store
	go ctrl.RunWithContext(f.ctx)
}

func (s *eventSub) matches(e *corev1.Event) bool {
	kind := s.w.Kind
	if kind == "Deployment" {
		kind = "ReplicaSet"
	}
	return e.InvolvedObject.Kind == kind && ownEvent(s.w, e.InvolvedObject.Name) && !eventTime(e).Before(s.since)
}

func (s *eventSub) reason(e *corev1.Event) string {
	return fmt.Sprintf("%s %s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
}

// ownEvent: the event's object is the workload or, for a Deployment, one
// of its ReplicaSets (its name and a pod-template-hash, which has no dash).
func ownEvent(w inventory.Workload, object string) bool {
	if w.Kind != "Deployment" {
		return object == w.Name
	}
	hash, ok := strings.CutPrefix(object, w.Name+"-")
	return ok && hash != "" && !strings.Contains(hash, "-")
}

// eventTime is when the event last happened.
func eventTime(e *corev1.Event) time.Time {
	t := e.LastTimestamp.Time
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	if e.EventTime.After(t) {
		t = e.EventTime.Time
	}
	if t.IsZero() {
		t = e.CreationTimestamp.Time
	}
	return t
}
