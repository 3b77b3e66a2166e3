// Command chart writes the Helm chart's generated files from config/ (part of
// `make generate`): templates/rbac.yaml from config/rbac and crds/ from
// config/crd/bases.
package main

import (
	"fmt"
	"os"

	"github.com/meshaddon/meshaddon/internal/ship"
)

func main() {
	root, err := ship.ModuleRoot(".")
	if err == nil {
		err = ship.WriteChartFiles(root)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}
