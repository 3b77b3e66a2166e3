package migrate

import (
	authv1 "k8s.io/api/authorization/v1"
)

// Access is one kind of request migrate makes: a verb on a resource in a
// namespace ("" for every namespace, or a cluster-scoped resource).
type Access struct {
	Verb, Group, Resource, Namespace string
}

// String names it as RBAC does: "patch deployments.apps in shop".
func (a Access) String() string {
	s := a.Verb + " " + a.Resource
	if a.Group != "" {
		s += "." + a.Group
	}
	if a.Namespace != "" {
		s += " in " + a.Namespace
	}
	return s
}

// Attributes is the access as a SelfSubjectAccessReview asks about it.
func (a Access) Attributes() *authv1.ResourceAttributes {
	return &authv1.ResourceAttributes{Verb: a.Verb, Group: a.Group, Resource: a.Resource, Namespace: a.Namespace}
}

// RequiredAccess is every request BuildPlan and Runner make in scope: the
// one list precheck asks the API server about. TestRequiredAccess runs
// migrate as a user granted exactly this list (it must succeed) and as one
// granted all of it but one entry (it must be Forbidden): a request added to
// migrate without its entry here, or an entry nothing uses, fails that test.
func RequiredAccess(scope Scope) []Access {
	ns := scope.Namespace
	// The surge budget from the nodes' free allocatable needs every pod
	// bound to them: listing them everywhere covers listing them in ns.
	podsNS := ns
	if scope.MaxSurgePods <= 0 {
		podsNS = ""
	}
	access := []Access{
		// The namespaces in the mesh.
		{Verb: "list", Resource: "namespaces"},
		// The nodes, by which an istiod leaving ENABLE_NATIVE_SIDECARS
		// unset decides.
		{Verb: "list", Resource: "nodes"},
		// The plan; each workload's pods before and after its restart.
		{Verb: "list", Resource: "pods", Namespace: podsNS},
		// The Jobs of CronJobs, for the plan's report.
		{Verb: "list", Group: "batch", Resource: "jobs", Namespace: ns},
		// The revision tags (meshdiscovery), which name the revision a
		// namespace labelled with a tag is injected by.
		{Verb: "list", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"},
		// The PDBs and quotas that gate each restart.
		{Verb: "list", Group: "policy", Resource: "poddisruptionbudgets", Namespace: ns},
		{Verb: "list", Resource: "resourcequotas", Namespace: ns},
		// FailedCreate events, by which a stalled rollout fails at once.
		{Verb: "list", Resource: "events", Namespace: ns},
		{Verb: "watch", Resource: "events", Namespace: ns},
	}
	// Each workload is read, restarted and watched until it has rolled out.
	for _, resource := range []string{"deployments", "statefulsets", "daemonsets"} {
		for _, verb := range []string{"get", "patch", "list", "watch"} {
			access = append(access, Access{Verb: verb, Group: "apps", Resource: resource, Namespace: ns})
		}
	}
	// The istiods, unless listing Deployments in ns already covers them.
	if ns != "" && ns != scope.MeshNamespace {
		access = append(access, Access{Verb: "list", Group: "apps", Resource: "deployments", Namespace: scope.MeshNamespace})
	}
	return access
}
