// Package aks holds the flags that switch a command from the cluster's own
// API (the add-on manager's objects) to the managed-cluster provider:
// --provider aks with the subscription, resource group and cluster, and
// optionally an ARM endpoint other than Azure's public cloud.
package aks

import (
	"fmt"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/cobra"

	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
)

// Providers a command can talk to.
const (
	ProviderCluster = "cluster"
	ProviderAKS     = "aks"
)

// Environment variables for an ARM endpoint other than the public cloud's
// (`meshaddon local arm-env` sets them for the test bed's).
const (
	EndpointEnv = "MESHADDON_ARM_ENDPOINT"
	CAFileEnv   = "MESHADDON_ARM_CA_FILE"
)

// Flags are --provider and the managed cluster's coordinates.
type Flags struct {
	Provider string
	azure.Target
	// Endpoint is the ARM endpoint (empty: Azure's public cloud); CAFile
	// is a CA to trust for it.
	Endpoint string
	CAFile   string
}

// Add registers the flags on cmd; the coordinates default to the
// environment, as the Azure CLI's do.
func (f *Flags) Add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.Provider, "provider", ProviderCluster, "Where to act: cluster (the add-on's objects, through the kubeconfig) or aks (Azure Resource Manager)")
	fs.StringVar(&f.Subscription, "subscription", os.Getenv("AZURE_SUBSCRIPTION_ID"), "Azure subscription ID (--provider aks; default $AZURE_SUBSCRIPTION_ID)")
	fs.StringVar(&f.ResourceGroup, "resource-group", os.Getenv("AZURE_RESOURCE_GROUP"), "Resource group of the managed cluster (--provider aks; default $AZURE_RESOURCE_GROUP)")
	fs.StringVar(&f.Cluster, "managed-cluster", os.Getenv("AZURE_AKS_CLUSTER"), "Name of the managed cluster (--provider aks; default $AZURE_AKS_CLUSTER)")
	fs.StringVar(&f.Endpoint, "arm-endpoint", os.Getenv(EndpointEnv), "Azure Resource Manager endpoint, for a cloud other than the public one such as the test bed's (--provider aks; default $"+EndpointEnv+")")
	fs.StringVar(&f.CAFile, "arm-ca-file", os.Getenv(CAFileEnv), "CA certificate to trust for --arm-endpoint (default $"+CAFileEnv+")")
}

// AKS reports whether --provider aks was chosen; an unknown provider is an error.
func (f *Flags) AKS() (bool, error) {
	switch f.Provider {
	case ProviderCluster, "":
		return false, nil
	case ProviderAKS:
		return true, nil
	}
	return false, fmt.Errorf("unknown provider %q: want cluster or aks", f.Provider)
}

// Open returns the provider for --provider aks and nil for the cluster
// provider; its errors are usage errors (exit 2).
func (f *Flags) Open() (*azure.Provider, error) {
	onAKS, err := f.AKS()
	if err != nil || !onAKS {
		return nil, exitcode.Wrap(exitcode.Usage, err)
	}
	p, err := f.New()
	return p, exitcode.Wrap(exitcode.Usage, err)
}

// New signs in with DefaultAzureCredential (environment, workload identity,
// managed identity, Azure CLI) and returns the provider. With an endpoint
// the SDK uses a custom cloud: ARM and its audience there, sign-in at
// AZURE_AUTHORITY_HOST (default: the endpoint), no instance discovery
// against Microsoft's public authority.
func (f *Flags) New() (*azure.Provider, error) {
	if err := f.Target.Validate(); err != nil {
		return nil, err
	}
	var client azcore.ClientOptions
	credOpts := &azidentity.DefaultAzureCredentialOptions{}
	if f.Endpoint != "" {
		client.Cloud = azure.CustomCloud(f.Endpoint, os.Getenv("AZURE_AUTHORITY_HOST"))
		if f.CAFile != "" {
			hc, err := azure.HTTPClient(f.CAFile)
			if err != nil {
				return nil, err
			}
			client.Transport = hc
		}
		credOpts.ClientOptions = client
		credOpts.DisableInstanceDiscovery = true
	}
	cred, err := azidentity.NewDefaultAzureCredential(credOpts)
	if err != nil {
		return nil, fmt.Errorf("sign in to Azure: %w (run az login, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET)", err)
	}
	return azure.New(f.Target, cred, &arm.ClientOptions{ClientOptions: policy.ClientOptions(client)})
}
