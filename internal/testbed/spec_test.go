package testbed

import "testing"

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
