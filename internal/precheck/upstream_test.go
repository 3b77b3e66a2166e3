package precheck

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
)

// scopeOf is the meshScope of a cluster with an istiod for each revision
// (in aks-istio-system for asm-1-NN, else istio-system; "default" has no
// istio.io/rev label, as istioctl installs it), tags (tag → revision) and
// these namespaces, judging every revision.
func scopeOf(t *testing.T, revisions []string, tags map[string]string, nss ...corev1.Namespace) *meshScope {
	t.Helper()
	var deps []appsv1.Deployment
	for _, r := range revisions {
		d := appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod-" + r, Namespace: "istio-system", Labels: map[string]string{"app": "istiod", "istio.io/rev": r}}}
		if strings.HasPrefix(r, "asm-") {
			d.Namespace = meshdiscovery.AKSNamespace
		}
		if r == meshdiscovery.DefaultRevision {
			d.Name = "istiod"
			delete(d.Labels, "istio.io/rev")
		}
		deps = append(deps, d)
	}
	var hooks []admissionv1.MutatingWebhookConfiguration
	for tag, rev := range tags {
		hooks = append(hooks, admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-" + tag,
			Labels: map[string]string{"istio.io/tag": tag, "istio.io/rev": rev}}})
	}
	s := &meshScope{mesh: meshdiscovery.FromObjects(deps, hooks), revisions: revisions, nsLabels: map[string]map[string]string{}}
	for _, ns := range nss {
		if ns.Status.Phase != corev1.NamespaceTerminating {
			s.nsLabels[ns.Name] = ns.Labels
		}
	}
	return s
}

// istioWebhooks are the injector webhooks Istio's charts install for a
// revision, or a tag of it (mutatingwebhook.yaml, revision-tags-mwc.yaml in
// istio.io/istio 1.27): the rev ones select istio.io/rev=<name> on the
// namespace or the pod, the default revision's (and the default tag's) add
// istio-injection=enabled and sidecar.istio.io/inject=true.
func istioWebhooks(name string, isDefault bool) []admissionv1.MutatingWebhook {
	none := admissionv1.SideEffectClassNone
	notFalse := metav1.LabelSelectorRequirement{Key: "sidecar.istio.io/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}
	noInjection := metav1.LabelSelectorRequirement{Key: "istio-injection", Operator: metav1.LabelSelectorOpDoesNotExist}
	noRev := metav1.LabelSelectorRequirement{Key: "istio.io/rev", Operator: metav1.LabelSelectorOpDoesNotExist}
	rev := metav1.LabelSelectorRequirement{Key: "istio.io/rev", Operator: metav1.LabelSelectorOpIn, Values: []string{name}}
	hook := func(n string, ns, obj []metav1.LabelSelectorRequirement) admissionv1.MutatingWebhook {
		return admissionv1.MutatingWebhook{Name: n, SideEffects: &none, Rules: []admissionv1.RuleWithOperations{podRule(admissionv1.Create)},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: ns}, ObjectSelector: &metav1.LabelSelector{MatchExpressions: obj}}
	}
	prefix := ""
	if !isDefault || name != meshdiscovery.DefaultRevision {
		prefix = name + "."
	}
	out := []admissionv1.MutatingWebhook{
		hook("rev.namespace."+prefix+"sidecar-injector.istio.io", []metav1.LabelSelectorRequirement{rev, noInjection}, []metav1.LabelSelectorRequirement{notFalse}),
		hook("rev.object."+prefix+"sidecar-injector.istio.io", []metav1.LabelSelectorRequirement{noRev, noInjection}, []metav1.LabelSelectorRequirement{notFalse, rev}),
	}
	if isDefault {
		out = append(out,
			hook("namespace.sidecar-injector.istio.io", []metav1.LabelSelectorRequirement{{Key: "istio-injection", Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled"}}}, []metav1.LabelSelectorRequirement{notFalse}),
			hook("object.sidecar-injector.istio.io", []metav1.LabelSelectorRequirement{noInjection, noRev},
				[]metav1.LabelSelectorRequirement{{Key: "sidecar.istio.io/inject", Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}}, noRev}))
	}
	return out
}

// Upstream Istio's namespaces are grouped by the revision meshdiscovery
// resolves for them, as Istio's webhooks select them: istio-injection=enabled
// by the default revision, a tag by its revision, istio-injection=disabled
// beating istio.io/rev; and apart by the webhooks that select them.
func TestGroupNamespacesUpstream(t *testing.T) {
	ns := func(name string, l ...string) corev1.Namespace {
		m := map[string]string{}
		for i := 0; i+1 < len(l); i += 2 {
			m[l[i]] = l[i+1]
		}
		return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: m}}
	}
	nss := []corev1.Namespace{
		ns("legacy", "istio-injection", "enabled"),
		ns("legacy2", "istio-injection", "enabled"),
		ns("shop", "istio.io/rev", "prod"),
		ns("pinned", "istio.io/rev", "1-27-1"),
		ns("both", "istio-injection", "enabled", "istio.io/rev", "1-27-1"),
		ns("off", "istio-injection", "disabled", "istio.io/rev", "1-27-1"),
		ns("ghost", "istio.io/rev", "nowhere"),
		ns("plain"),
	}
	scope := scopeOf(t, []string{"default", "1-27-1"}, map[string]string{"prod": "1-27-1"}, nss...)
	mutating := []admissionv1.MutatingWebhookConfiguration{
		{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Labels: map[string]string{"istio.io/rev": "default"}}, Webhooks: istioWebhooks("default", true)},
		{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-1-27-1", Labels: map[string]string{"istio.io/rev": "1-27-1"}}, Webhooks: istioWebhooks("1-27-1", false)},
		{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-prod", Labels: map[string]string{"istio.io/rev": "1-27-1", "istio.io/tag": "prod"}}, Webhooks: istioWebhooks("prod", false)},
	}
	whs := PodWebhooks(mutating, nil)
	groups := groupNamespaces(nss, scope, whs, nil)
	var got []string
	for _, g := range groups {
		var names []string
		for _, w := range selecting(g.webhooks, ProbePod().Labels) {
			names = append(names, w.Name)
		}
		got = append(got, strings.Join(g.namespaces, ",")+"→"+g.revision+" via "+strings.Join(names, "+"))
	}
	want := []string{
		// istio-injection=enabled beats the namespace's istio.io/rev: the
		// default revision's webhook alone acts on the probe, in both.
		"both,legacy,legacy2→default via namespace.sidecar-injector.istio.io",
		"pinned→1-27-1 via rev.namespace.1-27-1.sidecar-injector.istio.io",
		// The tag's own webhook injects for 1-27-1: another group.
		"shop→1-27-1 via rev.namespace.prod.sidecar-injector.istio.io",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("groups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Exactly one injector webhook acts on each group's probe: the probe is
	// a plain pod of the namespace, carrying no injection label of its own.
	for _, g := range groups {
		if n := len(selecting(g.webhooks, ProbePod().Labels)); n != 1 {
			t.Errorf("%v: %d injector webhooks act on the probe, want 1", g.namespaces, n)
		}
	}

	// Pods: their own labels decide only in a namespace without injection
	// labels; sidecar.istio.io/inject=false is never injected.
	for _, c := range []struct {
		ns     string
		labels map[string]string
		want   string
	}{
		{"plain", map[string]string{"istio.io/rev": "prod"}, "1-27-1"},
		{"plain", map[string]string{"sidecar.istio.io/inject": "true"}, "default"},
		{"plain", nil, ""},
		{"pinned", map[string]string{"istio.io/rev": "default"}, "1-27-1"},
		{"legacy", map[string]string{"sidecar.istio.io/inject": "false"}, ""},
		{"off", map[string]string{"istio.io/rev": "1-27-1"}, ""},
		{"ghost", nil, ""}, // a revision with no istiod that precheck does not judge
	} {
		rev, ok := scope.revision(c.ns, c.labels)
		if !ok {
			rev = ""
		}
		if rev != c.want {
			t.Errorf("pod %v in %s: revision %q, want %q", c.labels, c.ns, rev, c.want)
		}
	}
}
