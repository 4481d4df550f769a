package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// filePerm is the most a database file in dir may allow: owner read and
// write, plus group read when dir is closed to others and open to its group
// (the units' StateDirectory=proxypool with StateDirectoryMode=0750, where
// members of group proxypool read it with proxypoolctl --db). Anywhere else
// (./var under `make run`, a home directory) the file is the owner's only:
// it holds every upstream's credentials.
func filePerm(dir fs.FileInfo) fs.FileMode {
	if m := dir.Mode().Perm(); m&0o007 == 0 && m&0o010 != 0 {
		return 0o640
	}
	return 0o600
}

// securePerms runs before SQLite opens abs. A missing database file is
// created empty with filePerm (SQLite then gives its -wal and -shm files
// the same mode); an existing one, and its -wal and -shm, lose whatever
// filePerm does not allow (builds before this one left them 0644 under a
// 022 umask). It never adds a permission.
func securePerms(abs string, dir fs.FileInfo) error {
	want := filePerm(dir)
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, want)
	switch {
	case err == nil:
		defer f.Close()
		if err := f.Chmod(want); err != nil { // the umask may have taken more or less
			return fmt.Errorf("setting the mode of %s: %w", abs, err)
		}
		return nil
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("creating %s: %w", abs, err)
	}
	for _, p := range []string{abs, abs + "-wal", abs + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("checking the mode of %s: %w", p, err)
		}
		if !fi.Mode().IsRegular() {
			continue // precheck names what is wrong with it
		}
		if m := fi.Mode().Perm(); m&^want != 0 {
			if err := os.Chmod(p, m&want); err != nil {
				return fmt.Errorf("taking access to %s away from others (mode %v): %w", p, m, err)
			}
		}
	}
	return nil
}
