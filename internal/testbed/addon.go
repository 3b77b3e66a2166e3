package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/config"
	"github.com/meshaddon/meshaddon/internal/platform"
	"github.com/meshaddon/meshaddon/internal/testbed/cache"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

// ManagerDaemon is the name of the add-on manager's pid and log files.
const ManagerDaemon = "manager"

// ManagerNamespace holds the manager's leader election lease, as in config/.
const ManagerNamespace = "meshaddon-system"

// FeatureDelay is how long a feature takes to register on the test bed.
const FeatureDelay = 3 * time.Second

// InstallCRDs creates or updates the meshaddon.dev CRDs and waits until the
// API server serves them.
func InstallCRDs(ctx context.Context, cl client.Client) error {
	crds, err := config.CRDObjects()
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if err := cl.Patch(ctx, crd, client.Apply, client.FieldOwner("meshaddon-testbed"), client.ForceOwnership); err != nil {
			return fmt.Errorf("install CRD %s: %w", crd.Name, err)
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			if err := cl.Get(ctx, client.ObjectKeyFromObject(crd), crd); err != nil {
				return false, nil
			}
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s is not established: %w", crd.Name, err)
		}
		// Established is not yet served: API discovery can lag behind it,
		// and a create right away fails with "no matches for kind".
		gk := schema.GroupKind{Group: crd.Spec.Group, Kind: crd.Spec.Names.Kind}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := cl.RESTMapper().RESTMapping(gk, crd.Spec.Versions[0].Name)
			return err == nil, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s is established but not served by API discovery: %w", crd.Name, err)
		}
	}
	return nil
}

// ensureProfile creates the MeshProfile if it is missing; it reports whether
// it created one. An existing profile is left alone: it is the operator's.
func ensureProfile(ctx context.Context, cl client.Client, spec Spec) (bool, error) {
	origin := v1alpha1.OriginExistingCluster
	if spec.NewCluster {
		origin = v1alpha1.OriginNewCluster
	}
	p := &v1alpha1.MeshProfile{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName},
		Spec:       v1alpha1.MeshProfileSpec{Revisions: spec.Revisions, NativeSidecarMode: "Auto", Origin: origin},
	}
	if spec.Upstream() {
		// The manager finds upstream revisions itself; spec.revisions is
		// the add-on's asm-1-NN list.
		p.Spec.Revisions = nil
	}
	err := cl.Create(ctx, p)
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create the MeshProfile: %w", err)
	}
	return true, nil
}

// ManagerBinary is the manager-only executable `make build` puts next to
// meshaddon; the test bed runs it when present (it is smaller in memory)
// and `meshaddon manager` otherwise.
const ManagerBinary = "meshaddon-manager"

// manager is the add-on manager's daemon; args are its flags when starting.
func (t *Testbed) manager(args ...string) proc.Daemon {
	cmd := []string{t.Self, "manager"}
	if alone := filepath.Join(filepath.Dir(t.Self), ManagerBinary); isExecutable(alone) {
		cmd = []string{alone}
	}
	return proc.Daemon{
		PIDFile: t.Cluster.PIDFile(ManagerDaemon),
		LogFile: filepath.Join(t.Cluster.LogDir(), ManagerDaemon+".log"),
		Args:    append(cmd, args...),
	}
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// startAddon installs the API, the profile and the manager; it returns what
// it changed.
func (t *Testbed) startAddon(ctx context.Context, cl client.Client, spec Spec) ([]string, error) {
	var changes []string
	if err := InstallCRDs(ctx, cl); err != nil {
		return nil, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ManagerNamespace}}
	if err := cl.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", ManagerNamespace, err)
	}
	created, err := ensureProfile(ctx, cl, spec)
	if err != nil {
		return nil, err
	}
	if created {
		kind := "an existing cluster's"
		if spec.NewCluster {
			kind = "a new cluster's"
		}
		changes = append(changes, "created the MeshProfile as "+kind)
	}
	if !spec.Manager {
		return changes, nil
	}
	ports, err := proc.FreePorts(2)
	if err != nil {
		return changes, err
	}
	guard, err := t.registerGuard(ctx, cl)
	if err != nil {
		return changes, err
	}
	args := []string{"--kubeconfig", t.Cluster.KubeconfigPath()}
	if spec.Upstream() {
		args = append(args, "--layout", spec.Layout)
	} else {
		args = append(args, "--policy", spec.Policy)
	}
	if spec.Observe {
		args = append(args, "--observe")
	}
	args = append(args, guard...)
	started, err := t.manager(append(args,
		"--feature-registration-delay", FeatureDelay.String(),
		"--leader-election-namespace", ManagerNamespace,
		"--leader-election-lease-duration", "6s",
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(ports[0]),
		"--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(ports[1]),
	)...).Start()
	if err != nil {
		return changes, err
	}
	if started {
		changes = append(changes, fmt.Sprintf("started the add-on manager (metrics 127.0.0.1:%d, probes 127.0.0.1:%d)", ports[0], ports[1]))
	}
	return changes, waitReconciled(ctx, cl, spec, 60*time.Second)
}

// waitReconciled waits until the manager has acted on the profile's current
// generation and every istiod runs, rolled out, what it decided — as
// `meshaddon reconcile` waits — so pods created after `local up` meet the
// decided injection.
func waitReconciled(ctx context.Context, cl client.Client, spec Spec, timeout time.Duration) error {
	var p v1alpha1.MeshProfile
	waiting := "the add-on manager to reconcile the MeshProfile"
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
			return false, nil
		}
		if p.Status.ObservedGeneration != p.Generation || meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReconciled) == nil {
			return false, nil
		}
		if spec.Observe {
			return true, nil // it writes nothing: nothing to settle
		}
		msg, done, err := platform.IstiodsSettled(ctx, cl, &p, spec.MeshNamespace())
		if !done {
			waiting = msg
		}
		return done, err
	})
	if err != nil {
		if ctx.Err() == nil && !wait.Interrupted(err) {
			return err
		}
		return fmt.Errorf("the add-on's istiods did not settle within %s (last: %s)", timeout, waiting)
	}
	return nil
}

// InstallEnabledRevisions plays the platform's part of `mesh enable`: every
// second it installs each revision the MeshProfile lists that has no istiod
// yet, as `local up` does. It runs inside the runner daemon until ctx ends.
func (t *Testbed) InstallEnabledRevisions(ctx context.Context, bins cache.Binaries) {
	var spec Spec
	if err := t.Cluster.LoadSpec(&spec); err != nil {
		t.printf("installing enabled revisions is off: %v", err)
		return
	}
	cl, err := t.clients()
	if err != nil {
		t.printf("installing enabled revisions is off: %v", err)
		return
	}
	_ = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		var p v1alpha1.MeshProfile
		if err := cl.ctrl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
			return false, nil
		}
		var missing []string
		for _, rev := range p.Spec.Revisions {
			if _, err := cl.kube.AppsV1().Deployments(mesh.Namespace).Get(ctx, "istiod-"+rev, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				missing = append(missing, rev)
			}
		}
		if len(missing) > 0 {
			changes, err := t.InstallRevisions(ctx, bins, missing, spec.NativeSidecars)
			for _, c := range changes {
				t.printf("%s (enabled in the MeshProfile)", c)
			}
			if err != nil {
				t.printf("install %v: %v", missing, err)
			}
		}
		return false, nil
	})
}
