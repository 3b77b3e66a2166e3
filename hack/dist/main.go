// Command dist writes the CLI's release (`make dist`): an archive per
// platform (meshaddon and kubectl-meshaddon), their sha256 checksums and the
// krew plugin manifest, in bin/dist.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/meshaddon/meshaddon/internal/ship"
)

func main() {
	o := ship.DistOptions{Platforms: ship.Platforms}
	flag.StringVar(&o.Out, "out", "bin/dist", "directory for the archives, checksums and krew manifest")
	flag.StringVar(&o.Version, "version", ship.Version, "the release version, stamped into the binaries")
	platforms := flag.String("platforms", "", "comma-separated os/arch list (default: linux and darwin on amd64 and arm64)")
	flag.Parse()
	if *platforms != "" {
		o.Platforms = nil
		for _, p := range strings.Split(*platforms, ",") {
			goos, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
			if !ok || goos == "" || arch == "" {
				fmt.Fprintf(os.Stderr, "make dist: --platforms %q: want os/arch[,os/arch...], e.g. linux/amd64\n", p)
				os.Exit(2)
			}
			o.Platforms = append(o.Platforms, ship.Platform{OS: goos, Arch: arch})
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "make dist:", err)
		os.Exit(1)
	}
}

func run(o ship.DistOptions) error {
	var err error
	if o.Dir, err = ship.ModuleRoot("."); err != nil {
		return err
	}
	if o.Created, err = ship.SourceDate(); err != nil {
		return err
	}
	d, err := ship.BuildDist(context.Background(), o)
	if err != nil {
		return err
	}
	for _, p := range o.Platforms {
		fmt.Printf("%s/%s\n", o.Out, d.Archives[p])
	}
	fmt.Printf("%s/%s\n%s/%s (krew install --manifest=%s/%s --archive=<archive>)\n", o.Out, d.Checksums, o.Out, d.Manifest, o.Out, d.Manifest)
	return nil
}
