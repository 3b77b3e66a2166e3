// Package output is every command's -o flag: kubectl's printers (json,
// yaml, name, jsonpath, go-template, custom-columns, from cli-runtime and
// kubectl) for what the command returns, and kubectl's table printer for
// its own default and wide output.
package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/kubectl/pkg/cmd/get"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
)

// Options describe a command's -o.
type Options struct {
	// Default is -o's default; "" is the command's own output.
	Default string
	// Human are the formats besides "" the command prints itself: "wide"
	// (the table with more columns), "table" (where it was accepted before).
	Human []string
	// Names: the rows are Kubernetes objects, so -o name prints kind/name.
	Names bool
	// NoHeaders adds --no-headers, for the table and custom-columns.
	NoHeaders bool
}

// printer families: what each is given to print.
type family int

const (
	human     family = iota
	raw              // json, yaml: the command's JSON as it is
	templates        // jsonpath, go-template: the JSON, arrays as a List
	columns          // custom-columns: one row per item
	names            // name: kind/name of each object
)

// Flags is one command's -o and the flags that go with it (--template,
// --allow-missing-template-keys, --no-headers).
type Flags struct {
	Format    string
	NoHeaders bool

	opts      Options
	changed   func() bool
	jsonYaml  *genericclioptions.JSONYamlPrintFlags
	name      *genericclioptions.NamePrintFlags
	templates *genericclioptions.KubeTemplatePrintFlags
	columns   *get.CustomColumnsPrintFlags

	printer printers.ResourcePrinter
	family  family
}

// Add registers -o on cmd, with its help and completion from
// AllowedFormats.
func Add(cmd *cobra.Command, o Options) *Flags {
	f := &Flags{
		opts:      o,
		jsonYaml:  genericclioptions.NewJSONYamlPrintFlags(),
		name:      genericclioptions.NewNamePrintFlags(""),
		templates: genericclioptions.NewKubeTemplatePrintFlags(),
		columns:   get.NewCustomColumnsPrintFlags(),
	}
	f.templates.AddFlags(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&f.Format, "output", "o", o.Default, fmt.Sprintf("Output format. One of: (%s). See custom columns [https://kubernetes.io/docs/reference/kubectl/#custom-columns], golang template [http://golang.org/pkg/text/template/#pkg-overview] and jsonpath template [https://kubernetes.io/docs/reference/kubectl/jsonpath/].", strings.Join(f.AllowedFormats(), ", ")))
	f.changed = func() bool { return cmd.Flags().Changed("output") }
	if o.NoHeaders {
		fl.BoolVar(&f.NoHeaders, "no-headers", false, "When using the default or custom-column output format, don't print headers (default print headers).")
	}
	_ = cmd.RegisterFlagCompletionFunc("output", func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		var comps []string
		for _, format := range f.AllowedFormats() {
			if strings.HasPrefix(format, toComplete) {
				comps = append(comps, format)
			}
		}
		return comps, cobra.ShellCompDirectiveNoFileComp
	})
	return f
}

// AllowedFormats are the -o values the command takes ("" aside).
func (f *Flags) AllowedFormats() []string {
	formats := slices.Clone(f.jsonYaml.AllowedFormats())
	if f.opts.Names {
		formats = append(formats, f.name.AllowedFormats()...)
	}
	formats = append(formats, f.templates.AllowedFormats()...)
	formats = append(formats, f.columns.AllowedFormats()...)
	return append(formats, f.opts.Human...)
}

// Validate picks the printer: an unknown format, a template that does not
// parse or a template file that cannot be read is a usage error (exit 2),
// found before anything else is done.
func (f *Flags) Validate() error {
	format := f.Format
	tmpl := *f.templates.TemplateArgument
	if tmpl != "" && !f.changed() {
		format = "go-template" // as kubectl: --template alone means -o go-template
	}
	f.columns.NoHeaders = f.NoHeaders
	f.columns.TemplateArgument = tmpl
	try := []struct {
		family family
		to     func(string) (printers.ResourcePrinter, error)
	}{
		{templates, f.templates.ToPrinter},
		{raw, f.jsonYaml.ToPrinter},
		{columns, f.columns.ToPrinter},
	}
	if f.opts.Names {
		try = append(try, struct {
			family family
			to     func(string) (printers.ResourcePrinter, error)
		}{names, f.name.ToPrinter})
	}
	if format == "" || slices.Contains(f.opts.Human, format) {
		f.printer, f.family = nil, human
		return nil
	}
	for _, t := range try {
		p, err := t.to(format)
		if genericclioptions.IsNoCompatiblePrinterError(err) {
			continue
		}
		if err != nil {
			return exitcode.Wrap(exitcode.Usage, fmt.Errorf("-o %s: %w", format, err))
		}
		f.printer, f.family = p, t.family
		return nil
	}
	return exitcode.Wrap(exitcode.Usage, genericclioptions.NoCompatiblePrinterError{OutputFormat: &format, AllowedFormats: f.AllowedFormats()})
}

// Human says the command prints this format itself (the default, wide,
// table). Validate must have been called.
func (f *Flags) Human() bool { return f.family == human }

// Wide is -o wide.
func (f *Flags) Wide() bool { return f.Format == "wide" }

// ObjectRef names a Kubernetes object a row stands for, for -o name.
type ObjectRef struct {
	APIVersion, Kind, Namespace, Name string
}

// Workload is the reference of a workload of one of the kinds pods are
// owned by; an unknown kind (a custom controller's) prints without group.
func Workload(kind, namespace, name string) ObjectRef {
	return ObjectRef{APIVersion: workloadAPIVersions[kind], Kind: kind, Namespace: namespace, Name: name}
}

var workloadAPIVersions = map[string]string{
	"Pod": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "ReplicaSet": "apps/v1",
	"Job": "batch/v1", "CronJob": "batch/v1",
}

// Print prints v, the command's result, in a machine format (Human is
// false). json and yaml print v's JSON as it is; jsonpath, go-template and
// custom-columns read the same JSON, except that an array is read as
// kubectl's List of those items, so {.items[*].name} works as on kubectl;
// custom-columns prints a row per item of a list (anything with items),
// one row for any other object. -o name prints refs.
func (f *Flags) Print(w io.Writer, v any, refs ...ObjectRef) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return f.printJSON(w, data, refs)
}

func (f *Flags) printJSON(w io.Writer, data []byte, refs []ObjectRef) error {
	switch f.family {
	case human:
		return fmt.Errorf("output: -o %q is printed by the command", f.Format)
	case raw:
		// runtime.Unknown: cli-runtime's printers print its JSON as it is,
		// arrays and objects without apiVersion and kind alike.
		return f.printer.PrintObj(&runtime.Unknown{Raw: data, ContentType: runtime.ContentTypeJSON}, w)
	case names:
		return f.printer.PrintObj(refList(refs), w)
	}
	obj, err := unstructuredOf(data)
	if err != nil {
		return err
	}
	return f.printer.PrintObj(obj, w)
}

// unstructuredOf is the JSON as kubectl's printers read an object from the
// API server: numbers are int64 where they are whole, an array is a List,
// and an object with items is a list of them.
func unstructuredOf(data []byte) (runtime.Object, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		data = listJSON(data)
	}
	m := map[string]any{} // null reads as an empty object
	if err := utiljson.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	items, ok := m["items"].([]any)
	if !ok {
		return &unstructured.Unstructured{Object: m}, nil
	}
	list := &unstructured.UnstructuredList{Object: map[string]any{}, Items: make([]unstructured.Unstructured, len(items))}
	for i, it := range items {
		im, ok := it.(map[string]any)
		if !ok { // items that are not objects have no fields to print
			return &unstructured.Unstructured{Object: m}, nil
		}
		list.Items[i].Object = im
	}
	for k, v := range m {
		if k != "items" {
			list.Object[k] = v
		}
	}
	return list, nil
}

// listJSON wraps a JSON array as kubectl's List.
func listJSON(items []byte) []byte {
	b := append([]byte(`{"apiVersion":"v1","kind":"List","items":`), items...)
	return append(b, '}')
}

func refList(refs []ObjectRef) *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List"}}
	for _, r := range refs {
		u := unstructured.Unstructured{Object: map[string]any{}}
		u.SetAPIVersion(r.APIVersion)
		u.SetKind(r.Kind)
		u.SetNamespace(r.Namespace)
		u.SetName(r.Name)
		l.Items = append(l.Items, u)
	}
	return l
}
