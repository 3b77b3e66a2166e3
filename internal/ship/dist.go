package ship

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Platform is one GOOS/GOARCH the CLI is released for.
type Platform struct{ OS, Arch string }

// Platforms are the release's: linux and darwin on amd64 and arm64.
var Platforms = []Platform{{"darwin", "amd64"}, {"darwin", "arm64"}, {"linux", "amd64"}, {"linux", "arm64"}}

// PluginName is the krew plugin's name: kubectl finds kubectl-meshaddon.
const PluginName = "meshaddon"

// DistOptions say what `make dist` builds.
type DistOptions struct {
	Dir       string // the module's root
	Out       string // where the archives, checksums and krew manifest go
	Version   string
	Platforms []Platform
	// Created dates every file in the archives (SOURCE_DATE_EPOCH, else
	// the Unix epoch).
	Created time.Time
}

// Dist are the files `make dist` wrote, by name in Out.
type Dist struct {
	Archives  map[Platform]string
	Checksums string
	Manifest  string
}

// ArchiveName is a platform's release archive.
func ArchiveName(version string, p Platform) string {
	return fmt.Sprintf("meshaddon_%s_%s_%s.tar.gz", version, p.OS, p.Arch)
}

// ReleaseURL is where a release's file is downloaded from.
func ReleaseURL(version, file string) string {
	return Source + "/releases/download/" + version + "/" + file
}

// BuildDist builds the CLI for every platform and writes one archive each
// (meshaddon and the same binary as kubectl-meshaddon, kubectl's plugin
// name, with README.md and LICENSE when there is one), a sha256 checksums
// file in sha256sum's format, and the krew plugin manifest for them.
func BuildDist(ctx context.Context, o DistOptions) (Dist, error) {
	d := Dist{Archives: map[Platform]string{}}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return d, err
	}
	work, err := os.MkdirTemp("", "meshaddon-dist-")
	if err != nil {
		return d, err
	}
	defer os.RemoveAll(work)
	var extra []file
	for _, name := range []string{"LICENSE", "README.md"} {
		if data, err := os.ReadFile(filepath.Join(o.Dir, name)); err == nil {
			extra = append(extra, file{name: name, mode: 0o644, data: data})
		}
	}
	sums := map[string]string{}
	for _, p := range o.Platforms {
		bin := filepath.Join(work, p.OS+"-"+p.Arch)
		if err := Build(ctx, o.Dir, "./cmd/meshaddon", p.OS, p.Arch, o.Version, bin); err != nil {
			return d, err
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return d, err
		}
		archive, err := Archive(data, extra, o.Created)
		if err != nil {
			return d, err
		}
		name := ArchiveName(o.Version, p)
		if err := os.WriteFile(filepath.Join(o.Out, name), archive, 0o644); err != nil {
			return d, err
		}
		d.Archives[p] = name
		sum := sha256.Sum256(archive)
		sums[name] = hex.EncodeToString(sum[:])
	}
	d.Checksums = fmt.Sprintf("meshaddon_%s_checksums.txt", o.Version)
	if err := os.WriteFile(filepath.Join(o.Out, d.Checksums), Checksums(sums), 0o644); err != nil {
		return d, err
	}
	license := len(extra) > 0 && extra[0].name == "LICENSE"
	manifest, err := KrewManifest(o.Version, d.Archives, sums, license)
	if err != nil {
		return d, err
	}
	// krew requires the file to be named after the plugin.
	d.Manifest = PluginName + ".yaml"
	return d, os.WriteFile(filepath.Join(o.Out, d.Manifest), manifest, 0o644)
}

// Archive is a platform's tar.gz: the binary as meshaddon and as
// kubectl-meshaddon, and the extra files; sorted, dated mtime, owned by
// root, and gzip with no name or time, so the same binary gives the same bytes.
func Archive(binary []byte, extra []file, mtime time.Time) ([]byte, error) {
	files := append([]file{
		{name: "meshaddon", mode: 0o755, data: binary},
		{name: "kubectl-meshaddon", mode: 0o755, data: binary},
	}, extra...)
	tarData, err := tarFiles(mtime.UTC(), files)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarData); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Checksums is a sha256sum file: "<hex>  <name>" per line, sorted by name,
// so `sha256sum -c` checks the downloads.
func Checksums(sums map[string]string) []byte {
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", sums[n], n)
	}
	return []byte(b.String())
}

// The krew plugin manifest (krew.googlecontainertools.github.com/v1alpha2
// Plugin), written here rather than imported: sigs.k8s.io/krew requires
// client-go v11.0.0+incompatible, which would move k8s.io/client-go. The
// test validates the output with krew's own validate-krew-manifest.
type krewPlugin struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       krewSpec          `json:"spec"`
}

type krewSpec struct {
	Version          string         `json:"version"`
	Homepage         string         `json:"homepage"`
	ShortDescription string         `json:"shortDescription"`
	Description      string         `json:"description"`
	Caveats          string         `json:"caveats,omitempty"`
	Platforms        []krewPlatform `json:"platforms"`
}

type krewPlatform struct {
	Selector metav1.LabelSelector `json:"selector"`
	URI      string               `json:"uri"`
	Sha256   string               `json:"sha256"`
	Files    []krewFile           `json:"files"`
	Bin      string               `json:"bin"`
}

type krewFile struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// KrewManifest is the plugin manifest for the archives, by platform, with
// their sha256 sums (by archive name). krew installs the plugin binary, and
// the LICENSE when the archives have one (krew-index requires one).
func KrewManifest(version string, archives map[Platform]string, sums map[string]string, license bool) ([]byte, error) {
	p := krewPlugin{
		APIVersion: "krew.googlecontainertools.github.com/v1alpha2",
		Kind:       "Plugin",
		Metadata:   metav1.ObjectMeta{Name: PluginName},
		Spec: krewSpec{
			Version:          version,
			Homepage:         Source,
			ShortDescription: "Turn on Istio native sidecar mode safely",
			Description: "meshaddon turns on Istio native sidecar mode across a cluster safely and keeps it right:\n" +
				"precheck every step (versions, node pools, webhooks, permissions), status shows each pod's\n" +
				"sidecar mode, migrate restarts the workloads still on classic sidecars in waves.\n",
		},
	}
	platforms := make([]Platform, 0, len(archives))
	for pl := range archives {
		platforms = append(platforms, pl)
	}
	sort.Slice(platforms, func(i, j int) bool {
		return platforms[i].OS+platforms[i].Arch < platforms[j].OS+platforms[j].Arch
	})
	files := []krewFile{{From: "kubectl-meshaddon", To: "."}}
	if license {
		files = append(files, krewFile{From: "LICENSE", To: "."})
	}
	for _, pl := range platforms {
		name := archives[pl]
		sum, ok := sums[name]
		if !ok {
			return nil, fmt.Errorf("no checksum for %s", name)
		}
		p.Spec.Platforms = append(p.Spec.Platforms, krewPlatform{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"os": pl.OS, "arch": pl.Arch}},
			URI:      ReleaseURL(version, name),
			Sha256:   sum,
			Files:    files,
			Bin:      "kubectl-meshaddon",
		})
	}
	return yaml.Marshal(p)
}
