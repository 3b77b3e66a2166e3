// Package version is the `meshaddon version` command.
package version

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/output"
	"github.com/meshaddon/meshaddon/internal/testbed/cache"
)

// Info is what the command prints.
type Info struct {
	Version    string            `json:"version"`
	GoVersion  string            `json:"goVersion"`
	Components map[string]string `json:"testbedComponents"`
}

// Stamped is the release version, set by `make dist` and `make image` with
// -ldflags -X (internal/ship); empty in other builds.
var Stamped string

// Get returns the build's version: the stamped release, else the module
// information Go embeds.
func Get() Info {
	info := Info{Version: "(devel)", Components: map[string]string{}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		if bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Version == "(devel)" {
				info.Version = "(devel) " + s.Value
			}
		}
	}
	if Stamped != "" {
		info.Version = Stamped
	}
	for _, c := range cache.Components {
		info.Components[c.Name] = c.Version
	}
	return info
}

// NewCommand returns `meshaddon version`.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var out *output.Flags
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of meshaddon and of the test bed components it pins",
		Long:  "Print the version of meshaddon and the versions of the components the local test bed builds.",
		Example: `  meshaddon version
  meshaddon version -o json
  meshaddon version -o jsonpath='{.version}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.Validate(); err != nil {
				return err
			}
			info := Get()
			if !out.Human() {
				return out.Print(streams.Out, info)
			}
			fmt.Fprintf(streams.Out, "meshaddon %s (%s)\n", info.Version, info.GoVersion)
			for _, c := range cache.Components {
				fmt.Fprintf(streams.Out, "  test bed %-10s %s\n", c.Name, c.Version)
			}
			return nil
		},
	}
	out = output.Add(cmd, output.Options{})
	return cmd
}
