package azure

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

// CustomCloud is a cloud whose Resource Manager is at endpoint (its
// audience too, as on Azure Stack Hub) and whose sign-in authority is
// authority, defaulting to the endpoint itself.
func CustomCloud(endpoint, authority string) cloud.Configuration {
	endpoint = strings.TrimSuffix(endpoint, "/")
	if authority == "" {
		authority = endpoint + "/"
	}
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: authority,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: endpoint, Audience: endpoint},
		},
	}
}

// HTTPClient trusts the system's roots plus the PEM certificates in caFile
// (an endpoint with a private CA, such as the test bed's).
func HTTPClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read the ARM endpoint's CA: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}, nil
}
