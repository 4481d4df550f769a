package units

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/sirupsen/logrus"
)

// Manager is the part of go-systemd's *dbus.Conn the runner uses.
type Manager interface {
	ListUnitsByNamesContext(ctx context.Context, units []string) ([]sdbus.UnitStatus, error)
	EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []sdbus.EnableUnitFileChange, error)
	DisableUnitFilesContext(ctx context.Context, files []string, runtime bool) ([]sdbus.DisableUnitFileChange, error)
	ReloadContext(ctx context.Context) error
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	ReloadOrRestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
}

// Users makes (and, when its port is gone, removes) the per-instance
// system user and its home.
type Users interface {
	Ensure(ctx context.Context, name, home string) error
	Remove(ctx context.Context, name, home string) error
}

// Marker starts the instance torrc files this package owns.
const Marker = "# proxypool-torgen instance"

// Runner makes the set of running tor@<port>.service units equal to the
// wanted ports (it satisfies torgen.Runner).
type Runner struct {
	M          Manager
	Users      Users              // default: AddUser (adduser, as tor-instance-create)
	Root       string             // filesystem root ("" = "/"); tests use a temp dir
	TorrcDir   string             // where torrc.<port> are ("" = /etc/tor)
	JobTimeout time.Duration      // per start/stop/reload job (default 90s)
	Log        logrus.FieldLogger // nil: discard
}

// Dial connects to the system manager.
func Dial(ctx context.Context) (*sdbus.Conn, error) {
	c, err := sdbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd: %w", err)
	}
	return c, nil
}

// UnitName is "tor@<port>.service".
func UnitName(port int) string { return "tor@" + strconv.Itoa(port) + ".service" }

// Stub is the content of /etc/tor/instances/<port>/torrc.
func Stub(torrcDir string, port int) []byte {
	return []byte(fmt.Sprintf("%s; generated, do not edit.\n%%include %s\n", Marker, filepath.Join(torrcDir, "torrc."+strconv.Itoa(port))))
}

func (r *Runner) path(p string) string {
	root := r.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, p)
}

func (r *Runner) torrcDir() string {
	if r.TorrcDir == "" {
		return "/etc/tor"
	}
	return r.TorrcDir
}

func (r *Runner) log() logrus.FieldLogger {
	if r.Log != nil {
		return r.Log
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// Owned lists the ports whose instance directory holds our stub.
func (r *Runner) Owned() ([]int, error) {
	base := r.path("/etc/tor/instances")
	ents, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading tor instances: %w", err)
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() || strconv.Itoa(p) != e.Name() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(base, e.Name(), "torrc"))
		if err == nil && bytes.HasPrefix(b, []byte(Marker)) {
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out, nil
}

// Diff is what Apply will do.
type Diff struct {
	Create  []int // new instances: user, dirs, stub, enable, start
	Start   []int // existing but not active: start
	Reload  []int // active and their torrc changed: reload-or-restart
	Remove  []int // ours but not wanted: stop, disable, remove stub
	Healthy []int // nothing to do
}

// Empty reports whether the diff changes nothing.
func (d Diff) Empty() bool {
	return len(d.Create)+len(d.Start)+len(d.Reload)+len(d.Remove) == 0
}

// Plan computes the diff between the wanted ports and the owned instances
// (active state from systemd).
func (r *Runner) Plan(ctx context.Context, want, changed []int) (Diff, error) {
	owned, err := r.Owned()
	if err != nil {
		return Diff{}, err
	}
	have := map[int]bool{}
	for _, p := range owned {
		have[p] = true
	}
	ch := map[int]bool{}
	for _, p := range changed {
		ch[p] = true
	}
	wantSet := map[int]bool{}
	var names []string
	for _, p := range want {
		wantSet[p] = true
		if have[p] {
			names = append(names, UnitName(p))
		}
	}
	active := map[string]bool{}
	if len(names) > 0 {
		st, err := r.M.ListUnitsByNamesContext(ctx, names)
		if err != nil {
			return Diff{}, fmt.Errorf("listing tor@ units: %w", err)
		}
		for _, s := range st {
			active[s.Name] = s.ActiveState == "active" || s.ActiveState == "activating" || s.ActiveState == "reloading"
		}
	}
	var d Diff
	for _, p := range sortedUnique(want) {
		switch {
		case !have[p]:
			d.Create = append(d.Create, p)
		case !active[UnitName(p)]:
			d.Start = append(d.Start, p)
		case ch[p]:
			d.Reload = append(d.Reload, p)
		default:
			d.Healthy = append(d.Healthy, p)
		}
	}
	for _, p := range owned {
		if !wantSet[p] {
			d.Remove = append(d.Remove, p)
		}
	}
	return d, nil
}

// Apply makes systemd run exactly the wanted instances.
func (r *Runner) Apply(ctx context.Context, want, changed []int) error {
	d, err := r.Plan(ctx, want, changed)
	if err != nil {
		return err
	}
	log := r.log()
	if d.Empty() {
		log.WithField("instances", len(d.Healthy)).Info("tor@ units: 0 changed")
		return nil
	}
	log.WithFields(logrus.Fields{"create": d.Create, "start": d.Start, "reload": d.Reload, "remove": d.Remove}).Info("tor@ units: applying")
	var errs []error
	for _, p := range d.Remove {
		name := UnitName(p)
		if err := r.job(ctx, "stop", name, r.M.StopUnitContext); err != nil {
			// Still running as its user: keep the instance for the next run.
			errs = append(errs, err)
			continue
		}
		if _, err := r.M.DisableUnitFilesContext(ctx, []string{name}, false); err != nil {
			errs = append(errs, fmt.Errorf("disabling %s: %w", name, err))
		}
		// User and home first: once the stub is gone nothing marks them
		// as ours (the purge finds instances by their stub).
		if err := r.users().Remove(ctx, userName(p), r.path(homeDir(p))); err != nil {
			errs = append(errs, fmt.Errorf("removing instance %d: %w", p, err))
			continue
		}
		if err := os.RemoveAll(r.path(filepath.Join("/etc/tor/instances", strconv.Itoa(p)))); err != nil {
			errs = append(errs, fmt.Errorf("removing instance %d: %w", p, err))
		}
	}
	var created []int
	for _, p := range d.Create {
		if err := r.create(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		created = append(created, p)
	}
	if len(created) > 0 || len(d.Remove) > 0 {
		// tor-generator turns /etc/tor/instances/* into tor.service's wants.
		if err := r.M.ReloadContext(ctx); err != nil {
			return errors.Join(append(errs, fmt.Errorf("systemd daemon-reload: %w", err))...)
		}
	}
	if len(created) > 0 {
		var names []string
		for _, p := range created {
			names = append(names, UnitName(p))
		}
		if _, _, err := r.M.EnableUnitFilesContext(ctx, names, false, false); err != nil {
			errs = append(errs, fmt.Errorf("enabling %v: %w", names, err))
		}
	}
	for _, p := range append(created, d.Start...) {
		if err := r.job(ctx, "start", UnitName(p), r.M.StartUnitContext); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range d.Reload {
		if err := r.job(ctx, "reload", UnitName(p), r.M.ReloadOrRestartUnitContext); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// job runs one unit job and waits for its result on the channel.
func (r *Runner) job(ctx context.Context, verb, name string, f jobFunc) error {
	t := r.JobTimeout
	if t <= 0 {
		t = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	ch := make(chan string, 1)
	if _, err := f(ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: job %s", verb, name, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: waiting for the job: %w", verb, name, ctx.Err())
	}
}

func (r *Runner) users() Users {
	if r.Users == nil {
		return AddUser{}
	}
	return r.Users
}

// userName is the instance's system user, as tor@.service runs it.
func userName(port int) string { return "_tor-" + strconv.Itoa(port) }

// homeDir is the instance's DataDirectory (Debian's instance defaults).
func homeDir(port int) string { return filepath.Join("/var/lib/tor-instances", strconv.Itoa(port)) }

// create makes the instance like tor-instance-create: user, home, stub.
func (r *Runner) create(ctx context.Context, port int) error {
	if err := r.users().Ensure(ctx, userName(port), r.path(homeDir(port))); err != nil {
		return fmt.Errorf("creating instance %d: %w", port, err)
	}
	etc := r.path(filepath.Join("/etc/tor/instances", strconv.Itoa(port)))
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return fmt.Errorf("creating instance %d: %w", port, err)
	}
	stub := filepath.Join(etc, "torrc")
	if b, err := os.ReadFile(stub); err == nil && !bytes.HasPrefix(b, []byte(Marker)) {
		return fmt.Errorf("instance %d: %s exists and is not proxypool's; not touching it", port, stub)
	}
	tmp := stub + ".tmp"
	if err := os.WriteFile(tmp, Stub(r.torrcDir(), port), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", stub, err)
	}
	if err := os.Rename(tmp, stub); err != nil {
		return fmt.Errorf("writing %s: %w", stub, err)
	}
	return nil
}

// AddUser creates the system user the way tor-instance-create does
// (adduser --system --group, home not created by adduser) and then the
// home directory, mode 02700, owned by that user.
type AddUser struct{}

// Ensure creates name (if missing) and home.
func (AddUser) Ensure(ctx context.Context, name, home string) error {
	if _, err := user.Lookup(name); err != nil {
		out, err := exec.CommandContext(ctx, "adduser", "--quiet", "--system", "--disabled-password",
			"--home", home, "--no-create-home", "--shell", "/bin/false", "--group", "--force-badname", name).CombinedOutput()
		if err != nil {
			return fmt.Errorf("adduser %s: %w: %s", name, err, strings.TrimSpace(string(out)))
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("looking up %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	if err := os.Chown(home, uid, gid); err != nil {
		return err
	}
	return os.Chmod(home, 0o700|os.ModeSetgid)
}

// Remove deletes name (if it exists) with deluser, then home. Only called
// for instances whose stub is ours, after their unit stopped.
func (AddUser) Remove(ctx context.Context, name, home string) error {
	if _, err := user.Lookup(name); err == nil {
		out, err := exec.CommandContext(ctx, "deluser", "--quiet", "--system", name).CombinedOutput()
		if err != nil {
			return fmt.Errorf("deluser %s: %w: %s", name, err, strings.TrimSpace(string(out)))
		}
	}
	if err := os.RemoveAll(home); err != nil {
		return fmt.Errorf("removing %s: %w", home, err)
	}
	return nil
}

func sortedUnique(in []int) []int {
	m := map[int]bool{}
	var out []int
	for _, p := range in {
		if !m[p] {
			m[p] = true
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out
}
