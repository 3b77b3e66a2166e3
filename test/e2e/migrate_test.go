package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/migrate"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

func podTemplate(app string, nodeSelector map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeSelector: nodeSelector,
			Containers:   []corev1.Container{{Name: app, Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

func createStatefulSet(t *testing.T, kc kubernetes.Interface, ns, name string) {
	t.Helper()
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, map[string]string{nodepool.PoolLabel: systemPool})},
	}
	if _, err := kc.AppsV1().StatefulSets(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createDaemonSet(t *testing.T, kc kubernetes.Interface, ns, name string) {
	t.Helper()
	d := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, map[string]string{nodepool.PoolLabel: systemPool})},
	}
	if _, err := kc.AppsV1().DaemonSets(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createJob(t *testing.T, kc kubernetes.Interface, ns, name string) {
	t.Helper()
	// On the system pool: a later step upgrades the old pool, whose drain
	// would move the Job's pod (and leave a bare pod gone).
	tpl := podTemplate(name, map[string]string{nodepool.PoolLabel: systemPool})
	tpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: batchv1.JobSpec{Template: tpl}}
	if _, err := kc.BatchV1().Jobs(ns).Create(context.Background(), j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// generations maps each Deployment, StatefulSet and DaemonSet of ns to its
// metadata.generation: one restart adds exactly one.
func generations(t *testing.T, kc kubernetes.Interface, ns string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	out := map[string]int64{}
	ds, err := kc.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds.Items {
		out["Deployment/"+d.Name] = d.Generation
	}
	ss, _ := kc.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	for _, s := range ss.Items {
		out["StatefulSet/"+s.Name] = s.Generation
	}
	dss, _ := kc.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{})
	for _, d := range dss.Items {
		out["DaemonSet/"+d.Name] = d.Generation
	}
	return out
}

func checkRestartedOnce(t *testing.T, before, after map[string]int64) {
	t.Helper()
	for w, g := range before {
		if after[w] != g+1 {
			t.Errorf("%s: generation %d → %d, want exactly one restart", w, g, after[w])
		}
	}
}

// podModes counts the pods of ns by mode (pods being deleted left out).
func podModes(t *testing.T, kc kubernetes.Interface, ns string) map[inventory.Mode]int {
	t.Helper()
	pods, err := kc.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[inventory.Mode]int{}
	for i := range pods.Items {
		if pods.Items[i].DeletionTimestamp == nil {
			out[inventory.ModeOf(&pods.Items[i].Spec)]++
		}
	}
	return out
}

func waitAllRolledOut(t *testing.T, kc kubernetes.Interface, ns string) {
	t.Helper()
	waitFor(t, 3*time.Minute, "every workload of "+ns+" rolled out", func(ctx context.Context) (bool, string) {
		ds, err := kc.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, d := range ds.Items {
			if d.Status.AvailableReplicas != *d.Spec.Replicas {
				return false, "deployment " + d.Name
			}
		}
		ss, _ := kc.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		for _, s := range ss.Items {
			if s.Status.ReadyReplicas != *s.Spec.Replicas {
				return false, "statefulset " + s.Name
			}
		}
		dss, _ := kc.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{})
		for _, d := range dss.Items {
			if d.Status.NumberReady == 0 || d.Status.NumberReady != d.Status.DesiredNumberScheduled {
				return false, "daemonset " + d.Name
			}
		}
		return true, ""
	})
}

// TestMigrate: workloads created classic are restarted native, once each,
// in waves; a workload that cannot become ready stops the run; a run
// killed halfway resumes without restarting anything twice.
func TestMigrate(t *testing.T) {
	const cluster = "migrate"
	kc := upCluster(t, cluster, "--pool", "system="+currentVersion+":3", "--pool", oldPool+"="+oldVersion+":1",
		"--revision", "asm-1-27", "--pod-start-delay", "1s")
	cl := ctrlClientFor(t, cluster)
	kcfg := kubeconfigOf(t, cluster)
	onSystem := map[string]string{nodepool.PoolLabel: systemPool}

	// Everything is created while istiod injects classic (an old pool, Auto).
	for _, ns := range []string{"shop", "batch", "legacy", "outage", "restricted"} {
		createNamespace(t, kc, ns, "asm-1-27")
	}
	createDeployment(t, kc, "restricted", "web", 1, onSystem, nil)
	createStatefulSet(t, kc, "restricted", "db")
	createDaemonSet(t, kc, "restricted", "agent")
	for i := 0; i < 30; i++ {
		createDeployment(t, kc, "shop", fmt.Sprintf("web-%02d", i), 1, onSystem, nil)
	}
	createStatefulSet(t, kc, "shop", "db-a")
	createStatefulSet(t, kc, "shop", "db-b")
	createDaemonSet(t, kc, "shop", "agent")
	createPod(t, kc, "shop", "bare", poolNodes(t, kc, systemPool)[0], nil)
	createJob(t, kc, "shop", "report")
	for i := 0; i < 8; i++ {
		createDeployment(t, kc, "batch", fmt.Sprintf("worker-%d", i), 1, onSystem, nil)
	}
	for i := 0; i < 6; i++ {
		createDeployment(t, kc, "outage", fmt.Sprintf("svc-%d", i), 1, onSystem, nil)
	}
	createDeployment(t, kc, "legacy", "pinned", 1, map[string]string{nodepool.PoolLabel: oldPool}, nil)
	// kube-system is never touched, even if someone labelled it for the mesh.
	mustMeshaddon(t, "local", "kubectl", "--name", cluster, "--", "label", "namespace", "kube-system", "istio.io/rev=asm-1-27")
	createDeployment(t, kc, "kube-system", "system-tool", 1, onSystem, nil)
	for _, ns := range []string{"shop", "batch", "legacy", "outage", "restricted", "kube-system"} {
		waitAllRolledOut(t, kc, ns)
	}
	if m := podModes(t, kc, "shop"); m[inventory.Native] != 0 || m[inventory.Classic] < 33 {
		t.Fatalf("shop before the switch: %v", m)
	}
	kubeSystemBefore := generations(t, kc, "kube-system")

	// Enabled: native despite the old pool (which precheck fails on).
	setMode(t, cl, "Enabled")
	waitEnvByDocument(t, cluster, "true", 30*time.Second)
	waitFor(t, time.Minute, "istiod injects native", func(ctx context.Context) (bool, string) {
		p, err := tryDryRunPod(ctx, kc, "shop", nil)
		if err != nil {
			return false, err.Error()
		}
		return inventory.ModeOf(&p.Spec) == inventory.Native, names(p.Spec.InitContainers)
	})

	t.Run("refuses to start while precheck fails", func(t *testing.T) {
		r := meshaddon(t, "migrate", "-n", "shop", "--kubeconfig", kcfg)
		if r.code != 1 || !strings.Contains(r.stderr, "precheck failed, so nothing was restarted") || !strings.Contains(r.stderr, "pool old") {
			t.Errorf("migrate with a failing precheck: %s", r)
		}
	})

	t.Run("dry run prints the plan and changes nothing", func(t *testing.T) {
		before := generations(t, kc, "shop")
		r := mustMeshaddon(t, "migrate", "-A", "--dry-run", "--skip-precheck", "--kubeconfig", kcfg)
		for _, want := range []string{"restart shop/Deployment/web-00", "restart shop/StatefulSet/db-a", "restart shop/DaemonSet/agent",
			"report shop/Pod/bare", "bare pod cannot be restarted", "report shop/Job/report"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("plan lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "kube-system") {
			t.Errorf("plan touches kube-system:\n%s", r.stdout)
		}
		after := generations(t, kc, "shop")
		for w, g := range before {
			if after[w] != g {
				t.Errorf("dry run changed %s", w)
			}
		}
	})

	t.Run("restarts every classic workload once and verifies it native", func(t *testing.T) {
		before := generations(t, kc, "shop")
		r := mustMeshaddon(t, "migrate", "-n", "shop", "--concurrency", "10", "--skip-precheck", "--kubeconfig", kcfg)
		precheckCountsEqualStatus(t, kcfg)
		if !strings.Contains(r.stderr, "warning: --skip-precheck") {
			t.Errorf("no warning for --skip-precheck:\n%s", r.stderr)
		}
		checkRestartedOnce(t, before, generations(t, kc, "shop"))
		// Only the bare pod and the Job keep classic sidecars.
		if m := podModes(t, kc, "shop"); m[inventory.Classic] != 2 {
			t.Errorf("shop after migrate: %v, want only the bare pod and the job classic", m)
		}
		for _, want := range []string{"migrated", "reported", "recreate it"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("final table lacks %q:\n%s", want, r.stdout)
			}
		}
		// A second run finds nothing to do.
		again := mustMeshaddon(t, "migrate", "-n", "shop", "--skip-precheck", "--kubeconfig", kcfg)
		checkRestartedOnce(t, before, generations(t, kc, "shop"))
		if strings.Contains(again.stdout, "migrated") {
			t.Errorf("second run restarted something:\n%s", again.stdout)
		}
	})

	t.Run("precheck fails exactly when migrate would be Forbidden", func(t *testing.T) {
		// A ServiceAccount granted migrate's own list (migrate -A's, as
		// precheck asks), first but for one verb, then exactly.
		sa := "system:serviceaccount:restricted:operator"
		if _, err := kc.CoreV1().ServiceAccounts("restricted").Create(context.Background(),
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "operator"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		access := migrate.RequiredAccess(migrate.Scope{MeshNamespace: istioNS})
		var missing migrate.Access
		var others []migrate.Access
		for _, a := range access {
			if a.Verb == "watch" && a.Resource == "deployments" {
				missing = a // one the old precheck never asked about
			} else {
				others = append(others, a)
			}
		}
		if missing.Verb == "" {
			t.Fatalf("migrate.RequiredAccess has no watch of deployments: %v", access)
		}
		asSA := func(args ...string) result {
			return meshaddon(t, append(args, "--kubeconfig", kcfg, "--as", sa)...)
		}
		permissions := func() string {
			r := asSA("precheck", "-o", "json")
			var rep precheckReport
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("precheck -o json as %s: %v\n%s", sa, err, r)
			}
			return strings.Join(resultsOf(rep, "access for migrate"), "\n")
		}
		before := generations(t, kc, "restricted")

		grantExactly(t, kc, "restricted", "operator", access, others)
		if got := permissions(); !strings.HasPrefix(got, "fail:") || !strings.HasSuffix(strings.TrimSpace(got), "you may not "+missing.String()) {
			t.Errorf("precheck's Permissions without %s: %q, want it failing naming it alone", missing, got)
		}
		r := asSA("migrate", "-n", "restricted", "--skip-precheck", "--timeout", "1m")
		// Said at once, not as "no progress" at the timeout.
		if r.code != 1 || !regexp.MustCompile(`restricted/Deployment/web failed: watch its rollout: .*cannot watch resource "deployments"`).MatchString(r.stderr) {
			t.Errorf("migrate without %s: %s", missing, r)
		}

		grantExactly(t, kc, "restricted", "operator", access, access)
		if got := permissions(); !strings.HasPrefix(got, "ok:") {
			t.Errorf("precheck's Permissions with exactly migrate's access: %q", got)
		}
		if r := asSA("migrate", "-n", "restricted", "--skip-precheck"); r.code != 0 {
			t.Errorf("migrate with exactly its access: %s", r)
		}
		// The restart the Forbidden watch interrupted was resumed, not redone.
		checkRestartedOnce(t, before, generations(t, kc, "restricted"))
		if m := podModes(t, kc, "restricted"); m[inventory.Classic] != 0 {
			t.Errorf("restricted after migrate: %v", m)
		}
	})

	t.Run("kill -9 halfway, run again: completes without restarting twice", func(t *testing.T) {
		before := generations(t, kc, "batch")
		cmd := exec.Command(meshaddonBin, "migrate", "-n", "batch", "--concurrency", "2", "--skip-precheck", "--kubeconfig", kcfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until some, not all, workloads were restarted.
		waitFor(t, time.Minute, "a few restarts under way", func(context.Context) (bool, string) {
			changed := 0
			for w, g := range generations(t, kc, "batch") {
				if g > before[w] {
					changed++
				}
			}
			return changed >= 3, fmt.Sprintf("%d restarted", changed)
		})
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		_, _ = cmd.Process.Wait()
		mid := generations(t, kc, "batch")
		r := mustMeshaddon(t, "migrate", "-n", "batch", "--concurrency", "2", "--skip-precheck", "--kubeconfig", kcfg)
		checkRestartedOnce(t, before, generations(t, kc, "batch"))
		if m := podModes(t, kc, "batch"); m[inventory.Classic] != 0 || m[inventory.Native] != 8 {
			t.Errorf("batch after the rerun: %v", m)
		}
		resumed := 0
		for w, g := range mid {
			if g > before[w] {
				resumed++
			}
		}
		if !strings.Contains(r.stdout, "resumed") && resumed > 0 {
			t.Logf("no workload was mid-rollout at the kill (all %d restarted ones had finished)", resumed)
		}
	})

	t.Run("the API server restarting during a run: migrate retries and finishes", func(t *testing.T) {
		before := generations(t, kc, "outage")
		cmd := exec.Command(meshaddonBin, "migrate", "-n", "outage", "--concurrency", "2", "--skip-precheck", "--kubeconfig", kcfg)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "a restart under way", func(context.Context) (bool, string) {
			for w, g := range generations(t, kc, "outage") {
				if g > before[w] {
					return true, ""
				}
			}
			return false, "none yet"
		})
		data, err := os.ReadFile(filepath.Join(stateDir, "clusters", cluster, "kwok", "clusters", cluster, "pids", "kube-apiserver.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // an outage, not a blip
		r := mustMeshaddon(t, "local", "up", "--name", cluster, "--pool", "system="+currentVersion+":3", "--pool", oldPool+"="+oldVersion+":1",
			"--revision", "asm-1-27", "--pod-start-delay", "1s")
		if !strings.Contains(r.stdout, "started the control plane") {
			t.Errorf("local up did not restart the control plane:\n%s", r.stdout)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("migrate across the API server restart: %v\n%s", err, out.String())
		}
		kc := clientFor(t, cluster) // the restarted API server's address may differ
		checkRestartedOnce(t, before, generations(t, kc, "outage"))
		if m := podModes(t, kc, "outage"); m[inventory.Classic] != 0 {
			t.Errorf("outage after migrate: %v", m)
		}
	})

	t.Run("a workload that never becomes ready stops the run with exit 1", func(t *testing.T) {
		r := meshaddon(t, "migrate", "-n", "legacy", "--timeout", "8s", "--skip-precheck", "--kubeconfig", kcfg)
		if r.code != 1 || !strings.Contains(r.stderr, "legacy/Deployment/pinned failed") || !strings.Contains(r.stderr, "stuck in Init") ||
			!strings.Contains(r.stderr, "run meshaddon migrate again") {
			t.Errorf("migrate of a workload pinned to a %s node: %s", oldVersion, r)
		}
	})

	t.Run("kube-system was never touched", func(t *testing.T) {
		after := generations(t, kc, "kube-system")
		for w, g := range kubeSystemBefore {
			if after[w] != g {
				t.Errorf("kube-system %s: generation %d → %d", w, g, after[w])
			}
		}
	})

	t.Run("the mesh goes classic and back: migrate again restarts each workload once more", func(t *testing.T) {
		kc, cl := clientFor(t, cluster), ctrlClientFor(t, cluster) // the API server was restarted above
		// Auto, registered: the old node makes istiod classic.
		mustMeshaddon(t, "feature", "register", "--kubeconfig", kcfg)
		waitFor(t, 30*time.Second, "feature Registered", func(context.Context) (bool, string) {
			r := mustMeshaddon(t, "feature", "show", "-o", "table", "--kubeconfig", kcfg)
			return strings.Contains(r.stdout, " Registered "), r.stdout
		})
		mustMeshaddon(t, "provider", "register", "--kubeconfig", kcfg)
		setMode(t, cl, "Auto")
		waitEnvByDocument(t, cluster, "false", 30*time.Second)
		waitInjects(t, kc, "shop", inventory.Classic)

		// Pods come back classic: a scale-up, and every other pod recreated
		// (as a drain would).
		scale := []byte(`{"spec":{"replicas":2}}`)
		if _, err := kc.AppsV1().Deployments("shop").Patch(context.Background(), "web-00", types.MergePatchType, scale, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		pods, err := kc.CoreV1().Pods("shop").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.Kind != "Job" {
				if err := kc.CoreV1().Pods("shop").Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		waitFor(t, 3*time.Minute, "every pod of shop classic", func(context.Context) (bool, string) {
			m := podModes(t, kc, "shop")
			return m[inventory.Native] == 0 && m[inventory.Classic] == 38, fmt.Sprint(m)
		})
		waitAllRolledOut(t, kc, "shop")

		// The old pool is upgraded: native again.
		mustMeshaddon(t, "local", "nodepool", "upgrade", oldPool, "--name", cluster, "--version", currentVersion)
		waitEnvByDocument(t, cluster, "true", time.Minute)
		waitInjects(t, kc, "shop", inventory.Native)

		before := generations(t, kc, "shop")
		r := mustMeshaddon(t, "migrate", "-n", "shop", "--skip-precheck", "--kubeconfig", kcfg)
		checkRestartedOnce(t, before, generations(t, kc, "shop"))
		if m := podModes(t, kc, "shop"); m[inventory.Classic] != 2 {
			t.Errorf("shop after the second migration: %v, want only the bare pod and the job classic", m)
		}
		if strings.Contains(r.stdout, "resumed") {
			t.Errorf("the second migration took the first one's restarts for its own:\n%s", r.stdout)
		}
	})
}

// waitInjects waits until istiod injects mode into a new pod of ns.
func waitInjects(t *testing.T, kc kubernetes.Interface, ns string, mode inventory.Mode) {
	t.Helper()
	waitFor(t, time.Minute, "istiod injects "+string(mode), func(ctx context.Context) (bool, string) {
		p, err := tryDryRunPod(ctx, kc, ns, nil)
		if err != nil {
			return false, err.Error()
		}
		return inventory.ModeOf(&p.Spec) == mode, names(p.Spec.InitContainers)
	})
}

// grantExactly gives the ServiceAccount ns/sa exactly granted out of access
// (migrate -A's, all in every namespace) with a ClusterRole, made or
// replaced, and waits until the API server's authorizer allows what is
// granted and denies the rest.
func grantExactly(t *testing.T, kc kubernetes.Interface, ns, sa string, access, granted []migrate.Access) {
	t.Helper()
	ctx := context.Background()
	name, user := "migrate-"+sa, "system:serviceaccount:"+ns+":"+sa
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range granted {
		if a.Namespace != "" {
			t.Fatalf("%s: grantExactly grants in every namespace only", a)
		}
		role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{a.Group}, Resources: []string{a.Resource}, Verbs: []string{a.Verb}})
	}
	_, err := kc.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = kc.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = kc.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "RBAC for "+user+" applied", func(ctx context.Context) (bool, string) {
		for _, a := range access {
			r, err := kc.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authv1.SubjectAccessReview{Spec: authv1.SubjectAccessReviewSpec{
				User: user, ResourceAttributes: a.Attributes()}}, metav1.CreateOptions{})
			if err != nil {
				return false, err.Error()
			}
			if want := slices.Contains(granted, a); r.Status.Allowed != want {
				return false, fmt.Sprintf("%s allowed=%v", a, r.Status.Allowed)
			}
		}
		return true, ""
	})
}
