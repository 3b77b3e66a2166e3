// Package rollout judges whether a workload's rollout is complete exactly as
// `kubectl rollout status` does, by calling kubectl's own status viewers.
package rollout

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/kubectl/pkg/polymorphichelpers"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/meshaddon/meshaddon/internal/kube"
)

// Status reports kubectl's message for obj and whether its rollout is done.
// err is set when the rollout cannot finish (e.g. it exceeded its progress
// deadline) or obj is not a workload kubectl can follow.
func Status(obj client.Object) (string, bool, error) {
	gvk, err := apiutil.GVKForObject(obj, kube.Scheme)
	if err != nil {
		return "", false, err
	}
	viewer, err := polymorphichelpers.StatusViewerFor(gvk.GroupKind())
	if err != nil {
		return "", false, err
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return "", false, fmt.Errorf("convert %s: %w", obj.GetName(), err)
	}
	msg, done, err := viewer.Status(&unstructured.Unstructured{Object: content}, 0)
	return strings.TrimSpace(msg), done, err
}
