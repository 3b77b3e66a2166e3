package output

import (
	"bytes"
	"testing"
)

func TestStreamTableGrowsColumnsAcrossPages(t *testing.T) {
	var b bytes.Buffer
	s := &StreamTable{W: &b, Headers: []string{"NAME", "MODE"}}
	if err := s.Page([][]string{{"a", "native"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Page([][]string{{"longer-name", "classic"}}); err != nil {
		t.Fatal(err)
	}
	want := "NAME   MODE\na      native\nlonger-name   classic\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}
	b.Reset()
	s = &StreamTable{W: &b, Headers: []string{"NAME"}, NoHeaders: true}
	_ = s.Page([][]string{{"x"}})
	if b.String() != "x\n" {
		t.Errorf("--no-headers: %q", b.String())
	}
}
