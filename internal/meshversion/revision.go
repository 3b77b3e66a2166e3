// Package meshversion holds the rules that decide whether a mesh revision
// injects native or classic sidecars: Kubernetes and asm-1-NN version parsing,
// the version policies as data, and the decision over a cluster's facts.
// The manager, precheck and migrate all decide through this package.
package meshversion

import (
	"fmt"
	"regexp"
	"strconv"

	"k8s.io/apimachinery/pkg/util/version"
)

// Revision is a mesh revision asm-1-NN (Istio 1.NN).
type Revision struct{ Major, Minor int }

var revisionPattern = regexp.MustCompile(`^asm-1-(0|[1-9][0-9]{0,2})$`)

// RevisionPattern is the OpenAPI pattern of a revision name, for CRDs.
const RevisionPattern = `^asm-1-(0|[1-9][0-9]{0,2})$`

// ParseRevision parses asm-1-NN.
func ParseRevision(s string) (Revision, error) {
	m := revisionPattern.FindStringSubmatch(s)
	if m == nil {
		return Revision{}, fmt.Errorf("invalid mesh revision %q: want asm-1-NN, e.g. asm-1-27", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return Revision{}, fmt.Errorf("invalid mesh revision %q: %v", s, err)
	}
	return Revision{Major: 1, Minor: n}, nil
}

// String is the asm-1-NN form.
func (r Revision) String() string { return fmt.Sprintf("asm-%d-%d", r.Major, r.Minor) }

// AtLeast reports whether r is o or newer.
func (r Revision) AtLeast(o Revision) bool {
	if r.Major != o.Major {
		return r.Major > o.Major
	}
	return r.Minor >= o.Minor
}

// ParseKube parses a Kubernetes version as servers and kubelets report it
// (v1.29.2, 1.29, v1.30.0-eks-1234) and keeps major.minor.patch.
func ParseKube(s string) (*version.Version, error) {
	if s == "" {
		return nil, fmt.Errorf("no Kubernetes version reported")
	}
	v, err := version.ParseGeneric(s)
	if err != nil || v.Major() != 1 {
		return nil, fmt.Errorf("%q is not a Kubernetes version: want one such as v1.29.2", s)
	}
	return v, nil
}

// MinorString prints major.minor, the form the rules speak in.
func MinorString(v *version.Version) string { return fmt.Sprintf("%d.%d", v.Major(), v.Minor()) }
