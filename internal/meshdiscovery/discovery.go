// Package meshdiscovery finds the Istio mesh a cluster runs, whatever installed
// it: the istiod Deployments and their revisions, the revision tags, each
// revision's Istio version, the layout (the managed add-on's or upstream
// Istio's), and which revision a namespace or pod is injected by. precheck,
// status, migrate and the manager read the mesh through it, never through a
// namespace or naming rule of their own (issue 15).
package meshdiscovery

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"

	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// Labels Istio puts on its objects and reads on namespaces and pods
// (manifests/charts/istio-control/istio-discovery/templates/deployment.yaml,
// mutatingwebhook.yaml and revision-tags-mwc.yaml in istio.io/istio).
const (
	RevisionLabel  = "istio.io/rev"
	TagLabel       = "istio.io/tag"
	InjectionLabel = "istio-injection"
	InjectLabel    = "sidecar.istio.io/inject"
	// DefaultRevision is the revision of an istiod installed without one
	// (its objects carry istio.io/rev=default), and what
	// istio-injection=enabled and sidecar.istio.io/inject=true select.
	DefaultRevision = "default"
	// AKSNamespace is where the managed add-on runs its istiods.
	AKSNamespace = "aks-istio-system"
)

// Layout is how the mesh was installed.
type Layout string

const (
	// LayoutAKS is the managed add-on's: asm-1-NN revisions in aks-istio-system.
	LayoutAKS Layout = "aks"
	// LayoutUpstream is upstream Istio's (istioctl, Helm): any namespace,
	// the default revision or free-form revision names, revision tags.
	LayoutUpstream Layout = "upstream"
	// LayoutNone: no istiod was found.
	LayoutNone Layout = "none"
)

// ParseLayout accepts aks and upstream, for flags.
func ParseLayout(s string) (Layout, error) {
	switch Layout(strings.ToLower(s)) {
	case LayoutAKS:
		return LayoutAKS, nil
	case LayoutUpstream:
		return LayoutUpstream, nil
	}
	return "", fmt.Errorf("unknown layout %q: want aks (the managed add-on's asm-1-NN revisions in %s) or upstream (Istio installed by istioctl or Helm)", s, AKSNamespace)
}

// Unknown is how a version that cannot be known is shown.
const Unknown = "unknown"

// Revision is one control-plane revision and the istiod that serves it.
type Revision struct {
	Name       string
	Namespace  string
	Deployment string
	// Version is the Istio version istiod runs, nil when it cannot be known.
	Version *version.Version
	// VersionFrom says where Version was read, or why it is unknown.
	VersionFrom string
	// Setting is istiod's ENABLE_NATIVE_SIDECARS.
	Setting istiod.Setting
	// Tags pointing at this revision, sorted.
	Tags []string
}

// VersionString is the version as major.minor.patch, or "unknown".
func (r Revision) VersionString() string {
	if r.Version == nil {
		return Unknown
	}
	return r.Version.String()
}

// Tag is a revision tag: an injector webhook configuration labelled
// istio.io/tag, injecting for the revision in its istio.io/rev label.
type Tag struct {
	Name     string
	Revision string
	Webhook  string
	// Dangling: the revision it points at has no istiod.
	Dangling bool
}

// Severity of a finding.
type Severity string

const (
	Warn Severity = "warn"
	Fail Severity = "fail"
)

// Finding is something wrong or doubtful about the mesh, said so that the
// user knows what to do.
type Finding struct {
	Severity Severity
	Message  string
	Hint     string
}

// Mesh is what discovery found.
type Mesh struct {
	Layout    Layout
	Revisions []Revision
	Tags      []Tag
	Findings  []Finding
	// Auto is the webhook Istio installs with enableNamespacesByDefault,
	// nil when there is none.
	Auto *AutoInjection
}

// AutoWebhook is the name of the webhook Istio's charts add to the default
// revision's injector (and to the default tag's) when
// sidecarInjectorWebhook.enableNamespacesByDefault is true: it injects pods
// without injection labels in namespaces without injection labels
// (manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml
// and revision-tags-mwc.yaml, "Special case 3: no labels at all").
const AutoWebhook = "auto.sidecar-injector.istio.io"

// AutoInjection is an enableNamespacesByDefault webhook, with its
// selectors as the API server applies them.
type AutoInjection struct {
	// Configuration is the MutatingWebhookConfiguration that holds it.
	Configuration string
	namespaces    labels.Selector
	objects       labels.Selector
}

// Discover lists the istiod Deployments (app=istiod) in namespace, or in
// every namespace when it is empty, and the revision tags' webhook
// configurations, and reads the mesh from them.
func Discover(ctx context.Context, kube kubernetes.Interface, namespace string) (*Mesh, error) {
	deps, err := kube.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{LabelSelector: istiod.Label})
	if err != nil {
		where := "any namespace"
		if namespace != "" {
			where = "namespace " + namespace
		}
		return nil, fmt.Errorf("list istiod Deployments (%s) in %s: %w", istiod.Label, where, err)
	}
	// Every configuration: the tags' (labelled istio.io/tag) and the one
	// that may hold the enableNamespacesByDefault webhook (the default
	// revision's, labelled istio.io/rev=default or not at all).
	hooks, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the injector webhooks and revision tags (MutatingWebhookConfigurations): %w", err)
	}
	tags := hooks.Items
	if namespace != "" {
		// Narrowed: a tag or injector of a revision outside namespace is
		// another control plane's (or none's), which this discovery cannot
		// judge.
		revs := map[string]bool{}
		for _, d := range deps.Items {
			revs[RevisionOf(d.Labels)] = true
		}
		tags = nil
		for _, h := range hooks.Items {
			if revs[RevisionOf(h.Labels)] {
				tags = append(tags, h)
			}
		}
	}
	return FromObjects(deps.Items, tags), nil
}

// FromObjects reads the mesh from istiod Deployments and mutating webhook
// configurations (those labelled istio.io/tag are tags; any may hold the
// enableNamespacesByDefault webhook). Bad input becomes findings, never an
// error or a panic.
func FromObjects(deps []appsv1.Deployment, tagHooks []admissionv1.MutatingWebhookConfiguration) *Mesh {
	m := &Mesh{}
	deps = append([]appsv1.Deployment(nil), deps...)
	sort.Slice(deps, func(i, j int) bool {
		if deps[i].Namespace != deps[j].Namespace {
			return deps[i].Namespace < deps[j].Namespace
		}
		return deps[i].Name < deps[j].Name
	})
	byName := map[string]int{}
	for i := range deps {
		d := &deps[i]
		if d.DeletionTimestamp != nil {
			continue
		}
		name := RevisionOf(d.Labels)
		if j, dup := byName[name]; dup {
			first := m.Revisions[j]
			m.Findings = append(m.Findings, Finding{Severity: Fail,
				Message: fmt.Sprintf("two istiods claim revision %s: %s/%s and %s/%s; meshaddon reads %s/%s", name, first.Namespace, first.Deployment, d.Namespace, d.Name, first.Namespace, first.Deployment),
				Hint:    fmt.Sprintf("remove one, or give it another revision (label %s): both would answer the same injection webhooks", RevisionLabel)})
			continue
		}
		r := Revision{Name: name, Namespace: d.Namespace, Deployment: d.Name, Setting: istiod.NativeSidecars(d)}
		var finding string
		r.Version, r.VersionFrom, finding = istioVersion(d, name)
		if finding != "" {
			m.Findings = append(m.Findings, Finding{Severity: Warn,
				Message: fmt.Sprintf("%s/%s (revision %s): %s", d.Namespace, d.Name, name, finding),
				Hint:    "meshaddon cannot tell which Istio rules apply to this revision; run istiod from a released image (pilot:1.NN.P) or label it app.kubernetes.io/version"})
		}
		byName[name] = len(m.Revisions)
		m.Revisions = append(m.Revisions, r)
	}
	for _, h := range tagHooks {
		name := h.Labels[TagLabel]
		if name == "" || h.DeletionTimestamp != nil {
			continue
		}
		t := Tag{Name: name, Revision: RevisionOf(h.Labels), Webhook: h.Name}
		if j, ok := byName[t.Revision]; ok {
			m.Revisions[j].Tags = append(m.Revisions[j].Tags, name)
		} else {
			t.Dangling = true
			m.Findings = append(m.Findings, Finding{Severity: Fail,
				Message: fmt.Sprintf("revision tag %s (MutatingWebhookConfiguration %s) points at revision %s, which has no istiod: pods of namespaces labelled %s=%s fail admission or go uninjected", name, h.Name, t.Revision, RevisionLabel, name),
				Hint:    fmt.Sprintf("point the tag at a running revision: istioctl tag set %s --revision <revision> --overwrite", name)})
		}
		m.Tags = append(m.Tags, t)
	}
	sort.Slice(m.Tags, func(i, j int) bool { return m.Tags[i].Name < m.Tags[j].Name })
	for i := range m.Revisions {
		sort.Strings(m.Revisions[i].Tags)
	}
	for _, t := range m.Tags {
		if _, clash := byName[t.Name]; clash && t.Name != DefaultRevision {
			m.Findings = append(m.Findings, Finding{Severity: Warn,
				Message: fmt.Sprintf("%s is both a revision and a revision tag: namespaces labelled %s=%s are injected by both webhooks", t.Name, RevisionLabel, t.Name),
				Hint:    "rename the tag: istioctl tag remove " + t.Name})
		}
	}
	m.readAuto(tagHooks)
	m.Layout = layoutOf(m.Revisions)
	return m
}

// readAuto finds the enableNamespacesByDefault webhook and says what it
// does: every unlabelled namespace is in the mesh.
func (m *Mesh) readAuto(hooks []admissionv1.MutatingWebhookConfiguration) {
	hooks = append([]admissionv1.MutatingWebhookConfiguration(nil), hooks...)
	sort.Slice(hooks, func(i, j int) bool { return hooks[i].Name < hooks[j].Name })
	var found []string
	for _, h := range hooks {
		if h.DeletionTimestamp != nil {
			continue
		}
		for _, w := range h.Webhooks {
			if w.Name != AutoWebhook {
				continue
			}
			found = append(found, h.Name)
			if m.Auto != nil {
				continue
			}
			ns, err := selectorOf(w.NamespaceSelector)
			if err == nil {
				var obj labels.Selector
				if obj, err = selectorOf(w.ObjectSelector); err == nil {
					m.Auto = &AutoInjection{Configuration: h.Name, namespaces: ns, objects: obj}
					continue
				}
			}
			m.Findings = append(m.Findings, Finding{Severity: Warn,
				Message: fmt.Sprintf("webhook %s of MutatingWebhookConfiguration %s has a selector the API server cannot apply (%v): meshaddon leaves it out of which namespaces are in the mesh", AutoWebhook, h.Name, err),
				Hint:    "fix the webhook's selectors (reinstall Istio's chart)"})
		}
	}
	if m.Auto == nil {
		return
	}
	by := m.target(DefaultRevision, "")
	rev := by.Revision
	if rev == "" {
		rev = "no istiod (the default revision or tag has none)"
	} else if by.Revision != by.Name {
		rev = fmt.Sprintf("%s (tag %s)", by.Revision, by.Name)
	}
	m.Findings = append(m.Findings, Finding{Severity: Warn,
		Message: fmt.Sprintf("enableNamespacesByDefault is on (webhook %s in %s): every namespace without %s or %s labels is in the mesh, injected by %s, but for the pods labelled %s or %s; meshaddon counts those namespaces in the mesh (precheck probes them, migrate restarts there)",
			AutoWebhook, strings.Join(found, ", "), InjectionLabel, RevisionLabel, rev, InjectLabel, RevisionLabel),
		Hint: fmt.Sprintf("label a namespace that must stay out %s=disabled; Istio's value sidecarInjectorWebhook.enableNamespacesByDefault=false turns it off", InjectionLabel)})
}

// selectorOf is a webhook's selector; nil selects everything, as the API
// server reads it.
func selectorOf(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

// RevisionOf is the revision in an object's istio.io/rev label, "default"
// when absent or empty (Istio's charts label a revision-less install so).
func RevisionOf(labels map[string]string) string {
	if r := labels[RevisionLabel]; r != "" {
		return r
	}
	return DefaultRevision
}

// layoutOf: the add-on's layout when every istiod runs an asm-1-NN revision
// in aks-istio-system, otherwise upstream's.
func layoutOf(revs []Revision) Layout {
	if len(revs) == 0 {
		return LayoutNone
	}
	for _, r := range revs {
		if _, err := meshversion.ParseRevision(r.Name); err != nil || r.Namespace != AKSNamespace {
			return LayoutUpstream
		}
	}
	return LayoutAKS
}

// Revision returns the revision called name.
func (m *Mesh) Revision(name string) (Revision, bool) {
	for _, r := range m.Revisions {
		if r.Name == name {
			return r, true
		}
	}
	return Revision{}, false
}

// Tag returns the tag called name.
func (m *Mesh) Tag(name string) (Tag, bool) {
	for _, t := range m.Tags {
		if t.Name == name {
			return t, true
		}
	}
	return Tag{}, false
}

// Namespaces lists the namespaces holding istiods, sorted.
func (m *Mesh) Namespaces() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range m.Revisions {
		if !seen[r.Namespace] {
			seen[r.Namespace] = true
			out = append(out, r.Namespace)
		}
	}
	sort.Strings(out)
	return out
}

// The oldest Istio with an istiod (1.5): a version older than that read from
// an istiod is a placeholder (Istio's source-tree charts are 1.0.0), not a release.
var firstIstiod = version.MajorMinor(1, 5)

// imageVersion matches the tag of a released pilot image: 1.27.1,
// 1.27.1-distroless, v1.27.1-debug, 1.27.0-beta.1.
var imageVersion = regexp.MustCompile(`^v?(\d+\.\d+(?:\.\d+)?)(?:[-+_.].*)?$`)

// istioVersion reads the Istio version of an istiod: its container image's
// tag, then the chart's app.kubernetes.io/version and helm.sh/chart labels,
// then, for the add-on's asm-1-NN revisions, the revision's name. finding,
// when set, says why the version cannot be known.
func istioVersion(d *appsv1.Deployment, revision string) (v *version.Version, from, finding string) {
	var why []string
	if img := discoveryImage(d); img != "" {
		tag := imageTag(img)
		if v := parseIstio(tag); v != nil {
			return v, "image " + img, ""
		}
		if tag == "" {
			why = append(why, fmt.Sprintf("image %s has no tag", img))
		} else {
			why = append(why, fmt.Sprintf("image tag %q of %s is not an Istio version", tag, img))
		}
	}
	for _, l := range []string{"app.kubernetes.io/version", "helm.sh/chart"} {
		val, ok := d.Labels[l]
		if !ok {
			continue
		}
		s := val
		if l == "helm.sh/chart" {
			_, s, _ = strings.Cut(val, "-") // istiod-1.27.1
		}
		if v := parseIstio(s); v != nil {
			return v, "label " + l + "=" + val, ""
		}
		why = append(why, fmt.Sprintf("label %s=%s is not an Istio release", l, val))
	}
	if v, ok := meshversion.RevisionIstio(revision); ok {
		return v, "revision name " + revision, ""
	}
	if len(why) == 0 {
		why = append(why, "no image tag or version label to read it from")
	}
	msg := "Istio version unknown: " + strings.Join(why, "; ")
	return nil, msg, msg
}

func parseIstio(s string) *version.Version {
	m := imageVersion.FindStringSubmatch(s)
	if m == nil {
		return nil
	}
	v, err := version.ParseGeneric(m[1])
	if err != nil || !v.AtLeast(firstIstiod) || v.Major() != 1 {
		return nil
	}
	return v
}

func discoveryImage(d *appsv1.Deployment) string {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == istiod.Container {
			return c.Image
		}
	}
	return ""
}

// imageTag is the tag of an image reference (registry:5000/istio/pilot:1.27.1@sha256:…).
func imageTag(img string) string {
	img, _, _ = strings.Cut(img, "@")
	last := img[strings.LastIndex(img, "/")+1:]
	_, tag, _ := strings.Cut(last, ":")
	return tag
}

// Target is the revision a namespace or pod is injected by, and why.
type Target struct {
	// Injected is false when no injector webhook selects it.
	Injected bool
	// Name is the revision or tag it selects (istio.io/rev's value, or
	// "default"); Revision is the revision that answers ("" when none does).
	Name     string
	Revision string
	// Via names the label that decided.
	Via string
}

func (t Target) String() string {
	switch {
	case !t.Injected:
		return "not injected (" + t.Via + ")"
	case t.Revision == "":
		return fmt.Sprintf("%s, which no istiod serves (%s)", t.Name, t.Via)
	case t.Revision != t.Name:
		return fmt.Sprintf("%s (tag %s, %s)", t.Revision, t.Name, t.Via)
	}
	return fmt.Sprintf("%s (%s)", t.Revision, t.Via)
}

// ResolveNamespace is what a pod without injection labels in a namespace
// with these labels is injected by.
func (m *Mesh) ResolveNamespace(nsLabels map[string]string) Target {
	return m.ResolvePod(nsLabels, nil)
}

// ResolvePod applies the selectors of Istio's injector webhooks
// (manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml,
// and revision-tags-mwc.yaml for tags, which repeat them per tag):
//
//   - a pod labelled sidecar.istio.io/inject=false is never injected (every
//     webhook's objectSelector excludes it);
//   - a namespace with istio-injection: only "enabled" injects, by the default
//     revision (the "namespace." webhook), and every rev webhook requires
//     istio-injection DoesNotExist, so it beats istio.io/rev on the namespace
//     and on the pod;
//   - a namespace's istio.io/rev selects that revision or tag ("rev.namespace."),
//     and beats the pod's istio.io/rev ("rev.object." requires the namespace
//     label DoesNotExist);
//   - in an unlabelled namespace the pod's istio.io/rev selects ("rev.object."),
//     else sidecar.istio.io/inject=true selects the default revision ("object.").
//   - else, with enableNamespacesByDefault ("auto."), a pod without
//     injection labels in a namespace without them (but kube-system,
//     kube-public, kube-node-lease, local-path-storage: its namespace
//     selector, applied as the API server does) goes to the default tag or
//     revision.
func (m *Mesh) ResolvePod(nsLabels, podLabels map[string]string) Target {
	if podLabels[InjectLabel] == "false" {
		return Target{Via: "pod label " + InjectLabel + "=false"}
	}
	if v, ok := nsLabels[InjectionLabel]; ok {
		if v != "enabled" {
			return Target{Via: fmt.Sprintf("namespace label %s=%s", InjectionLabel, v)}
		}
		return m.target(DefaultRevision, "namespace label "+InjectionLabel+"=enabled")
	}
	if v, ok := nsLabels[RevisionLabel]; ok {
		return m.target(v, "namespace label "+RevisionLabel+"="+v)
	}
	if v, ok := podLabels[RevisionLabel]; ok {
		return m.target(v, "pod label "+RevisionLabel+"="+v)
	}
	if podLabels[InjectLabel] == "true" {
		return m.target(DefaultRevision, "pod label "+InjectLabel+"=true")
	}
	if a := m.Auto; a != nil && a.namespaces.Matches(labels.Set(nsLabels)) && a.objects.Matches(labels.Set(podLabels)) {
		return m.target(DefaultRevision, "no injection label, enableNamespacesByDefault (webhook "+AutoWebhook+")")
	}
	return Target{Via: "no injection label"}
}

// target resolves a revision or tag name: a tag answers for its revision
// (for "default", istioctl's default tag takes over the default webhooks),
// else a revision of that name.
func (m *Mesh) target(name, via string) Target {
	t := Target{Injected: true, Name: name, Via: via}
	if tag, ok := m.Tag(name); ok {
		if !tag.Dangling {
			t.Revision = tag.Revision
		}
		return t
	}
	if _, ok := m.Revision(name); ok {
		t.Revision = name
	}
	return t
}
