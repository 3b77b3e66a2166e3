package precheck

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func podRule(ops ...admissionv1.OperationType) admissionv1.RuleWithOperations {
	return admissionv1.RuleWithOperations{Operations: ops, Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}
}

func TestPodWebhooksMatchAndGroupNamespaces(t *testing.T) {
	none := admissionv1.SideEffectClassNone
	some := admissionv1.SideEffectClassSome
	mutating := []admissionv1.MutatingWebhookConfiguration{
		{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-asm-1-27", Labels: map[string]string{"istio.io/rev": "asm-1-27"}},
			Webhooks: []admissionv1.MutatingWebhook{{Name: "rev.namespace.sidecar-injector.istio.io", Rules: []admissionv1.RuleWithOperations{podRule(admissionv1.Create)}, SideEffects: &none,
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"istio.io/rev": "asm-1-27"}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "team-defaults"},
			Webhooks: []admissionv1.MutatingWebhook{{Name: "defaults.team.io", Rules: []admissionv1.RuleWithOperations{podRule(admissionv1.OperationAll)}, SideEffects: &none,
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "only-updates"},
			Webhooks: []admissionv1.MutatingWebhook{{Name: "u.io", Rules: []admissionv1.RuleWithOperations{podRule(admissionv1.Update)}, SideEffects: &none}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "deployments"},
			Webhooks: []admissionv1.MutatingWebhook{{Name: "d.io", SideEffects: &none, Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}}}},
	}
	validating := []admissionv1.ValidatingWebhookConfiguration{
		{ObjectMeta: metav1.ObjectMeta{Name: "policy"},
			Webhooks: []admissionv1.ValidatingWebhook{{Name: "audit.policy.io", Rules: []admissionv1.RuleWithOperations{podRule(admissionv1.Create)}, SideEffects: &some,
				ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "audit", Operator: metav1.LabelSelectorOpExists}}}}}},
	}
	whs := PodWebhooks(mutating, validating)
	var got []string
	for _, w := range whs {
		got = append(got, w.String())
	}
	want := "mutating istio-sidecar-injector-asm-1-27/rev.namespace.sidecar-injector.istio.io,mutating team-defaults/defaults.team.io,validating policy/audit.policy.io"
	if strings.Join(got, ",") != want {
		t.Fatalf("PodWebhooks = %v\nwant %s", got, want)
	}
	if !whs[0].Mesh || whs[1].Mesh || whs[2].SupportsDryRun() || !whs[1].SupportsDryRun() {
		t.Errorf("istio/dry-run flags wrong: %+v", whs)
	}

	ns := func(name string, l map[string]string) corev1.Namespace {
		return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	nss := []corev1.Namespace{
		ns("shop", map[string]string{"istio.io/rev": "asm-1-27", "team": "a"}),
		ns("cart", map[string]string{"istio.io/rev": "asm-1-27", "team": "a", "other": "x"}),
		ns("web", map[string]string{"istio.io/rev": "asm-1-27"}),
		ns("old", map[string]string{"istio.io/rev": "asm-1-26"}),
		ns("plain", nil),
		ns("leaving", map[string]string{"istio.io/rev": "asm-1-27"}),
	}
	// A namespace being deleted takes no new pod: nothing to prove there,
	// and a probe there would be refused for that alone.
	nss[5].Status.Phase = corev1.NamespaceTerminating
	// A namespace with its own LimitRange or quota is probed alone: the
	// API server judges it by its own objects.
	scope := scopeOf(t, []string{"asm-1-27"}, nil, nss...)
	if alone := groupNamespaces(nss, scope, whs, map[string]string{"cart": "ns:cart"}); len(alone) != 3 ||
		strings.Join(alone[0].namespaces, ",") != "cart" || strings.Join(alone[1].namespaces, ",") != "shop" {
		t.Errorf("groups with cart alone = %+v", alone)
	}
	groups := groupNamespaces(nss, scope, whs, nil)
	if len(groups) != 2 {
		t.Fatalf("groups = %+v, want 2", groups)
	}
	if g := groups[0]; strings.Join(g.namespaces, ",") != "cart,shop" || len(g.webhooks) != 3 || len(selecting(g.webhooks, ProbePod().Labels)) != 2 {
		t.Errorf("first group = %+v, want cart,shop with the injector, team-defaults and the audit policy (not for the probe)", g)
	}
	if g := groups[1]; strings.Join(g.namespaces, ",") != "web" || len(g.webhooks) != 2 {
		t.Errorf("second group = %+v, want web with the injector and the audit policy", g)
	}
	// The probe meets the injector and team-defaults; a pod labelled audit
	// meets the policy as well: another sample.
	if matchKey(groups[0].webhooks, ProbePod().Labels) != "110" || matchKey(groups[0].webhooks, map[string]string{"audit": "y"}) != "111" {
		t.Error("matchKey does not tell the probe from an audited pod")
	}

	// The object selector is evaluated against the probe's labels: a pod
	// labelled audit meets the side-effect webhook.
	if len(selecting(whs[2:], map[string]string{"audit": "1"})) != 1 || len(selecting(whs[2:], ProbePod().Labels)) != 0 {
		t.Error("object selector not evaluated")
	}
	// A selector that cannot be parsed matches: never a pass by misreading.
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Bogus"}}}
	if !selects(bad, map[string]string{"x": "y"}) {
		t.Error("an unparseable selector did not count as matching")
	}
}

func TestNativeProxyProblem(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	probe := &corev1.Probe{}
	pod := func(init []corev1.Container, cs ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{InitContainers: init, Containers: append([]corev1.Container{{Name: "app"}}, cs...)}}
	}
	cases := []struct {
		name string
		pod  *corev1.Pod
		want string // substring; "" for no problem
	}{
		{"native", pod([]corev1.Container{{Name: "istio-init"}, {Name: "istio-proxy", RestartPolicy: &always, StartupProbe: probe, ReadinessProbe: probe}}), ""},
		{"restartPolicy dropped", pod([]corev1.Container{{Name: "istio-proxy", ReadinessProbe: probe}}), "restartPolicy dropped"},
		{"probes dropped", pod([]corev1.Container{{Name: "istio-proxy", RestartPolicy: &always}}), "without its readiness"},
		{"classic", pod(nil, corev1.Container{Name: "istio-proxy"}), "regular container"},
		{"not injected", pod(nil), "without istio-proxy"},
	}
	for _, c := range cases {
		got := NativeProxyProblem(c.pod)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: NativeProxyProblem = %q, want %q", c.name, got, c.want)
		}
	}
}
