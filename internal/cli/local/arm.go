package local

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/testbed"
)

// newARMServerCommand is the local ARM endpoint daemon that `local up --arm` starts.
func newARMServerCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:    "arm-server",
		Short:  "Serve the local Azure Resource Manager endpoint (started by `local up --arm`)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tb, err := testbed.Open(name, streams.ErrOut)
			if err != nil {
				return err
			}
			srv, err := tb.ARMServer()
			if err != nil {
				return err
			}
			srv.Log = streams.ErrOut
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return srv.Serve(ctx)
		},
	}
	addNameFlag(cmd, &name)
	return cmd
}

// newARMEnvCommand prints the exports that point `--provider aks` at the
// local ARM endpoint.
func newARMEnvCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "arm-env",
		Short: "Print the shell exports that point --provider aks at the local ARM endpoint",
		Long: `Print the environment that makes every --provider aks command talk to the local
ARM endpoint of the test bed (meshaddon local up --arm): the service principal for
azidentity's environment credential, the authority host of the local token endpoint,
the subscription, resource group and managed cluster, and the endpoint with its CA.`,
		Example: `  eval "$(meshaddon local arm-env)"
  meshaddon feature show --provider aks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tb, err := testbed.Open(name, streams.ErrOut)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			id, err := tb.ARMIdentity()
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			fmt.Fprintf(streams.Out, "# The local ARM endpoint of test bed %q: eval \"$(meshaddon local arm-env --name %s)\"\n", name, name)
			for _, e := range id.Exports() {
				fmt.Fprintf(streams.Out, "export %s\n", shellQuote(e))
			}
			return nil
		},
	}
	addNameFlag(cmd, &name)
	return cmd
}

// shellQuote quotes the value of NAME=VALUE for a POSIX shell.
func shellQuote(assignment string) string {
	for i := range assignment {
		if assignment[i] == '=' {
			v := assignment[i+1:]
			out := "'"
			for _, r := range v {
				if r == '\'' {
					out += `'\''`
				} else {
					out += string(r)
				}
			}
			return assignment[:i+1] + out + "'"
		}
	}
	return assignment
}
