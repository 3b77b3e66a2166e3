package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

const guardCluster = "guard"

// guardPods checks every pod of app in ns: Running and Ready, native on a
// node labelled able to run sidecar containers, classic elsewhere, and, when
// own is set, on a node its own constraint allows.
func guardPods(t *testing.T, kc kubernetes.Interface, ns, app string, want int, own func(*corev1.Node) bool) {
	t.Helper()
	ctx := context.Background()
	var pods []corev1.Pod
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d pods of %s Running", want, app), func(ctx context.Context) (bool, string) {
		list, err := podsOf(ctx, kc, ns, app)
		if err != nil {
			return false, err.Error()
		}
		pods = pods[:0]
		for _, p := range list {
			if p.DeletionTimestamp != nil {
				continue
			}
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) {
				return false, fmt.Sprintf("pod %s on %q: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
			}
			pods = append(pods, p)
		}
		return len(pods) == want, fmt.Sprintf("%d Running", len(pods))
	})
	for _, p := range pods {
		n, err := kc.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		native := names(p.Spec.InitContainers) == "istio-init,istio-proxy"
		capable := n.Labels[meshversion.SidecarContainersLabel] == "true"
		if native && !capable {
			t.Errorf("native pod %s on %s (kubelet %s, label %q)", p.Name, n.Name, n.Status.NodeInfo.KubeletVersion, n.Labels[meshversion.SidecarContainersLabel])
		}
		if !native && container(p.Spec.Containers, "istio-proxy") == nil {
			t.Errorf("pod %s has no istio-proxy: init %q containers %q", p.Name, names(p.Spec.InitContainers), names(p.Spec.Containers))
		}
		if capable && !native {
			t.Errorf("pod %s on capable node %s is classic", p.Name, n.Name)
		}
		if own != nil && !own(n) {
			t.Errorf("pod %s on %s breaks its own scheduling constraint", p.Name, n.Name)
		}
	}
}

// TestGuard is the placement guard end to end (issue 16): mixed pools with
// the old-kubelet stage (a native pod on a 1.28 node hangs in Init), the
// guard on, the mesh native; workloads with their own constraints, a
// DaemonSet, a pinned pod, both orders of the injector's configuration, the
// guard's configuration gone and back, and the old pool upgraded.
func TestGuard(t *testing.T) {
	kc := upCluster(t, guardCluster, "--pool", "system="+currentVersion+":2", "--pool", "old="+oldVersion+":2", "--revision", "asm-1-27")
	cl := ctrlClientFor(t, guardCluster)
	kcfg := kubeconfigOf(t, guardCluster)
	ctx := context.Background()
	oldNodes := poolNodes(t, kc, "old")

	t.Run("guard on: old nodes labelled and excluded, the mesh native", func(t *testing.T) {
		mustMeshaddon(t, "feature", "register", "--kubeconfig", kcfg)
		waitFor(t, 30*time.Second, "feature Registered", func(context.Context) (bool, string) {
			r := mustMeshaddon(t, "feature", "show", "-o", "table", "--kubeconfig", kcfg)
			return strings.Contains(r.stdout, "Registered") && !strings.Contains(r.stdout, "Registering"), r.stdout
		})
		mustMeshaddon(t, "provider", "register", "--kubeconfig", kcfg)
		waitConditionE2E(t, cl, v1alpha1.ConditionVersionsCompatible, metav1.ConditionFalse, "pool old")
		if got := istiodEnvByDocument(t, guardCluster); strings.Join(got, ",") != "false" {
			t.Fatalf("old nodes without the guard: istiod %v, want false", got)
		}
		for _, n := range oldNodes {
			waitNodeLabelE2E(t, kc, n, "false")
		}
		for _, n := range poolNodes(t, kc, systemPool) {
			waitNodeLabelE2E(t, kc, n, "true")
		}
		setOldNodes(t, cl, v1alpha1.OldNodesGuard)
		waitEnvByDocument(t, guardCluster, "true", 30*time.Second)
		waitConditionE2E(t, cl, v1alpha1.ConditionNativeSidecarsEnabled, metav1.ConditionTrue)
		p, err := meshProfile(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if msg := p.Status.Revisions[0].Message; !strings.Contains(msg, "native, guarded: 2 node(s) excluded") || !strings.Contains(msg, oldNodes[0]) {
			t.Errorf("revision message: %s", msg)
		}
		if g := p.Status.Guard; g == nil || !g.Healthy || g.ExcludedNodes != 2 || g.CapableNodes != 2 {
			t.Errorf("status.guard: %+v", g)
		}
		waitInjectsNative(t, kc)

		rep, r := runPrecheck(t, guardCluster)
		guard := strings.Join(resultsOf(rep, "placement guard"), "\n")
		for _, want := range []string{"healthy: guarding", "2 node(s) excluded from native pods: " + oldNodes[0], "native-capable capacity: 2 of 4 node(s) (2 Ready)"} {
			if !strings.Contains(guard, want) {
				t.Errorf("precheck's placement guard lacks %q:\n%s", want, guard)
			}
		}
		if nv := strings.Join(resultsOf(rep, "node versions"), "\n"); !strings.HasPrefix(nv, "ok: native, guarded: 2 node(s) excluded") {
			t.Errorf("precheck's node versions with the guard: %s\n%s", nv, r)
		}
		st := meshaddon(t, "status", "-A", "--kubeconfig", kcfg)
		if want := "Placement guard: healthy; native pods are kept off 2 node(s) (" + oldNodes[0]; !strings.Contains(st.stderr, want) {
			t.Errorf("status does not show the guard (%q):\n%s", want, st)
		}
	})

	createNamespace(t, kc, "shop", "asm-1-27")
	t.Run("Deployments keep their own nodeSelector and affinity, native pods only on capable nodes", func(t *testing.T) {
		createDeployment(t, kc, "shop", "selected", 10, map[string]string{"kubernetes.io/os": "linux"}, nil)
		affine := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "affine", Namespace: "shop"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](10),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "affine"}},
				Template: podTemplate("affine", nil),
			},
		}
		affine.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: nodepool.PoolLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{systemPool, "old"}}}},
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "type", Operator: corev1.NodeSelectorOpIn, Values: []string{"kwok"}}}},
			},
		}}}
		if _, err := kc.AppsV1().Deployments("shop").Create(ctx, affine, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		guardPods(t, kc, "shop", "selected", 10, func(n *corev1.Node) bool { return n.Labels["kubernetes.io/os"] == "linux" })
		own, err := nodeaffinity.NewNodeSelector(affine.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution)
		if err != nil {
			t.Fatal(err)
		}
		guardPods(t, kc, "shop", "affine", 10, own.Match)
	})

	t.Run("a DaemonSet runs everywhere: classic on old nodes, native on current ones", func(t *testing.T) {
		ds := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "shop"},
			Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: podTemplate("agent", nil)},
		}
		if _, err := kc.AppsV1().DaemonSets("shop").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		guardPods(t, kc, "shop", "agent", 4, nil)
		checkModesByNode(t, kc, "shop", "agent")
	})

	t.Run("a pod with spec.nodeName of an old node is classic and Running", func(t *testing.T) {
		pinned(t, kc, "pinned-0", oldNodes[0])
		checkModesByNode(t, kc, "shop", "pinned")
	})

	t.Run("the injector's configuration sorting before or after the guard's: same results", func(t *testing.T) {
		// istio-sidecar-injector-asm-1-27-aks-istio-system sorts before meshaddon-placement-guard:
		// the steps above ran with the injector first. Renamed to sort after.
		renameInjector(t, kc, "istio-sidecar-injector-asm-1-27-aks-istio-system", "zz-istio-sidecar-injector-asm-1-27-aks-istio-system")
		waitInjectsNative(t, kc)
		pinned(t, kc, "pinned-1", oldNodes[1])
		createDeployment(t, kc, "shop", "after", 4, nil, nil)
		guardPods(t, kc, "shop", "after", 4, nil)
		checkModesByNode(t, kc, "shop", "pinned")
		// The DaemonSet's pods on old nodes, recreated with the guard first.
		for _, n := range oldNodes {
			deleteAgentOn(t, kc, n)
		}
		guardPods(t, kc, "shop", "agent", 4, nil)
		checkModesByNode(t, kc, "shop", "agent")
		renameInjector(t, kc, "zz-istio-sidecar-injector-asm-1-27-aks-istio-system", "istio-sidecar-injector-asm-1-27-aks-istio-system")
		waitInjectsNative(t, kc)
	})

	t.Run("the guard unhealthy (its configuration gone): classic within 2 s with a Warning; back: native", func(t *testing.T) {
		var saved admissionregistrationv1.MutatingWebhookConfiguration
		if err := cl.Get(ctx, client.ObjectKey{Name: manager.GuardConfiguration}, &saved); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				log, _ := os.ReadFile(filepath.Join(stateDir, "clusters", guardCluster, "logs", "manager.log"))
				lines := strings.Split(string(log), "\n")
				t.Logf("manager log, last lines:\n%s", strings.Join(lines[max(0, len(lines)-80):], "\n"))
			}
		})
		start := time.Now()
		if err := cl.Delete(ctx, &saved); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "the manager decides classic", func(ctx context.Context) (bool, string) {
			p, err := meshProfile(ctx, cl)
			if err != nil || len(p.Status.Revisions) == 0 {
				return false, fmt.Sprint(err)
			}
			r := p.Status.Revisions[0]
			return r.Mode == "classic" && r.Reason == "GuardUnhealthy", r.Reason + ": " + r.Message
		})
		t.Logf("configuration deleted → classic decided in %s", time.Since(start).Round(time.Millisecond))
		waitEnvByDocument(t, guardCluster, "false", 20*time.Second)
		waitEventE2E(t, kc, "GuardUnhealthy", manager.GuardConfiguration, "not found")

		addr, err := os.ReadFile(filepath.Join(stateDir, "clusters", guardCluster, "guard", "addr"))
		if err != nil {
			t.Fatal(err)
		}
		ca, err := os.ReadFile(filepath.Join(stateDir, "clusters", guardCluster, "guard", "tls.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Create(ctx, testbed.GuardConfiguration(strings.TrimSpace(string(addr)), ca)); err != nil {
			t.Fatal(err)
		}
		waitEnvByDocument(t, guardCluster, "true", 20*time.Second)
		waitInjectsNative(t, kc)
	})

	t.Run("an old pool added in the middle of a rollout: the mesh stays native, no pod hangs", func(t *testing.T) {
		restart(t, kc, "shop", "selected")
		mustMeshaddon(t, "local", "nodepool", "add", "late", "--name", guardCluster, "--version", oldVersion, "--count", "2")
		for _, n := range poolNodes(t, kc, "late") {
			waitNodeLabelE2E(t, kc, n, "false")
		}
		waitRollout(t, kc, "shop", "selected")
		guardPods(t, kc, "shop", "selected", 10, nil)
		if got := istiodEnvByDocument(t, guardCluster); strings.Join(got, ",") != "true" {
			t.Errorf("istiod after an old pool joined with the guard on: %v, want true", got)
		}
		p, err := meshProfile(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if g := p.Status.Guard; g == nil || g.ExcludedNodes != 4 {
			t.Errorf("status.guard after the late pool: %+v", g)
		}
		// The DaemonSet follows onto the new nodes, classic.
		guardPods(t, kc, "shop", "agent", 6, nil)
		checkModesByNode(t, kc, "shop", "agent")
		mustMeshaddon(t, "local", "nodepool", "delete", "late", "--name", guardCluster)
	})

	t.Run("the old pool upgraded: labels flip, native pods may land there", func(t *testing.T) {
		mustMeshaddon(t, "local", "nodepool", "upgrade", "old", "--name", guardCluster, "--version", currentVersion)
		for _, n := range poolNodes(t, kc, "old") {
			waitNodeLabelE2E(t, kc, n, "true")
		}
		waitConditionE2E(t, cl, v1alpha1.ConditionVersionsCompatible, metav1.ConditionTrue)
		onOld := podTemplate("upgraded", map[string]string{nodepool.PoolLabel: "old"})
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "upgraded", Namespace: "shop"}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "upgraded"}}, Template: onOld}}
		if _, err := kc.AppsV1().Deployments("shop").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		guardPods(t, kc, "shop", "upgraded", 2, func(n *corev1.Node) bool { return n.Labels[nodepool.PoolLabel] == "old" })
		checkPodsMode(t, kc, "shop", "upgraded", true)
	})
}

func setOldNodes(t *testing.T, cl client.Client, v string) {
	t.Helper()
	p, err := meshProfile(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.OldNodes = v
	if err := cl.Patch(context.Background(), p, patch); err != nil {
		t.Fatal(err)
	}
}

func waitNodeLabelE2E(t *testing.T, kc kubernetes.Interface, node, want string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("node %s labelled %s", node, want), func(ctx context.Context) (bool, string) {
		n, err := kc.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return n.Labels[meshversion.SidecarContainersLabel] == want, n.Labels[meshversion.SidecarContainersLabel]
	})
}

func waitInjectsNative(t *testing.T, kc kubernetes.Interface) {
	t.Helper()
	createNamespace(t, kc, "shop", "asm-1-27")
	waitFor(t, time.Minute, "istiod injects native", func(ctx context.Context) (bool, string) {
		p, err := tryDryRunPod(ctx, kc, "shop", nil)
		if err != nil {
			return false, err.Error()
		}
		return names(p.Spec.InitContainers) == "istio-init,istio-proxy", names(p.Spec.InitContainers)
	})
}

// pinned creates a pod with spec.nodeName and the label app=pinned.
func pinned(t *testing.T, kc kubernetes.Interface, name, node string) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": "pinned"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if _, err := kc.CoreV1().Pods("shop").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkModesByNode: every pod of app is Running, native exactly on nodes
// that run sidecar containers and classic on the others.
func checkModesByNode(t *testing.T, kc kubernetes.Interface, ns, app string) {
	t.Helper()
	ctx := context.Background()
	var pods []corev1.Pod
	waitFor(t, 2*time.Minute, "pods of "+app+" Running", func(ctx context.Context) (bool, string) {
		list, err := podsOf(ctx, kc, ns, app)
		if err != nil {
			return false, err.Error()
		}
		pods = list
		for _, p := range list {
			if p.DeletionTimestamp == nil && (p.Status.Phase != corev1.PodRunning || !podReady(&p)) {
				return false, fmt.Sprintf("pod %s on %s: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
			}
		}
		return len(list) > 0, ""
	})
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		n, err := kc.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		capable := n.Labels[meshversion.SidecarContainersLabel] == "true"
		native := names(p.Spec.InitContainers) == "istio-init,istio-proxy"
		classic := container(p.Spec.Containers, "istio-proxy") != nil
		if capable != native || native == classic {
			t.Errorf("pod %s on %s (kubelet %s): init %q containers %q; want native=%v", p.Name, n.Name, n.Status.NodeInfo.KubeletVersion,
				names(p.Spec.InitContainers), names(p.Spec.Containers), capable)
		}
	}
}

// renameInjector moves a mutating webhook configuration to a new name (the
// API server runs configurations in name order).
func renameInjector(t *testing.T, kc kubernetes.Interface, from, to string) {
	t.Helper()
	ctx := context.Background()
	api := kc.AdmissionregistrationV1().MutatingWebhookConfigurations()
	c, err := api.Get(ctx, from, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.ObjectMeta = metav1.ObjectMeta{Name: to, Labels: c.Labels, Annotations: c.Annotations}
	if _, err := api.Create(ctx, c, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := api.Delete(ctx, from, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func deleteAgentOn(t *testing.T, kc kubernetes.Interface, node string) {
	t.Helper()
	ctx := context.Background()
	list, err := kc.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: "app=agent", FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		_ = kc.CoreV1().Pods("shop").Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	}
}
