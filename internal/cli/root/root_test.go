package root

import (
	"bytes"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
)

func run(t *testing.T, binary string, args ...string) string {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	cmd := NewCommand(binary, streams)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%s %v: %v", binary, args, err)
	}
	return out.String()
}

func TestKubectlPluginName(t *testing.T) {
	if got := run(t, "kubectl-meshaddon", "--help"); !strings.Contains(got, "kubectl meshaddon [command]") {
		t.Errorf("as a kubectl plugin the help should say `kubectl meshaddon`:\n%s", got)
	}
	if got := run(t, "meshaddon", "--help"); !strings.Contains(got, "meshaddon [command]") || strings.Contains(got, "kubectl meshaddon") {
		t.Errorf("plain help:\n%s", got)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if got := run(t, "meshaddon", "completion", shell); !strings.Contains(got, "meshaddon") || len(got) < 200 {
			t.Errorf("completion %s printed %d bytes", shell, len(got))
		}
	}
}

func TestVersion(t *testing.T) {
	got := run(t, "meshaddon", "version")
	if !strings.Contains(got, "kubernetes") || !strings.Contains(got, "v1.34.4") {
		t.Errorf("version:\n%s", got)
	}
	var buf bytes.Buffer
	buf.WriteString(run(t, "meshaddon", "version", "-o", "json"))
	if !strings.Contains(buf.String(), `"testbedComponents"`) {
		t.Errorf("version -o json:\n%s", buf.String())
	}
}

// A --layout other than aks or upstream is a usage error (exit 2) that says
// what is wanted, before anything is started (issue 15).
func TestManagerBadLayout(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	cmd := NewCommand("meshaddon", streams)
	cmd.SetArgs([]string{"manager", "--layout", "istio", "--kubeconfig", "/nonexistent"})
	err := cmd.Execute()
	var buf bytes.Buffer
	code := exitcode.Report(&buf, err)
	if code != exitcode.Usage || !strings.Contains(buf.String(), `--layout: unknown layout "istio": want aks`) || strings.Contains(buf.String(), "goroutine") {
		t.Errorf("exit %d: %s", code, buf.String())
	}
}
