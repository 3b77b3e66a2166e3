package precheck

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testbed/hazard"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// The lifecycle checks against a real API server: no VPA API served is
// said and passes; once the CRD is served, a VPA on a meshed workload is
// named and one on a workload outside the mesh is not; the revision's mesh
// config and injector values are read from their ConfigMaps.
func TestLifecycleAgainstAnAPIServer(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.Start(t)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc := clients.Kube
	must := mustOK(t)
	for ns, labels := range map[string]map[string]string{"istio-system": nil, "shop": {"istio.io/rev": "asm-1-27"}, "outside": nil} {
		must(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}))
	}
	deployment := func(ns, name string, labels map[string]string) *appsv1.Deployment {
		sel := map[string]string{"app": name}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "pause"}}}}}}
	}
	must(kc.AppsV1().Deployments("istio-system").Create(ctx, deployment("istio-system", "istiod-asm-1-27", map[string]string{"app": "istiod", "istio.io/rev": "asm-1-27"}), metav1.CreateOptions{}))
	must(kc.AppsV1().Deployments("shop").Create(ctx, deployment("shop", "web", nil), metav1.CreateOptions{}))
	must(kc.AppsV1().Deployments("outside").Create(ctx, deployment("outside", "web", nil), metav1.CreateOptions{}))
	must(kc.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-asm-1-27"},
		Data: map[string]string{"mesh": "defaultConfig:\n  terminationDrainDuration: 20s\n"}}, metav1.CreateOptions{}))
	must(kc.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-asm-1-27"},
		Data: map[string]string{"values": `{"global":{"proxy":{"holdApplicationUntilProxyStarts":true}}}`}}, metav1.CreateOptions{}))

	run := func(check func(context.Context, *Env) ([]Result, error)) string {
		t.Helper()
		res, err := check(ctx, &Env{Kube: kc, Client: clients.Client, MeshNamespace: "istio-system"})
		if err != nil {
			t.Fatal(err)
		}
		return lines(res)
	}
	if got := run(checkVPAs); !strings.HasPrefix(got, "ok: the API server serves no VerticalPodAutoscaler") {
		t.Errorf("without the CRD: %s", got)
	}
	if got := run(checkHoldApplication); !strings.HasPrefix(got, "ok: revision asm-1-27 holds the app until the proxy starts for 1 workload(s)") {
		t.Errorf("hold from the injector values: %s", got)
	}
	if got := run(checkShutdown); !strings.HasPrefix(got, "warn: revision asm-1-27's mesh config sets terminationDrainDuration 20s for 1 workload(s)") {
		t.Errorf("drain from the mesh config: %s", got)
	}

	ext, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	must(ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, hazard.VPACRD(), metav1.CreateOptions{}))
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, err := kc.Discovery().ServerResourcesForGroupVersion("autoscaling.k8s.io/v1")
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the VPA API is never served: %v", err)
	}
	for _, ns := range []string{"shop", "outside"} {
		if err := clients.Client.Create(ctx, hazard.VPAObject(ns, "web-vpa", "web")); err != nil {
			t.Fatal(err)
		}
	}
	got := run(checkVPAs)
	if strings.Count(got, "\n") != 0 || !strings.HasPrefix(got, "warn: shop/Deployment/web: VerticalPodAutoscaler web-vpa (updateMode Auto)") {
		t.Errorf("with a VPA on shop/web and one outside the mesh: %s", got)
	}
}
