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
	"sort"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/workqueue"

	"github.com/meshaddon/meshaddon/internal/inventory"
)

// dryRunsAtOnce is how many dry runs precheck has in flight: they are
// independent, and one after another they added up to most of a precheck
// of a large cluster.
const dryRunsAtOnce = 8

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
	FailurePolicy     *admissionv1.FailurePolicyType
	TimeoutSeconds    *int32
	// Service is where the API server calls it, when not by URL.
	Service *admissionv1.ServiceReference
	// Mesh is true for the mesh's own webhooks: Istio's injector and
	// meshaddon's placement guard. Findings name only the others.
	Mesh bool
}

// Ignored is true when the API server goes on without the webhook when
// calling it fails (failurePolicy Ignore; v1's default is Fail).
func (w PodWebhook) Ignored() bool {
	return w.FailurePolicy != nil && *w.FailurePolicy == admissionv1.Ignore
}

// Timeout is how long the API server waits for the webhook (v1's default
// is 10s).
func (w PodWebhook) Timeout() time.Duration {
	if w.TimeoutSeconds == nil {
		return 10 * time.Second
	}
	return time.Duration(*w.TimeoutSeconds) * time.Second
}

// Ref names w in a Result.
func (w PodWebhook) Ref() WebhookRef {
	return WebhookRef{Kind: w.Kind, Configuration: w.Configuration, Name: w.Name}
}

func refs(whs []PodWebhook) []WebhookRef {
	var out []WebhookRef
	for _, w := range whs {
		out = append(out, w.Ref())
	}
	return out
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

// selects evaluates a webhook's selector. A selector that cannot be parsed
// counts as matching: the proof must not pass because it misread one.
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
					FailurePolicy: w.FailurePolicy, TimeoutSeconds: w.TimeoutSeconds, Service: w.ClientConfig.Service,
					Mesh: istio || strings.HasPrefix(c.Name, "istio-") || w.Name == inventory.GuardWebhook})
			}
		}
	}
	for _, c := range validating {
		for _, w := range c.Webhooks {
			if createsPods(w.Rules) {
				out = append(out, PodWebhook{Kind: "ValidatingWebhookConfiguration", Configuration: c.Name, Name: w.Name,
					NamespaceSelector: w.NamespaceSelector, ObjectSelector: w.ObjectSelector, SideEffects: w.SideEffects,
					FailurePolicy: w.FailurePolicy, TimeoutSeconds: w.TimeoutSeconds, Service: w.ClientConfig.Service})
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
	webhooks   []PodWebhook // those that act on pods there (namespace selector)
}

// groupNamespaces groups the namespaces scope puts in the mesh by the
// revision injecting them, by which webhooks act on pods in them (their
// namespace selectors, which read the very labels that decide injection:
// istio-injection, istio.io/rev) and by apart, what the API server's own
// admission sees of each namespace (namespacedAdmission).
func groupNamespaces(nss []corev1.Namespace, scope *meshScope, whs []PodWebhook, apart map[string]string) []probeGroup {
	byKey := map[string]*probeGroup{}
	var keys []string
	for _, ns := range nss {
		rev, ok := scope.namespaceRevision(ns.Name)
		if !ok {
			continue
		}
		key, match := namespaceKey(ns, rev, whs, apart)
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

// namespaceKey names what admission sees of a pod's namespace: the revision
// injecting it, apart, and which of whs select the namespace (returned).
func namespaceKey(ns corev1.Namespace, rev string, whs []PodWebhook, apart map[string]string) (string, []PodWebhook) {
	var match []PodWebhook
	key := rev + "|" + apart[ns.Name]
	for i, w := range whs {
		if selects(w.NamespaceSelector, ns.Labels) {
			match = append(match, w)
			key += fmt.Sprintf(",%d", i)
		}
	}
	return key, match
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

// LimitRanges are every LimitRange, read in pages.
func (e *Env) LimitRanges(ctx context.Context) ([]corev1.LimitRange, error) {
	return load(e, "limitranges", func() ([]corev1.LimitRange, error) {
		var out []corev1.LimitRange
		err := inventory.EachListPage(ctx, metav1.ListOptions{Limit: 500}, e.Kube.CoreV1().LimitRanges("").List, func(l *corev1.LimitRangeList) error {
			out = append(out, l.Items...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list LimitRanges: %w", err)
		}
		return out, nil
	})
}

// ResourceQuotas are every ResourceQuota, read in pages.
func (e *Env) ResourceQuotas(ctx context.Context) ([]corev1.ResourceQuota, error) {
	return load(e, "resourcequotas", func() ([]corev1.ResourceQuota, error) {
		var out []corev1.ResourceQuota
		err := inventory.EachListPage(ctx, metav1.ListOptions{Limit: 500}, e.Kube.CoreV1().ResourceQuotas("").List, func(l *corev1.ResourceQuotaList) error {
			out = append(out, l.Items...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list ResourceQuotas: %w", err)
		}
		return out, nil
	})
}

// namespacedAdmission says, per namespace, what the API server's own
// admission sees of it besides webhooks, so that namespaces told apart here
// are not proven by one probe: a namespace with its own LimitRange or
// ResourceQuota (which judge each namespace by its own objects) is alone
// (its name); others carry which ValidatingAdmissionPolicyBindings, with
// their policies, select them. When the policies cannot be read, every
// namespace is alone: never one verdict for namespaces that may differ.
func (e *Env) namespacedAdmission(ctx context.Context, nss []corev1.Namespace) (map[string]string, error) {
	lrs, err := e.LimitRanges(ctx)
	if err != nil {
		return nil, err
	}
	qs, err := e.ResourceQuotas(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range lrs {
		out[l.Namespace] = "ns:" + l.Namespace
	}
	for _, q := range qs {
		out[q.Namespace] = "ns:" + q.Namespace
	}
	adm := e.Kube.AdmissionregistrationV1()
	policies, err := adm.ValidatingAdmissionPolicies().List(ctx, metav1.ListOptions{})
	var bindings *admissionv1.ValidatingAdmissionPolicyBindingList
	if err == nil {
		bindings, err = adm.ValidatingAdmissionPolicyBindings().List(ctx, metav1.ListOptions{})
	}
	if err != nil {
		for _, ns := range nss {
			out[ns.Name] = "ns:" + ns.Name
		}
		return out, nil
	}
	selectorOf := map[string]*metav1.LabelSelector{}
	for _, p := range policies.Items {
		if p.Spec.MatchConstraints != nil {
			selectorOf[p.Name] = p.Spec.MatchConstraints.NamespaceSelector
		}
	}
	for _, ns := range nss {
		if out[ns.Name] != "" {
			continue
		}
		var b strings.Builder
		for _, bd := range bindings.Items {
			var sel *metav1.LabelSelector
			if bd.Spec.MatchResources != nil {
				sel = bd.Spec.MatchResources.NamespaceSelector
			}
			if selects(sel, ns.Labels) && selects(selectorOf[bd.Spec.PolicyName], ns.Labels) {
				b.WriteString(bd.Name + ",")
			}
		}
		out[ns.Name] = b.String()
	}
	return out, nil
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
	scope, err := e.meshScope(ctx)
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
	apart, err := e.namespacedAdmission(ctx, nss)
	if err != nil {
		return nil, err
	}
	probe := ProbePod()
	whs := PodWebhooks(mut, val)
	groups := groupNamespaces(nss, scope, whs, apart)
	// Workloads opted in by their own pod labels where their namespace is
	// not: no probe stands for them (it carries no injection label, as a
	// real pod of the namespace would not), so each kind is tried as it is.
	optedIn, err := optedInSamples(ctx, e, scope, nss, whs, apart)
	if err != nil {
		return nil, err
	}
	if len(groups) == 0 && len(optedIn) == 0 {
		return one(Skip, noMeshNamespace, ""), nil
	}
	// One probe per group, several at once (they are independent); the
	// results are kept in the groups' order.
	type verdict struct {
		result *Result
		proven bool
	}
	verdicts := make([]verdict, len(groups))
	workqueue.ParallelizeUntil(ctx, dryRunsAtOnce, len(groups), func(i int) {
		g := groups[i]
		where := listSome(g.namespaces)
		if len(g.namespaces) > 1 {
			where = fmt.Sprintf("%s (%d namespaces that every webhook treats alike: one probe stands for them)", where, len(g.namespaces))
		}
		probeWebhooks := selecting(g.webhooks, probe.Labels)
		var noDryRun []PodWebhook
		for _, w := range probeWebhooks {
			if !w.SupportsDryRun() {
				noDryRun = append(noDryRun, w)
			}
		}
		if len(noDryRun) > 0 {
			r := sideEffectsUnproven(where, g, noDryRun)
			verdicts[i].result = &r
			return
		}
		if r := dryRun(ctx, e, g.namespaces[0], probe.DeepCopy(), where, probeWebhooks); r != nil {
			r.Namespaces, r.Revision = g.namespaces, g.revision
			verdicts[i].result = r
			return
		}
		verdicts[i].proven = true
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Result
	proven, total := 0, 0
	// provenNS and provenSamples are what the OK result names, for -o json.
	var provenNS, provenSamples []string
	for i, v := range verdicts {
		total += len(groups[i].namespaces)
		if v.proven {
			proven += len(groups[i].namespaces)
			provenNS = append(provenNS, groups[i].namespaces...)
		} else if v.result != nil {
			out = append(out, *v.result)
		}
	}
	probes := len(groups)
	// Webhooks that select on pod labels may treat real workloads unlike
	// the probe: one of each distinct template is tried as it is.
	samples, err := templateSamples(ctx, e, scope, groups, probe.Labels)
	if err != nil {
		return nil, err
	}
	samples = append(samples, optedIn...)
	probes += len(samples)
	sampled := make([]*Result, len(samples))
	workqueue.ParallelizeUntil(ctx, dryRunsAtOnce, len(samples), func(i int) {
		smp := samples[i]
		pod := &corev1.Pod{ObjectMeta: *smp.template.ObjectMeta.DeepCopy(), Spec: *smp.template.Spec.DeepCopy()}
		pod.Name, pod.GenerateName, pod.Namespace = "", ProbeApp+"-", ""
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[nativeAnnotation] = "true"
		why := smp.why
		if why == "" {
			why = "its pod labels meet other webhooks than the probe's"
		}
		where := fmt.Sprintf("%s/%s (%s)", smp.namespace, smp.workload, why)
		var noDryRun []PodWebhook
		for _, w := range smp.webhooks {
			if !w.SupportsDryRun() {
				noDryRun = append(noDryRun, w)
			}
		}
		if len(noDryRun) > 0 {
			r := sideEffectsUnproven(where, probeGroup{revision: smp.revision, namespaces: []string{smp.namespace}}, noDryRun)
			r.Workload = smp.workload
			sampled[i] = &r
			return
		}
		if r := dryRun(ctx, e, smp.namespace, pod, where, smp.webhooks); r != nil {
			r.Namespaces, r.Workload, r.Revision = []string{smp.namespace}, smp.workload, smp.revision
			sampled[i] = r
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	optedInProven := 0
	for i, r := range sampled {
		if r != nil {
			out = append(out, *r)
			continue
		}
		smp := samples[i]
		why := smp.why
		if why == "" {
			why = "its pod labels meet other webhooks than the probe's"
		} else {
			optedInProven++
		}
		provenSamples = append(provenSamples, fmt.Sprintf("admitted as it is: %s/%s (%s)", smp.namespace, smp.workload, why))
	}
	probesWord := "dry-run probes"
	if probes == 1 {
		probesWord = "dry-run probe"
	}
	var ok []string
	if proven > 0 {
		ok = append(ok, fmt.Sprintf("%d of %d mesh namespaces admit a pod with a native istio-proxy", proven, total))
	}
	if optedInProven > 0 {
		ok = append(ok, fmt.Sprintf("%d of %d kinds of workload opted in by their own pod labels (in namespaces outside the mesh) admit theirs", optedInProven, len(optedIn)))
	}
	if len(ok) > 0 {
		sort.Strings(provenNS)
		out = append([]Result{{Status: OK, Message: fmt.Sprintf("%s (%d %s)", strings.Join(ok, "; "), probes, probesWord),
			Namespaces: provenNS, Details: provenSamples}}, out...)
	}
	return out, nil
}

// sideEffectsUnproven is the finding for a group of namespaces where
// webhooks that may have side effects act on pods: the API server refuses a
// dry run they would see, so the group is unproven, never passed.
func sideEffectsUnproven(where string, g probeGroup, noDryRun []PodWebhook) Result {
	return Result{Status: Warn,
		Message:    fmt.Sprintf("%s: unproven: %s may have side effects, so the API server will not run it on a dry run", where, listSome(webhookNames(noDryRun))),
		Hint:       "set sideEffects: None or NoneOnDryRun on those webhooks if they have none, or check by hand that they keep initContainers[].restartPolicy",
		Namespaces: g.namespaces, Revision: g.revision, Webhooks: refs(noDryRun)}
}

// dryRun creates pod in ns with a server-side dry run and judges what comes
// back: nil when istio-proxy is a native sidecar and every webhook acting
// on it was seen to answer, else the finding, naming where and the webhooks
// (other than the injector) that acted on it.
func dryRun(ctx context.Context, e *Env, ns string, pod *corev1.Pod, where string, webhooks []PodWebhook) *Result {
	// The API server bounds each webhook by its timeoutSeconds; this bounds
	// the whole request, should the API server not answer either.
	limit := 10 * time.Second
	for _, w := range webhooks {
		limit += 2 * w.Timeout() // a mutating webhook may be called again
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	watch := e.watchFailOpen(ctx, webhooks)
	start := time.Now()
	got, err := e.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	took := time.Since(start)
	otherWhs := otherWebhooks(webhooks)
	others := webhooksClause(webhookNames(otherWhs))
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot create resource"):
		return &Result{Status: Warn, Message: where + ": unproven: no permission to create pods (dry run) there",
			Hint: "run precheck as someone who may create pods in the mesh namespaces (nothing is stored: it is a dry run)"}
	case ctx.Err() != nil:
		return &Result{Status: Warn, Message: fmt.Sprintf("%s: unproven: the API server did not answer the dry run within %s%s", where, limit, others),
			Hint: "check the webhooks acting on pods there and the API server, then run precheck again", Webhooks: refs(otherWhs)}
	case err != nil:
		if w, ok := unanswered(err, webhooks); ok {
			return &Result{Status: Fail,
				Message:  fmt.Sprintf("%s: webhook %s (failurePolicy Fail) did not answer within its timeoutSeconds (%s), so the API server refuses every pod there: %v", where, w, w.Timeout(), err),
				Hint:     "bring the webhook's server back (or set failurePolicy: Ignore if pods may go without it), then run precheck again",
				Webhooks: []WebhookRef{w.Ref()}}
		}
		return &Result{Status: Fail, Message: fmt.Sprintf("%s: a pod with a native istio-proxy is refused: %v%s", where, err, others),
			Hint:     "fix or exclude the webhook or policy that refuses it (a webhook built on k8s.io/api older than 1.28 drops restartPolicy from init containers), then run precheck again",
			Webhooks: refs(otherWhs)}
	}
	if problem := NativeProxyProblem(got); problem != "" {
		return &Result{Status: Fail, Message: fmt.Sprintf("%s: %s%s", where, problem, others),
			Hint:     "upgrade or exclude the webhook that rewrites the pod (it must keep initContainers[].restartPolicy: Always), then run precheck again",
			Webhooks: refs(otherWhs)}
	}
	if silent, why := watch.silent(ctx, took); len(silent) > 0 {
		return &Result{Status: Warn,
			Message:  fmt.Sprintf("%s: unproven: %s; with failurePolicy Ignore the API server went on without it, so what it does to a native sidecar is unseen", where, why),
			Hint:     "bring the webhook's server back, or check by hand that it keeps initContainers[].restartPolicy, then run precheck again",
			Webhooks: refs(silent)}
	}
	return nil
}

// unanswered finds, in the API server's refusal, the webhook it could not
// call (down, or slower than its timeoutSeconds).
func unanswered(err error, webhooks []PodWebhook) (PodWebhook, bool) {
	msg := err.Error()
	i := strings.Index(msg, `failed calling webhook "`)
	if i < 0 {
		return PodWebhook{}, false
	}
	name, _, _ := strings.Cut(msg[i+len(`failed calling webhook "`):], `"`)
	for _, w := range webhooks {
		if w.Name == name {
			return w, true
		}
	}
	return PodWebhook{}, false
}

// templateSample is a workload whose pod template meets another set of
// webhooks than the probe in its namespace.
type templateSample struct {
	namespace, workload, revision string
	template                      corev1.PodTemplateSpec
	webhooks                      []PodWebhook
	// why it is tried as it is ("" for other webhooks than the probe's).
	why string
}

// templateSamples goes through the Deployments, StatefulSets and DaemonSets
// (Env.Workloads) of the mesh namespaces whose webhooks select on pod
// labels, and keeps one workload for each distinct set of webhooks their
// templates meet (other than the probe's). Namespaces whose webhooks have
// no object selector are skipped: every pod there meets the same webhooks.
// A template that no judged revision injects (sidecar.istio.io/inject=false)
// is not tried: no istio-proxy is expected on it.
func templateSamples(ctx context.Context, e *Env, scope *meshScope, groups []probeGroup, probeLabels map[string]string) ([]templateSample, error) {
	var byNS map[string][]template
	var out []templateSample
	for _, g := range groups {
		selective := false
		for _, w := range g.webhooks {
			selective = selective || w.ObjectSelector != nil
		}
		if !selective {
			continue
		}
		if byNS == nil {
			var err error
			if byNS, err = workloadsByNamespace(ctx, e); err != nil {
				return nil, err
			}
		}
		seen := map[string]bool{g.revision + "|" + matchKey(g.webhooks, probeLabels): true}
		for _, ns := range g.namespaces {
			for _, t := range byNS[ns] {
				rev, injected := scope.revision(ns, t.tmpl.Labels)
				key := rev + "|" + matchKey(g.webhooks, t.tmpl.Labels)
				if !injected || seen[key] {
					continue
				}
				seen[key] = true
				out = append(out, templateSample{namespace: ns, workload: t.name, revision: rev, template: *t.tmpl, webhooks: selecting(g.webhooks, t.tmpl.Labels)})
			}
		}
	}
	return out, nil
}

// optedInSamples are the workloads, in namespaces that scope does not put
// in the mesh, whose own pod labels do (istio.io/rev, or
// sidecar.istio.io/inject=true, in an unlabelled namespace): one for each
// revision, namespace key (namespaceKey) and set of webhooks their templates
// meet.
func optedInSamples(ctx context.Context, e *Env, scope *meshScope, nss []corev1.Namespace, whs []PodWebhook, apart map[string]string) ([]templateSample, error) {
	var byNS map[string][]template
	seen := map[string]bool{}
	var out []templateSample
	for _, ns := range nss {
		if _, ok := scope.nsLabels[ns.Name]; !ok {
			continue // terminating
		}
		if _, inMesh := scope.namespaceRevision(ns.Name); inMesh {
			continue
		}
		if byNS == nil {
			var err error
			if byNS, err = workloadsByNamespace(ctx, e); err != nil {
				return nil, err
			}
		}
		for _, t := range byNS[ns.Name] {
			rev, ok := scope.revision(ns.Name, t.tmpl.Labels)
			if !ok {
				continue
			}
			nsKey, match := namespaceKey(ns, rev, whs, apart)
			key := nsKey + "|" + matchKey(match, t.tmpl.Labels)
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, templateSample{namespace: ns.Name, workload: t.name, revision: rev, template: *t.tmpl,
				webhooks: selecting(match, t.tmpl.Labels), why: "opted in by its pod labels: revision " + rev})
		}
	}
	return out, nil
}

// workloadsByNamespace is Env.Workloads by namespace.
func workloadsByNamespace(ctx context.Context, e *Env) (map[string][]template, error) {
	all, err := e.Workloads(ctx)
	if err != nil {
		return nil, err
	}
	byNS := map[string][]template{}
	for _, t := range all {
		byNS[t.namespace] = append(byNS[t.namespace], t)
	}
	return byNS, nil
}

// selecting are those of whs whose object selector takes a pod with these
// labels.
func selecting(whs []PodWebhook, podLabels map[string]string) []PodWebhook {
	var out []PodWebhook
	for _, w := range whs {
		if selects(w.ObjectSelector, podLabels) {
			out = append(out, w)
		}
	}
	return out
}

// matchKey names which of whs select a pod with these labels (the
// namespace selectors already matched).
func matchKey(whs []PodWebhook, podLabels map[string]string) string {
	var b strings.Builder
	for _, w := range whs {
		if selects(w.ObjectSelector, podLabels) {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

// otherWebhooks are the webhooks, other than the mesh's injector, that act
// on the probe.
func otherWebhooks(whs []PodWebhook) []PodWebhook {
	var out []PodWebhook
	for _, w := range whs {
		if !w.Mesh {
			out = append(out, w)
		}
	}
	return out
}

func webhookNames(whs []PodWebhook) []string {
	out := make([]string, len(whs))
	for i, w := range whs {
		out[i] = w.String()
	}
	return out
}

func webhooksClause(names []string) string {
	if len(names) == 0 {
		return " (no other webhook acts on pods there: an admission plugin or policy of the API server)"
	}
	return "; webhooks acting on pods there: " + listSome(names)
}
