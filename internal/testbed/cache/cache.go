// Package cache builds the test bed's binaries from the Go module proxy, once
// per machine, into a per-user directory keyed by component and version.
package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
	"golang.org/x/term"
)

// EnvCacheDir overrides where the cache lives.
const EnvCacheDir = "MESHADDON_CACHE"

// Component is one Go module whose main packages the test bed needs.
type Component struct {
	Name     string
	Module   string
	Version  string
	Packages []string
	// Binaries names the output of a single-package build whose import path
	// does not end in the binary's name (etcd's is .../server/v3).
	Binaries []string
	// StampKubeVersion sets k8s.io/component-base/version to Version, so
	// the servers report it from /version instead of v0.0.0.
	StampKubeVersion bool
	ReplaceStaging   bool
}

// BinaryNames returns the executables the component produces.
func (c Component) BinaryNames() []string {
	if len(c.Binaries) > 0 {
		return c.Binaries
	}
	names := make([]string, 0, len(c.Packages))
	for _, p := range c.Packages {
		names = append(names, path.Base(p))
	}
	return names
}

// key is the cache directory name: a new version is a new directory.
func (c Component) key() string { return c.Name + "-" + c.Version }

// Cache is a directory of built binaries.
type Cache struct {
	Dir string
	// Progress receives one line per build step; nil discards them.
	Progress io.Writer
	// ProgressEvery is how often a running build reports its elapsed time
	// (default 15s; every second on a terminal, rewriting one line).
	ProgressEvery time.Duration
}

// DefaultDir is $MESHADDON_CACHE, else $XDG_CACHE_HOME/meshaddon, else
// ~/.cache/meshaddon.
func DefaultDir() (string, error) {
	if d := os.Getenv(EnvCacheDir); d != "" {
		return filepath.Abs(d)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w (set %s)", err, EnvCacheDir)
	}
	return filepath.Join(base, "meshaddon"), nil
}

// New returns the cache in DefaultDir.
func New(progress io.Writer) (*Cache, error) {
	dir, err := DefaultDir()
	if err != nil {
		return nil, err
	}
	return &Cache{Dir: dir, Progress: progress}, nil
}

// Binaries maps an executable's name to its path in the cache.
type Binaries map[string]string

// Path returns the path of the named executable, or "" if it was not built.
func (b Binaries) Path(name string) string { return b[name] }

// Ensure builds every named component that is not cached yet (all of them
// when names is empty) and returns the paths of their executables. A warm
// cache starts no process. Concurrent callers, in this process or others,
// wait for each other instead of building twice.
func (c *Cache) Ensure(ctx context.Context, names ...string) (Binaries, error) {
	comps, err := selectComponents(names)
	if err != nil {
		return nil, err
	}
	var todo []Component
	for _, comp := range comps {
		if !c.Cached(comp) {
			todo = append(todo, comp)
		}
	}
	if len(todo) > 1 {
		// Download the later components' modules while the first compiles:
		// a cold build is otherwise network-bound between compiles.
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go c.prefetch(pctx, todo[1:])
	}
	bins := Binaries{}
	for _, comp := range comps {
		step := ""
		for i, t := range todo {
			if t.Name == comp.Name {
				step = fmt.Sprintf("[%d/%d] ", i+1, len(todo))
			}
		}
		dir, err := c.ensure(ctx, comp, step)
		if err != nil {
			return nil, err
		}
		for _, b := range comp.BinaryNames() {
			bins[b] = filepath.Join(dir, b)
		}
	}
	return bins, nil
}

// Cached reports whether a component's binaries are already in the cache.
func (c *Cache) Cached(comp Component) bool {
	return complete(c.binDir(comp), comp)
}

func selectComponents(names []string) ([]Component, error) {
	if len(names) == 0 {
		return Components, nil
	}
	var out []Component
	for _, n := range names {
		found := false
		for _, c := range append(Components[:len(Components):len(Components)], Tools...) {
			if c.Name == n {
				out = append(out, c)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown test bed component %q", n)
		}
	}
	return out, nil
}

func (c *Cache) binDir(comp Component) string { return filepath.Join(c.Dir, "bin", comp.key()) }

func complete(dir string, comp Component) bool {
	for _, b := range comp.BinaryNames() {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// ensure builds comp unless cached; step ("[2/4] ") places it among the
// components this Ensure builds, for progress.
func (c *Cache) ensure(ctx context.Context, comp Component, step string) (string, error) {
	dir := c.binDir(comp)
	if complete(dir, comp) {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "locks"), 0o755); err != nil {
		return "", fmt.Errorf("cache directory %s cannot be written: %w; set %s to a writable directory", c.Dir, err, EnvCacheDir)
	}
	unlock, err := LockFile(ctx, filepath.Join(c.Dir, "locks", comp.key()+".lock"))
	if err != nil {
		return "", fmt.Errorf("lock the cache for %s: %w", comp.Name, err)
	}
	defer unlock()
	// Another process may have built it while we waited for the lock.
	if complete(dir, comp) {
		return dir, nil
	}
	if err := c.build(ctx, comp, dir, step); err != nil {
		return "", err
	}
	return dir, nil
}

// LockFile takes an exclusive flock on name, polling so that ctx can cancel
// the wait; the returned func releases it.
func LockFile(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Cache) printf(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

// build compiles the component in a scratch module and moves the result into
// place with one rename, so a reader never sees half a component.
func (c *Cache) build(ctx context.Context, comp Component, dest, step string) error {
	work, err := os.MkdirTemp(filepath.Join(c.Dir, "locks"), comp.key()+"-build-")
	if err != nil {
		return fmt.Errorf("cache directory %s cannot be written: %w; set %s to a writable directory", c.Dir, err, EnvCacheDir)
	}
	defer os.RemoveAll(work)

	gomod, err := scratchModule(ctx, comp)
	if err != nil {
		return fmt.Errorf("prepare the build of %s %s: %w", comp.Name, comp.Version, err)
	}
	if err := os.WriteFile(filepath.Join(work, "go.mod"), gomod, 0o644); err != nil {
		return err
	}
	out := filepath.Join(work, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	target := out + string(filepath.Separator)
	if len(comp.Binaries) == 1 {
		target = filepath.Join(out, comp.Binaries[0])
	}
	ldflags := "-s -w"
	if comp.StampKubeVersion {
		stamp, err := kubeVersionLdflags(comp.Version)
		if err != nil {
			return fmt.Errorf("build %s: %w", comp.Name, err)
		}
		ldflags += " " + stamp
	}
	args := []string{"build", "-mod=mod", "-ldflags", ldflags, "-o", target}
	args = append(args, comp.Packages...)

	what := fmt.Sprintf("%s %s (%s)", comp.Name, comp.Version, strings.Join(comp.BinaryNames(), ", "))
	tty := isTerminal(c.Progress)
	if !tty {
		c.printf("%sbuilding %s; this happens once per version", step, what)
	}
	start := time.Now()
	var output bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("build %s: start the go command: %w (is Go installed and on PATH?)", comp.Name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	every := c.ProgressEvery
	if every <= 0 {
		every = 15 * time.Second
		if tty {
			every = time.Second
		}
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	status := func() {
		// One line per component on a terminal, rewritten in place.
		fmt.Fprintf(c.Progress, "\r\033[K%sbuilding %s: %s elapsed, once per version", step, what, time.Since(start).Round(time.Second))
	}
	if tty {
		status()
	}
	for {
		select {
		case err := <-done:
			if tty {
				fmt.Fprint(c.Progress, "\r\033[K")
			}
			if err != nil {
				return fmt.Errorf("build of %s %s failed after %s: %w\n%s", comp.Name, comp.Version,
					time.Since(start).Round(time.Second), err, tail(output.String(), 30))
			}
			if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
				return err
			}
			_ = os.RemoveAll(dest)
			if err := os.Rename(out, dest); err != nil {
				return fmt.Errorf("move %s into the cache: %w", comp.Name, err)
			}
			c.printf("%sbuilt %s in %s", step, comp.Name, time.Since(start).Round(time.Second))
			return nil
		case <-tick.C:
			if tty {
				status()
			} else {
				c.printf("  still building %s: %s elapsed", comp.Name, time.Since(start).Round(time.Second))
			}
		}
	}
}

// prefetch resolves and downloads the modules of comps, in order, the way
// their builds will (go list -deps in the same scratch module), so that each
// build finds them in the module cache. Failures are left for the build to
// report; the module cache's own locks make concurrent downloads safe.
func (c *Cache) prefetch(ctx context.Context, comps []Component) {
	for _, comp := range comps {
		if ctx.Err() != nil {
			return
		}
		work, err := os.MkdirTemp(filepath.Join(c.Dir, "locks"), comp.key()+"-prefetch-")
		if err != nil {
			return
		}
		gomod, err := scratchModule(ctx, comp)
		if err == nil {
			err = os.WriteFile(filepath.Join(work, "go.mod"), gomod, 0o644)
		}
		if err == nil {
			args := append([]string{"list", "-mod=mod", "-deps", "-e", "-f", "{{.ImportPath}}"}, comp.Packages...)
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir = work
			cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
			_ = cmd.Run()
		}
		_ = os.RemoveAll(work)
	}
}

// isTerminal reports whether w is a terminal, where progress rewrites one
// line instead of adding lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// scratchModule writes the go.mod of a module that requires comp, with the
// replace lines k8s.io/kubernetes needs outside its own repository.
func scratchModule(ctx context.Context, comp Component) ([]byte, error) {
	f := &modfile.File{}
	if err := f.AddModuleStmt("meshaddon.local/build/" + comp.Name); err != nil {
		return nil, err
	}
	if err := f.AddGoStmt("1.26"); err != nil {
		return nil, err
	}
	if err := f.AddRequire(comp.Module, comp.Version); err != nil {
		return nil, err
	}
	if comp.ReplaceStaging {
		staging, err := stagingModules(ctx, comp.Module, comp.Version)
		if err != nil {
			return nil, err
		}
		v := stagingVersion(comp.Version)
		for _, m := range staging {
			if err := f.AddReplace(m, "", m, v); err != nil {
				return nil, err
			}
		}
	}
	return f.Format()
}

// stagingVersion maps v1.34.4 to v0.34.4, the tag of the staging modules.
func stagingVersion(v string) string {
	return "v0" + strings.TrimPrefix(v, semver.Major(v))
}

// stagingModules reads the module's own go.mod and returns the modules it
// replaces with a local ./staging directory.
func stagingModules(ctx context.Context, module, version string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("download %s@%s: %s", module, version, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("download %s@%s: %w", module, version, err)
	}
	var info struct{ GoMod string }
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("read go mod download output: %w", err)
	}
	data, err := os.ReadFile(info.GoMod)
	if err != nil {
		return nil, err
	}
	mf, err := modfile.Parse(info.GoMod, data, nil)
	if err != nil {
		return nil, err
	}
	var mods []string
	for _, r := range mf.Replace {
		if strings.HasPrefix(r.New.Path, "./staging/") {
			mods = append(mods, r.Old.Path)
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%s@%s replaces no staging modules; is it really k8s.io/kubernetes?", module, version)
	}
	return mods, nil
}

// kubeVersionLdflags stamps a Kubernetes release (v1.34.4) into
// k8s.io/component-base/version as its own build does.
func kubeVersionLdflags(v string) (string, error) {
	if !semver.IsValid(v) || semver.Canonical(v) != v {
		return "", fmt.Errorf("%q is not a Kubernetes release version: want one such as v1.34.4", v)
	}
	major := semver.Major(v)
	minor := strings.TrimPrefix(semver.MajorMinor(v), major+".")
	pkg := "k8s.io/component-base/version"
	return strings.Join([]string{
		"-X " + pkg + ".gitVersion=" + v,
		"-X " + pkg + ".gitMajor=" + strings.TrimPrefix(major, "v"),
		"-X " + pkg + ".gitMinor=" + minor,
		"-X " + pkg + ".gitTreeState=clean",
		"-X " + pkg + ".buildDate=2026-01-01T00:00:00Z",
	}, " "), nil
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
