// Command meshaddon turns on Istio native sidecar mode across a cluster
// safely, and keeps it right. Installed as kubectl-meshaddon it is also the
// kubectl plugin `kubectl meshaddon`.
package main

import (
	"context"
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
		os.Exit(exitcode.Report(os.Stderr, err))
	}
}
