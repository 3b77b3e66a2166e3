// Package proc starts and stops the test bed's long-running processes (the
// istiod runner, the add-on manager) as daemons in their own process group,
// so that stopping one also stops every child it started, and finds any
// process left behind by a crash.
package proc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	kerrors "k8s.io/apimachinery/pkg/util/errors"
)

// Daemon is a background process recorded in a pid file.
type Daemon struct {
	PIDFile string
	LogFile string
	Args    []string
	Env     []string
	// Dir is the working directory (default: the caller's); one inside the
	// cluster's directory lets Find see the daemon.
	Dir string
}

// PID returns the daemon's process id if it is running.
func (d Daemon) PID() (int, bool) {
	data, err := os.ReadFile(d.PIDFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, Alive(pid)
}

// Alive reports whether pid is a live process (not a zombie).
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// Start runs the daemon detached in a new session unless it already runs.
// It returns whether it started a process.
func (d Daemon) Start() (bool, error) {
	if _, ok := d.PID(); ok {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.LogFile), 0o700); err != nil {
		return false, err
	}
	log, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return false, err
	}
	defer log.Close()
	cmd := exec.Command(d.Args[0], d.Args[1:]...)
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.Dir = d.Dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start %s: %w", filepath.Base(d.Args[0]), err)
	}
	if err := os.WriteFile(d.PIDFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return false, err
	}
	// Reap it if it dies while we are still around; nobody waits otherwise.
	go func() { _ = cmd.Wait() }()
	return true, nil
}

// Stop ends the daemon's whole process group: SIGTERM, then SIGKILL after
// grace. A daemon that is not running is not an error.
func (d Daemon) Stop(grace time.Duration) error {
	pid, ok := d.PID()
	defer os.Remove(d.PIDFile)
	if !ok {
		return nil
	}
	return StopGroup(pid, grace)
}

// StopGroup signals the process group led by pid and waits for its leader.
func StopGroup(pid int, grace time.Duration) error {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !Alive(pid) && !groupAlive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pid, err)
	}
	return nil
}

func groupAlive(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}

// Process is a running process found by Find.
type Process struct {
	PID     int
	Command string
}

// Find returns every live process whose command line or working directory
// names dir or a path under it: every process of a test bed cluster does,
// since its kubeconfig, pki and work files live there. A path merely
// starting with the same characters (cluster t2 when dir is cluster t's)
// is another cluster's and does not count.
func Find(dir string) []Process {
	dir = filepath.Clean(dir)
	var out []Process
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		// The kernel marks a removed working directory " (deleted)".
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		if (slices.ContainsFunc(args, func(a string) bool { return namesPath(a, dir) }) || within(cwd, dir)) && Alive(pid) {
			out = append(out, Process{PID: pid, Command: strings.Join(args, " ")})
		}
	}
	return out
}

// within reports whether path is dir or under it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// pathSeparators end a path inside one argument: --flag=PATH, PATH,PATH,
// PATH:PATH or a quoted PATH.
const pathSeparators = "=,:;\"' \t"

// namesPath reports whether the command-line argument arg names dir or a
// path under it: an occurrence of dir that starts the argument or follows a
// separator, and ends it, a separator or a '/'.
func namesPath(arg, dir string) bool {
	for i := 0; i+len(dir) <= len(arg); {
		j := strings.Index(arg[i:], dir)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(dir)
		before := start == 0 || strings.IndexByte(pathSeparators, arg[start-1]) >= 0
		after := end == len(arg) || arg[end] == '/' || strings.IndexByte(pathSeparators, arg[end]) >= 0
		if before && after {
			return true
		}
		i = start + 1
	}
	return false
}

// KillAll sends SIGKILL to each process and waits briefly for them to go.
func KillAll(ps []Process) error {
	var errs []error
	for _, p := range ps {
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", p.PID, err))
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range ps {
		for Alive(p.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return kerrors.NewAggregate(errs)
}

// FreePorts finds n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
