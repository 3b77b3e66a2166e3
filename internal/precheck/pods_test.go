package precheck

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/kube"
)

// Precheck trusts the manager's census only while the manager confirms it;
// otherwise, or when asked, it lists the pods and says why.
func TestPodsFromCensusOrListing(t *testing.T) {
	classic := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: map[string]string{inventory.StatusAnnotation: `{"containers":["istio-proxy"],"revision":"asm-1-27"}`}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}},
	}
	census := func(age time.Duration) *v1alpha1.MeshProfile {
		p := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}}
		p.Status.Pods = &v1alpha1.PodCensus{
			ObservedTime: metav1.NewTime(time.Now().Add(-age)),
			Total:        5000, NotInjected: 1000,
			Revisions: []v1alpha1.RevisionPods{{Name: "asm-1-27", Native: 4000}},
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		profile  *v1alpha1.MeshProfile
		listPods bool
		want     []string
	}{
		{"a current census", census(10 * time.Second), false,
			[]string{"ok: 5000 pod(s), 4000 injected, 1000 not injected (counted by the add-on manager 1", "ok: asm-1-27: 4000 native, 0 classic"}},
		{"a stale census", census(CensusMaxAge + time.Minute), false,
			[]string{"ok: 1 pod(s), 1 injected, 0 not injected (listed by precheck: the add-on manager's count is 3m", "old: is the manager running?)", "warn: asm-1-27: 0 native, 1 classic"}},
		{"no census", &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}}, false,
			[]string{"(listed by precheck: the add-on manager keeps no count)"}},
		{"--list-pods", census(time.Second), true,
			[]string{"(listed by precheck: asked to list them)", "warn: asm-1-27: 0 native, 1 classic"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Env{
				Kube:     kubefake.NewClientset(classic),
				Client:   clientfake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(tc.profile).WithStatusSubresource(tc.profile).Build(),
				ListPods: tc.listPods,
			}
			rs, err := checkPodModes(context.Background(), e)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, r := range rs {
				lines = append(lines, string(r.Status)+": "+r.Message)
			}
			got := strings.Join(lines, "\n")
			for _, want := range tc.want {
				if !strings.Contains(got, want) {
					t.Errorf("got\n%s\nwant %q", got, want)
				}
			}
		})
	}
}
