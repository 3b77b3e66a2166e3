package manager_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/precheck"
)

// Right after pods change, before the manager's census has counted them,
// precheck's counts equal a listing's: it reads the census only once the
// census includes every pod created or deleted so far, and lists the pods
// itself until then.
func TestPrecheckNeverPrintsAnOlderCensus(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fresh"}}
	if err := cl.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kcs.CoreV1().Pods("fresh").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = cl.Delete(ctx, ns)
	})
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}, NativeSidecarMode: "Auto"})
	classic := `{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"asm-1-27"}`
	native := `{"initContainers":["istio-proxy"],"containers":null,"revision":"asm-1-27"}`
	censusPod(t, "fresh", "web-1", classic, "", nil)

	md := metadata.NewForConfigOrDie(restCfg)
	// pods counts as precheck does (listing when asked), and says how.
	pods := func(list bool) (string, string) {
		e := &precheck.Env{Kube: kcs, Metadata: md, Client: cl, ListPods: list}
		pc, err := e.Pods(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d pods, %d none, %+v", pc.Total, pc.NotInjected, pc.Revisions), pc.Source
	}
	eventually(t, 10*time.Second, "precheck reads the census", func() (bool, string) {
		_, source := pods(false)
		return strings.HasPrefix(source, "counted by the add-on manager"), source
	})

	for _, change := range []struct {
		what string
		do   func()
	}{
		{"a pod created", func() { censusPod(t, "fresh", "web-2", native, "", nil) }},
		{"a pod deleted", func() {
			if err := kcs.CoreV1().Pods("fresh").Delete(ctx, "web-1", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		change.do()
		// At once: the census cannot have counted it yet (it batches a second).
		got, source := pods(false)
		listed, _ := pods(true)
		if got != listed {
			t.Errorf("%s: precheck counts %s (%s), a listing %s", change.what, got, source, listed)
		}
		eventually(t, 10*time.Second, change.what+": precheck reads the census again", func() (bool, string) {
			got, source := pods(false)
			return strings.HasPrefix(source, "counted by the add-on manager") && got == listed, source + ": " + got
		})
	}
}
