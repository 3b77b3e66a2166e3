package inventory

import (
	"context"
	"encoding/json"
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
)

// Counting pods does not need their specs: a pod's containers never change
// after creation, and the injector records what it added in the
// sidecar.istio.io/status annotation (istio-proxy among "initContainers"
// when native, among "containers" when classic). Listing only metadata
// moves a fraction of the bytes of full pods; status, the verification
// view, still reads the spec itself.

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// injectorStatus is what the views read of the sidecar.istio.io/status
// annotation.
// (omitempty keeps SlimPodMetadata's re-encoding short).
type injectorStatus struct {
	InitContainers []string `json:"initContainers,omitempty"`
	Containers     []string `json:"containers,omitempty"`
	Revision       string   `json:"revision,omitempty"`
}

// parseStatus decodes the annotation; ok is false when there is none or
// it is not the injector's JSON.
func parseStatus(annotation string) (st injectorStatus, ok bool) {
	if annotation == "" {
		return st, false
	}
	return st, json.Unmarshal([]byte(annotation), &st) == nil
}

func (st injectorStatus) mode() Mode {
	switch {
	case slices.Contains(st.InitContainers, ProxyContainer):
		return Native
	case slices.Contains(st.Containers, ProxyContainer):
		return Classic
	}
	return None
}

// ModeOfStatus tells how istio-proxy was injected from the status
// annotation; a pod without one was not injected.
func ModeOfStatus(annotation string) Mode {
	st, ok := parseStatus(annotation)
	if !ok {
		return None
	}
	return st.mode()
}

// ClassifyMetadata is Classify from a pod's metadata: mode, revision,
// override and owner; the container names, node and phase stay empty.
func ClassifyMetadata(m *metav1.PartialObjectMetadata) Pod {
	out := Pod{
		Namespace: m.Namespace,
		Name:      m.Name,
		Override:  m.Annotations[NativeSidecarOverride],
		Owner:     ownerOf(m),
		Mode:      None,
	}
	if st, ok := parseStatus(m.Annotations[StatusAnnotation]); ok {
		out.Mode = st.mode()
		if out.Mode != None {
			out.Revision = st.revisionOr(m.Labels[RevisionLabel])
		}
	}
	return out
}

// EachMetadataPage lists the pods of each namespace as metadata, workers
// namespaces at a time, and calls fn with each page's rows, one call at a
// time (pages of different namespaces arrive in any order).
func EachMetadataPage(ctx context.Context, md metadata.Interface, namespaces []string, pageSize int64, workers int, fn func([]Pod) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	next := make(chan string)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ns := range next {
				err := EachListPage(ctx, metav1.ListOptions{Limit: pageSize}, md.Resource(podsResource).Namespace(ns).List, func(list *metav1.PartialObjectMetadataList) error {
					rows := make([]Pod, len(list.Items))
					for i := range list.Items {
						rows[i] = ClassifyMetadata(&list.Items[i])
					}
					mu.Lock()
					defer mu.Unlock()
					return fn(rows)
				})
				if err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	for _, ns := range namespaces {
		select {
		case next <- ns:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}
