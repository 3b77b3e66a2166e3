package precheck

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// Env reads the cluster's facts once, on first use, for every check.
type Env struct {
	Kube kubernetes.Interface
	// Metadata, when set, lists pods as metadata only (see Pods).
	Metadata      metadata.Interface
	Client        client.Client
	MeshNamespace string
	// Policy is the version policy when the cluster has no MeshProfile
	// saying which one its manager uses.
	Policy meshversion.Policy
	// ARM, when set, is the source of the Feature, Control plane, Node
	// pools and Mesh facts (--provider aks); the cluster's API still
	// answers for Injection and Workloads.
	ARM *azure.Provider
	// ListPods counts pods by listing them even when the add-on manager
	// keeps a census.
	ListPods bool
	// Wait is how long precheck waits on what can pass by itself: a
	// transient check's failure (Check.Transient) and a census that has
	// not caught up with the pods yet. Zero: nothing is waited on.
	Wait time.Duration
	// Waiting, when set, is told what is waited on, and how long at most.
	Waiting func(check, failure string, left time.Duration)

	deadline time.Time
	waitOnce sync.Once
	once     sync.Map // name → *onceValue
}

// startWait starts the clock of Wait (at the first call).
func (e *Env) startWait() {
	e.waitOnce.Do(func() { e.deadline = time.Now().Add(e.Wait) })
}

// waitLeft is what is left of Wait.
func (e *Env) waitLeft() time.Duration {
	e.startWait()
	return time.Until(e.deadline)
}

func (e *Env) waiting(check, failure string, left time.Duration) {
	if e.Waiting != nil {
		e.Waiting(check, failure, left.Round(time.Second))
	}
}

// Names of the facts a transient check reads again (load's names).
const (
	factIstiods  = "istiods"
	factWebhooks = "webhooks"
)

// forget drops facts, so they are read again when next asked for.
func (e *Env) forget(names ...string) {
	for _, n := range names {
		e.once.Delete(n)
	}
}

type onceValue struct {
	once sync.Once
	v    any
	err  error
}

// load runs fn once per name and caches its value or error.
func load[T any](e *Env, name string, fn func() (T, error)) (T, error) {
	ov, _ := e.once.LoadOrStore(name, &onceValue{})
	o := ov.(*onceValue)
	o.once.Do(func() { o.v, o.err = fn() })
	v, _ := o.v.(T)
	return v, o.err
}

// Prefetch starts reading every fact at once, so the slow reads (every
// pod, every node) overlap instead of queueing behind one another; checks
// then find them cached. Errors are kept for the checks to report.
func (e *Env) Prefetch(ctx context.Context) {
	for _, read := range []func(context.Context){
		func(ctx context.Context) { _, _ = e.Pods(ctx) },
		func(ctx context.Context) { _, _ = e.Nodes(ctx) },
		func(ctx context.Context) { _, _ = e.Managed(ctx) },
		func(ctx context.Context) { _, _ = e.Profile(ctx) },
		func(ctx context.Context) { _, _ = e.Istiods(ctx) },
		func(ctx context.Context) { _, _ = e.Webhooks(ctx) },
		func(ctx context.Context) { _, _ = e.Namespaces(ctx) },
		func(ctx context.Context) { _, _ = e.Workloads(ctx) },
	} {
		go read(ctx)
	}
}

// Managed is the managed cluster as ARM shows it (nil without ARM).
func (e *Env) Managed(ctx context.Context) (*azure.Cluster, error) {
	if e.ARM == nil {
		return nil, nil
	}
	return load(e, "managed", func() (*azure.Cluster, error) { return e.ARM.GetCluster(ctx) })
}

// ServerVersion is the API server's gitVersion, or ARM's kubernetesVersion.
func (e *Env) ServerVersion(ctx context.Context) (string, error) {
	if e.ARM != nil {
		c, err := e.Managed(ctx)
		if err != nil {
			return "", err
		}
		return c.KubernetesVersion, nil
	}
	return load(e, "version", func() (string, error) {
		v, err := e.Kube.Discovery().ServerVersion()
		if err != nil {
			return "", err
		}
		return v.GitVersion, nil
	})
}

// Profile is the MeshProfile, or nil on a cluster without the add-on (or
// with no cluster client, as when only ARM is asked).
func (e *Env) Profile(ctx context.Context) (*v1alpha1.MeshProfile, error) {
	if e.Client == nil {
		return nil, nil
	}
	return load(e, "profile", func() (*v1alpha1.MeshProfile, error) { return e.readProfile(ctx) })
}

// readProfile reads the MeshProfile now (nil when there is none).
func (e *Env) readProfile(ctx context.Context) (*v1alpha1.MeshProfile, error) {
	var p v1alpha1.MeshProfile
	err := e.Client.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p)
	if meta404(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// meta404 is true when the object or the meshaddon.dev API is not there.
func meta404(err error) bool {
	return err != nil && (apierrors.IsNotFound(err) || meta.IsNoMatchError(err))
}

// ActivePolicy is the policy the cluster's manager reports, else e.Policy.
func (e *Env) ActivePolicy(ctx context.Context) meshversion.Policy {
	if p, _ := e.Profile(ctx); p != nil && p.Status.Policy != "" {
		if pol, err := meshversion.LookupPolicy(p.Status.Policy); err == nil {
			return pol
		}
	}
	return e.Policy
}

// Feature is the FeatureRegistration of name, or nil.
func (e *Env) Feature(ctx context.Context, name string) (*v1alpha1.FeatureRegistration, error) {
	return load(e, "feature/"+name, func() (*v1alpha1.FeatureRegistration, error) {
		var fr v1alpha1.FeatureRegistration
		err := e.Client.Get(ctx, client.ObjectKey{Name: v1alpha1.FeatureObjectName(name)}, &fr)
		if meta404(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return &fr, nil
	})
}

// Nodes lists every node, in pages; with ARM, each agent pool's nodes at
// the pool's version.
func (e *Env) Nodes(ctx context.Context) ([]meshversion.Node, error) {
	if e.ARM != nil {
		c, err := e.Managed(ctx)
		if err != nil {
			return nil, err
		}
		return c.Nodes(), nil
	}
	// From the one list of node objects the resource check reads too.
	return load(e, "nodes", func() ([]meshversion.Node, error) {
		objs, err := e.NodeObjects(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]meshversion.Node, len(objs))
		for i := range objs {
			out[i] = meshversion.NodeOf(&objs[i])
		}
		return out, nil
	})
}

// Istiods are the istiod Deployments, by revision.
func (e *Env) Istiods(ctx context.Context) (map[string]*appsv1.Deployment, error) {
	return load(e, factIstiods, func() (map[string]*appsv1.Deployment, error) {
		list, err := e.Kube.AppsV1().Deployments(e.MeshNamespace).List(ctx, metav1.ListOptions{LabelSelector: istiod.Label})
		if err != nil {
			return nil, err
		}
		out := map[string]*appsv1.Deployment{}
		for i := range list.Items {
			d := &list.Items[i]
			out[meshdiscovery.RevisionOf(d.Labels)] = d
		}
		return out, nil
	})
}

// Revisions are ARM's serviceMeshProfile revisions, else the MeshProfile's,
// else the installed istiods'.
func (e *Env) Revisions(ctx context.Context) ([]string, error) {
	if e.ARM != nil {
		c, err := e.Managed(ctx)
		if err != nil {
			return nil, err
		}
		return c.Revisions, nil
	}
	p, err := e.Profile(ctx)
	if err != nil {
		return nil, err
	}
	if p != nil && len(p.Spec.Revisions) > 0 {
		return p.Spec.Revisions, nil
	}
	ds, err := e.Istiods(ctx)
	if err != nil {
		return nil, err
	}
	var revs []string
	for r := range ds {
		revs = append(revs, r)
	}
	sort.Strings(revs)
	return revs, nil
}

// meshScope resolves which revision injects a namespace's pods, the one
// rule precheck uses for what is in the mesh: meshdiscovery's, as Istio's
// injector webhooks select (istio-injection=enabled, istio.io/rev naming a
// revision or a tag, the pod's own istio.io/rev and sidecar.istio.io/inject,
// with Istio's precedence), never a label match of precheck's own.
type meshScope struct {
	mesh *meshdiscovery.Mesh
	// revisions are those precheck judges (Env.Revisions).
	revisions []string
	// nsLabels are the labels of every namespace that takes new pods (not
	// terminating: a probe there would be refused for that alone), but
	// istiod's own.
	nsLabels map[string]map[string]string
}

// revision is the judged revision that injects a pod with podLabels in ns,
// and false when none does (not injected, or by a revision precheck does
// not judge). A tag answers for its revision; a revision the cluster lists
// (MeshProfile, ARM) whose istiod is not there yet answers by its name.
func (s *meshScope) revision(ns string, podLabels map[string]string) (string, bool) {
	nsl, ok := s.nsLabels[ns]
	if !ok {
		return "", false
	}
	t := s.mesh.ResolvePod(nsl, podLabels)
	if !t.Injected {
		return "", false
	}
	rev := t.Revision
	if rev == "" {
		rev = t.Name
	}
	return rev, slices.Contains(s.revisions, rev)
}

// namespaceRevision is the revision injecting pods without injection
// labels of their own in ns.
func (s *meshScope) namespaceRevision(ns string) (string, bool) {
	return s.revision(ns, nil)
}

// meshScope reads the mesh, the judged revisions and the namespaces once.
func (e *Env) meshScope(ctx context.Context) (*meshScope, error) {
	return load(e, "meshscope", func() (*meshScope, error) {
		m, err := e.Mesh(ctx)
		if err != nil {
			return nil, err
		}
		revs, err := e.Revisions(ctx)
		if err != nil {
			return nil, err
		}
		nss, err := e.Namespaces(ctx)
		if err != nil {
			return nil, err
		}
		s := &meshScope{mesh: m, revisions: revs, nsLabels: map[string]map[string]string{}}
		// istiod's namespaces are the control plane's, which migrate leaves
		// alone (as it does in namespaceLabels): with enableNamespacesByDefault
		// they would resolve to a revision like any unlabelled namespace.
		own := map[string]bool{}
		for _, ns := range m.Namespaces() {
			own[ns] = true
		}
		for _, ns := range nss {
			if ns.Status.Phase != corev1.NamespaceTerminating && !own[ns.Name] {
				s.nsLabels[ns.Name] = ns.Labels
			}
		}
		return s, nil
	})
}

// noMeshNamespace is the skip when nothing is injected by a judged revision.
const noMeshNamespace = "no namespace or workload is injected by a mesh revision (" + meshdiscovery.InjectionLabel + "=enabled, " +
	meshdiscovery.RevisionLabel + " naming a revision or tag, or " + meshdiscovery.InjectLabel + "=true on the pod)"

// Webhooks are every mutating webhook configuration.
func (e *Env) Webhooks(ctx context.Context) ([]admissionv1.MutatingWebhookConfiguration, error) {
	return load(e, factWebhooks, func() ([]admissionv1.MutatingWebhookConfiguration, error) {
		list, err := e.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return list.Items, nil
	})
}

// Namespaces lists namespaces' names and labels.
func (e *Env) Namespaces(ctx context.Context) ([]corev1.Namespace, error) {
	return load(e, "namespaces", func() ([]corev1.Namespace, error) {
		list, err := e.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return list.Items, nil
	})
}

// PodCounts are the cluster's pods counted by injection, and how.
type PodCounts struct {
	v1alpha1.PodCensus
	// Source says where the counts come from: the add-on manager's census
	// and its age, or a listing by precheck and why.
	Source string
}

// podListers is how many namespaces' pods are listed at once.
const podListers = 4

// CensusMaxAge is how old the manager's census may be for precheck to use
// it: a manager that runs confirms it every CensusHeartbeat.
const CensusMaxAge = 4 * v1alpha1.CensusHeartbeat

// Pods counts every pod by injection. It reads the add-on manager's census
// when the manager keeps a current one (a 50,000-pod cluster in one GET and
// one short watch, see census), else lists the pods in pages keeping only
// counts: as metadata, several namespaces at a time, when Metadata is set;
// else whole pods. ListPods always lists.
func (e *Env) Pods(ctx context.Context) (*PodCounts, error) {
	return load(e, "pods", func() (*PodCounts, error) {
		why := "asked to list them"
		if !e.ListPods {
			var pc *PodCounts
			if pc, why = e.census(ctx); pc != nil {
				return pc, nil
			}
		}
		c := inventory.NewCensus()
		add := func(rows []inventory.Pod) error { c.Add(rows); return nil }
		var err error
		if e.Metadata != nil {
			var nss []corev1.Namespace
			if nss, err = e.Namespaces(ctx); err != nil {
				return nil, err
			}
			names := make([]string, len(nss))
			for i := range nss {
				names[i] = nss[i].Name
			}
			err = inventory.EachMetadataPage(ctx, e.Metadata, names, 1000, podListers, add)
		} else {
			err = inventory.EachPage(ctx, e.Kube, inventory.ListOptions{PageSize: 1000}, add)
		}
		if err != nil {
			return nil, err
		}
		jobs, err := inventory.JobOwners(ctx, e.Kube, "")
		if err != nil {
			return nil, err
		}
		return &PodCounts{PodCensus: c.Result(jobs, time.Now()), Source: "listed by precheck: " + why}, nil
	})
}
