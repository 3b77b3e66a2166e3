// Package meshversion parses Kubernetes versions and asm-1-NN mesh revisions.
package meshversion

import (
	"fmt"
	"regexp"
	"strconv"
)

// Revision is a mesh revision asm-1-NN (Istio 1.NN).
type Revision struct{ Major, Minor int }

var revisionPattern = regexp.MustCompile(`^asm-1-([0-9]{1,3})$`)

// ParseRevision parses asm-1-NN.
func ParseRevision(s string) (Revision, error) {
	m := revisionPattern.FindStringSubmatch(s)
	if m == nil {
		return Revision{}, fmt.Errorf("invalid mesh revision %q: want asm-1-NN, e.g. asm-1-27", s)
	}
	n, _ := strconv.Atoi(m[1])
	return Revision{Major: 1, Minor: n}, nil
}

// String is the asm-1-NN form.
func (r Revision) String() string { return fmt.Sprintf("asm-%d-%d", r.Major, r.Minor) }
