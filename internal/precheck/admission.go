package precheck

// The admission proof: before anything restarts, a pod is created with a
// server-side dry run in each mesh namespace, so that the real injector and
// every other webhook and admission plugin act on it and nothing is stored.
// What comes back must still carry istio-proxy as a native sidecar: other
// webhooks built on an old k8s.io/api drop initContainers[].restartPolicy
// (istio/istio#49221, #52245), and then the API server refuses the pod or the
// proxy blocks the pod in Init.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshaddon/meshaddon/internal/inventory"
)

// Probe pods: what the dry run creates.
const (
	ProbeLabel = "app.kubernetes.io/name"
	ProbeApp   = "meshaddon-admission-probe"
	// nativeAnnotation asks the injector for a native sidecar whatever
	// istiod's ENABLE_NATIVE_SIDECARS says now: the proof is about what
	// native injection will meet, before it is turned on.
	nativeAnnotation = "sidecar.istio.io/nativeSidecar"
)

// PodWebhook is one webhook that acts on pod creation, from a mutating or a
// validating configuration.
type PodWebhook struct {
	Kind              string // MutatingWebhookConfiguration | ValidatingWebhookConfiguration
	Configuration     string
	Name              string
	NamespaceSelector *metav1.LabelSelector
	ObjectSelector    *metav1.LabelSelector
	SideEffects       *admissionv1.SideEffectClass
	// Istio is true for the mesh's own injector.
	Istio bool
}

func (w PodWebhook) String() string {
	kind := "mutating"
	if w.Kind == "ValidatingWebhookConfiguration" {
		kind = "validating"
	}
	return fmt.Sprintf("%s %s/%s", kind, w.Configuration, w.Name)
}

// SupportsDryRun is false for a webhook the API server will not call on a
// dry run: it would refuse the whole request. admissionregistration/v1
// accepts only None and NoneOnDryRun; configurations stored through v1beta1
// may still say Some or Unknown.
func (w PodWebhook) SupportsDryRun() bool {
	return w.SideEffects != nil && (*w.SideEffects == admissionv1.SideEffectClassNone || *w.SideEffects == admissionv1.SideEffectClassNoneOnDryRun)
}

// Matches reports whether the webhook acts on a pod with podLabels created in
// a namespace with nsLabels. A selector that cannot be parsed counts as
// matching: the proof must not pass because it misread one.
func (w PodWebhook) Matches(nsLabels, podLabels map[string]string) bool {
	return selects(w.NamespaceSelector, nsLabels) && selects(w.ObjectSelector, podLabels)
}

func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return true
	}
	return s.Matches(labels.Set(l))
}

// createsPods reports whether a rule covers CREATE of core pods.
func createsPods(rules []admissionv1.RuleWithOperations) bool {
	for _, r := range rules {
		if hasAny(r.Resources, "pods", "*", "*/*") && hasAny(opStrings(r.Operations), "CREATE", "*") &&
			(len(r.APIGroups) == 0 || hasAny(r.APIGroups, "", "*")) {
			return true
		}
	}
	return false
}

// PodWebhooks lists every webhook, mutating and validating, that acts on
// pod creation.
func PodWebhooks(mutating []admissionv1.MutatingWebhookConfiguration, validating []admissionv1.ValidatingWebhookConfiguration) []PodWebhook {
	var out []PodWebhook
	for _, c := range mutating {
		_, istio := c.Labels[inventory.RevisionLabel]
		for _, w := range c.Webhooks {
			if createsPods(w.Rules) {
				out = append(out, PodWebhook{Kind: "MutatingWebhookConfiguration", Configuration: c.Name, Name: w.Name,
					NamespaceSelector: w.NamespaceSelector, ObjectSelector: w.ObjectSelector, SideEffects: w.SideEffects,
					Istio: istio || strings.HasPrefix(c.Name, "istio-")})
			}
		}
	}
	for _, c := range validating {
		for _, w := range c.Webhooks {
			if createsPods(w.Rules) {
				out = append(out, PodWebhook{Kind: "ValidatingWebhookConfiguration", Configuration: c.Name, Name: w.Name,
					NamespaceSelector: w.NamespaceSelector, ObjectSelector: w.ObjectSelector, SideEffects: w.SideEffects})
			}
		}
	}
	return out
}

// probeGroup is namespaces that every webhook treats alike: one probe
// stands for all of them.
type probeGroup struct {
	revision   string
	namespaces []string
	webhooks   []PodWebhook // those that act on the probe there
}

// groupNamespaces groups mesh namespaces by revision and by which webhooks
// act on a probe pod in them.
func groupNamespaces(nss []corev1.Namespace, revisions []string, whs []PodWebhook, probeLabels map[string]string) []probeGroup {
	byKey := map[string]*probeGroup{}
	var keys []string
	for _, ns := range nss {
		rev := ns.Labels[inventory.RevisionLabel]
		if !slices.Contains(revisions, rev) {
			continue
		}
		var match []PodWebhook
		key := rev
		for i, w := range whs {
			if w.Matches(ns.Labels, probeLabels) {
				match = append(match, w)
				key += fmt.Sprintf(",%d", i)
			}
		}
		g := byKey[key]
		if g == nil {
			g = &probeGroup{revision: rev, webhooks: match}
			byKey[key] = g
			keys = append(keys, key)
		}
		g.namespaces = append(g.namespaces, ns.Name)
	}
	out := make([]probeGroup, 0, len(keys))
	for _, k := range keys {
		g := byKey[k]
		sort.Strings(g.namespaces)
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].namespaces[0] < out[j].namespaces[0] })
	return out
}

// ProbePod is the pod the dry run creates: small requests and limits, so a
// namespace whose quota asks for them does not refuse it for lacking them.
func ProbePod() *corev1.Pod {
	small := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: ProbeApp + "-",
			Labels:       map[string]string{ProbeLabel: ProbeApp},
			Annotations:  map[string]string{nativeAnnotation: "true"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: small, Limits: small},
		}}},
	}
}

// NativeProxyProblem says what is wrong with the injected pod for a native
// sidecar, or "" when istio-proxy is an init container with
// restartPolicy: Always and its probes.
func NativeProxyProblem(p *corev1.Pod) string {
	for _, c := range p.Spec.InitContainers {
		if c.Name != inventory.ProxyContainer {
			continue
		}
		switch {
		case c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways:
			return "istio-proxy came back as a plain init container (restartPolicy dropped): the pod would wait in Init forever"
		case c.ReadinessProbe == nil && c.StartupProbe == nil:
			return "istio-proxy came back without its readiness and startup probes"
		}
		return ""
	}
	for _, c := range p.Spec.Containers {
		if c.Name == inventory.ProxyContainer {
			return "istio-proxy came back as a regular container (classic), although the probe asked for a native sidecar"
		}
	}
	return "the pod came back without istio-proxy: the revision's injector did not act on it"
}

// ValidatingWebhooks are every validating webhook configuration.
func (e *Env) ValidatingWebhooks(ctx context.Context) ([]admissionv1.ValidatingWebhookConfiguration, error) {
	return load(e, "validatingwebhooks", func() ([]admissionv1.ValidatingWebhookConfiguration, error) {
		list, err := e.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return list.Items, nil
	})
}

func checkAdmission(ctx context.Context, e *Env) ([]Result, error) {
	revs, err := e.Revisions(ctx)
	if err != nil {
		return nil, err
	}
	nss, err := e.Namespaces(ctx)
	if err != nil {
		return nil, err
	}
	mut, err := e.Webhooks(ctx)
	if err != nil {
		return nil, err
	}
	val, err := e.ValidatingWebhooks(ctx)
	if err != nil {
		return nil, err
	}
	probe := ProbePod()
	groups := groupNamespaces(nss, revs, PodWebhooks(mut, val), probe.Labels)
	if len(groups) == 0 {
		return one(Skip, "no namespace is labelled for a mesh revision ("+inventory.RevisionLabel+")", ""), nil
	}
	var out []Result
	proven, total := 0, 0
	for _, g := range groups {
		total += len(g.namespaces)
		where := listSome(g.namespaces)
		if len(g.namespaces) > 1 {
			where = fmt.Sprintf("%s (%d namespaces that every webhook treats alike: one probe stands for them)", where, len(g.namespaces))
		}
		var noDryRun []string
		for _, w := range g.webhooks {
			if !w.SupportsDryRun() {
				noDryRun = append(noDryRun, w.String())
			}
		}
		if len(noDryRun) > 0 {
			out = append(out, Result{Status: Warn,
				Message: fmt.Sprintf("%s: unproven: %s may have side effects, so the API server will not run it on a dry run", where, listSome(noDryRun)),
				Hint:    "set sideEffects: None or NoneOnDryRun on those webhooks if they have none, or check by hand that they keep initContainers[].restartPolicy"})
			continue
		}
		got, err := e.Kube.CoreV1().Pods(g.namespaces[0]).Create(ctx, probe.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		others := otherWebhooks(g.webhooks)
		switch {
		case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot create resource"):
			out = append(out, Result{Status: Warn, Message: fmt.Sprintf("%s: unproven: no permission to create pods (dry run) there", where),
				Hint: "run precheck as someone who may create pods in the mesh namespaces (nothing is stored: it is a dry run)"})
			continue
		case err != nil:
			out = append(out, Result{Status: Fail,
				Message: fmt.Sprintf("%s: a pod with a native istio-proxy is refused: %v%s", where, err, webhooksClause(others)),
				Hint:    "fix or exclude the webhook or policy that refuses it (a webhook built on k8s.io/api older than 1.28 drops restartPolicy from init containers), then run precheck again"})
			continue
		}
		if problem := NativeProxyProblem(got); problem != "" {
			out = append(out, Result{Status: Fail,
				Message: fmt.Sprintf("%s: %s%s", where, problem, webhooksClause(others)),
				Hint:    "upgrade or exclude the webhook that rewrites the pod (it must keep initContainers[].restartPolicy: Always), then run precheck again"})
			continue
		}
		proven += len(g.namespaces)
	}
	if proven > 0 {
		out = append([]Result{{Status: OK, Message: fmt.Sprintf("%d of %d mesh namespaces admit a pod with a native istio-proxy (%d dry-run probes)", proven, total, len(groups))}}, out...)
	}
	return out, nil
}

// otherWebhooks are the webhooks, other than the mesh's injector, that act
// on the probe.
func otherWebhooks(whs []PodWebhook) []string {
	var out []string
	for _, w := range whs {
		if !w.Istio {
			out = append(out, w.String())
		}
	}
	return out
}

func webhooksClause(names []string) string {
	if len(names) == 0 {
		return " (no other webhook acts on pods there: an admission plugin or policy of the API server)"
	}
	return "; webhooks acting on pods there: " + listSome(names)
}
