package precheck

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// The guard check against a real API server (envtest): of the pods on the
// nodes the guard excludes, it names those that are native there and
// those that would be native when restarted, and only those — not pods on
// capable nodes, ended pods, DaemonSet pods, opted-out or uninjected pods
// outside mesh namespaces, nor kube-system — read as metadata (as the CLI
// does) and as whole pods alike.
func TestGuardPodsOnExcludedNodes(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.Start(t)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc, cl := clients.Kube, clients.Client
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	must := mustOK(t)
	for name, version := range map[string]string{"new-1": "v1.34.4", "old-1": "v1.28.9", "old-2": "v1.28.9"} {
		n, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{meshversion.PoolLabel: name[:3]}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.NodeInfo.KubeletVersion = version
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		must(kc.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}))
	}
	for _, ns := range []string{"shop", "plain", "aks-istio-system"} {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if ns == "shop" {
			n.Labels = map[string]string{"istio.io/rev": "asm-1-27"}
		}
		must(kc.CoreV1().Namespaces().Create(ctx, n, metav1.CreateOptions{}))
	}
	profile := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName},
		Spec: v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}, OldNodes: v1alpha1.OldNodesGuard}}
	if err := cl.Create(ctx, profile); err != nil {
		t.Fatal(err)
	}
	profile.Status.Revisions = []v1alpha1.RevisionStatus{{Name: "asm-1-27", Mode: "native", Reason: "Test", Message: "native"}}
	profile.Status.Guard = &v1alpha1.GuardStatus{Healthy: true, Message: "guarding"}
	if err := cl.Status().Update(ctx, profile); err != nil {
		t.Fatal(err)
	}

	const (
		nativeStatus  = `{"initContainers":["istio-init","istio-proxy"],"containers":null,"revision":"asm-1-27"}`
		classicStatus = `{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"asm-1-27"}`
	)
	type podSpec struct {
		ns, name, node, mode string
		annotations, labels  map[string]string
		owner                string
		phase                corev1.PodPhase
	}
	pods := []podSpec{
		{ns: "shop", name: "native-on-old", node: "old-1", mode: "native", owner: "ReplicaSet"},
		{ns: "shop", name: "classic-on-old", node: "old-1", mode: "classic", owner: "ReplicaSet"},
		{ns: "shop", name: "uninjected-on-old", node: "old-2", mode: "none"},
		{ns: "shop", name: "opted-out", node: "old-2", mode: "classic", annotations: map[string]string{"sidecar.istio.io/nativeSidecar": "false"}},
		{ns: "shop", name: "no-injection", node: "old-2", mode: "none", annotations: map[string]string{"sidecar.istio.io/inject": "false"}},
		{ns: "shop", name: "daemon", node: "old-1", mode: "native", owner: "DaemonSet"},
		{ns: "shop", name: "ended", node: "old-1", mode: "classic", phase: corev1.PodSucceeded},
		{ns: "shop", name: "native-on-new", node: "new-1", mode: "native"},
		{ns: "plain", name: "outside-mesh", node: "old-1", mode: "none"},
		// In the mesh by its own label, in an unlabelled namespace: Istio's
		// injector selects it, so its restart is native too.
		{ns: "plain", name: "opted-in-by-label", node: "old-2", mode: "classic", labels: map[string]string{"istio.io/rev": "asm-1-27"}},
		{ns: "kube-system", name: "system", node: "old-1", mode: "native"},
	}
	always := ptr.To(corev1.ContainerRestartPolicyAlways)
	for _, p := range pods {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.ns, Labels: p.labels, Annotations: map[string]string{}},
			Spec: corev1.PodSpec{NodeName: p.node, Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		for k, v := range p.annotations {
			pod.Annotations[k] = v
		}
		switch p.mode {
		case "native":
			pod.Annotations["sidecar.istio.io/status"] = nativeStatus
			pod.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "proxy"}, {Name: "istio-proxy", Image: "proxy", RestartPolicy: always}}
		case "classic":
			pod.Annotations["sidecar.istio.io/status"] = classicStatus
			pod.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "proxy"}}
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "proxy"})
		}
		if p.owner != "" {
			pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: p.owner, Name: "web-1", UID: types.UID("u-" + p.name), Controller: ptr.To(true)}}
		}
		created, err := kc.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.phase != "" {
			created.Status.Phase = p.phase
			must(kc.CoreV1().Pods(p.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}))
		}
	}

	for _, c := range []struct {
		name string
		md   metadata.Interface
	}{{"as metadata", md}, {"as whole pods", nil}} {
		t.Run(c.name, func(t *testing.T) {
			e := &Env{Kube: kc, Metadata: c.md, Client: cl, MeshNamespace: "aks-istio-system", Policy: meshversion.DefaultPolicy}
			results, err := checkGuard(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			var native, moving *Result
			for i, r := range results {
				switch {
				case strings.Contains(r.Message, "native pod(s) on excluded nodes"):
					native = &results[i]
				case strings.Contains(r.Message, "would be native when restarted"):
					moving = &results[i]
				}
			}
			if native == nil || moving == nil {
				t.Fatalf("want a result for native pods and one for pods that would move, got:\n%s", dumpResults(results))
			}
			if native.Status != Warn || native.Message != "1 native pod(s) on excluded nodes, whose kubelet cannot run sidecar containers: shop/native-on-old on old-1" {
				t.Errorf("native pods: %s: %s", native.Status, native.Message)
			}
			if got := podNames(native.Pods); got != "shop/native-on-old@old-1(native,ReplicaSet/web-1)" {
				t.Errorf("native pods listed: %s", got)
			}
			if moving.Status != OK || moving.Message != "3 pod(s) on excluded nodes would be native when restarted, and the guard will keep them off those nodes: plain/opted-in-by-label on old-2, shop/classic-on-old on old-1, shop/uninjected-on-old on old-2" {
				t.Errorf("pods that would move: %s: %s", moving.Status, moving.Message)
			}
			if got := podNames(moving.Pods); got != "plain/opted-in-by-label@old-2(classic,Pod/opted-in-by-label) shop/classic-on-old@old-1(classic,ReplicaSet/web-1) shop/uninjected-on-old@old-2(none,Pod/uninjected-on-old)" {
				t.Errorf("pods that would move listed: %s", got)
			}
		})
	}

	// The guard off: nothing is read about pods.
	profile.Spec.OldNodes = v1alpha1.OldNodesClassic
	if err := cl.Update(ctx, profile); err != nil {
		t.Fatal(err)
	}
	e := &Env{Kube: kc, Metadata: md, Client: cl, MeshNamespace: "aks-istio-system", Policy: meshversion.DefaultPolicy}
	results, err := checkGuard(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || !strings.HasPrefix(results[0].Message, "off") {
		t.Errorf("guard off: %s", dumpResults(results))
	}
}

// Many pods: the message names five and counts the rest; -o json lists
// every one.
func TestJudgeExcludedPodsNamesFive(t *testing.T) {
	var pods []PodRef
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		pods = append(pods, PodRef{Namespace: "shop", Name: n, Node: "old-1", Mode: "classic"})
	}
	pods = append(pods, PodRef{Namespace: "shop", Name: "stuck", Node: "old-2", Mode: "native"})
	results := judgeExcludedPods(pods, 2)
	if len(results) != 2 {
		t.Fatalf("want two results, got:\n%s", dumpResults(results))
	}
	if want := "7 pod(s) on excluded nodes would be native when restarted, and the guard will keep them off those nodes: shop/a on old-1, shop/b on old-1, shop/c on old-1, shop/d on old-1, shop/e on old-1 and 2 more"; results[1].Message != want {
		t.Errorf("message:\n got %s\nwant %s", results[1].Message, want)
	}
	raw, err := json.Marshal(results[1])
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Pods) != 7 || back.Pods[6].Name != "g" || back.Pods[6].Node != "old-1" {
		t.Errorf("-o json lists %d pods: %s", len(back.Pods), raw)
	}
	if results[0].Status != Warn || len(results[0].Pods) != 1 {
		t.Errorf("the native pod: %+v", results[0])
	}
	if r := judgeExcludedPods(nil, 3); len(r) != 1 || r[0].Status != OK || r[0].Message != "no pod on the 3 excluded node(s) is or would be native" {
		t.Errorf("no pods: %s", dumpResults(r))
	}
}

func podNames(pods []PodRef) string {
	var s []string
	for _, p := range pods {
		s = append(s, p.Namespace+"/"+p.Name+"@"+p.Node+"("+p.Mode+","+p.Owner+")")
	}
	return strings.Join(s, " ")
}

func dumpResults(rs []Result) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(string(r.Status) + ": " + r.Message + "\n")
	}
	return b.String()
}
