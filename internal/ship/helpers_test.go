package ship

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshaddon/meshaddon/internal/testbed/cache"
)

// tool returns the path of a pinned tool's binary, building it into the test
// bed's cache the first time (helm, krew).
func tool(t *testing.T, component, binary string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s built from the module proxy", component)
	}
	c, err := cache.New(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := c.Ensure(context.Background(), component)
	if err != nil {
		t.Fatal(err)
	}
	return bins.Path(binary)
}

// run runs a command and returns its stdout, failing the test with its
// stderr when it fails.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, stderr, err := runE(dir, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s%s", filepath.Base(name), args, err, out, stderr)
	}
	return out
}

func runE(dir string, name string, args ...string) (string, string, error) {
	var out, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	return out.String(), stderr.String(), err
}

// objects decodes a YAML stream of Kubernetes objects (empty documents
// skipped).
func objects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}
