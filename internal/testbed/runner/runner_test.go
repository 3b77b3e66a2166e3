package runner

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
)

// A pod is served by the process of its own template: the key is the same
// for the template and its pods whatever ports and name a process gets,
// and changes with what istiod runs with.
func TestTemplateKey(t *testing.T) {
	r := &Runner{Kubeconfig: "/k"}
	spec := func(native string) corev1.PodSpec {
		return corev1.PodSpec{ServiceAccountName: "istiod", Containers: []corev1.Container{{
			Name: istiod.Container, Args: []string{"discovery", "--log_output_level=default:info"},
			Env: []corev1.EnvVar{
				{Name: "ENABLE_NATIVE_SIDECARS", Value: native},
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			},
		}}}
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod-asm-1-27", Namespace: mesh.Namespace, Labels: map[string]string{mesh.RevisionLabel: "asm-1-27"}}}
	d.Spec.Template.Spec = spec("false")

	if r.templateKey(d, spec("false")) != r.templateKey(d, d.Spec.Template.Spec) {
		t.Error("a pod of the template has another key")
	}
	if r.templateKey(d, spec("true")) == r.templateKey(d, d.Spec.Template.Spec) {
		t.Error("a changed ENABLE_NATIVE_SIDECARS keeps the key: no roll")
	}
	a, _ := r.command(d, d.Spec.Template.Spec, mesh.Ports{HTTPS: 1, GRPC: 2, SecureGRPC: 3, HTTP: 4, Monitoring: 5, Ctrlz: 6}, "p1")
	b, _ := r.command(d, d.Spec.Template.Spec, mesh.Ports{HTTPS: 11, GRPC: 12, SecureGRPC: 13, HTTP: 14, Monitoring: 15, Ctrlz: 16}, "p2")
	if hash(a, nil) == hash(b, nil) {
		t.Error("two processes of one template got the same command line: they would share ports")
	}
}
