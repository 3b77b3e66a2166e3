package inventory

import (
	"context"
	"sort"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// WorkloadSummary counts one workload's pods by mode: the list `migrate`
// works from.
type WorkloadSummary struct {
	Workload
	Native    int      `json:"native"`
	Classic   int      `json:"classic"`
	None      int      `json:"none"`
	Revisions []string `json:"revisions,omitempty"`
}

// Summarizer groups pod rows by owning workload as pages arrive; it keeps
// one small record per workload, not the pods.
type Summarizer struct {
	byOwner map[Workload]*WorkloadSummary
	revs    map[Workload]map[string]bool
}

// NewSummarizer returns an empty Summarizer.
func NewSummarizer() *Summarizer {
	return &Summarizer{byOwner: map[Workload]*WorkloadSummary{}, revs: map[Workload]map[string]bool{}}
}

// Add counts a page of pods.
func (s *Summarizer) Add(rows []Pod) {
	for _, r := range rows {
		w := s.byOwner[r.Owner]
		if w == nil {
			w = &WorkloadSummary{Workload: r.Owner}
			s.byOwner[r.Owner] = w
			s.revs[r.Owner] = map[string]bool{}
		}
		switch r.Mode {
		case Native:
			w.Native++
		case Classic:
			w.Classic++
		default:
			w.None++
		}
		if r.Revision != "" {
			s.revs[r.Owner][r.Revision] = true
		}
	}
}

// Workloads returns the summaries sorted by namespace, kind and name, with
// Jobs owned by a CronJob folded into it (jobOwners from JobOwners; nil
// leaves Jobs as they are).
func (s *Summarizer) Workloads(jobOwners map[Workload]Workload) []WorkloadSummary {
	merged := map[Workload]*WorkloadSummary{}
	revs := map[Workload]map[string]bool{}
	for owner, w := range s.byOwner {
		key := owner
		if cj, ok := jobOwners[owner]; ok {
			key = cj
		}
		m := merged[key]
		if m == nil {
			m = &WorkloadSummary{Workload: key}
			merged[key] = m
			revs[key] = map[string]bool{}
		}
		m.Native += w.Native
		m.Classic += w.Classic
		m.None += w.None
		for r := range s.revs[owner] {
			revs[key][r] = true
		}
	}
	out := make([]WorkloadSummary, 0, len(merged))
	for key, m := range merged {
		for r := range revs[key] {
			m.Revisions = append(m.Revisions, r)
		}
		sort.Strings(m.Revisions)
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return out
}

// JobOwners maps each Job owned by a CronJob to that CronJob, reading Jobs
// in pages (namespace "" for all).
func JobOwners(ctx context.Context, kube kubernetes.Interface, namespace string) (map[Workload]Workload, error) {
	out := map[Workload]Workload{}
	err := EachListPage(ctx, metav1.ListOptions{Limit: 500}, kube.BatchV1().Jobs(namespace).List, func(list *batchv1.JobList) error {
		for i := range list.Items {
			AddCronJobOf(out, &list.Items[i])
		}
		return nil
	})
	return out, err
}

// AddCronJobOf records the CronJob that owns job, if one does.
func AddCronJobOf(owners map[Workload]Workload, job metav1.Object) {
	if ref := metav1.GetControllerOf(job); ref != nil && ref.Kind == "CronJob" {
		owners[Workload{Kind: "Job", Namespace: job.GetNamespace(), Name: job.GetName()}] = Workload{Kind: "CronJob", Namespace: job.GetNamespace(), Name: ref.Name}
	}
}
