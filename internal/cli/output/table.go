package output

import (
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
)

// Column is a table column; a Wide one shows with -o wide only.
type Column struct {
	Name string
	Wide bool
}

// flusher is cli-runtime's tabwriter (GetNewTabWriter).
type flusher interface {
	io.Writer
	Flush() error
}

func newTabWriter(w io.Writer) flusher { return printers.GetNewTabWriter(w) }

// Table prints rows as kubectl get does: kubectl's table printer, into
// kubectl's tabwriter, which remembers column widths across flushes. A
// table printed page by page (Page per page) is printed as the pages
// arrive, as kubectl get --watch is: the header once, and each column as
// wide as its widest cell so far (later pages may widen it).
type Table struct {
	printer printers.ResourcePrinter
	tw      flusher
	columns []metav1.TableColumnDefinition
}

// NewTable is a table with these columns; wide shows the Wide ones.
func NewTable(w io.Writer, wide, noHeaders bool, cols ...Column) *Table {
	t := &Table{
		printer: printers.NewTablePrinter(printers.PrintOptions{Wide: wide, NoHeaders: noHeaders}),
		tw:      newTabWriter(w),
	}
	for _, c := range cols {
		d := metav1.TableColumnDefinition{Name: c.Name, Type: "string"}
		if c.Wide {
			d.Priority = 1 // kubectl's printer shows priority > 0 with wide only
		}
		t.columns = append(t.columns, d)
	}
	return t
}

// Table is the command's table for -o "" and wide, with --no-headers.
func (f *Flags) Table(w io.Writer, cols ...Column) *Table {
	return NewTable(w, f.Wide(), f.NoHeaders, cols...)
}

// Page prints rows (a cell per column, wide ones included) and flushes.
// The header comes before the first rows; an empty page prints nothing.
func (t *Table) Page(rows [][]string) error {
	tbl := &metav1.Table{ColumnDefinitions: t.columns, Rows: make([]metav1.TableRow, len(rows))}
	for i, r := range rows {
		cells := make([]any, len(r))
		for j, c := range r {
			cells[j] = c
		}
		tbl.Rows[i].Cells = cells
	}
	if err := t.printer.PrintObj(tbl, t.tw); err != nil {
		return err
	}
	return t.tw.Flush()
}

// PrintTable prints rows under headers in one go.
func PrintTable(w io.Writer, headers []string, rows [][]string) error {
	cols := make([]Column, len(headers))
	for i, h := range headers {
		cols[i] = Column{Name: h}
	}
	return NewTable(w, false, false, cols...).Page(rows)
}
