package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/internal/istiod"
)

// FreezeIstiod installs a ValidatingAdmissionPolicy refusing every update
// of the istiod Deployments in namespace with msg, as a cluster's own policy
// might, and waits until the API server enforces it (it loads policies
// asynchronously: a dry-run update of an istiod tells). unfreeze removes it
// and waits until updates pass again; it also runs when the test ends.
func FreezeIstiod(t testing.TB, cl client.Client, namespace, msg string) (unfreeze func()) {
	t.Helper()
	ctx := context.Background()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-istiod"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!(object.metadata.namespace == '" + namespace + "' && object.metadata.name.startsWith('istiod-'))",
				Message:    msg,
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-istiod"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	for _, o := range []client.Object{policy, binding} {
		if err := cl.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	probe := func(ctx context.Context) error {
		var list appsv1.DeploymentList
		sel := client.MatchingLabels{strings.Split(istiod.Label, "=")[0]: strings.Split(istiod.Label, "=")[1]}
		if err := cl.List(ctx, &list, client.InNamespace(namespace), sel); err != nil || len(list.Items) == 0 {
			return fmt.Errorf("list istiod: %v (%d found)", err, len(list.Items))
		}
		d := &list.Items[0]
		d.Spec.Template.Annotations = map[string]string{"meshaddon.dev/probe": time.Now().String()}
		return cl.Update(ctx, d, client.DryRunAll)
	}
	waitProbe := func(what string, want func(error) bool) {
		t.Helper()
		var last error
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			last = probe(ctx)
			return want(last), nil
		})
		if err != nil {
			t.Fatalf("%s: not within 30s: %v", what, last)
		}
	}
	waitProbe("the policy refuses istiod updates", func(err error) bool { return err != nil && strings.Contains(err.Error(), msg) })
	done := false
	unfreeze = func() {
		if done {
			return
		}
		done = true
		_ = cl.Delete(ctx, binding)
		_ = cl.Delete(ctx, policy)
		waitProbe("istiod updates pass again", func(err error) bool { return err == nil })
	}
	t.Cleanup(unfreeze)
	return unfreeze
}
