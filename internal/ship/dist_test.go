package ship

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDist builds the host's release archive twice (the same bytes), checks
// its contents and checksum, validates the krew manifest with krew's own
// validate-krew-manifest, and installs the plugin with krew from it.
func TestDist(t *testing.T) {
	validate := tool(t, "krew", "validate-krew-manifest")
	krew := tool(t, "krew", "krew")
	root := moduleRoot(t)
	host := Platform{runtime.GOOS, runtime.GOARCH}
	o := DistOptions{Dir: root, Version: "v9.8.7", Platforms: []Platform{host}, Created: time.Unix(1700000000, 0)}
	var builds []Dist
	var outs []string
	for range 2 {
		o.Out = t.TempDir()
		d, err := BuildDist(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		builds, outs = append(builds, d), append(outs, o.Out)
	}
	read := func(i int, name string) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(outs[i], name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	archiveName := builds[0].Archives[host]
	if archiveName != "meshaddon_v9.8.7_"+host.OS+"_"+host.Arch+".tar.gz" {
		t.Errorf("archive named %s", archiveName)
	}
	archive := read(0, archiveName)
	for _, name := range []string{archiveName, builds[0].Checksums, builds[0].Manifest} {
		if !bytes.Equal(read(0, name), read(1, name)) {
			t.Errorf("two builds of %s differ", name)
		}
	}
	sum := sha256.Sum256(archive)
	if got, want := string(read(0, builds[0].Checksums)), hex.EncodeToString(sum[:])+"  "+archiveName+"\n"; got != want {
		t.Errorf("checksums file %q, want %q", got, want)
	}

	// The archive: the same binary under both names, executable, dated.
	contents := map[string][]byte{}
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		contents[h.Name] = data
		if !h.ModTime.Equal(o.Created) || h.Uid != 0 {
			t.Errorf("%s: mtime %s uid %d", h.Name, h.ModTime, h.Uid)
		}
		if strings.Contains(h.Name, "meshaddon") && h.Mode != 0o755 {
			t.Errorf("%s: mode %o", h.Name, h.Mode)
		}
	}
	if len(contents["meshaddon"]) == 0 || !bytes.Equal(contents["meshaddon"], contents["kubectl-meshaddon"]) || contents["README.md"] == nil {
		t.Errorf("the archive holds %d files: want meshaddon and kubectl-meshaddon the same binary, and README.md", len(contents))
	}

	// krew's validation: the manifest as made, and one for the four release
	// platforms (selectors valid and not overlapping; the host's archive
	// stands in for each, only the structure is checked).
	manifest := filepath.Join(outs[0], builds[0].Manifest)
	run(t, root, validate, "-manifest", manifest, "-skip-install")
	all := map[Platform]string{}
	sums := map[string]string{}
	for _, p := range Platforms {
		all[p] = ArchiveName(o.Version, p)
		sums[all[p]] = hex.EncodeToString(sum[:])
	}
	four, err := KrewManifest(o.Version, all, sums, true)
	if err != nil {
		t.Fatal(err)
	}
	fourPath := filepath.Join(t.TempDir(), "meshaddon.yaml")
	if err := os.WriteFile(fourPath, four, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, root, validate, "-manifest", fourPath, "-skip-install")
	for _, p := range Platforms {
		if !strings.Contains(string(four), ReleaseURL(o.Version, ArchiveName(o.Version, p))) {
			t.Errorf("the manifest has no URL for %s/%s", p.OS, p.Arch)
		}
	}
	// The validator is not a rubber stamp: a manifest named otherwise fails.
	bad := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(bad, four, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runE(root, validate, "-manifest", bad, "-skip-install"); err == nil {
		t.Errorf("a manifest whose name is not its file's passed validation: %s", stderr)
	}

	// krew installs the plugin from the manifest and archive; kubectl would
	// run it as kubectl meshaddon.
	krewRoot := t.TempDir()
	install := func(archivePath string) (string, string, error) {
		cmd := exec.Command(krew, "install", "--manifest="+manifest, "--archive="+archivePath)
		cmd.Env = append(os.Environ(), "KREW_ROOT="+krewRoot)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		err := cmd.Run()
		return out.String(), stderr.String(), err
	}
	// An archive whose sha256 is not the manifest's is refused.
	tampered := filepath.Join(t.TempDir(), archiveName)
	if err := os.WriteFile(tampered, append(bytes.Clone(archive), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := install(tampered); err == nil {
		t.Errorf("krew installed an archive that does not match the manifest's sha256: %s", stderr)
	}
	if out, stderr, err := install(filepath.Join(outs[0], archiveName)); err != nil {
		t.Fatalf("krew install: %v\n%s%s", err, out, stderr)
	}
	out := run(t, root, filepath.Join(krewRoot, "bin", "kubectl-meshaddon"), "version")
	if !strings.Contains(out, "meshaddon v9.8.7") {
		t.Errorf("the installed plugin says %q, want version v9.8.7", out)
	}
}
