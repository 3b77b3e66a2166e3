// Package kube builds the clients every command and the manager share, from
// kubectl's standard flags (--kubeconfig, --context, -n, ...).
package kube

import (
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
)

// Scheme knows the built-in types, CRDs and the meshaddon.dev API.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(Scheme))
	utilruntime.Must(v1alpha1.AddToScheme(Scheme))
}

// Clients talk to one cluster.
type Clients struct {
	Config *rest.Config
	Kube   kubernetes.Interface
	Client client.Client
	// Namespace is -n, or the kubeconfig context's namespace.
	Namespace string
}

// NewClients builds clients from kubectl's flags.
func NewClients(flags *genericclioptions.ConfigFlags) (*Clients, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (set --kubeconfig or KUBECONFIG; for the local test bed: export KUBECONFIG=$(meshaddon local kubeconfig))", err)
	}
	c, err := ForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	c.Namespace = ns
	return c, nil
}

// Protobuf returns a copy of cfg that reads and writes built-in types as
// protobuf (falling back to JSON for types that have none): pods and nodes
// decode several times faster, which matters at tens of thousands.
func Protobuf(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return c
}

// ForConfig builds clients for a REST config.
func ForConfig(cfg *rest.Config) (*Clients, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	return &Clients{Config: cfg, Kube: kube, Client: cl, Namespace: "default"}, nil
}
