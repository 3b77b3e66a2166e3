package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/itchyny/gojq"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
)

// The seed document's Azure CLI commands, verbatim.
const (
	azFeatureRegister  = `az feature register --namespace Microsoft.ContainerService --name IstioNativeSidecarModePreview`
	azFeatureShow      = `az feature show --namespace Microsoft.ContainerService --name IstioNativeSidecarModePreview`
	azProviderRegister = `az provider register --namespace Microsoft.ContainerService`
	azAKSShow          = `az aks show --resource-group $RESOURCE_GROUP --name $CLUSTER -o json`
	azAKSUpdate        = `az aks update --resource-group $RESOURCE_GROUP --name $CLUSTER`
)

// The document's jq filters on az aks show.
var azAKSShowJQ = []string{`.kubernetesVersion`, `.agentPoolProfiles[] | { currentOrchestratorVersion, powerState}`, `.serviceMeshProfile.istio.revisions`}

// azureCLI runs the document's five az commands, as written, against the
// test bed's local ARM endpoint, after the one-time setup `local arm-env
// --az` prints (in a config directory of the test's own). The cluster's
// pools must be on currentVersion and the mesh on revision.
func azureCLI(t *testing.T, cluster, revision string) {
	if _, err := exec.LookPath("az"); err != nil {
		t.Skip("az is not on PATH: install the Azure CLI (Debian: apt-get install azure-cli) to run the document's az commands against the local ARM endpoint")
	}
	setup := mustMeshaddon(t, "local", "arm-env", "--az", "--name", cluster).stdout
	var exports []string
	for _, line := range strings.Split(setup, "\n") {
		if strings.HasPrefix(line, "export ") {
			exports = append(exports, line)
		}
	}
	env := append(os.Environ(), "AZURE_CONFIG_DIR="+t.TempDir(), "AZURE_CORE_COLLECT_TELEMETRY=no")
	// sh runs script in bash as a person types it after the setup's
	// exports; with input, its stdin is a terminal that types input (az
	// asks for confirmations only on a terminal).
	sh := func(script, input string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-c", strings.Join(append(slices.Clone(exports), script), "\n"))
		cmd.Env = env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := runOnTerminal(cmd, input)
		r := result{stdout: out.String(), stderr: errOut.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		return r
	}
	mustJSON := func(r result, script string) map[string]any {
		t.Helper()
		var v map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil {
			t.Fatalf("%s: %s", script, r)
		}
		return v
	}

	if r := sh(setup, ""); r.code != 0 || !strings.Contains(r.stdout, "meshaddon local") {
		t.Fatalf("the az setup printed by local arm-env --az:\n%s\n%s", setup, r)
	}

	f := mustJSON(sh(azFeatureRegister, ""), azFeatureRegister)
	if state := f["properties"].(map[string]any)["state"]; f["name"] != "Microsoft.ContainerService/IstioNativeSidecarModePreview" || (state != "Registering" && state != "Registered") {
		t.Errorf("%s printed %v", azFeatureRegister, f)
	}
	waitFor(t, time.Minute, "az feature show says Registered", func(context.Context) (bool, string) {
		f := mustJSON(sh(azFeatureShow, ""), azFeatureShow)
		state, _ := f["properties"].(map[string]any)["state"].(string)
		return state == "Registered", fmt.Sprint(f)
	})
	if r := sh(azProviderRegister, ""); r.code != 0 {
		t.Errorf("%s: %s", azProviderRegister, r)
	}

	// az aks show, through the document's three jq filters.
	mc := mustJSON(sh(azAKSShow, ""), azAKSShow)
	jq := func(filter string) []any {
		t.Helper()
		q, err := gojq.Parse(filter)
		if err != nil {
			t.Fatal(err)
		}
		var out []any
		for it := q.Run(mc); ; {
			v, ok := it.Next()
			if !ok {
				return out
			}
			if err, ok := v.(error); ok {
				t.Fatalf("jq %s: %v", filter, err)
			}
			out = append(out, v)
		}
	}
	want := strings.TrimPrefix(currentVersion, "v")
	if got := jq(azAKSShowJQ[0]); len(got) != 1 || got[0] != want {
		t.Errorf("jq %s: %v, want %q", azAKSShowJQ[0], got, want)
	}
	pools := jq(azAKSShowJQ[1])
	if len(pools) == 0 {
		t.Errorf("jq %s: no agent pools in %v", azAKSShowJQ[1], mc)
	}
	for _, p := range pools {
		p := p.(map[string]any)
		if power, _ := p["powerState"].(map[string]any); p["currentOrchestratorVersion"] != want || power["code"] != "Running" {
			t.Errorf("jq %s: %v, want currentOrchestratorVersion %s and powerState Running", azAKSShowJQ[1], p, want)
		}
	}
	// An Azure CLI whose managed-cluster model predates serviceMeshProfile
	// (az 2.45 reads api-version 2022-11-01) prints no such field: jq null.
	revisions := jq(azAKSShowJQ[2])
	if _, shown := mc["serviceMeshProfile"]; shown && fmt.Sprint(revisions) != fmt.Sprint([]any{[]any{revision}}) ||
		!shown && fmt.Sprint(revisions) != "[<nil>]" {
		t.Errorf("jq %s: %v, want [%s] (or null from a CLI that does not know the field)", azAKSShowJQ[2], revisions, revision)
	}

	// az aks update with no arguments asks whether to reconcile: yes. It
	// PUTs what it read and waits for the operation; the mesh keeps its
	// revision and the add-on reconciles.
	cl := ctrlClientFor(t, cluster)
	var before v1alpha1.MeshProfile
	if err := cl.Get(context.Background(), client.ObjectKey{Name: v1alpha1.MeshProfileName}, &before); err != nil {
		t.Fatal(err)
	}
	r := sh(azAKSUpdate, "y\n")
	prompt, answer, asked := strings.Cut(r.stdout, "(y/N): ")
	if !asked || !strings.Contains(prompt, "reconcile") {
		t.Fatalf("%s did not ask whether to reconcile: %s", azAKSUpdate, r)
	}
	r.stdout = answer
	updated := mustJSON(r, azAKSUpdate)
	if props, _ := updated["provisioningState"].(string); props != "Succeeded" {
		t.Errorf("%s: provisioningState %v, want Succeeded", azAKSUpdate, updated["provisioningState"])
	}
	var after v1alpha1.MeshProfile
	if err := cl.Get(context.Background(), client.ObjectKey{Name: v1alpha1.MeshProfileName}, &after); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after.Spec.Revisions, []string{revision}) {
		t.Errorf("revisions after az aks update: %v, want [%s]", after.Spec.Revisions, revision)
	}
	if a, b := after.Annotations[v1alpha1.ReconcileRequestAnnotation], before.Annotations[v1alpha1.ReconcileRequestAnnotation]; a == "" || a == b {
		t.Errorf("az aks update did not ask the add-on to reconcile: %s=%q (before %q)", v1alpha1.ReconcileRequestAnnotation, a, b)
	}
	if got := istiodEnvByDocument(t, cluster); !slices.Equal(got, []string{"true"}) {
		t.Errorf("the document's istiod check after az aks update: %v, want [true]", got)
	}
}

// runOnTerminal runs cmd; with input, its stdin is a new pseudo-terminal
// whose other side types input.
func runOnTerminal(cmd *exec.Cmd, input string) error {
	if input == "" {
		return cmd.Run()
	}
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock the pseudo-terminal: %w", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		return err
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	cmd.Stdin = tty
	err = cmd.Start()
	tty.Close()
	if err != nil {
		return err
	}
	go func() { _, _ = io.Copy(io.Discard, ptmx) }() // the terminal's echo
	if _, err := ptmx.Write([]byte(input)); err != nil {
		return err
	}
	return cmd.Wait()
}
