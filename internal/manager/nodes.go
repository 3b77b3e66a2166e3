package manager

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// slimNode is the cache transform for nodes: it keeps what the decision
// reads (pool labels, kubelet version, the Ready condition's status), the
// guard's sidecar-containers label, and
// drops the rest, so the manager's memory stays flat with thousands of nodes.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:            n.Name,
		UID:             n.UID,
		ResourceVersion: n.ResourceVersion,
		Labels:          map[string]string{},
	}}
	for _, k := range []string{meshversion.PoolLabel, meshversion.LegacyPoolLabel, meshversion.SidecarContainersLabel} {
		if v, ok := n.Labels[k]; ok {
			slim.Labels[k] = v
		}
	}
	slim.Status.NodeInfo.KubeletVersion = n.Status.NodeInfo.KubeletVersion
	slim.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: meshversion.NodeReady(n)}}
	return slim, nil
}

// nodeFacts turns cached nodes into the decision's input.
func nodeFacts(nodes []corev1.Node) []meshversion.Node {
	out := make([]meshversion.Node, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		out[i] = meshversion.NodeOf(n)
	}
	return out
}

// nodeFactChanged passes node events that can change a decision: a node
// joining or leaving, or a change of pool, kubelet version or readiness.
// Heartbeats, which update every node all the time, are dropped (the slim
// node keeps no timestamps, so they compare equal).
var nodeFactChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return !equality.Semantic.DeepEqual(o.Labels, n.Labels) ||
			o.Status.NodeInfo.KubeletVersion != n.Status.NodeInfo.KubeletVersion ||
			meshversion.NodeReady(o) != meshversion.NodeReady(n)
	},
}
