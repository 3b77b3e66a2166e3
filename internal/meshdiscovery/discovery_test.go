package meshdiscovery

import (
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func dep(ns, name, rev, image string, labels ...string) appsv1.Deployment {
	l := map[string]string{"app": "istiod"}
	if rev != "" {
		l[RevisionLabel] = rev
	}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "discovery", Image: image}},
		}}},
	}
}

func tagHook(tag, rev string) admissionv1.MutatingWebhookConfiguration {
	return admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{
		Name:   "istio-revision-tag-" + tag,
		Labels: map[string]string{TagLabel: tag, RevisionLabel: rev},
	}}
}

// upstream is a cluster as istioctl leaves it: a default revision, a named
// one, and tags prod → 1-27-1 and default → default.
func upstream() *Mesh {
	return FromObjects(
		[]appsv1.Deployment{
			dep("istio-system", "istiod-1-27-1", "1-27-1", "docker.io/istio/pilot:1.27.1-distroless"),
			dep("istio-system", "istiod", "default", "docker.io/istio/pilot:1.26.3"),
		},
		[]admissionv1.MutatingWebhookConfiguration{tagHook("prod", "1-27-1"), tagHook("canary", "1-27-1")},
	)
}

func TestDiscoverUpstream(t *testing.T) {
	m := upstream()
	if m.Layout != LayoutUpstream {
		t.Errorf("layout %s, want upstream", m.Layout)
	}
	if len(m.Findings) != 0 {
		t.Errorf("findings on a sound mesh: %+v", m.Findings)
	}
	var got []string
	for _, r := range m.Revisions {
		got = append(got, r.Name+"="+r.VersionString()+"@"+r.Namespace+"/"+r.Deployment+"["+strings.Join(r.Tags, ",")+"]")
	}
	want := "default=1.26.3@istio-system/istiod[] 1-27-1=1.27.1@istio-system/istiod-1-27-1[canary,prod]"
	if strings.Join(got, " ") != want {
		t.Errorf("revisions\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if len(m.Tags) != 2 || m.Tags[0].Name != "canary" || m.Tags[1].Name != "prod" || m.Tags[1].Revision != "1-27-1" {
		t.Errorf("tags %+v", m.Tags)
	}
}

func TestDiscoverAKS(t *testing.T) {
	m := FromObjects([]appsv1.Deployment{
		dep(AKSNamespace, "istiod-asm-1-27", "asm-1-27", "mcr.microsoft.com/oss/istio/pilot:1.27.1-distroless"),
		dep(AKSNamespace, "istiod-asm-1-26", "asm-1-26", "registry.istio.io/testing/pilot:latest"),
	}, nil)
	if m.Layout != LayoutAKS {
		t.Errorf("layout %s, want aks", m.Layout)
	}
	r, _ := m.Revision("asm-1-26")
	if r.VersionString() != "1.26" || !strings.Contains(r.VersionFrom, "revision name") {
		t.Errorf("asm-1-26's version from its name: %s (%s)", r.VersionString(), r.VersionFrom)
	}
	if len(m.Findings) != 0 {
		t.Errorf("findings: %+v", m.Findings)
	}
	// One asm revision elsewhere, or a free-form one, makes it upstream.
	m = FromObjects([]appsv1.Deployment{dep("istio-system", "istiod-asm-1-27", "asm-1-27", "")}, nil)
	if m.Layout != LayoutUpstream {
		t.Errorf("asm revision in istio-system: layout %s, want upstream", m.Layout)
	}
	if m = FromObjects(nil, nil); m.Layout != LayoutNone {
		t.Errorf("no istiod: layout %s", m.Layout)
	}
}

func TestVersions(t *testing.T) {
	for _, c := range []struct {
		image  string
		labels []string
		want   string
		from   string
	}{
		{"docker.io/istio/pilot:1.27.1", nil, "1.27.1", "image"},
		{"docker.io/istio/pilot:1.27.1-distroless", nil, "1.27.1", "image"},
		{"gcr.io/istio-release/pilot:v1.24.0-debug", nil, "1.24.0", "image"},
		{"registry:5000/istio/pilot:1.28.0-beta.1@sha256:abc", nil, "1.28.0", "image"},
		{"registry:5000/istio/pilot@sha256:abc", []string{"app.kubernetes.io/version", "1.25.2"}, "1.25.2", "label app.kubernetes.io/version"},
		{"registry.istio.io/testing/pilot:latest", []string{"helm.sh/chart", "istiod-1.27.0"}, "1.27.0", "label helm.sh/chart"},
		// Istio's source-tree charts say 1.0.0: not a release with an istiod.
		{"registry.istio.io/testing/pilot:latest", []string{"app.kubernetes.io/version", "1.0.0", "helm.sh/chart", "istiod-1.0.0"}, Unknown, "Istio version unknown"},
		{"pilot:master", nil, Unknown, `image tag "master"`},
		{"pilot:1.x", nil, Unknown, "not an Istio version"},
		{"pilot", nil, Unknown, "has no tag"},
		{"", nil, Unknown, "no image tag"},
	} {
		m := FromObjects([]appsv1.Deployment{dep("istio-system", "istiod", "", c.image, c.labels...)}, nil)
		r := m.Revisions[0]
		if r.VersionString() != c.want || !strings.Contains(r.VersionFrom, c.from) {
			t.Errorf("%s %v: version %s from %q, want %s from %q", c.image, c.labels, r.VersionString(), r.VersionFrom, c.want, c.from)
		}
		if (c.want == Unknown) != (len(m.Findings) == 1) {
			t.Errorf("%s: findings %+v", c.image, m.Findings)
		}
	}
}

func TestBadInput(t *testing.T) {
	m := FromObjects(
		[]appsv1.Deployment{
			dep("istio-system", "istiod-1-27-1", "1-27-1", "pilot:1.27.1"),
			dep("other", "istiod-copy", "1-27-1", "pilot:1.27.2"),
			dep("istio-system", "istiod-nocontainer", "bare", ""),
		},
		[]admissionv1.MutatingWebhookConfiguration{tagHook("prod", "1-28-0"), tagHook("1-27-1", "1-27-1"), {}},
	)
	var msgs []string
	for _, f := range m.Findings {
		msgs = append(msgs, string(f.Severity)+": "+f.Message)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"fail: two istiods claim revision 1-27-1: istio-system/istiod-1-27-1 and other/istiod-copy",
		"fail: revision tag prod (MutatingWebhookConfiguration istio-revision-tag-prod) points at revision 1-28-0, which has no istiod",
		"warn: 1-27-1 is both a revision and a revision tag",
		"warn: istio-system/istiod-nocontainer (revision bare): Istio version unknown",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no finding %q in\n%s", want, all)
		}
	}
	if r, _ := m.Revision("1-27-1"); r.Namespace != "istio-system" {
		t.Errorf("the duplicate replaced the first istiod: %+v", r)
	}
	if tag, _ := m.Tag("prod"); !tag.Dangling {
		t.Errorf("tag prod not dangling: %+v", tag)
	}
	if got := m.ResolveNamespace(map[string]string{RevisionLabel: "prod"}); !got.Injected || got.Revision != "" || !strings.Contains(got.String(), "no istiod serves") {
		t.Errorf("namespace on a dangling tag: %+v %s", got, got)
	}
}

func TestResolvePod(t *testing.T) {
	m := upstream()
	withDefaultTag := FromObjects(
		[]appsv1.Deployment{dep("istio-system", "istiod-1-27-1", "1-27-1", "pilot:1.27.1")},
		[]admissionv1.MutatingWebhookConfiguration{tagHook("default", "1-27-1")},
	)
	noDefault := FromObjects([]appsv1.Deployment{dep("istio-system", "istiod-1-27-1", "1-27-1", "pilot:1.27.1")}, nil)
	l := func(kv ...string) map[string]string {
		out := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, c := range []struct {
		name     string
		mesh     *Mesh
		ns, pod  map[string]string
		injected bool
		revision string
		via      string
	}{
		{"injection enabled → default revision", m, l(InjectionLabel, "enabled"), nil, true, "default", "namespace label istio-injection=enabled"},
		{"injection enabled beats namespace rev", m, l(InjectionLabel, "enabled", RevisionLabel, "prod"), nil, true, "default", "istio-injection=enabled"},
		{"injection enabled beats pod rev", m, l(InjectionLabel, "enabled"), l(RevisionLabel, "1-27-1"), true, "default", "istio-injection=enabled"},
		{"injection disabled beats namespace rev", m, l(InjectionLabel, "disabled", RevisionLabel, "prod"), nil, false, "", "istio-injection=disabled"},
		{"pod inject=false beats everything", m, l(InjectionLabel, "enabled"), l(InjectLabel, "false"), false, "", "sidecar.istio.io/inject=false"},
		{"namespace tag", m, l(RevisionLabel, "prod"), nil, true, "1-27-1", "namespace label istio.io/rev=prod"},
		{"namespace revision", m, l(RevisionLabel, "1-27-1"), nil, true, "1-27-1", "namespace label istio.io/rev=1-27-1"},
		{"namespace rev beats pod rev", m, l(RevisionLabel, "default"), l(RevisionLabel, "prod"), true, "default", "namespace label istio.io/rev=default"},
		{"pod rev in unlabelled namespace", m, nil, l(RevisionLabel, "canary"), true, "1-27-1", "pod label istio.io/rev=canary"},
		{"pod rev beats pod inject=true", m, nil, l(RevisionLabel, "1-27-1", InjectLabel, "true"), true, "1-27-1", "pod label istio.io/rev"},
		{"pod inject=true → default", m, nil, l(InjectLabel, "true"), true, "default", "pod label sidecar.istio.io/inject=true"},
		{"nothing", m, l("team", "a"), l("app", "x"), false, "", "no injection label"},
		{"default tag takes injection enabled", withDefaultTag, l(InjectionLabel, "enabled"), nil, true, "1-27-1", "istio-injection=enabled"},
		{"no default revision or tag", noDefault, l(InjectionLabel, "enabled"), nil, true, "", "istio-injection=enabled"},
		{"unknown revision", m, l(RevisionLabel, "1-30-0"), nil, true, "", "istio.io/rev=1-30-0"},
	} {
		got := c.mesh.ResolvePod(c.ns, c.pod)
		if got.Injected != c.injected || got.Revision != c.revision || !strings.Contains(got.Via, c.via) {
			t.Errorf("%s: got %+v, want injected=%v revision=%q via %q", c.name, got, c.injected, c.revision, c.via)
		}
	}
}

func TestParseLayout(t *testing.T) {
	for in, want := range map[string]Layout{"aks": LayoutAKS, "AKS": LayoutAKS, "upstream": LayoutUpstream} {
		if got, err := ParseLayout(in); err != nil || got != want {
			t.Errorf("ParseLayout(%q) = %s, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "istio", "none"} {
		if _, err := ParseLayout(bad); err == nil || !strings.Contains(err.Error(), "want aks") {
			t.Errorf("ParseLayout(%q): %v", bad, err)
		}
	}
}

func TestDiscoverNarrows(t *testing.T) {
	a, b := dep("istio-system", "istiod", "", "pilot:1.27.1"), dep("aks-istio-system", "istiod-asm-1-27", "asm-1-27", "pilot:1.27.1")
	other := dep("istio-system", "not-istiod", "", "pilot:1.27.1")
	other.Labels = map[string]string{"app": "something"}
	hook := tagHook("prod", "default")
	kube := fake.NewClientset(&a, &b, &other, &hook)
	m, err := Discover(context.Background(), kube, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Revisions) != 2 || len(m.Tags) != 1 || m.Layout != LayoutUpstream {
		t.Errorf("all namespaces: %+v", m)
	}
	m, err = Discover(context.Background(), kube, AKSNamespace)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Revisions) != 1 || m.Layout != LayoutAKS || len(m.Tags) != 0 || len(m.Findings) != 0 {
		t.Errorf("narrowed to %s: %+v", AKSNamespace, m)
	}
}

// autoHook is the default revision's injector as Istio's chart renders it
// with sidecarInjectorWebhook.enableNamespacesByDefault=true: the "auto."
// webhook's selectors are the chart's (mutatingwebhook.yaml, "Special case
// 3: no labels at all").
func autoHook(nsSelector *metav1.LabelSelector) admissionv1.MutatingWebhookConfiguration {
	return admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Labels: map[string]string{RevisionLabel: "default"}},
		Webhooks: []admissionv1.MutatingWebhook{
			{Name: "rev.namespace.sidecar-injector.istio.io"},
			{Name: "namespace.sidecar-injector.istio.io"},
			{Name: AutoWebhook, NamespaceSelector: nsSelector, ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: InjectLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
				{Key: RevisionLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
			}}},
		},
	}
}

var chartAutoNamespaces = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
	{Key: InjectionLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
	{Key: RevisionLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
	{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}},
}}

// With enableNamespacesByDefault an unlabelled namespace is in the mesh
// (issue 15): discovery finds the "auto." webhook, says so as a finding, and
// resolves pods without injection labels there to the default revision (or
// the default tag's), by the webhook's own selectors; without it they are
// outside the mesh.
func TestEnableNamespacesByDefault(t *testing.T) {
	deps := []appsv1.Deployment{
		dep("istio-system", "istiod", "", "docker.io/istio/pilot:1.27.1"),
		dep("istio-system", "istiod-1-27-1", "1-27-1", "docker.io/istio/pilot:1.27.1"),
	}
	m := FromObjects(deps, []admissionv1.MutatingWebhookConfiguration{autoHook(chartAutoNamespaces), tagHook("prod", "1-27-1")})
	if m.Auto == nil || m.Auto.Configuration != "istio-sidecar-injector" {
		t.Fatalf("auto webhook not found: %+v", m.Auto)
	}
	if len(m.Findings) != 1 || m.Findings[0].Severity != Warn ||
		!strings.Contains(m.Findings[0].Message, "enableNamespacesByDefault is on (webhook auto.sidecar-injector.istio.io in istio-sidecar-injector): every namespace without istio-injection or istio.io/rev labels is in the mesh, injected by default") {
		t.Errorf("findings: %+v", m.Findings)
	}
	name := func(ns string, kv ...string) map[string]string {
		out := map[string]string{"kubernetes.io/metadata.name": ns}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, c := range []struct {
		name     string
		ns, pod  map[string]string
		revision string // "" for not injected
		via      string
	}{
		{"unlabelled namespace", name("shop"), map[string]string{"app": "web"}, "default", "enableNamespacesByDefault"},
		{"kube-system stays out", name("kube-system"), nil, "", "no injection label"},
		{"local-path-storage stays out", name("local-path-storage"), nil, "", "no injection label"},
		{"istio-injection=disabled stays out", name("batch", InjectionLabel, "disabled"), nil, "", "istio-injection=disabled"},
		{"namespace tag still wins", name("shop", RevisionLabel, "prod"), nil, "1-27-1", "namespace label istio.io/rev=prod"},
		{"pod opts out", name("shop"), map[string]string{InjectLabel: "false"}, "", "sidecar.istio.io/inject=false"},
		{"pod's own revision", name("shop"), map[string]string{RevisionLabel: "1-27-1"}, "1-27-1", "pod label istio.io/rev=1-27-1"},
	} {
		got := m.ResolvePod(c.ns, c.pod)
		if got.Revision != c.revision || got.Injected != (c.revision != "") || !strings.Contains(got.Via, c.via) {
			t.Errorf("%s: %+v, want revision %q via %q", c.name, got, c.revision, c.via)
		}
	}

	// A default tag takes the auto webhook's pods, as it takes
	// istio-injection=enabled's.
	withTag := FromObjects(deps, []admissionv1.MutatingWebhookConfiguration{autoHook(chartAutoNamespaces), tagHook("default", "1-27-1")})
	if got := withTag.ResolveNamespace(name("shop")); got.Revision != "1-27-1" {
		t.Errorf("with a default tag: %+v, want 1-27-1", got)
	}
	// Without the webhook, an unlabelled namespace is outside the mesh.
	if got := FromObjects(deps, nil).ResolveNamespace(name("shop")); got.Injected {
		t.Errorf("without enableNamespacesByDefault: %+v", got)
	}
	// A selector the API server could not apply is a finding, not a panic.
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Sometimes"}}}
	m = FromObjects(deps, []admissionv1.MutatingWebhookConfiguration{autoHook(bad)})
	if m.Auto != nil || len(m.Findings) != 1 || !strings.Contains(m.Findings[0].Message, "has a selector the API server cannot apply") {
		t.Errorf("bad selector: auto %+v, findings %+v", m.Auto, m.Findings)
	}
}
