package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// EnvtestAssets returns a directory laid out as controller-runtime's envtest
// expects (KUBEBUILDER_ASSETS: kube-apiserver, etcd, kubectl side by side),
// linking the cached binaries instead of downloading any.
func (c *Cache) EnvtestAssets(ctx context.Context) (string, error) {
	bins, err := c.Ensure(ctx, Kubernetes, Etcd)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(c.Dir, "bin", fmt.Sprintf("envtest-%s-%s", KubernetesVersion, EtcdVersion))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cache directory %s cannot be written: %w", c.Dir, err)
	}
	for _, name := range []string{"kube-apiserver", "etcd", "kubectl"} {
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err == nil && target == bins.Path(name) {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(bins.Path(name), link); err != nil && !os.IsExist(err) {
			return "", fmt.Errorf("link %s for envtest: %w", name, err)
		}
	}
	return dir, nil
}
