package testbed

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/testbed/armserver"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

// ARMDaemon is the name of the local ARM endpoint's pid and log files.
const ARMDaemon = "arm"

// ARMDir holds the local ARM endpoint's identity, CA and certificate,
// next to the kubeconfig.
func (t *Testbed) ARMDir() string { return filepath.Join(t.Cluster.Dir, "arm") }

// ARMIdentity reads the endpoint's identity.
func (t *Testbed) ARMIdentity() (*armserver.Identity, error) { return armserver.Load(t.ARMDir()) }

func (t *Testbed) armDaemon() proc.Daemon {
	return proc.Daemon{
		PIDFile: t.Cluster.PIDFile(ARMDaemon),
		LogFile: filepath.Join(t.Cluster.LogDir(), ARMDaemon+".log"),
		Args:    []string{t.Self, "local", "arm-server", "--name", t.Cluster.Name},
		Dir:     t.ARMDir(),
	}
}

// startARM creates the endpoint's identity once, starts the endpoint and
// waits until it answers over TLS with its CA; it returns what it changed.
func (t *Testbed) startARM(ctx context.Context) ([]string, error) {
	var changes []string
	id, created, err := armserver.Ensure(t.ARMDir(), t.Cluster.Name)
	if err != nil {
		return nil, err
	}
	if created {
		changes = append(changes, fmt.Sprintf("created the local ARM identity (tenant %s, subscription %s)", id.TenantID, id.SubscriptionID))
	}
	started, err := t.armDaemon().Start()
	if err != nil {
		return changes, err
	}
	if started {
		changes = append(changes, "started the local ARM endpoint at "+id.Endpoint())
	}
	client, err := azure.HTTPClient(id.CAPath())
	if err != nil {
		return changes, err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, id.Endpoint()+"/metadata/endpoints", nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return changes, fmt.Errorf("the local ARM endpoint did not answer at %s within 30s (log: %s)", id.Endpoint(), t.armDaemon().LogFile)
	}
	return changes, nil
}

// ARMServer builds the endpoint for this cluster; `local arm-server` runs it.
func (t *Testbed) ARMServer() (*armserver.Server, error) {
	id, err := t.ARMIdentity()
	if err != nil {
		return nil, err
	}
	cl, err := t.clients()
	if err != nil {
		return nil, err
	}
	srv := armserver.New(id, cl.kube, cl.ctrl, t.pools(cl.kube), mesh.Namespace)
	srv.OperationsNamespace = ManagerNamespace
	return srv, nil
}
