package migrate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/migrate"
	"github.com/meshaddon/meshaddon/internal/precheck"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

const meshNS = "aks-istio-system"

// TestRequiredAccess runs migrate and precheck's Permissions check on a real
// API server with RBAC, as a user granted exactly migrate.RequiredAccess,
// then once for each entry as a user granted all the others: the first must
// not be Forbidden anywhere and precheck must pass; each of the others must
// be Forbidden that very request and precheck must name exactly it. So the
// list is what migrate does, and precheck fails exactly when migrate would
// be Forbidden. No controller runs here, so no rollout completes: each
// restart ends in "no progress" after its short timeout, having made every
// request a real run makes (get, patch, list and watch, the pods).
func TestRequiredAccess(t *testing.T) {
	ctx := context.Background()
	env := testenv.Environment(t)
	cfg := env.Config
	admin := kubernetes.NewForConfigOrDie(cfg)
	workloads := world(t, admin)

	// migrate -A, as precheck asks, without each entry in turn; and
	// migrate -n shop, whose list adds the istiods' namespace.
	type testCase struct {
		name    string
		scope   migrate.Scope
		granted []migrate.Access
		denied  *migrate.Access
	}
	var cases []testCase
	for _, scope := range []migrate.Scope{{MeshNamespace: meshNS}, {Namespace: "shop", MeshNamespace: meshNS}} {
		access := migrate.RequiredAccess(scope)
		name := "-A"
		if scope.Namespace != "" {
			name = "-n " + scope.Namespace
		}
		cases = append(cases, testCase{name + " granted exactly the list", scope, access, nil})
		for i := range access {
			if scope.Namespace != "" && access[i].Namespace != meshNS {
				continue // as with -A
			}
			others := append(append([]migrate.Access{}, access[:i]...), access[i+1:]...)
			cases = append(cases, testCase{name + " granted all but " + access[i].String(), scope, others, &access[i]})
		}
	}
	for n, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			unmark(t, admin, workloads)
			user := fmt.Sprintf("operator-%d", n)
			kc := grant(t, env, admin, user, tc.granted)

			checks := []precheck.Check{}
			for _, ch := range precheck.Checks {
				if ch.Group == "Permissions" {
					checks = append(checks, ch)
				}
			}
			// precheck asks for -A.
			rep := precheck.Run(ctx, &precheck.Env{Kube: kc, MeshNamespace: meshNS}, checks)
			allNamespaces := tc.scope.Namespace == ""
			var got []string
			for _, g := range rep.Groups {
				for _, ch := range g.Checks {
					for _, r := range ch.Results {
						got = append(got, string(r.Status)+": "+r.Message)
					}
				}
			}
			forbidden := migrateAs(t, kc, tc.scope)
			if tc.denied == nil {
				if allNamespaces && !rep.Success {
					t.Errorf("precheck with every access migrate needs: %v", got)
				}
				if forbidden != "" {
					t.Errorf("migrate granted exactly RequiredAccess: %s", forbidden)
				}
				for _, w := range workloads {
					if w.mark(t, admin) == "" {
						t.Errorf("%s was not restarted", w.name)
					}
				}
				return
			}
			want := "you may not " + tc.denied.String()
			if allNamespaces && (rep.Success || len(got) != 1 || !strings.HasSuffix(got[0], want)) {
				t.Errorf("precheck without %s: %v, want it named alone", tc.denied, got)
			}
			verb := fmt.Sprintf("cannot %s resource %q", tc.denied.Verb, tc.denied.Resource)
			if !strings.Contains(forbidden, verb) {
				t.Errorf("migrate without %s: %q, want Forbidden %s", tc.denied, forbidden, verb)
			}
		})
	}
}

// migrateAs builds the plan and runs it as kc, and returns the first
// Forbidden error it met ("" for none).
func migrateAs(t *testing.T, kc kubernetes.Interface, scope migrate.Scope) string {
	t.Helper()
	ctx := context.Background()
	plan, err := migrate.BuildPlan(ctx, kc, scope)
	if err != nil {
		if strings.Contains(err.Error(), "forbidden") {
			return err.Error()
		}
		t.Fatalf("plan: %v", err)
	}
	if plan.Restarts() != 3 {
		t.Fatalf("plan: %d restarts, want 3:\n%s", plan.Restarts(), plan)
	}
	results := (&migrate.Runner{Kube: kc, Concurrency: 3, Timeout: time.Second}).Run(ctx, plan)
	for _, r := range results {
		if strings.Contains(r.Message, "forbidden") {
			return r.Message
		}
		if r.Outcome != migrate.Failed || !strings.Contains(r.Message, "no progress") {
			t.Errorf("%s: %s %s, want no progress (no controller runs here)", r.Workload, r.Outcome, r.Message)
		}
	}
	return ""
}

type workload struct {
	kind, name string
}

func (w workload) mark(t *testing.T, kc kubernetes.Interface) string {
	t.Helper()
	var obj metav1.Object
	var err error
	ctx := context.Background()
	switch w.kind {
	case "Deployment":
		obj, err = kc.AppsV1().Deployments("shop").Get(ctx, w.name, metav1.GetOptions{})
	case "StatefulSet":
		obj, err = kc.AppsV1().StatefulSets("shop").Get(ctx, w.name, metav1.GetOptions{})
	case "DaemonSet":
		obj, err = kc.AppsV1().DaemonSets("shop").Get(ctx, w.name, metav1.GetOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return obj.GetAnnotations()[migrate.RestartAnnotation]
}

// unmark removes migrate's mark, so that each case restarts every workload.
func unmark(t *testing.T, kc kubernetes.Interface, ws []workload) {
	t.Helper()
	ctx := context.Background()
	patch := []byte(`{"metadata":{"annotations":{"` + migrate.RestartAnnotation + `":null}}}`)
	for _, w := range ws {
		var err error
		switch w.kind {
		case "Deployment":
			_, err = kc.AppsV1().Deployments("shop").Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{})
		case "StatefulSet":
			_, err = kc.AppsV1().StatefulSets("shop").Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{})
		case "DaemonSet":
			_, err = kc.AppsV1().DaemonSets("shop").Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// world creates what migrate reads: an istiod injecting native and one
// leaving ENABLE_NATIVE_SIDECARS unset (so the nodes are read), a mesh
// namespace, and a Deployment, a StatefulSet and a DaemonSet, each with a
// classic pod as its controller would have made it.
func world(t *testing.T, kc kubernetes.Interface) []workload {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: meshNS}}, metav1.CreateOptions{}))
	for rev, env := range map[string][]corev1.EnvVar{"asm-1-27": {{Name: "ENABLE_NATIVE_SIDECARS", Value: "true"}}, "asm-1-26": nil} {
		labels := map[string]string{"app": "istiod", inventory.RevisionLabel: rev}
		must(kc.AppsV1().Deployments(meshNS).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "istiod-" + rev, Labels: labels},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "istiod", Env: env}}},
			}},
		}, metav1.CreateOptions{}))
	}
	must(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{inventory.RevisionLabel: "asm-1-27"}}}, metav1.CreateOptions{}))

	template := func(app string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: app, Image: "app"}}}}
	}
	selector := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	must(kc.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: selector("web"), Template: template("web")}}, metav1.CreateOptions{}))
	must(kc.AppsV1().StatefulSets("shop").Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: selector("db"), Template: template("db")}}, metav1.CreateOptions{}))
	must(kc.AppsV1().DaemonSets("shop").Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DaemonSetSpec{Selector: selector("agent"), Template: template("agent")}}, metav1.CreateOptions{}))

	classicPod := func(app, name, ownerKind, owner string, labels map[string]string) {
		labels["app"] = app
		labels[inventory.RevisionLabel] = "asm-1-27"
		must(kc.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: ownerKind, Name: owner, UID: types.UID(owner), Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: app, Image: "app"}, {Name: inventory.ProxyContainer, Image: "proxyv2"}}},
		}, metav1.CreateOptions{}))
	}
	classicPod("web", "web-5d9c8b7f6-abcde", "ReplicaSet", "web-5d9c8b7f6", map[string]string{"pod-template-hash": "5d9c8b7f6"})
	classicPod("db", "db-0", "StatefulSet", "db", map[string]string{})
	classicPod("agent", "agent-x7k2p", "DaemonSet", "agent", map[string]string{})
	return []workload{{"Deployment", "web"}, {"StatefulSet", "db"}, {"DaemonSet", "agent"}}
}

// grant makes a user with exactly granted (a ClusterRole for what is in
// every namespace, a Role per namespace) and waits until the API server's
// authorizer applies it.
func grant(t *testing.T, env *envtest.Environment, admin kubernetes.Interface, user string, granted []migrate.Access) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	rules := map[string][]rbacv1.PolicyRule{}
	for _, a := range granted {
		rules[a.Namespace] = append(rules[a.Namespace], rbacv1.PolicyRule{APIGroups: []string{a.Group}, Resources: []string{a.Resource}, Verbs: []string{a.Verb}})
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	for ns, r := range rules {
		var err error
		if ns == "" {
			_, err = admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: r}, metav1.CreateOptions{})
			if err == nil {
				_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user}, Subjects: subject,
					RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user}}, metav1.CreateOptions{})
			}
		} else {
			_, err = admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: r}, metav1.CreateOptions{})
			if err == nil {
				_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user}, Subjects: subject,
					RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user}}, metav1.CreateOptions{})
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	u, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc := kubernetes.NewForConfigOrDie(u.Config())
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, a := range granted {
			r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authv1.SubjectAccessReview{Spec: authv1.SubjectAccessReviewSpec{
				User: user, ResourceAttributes: a.Attributes()}}, metav1.CreateOptions{})
			if err != nil || !r.Status.Allowed {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("grant %s: %v", user, err)
	}
	return kc
}
