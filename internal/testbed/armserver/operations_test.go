package armserver

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
	"github.com/meshaddon/meshaddon/internal/testbed/stage"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// TestOperationsOutliveRestart runs the endpoint on a real API server
// (envtest; the test marks nodes Ready as kwok would): an agent pool start
// is accepted, the endpoint stops while it runs (the nodes are not Ready
// yet), and the next endpoint answers the same operation URL, finishes the
// start once the nodes are Ready, and still answers for the finished
// operation after another restart. An upgrade stopped while its surge node
// starts is finished with that surge node, not another.
func TestOperationsOutliveRestart(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.Start(t)
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kcs := clients.Kube

	// A stopped pool of two nodes, as the test bed's Stop leaves it.
	var nodes []string
	for _, name := range []string{"aks-old-vmss000000", "aks-old-vmss000001"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{nodepool.PoolLabel: "old", stage.PowerStateLabel: stage.PowerStopped}},
			Spec: corev1.NodeSpec{Unschedulable: true}}
		n, err := kcs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.NodeInfo.KubeletVersion = "v1.34.4"
		if _, err := kcs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, name)
	}
	// setReady plays kwok: the named nodes (all of them for none) are Ready.
	setReady := func(names ...string) {
		t.Helper()
		list, err := kcs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range list.Items {
			if len(names) > 0 && !slices.Contains(names, n.Name) {
				continue
			}
			// The endpoint that was stopped may still be patching the node.
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				n, err := kcs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
				_, err = kcs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	id, _, err := Ensure(t.TempDir(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	hc, err := azure.HTTPClient(id.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	// serve runs one endpoint process's worth of the server; stop ends it
	// and waits until the port is free.
	serve := func() (stop func()) {
		s := New(id, kcs, clients.Client, &nodepool.Manager{Client: kcs}, "aks-istio-system")
		s.OperationsNamespace = "meshaddon-system"
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Serve(sctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := hc.Get(id.Endpoint() + "/metadata/endpoints")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the endpoint does not answer: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	stop := serve()
	tok := tokenFor(t, &Server{ID: id}, hc)
	poolURL := func(name string) string {
		return id.Endpoint() + "/subscriptions/" + id.SubscriptionID + "/resourceGroups/" + id.ResourceGroup + "/providers/Microsoft.ContainerService/managedClusters/" + id.Cluster + "/agentPools/" + name + "?api-version=2025-10-01"
	}
	// put starts an operation on a pool and returns its URL.
	put := func(name, body string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, poolURL(name), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		opURL := resp.Header.Get("Azure-AsyncOperation")
		if resp.StatusCode != http.StatusOK || opURL == "" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("PUT %s: %d, Azure-AsyncOperation %q, Retry-After %q", body, resp.StatusCode, opURL, resp.Header.Get("Retry-After"))
		}
		return opURL
	}
	pool := poolURL("old")
	opURL := put("old", `{"properties":{"powerState":{"code":"Running"}}}`)
	status := func() string {
		t.Helper()
		code, out := call(t, hc, http.MethodGet, opURL, tok, "")
		if code != http.StatusOK {
			t.Fatalf("poll %s: %d %v", opURL, code, out)
		}
		s, _ := out["status"].(string)
		return s
	}
	if got := status(); got != "InProgress" {
		t.Fatalf("the start finished with no Ready node: %s", got)
	}

	stop() // as kill: the start is still waiting for Ready nodes
	setReady(nodes...)

	stop = serve()
	if code, out := call(t, hc, http.MethodGet, pool, tok, ""); code != http.StatusOK {
		t.Errorf("GET the pool after the restart: %d %v", code, out)
	}
	waitSucceeded := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := status(); got != "Succeeded"; got = status() {
			if got != "InProgress" || time.Now().After(deadline) {
				t.Fatalf("the operation after the restart: %s, want Succeeded", got)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitSucceeded()
	for _, name := range nodes {
		n, err := kcs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Labels[stage.PowerStateLabel] != "" || n.Spec.Unschedulable {
			t.Errorf("node %s is still stopped after the resumed start: %v, unschedulable %t", name, n.Labels, n.Spec.Unschedulable)
		}
	}
	stop()

	stop = serve()
	if got := status(); got != "Succeeded" {
		t.Errorf("a finished operation after another restart: %s", got)
	}

	// An upgrade of a one-node pool: its surge node is created, and the
	// endpoint stops while it waits for the surge node to be Ready.
	up := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "aks-up-vmss000000", Labels: map[string]string{nodepool.PoolLabel: "up"}}}
	if up, err = kcs.CoreV1().Nodes().Create(ctx, up, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	up.Status.NodeInfo.KubeletVersion = "v1.33.0"
	if _, err := kcs.CoreV1().Nodes().UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	setReady(up.Name)
	opURL = put("up", `{"properties":{"orchestratorVersion":"1.34.4"}}`)
	upNodes := func() []corev1.Node {
		t.Helper()
		list, err := kcs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodepool.PoolLabel + "=up"})
		if err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(upNodes()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no surge node for the upgrade")
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	setReady()
	stop = serve()
	defer stop()
	waitSucceeded()
	if got := upNodes(); len(got) != 1 || got[0].Status.NodeInfo.KubeletVersion != "v1.34.4" {
		var names []string
		for _, n := range got {
			names = append(names, n.Name+"@"+n.Status.NodeInfo.KubeletVersion)
		}
		t.Errorf("pool up after the resumed upgrade: %v, want its one node on v1.34.4", names)
	}
}
