// Command floor is the floor of the status benchmark: it lists every pod of
// the cluster the way `meshaddon status -A` does — pages of 500, protobuf,
// the same client-side rate limits — and does nothing with them but count.
// No command that shows every pod can be much faster than this.
//
//	floor --kubeconfig PATH [--chunk-size N]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshaddon/meshaddon/internal/kube"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to the kubeconfig")
	chunk := flag.Int64("chunk-size", 500, "pods per LIST call")
	flag.Parse()
	n, err := count(context.Background(), *kubeconfig, *chunk)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	fmt.Printf("%d pods\n", n)
}

func count(ctx context.Context, kubeconfig string, chunk int64) (int, error) {
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
	n := 0
	opts := metav1.ListOptions{Limit: chunk}
	for {
		list, err := kc.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("list pods: %w", err)
		}
		n += len(list.Items)
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}
