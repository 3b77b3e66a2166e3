package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

// guardDir holds the placement guard's serving certificate and address.
func (t *Testbed) guardDir() string { return filepath.Join(t.Cluster.Dir, "guard") }

// GuardAddr is the loopback address the manager serves the placement
// guard's webhook on, chosen once per cluster (so a manager started again
// matches the configuration).
func (t *Testbed) GuardAddr() (string, error) {
	path := filepath.Join(t.guardDir(), "addr")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	if err := os.MkdirAll(t.guardDir(), 0o700); err != nil {
		return "", err
	}
	return addr, os.WriteFile(path, []byte(addr+"\n"), 0o600)
}

// GuardConfiguration is the guard's webhook configuration on the test bed:
// the API server calls the manager at its loopback URL (no kube-proxy, as
// istiod's webhooks), trusting caBundle.
func GuardConfiguration(addr string, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	return manager.GuardWebhookConfiguration(manager.GuardConfiguration, mesh.Namespace, admissionregistrationv1.WebhookClientConfig{
		URL: ptr.To("https://" + addr + manager.GuardPath), CABundle: caBundle,
	})
}

// registerGuard issues the guard's certificate (once), registers its
// webhook configuration, and returns the manager's flags for it.
func (t *Testbed) registerGuard(ctx context.Context, cl client.Client) ([]string, error) {
	addr, err := t.GuardAddr()
	if err != nil {
		return nil, err
	}
	dir := t.guardDir()
	caBundle, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		if caBundle, err = manager.WriteLoopbackGuardCert(dir, 0); err != nil {
			return nil, err
		}
	}
	if err := cl.Patch(ctx, GuardConfiguration(addr, caBundle), client.Apply, client.FieldOwner("meshaddon-testbed"), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("register the placement guard's webhook: %w", err)
	}
	return []string{"--guard-webhook-bind-address", addr, "--guard-webhook-cert-dir", dir}, nil
}
