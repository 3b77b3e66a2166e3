package precheck

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshaddon/meshaddon/internal/testenv"
)

// The census's freshness proof on a real API server: with no pod written
// since the census (only other objects), the watch of pods ends with the
// API server's bookmark, not at its deadline — the watch cache sends a
// bookmark only past the watch's start, which it reaches for pods only
// because precheck's consistent read brings it up to etcd's revision
// first (without it the watch ran its whole 3 s) — and a pod created
// since is named.
func TestCensusProofEndsWithABookmark(t *testing.T) {
	kc := kubernetes.NewForConfigOrDie(testenv.Start(t))
	ctx := context.Background()
	e := &Env{Kube: kc}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "pause"}}}}
	}
	counted, err := kc.CoreV1().Pods("default").Create(ctx, pod("counted"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Another object moves etcd's revision on, as leases do in a cluster.
	if _, err := kc.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	changed, bookmarked, err := e.podsChangedSince(ctx, counted.ResourceVersion)
	if err != nil || changed != "" || !bookmarked {
		t.Errorf("no pod changed: podsChangedSince = %q, bookmarked %t, %v; want \"\", bookmarked, no error", changed, bookmarked, err)
	}

	if _, err := kc.CoreV1().Pods("default").Create(ctx, pod("uncounted"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	changed, _, err = e.podsChangedSince(ctx, counted.ResourceVersion)
	if err != nil || changed != "pod default/uncounted was created" {
		t.Errorf("a pod created since: podsChangedSince = %q, %v; want it named", changed, err)
	}
}
