package inventory

import (
	"encoding/json"
	"slices"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
)

// Census counts pod rows into a v1alpha1.PodCensus: the add-on manager
// keeps one from its pod cache, and precheck builds one by listing pods
// when no manager keeps it. Both count the same way through this.
type Census struct {
	total, none int
	byRevision  map[string]*v1alpha1.RevisionPods
	overrides   []string
	// classicJobs are the Jobs with classic pods (a Job's pods are the
	// only ones a CronJob has).
	classicJobs map[Workload]bool
}

// NewCensus returns an empty Census.
func NewCensus() *Census {
	return &Census{byRevision: map[string]*v1alpha1.RevisionPods{}, classicJobs: map[Workload]bool{}}
}

// Add counts a page of pods.
func (c *Census) Add(rows []Pod) {
	for _, r := range rows {
		c.total++
		if r.Override != "" {
			c.overrides = append(c.overrides, r.Namespace+"/"+r.Name+"="+r.Override)
		}
		if r.Mode == None {
			c.none++
			continue
		}
		rp := c.byRevision[r.Revision]
		if rp == nil {
			rp = &v1alpha1.RevisionPods{Name: r.Revision}
			c.byRevision[r.Revision] = rp
		}
		if r.Mode == Native {
			rp.Native++
		} else {
			rp.Classic++
			if r.Owner.Kind == "Job" {
				c.classicJobs[r.Owner] = true
			}
		}
	}
}

// Result is the census as of now; jobOwners (from JobOwners or
// AddCronJobOf) folds Jobs into their CronJobs.
func (c *Census) Result(jobOwners map[Workload]Workload, now time.Time) v1alpha1.PodCensus {
	out := v1alpha1.PodCensus{
		ObservedTime: metav1.NewTime(now.UTC().Truncate(time.Second)),
		Total:        int32(c.total),
		NotInjected:  int32(c.none),
	}
	for _, rp := range c.byRevision {
		out.Revisions = append(out.Revisions, *rp)
	}
	sort.Slice(out.Revisions, func(i, j int) bool { return out.Revisions[i].Name < out.Revisions[j].Name })
	seen := map[Workload]bool{}
	var jobs []string
	for j := range c.classicJobs {
		if cj, ok := jobOwners[j]; ok {
			j = cj
		}
		if !seen[j] {
			seen[j] = true
			jobs = append(jobs, j.Namespace+"/"+j.String())
		}
	}
	sort.Strings(jobs)
	sort.Strings(c.overrides)
	out.Overrides, out.OverrideCount = firstOf(c.overrides)
	out.ClassicJobs, out.ClassicJobCount = firstOf(jobs)
	return out
}

// firstOf keeps the first CensusListMax of a sorted list and counts all.
func firstOf(items []string) ([]string, int32) {
	return slices.Clone(items[:min(len(items), v1alpha1.CensusListMax)]), int32(len(items))
}

// SlimPodMetadata is a cache transform for pod metadata: it keeps what
// ClassifyMetadata reads — name, namespace, the controller reference, the
// pod-template-hash and istio.io/rev labels, the override annotation and
// the injector's status annotation cut down to istio-proxy and the
// revision — so a cache of every pod of a big cluster stays small.
func SlimPodMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	slim := slimMetadata(m)
	slim.Labels = keep(m.Labels, "pod-template-hash", RevisionLabel)
	slim.Annotations = keep(m.Annotations, NativeSidecarOverride)
	if st := slimStatus(m.Annotations[StatusAnnotation]); st != "" {
		if slim.Annotations == nil {
			slim.Annotations = map[string]string{}
		}
		slim.Annotations[StatusAnnotation] = st
	}
	return slim, nil
}

// SlimJobMetadata is the cache transform for Job metadata: a Job's name
// and its controller (a CronJob, for AddCronJobOf).
func SlimJobMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return slimMetadata(m), nil
}

// slimMetadata keeps an object's identity and its controller reference.
func slimMetadata(m *metav1.PartialObjectMetadata) *metav1.PartialObjectMetadata {
	slim := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
	}}
	if ref := metav1.GetControllerOf(m); ref != nil {
		slim.OwnerReferences = []metav1.OwnerReference{{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID, Controller: ref.Controller}}
	}
	return slim
}

// keep returns the entries of m under keys, or nil when there are none.
func keep(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// slimStatus re-encodes the injector's status annotation with only what
// ClassifyMetadata reads; "" when there is none to read.
func slimStatus(annotation string) string {
	st, ok := parseStatus(annotation)
	if !ok {
		return ""
	}
	proxyOnly := func(names []string) []string {
		if slices.Contains(names, ProxyContainer) {
			return []string{ProxyContainer}
		}
		return nil
	}
	st.InitContainers, st.Containers = proxyOnly(st.InitContainers), proxyOnly(st.Containers)
	b, err := json.Marshal(st)
	if err != nil {
		return ""
	}
	return string(b)
}
