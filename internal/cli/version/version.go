// Package version is the `meshaddon version` command.
package version

import (
	"encoding/json"
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

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
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of meshaddon and of the test bed components it pins",
		Long:  "Print the version of meshaddon and the versions of the components the local test bed builds.",
		Example: `  meshaddon version
  meshaddon version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := Get()
			switch output {
			case "json":
				data, _ := json.MarshalIndent(info, "", "  ")
				fmt.Fprintln(streams.Out, string(data))
			case "":
				fmt.Fprintf(streams.Out, "meshaddon %s (%s)\n", info.Version, info.GoVersion)
				for _, c := range cache.Components {
					fmt.Fprintf(streams.Out, "  test bed %-10s %s\n", c.Name, c.Version)
				}
			default:
				return fmt.Errorf("unknown output format %q: want json, or nothing for text", output)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json")
	return cmd
}
