package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/testtool"
)

// daemonProc is `proxypoold --config X run` running as a child process: this
// test binary re-executed as the program (TestTorE2EHelper), so the
// end-to-end tests exercise the real main without a second build.
type daemonProc struct {
	cmd     *exec.Cmd
	exited  chan error
	stopped bool
	logPath string
	started time.Time
}

// startDaemon starts it with extra environment, logging to
// dir/proxypoold.log. Cleanup kills it if the test did not stop it and
// prints the log's tail when the test failed.
func startDaemon(t *testing.T, dir, cfgPath string, env ...string) *daemonProc {
	t.Helper()
	return startProc(t, filepath.Join(dir, "proxypoold.log"), []string{"--config", cfgPath, "run"}, env...)
}

// startProc is startDaemon for any command line (a probe, a gateway),
// logging to logPath.
func startProc(t *testing.T, logPath string, args []string, env ...string) *daemonProc {
	t.Helper()
	p := &daemonProc{logPath: logPath, exited: make(chan error, 1)}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestTorE2EHelper$", "-test.count=1")
	p.cmd.Env = append(append(testtool.WithoutBus(os.Environ()), helperEnv+"=1", helperArgsEnv+"="+strings.Join(args, "\n")), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if !p.stopped {
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s (tail):\n%s", filepath.Base(p.logPath), tail(p.logPath, 80))
		}
	})
	return p
}

// stop sends SIGTERM and fails the test unless the daemon exits 0 within d.
func (p *daemonProc) stop(t *testing.T, d time.Duration) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.stopped = true
		if err != nil {
			t.Errorf("proxypoold run after SIGTERM: %v", err)
		}
	case <-time.After(d):
		t.Fatalf("proxypoold run did not stop within %v of SIGTERM", d)
	}
}

// fleetConfig is the config of a `run` over one fleet's list (a file
// source) checked against judge, geo its geoip file; rest adds the keys a
// test sets (gateway, metrics, api, …) and log ends it.
func fleetConfig(dir, list, judge, geo, rest string) string {
	return fmt.Sprintf(`database: %s
sources:
  - {name: fleet, url: "file://%s", format: auto}
probe:
  judges: [%s/get]
  timeout: 1s
  interval: 1m
  failing-interval: 2s
  geoip: %s
  geoip6: ""
%slog: {level: info, format: text}
`, filepath.Join(dir, "pp.db"), list, judge, geo, rest)
}
