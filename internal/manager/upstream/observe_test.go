// Package upstream_test runs the add-on manager with --layout upstream
// --observe against a real kube-apiserver and etcd (envtest): a cluster whose
// istiods Helm or istioctl installed, which the manager must judge and
// report on without ever writing them (issue 15).
package upstream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/precheck"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

func TestObserveUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("envtest")
	}
	cfg := testenv.Start(t)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, kcs := clients.Client, clients.Kube
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	mk := func(obj client.Object) {
		t.Helper()
		if err := cl.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	node := func(name, pool, kubelet string) {
		t.Helper()
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{meshversion.PoolLabel: pool}}}
		mk(n)
		// A merge patch, not an update: the manager's node labeler may
		// have written the node since it was created.
		before := client.MergeFrom(n.DeepCopy())
		n.Status.NodeInfo.KubeletVersion = kubelet
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
		if err := cl.Status().Patch(ctx, n, before); err != nil {
			t.Fatal(err)
		}
	}
	istiod := func(name, rev, image string) {
		labels := map[string]string{"app": "istiod"}
		if rev != "" {
			labels["istio.io/rev"] = rev
		}
		mk(&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system", Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: image}}}},
			},
		})
	}
	mk(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}})
	node("system-0", "system", "v1.34.4")
	// Istio 1.27 leaving ENABLE_NATIVE_SIDECARS unset, and an istiod whose
	// version cannot be read.
	istiod("istiod", "", "docker.io/istio/pilot:1.27.1-distroless")
	istiod("istiod-canary", "canary", "docker.io/istio/pilot:master")
	mk(&v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}, Spec: v1alpha1.MeshProfileSpec{NativeSidecarMode: "Auto"}})

	versions := func() map[string]string {
		var list appsv1.DeploymentList
		if err := cl.List(ctx, &list, client.InNamespace("istio-system")); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, d := range list.Items {
			out[d.Name] = d.ResourceVersion
		}
		return out
	}
	before := versions()

	mgr, err := manager.New(cfg, manager.Options{
		Policy: meshversion.UpstreamPolicy, Layout: meshdiscovery.LayoutUpstream, Observe: true,
		FeatureDelay: time.Second, MetricsAddr: "0", ProbeAddr: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() { cancel(); <-done }()

	eventually := func(what string, cond func() (bool, string)) {
		t.Helper()
		var last string
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			ok, got := cond()
			last = got
			return ok, nil
		}); err != nil {
			t.Fatalf("%s: not within 20s; last seen: %s", what, last)
		}
	}
	reconciled := func(reason string, has ...string) {
		t.Helper()
		eventually(fmt.Sprintf("Reconciled %s with %q", reason, has), func() (bool, string) {
			var p v1alpha1.MeshProfile
			if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReconciled)
			if c == nil {
				return false, "no condition"
			}
			got := fmt.Sprintf("%s %s: %s | revisions %+v", c.Status, c.Reason, c.Message, p.Status.Revisions)
			if c.Reason != reason {
				return false, got
			}
			for _, h := range has {
				if !strings.Contains(got, h) {
					return false, got
				}
			}
			return true, got
		})
	}
	event := func(has string) {
		t.Helper()
		eventually("event "+has, func() (bool, string) {
			evs, err := kcs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err.Error()
			}
			var seen []string
			for _, e := range evs.Items {
				if strings.Contains(e.Reason+": "+e.Message, has) {
					return true, ""
				}
				seen = append(seen, e.Reason+": "+e.Message)
			}
			return false, strings.Join(seen, " | ")
		})
	}

	reconciled(manager.ReasonObserveOnly,
		"would set ENABLE_NATIVE_SIDECARS=true on istio-system/istiod (it has unset)",
		"would set ENABLE_NATIVE_SIDECARS=false on istio-system/istiod-canary (it has unset)",
		"Name:default Mode:native", "Name:canary Mode:classic Reason:IstioVersionUnknown")
	event("WouldSetNativeSidecars: observe mode: would set ENABLE_NATIVE_SIDECARS=true on istio-system/istiod")

	// An old node joins: Istio itself now injects classic for every new
	// pod, and the manager says so, naming the node, without writing.
	node("old-0", "old", "v1.32.9")
	reconciled(manager.ReasonObserveOnly,
		"would set ENABLE_NATIVE_SIDECARS=false on istio-system/istiod (it has unset)",
		"Name:default Mode:classic Reason:NodesTooOld", "pool old has 1 node(s) on kubelet v1.32.9 (old-0)")
	// (The node is created before its status: the first event may see its
	// kubelet unknown, which counts as old too.)
	event("OldKubeletNodes: default switched to classic sidecars: pool old has 1 node(s) on kubelet")

	// precheck reads the manager's verdict, and says itself what unset
	// means here and which node makes it so.
	env := &precheck.Env{Kube: kcs, Client: cl, Policy: meshversion.DefaultPolicy}
	var checks []precheck.Check
	for _, c := range precheck.Checks {
		if c.Group == "Injection" || c.Name == "layout" {
			checks = append(checks, c)
		}
	}
	var lines []string
	for _, g := range precheck.Run(ctx, env, checks).Groups {
		for _, c := range g.Checks {
			for _, r := range c.Results {
				lines = append(lines, string(r.Status)+": "+r.Message+" "+strings.Join(r.Details, "; "))
			}
		}
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"ok: layout upstream: 2 revision(s), 0 tag(s) in every namespace",
		"warn: istiod: ENABLE_NATIVE_SIDECARS is unset, so Istio decides: native only if every node's kubelet is 1.33+; on this cluster it resolves to classic (Istio 1.27 decides by the kubelets: classic for every new pod: node old-0 (kubelet v1.32.9) older than 1.33)",
		"warn: the add-on manager (observe mode) disagrees with istiod: observe mode, nothing written: would set",
		"would set ENABLE_NATIVE_SIDECARS=false on istio-system/istiod (it has unset): pool old has 1 node(s) on kubelet v1.32.9 (old-0)",
		"default: decided classic (NodesTooOld: pool old has 1 node(s) on kubelet v1.32.9 (old-0)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("precheck lacks %q:\n%s", want, got)
		}
	}

	if after := versions(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("observe mode wrote an istiod: resourceVersions %v, then %v", before, after)
	}
}
