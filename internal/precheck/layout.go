package precheck

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// Mesh is the mesh as discovery finds it: istiods in MeshNamespace, or in
// every namespace when it is empty (issue 15).
func (e *Env) Mesh(ctx context.Context) (*meshdiscovery.Mesh, error) {
	return load(e, "mesh", func() (*meshdiscovery.Mesh, error) {
		return meshdiscovery.Discover(ctx, e.Kube, e.MeshNamespace)
	})
}

// Upstream reports whether the cluster runs upstream Istio's layout rather
// than the managed add-on's. With ARM it is the add-on's.
func (e *Env) Upstream(ctx context.Context) (bool, error) {
	if e.ARM != nil {
		return false, nil
	}
	m, err := e.Mesh(ctx)
	if err != nil {
		return false, err
	}
	return m.Layout == meshdiscovery.LayoutUpstream, nil
}

// checkLayout names the layout, each revision with its istiod, Istio
// version and tags, and what discovery found wrong.
func checkLayout(ctx context.Context, e *Env) ([]Result, error) {
	m, err := e.Mesh(ctx)
	if err != nil {
		return nil, err
	}
	where := "every namespace"
	if e.MeshNamespace != "" {
		where = "namespace " + e.MeshNamespace
	}
	if m.Layout == meshdiscovery.LayoutNone {
		return one(Fail, "no istiod Deployment ("+istiod.Label+") in "+where,
			"install a mesh (meshaddon mesh enable --revision asm-1-27 on the add-on; istioctl install or Helm for upstream Istio), or point --mesh-namespace at it"), nil
	}
	res := Result{Status: OK, Message: fmt.Sprintf("layout %s: %d revision(s), %d tag(s) in %s", m.Layout, len(m.Revisions), len(m.Tags), where)}
	for _, r := range m.Revisions {
		line := fmt.Sprintf("revision %s: %s/%s, Istio %s", r.Name, r.Namespace, r.Deployment, r.VersionString())
		if r.Version != nil {
			line += " (" + r.VersionFrom + ")"
		}
		if len(r.Tags) > 0 {
			line += ", tags " + strings.Join(r.Tags, ", ")
		}
		res.Details = append(res.Details, line)
	}
	for _, t := range m.Tags {
		if t.Dangling {
			res.Details = append(res.Details, fmt.Sprintf("tag %s → %s (no istiod)", t.Name, t.Revision))
		}
	}
	out := []Result{res}
	for _, f := range m.Findings {
		s := Warn
		if f.Severity == meshdiscovery.Fail {
			s = Fail
		}
		out = append(out, Result{Status: s, Message: f.Message, Hint: f.Hint})
	}
	// Installed with enableNamespacesByDefault but without its webhook (one
	// managed apart, or a revision whose chart does not render it): the
	// API server decides, so the webhooks are followed, and this is said.
	if m.Auto == nil {
		rcs, err := e.RevisionConfigs(ctx)
		if err != nil {
			return out, nil // the Lifecycle group reports what cannot be read
		}
		for _, r := range m.Revisions {
			if rc, ok := rcs[r.Name]; ok && rc.NamespacesByDefault {
				out = append(out, Result{Status: Warn,
					Message: fmt.Sprintf("revision %s was installed with sidecarInjectorWebhook.enableNamespacesByDefault=true, but no webhook %s is installed: pods of namespaces without injection labels are not sent to istiod, so meshaddon counts those namespaces outside the mesh", r.Name, meshdiscovery.AutoWebhook),
					Hint:    fmt.Sprintf("label the namespaces to inject (%s=enabled or %s=<revision>); only the default revision's (or the default tag's) webhooks carry %s", meshdiscovery.InjectionLabel, meshdiscovery.RevisionLabel, meshdiscovery.AutoWebhook)})
			}
		}
	}
	return out, nil
}

// istioVersionOf is the Istio version discovery read for revision: nil when
// unknown or when the revision has no istiod.
func (e *Env) istioVersionOf(ctx context.Context, revision string) (r meshdiscovery.Revision, found bool) {
	m, err := e.Mesh(ctx)
	if err != nil {
		return meshdiscovery.Revision{}, false
	}
	return m.Revision(revision)
}

// checkUpstreamRevision judges an upstream revision (a free-form name) by
// the Istio version its istiod runs, against the policy's oldest revision.
func checkUpstreamRevision(ctx context.Context, e *Env, pol meshversion.Policy, name string) Result {
	r, ok := e.istioVersionOf(ctx, name)
	min := fmt.Sprintf("%d.%d", pol.MinRevision.Major, pol.MinRevision.Minor)
	switch {
	case !ok:
		return Result{Status: Fail, Message: "revision " + name + " has no istiod", Hint: "install it, or remove it from the MeshProfile"}
	case r.Version == nil:
		return Result{Status: Warn, Message: fmt.Sprintf("revision %s: %s", name, r.VersionFrom),
			Hint: "native sidecars need Istio " + min + " or newer; meshaddon cannot tell whether this istiod is"}
	case !r.Version.AtLeast(pol.MinRevision.Istio()):
		return Result{Status: Fail, Message: fmt.Sprintf("revision %s runs Istio %s, older than %s", name, r.VersionString(), min),
			Hint: "upgrade with a canary revision (istioctl install --revision), move the tags, then remove the old one"}
	}
	return Result{Status: OK, Message: fmt.Sprintf("revision %s runs Istio %s, %s or newer", name, r.VersionString(), min)}
}

// unsetMeaning is what ENABLE_NATIVE_SIDECARS unset means for revision on
// this cluster, by its Istio version and the nodes' kubelets.
func unsetMeaning(ctx context.Context, e *Env, revision string, nodes []meshversion.Node) meshversion.UnsetVerdict {
	r, _ := e.istioVersionOf(ctx, revision)
	return meshversion.ResolveUnsetFor(r.Version, nodes, "")
}

// checkManagerVerdict reads the verdict of a manager running in observe
// mode (--observe): it decides but never writes istiod, and its Reconciled
// condition says what it would write.
func checkManagerVerdict(ctx context.Context, e *Env) ([]Result, error) {
	p, err := e.Profile(ctx)
	if err != nil || p == nil {
		return nil, err
	}
	c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReconciled)
	switch {
	case c == nil:
		return nil, nil
	case c.Reason == v1alpha1.ReasonObserveOnly:
		res := Result{Status: Warn, Message: "the add-on manager (observe mode) disagrees with istiod: " + c.Message,
			Hint: "set the value it names where istiod is owned (Helm values, the GitOps repository), or run the manager without --observe"}
		for _, r := range p.Status.Revisions {
			res.Details = append(res.Details, fmt.Sprintf("%s: decided %s (%s: %s)", r.Name, r.Mode, r.Reason, r.Message))
		}
		return []Result{res}, nil
	case c.Reason == v1alpha1.ReasonObserved:
		return one(OK, "the add-on manager (observe mode): "+c.Message, ""), nil
	}
	return nil, nil
}
