package torgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/torgen/torrc"
)

// ProcessRunner runs each wanted instance as a supervised child process
// (`tor -f torrc.<port> --defaults-torrc /dev/null`, MALLOC_ARENA_MAX=1):
// a child that exits is restarted with exponential backoff, a changed torrc
// is reloaded with SIGHUP, unwanted ones are stopped, and everything stops
// when the runner's context ends. It is the Runner of `proxypoold run`.
type ProcessRunner struct {
	Tor        string // tor binary ("" = "tor" from PATH)
	TorrcDir   string
	Log        logrus.FieldLogger
	MinBackoff time.Duration // default 500ms
	MaxBackoff time.Duration // default 30s
	StopWait   time.Duration // SIGTERM → SIGKILL, default 10s

	ctx   context.Context
	mu    sync.Mutex
	procs map[int]*child
	wg    sync.WaitGroup
}

type child struct {
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	cmd      *exec.Cmd
	restarts int
}

// NewProcessRunner returns a runner whose children live until ctx ends;
// call Wait after cancelling ctx to reap them.
func NewProcessRunner(ctx context.Context, torBin, torrcDir string, log logrus.FieldLogger) *ProcessRunner {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &ProcessRunner{Tor: torBin, TorrcDir: torrcDir, Log: log, ctx: ctx, procs: map[int]*child{}}
}

// Apply starts missing instances, reloads changed ones and stops unwanted.
func (r *ProcessRunner) Apply(ctx context.Context, want, changed []int) error {
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("process runner stopped: %w", err)
	}
	w := map[int]bool{}
	for _, p := range want {
		w[p] = true
		if _, err := os.Stat(torrc.Path(r.TorrcDir, p)); err != nil {
			return fmt.Errorf("instance %d: %w", p, err)
		}
	}
	r.mu.Lock()
	var stop []*child
	for port, c := range r.procs {
		if !w[port] {
			stop = append(stop, c)
			delete(r.procs, port)
		}
	}
	for _, p := range changed {
		if c, ok := r.procs[p]; ok {
			c.signal(syscall.SIGHUP)
			r.Log.WithField("port", p).Info("tor: torrc changed, reloading (SIGHUP)")
		}
	}
	for _, p := range want {
		if _, ok := r.procs[p]; ok {
			continue
		}
		cctx, cancel := context.WithCancel(r.ctx)
		c := &child{cancel: cancel, done: make(chan struct{})}
		r.procs[p] = c
		r.wg.Add(1)
		go r.supervise(cctx, p, c)
	}
	r.mu.Unlock()
	for _, c := range stop {
		c.cancel()
	}
	for _, c := range stop {
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// PID is the current process id of the instance on port (0 if none).
func (r *ProcessRunner) PID(port int) int {
	r.mu.Lock()
	c := r.procs[port]
	r.mu.Unlock()
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Ports lists the supervised instances.
func (r *ProcessRunner) Ports() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for p := range r.procs {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// Wait blocks until every child has exited (after the runner's context ended).
func (r *ProcessRunner) Wait() { r.wg.Wait() }

func (c *child) signal(s os.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(s)
	}
}

func (r *ProcessRunner) supervise(ctx context.Context, port int, c *child) {
	defer r.wg.Done()
	defer close(c.done)
	log := r.Log.WithField("port", port)
	minB, maxB := r.MinBackoff, r.MaxBackoff
	if minB <= 0 {
		minB = 500 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	backoff := minB
	for {
		started := time.Now()
		err := r.runOnce(ctx, port, c, log)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = minB
		}
		c.mu.Lock()
		c.restarts++
		c.mu.Unlock()
		log.WithError(err).WithField("backoff", backoff).Warn("tor exited; restarting")
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxB)
	}
}

func (r *ProcessRunner) runOnce(ctx context.Context, port int, c *child, log logrus.FieldLogger) error {
	bin := r.Tor
	if bin == "" {
		bin = "tor"
	}
	cmd := exec.Command(bin, "-f", torrc.Path(r.TorrcDir, port), "--defaults-torrc", os.DevNull)
	cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting tor: %w", err)
	}
	c.mu.Lock()
	c.cmd = cmd
	c.mu.Unlock()
	log.WithField("pid", cmd.Process.Pid).Info("tor started")
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.Debug(sc.Text())
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-logged
		exited <- cmd.Wait()
	}()
	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
	}
	cmd.Process.Signal(syscall.SIGTERM)
	wait := r.StopWait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	select {
	case <-exited:
	case <-time.After(wait):
		cmd.Process.Kill()
		<-exited
	}
	log.Info("tor stopped")
	return errors.New("stopped")
}
