package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

// TestDownLeavesNothing brings a second cluster up beside any other, checks
// that every process it started listens on loopback only and that its keys
// and secrets are its owner's only, that `down` of a cluster whose name is a
// prefix of its own (t beside t2) leaves it running, and that its own
// `down` leaves no process behind.
func TestDownLeavesNothing(t *testing.T) {
	const name = "t2"
	// A failed check must not leave the clusters running: down again is a no-op.
	t.Cleanup(func() { meshaddon(t, "local", "down", "--name", "t"); meshaddon(t, "local", "down", "--name", name) })
	up := mustMeshaddon(t, "local", "up", "--name", name, "--pool", "system="+currentVersion+":1", "--arm")
	dir := filepath.Join(stateDir, "clusters", name)
	procs := proc.Find(dir)
	if len(procs) < 7 { // etcd, apiserver, controller-manager, scheduler, kwok, runner, istiod, manager, ARM endpoint
		t.Errorf("found only %d processes of the cluster: %+v", len(procs), procs)
	}

	listening := listeners(t, procs)
	if len(listening) == 0 {
		t.Fatal("found no listening sockets of the cluster's processes")
	}
	_, armVar := armEnv(t, name)
	armListens := false
	for _, l := range listening {
		armListens = armListens || strings.HasSuffix(armVar("MESHADDON_ARM_ENDPOINT"), fmt.Sprintf(":%d", l.port))
	}
	if !armListens {
		t.Errorf("the local ARM endpoint %s is not among the listeners: %+v", armVar("MESHADDON_ARM_ENDPOINT"), listening)
	}
	for _, l := range listening {
		if !l.addr.IsLoopback() {
			t.Errorf("%s listens on %s:%d, want loopback only", l.command, l.addr, l.port)
		}
	}

	t.Run("keys and secrets are the owner's only", func(t *testing.T) {
		if secret := armVar("AZURE_CLIENT_SECRET"); strings.Contains(up.stdout+up.stderr, secret) {
			t.Errorf("local up --arm printed the ARM client secret:\n%s", up)
		}
		checkPrivate(t, dir)
	})

	t.Run("down of cluster t leaves cluster t2 running", func(t *testing.T) {
		const other = "t"
		mustMeshaddon(t, "local", "up", "--name", other, "--pool", "system="+currentVersion+":1", "--manager=false")
		otherDir := filepath.Join(stateDir, "clusters", other)
		otherProcs := proc.Find(otherDir)
		if len(otherProcs) == 0 {
			t.Fatal("found no process of cluster t")
		}
		mustMeshaddon(t, "local", "down", "--name", other)
		for _, p := range otherProcs {
			if proc.Alive(p.PID) {
				t.Errorf("process %d of cluster t (%s) outlived its `local down`", p.PID, p.Command)
			}
		}
		for _, p := range procs {
			if !proc.Alive(p.PID) {
				t.Errorf("`local down --name t` ended process %d of cluster t2: %s", p.PID, p.Command)
			}
		}
		var st struct {
			Healthy    bool
			Components []struct {
				Name    string
				Running bool
			}
		}
		r := mustMeshaddon(t, "local", "status", "--name", name, "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, r.stdout)
		}
		if !st.Healthy {
			t.Errorf("cluster t2 is not healthy after `local down --name t`: %s", r.stdout)
		}
		for _, c := range st.Components {
			if !c.Running {
				t.Errorf("cluster t2's %s is not running after `local down --name t`", c.Name)
			}
		}
	})

	r := mustMeshaddon(t, "local", "down", "--name", name)
	if !strings.Contains(r.stdout, "deleted") {
		t.Errorf("down said:\n%s", r.stdout)
	}
	for _, p := range procs {
		if proc.Alive(p.PID) {
			t.Errorf("process %d (%s) outlived `local down`", p.PID, p.Command)
		}
	}
	if left := proc.Find(dir); len(left) > 0 {
		t.Errorf("processes left: %+v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s still exists", dir)
	}
	if r := mustMeshaddon(t, "local", "down", "--name", name); !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("second down: %s", r)
	}
}

// checkPrivate walks a running cluster's directory: it must be 0700, and
// no key, kubeconfig or secret in it may be readable by group or others.
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("cluster directory %s is %v, want 0700", dir, fi.Mode().Perm())
	}
	found := map[string]bool{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		base := d.Name()
		secret := strings.HasSuffix(base, ".key") || strings.HasSuffix(base, ".pem") ||
			strings.Contains(base, "kubeconfig") || base == "identity.json"
		if !secret {
			return nil
		}
		found[base] = true
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: group or others can read it", path, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The files that must be there, so the walk cannot pass by finding none.
	for _, want := range []string{"ca.key", "admin.key", "kubeconfig", "kubeconfig.yaml", "identity.json", "tls.key"} {
		if !found[want] {
			t.Errorf("no %s in %s; found %v", want, dir, found)
		}
	}
}

type listener struct {
	command string
	addr    net.IP
	port    int
}

// listeners returns the TCP sockets in LISTEN state that procs hold, from
// /proc/net/tcp{,6} and each process's open file descriptors.
func listeners(t *testing.T, procs []proc.Process) []listener {
	t.Helper()
	byInode := map[string]listener{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A is LISTEN
				continue
			}
			ip, port := parseHexAddr(fields[1])
			byInode[fields[9]] = listener{addr: ip, port: port}
		}
		f.Close()
	}
	var out []listener
	for _, p := range procs {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.PID))
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.PID, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			inode := strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
			if l, ok := byInode[inode]; ok {
				l.command = strings.Fields(p.Command)[0]
				out = append(out, l)
			}
		}
	}
	return out
}

// parseHexAddr decodes /proc/net/tcp's "0100007F:1F90" (little-endian words).
func parseHexAddr(s string) (net.IP, int) {
	host, port, _ := strings.Cut(s, ":")
	p, _ := strconv.ParseUint(port, 16, 16)
	raw := make([]byte, len(host)/2)
	for i := range raw {
		b, _ := strconv.ParseUint(host[2*i:2*i+2], 16, 8)
		raw[i] = byte(b)
	}
	ip := make(net.IP, len(raw))
	for w := 0; w < len(raw); w += 4 {
		for i := 0; i < 4; i++ {
			ip[w+i] = raw[w+3-i]
		}
	}
	return ip, int(p)
}

// TestBadInput checks that wrong input gets a clear error and a non-zero
// exit, never a panic, and changes nothing.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"malformed pool", []string{"local", "up", "--name", "bad", "--pool", "system:3"}, nil, "want NAME=VERSION:COUNT"},
		{"not a version", []string{"local", "up", "--name", "bad", "--pool", "system=latest:3"}, nil, "is not a Kubernetes version"},
		{"bad revision", []string{"local", "up", "--name", "bad", "--revision", "istio-1.27"}, nil, "asm-1-NN"},
		{"bad native sidecars", []string{"local", "up", "--name", "bad", "--native-sidecars", "maybe"}, nil, "want true, false or unset"},
		{"bad cluster name", []string{"local", "up", "--name", "Bad_Name"}, nil, "invalid cluster name"},
		{"unknown policy", []string{"local", "up", "--name", "bad", "--policy", "strict"}, nil, "want one of preview, ga"},
		{"unknown feature", []string{"feature", "register", "--name", "IstioAmbientPreview"}, nil, "known features are IstioNativeSidecarModePreview"},
		{"revision to enable not asm-1-NN", []string{"mesh", "enable", "--revision", "istio-1-27"}, nil, "asm-1-NN"},
		{"manager with an unknown policy", []string{"manager", "--policy", "strict"}, nil, "want one of preview, ga"},
		{"unknown cluster", []string{"local", "kubeconfig", "--name", "nosuch"}, nil, "does not exist"},
		{"unwritable cache", []string{"local", "up", "--name", "bad"}, []string{"MESHADDON_CACHE=/proc/meshaddon-cache"}, "cannot be written"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range tc.env {
				k, v, _ := strings.Cut(e, "=")
				t.Setenv(k, v)
			}
			r := meshaddon(t, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "panic") {
				t.Errorf("want a clear error containing %q, got %s", tc.want, r)
			}
			if _, err := os.Stat(filepath.Join(stateDir, "clusters", "bad", "kwok")); err == nil {
				t.Errorf("bad input started a cluster")
			}
		})
	}

	t.Run("port already in use", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		r := meshaddon(t, "local", "up", "--name", "busy", "--apiserver-port", strconv.Itoa(port))
		defer meshaddon(t, "local", "down", "--name", "busy")
		if r.code == 0 || !strings.Contains(r.stderr, "already in use") {
			t.Errorf("want a port-in-use error, got %s", r)
		}
	})
}
