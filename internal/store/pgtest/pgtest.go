// Package pgtest gives tests a real PostgreSQL: one throw-away cluster per
// test binary (Debian's postgresql package: initdb into a temporary
// directory, run as an unprivileged user, listening only on a unix socket
// there), and a fresh database per test.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/proxypool/proxypool/internal/testtool"
)

// Superuser is the role initdb creates; tests connect as it.
const Superuser = "proxypool"

// Cluster is a running throw-away PostgreSQL server.
type Cluster struct {
	dir  string // data directory, socket directory and log under it
	cmd  *exec.Cmd
	done chan error
	seq  int
	mu   sync.Mutex
}

// BinDir finds the directory of Debian's PostgreSQL server programs
// (/usr/lib/postgresql/<major>/bin), the newest when several are
// installed.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestMajor := "", -1
	for _, d := range dirs {
		major, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(d))))
		if err == nil && major > bestMajor {
			best, bestMajor = filepath.Dir(d), major
		}
	}
	if best == "" {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errors.New("no initdb under /usr/lib/postgresql/*/bin nor on PATH")
	}
	return best, nil
}

// Start creates a cluster under a new temporary directory and starts its
// server. As root, the server runs as nobody (PostgreSQL refuses to run as
// root); otherwise as the caller.
func Start(ctx context.Context, bin string) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("creating the cluster directory: %w", err)
	}
	c := &Cluster{dir: dir, done: make(chan error, 1)}
	cred, err := unprivileged()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("handing the cluster directory to uid %d: %w", cred.Uid, err)
		}
	}
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		// The server goes when the test binary does, even killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGTERM}
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", Superuser, "-A", "trust", "-E", "UTF8", "--locale=C",
		"--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("creating the server log: %w", err)
	}
	defer logf.Close()
	// No TCP at all: the socket directory is private to this cluster, so
	// parallel test binaries never collide on a port. Durability is not
	// what these tests check: fsync off.
	c.cmd = run("postgres", "-D", data, "-k", dir, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300")
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	if err := c.waitReady(ctx); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		c.Stop()
		return nil, fmt.Errorf("waiting for postgres: %w\n%s", err, log)
	}
	return c, nil
}

// unprivileged is the identity the server runs as: nil (the caller's)
// unless the caller is root.
func unprivileged() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("looking up user nobody to run postgres as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		last = err
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("postgres exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is the connection URL of database db on c, over its socket.
func (c *Cluster) URL(db string) string {
	q := url.Values{"host": {c.dir}, "sslmode": {"disable"}}
	return "postgres://" + Superuser + "@/" + url.PathEscape(db) + "?" + q.Encode()
}

// Dir is the cluster's directory (its socket is there).
func (c *Cluster) Dir() string { return c.dir }

// CreateDatabase creates a new empty database and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context, prefix string) (string, error) {
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("%s_%d", prefix, c.seq)
	c.mu.Unlock()
	if err := c.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return c.URL(name), nil
}

// DropDatabase drops a database CreateDatabase made, closing whatever is
// still connected to it.
func (c *Cluster) DropDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	name := u.Path[1:]
	if err := c.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	return nil
}

func (c *Cluster) admin(ctx context.Context, stmt string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, stmt)
	return err
}

// Stop stops the server (a fast shutdown, then a kill) and removes the
// cluster's directory.
func (c *Cluster) Stop() error {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	return os.RemoveAll(c.dir)
}

// shared is the test binary's cluster, started by the first test that
// asks for a database and stopped by Main: one server per binary keeps a
// suite of hundreds of tests to one initdb.
var shared struct {
	mu  sync.Mutex
	c   *Cluster
	err error
}

// Database returns the URL of a new database on the test binary's
// cluster, dropped when t ends. Without PostgreSQL installed the test
// skips, but under CI=true, where it fails.
func Database(t testing.TB) string {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		testtool.Need(t, "initdb", "apt-get install postgresql")
		t.Fatalf("finding PostgreSQL: %v", err)
	}
	shared.mu.Lock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = Start(context.Background(), bin)
	}
	c, err := shared.c, shared.err
	shared.mu.Unlock()
	if err != nil {
		t.Fatalf("starting a test PostgreSQL: %v", err)
	}
	ctx := context.Background()
	dbURL, err := c.CreateDatabase(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.DropDatabase(ctx, dbURL); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
	})
	return dbURL
}

// Main runs the tests and then stops the binary's cluster, if one was
// started; call it from TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stopping the cluster:", err)
		}
		shared.c = nil
	}
	return code
}
