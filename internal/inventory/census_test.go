package inventory

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
)

func meta(name string, annotations, labels map[string]string, owner *metav1.OwnerReference) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Namespace: "shop", Name: name, Annotations: annotations, Labels: labels,
		ResourceVersion: "42", UID: "uid-1",
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	if owner != nil {
		m.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return m
}

// The slim pod the manager caches classifies exactly as the whole metadata.
func TestSlimPodMetadataClassifiesTheSame(t *testing.T) {
	native := `{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":["istio-envoy","istio-data"],"imagePullSecrets":null,"revision":"asm-1-27"}`
	classic := `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"asm-1-26"}`
	rs := &metav1.OwnerReference{Kind: "ReplicaSet", Name: "web-5d8f", Controller: ptr.To(true)}
	other := &metav1.OwnerReference{Kind: "Node", Name: "n1"} // not the controller
	for i, m := range []*metav1.PartialObjectMetadata{
		meta("native", map[string]string{StatusAnnotation: native, "unrelated": "x"}, map[string]string{"pod-template-hash": "5d8f", "app": "web"}, rs),
		meta("classic", map[string]string{StatusAnnotation: classic, NativeSidecarOverride: "false"}, nil, nil),
		meta("by-label", map[string]string{StatusAnnotation: `{"containers":["istio-proxy"],"revision":"default"}`}, map[string]string{RevisionLabel: "asm-1-25"}, other),
		meta("plain", map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}, map[string]string{"app": "x"}, nil),
		meta("garbled", map[string]string{StatusAnnotation: "not json"}, nil, nil),
	} {
		slim, err := SlimPodMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		s := slim.(*metav1.PartialObjectMetadata)
		if got, want := ClassifyMetadata(s), ClassifyMetadata(m); got != want {
			t.Errorf("%d: slim %+v, whole %+v", i, got, want)
		}
		if len(s.ManagedFields) > 0 || s.Annotations["unrelated"] != "" || s.Labels["app"] != "" || len(s.OwnerReferences) > 1 {
			t.Errorf("%d: slim keeps more than counted: %+v", i, s.ObjectMeta)
		}
	}
	if s, _ := SlimPodMetadata(meta("n", map[string]string{StatusAnnotation: native}, nil, nil)); len(s.(*metav1.PartialObjectMetadata).Annotations[StatusAnnotation]) >= len(native) {
		t.Errorf("the status annotation was not cut down: %v", s)
	}
}

func TestCensusResult(t *testing.T) {
	c := NewCensus()
	job := Workload{Kind: "Job", Namespace: "batch", Name: "nightly-1"}
	rows := []Pod{
		{Namespace: "shop", Name: "a", Mode: Classic, Revision: "asm-1-27", Owner: Workload{Kind: "Deployment", Namespace: "shop", Name: "web"}},
		{Namespace: "shop", Name: "b", Mode: Native, Revision: "asm-1-27", Override: "true"},
		{Namespace: "shop", Name: "c", Mode: None},
		{Namespace: "batch", Name: "j", Mode: Classic, Revision: "asm-1-26", Owner: job},
		{Namespace: "batch", Name: "k", Mode: Classic, Revision: "asm-1-26", Owner: Workload{Kind: "Job", Namespace: "batch", Name: "once"}},
	}
	for i := range 30 {
		rows = append(rows, Pod{Namespace: "many", Name: fmt.Sprintf("p%02d", i), Mode: None, Override: "false"})
	}
	c.Add(rows[:2])
	c.Add(rows[2:])
	now := time.Date(2026, 11, 27, 12, 0, 0, 500, time.UTC)
	got := c.Result(map[Workload]Workload{job: {Kind: "CronJob", Namespace: "batch", Name: "nightly"}}, now)
	if got.Total != 35 || got.NotInjected != 31 {
		t.Errorf("total %d, not injected %d", got.Total, got.NotInjected)
	}
	if want := []v1alpha1.RevisionPods{{Name: "asm-1-26", Classic: 2}, {Name: "asm-1-27", Native: 1, Classic: 1}}; !reflect.DeepEqual(got.Revisions, want) {
		t.Errorf("revisions %+v", got.Revisions)
	}
	if got.OverrideCount != 31 || len(got.Overrides) != v1alpha1.CensusListMax || got.Overrides[0] != "many/p00=false" {
		t.Errorf("overrides %d %v", got.OverrideCount, got.Overrides)
	}
	if want := []string{"batch/CronJob/nightly", "batch/Job/once"}; got.ClassicJobCount != 2 || !reflect.DeepEqual(got.ClassicJobs, want) {
		t.Errorf("classic jobs %d %v", got.ClassicJobCount, got.ClassicJobs)
	}
	if !got.ObservedTime.Equal(&metav1.Time{Time: now.Truncate(time.Second)}) {
		t.Errorf("observed %v", got.ObservedTime)
	}
}

// BenchmarkCensusRecount is the manager's recount at 50,000 slim pods,
// half classic-injected, as after every batch of pod events.
func BenchmarkCensusRecount(b *testing.B) {
	classic := `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"asm-1-27"}`
	pods := make([]*metav1.PartialObjectMetadata, 50000)
	for i := range pods {
		var ann map[string]string
		if i%2 == 0 {
			ann = map[string]string{StatusAnnotation: classic}
		}
		rs := &metav1.OwnerReference{Kind: "ReplicaSet", Name: fmt.Sprintf("app-%d-5d8f", i%500), Controller: ptr.To(true)}
		s, _ := SlimPodMetadata(meta(fmt.Sprintf("p%d", i), ann, map[string]string{"pod-template-hash": "5d8f"}, rs))
		pods[i] = s.(*metav1.PartialObjectMetadata)
	}
	b.ResetTimer()
	for b.Loop() {
		c := NewCensus()
		rows := make([]Pod, len(pods))
		for i, p := range pods {
			rows[i] = ClassifyMetadata(p)
		}
		c.Add(rows)
		_ = c.Result(nil, time.Now())
	}
}
