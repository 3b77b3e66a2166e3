package precheck

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func tmpl(ns, name string, annotations map[string]string, containers ...corev1.Container) template {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "app"}}
	}
	return template{namespace: ns, name: name, tmpl: &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: annotations}, Spec: corev1.PodSpec{Containers: containers}}}
}

// withRevisions gives each template the revision of its namespace.
func withRevisions(tmpls []template, revOf map[string]string) []template {
	for i := range tmpls {
		tmpls[i].revision = revOf[tmpls[i].namespace]
	}
	return tmpls
}

// line is a result as "status: message" and where it stands
// (namespace=, workload=, object=, revision=, webhook=).
func line(r Result) string {
	tags := []string{string(r.Status) + ": " + r.Message}
	for _, ns := range r.Namespaces {
		tags = append(tags, "namespace="+ns)
	}
	for _, kv := range [][2]string{{"workload", r.Workload}, {"object", r.Object}, {"revision", r.Revision}} {
		if kv[1] != "" {
			tags = append(tags, kv[0]+"="+kv[1])
		}
	}
	for _, w := range r.Webhooks {
		tags = append(tags, "webhook="+w.Configuration+"/"+w.Name)
	}
	return strings.Join(append(tags, r.Details...), " ")
}

func lines(rs []Result) string {
	var out []string
	for _, r := range rs {
		out = append(out, line(r))
	}
	return strings.Join(out, "\n")
}

func TestParseRevisionConfig(t *testing.T) {
	rc, err := ParseRevisionConfig("defaultConfig:\n  discoveryAddress: istiod:15012\n  holdApplicationUntilProxyStarts: true\n  terminationDrainDuration: 30s\n  proxyMetadata:\n    EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true'\n",
		`{"global":{"proxy":{"holdApplicationUntilProxyStarts":false,"startupProbe":{"enabled":false}}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Default.HoldApplicationUntilProxyStarts == nil || !*rc.Default.HoldApplicationUntilProxyStarts || rc.Default.TerminationDrainDuration != "30s" ||
		rc.Default.ProxyMetadata[exitOnZero] != "true" || rc.Hold || rc.StartupProbe {
		t.Errorf("parsed %+v", rc)
	}
	// Nothing said: Istio's defaults (the startup probe on).
	rc, err = ParseRevisionConfig("", "")
	if err != nil || rc.Hold || !rc.StartupProbe || rc.Default.HoldApplicationUntilProxyStarts != nil {
		t.Errorf("empty: %+v %v", rc, err)
	}
	if _, err := ParseRevisionConfig("defaultConfig: [", ""); err == nil {
		t.Error("a broken mesh config parsed")
	}
}

func TestJudgeVPAs(t *testing.T) {
	tmpls := []template{tmpl("shop", "Deployment/web", nil), tmpl("shop", "StatefulSet/db", nil)}
	got := lines(JudgeVPAs([]VPA{
		{Namespace: "shop", Name: "web-vpa", Target: "Deployment/web", UpdateMode: "Auto", ProxyPolicy: true},
		{Namespace: "shop", Name: "other", Target: "Deployment/gone", UpdateMode: "Off"},   // not restarted
		{Namespace: "elsewhere", Name: "web", Target: "Deployment/web", UpdateMode: "Off"}, // another namespace's web
	}, tmpls))
	if strings.Count(got, "\n") != 0 || !strings.HasPrefix(got, "warn: shop/Deployment/web: VerticalPodAutoscaler web-vpa (updateMode Auto)") ||
		!strings.Contains(got, "kubernetes/autoscaler#6691") || !strings.Contains(got, "containerPolicies entry for istio-proxy") ||
		!strings.HasSuffix(got, "namespace=shop workload=Deployment/web object=VerticalPodAutoscaler/web-vpa") {
		t.Errorf("VPA results:\n%s", got)
	}
	if got := lines(JudgeVPAs([]VPA{{Namespace: "x", Name: "v", Target: "Deployment/web"}}, tmpls)); !strings.HasPrefix(got, "ok: 1 VerticalPodAutoscaler(s), none targets") {
		t.Errorf("no VPA on a restarted workload: %s", got)
	}
}

func TestJudgeHold(t *testing.T) {
	revOf := map[string]string{"a": "asm-1-27", "b": "asm-1-28"}
	tmpls := []template{
		tmpl("a", "Deployment/own", map[string]string{ProxyConfigAnnotation: `{"holdApplicationUntilProxyStarts": true}`}),
		tmpl("a", "Deployment/plain", nil),
		tmpl("b", "Deployment/meshwide", nil),
		tmpl("b", "Deployment/optout", map[string]string{ProxyConfigAnnotation: "holdApplicationUntilProxyStarts: false"}),
		tmpl("a", "Deployment/broken", map[string]string{ProxyConfigAnnotation: "holdApplicationUntilProxyStarts: [yes"}),
	}
	yes := true
	rcs := map[string]RevisionConfig{
		"asm-1-27": {StartupProbe: true},
		"asm-1-28": {StartupProbe: false, Default: ProxyConfig{HoldApplicationUntilProxyStarts: &yes}},
	}
	got := lines(JudgeHold(withRevisions(tmpls, revOf), rcs))
	want := []string{
		"ok: a/Deployment/own sets holdApplicationUntilProxyStarts in proxy.istio.io/config: native, the injector drops its postStart `pilot-agent wait` hook (istio/istio#59690); Kubernetes itself starts the app containers once istio-proxy's startupProbe passes",
		"fail: a/Deployment/broken: proxy.istio.io/config is not a ProxyConfig",
		"warn: revision asm-1-28 holds the app until the proxy starts for 1 workload(s) (holdApplicationUntilProxyStarts in its mesh config or injector values): native, the injector drops",
	}
	gl := strings.Split(got, "\n")
	if len(gl) != len(want) {
		t.Fatalf("hold results:\n%s", got)
	}
	for i, w := range want {
		if !strings.HasPrefix(gl[i], w) {
			t.Errorf("result %d = %q\nwant prefix %q", i, gl[i], w)
		}
	}
	if !strings.Contains(gl[2], "startupProbe off") || !strings.HasSuffix(gl[2], "revision=asm-1-28") {
		t.Errorf("the revision without a startup probe: %s", gl[2])
	}
	// The injector values alone hold every pod, whatever the annotation.
	got = lines(JudgeHold(withRevisions([]template{tmpl("a", "Deployment/optout", map[string]string{ProxyConfigAnnotation: "holdApplicationUntilProxyStarts: false"})}, revOf),
		map[string]RevisionConfig{"asm-1-27": {Hold: true, StartupProbe: true}}))
	if !strings.HasPrefix(got, "ok: revision asm-1-27 holds the app until the proxy starts for 1 workload(s)") {
		t.Errorf("values hold: %s", got)
	}
	if got := lines(JudgeHold(withRevisions([]template{tmpl("a", "Deployment/plain", nil)}, revOf), map[string]RevisionConfig{})); got != "ok: no workload relies on holdApplicationUntilProxyStarts" {
		t.Errorf("nothing held: %q", got)
	}
}

func TestJudgeShutdown(t *testing.T) {
	revOf := map[string]string{"a": "asm-1-27", "b": "asm-1-28"}
	preStop := corev1.Container{Name: "web", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "10"}}}}}
	tmpls := []template{
		tmpl("a", "Deployment/hooked", nil, preStop, corev1.Container{Name: "side"}),
		tmpl("a", "Deployment/drains", map[string]string{ProxyConfigAnnotation: "terminationDrainDuration: 45s\nproxyMetadata:\n  EXIT_ON_ZERO_ACTIVE_CONNECTIONS: \"true\"\n"}),
		tmpl("a", "Deployment/quiet", nil),
		tmpl("b", "Deployment/meshwide", nil),
		tmpl("b", "Deployment/meshwide2", map[string]string{ProxyConfigAnnotation: "concurrency: 2"}),
	}
	rcs := map[string]RevisionConfig{"asm-1-28": {StartupProbe: true, Default: ProxyConfig{ProxyMetadata: map[string]string{exitOnZero: "true"}}}}
	got := lines(JudgeShutdown(withRevisions(tmpls, revOf), rcs))
	want := []string{
		"warn: a/Deployment/hooked: preStop hook on web: native, istio-proxy starts draining when the pod starts terminating",
		"warn: a/Deployment/drains sets terminationDrainDuration 45s and EXIT_ON_ZERO_ACTIVE_CONNECTIONS=true in proxy.istio.io/config: native, istio-proxy drains from the start",
		"warn: revision asm-1-28's mesh config sets EXIT_ON_ZERO_ACTIVE_CONNECTIONS=true for 2 workload(s)",
	}
	gl := strings.Split(got, "\n")
	if len(gl) != len(want) {
		t.Fatalf("shutdown results:\n%s", got)
	}
	for i, w := range want {
		if !strings.HasPrefix(gl[i], w) {
			t.Errorf("result %d = %q\nwant prefix %q", i, gl[i], w)
		}
	}
	if !strings.Contains(gl[0], "istio/istio#51855") || !strings.HasSuffix(gl[0], "namespace=a workload=Deployment/hooked") {
		t.Errorf("preStop result: %s", gl[0])
	}
	if got := lines(JudgeShutdown(withRevisions([]template{tmpl("a", "Deployment/quiet", nil)}, revOf), rcs)); !strings.HasPrefix(got, "ok: no workload's shutdown depends on the proxy") {
		t.Errorf("quiet: %s", got)
	}
}
