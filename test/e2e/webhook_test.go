package e2e

import (
	"testing"
)

// addHazard puts a test bed hazard into ns (`meshaddon local hazard add`:
// webhooks served on 127.0.0.1 by the test bed's hazard daemon, or plain
// objects) and takes it out when the test ends.
func addHazard(t *testing.T, cluster, kind, ns string, flags ...string) {
	t.Helper()
	mustMeshaddon(t, append([]string{"local", "hazard", "add", kind, "--namespace", ns, "--name", cluster}, flags...)...)
	t.Cleanup(func() { removeHazard(t, cluster, kind, ns) })
}

// removeHazard takes a hazard out of ns; one that is not there is fine.
func removeHazard(t *testing.T, cluster, kind, ns string) {
	t.Helper()
	mustMeshaddon(t, "local", "hazard", "remove", kind, "--namespace", ns, "--name", cluster)
}
