package migrate

// The scheduler's gates, as pure functions over what the run knows: a
// restart starts only when (a) there is a free slot of --concurrency, (b)
// no running restart shares a PodDisruptionBudget with it, (c) each of its
// PDBs allows a disruption and has all its pods healthy, (d) its surge fits
// what is left of the surge budget (or nothing runs: a restart bigger than
// the whole budget runs alone rather than never), and (e) its surge fits
// its namespace's ResourceQuotas, counting the surge of the restarts
// running there.

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshaddon/meshaddon/internal/capacity"
)

// Why a restart waits.
const (
	WaitConcurrency = "concurrency"
	WaitPDB         = "PDB"
	WaitBudget      = "budget"
	WaitQuota       = "quota"
)

// quotaSettle is how long after a restart in a namespace ends its old pods
// may still count in the namespace's quota (terminating pods count until
// their grace period, 30 s by default, is over): a shortfall is only
// final when nothing of the run ran there for this long.
const quotaSettle = 30 * time.Second

// gates is what the scheduler knows while it runs.
type gates struct {
	concurrency int
	budget      int32
	ignorePDB   bool

	running int
	surge   int32 // the surge of the running restarts
	// busy are the PDBs ("ns/name") a running restart is under.
	busy map[string]bool
	// pdbs and quotas are the last status read, per namespace; a
	// namespace not read yet has no entry.
	pdbs   map[string]map[string]*policyv1.PodDisruptionBudget
	quotas map[string][]corev1.ResourceQuota
	// inNS counts the running restarts of each namespace; endedIn is when
	// the last one there ended.
	inNS    map[string]int
	endedIn map[string]time.Time
	// reserved is, per namespace, the quota usage ("requests.cpu", "pods"
	// …) of the running restarts' surges, which the quota's status may not
	// count yet.
	reserved map[string][]*Item
}

func newGates(concurrency int, budget int32, ignorePDB bool) *gates {
	return &gates{concurrency: max(1, concurrency), budget: budget, ignorePDB: ignorePDB,
		busy: map[string]bool{}, pdbs: map[string]map[string]*policyv1.PodDisruptionBudget{},
		quotas: map[string][]corev1.ResourceQuota{}, inNS: map[string]int{}, endedIn: map[string]time.Time{},
		reserved: map[string][]*Item{}}
}

// verdict is a gate's answer: ok, or why not (Reason is one of the Wait
// constants, Detail says what it waits on). Never: the quota can never
// hold it, so it fails.
type verdict struct {
	OK     bool
	Reason string
	Detail string
	Never  bool
}

// admit tells whether it may start now.
func (g *gates) admit(it *Item, now time.Time) verdict {
	if g.running >= g.concurrency {
		return verdict{Reason: WaitConcurrency, Detail: fmt.Sprintf("%d restarts running (--concurrency)", g.running)}
	}
	if !g.ignorePDB {
		for _, name := range it.PDBs {
			if g.busy[it.Namespace+"/"+name] {
				return verdict{Reason: WaitPDB, Detail: fmt.Sprintf("PodDisruptionBudget %s: another restart under it is running", name)}
			}
		}
		for _, name := range it.PDBs {
			pdb := g.pdbs[it.Namespace][name]
			if pdb == nil {
				continue // deleted since the plan: no longer a gate
			}
			if why := pdbBlocks(pdb); why != "" {
				return verdict{Reason: WaitPDB, Detail: fmt.Sprintf("PodDisruptionBudget %s: %s", name, why)}
			}
		}
	}
	if g.running > 0 && g.surge+it.Surge > g.budget {
		return verdict{Reason: WaitBudget, Detail: fmt.Sprintf("its surge of %d pod(s) does not fit the %d left of the surge budget of %d", it.Surge, g.budget-g.surge, g.budget)}
	}
	for i := range g.quotas[it.Namespace] {
		q := &g.quotas[it.Namespace][i]
		if need, room, short := g.quotaShort(q, it); len(short) > 0 {
			v := verdict{Reason: WaitQuota, Detail: fmt.Sprintf("ResourceQuota %s has no room for its surge of %d pod(s): it needs %s, the quota has %s left (hard − used), short of %s",
				q.Name, it.Surge, capacity.FormatList(need), capacity.FormatList(room), capacity.FormatList(short))}
			if g.inNS[it.Namespace] == 0 && now.Sub(g.endedIn[it.Namespace]) >= quotaSettle {
				v.Never = true
			} else {
				v.Detail += ", counting the surges of the restarts running there"
			}
			return v
		}
	}
	return verdict{OK: true}
}

// pdbBlocks says why a PDB allows no disruption now ("" if it allows one):
// its status must be current, allow a disruption, and count every pod it
// expects healthy.
func pdbBlocks(p *policyv1.PodDisruptionBudget) string {
	switch s := p.Status; {
	case s.ObservedGeneration < p.Generation:
		return "its status is not current yet"
	case s.DisruptionsAllowed < 1:
		return fmt.Sprintf("allows no disruption now (%d of %d pods healthy, %d required)", s.CurrentHealthy, s.ExpectedPods, s.DesiredHealthy)
	case s.CurrentHealthy < s.ExpectedPods:
		return fmt.Sprintf("%d of its %d pods are not Ready", s.ExpectedPods-s.CurrentHealthy, s.ExpectedPods)
	}
	return ""
}

// quotaShort is what q lacks for it's surge on top of the surges of the
// restarts running in its namespace (which q's status may not count yet),
// with what the surge needs and what is left.
func (g *gates) quotaShort(q *corev1.ResourceQuota, it *Item) (need, room, short corev1.ResourceList) {
	if it.Surge <= 0 {
		return nil, nil, nil
	}
	q = q.DeepCopy()
	if q.Status.Used == nil {
		q.Status.Used = corev1.ResourceList{}
	}
	for _, other := range g.reserved[it.Namespace] {
		n, _, _ := capacity.QuotaShortfall(q, other.Surge, other.PodRequests, other.podLimits)
		capacity.AddTimes(q.Status.Used, n, 1)
	}
	return capacity.QuotaShortfall(q, it.Surge, it.PodRequests, it.podLimits)
}

// start records that it started.
func (g *gates) start(it *Item) {
	g.running++
	g.surge += it.Surge
	g.inNS[it.Namespace]++
	g.reserved[it.Namespace] = append(g.reserved[it.Namespace], it)
	for _, name := range it.PDBs {
		g.busy[it.Namespace+"/"+name] = true
	}
}

// end records that it ended.
func (g *gates) end(it *Item, now time.Time) {
	g.running--
	g.surge -= it.Surge
	g.inNS[it.Namespace]--
	g.endedIn[it.Namespace] = now
	r := g.reserved[it.Namespace]
	for i := range r {
		if r[i] == it {
			g.reserved[it.Namespace] = append(r[:i:i], r[i+1:]...)
			break
		}
	}
	for _, name := range it.PDBs {
		delete(g.busy, it.Namespace+"/"+name)
	}
}

// Schedule assigns each restart its wave and notes what the plan must say
// of its PDBs, budget and quota: the waves the scheduler would run were
// every restart as long as every other and every PDB healthy; the canary
// runs in waves of its own, first.
func (p *Plan) Schedule(concurrency int) {
	var canary, rest []*Item
	for i := range p.Items {
		it := &p.Items[i]
		if it.Action != ActionRestart {
			continue
		}
		if it.Surge > p.SurgeBudget {
			it.Notes = append(it.Notes, fmt.Sprintf("its surge of %d pod(s) is above the whole surge budget of %d: it runs alone", it.Surge, p.SurgeBudget))
		}
		if it.Canary {
			canary = append(canary, it)
		} else {
			rest = append(rest, it)
		}
	}
	wave := 0
	for _, group := range [][]*Item{canary, rest} {
		for len(group) > 0 {
			wave++
			g := newGates(concurrency, p.SurgeBudget, p.IgnorePDB)
			var later []*Item
			for _, it := range group {
				if g.admit(it, time.Time{}).OK {
					g.start(it)
					it.Wave = wave
				} else {
					later = append(later, it)
				}
			}
			group = later
		}
	}
}

// PickCanary marks the canary: of the restarts that sel selects (by the
// workload's labels; nil for all), the n smallest by replicas × their pods'
// CPU, then memory, request (n ≤ 0: all those sel selects). It returns how
// many it marked.
func (p *Plan) PickCanary(n int, sel labels.Selector) int {
	var cand []*Item
	for i := range p.Items {
		it := &p.Items[i]
		if it.Action == ActionRestart && (sel == nil || sel.Matches(labels.Set(it.labels))) {
			cand = append(cand, it)
		}
	}
	sort.SliceStable(cand, func(i, j int) bool {
		ci, mi := cand[i].size()
		cj, mj := cand[j].size()
		if ci != cj {
			return ci < cj
		}
		if mi != mj {
			return mi < mj
		}
		return cand[i].Replicas < cand[j].Replicas
	})
	if n > 0 && n < len(cand) {
		cand = cand[:n]
	}
	for _, it := range cand {
		it.Canary = true
	}
	return len(cand)
}

// describe is the plan's line of facts for a restart.
func (it *Item) describe() string {
	var parts []string
	if it.Wave > 0 {
		parts = append(parts, fmt.Sprintf("wave %d", it.Wave))
	}
	if it.Canary {
		parts = append(parts, "canary")
	}
	parts = append(parts, fmt.Sprintf("surge %d", it.Surge))
	if len(it.PDBs) > 0 {
		parts = append(parts, "PDB "+strings.Join(it.PDBs, ","))
	}
	if len(it.Quotas) > 0 {
		parts = append(parts, "quota "+strings.Join(it.Quotas, ","))
	}
	return strings.Join(parts, ", ")
}
