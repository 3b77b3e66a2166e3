// Package sample deploys the demo workload: a sleep client and an httpbin
// server in a namespace that opts into a mesh revision, as Istio's samples do.
package sample

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
)

// DefaultNamespace is where the sample goes unless told otherwise.
const DefaultNamespace = "sample"

// Deploy creates (or leaves as they are) the namespace, labelled for
// revision, and the sleep and httpbin Deployments; it returns what it created.
func Deploy(ctx context.Context, kube kubernetes.Interface, namespace, revision string) ([]string, error) {
	var created []string
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{mesh.RevisionLabel: revision}}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err == nil {
		created = append(created, "namespace/"+namespace)
	} else if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	for _, d := range []*appsv1.Deployment{
		deployment(namespace, "sleep", "curlimages/curl:8.10.1", []string{"/bin/sleep", "infinity"}, 0),
		deployment(namespace, "httpbin", "kennethreitz/httpbin", nil, 80),
	} {
		if _, err := kube.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err == nil {
			created = append(created, "deployment/"+d.Name)
		} else if !apierrors.IsAlreadyExists(err) {
			return created, fmt.Errorf("create deployment %s/%s: %w", namespace, d.Name, err)
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "httpbin", Namespace: namespace, Labels: map[string]string{"app": "httpbin"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "httpbin"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8000, TargetPort: intstr.FromInt32(80)}},
		},
	}
	if _, err := kube.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err == nil {
		created = append(created, "service/httpbin")
	} else if !apierrors.IsAlreadyExists(err) {
		return created, fmt.Errorf("create service %s/httpbin: %w", namespace, err)
	}
	return created, nil
}

func deployment(namespace, name, image string, command []string, port int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	c := corev1.Container{Name: name, Image: image, Command: command}
	if port > 0 {
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: port}}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
			},
		},
	}
}
