// Package cluster runs the test bed's control plane with kwokctl's binary
// runtime from cached binaries, and keeps each cluster's files in one
// directory so that two clusters can run side by side and `down` can remove
// every trace of one.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	kwokconfig "sigs.k8s.io/kwok/pkg/apis/config/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/meshaddon/meshaddon/internal/testbed/cache"
)

// EnvStateDir overrides where clusters keep their files.
const EnvStateDir = "MESHADDON_STATE"

// DefaultName is the cluster name when --name is not given.
const DefaultName = "meshaddon"

// StateRoot is $MESHADDON_STATE, else $XDG_STATE_HOME/meshaddon, else
// ~/.local/state/meshaddon.
func StateRoot() (string, error) {
	if d := os.Getenv(EnvStateDir); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "meshaddon"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the state directory: %w (set %s)", err, EnvStateDir)
	}
	return filepath.Join(home, ".local", "state", "meshaddon"), nil
}

// Cluster is one local test bed cluster's files and control plane.
type Cluster struct {
	Name string
	// Dir holds everything of this cluster: kwokctl's work dir, the
	// kubeconfig, logs, pid files and the saved spec.
	Dir string
	// Audit, when the cluster is created, turns on the API server's audit
	// log of every write (AuditLogPath).
	Audit bool
}

// auditPolicy logs every request but reads (get, list, watch) at Metadata
// level, once it completed: who wrote what, and with which query (a dry
// run's requestURI carries dryRun=All).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: None
  verbs: [get, list, watch]
- level: Metadata
`

// AuditLogPath is the API server's audit log (a JSON event a line), kept
// when the cluster was created with Audit.
func (c *Cluster) AuditLogPath() string {
	return filepath.Join(c.kwokClusterDir(), "logs", "audit.log")
}

// Open returns the cluster called name (it need not exist yet).
func Open(name string) (*Cluster, error) {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return nil, fmt.Errorf("invalid cluster name %q: %s", name, strings.Join(errs, "; "))
	}
	root, err := StateRoot()
	if err != nil {
		return nil, err
	}
	return &Cluster{Name: name, Dir: filepath.Join(root, "clusters", name)}, nil
}

// KwokDir is kwokctl's work directory (KWOK_WORKDIR) for this cluster.
func (c *Cluster) KwokDir() string { return filepath.Join(c.Dir, "kwok") }

// kwokClusterDir is where kwokctl keeps the cluster's own files.
func (c *Cluster) kwokClusterDir() string { return filepath.Join(c.KwokDir(), "clusters", c.Name) }

// KubeconfigPath is the kubeconfig file users point kubectl at.
func (c *Cluster) KubeconfigPath() string { return filepath.Join(c.Dir, "kubeconfig") }

// LogDir holds the logs of the processes meshaddon starts itself.
func (c *Cluster) LogDir() string { return filepath.Join(c.Dir, "logs") }

// PIDFile is where a daemon of this cluster records its process id.
func (c *Cluster) PIDFile(daemon string) string { return filepath.Join(c.Dir, daemon+".pid") }

func (c *Cluster) specPath() string { return filepath.Join(c.Dir, "spec.json") }

// MkDir creates the cluster's directory for its owner only: it holds the
// cluster's CA and admin keys, kubeconfig and the ARM client secret. An
// existing directory is made private too.
func (c *Cluster) MkDir() error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", c.Dir, err)
	}
	return os.Chmod(c.Dir, 0o700)
}

// restrict takes group and other permissions off everything in the
// cluster's directory: kwokctl writes the CA and admin keys 0644 (clusters
// created before meshaddon kept its files private have them so too).
// Symbolic links are left alone: they point out of the directory.
func (c *Cluster) restrict() error {
	err := filepath.WalkDir(c.Dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a component removed it meanwhile
		}
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		info, err := d.Info()
		if err != nil || info.Mode().Perm()&0o077 == 0 {
			return ignoreNotExist(err)
		}
		return ignoreNotExist(os.Chmod(path, info.Mode()&^0o077))
	})
	if err != nil {
		return fmt.Errorf("make the files of cluster %q private: %w", c.Name, err)
	}
	return nil
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Exists reports whether the cluster was created and not torn down.
func (c *Cluster) Exists() bool {
	_, err := os.Stat(c.specPath())
	return err == nil
}

// SaveSpec records what the cluster was created with.
func (c *Cluster) SaveSpec(spec any) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	if err := c.MkDir(); err != nil {
		return err
	}
	tmp := c.specPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.specPath())
}

// LoadSpec reads what the cluster was created with into spec.
func (c *Cluster) LoadSpec(spec any) error {
	data, err := os.ReadFile(c.specPath())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cluster %q does not exist; create it with `meshaddon local up --name %s`", c.Name, c.Name)
		}
		return err
	}
	if err := json.Unmarshal(data, spec); err != nil {
		return fmt.Errorf("read %s: %w", c.specPath(), err)
	}
	return nil
}

// RESTConfig returns a client config for the cluster, with client-side
// throttling raised: the test bed is a single-user cluster.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
	if err != nil {
		return nil, fmt.Errorf("load the kubeconfig of cluster %q: %w", c.Name, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, nil
}

// Clientset returns a typed client for the cluster.
func (c *Cluster) Clientset() (*kubernetes.Clientset, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Healthy reports whether the API server answers /readyz.
func (c *Cluster) Healthy(ctx context.Context) bool {
	cs, err := c.Clientset()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil && strings.TrimSpace(string(body)) == "ok"
}

// kwokctlConfig is the KwokctlConfiguration for the binary runtime: every
// component on 127.0.0.1, cached binaries, Stages served as CRDs so the test
// bed can rewrite them while the cluster runs, and client QPS raised where
// the defaults (20/30) would throttle large rollouts.
func kwokctlConfig(bins cache.Binaries, apiserverPort int, auditPolicyPath string) ([]byte, error) {
	conf := kwokconfig.KwokctlConfiguration{}
	conf.APIVersion = kwokconfig.GroupVersion.String()
	conf.Kind = kwokconfig.KwokctlConfigurationKind
	o := &conf.Options
	o.Runtime = "binary"
	o.BindAddress = "127.0.0.1"
	o.KubeApiserverBinary = bins.Path("kube-apiserver")
	o.KubeControllerManagerBinary = bins.Path("kube-controller-manager")
	o.KubeSchedulerBinary = bins.Path("kube-scheduler")
	o.KubectlBinary = bins.Path("kubectl")
	o.EtcdBinary = bins.Path("etcd")
	o.KwokControllerBinary = bins.Path("kwok")
	o.EnableCRDs = []string{"Stage"}
	o.KubeApiserverPort = uint32(apiserverPort)
	o.KubeAuditPolicy = auditPolicyPath
	qps := []kwokconfig.ExtraArgs{{Key: "kube-api-qps", Value: "500"}, {Key: "kube-api-burst", Value: "1000"}}
	conf.ComponentsPatches = []kwokconfig.ComponentPatches{
		{Name: "kube-controller-manager", ExtraArgs: qps},
		{Name: "kube-scheduler", ExtraArgs: qps},
	}
	return yaml.Marshal(conf)
}

func (c *Cluster) kwokctl(ctx context.Context, bins cache.Binaries, log io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, bins.Path("kwokctl"), args...)
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+c.KwokDir())
	// kwokctl must never touch the user's ~/.kube/config.
	cmd.Env = append(cmd.Env, "KUBECONFIG="+filepath.Join(c.Dir, "kwokctl-kubeconfig-unused"))
	var out strings.Builder
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = io.MultiWriter(&out, log)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kwokctl %s: %w\n%s", args[0], err, tailLines(out.String(), 20))
	}
	return nil
}

// Start brings the control plane up, or back up, and writes the kubeconfig.
// It returns whether it had to start anything.
// apiserverPort 0 lets kwokctl pick a free port.
func (c *Cluster) Start(ctx context.Context, bins cache.Binaries, apiserverPort int) (bool, error) {
	if c.Healthy(ctx) {
		// A running cluster made by an older meshaddon is made private too.
		return false, c.restrict()
	}
	if err := c.MkDir(); err != nil {
		return false, err
	}
	if err := os.MkdirAll(c.LogDir(), 0o700); err != nil {
		return false, fmt.Errorf("create %s: %w", c.LogDir(), err)
	}
	log, err := os.OpenFile(filepath.Join(c.LogDir(), "kwokctl.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return false, err
	}
	defer log.Close()

	if _, err := os.Stat(c.kwokClusterDir()); err == nil {
		// Created before but not serving (after a reboot, or a component
		// died): stop what is left so nothing holds its ports, then start
		// every component again.
		if err := c.kwokctl(ctx, bins, log, "stop", "cluster", "--name", c.Name); err != nil {
			return false, err
		}
		if err := c.kwokctl(ctx, bins, log, "start", "cluster", "--name", c.Name, "--wait", "60s"); err != nil {
			return false, err
		}
	} else {
		if apiserverPort != 0 {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", apiserverPort))
			if err != nil {
				return false, fmt.Errorf("port %d is already in use on 127.0.0.1: choose another --apiserver-port, or leave it out to use a free one", apiserverPort)
			}
			_ = l.Close()
		}
		policy := ""
		if c.Audit {
			policy = filepath.Join(c.Dir, "audit-policy.yaml")
			if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
				return false, err
			}
		}
		conf, err := kwokctlConfig(bins, apiserverPort, policy)
		if err != nil {
			return false, err
		}
		confPath := filepath.Join(c.Dir, "kwokctl.yaml")
		if err := os.WriteFile(confPath, conf, 0o600); err != nil {
			return false, err
		}
		// Every kwokctl picks its components' ports counting down from
		// 32767 and checks each is free only by binding it for a moment
		// (sigs.k8s.io/kwok pkg/utils/net GetUnusedPort), so two clusters
		// created at once pick the same ports: one apiserver then answers
		// for both, or one etcd holds both clusters' objects. Creations on
		// this machine take turns until each one's components are serving.
		unlock, err := cache.LockFile(ctx, filepath.Join(os.TempDir(), "meshaddon-kwokctl-create.lock"))
		if err != nil {
			return false, fmt.Errorf("wait for another test bed cluster to finish starting: %w", err)
		}
		err = c.kwokctl(ctx, bins, log, "create", "cluster", "--name", c.Name, "--runtime", "binary",
			"--config", confPath, "--kubeconfig", "", "--wait", "60s")
		unlock()
		if err != nil {
			return false, err
		}
	}
	if err := c.restrict(); err != nil {
		return false, err
	}
	data, err := os.ReadFile(filepath.Join(c.kwokClusterDir(), "kubeconfig.yaml"))
	if err != nil {
		return false, fmt.Errorf("read the kubeconfig kwokctl wrote: %w", err)
	}
	if err := os.WriteFile(c.KubeconfigPath(), data, 0o600); err != nil {
		return false, err
	}
	return true, nil
}

// Delete stops the control plane and removes kwokctl's files for it.
func (c *Cluster) Delete(ctx context.Context, bins cache.Binaries) error {
	if _, err := os.Stat(c.kwokClusterDir()); err != nil {
		return nil
	}
	if err := os.MkdirAll(c.LogDir(), 0o700); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(c.LogDir(), "kwokctl.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	return c.kwokctl(ctx, bins, log, "delete", "cluster", "--name", c.Name)
}

// Components lists the control-plane processes kwokctl started, by name,
// with their pids (from kwokctl's pid files).
func (c *Cluster) Components() map[string]int {
	out := map[string]int{}
	entries, _ := os.ReadDir(filepath.Join(c.kwokClusterDir(), "pids"))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(c.kwokClusterDir(), "pids", e.Name()))
		if err != nil {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(data)), "%d", &pid); err == nil {
			out[strings.TrimSuffix(e.Name(), ".pid")] = pid
		}
	}
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
