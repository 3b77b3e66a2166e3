package precheck

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/migrate"
)

// Checks is every check, in the order printed within its group. Adding a
// check is adding a row here.
var Checks = []Check{
	{Group: "Feature", Name: "feature registered", Run: checkFeature},
	{Group: "Control plane", Name: "API server version", Run: checkAPIServer},
	{Group: "Node pools", Name: "pools", Run: checkPools},
	{Group: "Node pools", Name: "node versions", Run: checkNodeVersions},
	{Group: "Mesh", Name: "layout", Run: checkLayout},
	{Group: "Node pools", Name: "placement guard", Run: checkGuard},
	{Group: "Mesh", Name: "revisions", Run: checkRevisions},
	{Group: "Mesh", Name: "revision compatibility", Run: checkRevisionCompatibility},
	{Group: "Mesh", Name: "istiod available", Run: checkIstiodAvailable, Transient: []string{factIstiods}},
	{Group: "Mesh", Name: "injection webhooks", Run: checkWebhooks, Transient: []string{factWebhooks}},
	{Group: "Mesh", Name: "istio-injection label", Run: checkInjectionLabel},
	{Group: "Injection", Name: "ENABLE_NATIVE_SIDECARS", Run: checkInjection},
	{Group: "Injection", Name: "manager's verdict (observe mode)", Run: checkManagerVerdict},
	{Group: "Admission", Name: "native sidecar admitted in each mesh namespace", Run: checkAdmission},
	{Group: "Resources", Name: "requests, limits and quotas of native pods", Run: checkResources},
	{Group: "Lifecycle", Name: "vertical pod autoscalers", Run: checkVPAs},
	{Group: "Lifecycle", Name: "holdApplicationUntilProxyStarts", Run: checkHoldApplication},
	{Group: "Lifecycle", Name: "shutdown that depends on the proxy", Run: checkShutdown},
	{Group: "Workloads", Name: "pods by mode", Run: checkPodModes},
	{Group: "Workloads", Name: "per-pod overrides", Run: checkOverrides},
	{Group: "Workloads", Name: "jobs with classic sidecars", Run: checkJobs},
	{Group: "Permissions", Name: "access for migrate", Run: checkPermissions},
}

// maxListed keeps lists in messages short on big clusters.
const maxListed = 5

func listSome(items []string) string { return listSomeOf(items, len(items)) }

// listSomeOf lists the first of items, which are the first of total.
func listSomeOf(items []string, total int) string {
	shown := items[:min(len(items), maxListed)]
	if total <= len(shown) {
		return strings.Join(shown, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(shown, ", "), total-len(shown))
}

func one(s Status, msg, hint string) []Result { return []Result{{Status: s, Message: msg, Hint: hint}} }

func checkFeature(ctx context.Context, e *Env) ([]Result, error) {
	pol := e.ActivePolicy(ctx)
	if pol.FeatureFlag == "" {
		return one(Skip, fmt.Sprintf("policy %s needs no feature flag", pol.Name), ""), nil
	}
	if up, err := e.Upstream(ctx); err == nil && up {
		return one(Skip, "upstream Istio: no platform feature flag ("+pol.FeatureFlag+" is the managed add-on's)", ""), nil
	}
	if e.ARM != nil {
		f, err := e.ARM.GetFeature(ctx, pol.FeatureFlag)
		if err != nil {
			return nil, err
		}
		switch f.Properties.State {
		case "Registered":
			return one(OK, pol.FeatureFlag+" is Registered in subscription "+e.ARM.Subscription, ""), nil
		case "Registering":
			return one(Fail, pol.FeatureFlag+" is still Registering", "wait until `meshaddon feature show --provider aks` shows Registered, then run: meshaddon provider register --provider aks"), nil
		}
		return one(Fail, pol.FeatureFlag+" is "+f.Properties.State, "run: meshaddon feature register --provider aks --name "+pol.FeatureFlag), nil
	}
	p, err := e.Profile(ctx)
	if err != nil {
		return nil, err
	}
	if p != nil && p.Status.CreatedQualifying != nil && *p.Status.CreatedQualifying {
		return one(Skip, "the cluster was created qualifying (a new cluster): no feature flag needed", ""), nil
	}
	fr, err := e.Feature(ctx, pol.FeatureFlag)
	if err != nil {
		return nil, err
	}
	name := pol.FeatureFlag
	switch {
	case fr != nil && fr.Status.AppliedState == v1alpha1.StateRegistered:
		return one(OK, name+" is registered and the provider refreshed", ""), nil
	case fr != nil && fr.Status.State == v1alpha1.StateRegistered:
		return one(Fail, name+" is Registered but the provider was not refreshed since", "run: meshaddon provider register"), nil
	case fr != nil && fr.Status.State == v1alpha1.StateRegistering:
		return one(Fail, name+" is still Registering", "wait until `meshaddon feature show --name "+name+"` shows Registered, then run: meshaddon provider register"), nil
	}
	return one(Fail, name+" is not registered", "run: meshaddon feature register --name "+name+"; wait for Registered; then meshaddon provider register"), nil
}

// facts are the decision's inputs as far as precheck knows them.
func facts(ctx context.Context, e *Env) (meshversion.Facts, error) {
	v, err := e.ServerVersion(ctx)
	if err != nil {
		return meshversion.Facts{}, err
	}
	nodes, err := e.Nodes(ctx)
	if err != nil {
		return meshversion.Facts{}, err
	}
	p, err := e.Profile(ctx)
	if err != nil {
		return meshversion.Facts{}, err
	}
	return meshversion.Facts{APIServerVersion: v, Nodes: nodes, Guard: guardFacts(p)}, nil
}

func checkAPIServer(ctx context.Context, e *Env) ([]Result, error) {
	f, err := facts(ctx, e)
	if err != nil {
		return nil, err
	}
	pol := e.ActivePolicy(ctx)
	ok, _, msg := meshversion.CheckGate("api-server", pol, f, meshversion.Revision{})
	if ok {
		return one(OK, fmt.Sprintf("%s (%s or newer)", msg, meshversion.MinorString(pol.MinKubernetes)), ""), nil
	}
	return one(Fail, msg, "upgrade the control plane first, then every node pool"), nil
}

func checkPools(ctx context.Context, e *Env) ([]Result, error) {
	nodes, err := e.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	pools := meshversion.SummarizePools(nodes)
	if len(pools) == 0 {
		return one(Warn, "the cluster has no nodes", "native sidecars need nodes on a supported kubelet; add a node pool"), nil
	}
	var out []Result
	for _, p := range pools {
		msg := fmt.Sprintf("pool %s: %d node(s), %d Ready, kubelet %s, %s", p.Name, p.Nodes, p.Ready, strings.Join(p.KubeletVersions, ","), strings.ToLower(p.PowerState))
		switch {
		case p.PowerState == meshversion.PowerStopped:
			out = append(out, Result{Status: Warn, Message: msg, Hint: "the document asks for every pool's power state to be running: start pool " + p.Name})
		case len(p.KubeletVersions) > 1:
			out = append(out, Result{Status: Warn, Message: msg + " (mixed versions: an upgrade in progress?)", Hint: "let the upgrade of pool " + p.Name + " finish before enabling native sidecars"})
		default:
			out = append(out, Result{Status: OK, Message: msg})
		}
	}
	return out, nil
}

func checkNodeVersions(ctx context.Context, e *Env) ([]Result, error) {
	f, err := facts(ctx, e)
	if err != nil {
		return nil, err
	}
	pol := e.ActivePolicy(ctx)
	ok, _, msg := meshversion.CheckGate("nodes", pol, f, meshversion.Revision{})
	if ok {
		return one(OK, msg, ""), nil
	}
	res := Result{Status: Fail, Message: msg, Hint: "a native sidecar on an older kubelet hangs in Init: upgrade those pools (native sidecars need every node on " + meshversion.MinorString(pol.MinKubernetes) + "+)"}
	old := pol.OldNodes(f.Nodes)
	pools := make([]string, 0, len(old))
	for p := range old {
		pools = append(pools, p)
	}
	sort.Strings(pools)
	for _, p := range pools {
		var names []string
		for _, n := range old[p] {
			names = append(names, n.Name+" ("+orUnknown(n.KubeletVersion)+")")
		}
		sort.Strings(names)
		res.Details = append(res.Details, "pool "+p+": "+strings.Join(names, ", "))
	}
	return []Result{res}, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func checkRevisions(ctx context.Context, e *Env) ([]Result, error) {
	revs, err := e.Revisions(ctx)
	if err != nil {
		return nil, err
	}
	if len(revs) == 0 {
		return one(Fail, "no mesh revision is installed", "enable the mesh: meshaddon mesh enable --revision asm-1-27"), nil
	}
	pol := e.ActivePolicy(ctx)
	var out []Result
	for _, rev := range revs {
		r, err := meshversion.ParseRevision(rev)
		if up, _ := e.Upstream(ctx); err != nil && up {
			// Upstream revision names are free-form: judge the Istio version.
			out = append(out, checkUpstreamRevision(ctx, e, pol, rev))
			continue
		}
		if err != nil {
			out = append(out, Result{Status: Fail, Message: err.Error()})
			continue
		}
		ok, _, msg := meshversion.CheckGate("revision", pol, meshversion.Facts{}, r)
		if ok {
			out = append(out, Result{Status: OK, Message: msg})
		} else {
			out = append(out, Result{Status: Fail, Message: msg, Hint: "upgrade the mesh with a canary revision, then remove the old one"})
		}
	}
	return out, nil
}

// checkRevisionCompatibility asks the platform's mesh revision profile
// which Kubernetes versions each revision supports (ARM only).
func checkRevisionCompatibility(ctx context.Context, e *Env) ([]Result, error) {
	if e.ARM == nil {
		return nil, nil
	}
	c, err := e.Managed(ctx)
	if err != nil {
		return nil, err
	}
	problems, err := e.ARM.RevisionCompatibility(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(problems) == 0 {
		return one(OK, fmt.Sprintf("revisions %s support Kubernetes %s", strings.Join(c.Revisions, ", "), c.KubernetesVersion), ""), nil
	}
	var out []Result
	for _, p := range problems {
		out = append(out, Result{Status: Fail, Message: p, Hint: "upgrade the mesh to a revision that supports this Kubernetes version (az aks mesh get-upgrades)"})
	}
	return out, nil
}

func checkIstiodAvailable(ctx context.Context, e *Env) ([]Result, error) {
	revs, err := e.Revisions(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := e.Istiods(ctx)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, rev := range revs {
		d := ds[rev]
		switch {
		case d == nil:
			out = append(out, Result{Status: Fail, Message: fmt.Sprintf("istiod for %s is not installed in %s", rev, meshWhere(e)), Hint: "re-enable the revision: meshaddon mesh enable --revision " + rev})
		case d.Status.AvailableReplicas == 0:
			out = append(out, Result{Status: Fail, Message: fmt.Sprintf("%s has no available replica", d.Name), Hint: "kubectl -n " + d.Namespace + " describe deployment " + d.Name})
		default:
			out = append(out, Result{Status: OK, Message: fmt.Sprintf("%s is available (%d/%d)", d.Name, d.Status.AvailableReplicas, d.Status.Replicas)})
		}
	}
	return out, nil
}

// podWebhooks are the webhooks of c that mutate pods on create.
func podWebhooks(c admissionv1.MutatingWebhookConfiguration) []admissionv1.MutatingWebhook {
	var out []admissionv1.MutatingWebhook
	for _, w := range c.Webhooks {
		if createsPods(w.Rules) {
			out = append(out, w)
		}
	}
	return out
}

func opStrings(ops []admissionv1.OperationType) []string {
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = string(o)
	}
	return out
}

func hasAny(list []string, want ...string) bool {
	for _, l := range list {
		for _, w := range want {
			if l == w {
				return true
			}
		}
	}
	return false
}

func checkWebhooks(ctx context.Context, e *Env) ([]Result, error) {
	revs, err := e.Revisions(ctx)
	if err != nil {
		return nil, err
	}
	whs, err := e.Webhooks(ctx)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, rev := range revs {
		var found *admissionv1.MutatingWebhookConfiguration
		for i := range whs {
			// The revision's own injector, not a revision tag's (which carries its revision's label too).
			if whs[i].Labels[inventory.RevisionLabel] == rev && whs[i].Labels[meshdiscovery.TagLabel] == "" && len(podWebhooks(whs[i])) > 0 {
				found = &whs[i]
			}
		}
		if found == nil {
			out = append(out, Result{Status: Fail, Message: "no injection webhook for " + rev, Hint: "istiod " + rev + " cannot inject; reinstall the revision"})
			continue
		}
		var missing []string
		for _, w := range found.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				missing = append(missing, w.Name)
			}
		}
		if len(missing) > 0 {
			out = append(out, Result{Status: Fail, Message: fmt.Sprintf("webhook %s has no caBundle on %s", found.Name, listSome(missing)), Hint: "istiod writes it when it starts: check that istiod " + rev + " runs"})
			continue
		}
		out = append(out, Result{Status: OK, Message: fmt.Sprintf("webhook %s is present with a caBundle", found.Name)})
	}
	return out, nil
}

func checkInjectionLabel(ctx context.Context, e *Env) ([]Result, error) {
	nss, err := e.Namespaces(ctx)
	if err != nil {
		return nil, err
	}
	var labelled []string
	for _, ns := range nss {
		if ns.Labels["istio-injection"] == "enabled" {
			labelled = append(labelled, ns.Name)
		}
	}
	if len(labelled) == 0 {
		return one(OK, "no namespace uses the istio-injection=enabled label", ""), nil
	}
	if up, err := e.Upstream(ctx); err == nil && up {
		// Upstream Istio honours the label: it selects the default revision.
		m, _ := e.Mesh(ctx)
		t := m.ResolveNamespace(map[string]string{"istio-injection": "enabled"})
		if t.Revision == "" {
			return one(Fail, fmt.Sprintf("%d namespace(s) labelled istio-injection=enabled, but no default revision or default tag serves them: %s", len(labelled), listSome(labelled)),
				"install a default revision, or point the default tag at one: istioctl tag set default --revision <revision>"), nil
		}
		return one(OK, fmt.Sprintf("%d namespace(s) labelled istio-injection=enabled, injected by %s: %s", len(labelled), t, listSome(labelled)), ""), nil
	}
	return one(Warn, fmt.Sprintf("%d namespace(s) labelled istio-injection=enabled, which the add-on ignores: %s", len(labelled), listSome(labelled)),
		"label them istio.io/rev=<revision> instead, and remove istio-injection"), nil
}

func checkInjection(ctx context.Context, e *Env) ([]Result, error) {
	revs, err := e.Revisions(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := e.Istiods(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := e.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, rev := range revs {
		d := ds[rev]
		if d == nil {
			continue
		}
		setting := istiod.NativeSidecars(d)
		value := setting.String()
		inj, set, err := setting.Injection()
		if err == nil && set {
			// The value is read as this istiod's Istio version reads it.
			r, _ := e.istioVersionOf(ctx, rev)
			if rd := meshversion.ReadEnv(r.Version, setting.Value, setting.Present); rd.Note != "" {
				out = append(out, Result{Status: Warn, Message: fmt.Sprintf("%s: ENABLE_NATIVE_SIDECARS=%q: %s", d.Name, setting.Value, rd.Note), Hint: "set it to exactly true or false"})
				if rd.Injection != "" {
					inj = rd.Injection
				}
			}
		}
		switch {
		case err != nil:
			out = append(out, Result{Status: Fail, Message: fmt.Sprintf("%s: %v", d.Name, err), Hint: "set it to true or false, or let the add-on manager set it (meshaddon reconcile)"})
		case !set:
			out = append(out, unsetResult(ctx, e, d.Name, rev, nodes))
		case inj == meshversion.Native:
			out = append(out, Result{Status: OK, Message: fmt.Sprintf("%s: ENABLE_NATIVE_SIDECARS=%s: istiod injects native sidecars", d.Name, value)})
		default:
			out = append(out, Result{Status: Fail, Message: fmt.Sprintf("%s: ENABLE_NATIVE_SIDECARS=%s: istiod injects classic sidecars", d.Name, value),
				Hint: "once the checks above pass the add-on manager turns it on; to force it now: meshaddon reconcile (kubectl get meshprofile default -o yaml says why it is off)"})
		}
	}
	return out, nil
}

// meshWhere names where istiods were looked for.
func meshWhere(e *Env) string {
	if e.MeshNamespace == "" {
		return "any namespace"
	}
	return e.MeshNamespace
}

// unsetResult says what ENABLE_NATIVE_SIDECARS unset means for one istiod
// on this cluster: by its Istio version (classic before 1.27, by the
// kubelets from 1.27) and, in that case, which nodes make it classic.
func unsetResult(ctx context.Context, e *Env, name, rev string, nodes []meshversion.Node) Result {
	v := unsetMeaning(ctx, e, rev, nodes)
	hint := "the add-on manager sets it explicitly; run: meshaddon reconcile"
	if up, _ := e.Upstream(ctx); up {
		hint = "set it explicitly on the istiod (Helm: pilot.env.ENABLE_NATIVE_SIDECARS; istioctl: --set values.pilot.env.ENABLE_NATIVE_SIDECARS), or run the manager with --layout upstream"
	}
	res := Result{Status: Warn, Hint: hint}
	if v.Auto {
		res.Message = fmt.Sprintf("%s: ENABLE_NATIVE_SIDECARS is unset, so Istio decides: native only if every node's kubelet is %s+; on this cluster it resolves to %s (%s)",
			name, meshversion.MinorString(meshversion.IstioAutoMinKubelet), v.Injection, v.Message)
	} else {
		res.Message = fmt.Sprintf("%s: ENABLE_NATIVE_SIDECARS is unset: %s", name, v.Message)
	}
	for _, n := range v.OldNodes {
		res.Details = append(res.Details, fmt.Sprintf("node %s (pool %s): kubelet %s", n.Name, orUnknown(n.Pool), orUnknown(n.KubeletVersion)))
	}
	return res
}

func checkPodModes(ctx context.Context, e *Env) ([]Result, error) {
	pc, err := e.Pods(ctx)
	if err != nil {
		return nil, err
	}
	out := []Result{{Status: OK, Message: fmt.Sprintf("%d pod(s), %d injected, %d not injected (%s)",
		pc.Total, pc.Total-pc.NotInjected, pc.NotInjected, pc.Source)}}
	for _, r := range pc.Revisions {
		msg := fmt.Sprintf("%s: %d native, %d classic", orUnknown(r.Name), r.Native, r.Classic)
		if r.Classic > 0 {
			out = append(out, Result{Status: Warn, Message: msg, Hint: "restart classic workloads once istiod injects native: meshaddon migrate (list them: meshaddon status -A --workloads --mode classic)"})
		} else {
			out = append(out, Result{Status: OK, Message: msg})
		}
	}
	return out, nil
}

func checkOverrides(ctx context.Context, e *Env) ([]Result, error) {
	pc, err := e.Pods(ctx)
	if err != nil {
		return nil, err
	}
	if pc.OverrideCount == 0 {
		return one(OK, "no pod overrides the mode with sidecar.istio.io/nativeSidecar", ""), nil
	}
	return one(Warn, fmt.Sprintf("%d pod(s) override the mode with sidecar.istio.io/nativeSidecar: %s", pc.OverrideCount, listSomeOf(pc.Overrides, int(pc.OverrideCount))),
		"these keep their own mode whatever istiod does; remove the annotation to follow the mesh"), nil
}

func checkJobs(ctx context.Context, e *Env) ([]Result, error) {
	pc, err := e.Pods(ctx)
	if err != nil {
		return nil, err
	}
	if pc.ClassicJobCount == 0 {
		return one(OK, "no Job or CronJob runs with classic sidecars", ""), nil
	}
	return one(Warn, fmt.Sprintf("%d Job(s)/CronJob(s) run classic sidecars, which keep their pods from completing: %s", pc.ClassicJobCount, listSomeOf(pc.ClassicJobs, int(pc.ClassicJobCount))),
		"native mode fixes them: CronJobs pick it up at their next run; recreate Jobs after istiod injects native"), nil
}

// checkPermissions asks the API server, with one access review each,
// whether the user may make every request `meshaddon migrate -A` makes: the
// list is migrate's own (migrate.RequiredAccess), so this passes exactly
// when migrate would not be Forbidden.
func checkPermissions(ctx context.Context, e *Env) ([]Result, error) {
	access := migrate.RequiredAccess(migrate.Scope{MeshNamespace: e.MeshNamespace})
	allowed := make([]bool, len(access))
	errs := make([]error, len(access))
	var wg sync.WaitGroup
	for i, a := range access {
		wg.Go(func() {
			review := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: a.Attributes()}}
			got, err := e.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err == nil {
				allowed[i] = got.Status.Allowed
			}
			errs[i] = err
		})
	}
	wg.Wait()
	var missing []string
	for i, a := range access {
		if errs[i] != nil {
			return nil, fmt.Errorf("ask whether you may %s: %w", a, errs[i])
		}
		if !allowed[i] {
			missing = append(missing, a.String())
		}
	}
	if len(missing) > 0 {
		return []Result{{Status: Fail, Message: fmt.Sprintf("meshaddon migrate -A would be Forbidden: you may not %s", strings.Join(missing, ", ")),
			Hint: "ask for a ClusterRole granting them, bound to you (kubectl auth can-i shows each)"}}, nil
	}
	return one(OK, fmt.Sprintf("you may make every request of meshaddon migrate -A (%d verbs on namespaces, nodes, pods, Jobs, Deployments, StatefulSets and DaemonSets)", len(access)), ""), nil
}
