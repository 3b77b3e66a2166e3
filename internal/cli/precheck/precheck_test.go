package precheck

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// precheck's -o against a real API server (envtest): -o json keeps its
// groups and checks, and lists every finding again as items, which
// jsonpath and custom-columns read as they read kubectl's lists.
func TestOutputFormats(t *testing.T) {
	env := testenv.Environment(t)
	kcfg := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcfg, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		t.Helper()
		flags := genericclioptions.NewConfigFlags(true)
		flags.KubeConfig = &kcfg
		streams, _, out, _ := genericiooptions.NewTestIOStreams()
		cmd := NewCommand(flags, streams)
		cmd.SetArgs(append(args, "--wait", "0"))
		cmd.SetContext(context.Background())
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.Execute()
		// A failed check is exit 1 with the report printed: fine here.
		if err != nil && !errors.Is(err, exitcode.ErrReported) {
			return out.String(), err
		}
		return out.String(), nil
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("precheck %v: %v\n%s", args, err, out)
		}
		return out
	}

	js := mustRun("-o", "json")
	var rep struct {
		Groups []struct {
			Name   string
			Checks []struct {
				Name    string
				Results []struct{ Status, Message string }
			}
		}
		Summary map[string]int
		Success *bool
		Items   []struct{ Group, Name, Status, Message string }
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	var names, rows []string
	for _, g := range rep.Groups {
		for _, c := range g.Checks {
			for _, r := range c.Results {
				names = append(names, c.Name)
				rows = append(rows, c.Name+"|"+r.Status)
			}
		}
	}
	if len(names) == 0 || rep.Success == nil || rep.Summary == nil {
		t.Fatalf("-o json lacks groups, summary or success:\n%s", js)
	}
	for i, it := range rep.Items {
		if i >= len(rows) || it.Name+"|"+it.Status != rows[i] || it.Group == "" || it.Message == "" {
			t.Errorf("item %d %+v is not finding %d of the groups", i, it, i)
		}
	}
	t.Logf("%d findings in %d groups", len(rows), len(rep.Groups))
	if len(rep.Items) != len(rows) {
		t.Errorf("%d items for %d findings", len(rep.Items), len(rows))
	}

	// The checks of an API server alone are the same each run.
	if got := mustRun("-o", "jsonpath={.items[*].name}"); got != strings.Join(names, " ") {
		t.Errorf("jsonpath {.items[*].name}:\n%q\nwant\n%q", got, strings.Join(names, " "))
	}
	cc := mustRun("-o", "custom-columns=NAME:.name,STATUS:.status", "--no-headers")
	var got []string
	for _, l := range strings.Split(strings.TrimSuffix(cc, "\n"), "\n") {
		f := strings.Fields(l)
		got = append(got, strings.Join(f[:len(f)-1], " ")+"|"+f[len(f)-1])
	}
	if strings.Join(got, "\n") != strings.Join(rows, "\n") {
		t.Errorf("custom-columns:\n%s\nwant (name|status):\n%s", cc, strings.Join(rows, "\n"))
	}
	if h := mustRun("-o", "custom-columns=NAME:.name,STATUS:.status"); !strings.HasPrefix(h, "NAME ") {
		t.Errorf("custom-columns header:\n%s", h)
	}
	if got := mustRun("-o", "jsonpath={.success}"); got != "false" && got != "true" {
		t.Errorf("jsonpath reads the report's own fields: %q", got)
	}
	if text := mustRun(); !strings.Contains(text, "Status check results are") {
		t.Errorf("the default is the text report:\n%s", text)
	}

	_, err := run("-o", "xml")
	var ec *exitcode.Error
	if !errors.As(err, &ec) || ec.Code != exitcode.Usage || !strings.Contains(err.Error(), `unable to match a printer suitable for the output format "xml"`) {
		t.Errorf("-o xml: %v", err)
	}
	if _, err := run("-o", "name"); !errors.As(err, &ec) || ec.Code != exitcode.Usage {
		t.Errorf("-o name (findings are not Kubernetes objects): %v", err)
	}
}
