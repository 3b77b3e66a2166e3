// Command image builds the add-on manager's OCI image without Docker
// (`make image`): bin/image/oci (an OCI layout) and bin/image/meshaddon-manager.tar
// (for `docker load` or `crane push`), and prints the image's digest.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/meshaddon/meshaddon/internal/ship"
)

func main() {
	var o ship.ImageOptions
	out := flag.String("out", "bin/image", "directory for the OCI layout (oci/) and the tarball")
	flag.StringVar(&o.Version, "version", ship.Version, "the image's version: its tag, label and the binary's stamp")
	flag.StringVar(&o.Revision, "revision", "", "the source revision for the org.opencontainers.image.revision label")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "the image's architecture (linux/ARCH)")
	flag.Parse()
	if err := run(o, *out); err != nil {
		fmt.Fprintln(os.Stderr, "make image:", err)
		os.Exit(1)
	}
}

func run(o ship.ImageOptions, out string) error {
	var err error
	if o.Dir, err = ship.ModuleRoot("."); err != nil {
		return err
	}
	if o.Created, err = ship.SourceDate(); err != nil {
		return err
	}
	img, err := ship.BuildImage(context.Background(), o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tarPath := filepath.Join(out, "meshaddon-manager.tar")
	if err := ship.WriteImage(img, o.Version, filepath.Join(out, "oci"), tarPath); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	tag, _ := ship.Tag(o.Version)
	fmt.Printf("%s@%s\n  OCI layout: %s\n  tarball:    %s (docker load -i, or crane push %s %s)\n",
		tag, digest, filepath.Join(out, "oci"), tarPath, tarPath, tag)
	return nil
}
