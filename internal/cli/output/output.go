// Package output prints command results the way kubectl does: a table by
// default, or JSON / YAML with -o.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// Validate checks an -o value against the formats a command supports.
func Validate(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q: want one of %s", format, strings.Join(allowed, ", "))
}

// Structured prints v as JSON or YAML; it reports false for other formats.
func Structured(w io.Writer, format string, v any) (bool, error) {
	switch format {
	case "json":
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return true, err
		}
		_, err = fmt.Fprintln(w, string(data))
		return true, err
	case "yaml":
		data, err := yaml.Marshal(v)
		if err != nil {
			return true, err
		}
		_, err = w.Write(data)
		return true, err
	}
	return false, nil
}

// Table prints rows under tab-aligned headers, as kubectl does.
func Table(w io.Writer, headers []string, rows [][]string) error {
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// StreamTable prints a table page by page as kubectl's columns look, without
// holding the rows: each column is as wide as the widest cell seen so far,
// so columns only grow as pages arrive.
type StreamTable struct {
	W         io.Writer
	Headers   []string
	NoHeaders bool

	widths  []int
	started bool
}

// Page prints rows, and the headers before the first page.
func (s *StreamTable) Page(rows [][]string) error {
	if s.widths == nil {
		s.widths = make([]int, len(s.Headers))
		for i, h := range s.Headers {
			s.widths[i] = len(h)
		}
	}
	for _, r := range rows {
		for i, c := range r {
			if i < len(s.widths) && len(c) > s.widths[i] {
				s.widths[i] = len(c)
			}
		}
	}
	var b strings.Builder
	if !s.started && !s.NoHeaders {
		s.line(&b, s.Headers)
	}
	s.started = true
	for _, r := range rows {
		s.line(&b, r)
	}
	_, err := io.WriteString(s.W, b.String())
	return err
}

func (s *StreamTable) line(b *strings.Builder, cells []string) {
	for i, c := range cells {
		b.WriteString(c)
		if i < len(cells)-1 {
			b.WriteString(strings.Repeat(" ", s.widths[i]-len(c)+3))
		}
	}
	b.WriteByte('\n')
}
