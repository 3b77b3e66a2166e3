package ship

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestImage builds the manager's image twice from scratch and checks it is
// the same image, configured as promised, with a binary that runs.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the manager twice")
	}
	o := ImageOptions{Dir: moduleRoot(t), Arch: runtime.GOARCH, Version: "v9.8.7", Revision: "0123abc", Created: time.Unix(1700000000, 0)}
	ctx := context.Background()
	first, err := BuildImage(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	second, err := BuildImage(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Digest()
	d2, _ := second.Digest()
	if d1 != d2 {
		t.Fatalf("two builds differ: %s and %s", d1, d2)
	}

	cf, err := first.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/meshaddon-manager" || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("config: user %q entrypoint %q platform %s/%s", cf.Config.User, cf.Config.Entrypoint, cf.OS, cf.Architecture)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.source":   Source,
		"org.opencontainers.image.version":  "v9.8.7",
		"org.opencontainers.image.revision": "0123abc",
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if !cf.Created.Time.Equal(o.Created) {
		t.Errorf("created %s, want %s", cf.Created.Time, o.Created)
	}

	// The files: no shell, every time fixed, the binary executable.
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshaddon-manager")
	rc := mutate.Extract(first)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(o.Created) {
			t.Errorf("%s dated %s, want %s", h.Name, h.ModTime, o.Created)
		}
		if strings.HasPrefix(h.Name, "bin/") || strings.HasSuffix(h.Name, "/sh") {
			t.Errorf("the image has %s: it must have no shell", h.Name)
		}
		if h.Name == "usr/local/bin/meshaddon-manager" {
			f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	if strings.Join(names, " ") != "etc etc/group etc/passwd home home/nonroot tmp usr usr/local usr/local/bin usr/local/bin/meshaddon-manager" {
		t.Errorf("the layer holds %v", names)
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "meshaddon-manager") || !strings.Contains(string(out), "--leader-elect") {
		t.Errorf("the image's binary --help: %v\n%s", err, out)
	}
	if ldd, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(ldd), "statically linked") {
		t.Errorf("the binary is not static: %s", ldd)
	}

	// Written as an OCI layout and a tarball, both of the same image.
	if err := WriteImage(first, o.Version, filepath.Join(dir, "oci"), filepath.Join(dir, "image.tar")); err != nil {
		t.Fatal(err)
	}
	tag, _ := Tag(o.Version)
	fromTar, err := tarball.ImageFromPath(filepath.Join(dir, "image.tar"), &tag)
	if err != nil {
		t.Fatalf("the tarball has no image tagged %s: %v", tag, err)
	}
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != o.Version {
		t.Fatalf("the layout's index: %+v %v", im, err)
	}
	fromLayout, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := fromLayout.Digest(); d != d1 {
		t.Errorf("the layout's image is %s, want %s", d, d1)
	}
	// docker load recomputes nothing: the tarball's config and layers are
	// the image's own.
	got, _ := fromTar.ConfigName()
	want, _ := first.ConfigName()
	if got != want {
		t.Errorf("the tarball's config is %s, want %s", got, want)
	}

	// What crane push does (remote.Write), to a real registry
	// (go-containerregistry's, on 127.0.0.1). The layout's image arrives as
	// built; the tarball's in docker's manifest format, which changes the
	// manifest's digest but not the config or the layer.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	for what, img := range map[string]v1.Image{"layout": fromLayout, "tarball": fromTar} {
		ref, err := name.NewTag(host + "/meshaddon-manager:" + what)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatalf("push the %s's image: %v", what, err)
		}
		pulled, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := pulled.Digest(); what == "layout" && d != d1 {
			t.Errorf("the layout's image pushed and pulled back: %s, want %s", d, d1)
		}
		if c, _ := pulled.ConfigName(); c != want {
			t.Errorf("the %s's image pushed and pulled back has config %s, want %s", what, c, want)
		}
		pl, _ := pulled.Layers()
		fl, _ := first.Layers()
		if len(pl) != 1 || len(fl) != 1 {
			t.Fatalf("layers: pulled %d, built %d", len(pl), len(fl))
		}
		a, _ := pl[0].Digest()
		b, _ := fl[0].Digest()
		if a != b {
			t.Errorf("the %s's layer pushed and pulled back is %s, want %s", what, a, b)
		}
	}
}
