package testbed

import (
	"strings"
	"testing"
)

func TestNewestRevision(t *testing.T) {
	for _, tc := range []struct {
		revisions []string
		want      string
	}{
		{[]string{"asm-1-27"}, "asm-1-27"},
		{[]string{"asm-1-27", "asm-1-26"}, "asm-1-27"},
		{[]string{"asm-1-9", "asm-1-10"}, "asm-1-10"},
		{[]string{"bogus", "asm-1-26"}, "asm-1-26"},
		{nil, ""},
		{[]string{"bogus"}, ""},
	} {
		s := Spec{Revisions: tc.revisions}
		got, err := s.NewestRevision()
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("NewestRevision(%q) = %q, %v; want %q", tc.revisions, got, err, tc.want)
		}
	}
}

// The upstream layout: free-form revisions, tags on installed revisions,
// istio-system; bad input is one error per problem (issue 15).
func TestUpstreamSpec(t *testing.T) {
	s := DefaultSpec()
	s.Name = "up"
	s.Layout, s.Revisions, s.Tags = "upstream", []string{"default", "1-27-1"}, []string{"prod=1-27-1"}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.MeshNamespace() != "istio-system" || strings.Join(s.TagsOf("1-27-1"), ",") != "prod" || len(s.TagsOf("default")) != 0 {
		t.Errorf("namespace %s, tags of 1-27-1 %v", s.MeshNamespace(), s.TagsOf("1-27-1"))
	}
	if rev, _ := s.NewestRevision(); rev != "1-27-1" {
		t.Errorf("newest upstream revision %s", rev)
	}
	s.Tags = []string{"prod=1-28-0", "x"}
	s.Revisions = append(s.Revisions, "Bad_Name")
	err := s.Validate()
	for _, want := range []string{`points at revision "1-28-0", which is not installed`, `invalid revision tag "x"`, `invalid revision "Bad_Name"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	a := DefaultSpec()
	a.Name, a.Tags = "aks", []string{"prod=asm-1-27"}
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "tags are upstream Istio's") {
		t.Errorf("a tag on the aks layout: %v", err)
	}
	a.Tags, a.Layout = nil, "istio"
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), `unknown layout "istio"`) {
		t.Errorf("bad layout: %v", err)
	}
}
