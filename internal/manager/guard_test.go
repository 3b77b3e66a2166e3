package manager_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

func guardConfig(caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	return manager.GuardWebhookConfiguration(manager.GuardConfiguration, meshNS, admissionregistrationv1.WebhookClientConfig{
		URL: ptr.To("https://" + guardAddr + manager.GuardPath), CABundle: caBundle,
	})
}

func applyGuardConfig(t *testing.T, caBundle []byte) {
	t.Helper()
	ctx := context.Background()
	c := guardConfig(caBundle)
	if err := cl.Patch(ctx, c, client.Apply, client.FieldOwner("guard-test"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

func deleteGuardConfig(t *testing.T) {
	t.Helper()
	err := cl.Delete(context.Background(), guardConfig(nil))
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

func revisionStatus(t *testing.T, rev string) v1alpha1.RevisionStatus {
	t.Helper()
	for _, r := range profile(t).Status.Revisions {
		if r.Name == rev {
			return r
		}
	}
	return v1alpha1.RevisionStatus{}
}

func waitRevision(t *testing.T, rev, mode, msgHas string, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("%s %s mentioning %q", rev, mode, msgHas), func() (bool, string) {
		r := revisionStatus(t, rev)
		return r.Mode == mode && strings.Contains(r.Message, msgHas) && istiodEnv(t, rev) == meshversion.Injection(mode).EnvValue(),
			fmt.Sprintf("%s %s: %s (istiod %s)", r.Mode, r.Reason, r.Message, istiodEnv(t, rev))
	})
}

// TestPlacementGuard runs the guard with a real API server calling the
// manager's webhook: placement, pinned pods, namespaces it must not touch,
// malformed affinity, and health (configuration missing, not trusted,
// certificate expired) falling back to classic within 2 s and back.
func TestPlacementGuard(t *testing.T) {
	ctx := context.Background()
	addNode(t, "guard-new-0", "new", "v1.34.4", true)
	addNode(t, "guard-old-0", "old", "v1.28.9", true)
	addIstiod(t, "asm-1-27", "unset")
	applyGuardConfig(t, guardCABundle)
	t.Cleanup(func() { deleteGuardConfig(t) })
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}, OldNodes: v1alpha1.OldNodesGuard})
	register(t)
	refresh(t)
	waitRevision(t, "asm-1-27", "native", "native, guarded: 1 node(s) excluded (guard-old-0)", 5*time.Second)
	if g := profile(t).Status.Guard; g == nil || !g.Healthy || g.ExcludedNodes != 1 || g.CapableNodes != 1 || g.Excluded[0] != "guard-old-0" {
		t.Fatalf("status.guard: %+v", g)
	}

	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "guard-mesh", Labels: map[string]string{inventory.RevisionLabel: "asm-1-27"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "guard-plain"}},
	} {
		if err := cl.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	mk := func(ns, name string, edit func(*corev1.Pod)) (*corev1.Pod, []string) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if edit != nil {
			edit(p)
		}
		warnings := &warningRecorder{}
		wcl, err := client.New(rest.CopyConfig(restCfgWithWarnings(warnings)), client.Options{Scheme: cl.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		if err := wcl.Create(ctx, p); err != nil {
			t.Fatalf("create %s/%s: %v", ns, name, err)
		}
		t.Cleanup(func() { _ = cl.Delete(context.Background(), p, client.GracePeriodSeconds(0)) })
		return p, warnings.list
	}
	required := func(p *corev1.Pod) []corev1.NodeSelectorTerm {
		if p.Spec.Affinity == nil || p.Spec.Affinity.NodeAffinity == nil || p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
			return nil
		}
		return p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	}
	guarded := func(terms []corev1.NodeSelectorTerm) bool {
		if len(terms) == 0 {
			return false
		}
		for _, term := range terms {
			found := false
			for _, r := range term.MatchExpressions {
				found = found || (r.Key == meshversion.SidecarContainersLabel && r.Values[0] == "true")
			}
			if !found {
				return false
			}
		}
		return true
	}

	p, _ := mk("guard-mesh", "selector", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} })
	if !guarded(required(p)) || p.Spec.NodeSelector["disk"] != "ssd" {
		t.Errorf("pod with a nodeSelector: affinity %+v, nodeSelector %v", p.Spec.Affinity, p.Spec.NodeSelector)
	}
	p, _ = mk("guard-mesh", "pinned-old", func(p *corev1.Pod) { p.Spec.NodeName = "guard-old-0" })
	if p.Annotations[inventory.NativeSidecarOverride] != "false" || p.Spec.Affinity != nil {
		t.Errorf("pod on an old node: annotations %v, affinity %+v", p.Annotations, p.Spec.Affinity)
	}
	p, _ = mk("guard-mesh", "pinned-new", func(p *corev1.Pod) { p.Spec.NodeName = "guard-new-0" })
	if p.Annotations[inventory.NativeSidecarOverride] != "" || p.Spec.Affinity != nil {
		t.Errorf("pod on a new node: annotations %v, affinity %+v", p.Annotations, p.Spec.Affinity)
	}
	p, _ = mk("guard-plain", "outside", nil)
	if p.Spec.Affinity != nil {
		t.Errorf("pod outside the mesh was placed: %+v", p.Spec.Affinity)
	}
	// kube-system, even labelled as a mesh namespace, is never touched.
	label := func(v any) {
		t.Helper()
		patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"labels":{"istio.io/rev":%s}}}`, v)))
		if err := cl.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}, patch); err != nil {
			t.Fatal(err)
		}
	}
	label(`"asm-1-27"`)
	t.Cleanup(func() { label("null") })
	p, _ = mk("kube-system", "system-pod", nil)
	if p.Spec.Affinity != nil {
		t.Errorf("pod in kube-system was placed: %+v", p.Spec.Affinity)
	}
	p, _ = mk(meshNS, "mesh-own", nil)
	if p.Spec.Affinity != nil {
		t.Errorf("pod in %s was placed: %+v", meshNS, p.Spec.Affinity)
	}
	// A value the API server accepts but no label selector can parse: the
	// guard cannot merge it, admits the pod unchanged and says so.
	p, warnings := mk("guard-mesh", "malformed", func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "cores", Operator: corev1.NodeSelectorOpGt, Values: []string{"many"}}}}},
		}}}
	})
	if guarded(required(p)) || len(warnings) == 0 || !strings.Contains(strings.Join(warnings, " "), "placement guard") {
		t.Errorf("malformed affinity: terms %+v, warnings %q", required(p), warnings)
	}

	// Unhealthy: the configuration is deleted → classic within 2 s, with a
	// Warning event saying why; back → native.
	broke := time.Now()
	deleteGuardConfig(t)
	waitRevision(t, "asm-1-27", "classic", "MutatingWebhookConfiguration meshaddon-placement-guard not found", 2*time.Second)
	t.Logf("configuration deleted → classic in %s", time.Since(broke).Round(time.Millisecond))
	waitEvent(t, "GuardUnhealthy", "not found")
	if g := profile(t).Status.Guard; g == nil || g.Healthy {
		t.Errorf("status.guard while broken: %+v", g)
	}
	applyGuardConfig(t, guardCABundle)
	waitRevision(t, "asm-1-27", "native", "native, guarded", 2*time.Second)

	// A caBundle that does not trust the server's certificate.
	other, err := manager.WriteLoopbackGuardCert(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	applyGuardConfig(t, other)
	waitRevision(t, "asm-1-27", "classic", "does not answer as", 2*time.Second)
	applyGuardConfig(t, guardCABundle)
	waitRevision(t, "asm-1-27", "native", "native, guarded", 2*time.Second)

	// The server's certificate expires.
	shortCA, err := manager.WriteLoopbackGuardCert(guardCertDir, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	applyGuardConfig(t, shortCA)
	waitRevision(t, "asm-1-27", "native", "native, guarded", 3*time.Second)
	waitRevision(t, "asm-1-27", "classic", "expired", 6*time.Second)
	if guardCABundle, err = manager.WriteLoopbackGuardCert(guardCertDir, 0); err != nil {
		t.Fatal(err)
	}
	applyGuardConfig(t, guardCABundle)
	waitRevision(t, "asm-1-27", "native", "native, guarded", 5*time.Second)

	// The old pool is upgraded: its label flips and the guard excludes no node.
	setNodeStatus(t, "guard-old-0", func(n *corev1.Node) { n.Status.NodeInfo.KubeletVersion = "v1.34.4" })
	waitNodeLabel(t, "guard-old-0", "true")
	waitRevision(t, "asm-1-27", "native", "all 2 node(s) run kubelet 1.29 or newer", 2*time.Second)
	p, _ = mk("guard-mesh", "pinned-upgraded", func(p *corev1.Pod) { p.Spec.NodeName = "guard-old-0" })
	if p.Annotations[inventory.NativeSidecarOverride] != "" {
		t.Errorf("pod on the upgraded node made classic: %v", p.Annotations)
	}
	if c := meta.FindStatusCondition(profile(t).Status.Conditions, v1alpha1.ConditionDegraded); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Degraded: %+v", c)
	}
}

type warningRecorder struct{ list []string }

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.list = append(w.list, text)
}

func restCfgWithWarnings(w rest.WarningHandler) *rest.Config {
	c := rest.CopyConfig(restCfg)
	c.WarningHandler = w
	return c
}
