package precheck

import (
	"context"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
)

// -o json carries where each finding stands as fields of its own:
// namespaces, workload, webhooks (kind, configuration, name), revision and
// the object named, for the admission, resource and lifecycle findings.
func TestJSONCarriesWhereFindingsStand(t *testing.T) {
	some := admissionv1.SideEffectClassSome
	wh := PodWebhook{Kind: "ValidatingWebhookConfiguration", Configuration: "audit", Name: "audit.policy.io", SideEffects: &some}
	g := probeGroup{revision: "asm-1-27", namespaces: []string{"a", "b"}, webhooks: []PodWebhook{wh}}
	w := resourceWorkload{namespace: "ns", name: "Deployment/web", replicas: 1, classic: classicPod(), native: nativePod(), surge: 1}
	lr := []corev1.LimitRange{*limitRange(corev1.LimitRangeItem{Type: corev1.LimitTypePod, Max: rl("memory", "1200Mi")})}
	preStop := corev1.Container{Name: "web", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}}}
	checks := []Check{
		{Group: "Admission", Name: "admission", Run: func(context.Context, *Env) ([]Result, error) {
			return []Result{sideEffectsUnproven("a, b", g, g.webhooks)}, nil
		}},
		{Group: "Resources", Name: "resources", Run: func(context.Context, *Env) ([]Result, error) {
			return judgeNamespace("ns", []resourceWorkload{w}, lr, nil, []corev1.Node{node("n", true, rl("cpu", "4", "memory", "8Gi"))}), nil
		}},
		{Group: "Lifecycle", Name: "vpa", Run: func(context.Context, *Env) ([]Result, error) {
			return JudgeVPAs([]VPA{{Namespace: "ns", Name: "v", Target: "Deployment/web", UpdateMode: "Auto"}}, []template{tmpl("ns", "Deployment/web", nil)}), nil
		}},
		{Group: "Lifecycle", Name: "shutdown", Run: func(context.Context, *Env) ([]Result, error) {
			return JudgeShutdown(withRevisions([]template{tmpl("ns", "Deployment/web", nil, preStop)}, map[string]string{"ns": "asm-1-27"}), nil), nil
		}},
	}
	b, err := json.Marshal(Run(context.Background(), &Env{}, checks))
	if err != nil {
		t.Fatal(err)
	}
	// Decoded as a user of -o json would, not through our types.
	var rep struct {
		Groups []struct {
			Checks []struct {
				Name    string
				Results []map[string]any
			}
		}
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, gr := range rep.Groups {
		for _, c := range gr.Checks {
			got[c.Name] = c.Results[0]
		}
	}
	eq := func(check, field string, want any) {
		t.Helper()
		g, _ := json.Marshal(got[check][field])
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("%s: %s = %s, want %s\n%s", check, field, g, w, b)
		}
	}
	eq("admission", "namespaces", []string{"a", "b"})
	eq("admission", "revision", "asm-1-27")
	eq("admission", "webhooks", []map[string]string{{"kind": "ValidatingWebhookConfiguration", "configuration": "audit", "name": "audit.policy.io"}})
	eq("admission", "status", "warn")
	eq("resources", "namespaces", []string{"ns"})
	eq("resources", "workload", "Deployment/web")
	eq("resources", "object", "LimitRange/lr")
	eq("resources", "status", "fail")
	eq("vpa", "workload", "Deployment/web")
	eq("vpa", "object", "VerticalPodAutoscaler/v")
	eq("shutdown", "namespaces", []string{"ns"})
	eq("shutdown", "workload", "Deployment/web")
}
