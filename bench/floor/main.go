// Command floor is the floor of the status benchmark: it lists every pod of
// the cluster the way `meshaddon status -A` does — pages of 500, protobuf,
// the same client-side rate limits, three namespaces at a time — and does
// nothing with them but count. No command that shows every pod the same way
// can be much faster than this. --namespaces-at-once 0 makes it one
// sequential all-namespaces LIST instead (what the first runs called the
// floor; status can beat that one, since it overlaps namespaces).
//
//	floor --kubeconfig PATH [--chunk-size N] [--namespaces-at-once N]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshaddon/meshaddon/internal/kube"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to the kubeconfig")
	chunk := flag.Int64("chunk-size", 500, "pods per LIST call")
	atOnce := flag.Int("namespaces-at-once", 3, "namespaces listed at the same time, as status -A does; 0 for one all-namespaces LIST")
	flag.Parse()
	n, err := count(context.Background(), *kubeconfig, *chunk, *atOnce)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	fmt.Printf("%d pods\n", n)
}

func count(ctx context.Context, kubeconfig string, chunk int64, atOnce int) (int64, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return 0, err
	}
	// As internal/kube and internal/cli/status configure meshaddon's client.
	cfg.QPS, cfg.Burst = 50, 100
	kc, err := kubernetes.NewForConfig(kube.Protobuf(cfg))
	if err != nil {
		return 0, err
	}
	if atOnce <= 0 {
		return countIn(ctx, kc, "", chunk)
	}
	nss, err := kc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list namespaces: %w", err)
	}
	var total atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(atOnce)
	for _, ns := range nss.Items {
		g.Go(func() error {
			n, err := countIn(ctx, kc, ns.Name, chunk)
			total.Add(n)
			return err
		})
	}
	err = g.Wait()
	return total.Load(), err
}

func countIn(ctx context.Context, kc kubernetes.Interface, namespace string, chunk int64) (int64, error) {
	var n int64
	opts := metav1.ListOptions{Limit: chunk}
	for {
		list, err := kc.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("list pods: %w", err)
		}
		n += int64(len(list.Items))
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}
