package migrate

import (
	"fmt"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
)

// restartRule is the one rule of what migrate restarts (issue 15): a
// workload whose pods carry classic sidecars is restarted when its pod
// template, resolved now as Istio's webhooks resolve it (its namespace's
// labels, revision tags, its own labels, Istio's precedence), is injected
// by a revision that injects native now. The revision that injected the
// running pods does not count: it injected them then, a restart is injected
// now. So pods of a tag moved from a classic revision to a native one are
// restarted, and a classic pod whose template resolves to a classic revision
// is not (it would come back classic): the plan says why.
type restartRule struct {
	mesh *meshdiscovery.Mesh
	// native: the revisions whose istiod injects native now.
	native map[string]bool
	// nsLabels are the labels of the namespaces migrate may restart in.
	nsLabels map[string]map[string]string
}

// candidate: a pod migrate considers at all, one with a classic sidecar in
// a namespace it may restart in, not pinned classic by the per-pod override
// (that one is the user's or the placement guard's choice, see classic).
func (rr *restartRule) candidate(p inventory.Pod) bool {
	if p.Mode != inventory.Classic || p.Override == "false" {
		return false
	}
	_, ok := rr.nsLabels[p.Namespace]
	return ok
}

// verdict tells whether new pods of a template with these labels and
// annotations in namespace ns come out native, and when not, why, for the
// plan.
func (rr *restartRule) verdict(ns string, labels, annotations map[string]string) (ok bool, why string) {
	nsl, in := rr.nsLabels[ns]
	if !in {
		return false, fmt.Sprintf("namespace %s holds an istiod or is not in the cluster: migrate restarts nothing there", ns)
	}
	fix := fmt.Sprintf("fix the template's labels (%s, %s) or its namespace's, then run migrate again", meshdiscovery.RevisionLabel, meshdiscovery.InjectLabel)
	// The injector reads sidecar.istio.io/inject from the label, else the
	// annotation, and injects nothing for exactly "false" (other values
	// fall back to the default policy: pkg/kube/inject/inject.go,
	// injectRequired). The label's "false" the webhooks already exclude.
	if _, set := labels[meshdiscovery.InjectLabel]; !set && annotations[meshdiscovery.InjectLabel] == "false" {
		return false, fmt.Sprintf("its pod template has the annotation %s=false, so new pods get no sidecar at all; %s", meshdiscovery.InjectLabel, fix)
	}
	t := rr.mesh.ResolvePod(nsl, labels)
	switch {
	case !t.Injected:
		return false, fmt.Sprintf("its pod template is not injected now (%s), so new pods would get no sidecar at all; %s", t.Via, fix)
	case t.Revision == "":
		return false, fmt.Sprintf("its pod template resolves to %s, so new pods would fail admission or get no sidecar; point it at a running revision, then run migrate again", t)
	case !rr.native[t.Revision]:
		return false, fmt.Sprintf("its pod template resolves to revision %s, which injects classic sidecars now, so new pods would be classic again: nothing to gain until that revision injects native (meshaddon precheck says why it does not), or move the workload to a native revision", t)
	case annotations[inventory.NativeSidecarOverride] == "false":
		return false, fmt.Sprintf("its pod template pins classic sidecars (annotation %s=false): remove it to migrate", inventory.NativeSidecarOverride)
	}
	return true, ""
}

// apply turns an item whose new pods would not be native into a report
// that says why.
func (rr *restartRule) apply(it *Item, labels, annotations map[string]string) {
	if ok, why := rr.verdict(it.Namespace, labels, annotations); !ok {
		it.Action, it.Advice = ActionReport, "not restarted: "+why
	}
}
