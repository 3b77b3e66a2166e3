package precheck

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// The resource check against a real API server (envtest): templates read
// in pages, one dry run for a template two namespaces share (in the one
// without a quota), a quota without room for the surge named, and a dry
// run the API server refuses (a ValidatingAdmissionPolicy) reported as
// unmeasured, never as a pass or a resource failure.
func TestResourcesAgainstAnAPIServer(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.Start(t)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc := clients.Kube
	must := mustOK(t)
	deployment := func(ns, name string, mem string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "istiod", "istio.io/rev": "asm-1-27"}},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "pause", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)}}}}}}}}
	}
	for _, ns := range []string{"istio-system", "open", "full", "outside"} {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if ns != "istio-system" && ns != "outside" {
			n.Labels = map[string]string{"istio.io/rev": "asm-1-27"}
		}
		must(kc.CoreV1().Namespaces().Create(ctx, n, metav1.CreateOptions{}))
	}
	// The revision's istiod (its labels are all the check reads of it).
	must(kc.AppsV1().Deployments("istio-system").Create(ctx, deployment("istio-system", "istiod-asm-1-27", "1Mi"), metav1.CreateOptions{}))
	must(kc.AppsV1().Deployments("open").Create(ctx, deployment("open", "web", "64Mi"), metav1.CreateOptions{}))
	must(kc.AppsV1().Deployments("full").Create(ctx, deployment("full", "web", "64Mi"), metav1.CreateOptions{}))
	must(kc.AppsV1().Deployments("full").Create(ctx, deployment("full", "solo", "32Mi"), metav1.CreateOptions{}))
	must(kc.AppsV1().Deployments("outside").Create(ctx, deployment("outside", "web", "64Mi"), metav1.CreateOptions{}))
	must(kc.CoreV1().ResourceQuotas("full").Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "tight"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}}, metav1.CreateOptions{}))

	// A node the new pods fit on.
	node, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	must(kc.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}))
	// A policy of the API server that refuses solo's pods.
	must(kc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "no-solo"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}}},
			Validations: []admissionv1.Validation{{Expression: "!has(object.metadata.labels) || !('app' in object.metadata.labels) || object.metadata.labels['app'] != 'solo'", Message: "solo is not welcome"}},
		}}, metav1.CreateOptions{}))
	must(kc.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "no-solo"},
		Spec:       admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "no-solo", ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}}}, metav1.CreateOptions{}))
	solo := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Labels: map[string]string{"app": "solo"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "pause"}}}}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := kc.CoreV1().Pods("open").Create(ctx, solo, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "solo is not welcome"), nil
	}); err != nil {
		t.Fatalf("the policy never refused solo: %v", err)
	}

	e := &Env{Kube: kc, Client: clients.Client, MeshNamespace: "istio-system"}
	res, err := checkResources(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		got = append(got, line(r))
	}
	joined := strings.Join(got, "\n")
	want := []string{
		"warn: full/Deployment/solo: unmeasured: the dry run of its pod with a native istio-proxy was refused: ",
		"warn: full/Deployment/web: ResourceQuota tight has no room for the restart's surge of 1 pod(s): it needs pods 1, the quota has pods 0 left (hard − used), short of pods 1 namespace=full workload=Deployment/web object=ResourceQuota/tight",
		"ok: open: ok: 1 workload(s), requests memory 128Mi → memory 128Mi namespace=open",
	}
	if len(got) != len(want) {
		t.Fatalf("results:\n%s", joined)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("result %d = %q\nwant prefix %q", i, got[i], w)
		}
	}
	// What the API server's own admission sees of each namespace: full
	// has its own quota (probed alone), open the binding of no-solo, which
	// selects every namespace, and not one that selects none.
	must(kc.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "no-solo", ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "none"}}}}}, metav1.CreateOptions{}))
	nss, err := kc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	apart, err := (&Env{Kube: kc}).namespacedAdmission(ctx, nss.Items)
	if err != nil || apart["full"] != "ns:full" || apart["open"] != "no-solo," {
		t.Errorf("namespaced admission: %v %v", apart, err)
	}
	// Nothing was created.
	for _, ns := range []string{"open", "full"} {
		pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) != 0 {
			t.Errorf("pods in %s after precheck: %v %d", ns, err, len(pods.Items))
		}
	}
}
