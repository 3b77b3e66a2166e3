// Package writemode_test runs the add-on manager with --layout upstream in
// write mode, in its own test binary: controller-runtime allows one
// controller of a name per process, and the observe-mode test runs another.
package writemode_test

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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// The manager's upstream layout in write mode (issue 15), against a real
// kube-apiserver and etcd (envtest), as the manager's service account with
// exactly the RBAC `kubectl apply -k config/upstream` grants: it sets
// ENABLE_NATIVE_SIDECARS on the istiod istioctl installed in istio-system
// (native while every kubelet is 1.33+, classic once an older node joins),
// and touches no istiod outside its mesh namespace.
func TestWriteUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("envtest")
	}
	env := testenv.Environment(t)
	clients, err := kube.ForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	cl := clients.Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mk := func(obj client.Object) {
		t.Helper()
		if err := cl.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"meshaddon-system", "istio-system", "other-mesh"} {
		mk(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}

	// config/upstream's RBAC, as kubectl apply -k would create it.
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../../../../config/upstream")
	if err != nil {
		t.Fatalf("kustomize config/upstream: %v", err)
	}
	var args []string
	rbac := map[string]bool{"ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true}
	for _, r := range res.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			t.Fatal(err)
		}
		if u.GetKind() == "Deployment" {
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			for _, a := range cs[0].(map[string]any)["args"].([]any) {
				args = append(args, a.(string))
			}
		}
		if rbac[u.GetKind()] {
			mk(u)
		}
	}
	// The manager runs as config/upstream's Deployment says.
	for _, want := range []string{"--layout=upstream", "--mesh-namespace=istio-system"} {
		if !strings.Contains(strings.Join(args, " "), want) {
			t.Fatalf("config/upstream's manager args %v lack %s", args, want)
		}
	}
	sa, err := env.AddUser(envtest.User{Name: "system:serviceaccount:meshaddon-system:meshaddon-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:meshaddon-system", "system:authenticated"}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	node := func(name, pool, kubelet string) {
		t.Helper()
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{meshversion.PoolLabel: pool}}}
		mk(n)
		before := client.MergeFrom(n.DeepCopy())
		n.Status.NodeInfo.KubeletVersion = kubelet
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
		if err := cl.Status().Patch(ctx, n, before); err != nil {
			t.Fatal(err)
		}
	}
	istiodIn := func(ns, name, image string) {
		labels := map[string]string{"app": "istiod"}
		mk(&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: image}}}},
			},
		})
	}
	node("system-0", "system", "v1.34.4")
	// istioctl's default revision on Istio 1.27, ENABLE_NATIVE_SIDECARS
	// unset; another mesh's istiod the manager is not given.
	istiodIn("istio-system", "istiod", "docker.io/istio/pilot:1.27.1")
	istiodIn("other-mesh", "istiod", "docker.io/istio/pilot:1.27.1")
	mk(&v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}, Spec: v1alpha1.MeshProfileSpec{NativeSidecarMode: "Auto"}})
	otherBefore := &appsv1.Deployment{}
	if err := cl.Get(ctx, client.ObjectKey{Namespace: "other-mesh", Name: "istiod"}, otherBefore); err != nil {
		t.Fatal(err)
	}

	mgr, err := manager.New(sa.Config(), manager.Options{
		Policy: meshversion.UpstreamPolicy, Layout: meshdiscovery.LayoutUpstream, MeshNamespace: "istio-system",
		FeatureDelay: time.Second, MetricsAddr: "0", ProbeAddr: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() { cancel(); <-done }()

	written := func(want string) {
		t.Helper()
		var last string
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			var d appsv1.Deployment
			if err := cl.Get(ctx, client.ObjectKey{Namespace: "istio-system", Name: "istiod"}, &d); err != nil {
				last = err.Error()
				return false, nil
			}
			var p v1alpha1.MeshProfile
			if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
				last = err.Error()
				return false, nil
			}
			has := istiod.NativeSidecars(&d).String()
			c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReconciled)
			last = fmt.Sprintf("istio-system/istiod has %s=%s; Reconciled %+v; revisions %+v", istiod.NativeSidecarsEnv, has, c, p.Status.Revisions)
			return has == want && c != nil && c.Status == metav1.ConditionTrue && len(p.Status.Revisions) == 1 &&
				p.Status.Revisions[0].IstiodEnableNativeSidecars == want, nil
		}); err != nil {
			t.Fatalf("the manager did not write %s=%s on istio-system/istiod within 30s: %s", istiod.NativeSidecarsEnv, want, last)
		}
	}
	// Every kubelet 1.33+: native, written.
	written("true")
	// An old node joins: classic for every new pod, written too.
	node("old-0", "old", "v1.32.9")
	written("false")

	var other appsv1.Deployment
	if err := cl.Get(ctx, client.ObjectKey{Namespace: "other-mesh", Name: "istiod"}, &other); err != nil {
		t.Fatal(err)
	}
	if other.ResourceVersion != otherBefore.ResourceVersion {
		t.Errorf("the manager wrote other-mesh/istiod, outside its mesh namespace (resourceVersion %s → %s)", otherBefore.ResourceVersion, other.ResourceVersion)
	}
}
