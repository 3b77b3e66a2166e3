package output

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
)

type row struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Mode      string `json:"mode"`
	Count     int64  `json:"count"`
	Note      string `json:"note,omitempty"`
}

func (r row) ref() ObjectRef {
	return ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: r.Namespace, Name: r.Name}
}

// flags parses args into a command's -o as cobra would.
func flags(t *testing.T, o Options, args ...string) (*Flags, error) {
	t.Helper()
	cmd := &cobra.Command{Use: "x"}
	f := Add(cmd, o)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return f, f.Validate()
}

func mustFlags(t *testing.T, o Options, args ...string) *Flags {
	t.Helper()
	f, err := flags(t, o, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return f
}

func printOut(t *testing.T, f *Flags, v any, refs ...ObjectRef) string {
	t.Helper()
	var b bytes.Buffer
	if err := f.Print(&b, v, refs...); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var rows = []row{{Namespace: "a", Name: "web", Mode: "native", Count: 1500000000}, {Namespace: "b", Name: "db", Mode: "classic"}}

func TestUnknownFormatIsKubectlsUsageError(t *testing.T) {
	_, err := flags(t, Options{Human: []string{"wide"}}, "-o", "xml")
	var ec *exitcode.Error
	if !errors.As(err, &ec) || ec.Code != exitcode.Usage {
		t.Fatalf("want a usage error, got %v", err)
	}
	want := `unable to match a printer suitable for the output format "xml", allowed formats are: custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,template,templatefile,wide,yaml`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	// name only where rows are Kubernetes objects.
	if _, err := flags(t, Options{Names: true}, "-o", "name"); err != nil {
		t.Error(err)
	}
	if _, err := flags(t, Options{}, "-o", "name"); err == nil {
		t.Error("-o name accepted for rows that are not Kubernetes objects")
	}
	for _, bad := range [][]string{
		{"-o", "jsonpath={.items[*"},
		{"-o", "custom-columns="},
		{"-o", "go-template={{.x"},
		{"-o", "jsonpath-file=/nonexistent/x"},
	} {
		_, err := flags(t, Options{}, bad...)
		if !errors.As(err, &ec) || ec.Code != exitcode.Usage {
			t.Errorf("%v: want a usage error, got %v", bad, err)
		}
	}
}

func TestHelpAndCompletionListAllowedFormats(t *testing.T) {
	root := &cobra.Command{Use: "root"}
	sub := &cobra.Command{Use: "sub", RunE: func(*cobra.Command, []string) error { return nil }}
	f := Add(sub, Options{Human: []string{"wide"}, Names: true})
	root.AddCommand(sub)
	if u := sub.Flags().Lookup("output").Usage; !strings.Contains(u, strings.Join(f.AllowedFormats(), ", ")) {
		t.Errorf("-o help does not list the formats: %s", u)
	}
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{cobra.ShellCompRequestCmd, "sub", "-o", "js"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out.String()); strings.Join(got, " ") != "json jsonpath jsonpath-as-json jsonpath-file :4" {
		t.Errorf("completion of -o js: %q", out.String())
	}
}

func TestHumanFormats(t *testing.T) {
	for _, args := range [][]string{nil, {"-o", "wide"}, {"-o", ""}} {
		if f := mustFlags(t, Options{Human: []string{"wide"}}, args...); !f.Human() {
			t.Errorf("%v is the command's own output", args)
		}
	}
	// A default other than the human output (feature show prints JSON, as az).
	if f := mustFlags(t, Options{Default: "json", Human: []string{"table"}}); f.Human() {
		t.Error("default json is not human")
	}
	// --template alone is -o go-template, as on kubectl.
	f := mustFlags(t, Options{}, "--template", "{{len .items}}")
	if got := printOut(t, f, rows); got != "2" {
		t.Errorf("--template: %q", got)
	}
}

// An array is printed as it is by json and yaml, and read as kubectl's
// List by jsonpath, go-template and custom-columns.
func TestPrintArray(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "jsonpath={.items[*].name}"}, "web db"},
		{[]string{"-o", "jsonpath={.items[0].count}"}, "1500000000"},
		{[]string{"-o", "jsonpath={.kind}"}, "List"},
		{[]string{"-o", "go-template={{range .items}}{{.name}} {{end}}"}, "web db "},
		{[]string{"-o", "custom-columns=NAME:.name,MODE:.mode"}, "NAME   MODE\nweb    native\ndb     classic\n"},
		{[]string{"-o", "custom-columns=NAME:.name", "--no-headers"}, "web\ndb\n"},
		{[]string{"-o", "name"}, "pod/web\npod/db\n"},
		{[]string{"-o", "yaml"}, "- count: 1500000000\n  mode: native\n  name: web\n  namespace: a\n- count: 0\n  mode: classic\n  name: db\n  namespace: b\n"},
	} {
		f := mustFlags(t, Options{Names: true, NoHeaders: true}, c.args...)
		if got := printOut(t, f, rows, rows[0].ref(), rows[1].ref()); got != c.want {
			t.Errorf("%v:\ngot  %q\nwant %q", c.args, got, c.want)
		}
	}
	f := mustFlags(t, Options{}, "-o", "json")
	want := "[\n    {\n        \"namespace\": \"a\",\n        \"name\": \"web\",\n        \"mode\": \"native\",\n        \"count\": 1500000000\n    },\n" +
		"    {\n        \"namespace\": \"b\",\n        \"name\": \"db\",\n        \"mode\": \"classic\",\n        \"count\": 0\n    }\n]\n"
	if got := printOut(t, f, rows); got != want {
		t.Errorf("json keeps the array and the fields' order:\n%s", got)
	}
}

// An object is read as it prints; custom-columns prints a row per item of
// an object with items, one row for any other object.
func TestPrintObject(t *testing.T) {
	report := struct {
		Success bool  `json:"success"`
		Items   []row `json:"items"`
	}{true, rows}
	single := map[string]string{"version": "v1.2.3"}
	for _, c := range []struct {
		v    any
		args []string
		want string
	}{
		{report, []string{"-o", "jsonpath={.items[*].name}"}, "web db"},
		{report, []string{"-o", "jsonpath={.success}"}, "true"},
		{report, []string{"-o", "custom-columns=NAME:.name"}, "NAME\nweb\ndb\n"},
		{single, []string{"-o", "custom-columns=VERSION:.version"}, "VERSION\nv1.2.3\n"},
		{single, []string{"-o", "json"}, "{\n    \"version\": \"v1.2.3\"\n}\n"},
		{single, []string{"-o", "yaml"}, "version: v1.2.3\n"},
	} {
		f := mustFlags(t, Options{}, c.args...)
		if got := printOut(t, f, c.v); got != c.want {
			t.Errorf("%v:\ngot  %q\nwant %q", c.args, got, c.want)
		}
	}
}

// A List printed page by page prints what printing it whole prints:
// exactly for json, yaml, name, jsonpath and go-template.
func TestListPagesPrintAsTheWholeList(t *testing.T) {
	long := strings.Repeat("a long message with <html> & spaces ", 5)
	var all []row
	for i := range 7 {
		all = append(all, row{Namespace: fmt.Sprintf("ns-%d", i%3), Name: fmt.Sprintf("pod-%d", i), Mode: "native", Count: int64(i) << 40, Note: long[:i*20]})
	}
	spec := ListSpec[row]{Object: row.ref}
	for _, args := range [][]string{
		{"-o", "json"}, {"-o", "yaml"}, {"-o", "name"},
		{"-o", "jsonpath={.items[*].name}"}, {"-o", `jsonpath={range .items[?(@.mode=="native")]}{.note}{"\n"}{end}`},
		{"-o", "go-template={{range .items}}{{.namespace}}/{{.name}}{{\"\\n\"}}{{end}}"},
	} {
		for _, pages := range [][][]row{nil, {nil}, {all}, {all[:3], nil, all[3:5], all[5:]}} {
			var items []row
			for _, p := range pages {
				items = append(items, p...)
			}
			f := mustFlags(t, Options{Names: true}, args...)
			var whole bytes.Buffer
			refs := make([]ObjectRef, len(items))
			for i, it := range items {
				refs[i] = it.ref()
			}
			if err := f.Print(&whole, NewKubeList(items), refs...); err != nil {
				t.Fatal(err)
			}
			f = mustFlags(t, Options{Names: true}, args...)
			var streamed bytes.Buffer
			l := NewList(f, &streamed, spec)
			for _, p := range pages {
				if err := l.Page(p); err != nil {
					t.Fatal(err)
				}
			}
			printed, err := l.Done()
			if err != nil {
				t.Fatal(err)
			}
			if streamed.String() != whole.String() {
				t.Errorf("%v, %d pages of %d items:\nstreamed:\n%s\nwhole:\n%s", args, len(pages), len(items), streamed.String(), whole.String())
			}
			if printed != (whole.Len() > 0) {
				t.Errorf("%v: printed %t, %d bytes", args, printed, whole.Len())
			}
		}
	}
}

// The table streams as kubectl get --watch: the header once, columns
// widening as pages arrive, wide columns only with -o wide.
func TestTablePages(t *testing.T) {
	cols := []Column{{Name: "NAME"}, {Name: "MODE"}, {Name: "NODE", Wide: true}}
	page := func(t *Table, rows ...[]string) {
		if err := t.Page(rows); err != nil {
			panic(err)
		}
	}
	var b bytes.Buffer
	tbl := NewTable(&b, false, false, cols...)
	page(tbl)
	page(tbl, []string{"a", "native", "n1"})
	page(tbl, []string{"longer-name", "classic", "n2"})
	want := "NAME   MODE\na      native\nlonger-name   classic\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}
	b.Reset()
	tbl = NewTable(&b, true, true, cols...)
	page(tbl, []string{"a", "native", "n1"})
	if b.String() != "a     native   n1\n" { // kubectl's minimum width is 6
		t.Errorf("wide, no headers: %q", b.String())
	}
	b.Reset()
	// Cells cannot move the terminal: kubectl's printer escapes them.
	if err := PrintTable(&b, []string{"NAME"}, [][]string{{"x\x1b[2Jy"}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "\x1b") {
		t.Errorf("escape sequence printed: %q", b.String())
	}
}

// null (a nil slice or pointer) prints as null and reads as an empty object.
func TestPrintNull(t *testing.T) {
	var none []row
	if got := printOut(t, mustFlags(t, Options{}, "-o", "json"), none); got != "null\n" {
		t.Errorf("json: %q", got)
	}
	if got := printOut(t, mustFlags(t, Options{}, "-o", "jsonpath={.items[*].name}"), none); got != "" {
		t.Errorf("jsonpath: %q", got)
	}
	if got := printOut(t, mustFlags(t, Options{}, "-o", "custom-columns=NAME:.name"), none); got != "NAME\n<none>\n" {
		t.Errorf("custom-columns: %q", got)
	}
}
