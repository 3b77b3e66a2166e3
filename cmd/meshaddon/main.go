// Command meshaddon turns on Istio native sidecar mode across a cluster
// safely, and keeps it right. Installed as kubectl-meshaddon it is also the
// kubectl plugin `kubectl meshaddon`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/root"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	cmd := root.NewCommand(filepath.Base(os.Args[0]), streams)
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		if !errors.Is(err, exitcode.ErrReported) {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		var ec *exitcode.Error
		if errors.As(err, &ec) {
			os.Exit(ec.Code)
		}
		os.Exit(1)
	}
}
