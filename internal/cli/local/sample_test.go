package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/testbed/cluster"
)

// A cluster whose saved spec lists no revision (written by hand, or by a
// broken run) gets an error that says what to pass; it panicked indexing
// spec.Revisions[len-1].
func TestSampleWithoutRevisions(t *testing.T) {
	state := t.TempDir()
	t.Setenv(cluster.EnvStateDir, state)
	dir := filepath.Join(state, "clusters", "norev")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), []byte(`{"name":"norev","revisions":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	cmd := newSampleCommand(streams)
	cmd.SetArgs([]string{"--name", "norev"})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--revision") {
		t.Errorf("want an error that asks for --revision, got %v", err)
	}
}
