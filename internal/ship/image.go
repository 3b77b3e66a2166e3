package ship

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: distroless's "nonroot", so no name lookup is needed.
const (
	ImageUser   = "65532:65532"
	ManagerPath = "/usr/local/bin/meshaddon-manager"
	managerPkg  = "./cmd/meshaddon-manager"
	nonrootUID  = 65532
)

// ImageOptions say what to build.
type ImageOptions struct {
	// Dir is the module's root.
	Dir string
	// Arch is the image's architecture (linux only).
	Arch string
	// Version and Revision go into the OCI labels; Version also names the
	// tag and is stamped into the binary.
	Version, Revision string
	// Created is the config's creation time and every file's mtime: from
	// SOURCE_DATE_EPOCH, else the Unix epoch, so two builds are identical.
	Created time.Time
}

// Tag is the image's name at a version.
func Tag(version string) (name.Tag, error) {
	return name.NewTag(Repository + ":" + version)
}

// BuildImage compiles meshaddon-manager and wraps it in a one-layer image
// with no shell and no package manager: the binary, /etc/passwd and
// /etc/group naming the nonroot user, and an empty /tmp.
func BuildImage(ctx context.Context, o ImageOptions) (v1.Image, error) {
	work, err := os.MkdirTemp("", "meshaddon-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "meshaddon-manager")
	if err := Build(ctx, o.Dir, managerPkg, "linux", o.Arch, o.Version, bin); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	return Image(data, o)
}

// Image assembles the image around a built manager binary.
func Image(binary []byte, o ImageOptions) (v1.Image, error) {
	created := o.Created.UTC()
	layerTar, err := tarFiles(created, []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: nonrootUID},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: ManagerPath[1:], mode: 0o755, data: binary},
	})
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "meshaddon make image", Comment: "meshaddon-manager " + o.Version},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	cf.Created = v1.Time{Time: created}
	cf.Config.User = ImageUser
	cf.Config.Entrypoint = []string{ManagerPath}
	cf.Config.Env = []string{"PATH=/usr/local/bin"}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.source":   Source,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.title":    "meshaddon-manager",
		"org.opencontainers.image.created":  created.Format(time.RFC3339),
	}
	return mutate.ConfigFile(img, cf)
}

// WriteImage writes the image as an OCI layout in dir (tagged by version
// with the org.opencontainers.image.ref.name annotation) and as a tarball
// that `docker load` and `crane push` accept.
func WriteImage(img v1.Image, version, layoutDir, tarPath string) error {
	tag, err := Tag(version)
	if err != nil {
		return fmt.Errorf("version %q cannot be an image tag: %w", version, err)
	}
	if err := os.RemoveAll(layoutDir); err != nil {
		return err
	}
	p, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
		"io.containerd.image.name":          tag.String(),
	})); err != nil {
		return err
	}
	f, err := os.Create(tarPath)
	if err != nil {
		return err
	}
	if err := tarball.Write(tag, img, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type file struct {
	name string
	mode int64
	dir  bool
	uid  int
	data []byte
}

// tarFiles writes a tar with entries sorted by name and every time set to
// mtime, owned by root unless said otherwise: the same files give the same
// bytes.
func tarFiles(mtime time.Time, files []file) ([]byte, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Uid: f.uid, Gid: f.uid}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
