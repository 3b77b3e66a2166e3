package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshaddon/meshaddon/internal/testbed/cache"
)

// Clusters created at the same moment each get their own control plane:
// kwokctl alone gives two concurrent creations the same ports (both count
// down from 32767), so one apiserver answered for both with the other's
// certificate (TestAddon failed so under load), or one etcd could hold
// both clusters. Each kubeconfig must verify its own apiserver, and an
// object made in one cluster must not appear in the other.
func TestConcurrentClustersAreSeparate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := cache.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := c.Ensure(ctx, cache.Kubernetes, cache.Etcd, cache.Kwok)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvStateDir, t.TempDir())
	names := []string{"left", "right"}
	clusters := make([]*Cluster, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		cl, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.MkDir(); err != nil {
			t.Fatal(err)
		}
		clusters[i] = cl
		t.Cleanup(func() { _ = cl.Delete(context.Background(), bins) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = cl.Start(ctx, bins, 0)
		}()
	}
	wg.Wait()
	kubes := make([]kubernetes.Interface, len(names))
	for i, cl := range clusters {
		if errs[i] != nil {
			t.Fatalf("cluster %s: %v", names[i], errs[i])
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", cl.KubeconfigPath())
		if err != nil {
			t.Fatal(err)
		}
		if kubes[i], err = kubernetes.NewForConfig(cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := kubes[i].Discovery().ServerVersion(); err != nil {
			t.Fatalf("cluster %s does not answer with its own certificate: %v", names[i], err)
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-in-left"}}
	if _, err := kubes[0].CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubes[1].CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a namespace made in cluster left is seen in cluster right (err %v): they share a store", err)
	}
}
