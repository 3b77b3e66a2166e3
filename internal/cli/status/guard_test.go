package status

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/cli/output"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testenv"
	"github.com/spf13/cobra"
)

// status against a real API server (envtest), guard on: below the table it
// names the native pods on excluded nodes and those a restart would make
// native (precheck's finding: the uninjected pod in a native namespace
// too); pods on capable nodes, DaemonSet pods and pods kept classic are not
// named.
func TestStatusNamesPodsOnExcludedNodes(t *testing.T) {
	ctx := context.Background()
	env := testenv.Environment(t)
	cfg := env.Config
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc, cl := clients.Kube, clients.Client
	for name, capable := range map[string]string{"new-1": "true", "old-1": "false"} {
		if _, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{meshversion.SidecarContainersLabel: capable}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"istio.io/rev": "asm-1-27"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	profile := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName},
		Spec: v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}, OldNodes: v1alpha1.OldNodesGuard}}
	if err := cl.Create(ctx, profile); err != nil {
		t.Fatal(err)
	}
	profile.Status.Revisions = []v1alpha1.RevisionStatus{{Name: "asm-1-27", Mode: "native", Reason: "Test", Message: "native"}}
	profile.Status.Guard = &v1alpha1.GuardStatus{Healthy: true, Message: "guarding", ExcludedNodes: 1, Excluded: []string{"old-1"}, CapableNodes: 1}
	if err := cl.Status().Update(ctx, profile); err != nil {
		t.Fatal(err)
	}
	always := ptr.To(corev1.ContainerRestartPolicyAlways)
	native := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy", Image: "proxy", RestartPolicy: always}}
	}
	classic := func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "proxy"})
	}
	for _, c := range []struct {
		name, node, owner string
		mode              func(*corev1.Pod)
		override          string
	}{
		{"stuck", "old-1", "", native, ""},
		{"mover", "old-1", "", classic, ""},
		{"kept-classic", "old-1", "", classic, "false"},
		{"daemon", "old-1", "DaemonSet", classic, ""},
		{"plain", "old-1", "", func(*corev1.Pod) {}, ""},
		{"fine", "new-1", "", native, ""},
	} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: "shop", Labels: map[string]string{"istio.io/rev": "asm-1-27"}},
			Spec: corev1.PodSpec{NodeName: c.node, Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		c.mode(p)
		if c.override != "" {
			p.Annotations = map[string]string{"sidecar.istio.io/nativeSidecar": c.override}
		}
		if c.owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: c.owner, Name: "agent", UID: "u1", Controller: ptr.To(true)}}
		}
		if _, err := kc.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	for _, workloads := range []bool{false, true} {
		var out, errOut bytes.Buffer
		o := &Options{IOStreams: genericiooptions.IOStreams{Out: &out, ErrOut: &errOut}, ChunkSize: 2, Workloads: workloads, Output: testOutput(t, ""), kube: kc, client: cl, namespace: "shop"}
		if err := o.Run(ctx); err != nil {
			t.Fatal(err)
		}
		got := errOut.String()
		for _, want := range []string{
			"Placement guard: healthy; native pods are kept off 1 node(s) (old-1)",
			"Placement guard: 1 native pod(s) on excluded nodes, whose kubelet cannot run sidecar containers: shop/stuck on old-1; they were placed before the guard was on",
			// precheck's rule: the uninjected pod's namespace injects a
			// native revision, so its restart is native too.
			"Placement guard: 2 pod(s) on excluded nodes would be native when restarted, and the guard will keep them off those nodes: shop/mover on old-1, shop/plain on old-1.",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("workloads=%t: stderr lacks %q:\n%s", workloads, want, got)
			}
		}
		for _, not := range []string{"kept-classic", "daemon", "fine"} {
			if strings.Contains(got, "shop/"+not) {
				t.Errorf("workloads=%t: stderr names %s:\n%s", workloads, not, got)
			}
		}
	}

	// Someone who may read the mesh but list pods only in shop: the table,
	// and the excluded nodes' pods said to be unchecked, not left out.
	got := statusAs(t, env, kc, "shop-viewer", []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes", "namespaces"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"meshprofiles"}, Verbs: []string{"get", "list"}},
	})
	if want := "Placement guard: pods on excluded nodes: unchecked: "; !strings.Contains(got, want) || !strings.Contains(got, "run this as someone who may list pods cluster-wide.") {
		t.Errorf("status without leave to list pods cluster-wide: stderr lacks %q and its hint:\n%s", want, got)
	}

	// -o json: stdout stays the list; nothing about the guard is printed.
	var out, errOut bytes.Buffer
	o := &Options{IOStreams: genericiooptions.IOStreams{Out: &out, ErrOut: &errOut}, ChunkSize: 500, Output: testOutput(t, "json"), kube: kc, client: cl, namespace: "shop"}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errOut.String(), "Placement guard") || !strings.Contains(out.String(), `"name": "stuck"`) {
		t.Errorf("-o json: stdout %q stderr %q", out.String(), errOut.String())
	}
}

// statusAs runs status -n shop as a user with the rules given cluster-wide
// and leave to list pods in shop only; it returns stderr.
func statusAs(t *testing.T, env *envtest.Environment, kc kubernetes.Interface, name string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	ctx := context.Background()
	if _, err := kc.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: name}}
	if _, err := kc.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.RbacV1().Roles("shop").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.RbacV1().RoleBindings("shop").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clients, err := kube.ForConfig(user.Config())
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	o := &Options{IOStreams: genericiooptions.IOStreams{Out: &out, ErrOut: &errOut}, ChunkSize: 500, Output: testOutput(t, ""), kube: clients.Kube, client: clients.Client, namespace: "shop"}
	if err := o.Run(ctx); err != nil {
		t.Fatalf("status as %s: %v", name, err)
	}
	if !strings.Contains(out.String(), "stuck") {
		t.Errorf("status as %s printed no table:\n%s", name, out.String())
	}
	return errOut.String()
}

// testOutput is status's -o set to format, as the command parses it.
func testOutput(t *testing.T, format string) *output.Flags {
	t.Helper()
	cmd := &cobra.Command{}
	f := output.Add(cmd, outputOptions)
	if format != "" {
		if err := cmd.Flags().Set("output", format); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	return f
}
