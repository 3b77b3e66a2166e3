package bench

// Issue 14: the cost of migrate's PodDisruptionBudget gating. On one
// test-bed cluster whose pods take 2 s to start, N Deployments × 2 replicas
// migrated without PDBs, and N more with a PDB over every 10 of them
// (minAvailable 19 of their 20 pods: one restart per 10 at a time), both
// under the same surge budget. Targets: the gated run still at least 5×
// faster than the naive loop (bounded below here by N × one rollout alone,
// which the loop cannot beat), and its cost against the run without PDBs
// stated.
//
// Knobs: MESHADDON_BENCH_MIGRATE_DEPLOYMENTS=N (default 500),
// MESHADDON_BENCH_MIGRATE_CONCURRENCY=C (default 50),
// MESHADDON_BENCH_MIGRATE_SURGE=B (--max-surge-pods, default 50).

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
)

const (
	pdbCluster = "pdbbench"
	plainNS    = "plain"
	gatedNS    = "gated"
	// pdbGroup Deployments share one PDB.
	pdbGroup = 10
)

func TestMigratePDBCost(t *testing.T) {
	requireBench(t)
	n := envInt(t, "MESHADDON_BENCH_MIGRATE_DEPLOYMENTS", 500)
	conc := envInt(t, "MESHADDON_BENCH_MIGRATE_CONCURRENCY", 50)
	budget := envInt(t, "MESHADDON_BENCH_MIGRATE_SURGE", 50)

	took := upCluster(t, pdbCluster, "--pool", "system="+currentVersion+":20", "--revision", migrateRevision, "--pod-start-delay", podStartDelay)
	t.Logf("local up (20 nodes, pod start delay %s) took %s", podStartDelay, took.Round(time.Millisecond))
	kcfg := kubeconfigOf(pdbCluster)
	cfg := restConfig(t, pdbCluster)
	kc := fastClient(t, cfg)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{plainNS: n, gatedNS: n, singleNS: singleRuns}
	for ns := range counts {
		createNamespace(t, kc, ns, map[string]string{mesh.RevisionLabel: migrateRevision})
	}
	createDeployments(t, kc, counts)
	for g := 0; g*pdbGroup < n; g++ {
		var apps []string
		for i := g * pdbGroup; i < min(n, (g+1)*pdbGroup); i++ {
			apps = append(apps, deploymentName(i))
		}
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("group-%03d", g), Namespace: gatedNS},
			Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: ptr.To(intstr.FromInt(len(apps)*migrateReplicas - 1)),
				Selector:     &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: apps}}},
			}}
		if _, err := kc.PolicyV1().PodDisruptionBudgets(gatedNS).Create(context.Background(), pdb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for ns, c := range counts {
		waitDeploymentsRolledOut(t, kc, ns, c, 20*time.Minute)
	}
	setMode(t, clients.Client, "Enabled")
	waitFor(t, 3*time.Minute, "istiod injects native in "+gatedNS, func(ctx context.Context) (bool, string) {
		got, err := kc.CoreV1().Pods(gatedNS).Create(ctx, benchPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error()
		}
		return inventory.ModeOf(&got.Spec) == inventory.Native, "init containers [" + containerNames(got.Spec.InitContainers) + "]"
	})
	var singles []time.Duration
	for i := 0; i < singleRuns; i++ {
		singles = append(singles, timeSingleRollout(t, kc, singleNS, deploymentName(i)))
	}
	single := median(singles)

	run := func(ns string) time.Duration {
		t.Helper()
		r := mustMeshaddon(t, "migrate", "-n", ns, "--concurrency", strconv.Itoa(conc), "--max-surge-pods", strconv.Itoa(budget), "--skip-precheck", "--kubeconfig", kcfg)
		_, outcomes := migrateTable(t, r.stdout)
		if outcomes["migrated"] != n {
			t.Errorf("%s: %d migrated, want %d:\n%s", ns, outcomes["migrated"], n, lastLines(r.stdout, 10))
		}
		if m := livePodModes(t, kc, ns); m[inventory.Native] != n*migrateReplicas || len(m) != 1 {
			t.Errorf("%s after migrate: %v", ns, m)
		}
		t.Logf("migrate -n %s: %d Deployments, concurrency %d, --max-surge-pods %d: %s", ns, n, conc, budget, r.took.Round(time.Millisecond))
		return r.took
	}
	plain := run(plainNS)
	gated := run(gatedNS)
	loopFloor := time.Duration(n) * single
	reportDuration(t, "migrate_pdb.single_rollout", single, "s", target{text: fmt.Sprintf("— (median of %d)", singleRuns)})
	reportDuration(t, "migrate_pdb.plain.wall", plain, "s", target{text: fmt.Sprintf("— (%d Deployments, no PDB)", n)})
	reportDuration(t, "migrate_pdb.gated.wall", gated, "s", target{text: fmt.Sprintf("— (a PDB per %d Deployments)", pdbGroup)})
	reportRatio(t, "migrate_pdb.gating_cost", "gated.wall / plain.wall", float64(gated)/float64(plain), atMost(float64(pdbGroup)))
	reportRatio(t, "migrate_pdb.speedup", "N × single_rollout (the loop's floor) / gated.wall", float64(loopFloor)/float64(gated), atLeast(5))
}
