package local

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/armserver"
)

// newARMServerCommand is the local ARM endpoint daemon that `local up --arm` starts.
func newARMServerCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return newDaemonCommand(streams, "arm-server", "Serve the local Azure Resource Manager endpoint (started by `local up --arm`)",
		func(ctx context.Context, tb *testbed.Testbed) error {
			srv, err := tb.ARMServer()
			if err != nil {
				return err
			}
			srv.Log = streams.ErrOut
			return srv.Serve(ctx)
		})
}

// newARMEnvCommand prints the exports that point `--provider aks` (or,
// with --az, the Azure CLI) at the local ARM endpoint.
func newARMEnvCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	var az bool
	cmd := &cobra.Command{
		Use:   "arm-env",
		Short: "Print the shell exports that point --provider aks (or, with --az, the Azure CLI) at the local ARM endpoint",
		Long: `Print the environment that makes every --provider aks command talk to the local
ARM endpoint of the test bed (meshaddon local up --arm): the service principal for
azidentity's environment credential, the authority host of the local token endpoint,
the subscription, resource group and managed cluster, and the endpoint with its CA.

With --az, print what the Azure CLI needs instead, to type the document's az
commands as written: the endpoint's CA for az's HTTP library (REQUESTS_CA_BUNDLE),
RESOURCE_GROUP and CLUSTER, and the one-time az cloud register, az cloud set and
az login --service-principal (az keeps them in AZURE_CONFIG_DIR, default ~/.azure;
az cloud set --name AzureCloud and unset REQUESTS_CA_BUNDLE go back to Azure).`,
		Example: `  eval "$(meshaddon local arm-env)"
  meshaddon feature show --provider aks

  eval "$(meshaddon local arm-env --az)"
  az aks show --resource-group $RESOURCE_GROUP --name $CLUSTER -o json | jq ".kubernetesVersion"`,
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
			if az {
				fmt.Fprintf(streams.Out, "# The Azure CLI against the local ARM endpoint of test bed %q: eval \"$(meshaddon local arm-env --az --name %s)\"\n", name, name)
				fmt.Fprint(streams.Out, azureCLI(id, "meshaddon-"+name))
				return nil
			}
			fmt.Fprintf(streams.Out, "# The local ARM endpoint of test bed %q: eval \"$(meshaddon local arm-env --name %s)\"\n", name, name)
			for _, e := range id.Exports() {
				fmt.Fprintf(streams.Out, "export %s\n", shellQuote(e))
			}
			return nil
		},
	}
	addNameFlag(cmd, &name)
	cmd.Flags().BoolVar(&az, "az", false, "Print the Azure CLI's setup instead: REQUESTS_CA_BUNDLE, RESOURCE_GROUP, CLUSTER, az cloud register, az cloud set and az login")
	return cmd
}

// azureCLI is the shell that points the Azure CLI at the endpoint: a cloud
// whose resource manager is the endpoint (az reads the authority and the
// audience from its metadata), made active, and the service principal's
// sign-in. Registering again updates the cloud (a new test bed has a new
// port).
func azureCLI(id *armserver.Identity, cloud string) string {
	arm := quote(id.Endpoint() + "/")
	return fmt.Sprintf(`export REQUESTS_CA_BUNDLE=%s
export RESOURCE_GROUP=%s CLUSTER=%s
az cloud register --name %s --endpoint-resource-manager %s --output none 2>/dev/null ||
  az cloud update --name %s --endpoint-resource-manager %s --output none
az cloud set --name %s --only-show-errors --output none
az login --service-principal --username %s --password %s --tenant %s --output table
`, quote(id.CAPath()), quote(id.ResourceGroup), quote(id.Cluster),
		quote(cloud), arm, quote(cloud), arm, quote(cloud),
		quote(id.ClientID), quote(id.ClientSecret), quote(id.TenantID))
}

// shellQuote quotes the value of NAME=VALUE for a POSIX shell.
func shellQuote(assignment string) string {
	name, value, ok := strings.Cut(assignment, "=")
	if !ok {
		return assignment
	}
	return name + "=" + quote(value)
}

// quote quotes s for a POSIX shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
