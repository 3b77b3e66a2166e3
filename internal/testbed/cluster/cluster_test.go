package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// The cluster's directory and everything in it end up readable by the
// owner only, however kwokctl wrote them; links out of it are not followed.
func TestPrivateFiles(t *testing.T) {
	t.Setenv(EnvStateDir, t.TempDir())
	c, err := Open("t")
	if err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(c.kwokClusterDir(), "pki")
	if err := os.MkdirAll(pki, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(c.Dir, 0o755)
	for _, f := range []string{"ca.key", "admin.key", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(pki, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(t.TempDir(), "kube-apiserver")
	if err := os.WriteFile(outside, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(c.kwokClusterDir(), "kube-apiserver")); err != nil {
		t.Fatal(err)
	}

	if err := c.MkDir(); err != nil {
		t.Fatal(err)
	}
	if err := c.restrict(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(c.Dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("%s is %v, want 0700", c.Dir, fi.Mode().Perm())
	}
	_ = filepath.Walk(c.Dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: group or others may use it", path, fi.Mode().Perm())
		}
		return err
	})
	if fi, _ := os.Stat(outside); fi.Mode().Perm() != 0o755 {
		t.Errorf("the link's target outside the cluster became %v", fi.Mode().Perm())
	}
}
