package status

import (
	"context"
	"fmt"
	"io"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
)

// MeshLine is the mesh in one line: its layout, each revision with its
// Istio version and tags (issue 15); empty when no istiod can be found or
// read (status still lists the pods then).
func MeshLine(ctx context.Context, kube kubernetes.Interface) string {
	m, err := meshdiscovery.Discover(ctx, kube, "")
	if err != nil || m.Layout == meshdiscovery.LayoutNone {
		return ""
	}
	revs := make([]string, 0, len(m.Revisions))
	for _, r := range m.Revisions {
		s := fmt.Sprintf("%s (Istio %s", r.Name, r.VersionString())
		if len(r.Tags) > 0 {
			s += "; tags " + strings.Join(r.Tags, ", ")
		}
		revs = append(revs, s+")")
	}
	line := fmt.Sprintf("mesh: layout %s; revisions %s", m.Layout, strings.Join(revs, ", "))
	for _, f := range m.Findings {
		line += "; " + string(f.Severity) + ": " + f.Message
	}
	return line
}

// printMesh writes MeshLine to w (stderr) above a table.
func printMesh(ctx context.Context, w io.Writer, kube kubernetes.Interface) {
	if line := MeshLine(ctx, kube); line != "" {
		fmt.Fprintln(w, line)
	}
}
