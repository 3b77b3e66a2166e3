package armserver

import (
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/google/uuid"
	certutil "k8s.io/client-go/util/cert"

	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

// Files in the endpoint's directory (next to the cluster's kubeconfig).
const (
	identityFile = "identity.json"
	// CAFile is the certificate authority clients trust for the endpoint.
	CAFile   = "ca.crt"
	certFile = "tls.crt"
	keyFile  = "tls.key"
)

// Identity is the local tenant, subscription and managed cluster: what a
// client signs in with and which resources the endpoint serves. It is
// created once per cluster and kept, so tokens and exports stay valid
// across restarts of the endpoint.
type Identity struct {
	TenantID       string `json:"tenantId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
	SubscriptionID string `json:"subscriptionId"`
	ResourceGroup  string `json:"resourceGroup"`
	Location       string `json:"location"`
	Cluster        string `json:"cluster"`
	Port           int    `json:"port"`
	// SigningKey signs the access tokens the endpoint issues (HS256).
	SigningKey []byte `json:"signingKey"`
	// Dir holds the identity, the CA and the serving certificate.
	Dir string `json:"-"`
}

// Endpoint is the base URL of ARM and of the token authority.
func (id *Identity) Endpoint() string { return "https://127.0.0.1:" + strconv.Itoa(id.Port) }

// Audience is the resource the tokens are for; scopes are Audience + "/.default".
func (id *Identity) Audience() string { return id.Endpoint() }

// CAPath is the CA file clients trust.
func (id *Identity) CAPath() string { return filepath.Join(id.Dir, CAFile) }

// Load reads the identity in dir.
func Load(dir string) (*Identity, error) {
	data, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no local ARM endpoint in %s: start one with `meshaddon local up --arm`", dir)
		}
		return nil, err
	}
	id := &Identity{Dir: dir}
	if err := json.Unmarshal(data, id); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, identityFile), err)
	}
	return id, nil
}

// Ensure loads the identity in dir, or creates one for cluster: random
// tenant, client, secret and subscription, a free port, and a CA with a
// serving certificate for 127.0.0.1. It reports whether it created one.
func Ensure(dir, cluster string) (*Identity, bool, error) {
	if id, err := Load(dir); err == nil {
		return id, false, nil
	} else if _, statErr := os.Stat(filepath.Join(dir, identityFile)); statErr == nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return nil, false, err
	}
	secret, key := make([]byte, 24), make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, false, err
	}
	if _, err := rand.Read(key); err != nil {
		return nil, false, err
	}
	id := &Identity{
		TenantID:       uuid.NewString(),
		ClientID:       uuid.NewString(),
		ClientSecret:   fmt.Sprintf("%x", secret),
		SubscriptionID: uuid.NewString(),
		ResourceGroup:  cluster + "-rg",
		Location:       "local",
		Cluster:        cluster,
		Port:           ports[0],
		SigningKey:     key,
		Dir:            dir,
	}
	// The bundle is the serving certificate followed by the CA that signed it.
	bundle, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return nil, false, fmt.Errorf("create the endpoint's certificate: %w", err)
	}
	leaf, rest := pem.Decode(bundle)
	ca, _ := pem.Decode(rest)
	if leaf == nil || ca == nil {
		return nil, false, errors.New("create the endpoint's certificate: want a certificate and its CA")
	}
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return nil, false, err
	}
	// The identity goes last: its presence means the directory is complete.
	for _, f := range []struct {
		name    string
		content []byte
	}{{certFile, bundle}, {keyFile, keyPEM}, {CAFile, pem.EncodeToMemory(ca)}, {identityFile, data}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.content, 0o600); err != nil {
			return nil, false, err
		}
	}
	return id, true, nil
}

// Exports are the shell lines that point `--provider aks` at the endpoint:
// azidentity's environment credential (tenant, client, secret, authority
// host), the managed cluster's coordinates, and the endpoint with its CA.
func (id *Identity) Exports() []string {
	return []string{
		"AZURE_TENANT_ID=" + id.TenantID,
		"AZURE_CLIENT_ID=" + id.ClientID,
		"AZURE_CLIENT_SECRET=" + id.ClientSecret,
		"AZURE_AUTHORITY_HOST=" + id.Endpoint() + "/",
		"AZURE_SUBSCRIPTION_ID=" + id.SubscriptionID,
		"AZURE_RESOURCE_GROUP=" + id.ResourceGroup,
		"AZURE_AKS_CLUSTER=" + id.Cluster,
		"MESHADDON_ARM_ENDPOINT=" + id.Endpoint(),
		"MESHADDON_ARM_CA_FILE=" + id.CAPath(),
	}
}
