package output

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"

	"sigs.k8s.io/yaml"
)

// KubeList is kubectl's List: what kubectl get -o json prints for many
// objects, and what a List prints whole.
type KubeList[T any] struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Items      []T    `json:"items"`
}

// NewKubeList is a List of items.
func NewKubeList[T any](items []T) KubeList[T] {
	if items == nil {
		items = []T{}
	}
	return KubeList[T]{APIVersion: "v1", Kind: "List", Items: items}
}

// ListSpec says how a List's items print in the table and as names.
type ListSpec[T any] struct {
	Columns []Column
	Row     func(T) []string
	// Object is the Kubernetes object an item stands for (-o name).
	Object func(T) ObjectRef
}

// List prints a KubeList whose items arrive in pages, without holding
// them where the format allows: the table, name, custom-columns, json and
// yaml print each page as it comes. json, yaml and name print the same
// bytes as printing the whole List would; the table and custom-columns
// print as kubectl get --watch does (columns widen as pages arrive).
// jsonpath and go-template can refer to any item, so they hold every item
// (as compact JSON) and print at Done.
type List[T any] struct {
	f     *Flags
	w     *countingWriter
	spec  ListSpec[T]
	table *Table
	tw    flusher
	n     int
	held  [][]byte
}

// NewList prints to w in f's format.
func NewList[T any](f *Flags, w io.Writer, spec ListSpec[T]) *List[T] {
	l := &List[T]{f: f, w: &countingWriter{w: w}, spec: spec}
	switch {
	case f.family == human:
		l.table = f.Table(l.w, spec.Columns...)
	case f.family == columns:
		l.tw = newTabWriter(l.w)
	}
	return l
}

// Page prints a page of items.
func (l *List[T]) Page(items []T) error {
	if len(items) == 0 {
		return nil
	}
	first := l.n == 0
	l.n += len(items)
	switch {
	case l.f.family == human:
		rows := make([][]string, len(items))
		for i, it := range items {
			rows[i] = l.spec.Row(it)
		}
		return l.table.Page(rows)
	case l.f.family == names:
		refs := make([]ObjectRef, len(items))
		for i, it := range items {
			refs[i] = l.spec.Object(it)
		}
		return l.f.printer.PrintObj(refList(refs), l.w)
	case l.f.family == columns:
		data, err := json.Marshal(NewKubeList(items))
		if err != nil {
			return err
		}
		obj, err := unstructuredOf(data)
		if err != nil {
			return err
		}
		if err := l.f.printer.PrintObj(obj, l.tw); err != nil {
			return err
		}
		return l.tw.Flush()
	case l.rawFormat() == "json":
		var b bytes.Buffer
		if first {
			b.WriteString(jsonHead)
		}
		for i, it := range items {
			data, err := json.Marshal(it)
			if err != nil {
				return err
			}
			if !first || i > 0 {
				b.WriteByte(',')
			}
			// As JSONPrinter indents the whole List: items two levels in.
			b.WriteString("\n        ")
			if err := json.Indent(&b, data, "        ", "    "); err != nil {
				return err
			}
		}
		_, err := l.w.Write(b.Bytes())
		return err
	case l.rawFormat() == "yaml":
		var b bytes.Buffer
		if first {
			b.WriteString("apiVersion: v1\nitems:\n")
		}
		for _, it := range items {
			data, err := json.Marshal([]T{it})
			if err != nil {
				return err
			}
			// A one-item sequence is the item as the List's items show it.
			y, err := yaml.JSONToYAML(data)
			if err != nil {
				return err
			}
			b.Write(y)
		}
		_, err := l.w.Write(b.Bytes())
		return err
	}
	for _, it := range items {
		data, err := json.Marshal(it)
		if err != nil {
			return err
		}
		l.held = append(l.held, data)
	}
	return nil
}

const jsonHead = "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"List\",\n    \"items\": ["

// Done ends the List, and says whether anything was printed at all.
func (l *List[T]) Done() (printed bool, err error) {
	switch {
	case l.f.family == human || l.f.family == names || l.f.family == columns:
	case l.rawFormat() == "json":
		end := "\n    ]\n}\n"
		if l.n == 0 {
			end = jsonHead + "]\n}\n"
		}
		_, err = io.WriteString(l.w, end)
	case l.rawFormat() == "yaml":
		end := "kind: List\n"
		if l.n == 0 {
			end = "apiVersion: v1\nitems: []\nkind: List\n"
		}
		_, err = io.WriteString(l.w, end)
	default:
		items := bytes.Join(l.held, []byte{','})
		l.held = nil
		err = l.f.printJSON(l.w, listJSON(append(append([]byte{'['}, items...), ']')), nil)
	}
	return l.w.n > 0, err
}

// rawFormat is json or yaml when those print (kyaml is held).
func (l *List[T]) rawFormat() string {
	if l.f.family != raw {
		return ""
	}
	return strings.ToLower(l.f.Format)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
