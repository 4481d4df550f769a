package torgen

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// DefaultTorUser is the account Debian's tor package makes: what `run`'s
// tor children switch to (tor's User option) when proxypoold runs as root.
const DefaultTorUser = "debian-tor"

// runAs is a resolved account tor switches to after binding its ports.
type runAs struct {
	name     string
	uid, gid int
}

// lookupRunAs resolves name and checks that it can reach what tor opens
// after it switched: its data directories (dataDir) and, on a reload, its
// torrc (torrcDir). Every directory above them needs search permission for
// the account; a state directory closed to it (0700 root) would leave tor
// unable to start, so then the answer is an error saying which directory,
// and tor keeps running as proxypoold's user.
func lookupRunAs(name, dataDir, torrcDir string) (runAs, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return runAs{}, fmt.Errorf("looking up tor's user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return runAs{}, fmt.Errorf("tor's user %s has uid %q gid %q, not numbers", name, u.Uid, u.Gid)
	}
	gids := []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				gids = append(gids, n)
			}
		}
	}
	for _, dir := range []string{dataDir, torrcDir} {
		if err := searchable(dir, uid, gids); err != nil {
			return runAs{}, fmt.Errorf("tor's user %s: %w", name, err)
		}
	}
	return runAs{name: name, uid: uid, gid: gid}, nil
}

// searchable checks that uid (in gids) may pass through every directory
// from / down to dir; dir itself is the account's once Generate chowns it,
// so only its parents count.
func searchable(dir string, uid int, gids []int) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking %s: %w", p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("checking %s: no owner information", p)
		}
		m := fi.Mode().Perm()
		can := m&0o001 != 0 ||
			int(st.Uid) == uid && m&0o100 != 0 ||
			slices.Contains(gids, int(st.Gid)) && m&0o010 != 0
		if !can {
			return fmt.Errorf("cannot reach %s through %s (mode %v, owner %d:%d)", dir, p, m, st.Uid, st.Gid)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// own gives dir to the account tor switches to: tor refuses a
// DataDirectory its user does not own.
func (r runAs) own(dir string) error {
	if r.name == "" {
		return nil
	}
	if err := os.Chown(dir, r.uid, r.gid); err != nil {
		return fmt.Errorf("giving %s to tor's user %s: %w", dir, r.name, err)
	}
	return nil
}
