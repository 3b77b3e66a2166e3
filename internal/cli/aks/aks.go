// Package aks holds the flags that switch a command from the cluster's own
// API (the add-on manager's objects) to the managed-cluster provider:
// --provider aks with the subscription, resource group and cluster.
package aks

import (
	"fmt"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/cobra"

	"github.com/meshaddon/meshaddon/internal/azure"
)

// Providers a command can talk to.
const (
	ProviderCluster = "cluster"
	ProviderAKS     = "aks"
)

// Flags are --provider and the managed cluster's coordinates.
type Flags struct {
	Provider string
	azure.Target
}

// Add registers the flags on cmd; the coordinates default to the
// environment, as the Azure CLI's do.
func (f *Flags) Add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.Provider, "provider", ProviderCluster, "Where to act: cluster (the add-on's objects, through the kubeconfig) or aks (Azure Resource Manager)")
	fs.StringVar(&f.Subscription, "subscription", os.Getenv("AZURE_SUBSCRIPTION_ID"), "Azure subscription ID (--provider aks; default $AZURE_SUBSCRIPTION_ID)")
	fs.StringVar(&f.ResourceGroup, "resource-group", os.Getenv("AZURE_RESOURCE_GROUP"), "Resource group of the managed cluster (--provider aks; default $AZURE_RESOURCE_GROUP)")
	fs.StringVar(&f.Cluster, "managed-cluster", os.Getenv("AZURE_AKS_CLUSTER"), "Name of the managed cluster (--provider aks; default $AZURE_AKS_CLUSTER)")
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

// New signs in with DefaultAzureCredential (environment, workload identity,
// managed identity, Azure CLI) and returns the provider.
func (f *Flags) New() (*azure.Provider, error) {
	if err := f.Target.Validate(); err != nil {
		return nil, err
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("sign in to Azure: %w (run az login, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET)", err)
	}
	return azure.New(f.Target, cred, nil)
}
