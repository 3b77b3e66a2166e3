package migrate

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshaddon/meshaddon/internal/inventory"
)

func restart(ns, name string, surge int32, pdbs ...string) *Item {
	return &Item{WorkloadSummary: inventory.WorkloadSummary{Workload: inventory.Workload{Kind: "Deployment", Namespace: ns, Name: name}},
		Action: ActionRestart, Replicas: 2, Surge: surge, PDBs: pdbs,
		PodRequests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
}

func pdb(name string, allowed, healthy, expected int32) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
		Status: policyv1.PodDisruptionBudgetStatus{ObservedGeneration: 1, DisruptionsAllowed: allowed, CurrentHealthy: healthy, ExpectedPods: expected, DesiredHealthy: expected - 1}}
}

func TestGates(t *testing.T) {
	now := time.Now()
	t.Run("one restart per PDB", func(t *testing.T) {
		g := newGates(10, 100, false)
		g.pdbs["shop"] = map[string]*policyv1.PodDisruptionBudget{"web": pdb("web", 1, 4, 4)}
		a, b, c := restart("shop", "a", 1, "web"), restart("shop", "b", 1, "web"), restart("shop", "c", 1)
		if v := g.admit(a, now); !v.OK {
			t.Fatalf("a: %+v", v)
		}
		g.start(a)
		if v := g.admit(b, now); v.OK || v.Reason != WaitPDB || !strings.Contains(v.Detail, "another restart under it") {
			t.Errorf("b under the same PDB as running a: %+v", v)
		}
		if v := g.admit(c, now); !v.OK {
			t.Errorf("c under no PDB: %+v", v)
		}
		g.end(a, now)
		if v := g.admit(b, now); !v.OK {
			t.Errorf("b after a ended: %+v", v)
		}
		// --ignore-pdb: no PDB gate.
		g = newGates(10, 100, true)
		g.start(a)
		if v := g.admit(b, now); !v.OK {
			t.Errorf("--ignore-pdb: %+v", v)
		}
	})
	t.Run("PDB status", func(t *testing.T) {
		for _, c := range []struct {
			name string
			pdb  *policyv1.PodDisruptionBudget
			want string
		}{
			{"allows one, all healthy", pdb("web", 1, 4, 4), ""},
			{"allows none", pdb("web", 0, 3, 4), "allows no disruption now (3 of 4 pods healthy, 3 required)"},
			{"allows one but a pod not Ready", func() *policyv1.PodDisruptionBudget { p := pdb("web", 1, 4, 5); p.Status.DesiredHealthy = 3; return p }(), "1 of its 5 pods are not Ready"},
			{"status not current", func() *policyv1.PodDisruptionBudget { p := pdb("web", 1, 4, 4); p.Generation = 2; return p }(), "its status is not current yet"},
		} {
			g := newGates(10, 100, false)
			g.pdbs["shop"] = map[string]*policyv1.PodDisruptionBudget{"web": c.pdb}
			v := g.admit(restart("shop", "a", 1, "web"), now)
			if c.want == "" && !v.OK || c.want != "" && (v.OK || !strings.HasSuffix(v.Detail, c.want)) {
				t.Errorf("%s: %+v, want %q", c.name, v, c.want)
			}
		}
	})
	t.Run("surge budget", func(t *testing.T) {
		g := newGates(10, 4, false)
		var started []*Item
		for _, name := range []string{"a", "b", "c", "d", "e"} {
			it := restart("shop", name, 1)
			if g.admit(it, now).OK {
				g.start(it)
				started = append(started, it)
			} else if v := g.admit(it, now); v.Reason != WaitBudget {
				t.Errorf("%s: %+v", name, v)
			}
		}
		if len(started) != 4 || g.surge != 4 {
			t.Fatalf("started %d, surge %d; want 4 within a budget of 4", len(started), g.surge)
		}
		// Bigger than the whole budget: waits while anything runs, then
		// runs alone.
		big := restart("shop", "big", 9)
		if v := g.admit(big, now); v.OK {
			t.Errorf("big while others run: %+v", v)
		}
		for _, it := range started {
			g.end(it, now)
		}
		if v := g.admit(big, now); !v.OK {
			t.Errorf("big alone: %+v", v)
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		g := newGates(1, 100, false)
		g.start(restart("shop", "a", 0))
		if v := g.admit(restart("shop", "b", 0), now); v.Reason != WaitConcurrency {
			t.Errorf("%+v", v)
		}
	})
	t.Run("quota", func(t *testing.T) {
		q := corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "room-for-one"},
			Spec:   corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("5")}},
			Status: corev1.ResourceQuotaStatus{Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("4")}}}
		g := newGates(10, 100, false)
		g.quotas["shop"] = []corev1.ResourceQuota{q}
		a, b := restart("shop", "a", 1), restart("shop", "b", 1)
		if v := g.admit(a, now); !v.OK {
			t.Fatalf("a: %+v", v)
		}
		g.start(a)
		// The quota's status does not count a's surge pod yet: the
		// reservation does.
		v := g.admit(b, now)
		if v.OK || v.Reason != WaitQuota || v.Never || !strings.Contains(v.Detail, "ResourceQuota room-for-one") {
			t.Errorf("b while a runs: %+v, want a wait for quota", v)
		}
		g.end(a, now)
		if v := g.admit(b, now); !v.OK {
			t.Errorf("b after a: %+v", v)
		}
		// No room and nothing running there: never.
		full := q.DeepCopy()
		full.Status.Used[corev1.ResourcePods] = resource.MustParse("5")
		g = newGates(10, 100, false)
		g.quotas["shop"] = []corev1.ResourceQuota{*full}
		v = g.admit(b, now)
		if !v.Never || !strings.Contains(v.Detail, "ResourceQuota room-for-one has no room for its surge of 1 pod(s): it needs pods 1, the quota has pods 0 left (hard − used), short of pods 1") {
			t.Errorf("no room: %+v", v)
		}
		// …but not final while a restart there ended a moment ago (its
		// old pods may still count).
		g.endedIn["shop"] = now.Add(-time.Second)
		if v := g.admit(b, now); v.Never {
			t.Errorf("right after a restart there: %+v", v)
		}
		// Surge 0 (a StatefulSet) needs no room.
		if v := g.admit(restart("shop", "db", 0), now); !v.OK {
			t.Errorf("no surge: %+v", v)
		}
	})
}

func TestScheduleWavesAndCanary(t *testing.T) {
	p := &Plan{SurgeBudget: 2}
	for _, it := range []*Item{
		restart("shop", "a", 1, "web"), restart("shop", "b", 1, "web"), restart("shop", "c", 1),
		restart("shop", "d", 1), restart("shop", "huge", 5),
	} {
		p.Items = append(p.Items, *it)
	}
	p.Items[3].Replicas = 1 // the smallest
	p.Items[2].labels = map[string]string{"tier": "canary"}
	if n := p.PickCanary(1, nil); n != 1 || !p.Items[3].Canary {
		t.Fatalf("canary of 1: %d, %+v", n, p.Items[3])
	}
	p.Schedule(10)
	wave := map[string]int{}
	for _, it := range p.Items {
		wave[it.Name] = it.Wave
	}
	// d alone (the canary), then a and c (b shares a's PDB; the budget
	// of 2 holds two), then b, then huge alone, above the budget.
	want := map[string]int{"d": 1, "a": 2, "c": 2, "b": 3, "huge": 4}
	for name, w := range want {
		if wave[name] != w {
			t.Errorf("%s in wave %d, want %d (all: %v)", name, wave[name], w, wave)
		}
	}
	if notes := p.Items[4].Notes; len(notes) != 1 || !strings.Contains(notes[0], "above the whole surge budget of 2: it runs alone") {
		t.Errorf("huge: notes %q", notes)
	}
	if s := p.String(); !strings.Contains(s, "restart shop/Deployment/a (0 classic pods) [wave 2, surge 1, PDB web]") || !strings.Contains(s, "surge budget: 2") {
		t.Errorf("plan:\n%s", s)
	}
	for i := range p.Items {
		p.Items[i].Canary = false
	}
	sel, _ := labels.Parse("tier=canary")
	if n := p.PickCanary(0, sel); n != 1 || !p.Items[2].Canary {
		t.Errorf("--canary-selector: %d", n)
	}
}

func TestUnderPDBs(t *testing.T) {
	front := policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "front", Namespace: "shop"},
		Spec:   policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}}},
		Status: policyv1.PodDisruptionBudgetStatus{ObservedGeneration: 1, ExpectedPods: 4, DesiredHealthy: 3}}
	invalid := policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "broken", Namespace: "shop"},
		Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "In"}}}}}
	everything := policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "all"}, Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{}}}
	nothing := policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "none"}}
	other := policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "back"}, Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "back"}}}}

	it := restart("shop", "web", 1)
	it.podLabels, it.MaxUnavailable = map[string]string{"app": "web", "tier": "front"}, 2
	it.underPDBs([]policyv1.PodDisruptionBudget{front, invalid, everything, nothing, other})
	if strings.Join(it.PDBs, ",") != "front,all" {
		t.Errorf("PDBs %v, want front and the empty selector's", it.PDBs)
	}
	if len(it.Notes) != 2 || !strings.Contains(it.Notes[1], "PodDisruptionBudget broken has an invalid selector") ||
		!strings.Contains(it.Notes[0], "take down 2 pod(s) at once (maxUnavailable), more than the 1 PodDisruptionBudget front allows") {
		t.Errorf("notes %q", it.Notes)
	}
}
