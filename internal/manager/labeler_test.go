package manager_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/internal/meshversion"
)

func nodeLabel(t *testing.T, name string) string {
	t.Helper()
	var n corev1.Node
	if err := cl.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	v, ok := n.Labels[meshversion.SidecarContainersLabel]
	if !ok {
		return "<absent>"
	}
	return v
}

func waitNodeLabel(t *testing.T, name, want string) {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("node %s labelled %s=%s", name, meshversion.SidecarContainersLabel, want), func() (bool, string) {
		got := nodeLabel(t, name)
		return got == want, got
	})
}

// TestNodeLabelsConverge: the manager labels every node by whether its
// kubelet runs sidecar containers, follows upgrades, puts back a label
// someone changed, and touches nothing else on the node.
func TestNodeLabelsConverge(t *testing.T) {
	ctx := context.Background()
	addNode(t, "lbl-new", "new", "v1.34.4", true)
	addNode(t, "lbl-old", "old", "v1.28.9", true)
	addNode(t, "lbl-unknown", "old", "", false)
	waitNodeLabel(t, "lbl-new", "true")
	waitNodeLabel(t, "lbl-old", "false")
	waitNodeLabel(t, "lbl-unknown", "false")

	// The pool is upgraded: the label flips.
	setNodeStatus(t, "lbl-old", func(n *corev1.Node) { n.Status.NodeInfo.KubeletVersion = "v1.34.4" })
	waitNodeLabel(t, "lbl-old", "true")

	// Someone changes the label by hand: it is put back.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+meshversion.SidecarContainersLabel+`":"true","team":"a"}}}`))
	if err := cl.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "lbl-unknown"}}, patch); err != nil {
		t.Fatal(err)
	}
	waitNodeLabel(t, "lbl-unknown", "false")
	var n corev1.Node
	if err := cl.Get(ctx, client.ObjectKey{Name: "lbl-unknown"}, &n); err != nil {
		t.Fatal(err)
	}
	if n.Labels["team"] != "a" || n.Labels[meshversion.PoolLabel] != "old" {
		t.Errorf("the labeler touched other labels: %v", n.Labels)
	}
}

// TestNodeLabelsConvergeAtScale: 250 old nodes joining at once are all
// labelled within 5 s (the target).
func TestNodeLabelsConvergeAtScale(t *testing.T) {
	ctx := context.Background()
	const count = 250
	for i := range count {
		name := fmt.Sprintf("lbl-scale-%03d", i)
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{meshversion.PoolLabel: "scale"}}}
		if err := cl.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Delete(context.Background(), n) })
	}
	start := time.Now()
	eventually(t, 5*time.Second, "250 nodes labelled", func() (bool, string) {
		var list corev1.NodeList
		if err := cl.List(ctx, &list, client.MatchingLabels{meshversion.PoolLabel: "scale", meshversion.SidecarContainersLabel: "false"}); err != nil {
			return false, err.Error()
		}
		return len(list.Items) == count, fmt.Sprintf("%d labelled", len(list.Items))
	})
	t.Logf("250 nodes labelled in %s", time.Since(start))
}
