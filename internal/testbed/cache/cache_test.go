package cache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/modfile"
)

func TestStagingVersion(t *testing.T) {
	for in, want := range map[string]string{"v1.34.4": "v0.34.4", "v1.29.0": "v0.29.0"} {
		if got := stagingVersion(in); got != want {
			t.Errorf("stagingVersion(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestBinaryNames(t *testing.T) {
	for _, c := range Components {
		if len(c.BinaryNames()) == 0 {
			t.Errorf("%s builds nothing", c.Name)
		}
	}
	etcd, _ := selectComponents([]string{Etcd})
	if got := etcd[0].BinaryNames(); len(got) != 1 || got[0] != "etcd" {
		t.Errorf("etcd binaries %v", got)
	}
	if _, err := selectComponents([]string{"nosuch"}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown component: %v", err)
	}
}

// The release tools are built when asked for by name, never by the test
// bed's Ensure() of everything.
func TestToolsOnlyByName(t *testing.T) {
	all, _ := selectComponents(nil)
	for _, c := range all {
		if c.Name == Helm || c.Name == Krew {
			t.Errorf("Ensure() with no names would build %s", c.Name)
		}
	}
	tools, err := selectComponents([]string{Helm, Krew})
	if err != nil || len(tools) != 2 || tools[1].BinaryNames()[1] != "validate-krew-manifest" {
		t.Errorf("tools by name: %+v %v", tools, err)
	}
	if len(Components) != 4 {
		t.Errorf("selecting tools changed Components: %d", len(Components))
	}
}

func TestKubeVersionLdflags(t *testing.T) {
	got, err := kubeVersionLdflags("v1.34.4")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gitVersion=v1.34.4", "gitMajor=1", "gitMinor=34"} {
		if !strings.Contains(got, want) {
			t.Errorf("ldflags %q lack %q", got, want)
		}
	}
	// A pin without a minor version panicked indexing its parts.
	for _, bad := range []string{"v1", "1", "", "v1.34", "1.34.4", "v1.34.4+build", "v1.34.4 -X x=y"} {
		if got, err := kubeVersionLdflags(bad); err == nil || !strings.Contains(err.Error(), "v1.34.4") {
			t.Errorf("kubeVersionLdflags(%q) = %q, %v; want an error showing the form", bad, got, err)
		}
	}
	if _, err := kubeVersionLdflags(KubernetesVersion); err != nil {
		t.Errorf("the pinned version: %v", err)
	}
}

// Any pin gets ldflags that stamp exactly it, or an error; never a panic,
// and never a flag smuggled in through the version.
func FuzzKubeVersionLdflags(f *testing.F) {
	for _, seed := range []string{"v1.34.4", "v1", "1.2", "v1.30.0-rc.1", "v2.0.0", "v1.34.4 -X a=b", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := kubeVersionLdflags(v)
		if err != nil {
			return
		}
		fields := strings.Fields(got)
		if len(fields) != 10 || fields[1] != "k8s.io/component-base/version.gitVersion="+v {
			t.Errorf("kubeVersionLdflags(%q) = %q", v, got)
		}
		for i := 0; i < len(fields); i += 2 {
			if fields[i] != "-X" {
				t.Errorf("kubeVersionLdflags(%q) = %q: %q is not a -X flag", v, got, fields[i])
			}
		}
	})
}

// The scratch module of k8s.io/kubernetes maps every staging module to the
// matching v0 release (this reads the real go.mod from the module proxy).
func TestScratchModuleReplacesStaging(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Go module proxy")
	}
	k8s, _ := selectComponents([]string{Kubernetes})
	data, err := scratchModule(context.Background(), k8s[0])
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	replaced := map[string]string{}
	for _, r := range f.Replace {
		replaced[r.Old.Path] = r.New.Version
	}
	for _, m := range []string{"k8s.io/api", "k8s.io/client-go", "k8s.io/apiserver", "k8s.io/kubectl"} {
		if replaced[m] != "v0.34.4" {
			t.Errorf("%s replaced with %q, want v0.34.4", m, replaced[m])
		}
	}
}

// Two concurrent callers build a component once and both get it; a third,
// on a warm cache, needs no go command at all.
func TestEnsureBuildsOnceUnderConcurrency(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a small program from the Go module proxy")
	}
	saved := Components
	defer func() { Components = saved }()
	Components = []Component{{
		Name:     "stringer",
		Module:   "golang.org/x/tools",
		Version:  "v0.30.0",
		Packages: []string{"golang.org/x/tools/cmd/stringer"},
	}}
	var progress syncBuffer
	c := &Cache{Dir: t.TempDir(), Progress: &progress}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	paths := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bins, err := c.Ensure(context.Background())
			errs[i], paths[i] = err, bins.Path("stringer")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if fi, err := os.Stat(paths[i]); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("caller %d got no executable at %s", i, paths[i])
		}
	}
	// Count the line that starts a build, not the "still building" lines a
	// slow build prints every 15 s.
	if n := strings.Count(progress.String(), "; this happens once per version"); n != 1 {
		t.Errorf("built %d times, want once:\n%s", n, progress.String())
	}
	t.Setenv("PATH", "") // a warm cache runs no go command
	if _, err := c.Ensure(context.Background()); err != nil {
		t.Errorf("warm cache: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(c.Dir, "locks", "*-build-*")); len(left) > 0 {
		t.Errorf("build directories left behind: %v", left)
	}
}

func TestEnsureReportsUnwritableCache(t *testing.T) {
	saved := Components
	defer func() { Components = saved }()
	Components = []Component{{Name: "x", Module: "example.com/x", Version: "v1.0.0", Packages: []string{"example.com/x"}}}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := (&Cache{Dir: filepath.Join(file, "cache")}).Ensure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot be written") || !strings.Contains(err.Error(), EnvCacheDir) {
		t.Errorf("want an unwritable-cache error naming %s, got %v", EnvCacheDir, err)
	}
}

func TestBuildFailureNamesComponentAndShowsOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("asks the Go module proxy")
	}
	saved := Components
	defer func() { Components = saved }()
	Components = []Component{{Name: "broken", Module: "golang.org/x/tools", Version: "v0.30.0", Packages: []string{"golang.org/x/tools/cmd/nosuchcommand"}}}
	_, err := (&Cache{Dir: t.TempDir()}).Ensure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "build of broken") || !strings.Contains(err.Error(), "nosuchcommand") {
		t.Errorf("want a build error naming the component with the compiler's output, got %v", err)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
