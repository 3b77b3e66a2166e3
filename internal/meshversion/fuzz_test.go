package meshversion

import (
	"strings"
	"testing"
)

func FuzzParseRevision(f *testing.F) {
	for _, s := range []string{"asm-1-27", "asm-1-0", "asm-1-007", "asm-2-1", "asm-1-", "asm-1-9999", "ASM-1-20", "asm-1-20\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRevision(s)
		if err != nil {
			if !strings.Contains(err.Error(), "asm-1-NN") {
				t.Fatalf("error %q does not say what is expected", err)
			}
			return
		}
		// Every accepted name prints back as itself and orders consistently.
		if r.String() != s {
			t.Fatalf("ParseRevision(%q).String() = %q", s, r.String())
		}
		if !r.AtLeast(r) {
			t.Fatalf("%s is not at least itself", r)
		}
	})
}

func FuzzParseKube(f *testing.F) {
	for _, s := range []string{"v1.29.2", "1.29", "v1.30.0-eks-1234", "v2.0.0", "v1", "", "v1.28.9+k3s1", "1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseKube(s)
		if err != nil {
			return
		}
		if v.Major() != 1 {
			t.Fatalf("ParseKube(%q) accepted major %d", s, v.Major())
		}
		// The decision never panics on any version a node may report.
		d := Decide(DefaultPolicy, Facts{Mode: ModeAuto, FeatureRegistered: true, APIServerVersion: s,
			Nodes: []Node{{Name: "n", KubeletVersion: s}}}, "asm-1-27")
		if d.Reason == "" {
			t.Fatalf("no reason for %q", s)
		}
	})
}

func FuzzParseEnv(f *testing.F) {
	for _, s := range []string{"true", "false", "1", "", "yes"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		inj, set, err := ParseEnv(s, true)
		if err == nil && set && inj != Native && inj != Classic {
			t.Fatalf("ParseEnv(%q) = %q", s, inj)
		}
	})
}
