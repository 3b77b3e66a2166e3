package precheck

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// When is the manager's census current? It counts its cache of pod
// metadata, and records the resourceVersion of the last pod change that
// cache held (status.pods.podsResourceVersion). A pod's mode and revision
// are fixed when it is created — its containers never change and the
// injector records them at admission — so the counts can only be behind
// if a pod was created or deleted since that resourceVersion. precheck
// asks the API server exactly that: a watch of pods from that
// resourceVersion, which the server answers from its watch cache with
// every change since, in order, then a bookmark shortly before the watch's
// deadline. An ADDED or DELETED event before the bookmark (or a server
// that no longer has that history: 410 Gone) means the census is behind:
// precheck gives the manager a few seconds to catch up, then lists the
// pods itself. The cost is one GET, a LIST of one pod and one watch that
// carries only the changes since the census, whatever the cluster's size.
// The resourceVersion is only handed back to the server, never compared.

// censusWatchSeconds is the freshness watch's timeout: the API server's
// watch cache sends its bookmark 2 s before a watch's deadline.
const censusWatchSeconds = 3

// censusCatchUp bounds how long precheck waits for a census that is
// behind (the manager recounts within a second of a change, its
// CensusDelay), reading it every censusPoll: listing is then the quicker way.
const (
	censusCatchUp = 5 * time.Second
	censusPoll    = 500 * time.Millisecond
)

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// census returns the manager's census when it is current, else nil and
// why precheck lists the pods instead. A census that is behind is read
// again until it catches up, for up to censusCatchUp of Wait.
func (e *Env) census(ctx context.Context) (*PodCounts, string) {
	p, err := e.Profile(ctx)
	deadline := time.Now().Add(min(e.waitLeft(), censusCatchUp))
	for {
		switch {
		case err != nil:
			return nil, fmt.Sprintf("cannot read the add-on manager's count: %v", err)
		case p == nil || p.Status.Pods == nil:
			return nil, "the add-on manager keeps no count"
		}
		c := p.Status.Pods
		age := time.Since(c.ObservedTime.Time).Round(time.Second)
		if age >= CensusMaxAge {
			return nil, fmt.Sprintf("the add-on manager's count is %s old: is the manager running?", age)
		}
		if c.PodsResourceVersion == "" {
			return nil, "the add-on manager's count does not say which pod changes it includes (an older manager)"
		}
		changed, _, err := e.podsChangedSince(ctx, c.PodsResourceVersion)
		if err != nil {
			return nil, fmt.Sprintf("cannot tell whether pods changed since the add-on manager counted them: %v", err)
		}
		if changed == "" {
			return &PodCounts{PodCensus: *c, Source: fmt.Sprintf("counted by the add-on manager %s ago", max(age, 0))}, ""
		}
		why := changed + " since the add-on manager counted the pods"
		left := time.Until(deadline)
		if left <= 0 {
			return nil, why
		}
		e.waiting("a current pod count", why, left)
		select {
		case <-ctx.Done():
			return nil, why
		case <-time.After(min(censusPoll, left)):
		}
		p, err = e.readProfile(ctx)
	}
}

// podsChangedSince says which pod was created or deleted after
// resourceVersion ("" when none was): see above. bookmarked says whether
// the answer came with the API server's bookmark rather than at the
// watch's deadline.
func (e *Env) podsChangedSince(ctx context.Context, resourceVersion string) (changed string, bookmarked bool, err error) {
	// The watch cache sends a watch its bookmark only once it holds a
	// revision past the watch's start. With no pod written since the
	// census it does not (its pods' revision moves with pod writes and
	// etcd's progress notifications), and the watch ran to its deadline:
	// 3 s. A consistent read first makes the API server bring the cache up
	// to etcd's current revision, which every lease renewal moves on.
	if _, err := e.podsResourceVersion(ctx); err != nil {
		return "", false, err
	}
	opts := metav1.ListOptions{ResourceVersion: resourceVersion, AllowWatchBookmarks: true, TimeoutSeconds: ptr.To[int64](censusWatchSeconds)}
	ctx, cancel := context.WithTimeout(ctx, 2*censusWatchSeconds*time.Second)
	defer cancel()
	var w watch.Interface
	if e.Metadata != nil {
		w, err = e.Metadata.Resource(podsResource).Watch(ctx, opts)
	} else {
		w, err = e.Kube.CoreV1().Pods(corev1.NamespaceAll).Watch(ctx, opts)
	}
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return "the API server no longer has the pod changes since the count", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer w.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return "", false, fmt.Errorf("the API server sent no bookmark on a watch of pods")
		case ev, ok := <-w.ResultChan():
			if !ok {
				// Ended at its timeout without a bookmark (a server without
				// a watch cache): it sent every change it had. Earlier, the
				// connection broke.
				if time.Since(start) >= censusWatchSeconds*time.Second-500*time.Millisecond {
					return "", false, nil
				}
				return "", false, fmt.Errorf("the watch of pods ended early")
			}
			switch ev.Type {
			case watch.Bookmark:
				return "", true, nil
			case watch.Added, watch.Deleted:
				verb := map[watch.EventType]string{watch.Added: "created", watch.Deleted: "deleted"}[ev.Type]
				if m, ok := ev.Object.(metav1.Object); ok {
					return fmt.Sprintf("pod %s/%s was %s", m.GetNamespace(), m.GetName(), verb), false, nil
				}
				return "a pod was " + verb, false, nil
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					return "the API server no longer has the pod changes since the count", false, nil
				}
				return "", false, err
			}
			// MODIFIED: a pod's mode and revision do not change in place.
		}
	}
}

// podsResourceVersion is the pods' resourceVersion now: a consistent LIST
// of one pod.
func (e *Env) podsResourceVersion(ctx context.Context) (string, error) {
	opts := metav1.ListOptions{Limit: 1}
	if e.Metadata != nil {
		l, err := e.Metadata.Resource(podsResource).List(ctx, opts)
		if err != nil {
			return "", err
		}
		return l.ResourceVersion, nil
	}
	l, err := e.Kube.CoreV1().Pods(corev1.NamespaceAll).List(ctx, opts)
	if err != nil {
		return "", err
	}
	return l.ResourceVersion, nil
}
