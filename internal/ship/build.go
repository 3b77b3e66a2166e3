// Package ship builds what a release hands out: the manager's OCI image
// (image.go), the CLI's archives with their checksums and krew manifest
// (dist.go). Everything it writes is reproducible: the same source, version
// and Go toolchain give the same bytes.
package ship

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Version is the release the image, config/manager and the chart name. A
// test checks that config/manager/manager.yaml and charts/meshaddon/Chart.yaml
// say the same.
const Version = "v0.1.0"

// Repository is where the manager's image is published.
const Repository = "ghcr.io/meshaddon/meshaddon-manager"

// Source is the project's repository, the image's source label.
const Source = "https://github.com/meshaddon/meshaddon"

// VersionVar is the variable -ldflags -X stamps with the release version,
// which `meshaddon version` prints.
const VersionVar = "github.com/meshaddon/meshaddon/internal/cli/version.Stamped"

// Build compiles a main package as a release does: static (no cgo),
// -trimpath, no build ID and no VCS stamp, so the binary depends only on the
// source, the version and the toolchain. dir is the module's root.
func Build(ctx context.Context, dir, pkg, goos, goarch, version, out string) error {
	ldflags := "-s -w -buildid="
	if version != "" {
		ldflags += " -X " + VersionVar + "=" + version
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=", "GOWORK=off")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", pkg, goos, goarch, err, strings.TrimSpace(output.String()))
	}
	return nil
}

// SourceDate is when a release is dated: $SOURCE_DATE_EPOCH, the
// reproducible-builds convention, else the Unix epoch, so two builds of one
// commit are byte for byte the same.
func SourceDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
	}
	return time.Unix(sec, 0), nil
}

// ModuleRoot finds the directory holding go.mod at or above dir.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod at or above %s: run from the meshaddon repository", dir)
		}
	}
}
