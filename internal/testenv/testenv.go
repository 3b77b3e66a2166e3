// Package testenv starts a real kube-apiserver and etcd for tests:
// controller-runtime's envtest with the test bed's cached binaries (nothing
// is downloaded) and meshaddon's CRDs installed. Only tests import it.
package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshaddon/meshaddon/config"
	"github.com/meshaddon/meshaddon/internal/testbed/cache"
)

// Start starts an API server for one test and stops it when the test ends;
// in -short mode the test is skipped.
func Start(t testing.TB) *rest.Config { return Environment(t).Config }

// Environment is Start for a test that needs the environment itself (to
// add users, say).
func Environment(t testing.TB) *envtest.Environment {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real API server (envtest)")
	}
	env, err := start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env
}

// StartMain starts an API server for a whole package (from TestMain); stop
// ends it.
func StartMain() (cfg *rest.Config, stop func(), err error) {
	env, err := start()
	if err != nil {
		return nil, nil, err
	}
	return env.Config, func() { _ = env.Stop() }, nil
}

func start() (*envtest.Environment, error) {
	c, err := cache.New(os.Stderr)
	if err != nil {
		return nil, err
	}
	assets, err := c.EnvtestAssets(context.Background())
	if err != nil {
		return nil, err
	}
	crds, err := config.CRDObjects()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDs: crds}
	if _, err := env.Start(); err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	return env, nil
}
