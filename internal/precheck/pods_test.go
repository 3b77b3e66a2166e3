package precheck

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// Precheck trusts the manager's census only while the manager confirms it
// and no pod was created or deleted since it counted; otherwise, or when
// asked, it lists the pods and says why. Against a real API server
// (envtest): the freshness check is a watch the server answers.
func TestPodsFromCensusOrListing(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.Start(t)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	md := metadata.NewForConfigOrDie(cfg)
	kc, cl := clients.Kube, clients.Client

	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod := func(name string) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: map[string]string{inventory.StatusAnnotation: `{"containers":["istio-proxy"],"revision":"asm-1-27"}`}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}, {Name: "istio-proxy", Image: "proxy"}}},
		}
		if _, err := kc.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createPod("web")
	profile := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}, Spec: v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}}}
	if err := cl.Create(ctx, profile); err != nil {
		t.Fatal(err)
	}
	// census writes a census as the manager would, counted now (as of the
	// pods' current resourceVersion), with counts no listing gives.
	writeCensus := func(age time.Duration) error {
		list, err := kc.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		patch := client.MergeFrom(profile.DeepCopy())
		profile.Status.Pods = &v1alpha1.PodCensus{
			ObservedTime:        metav1.NewTime(time.Now().Add(-age)),
			PodsResourceVersion: list.ResourceVersion,
			Total:               5000, NotInjected: 1000,
			Revisions: []v1alpha1.RevisionPods{{Name: "asm-1-27", Native: 4000}},
		}
		return cl.Status().Patch(ctx, profile, patch)
	}
	census := func(age time.Duration) {
		t.Helper()
		if err := writeCensus(age); err != nil {
			t.Fatal(err)
		}
	}
	// modes runs the pods-by-mode check as precheck does, with a wait.
	modes := func(wait time.Duration, listPods bool) string {
		t.Helper()
		e := &Env{Kube: kc, Metadata: md, Client: cl, ListPods: listPods, Wait: wait}
		rs, err := checkPodModes(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, r := range rs {
			lines = append(lines, string(r.Status)+": "+r.Message)
		}
		return strings.Join(lines, "\n")
	}
	expect := func(got string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("got\n%s\nwant %q", got, w)
			}
		}
	}
	const fromCensus = "ok: 5000 pod(s), 4000 injected, 1000 not injected (counted by the add-on manager"

	t.Run("no census", func(t *testing.T) {
		expect(modes(0, false), "(listed by precheck: the add-on manager keeps no count)")
	})
	t.Run("a current census", func(t *testing.T) {
		census(10 * time.Second)
		start := time.Now()
		expect(modes(0, false), fromCensus, "ok: asm-1-27: 4000 native, 0 classic")
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("telling the census current took %s", took)
		}
	})
	t.Run("a pod changed in place: the census stays current", func(t *testing.T) {
		census(0)
		p, err := kc.CoreV1().Pods("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Labels = map[string]string{"touched": "yes"}
		if _, err := kc.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		expect(modes(0, false), fromCensus)
	})
	t.Run("a pod created since the census", func(t *testing.T) {
		census(0)
		createPod("new")
		expect(modes(0, false), "ok: 2 pod(s), 2 injected, 0 not injected (listed by precheck: pod shop/new was created since the add-on manager counted the pods)",
			"warn: asm-1-27: 0 native, 2 classic")
	})
	t.Run("a pod deleted since the census", func(t *testing.T) {
		census(0)
		if err := kc.CoreV1().Pods("shop").Delete(ctx, "new", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		expect(modes(0, false), "ok: 1 pod(s), 1 injected, 0 not injected (listed by precheck: pod shop/new was deleted since the add-on manager counted the pods)")
	})
	t.Run("a census that catches up within the wait", func(t *testing.T) {
		census(0)
		createPod("later")
		done := make(chan error)
		go func() { // the manager recounts a second later
			time.Sleep(time.Second)
			done <- writeCensus(0)
		}()
		expect(modes(time.Minute, false), fromCensus)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a census no manager confirms", func(t *testing.T) {
		census(CensusMaxAge + time.Minute)
		expect(modes(0, false), "(listed by precheck: the add-on manager's count is 3m", "old: is the manager running?)", "warn: asm-1-27: 0 native, 2 classic")
	})
	t.Run("--list-pods", func(t *testing.T) {
		census(0)
		expect(modes(0, true), "(listed by precheck: asked to list them)", "warn: asm-1-27: 0 native, 2 classic")
	})
}
