//go:build linux

// Command rusage runs a command and records its wall time, exit code and
// peak resident set size for the benchmarks in bench/:
//
//	rusage STATFILE COMMAND [ARG...]
//
// The command inherits rusage's standard streams. Once it has exited,
// STATFILE receives one line, "WALL_NS MAXRSS_KIB EXIT_CODE" (the exit code
// is -1 when a signal ended it), and rusage exits 0; it exits 2 when it cannot
// run the command at all.
//
// Why a launcher: Go starts a child with vfork (CLONE_VM), and when the child
// execs, Linux folds the high-water RSS of the memory it shared — the
// parent's — into the child's ru_maxrss. Started straight from a benchmark
// that holds hundreds of MiB, any child's peak would read at least that much.
// This launcher holds a couple of MiB, below anything it measures.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: rusage STATFILE COMMAND [ARG...]")
		os.Exit(2)
	}
	// Pdeathsig is tied to the thread that starts the child: keep it.
	runtime.LockOSThread()
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// When the benchmark kills the launcher, the command goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		os.Exit(2)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		fmt.Fprintln(os.Stderr, "rusage: no resource usage for the command")
		os.Exit(2)
	}
	line := fmt.Sprintf("%d %d %d\n", wall.Nanoseconds(), ru.Maxrss, cmd.ProcessState.ExitCode())
	if err := os.WriteFile(os.Args[1], []byte(line), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		os.Exit(2)
	}
}
