// Command meshaddon-manager is the add-on manager alone: `meshaddon manager`
// without the rest of the CLI. A long-running controller should not carry
// kubectl's printers, the Azure SDK and the test bed: at 5,000 nodes two
// thirds of the manager's RSS were the CLI binary's own pages (bench/RESULTS.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/manager"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	flags := genericclioptions.NewConfigFlags(true)
	cmd := manager.NewCommand(flags, genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	cmd.Use = "meshaddon-manager"
	cmd.SilenceErrors, cmd.SilenceUsage = true, true // as meshaddon's root: main prints the error once
	flags.AddFlags(cmd.PersistentFlags())
	if err := cmd.ExecuteContext(ctx); err != nil {
		stop()
		os.Exit(exitcode.Report(os.Stderr, err))
	}
}
