package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile atomically replaces path with data and sets its permission bits
// to perm (exactly, regardless of the umask). path must not be a directory or
// another non-regular file; a symlink to a regular file is replaced by a
// regular file. On error the old file, if any, is left untouched and no
// temporary file is left behind.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("writing %s: exists and is not a regular file", path)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(perm.Perm()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: syncing: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The content is in place; only its durability is in doubt.
		return fmt.Errorf("writing %s: syncing directory: %w", path, err)
	}
	return nil
}

// WriteIfChanged is WriteFile that leaves path alone when it already holds
// exactly data with permission bits perm, so that an unchanged file keeps its
// modification time and watchers are not woken. When only the permission
// bits differ they are fixed in place. changed reports whether anything on
// disk was modified.
func WriteIfChanged(path string, data []byte, perm os.FileMode) (changed bool, err error) {
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true, WriteFile(path, data, perm)
	case err != nil:
		// Unreadable or not a file: let WriteFile report or fix it.
		return true, WriteFile(path, data, perm)
	}
	if !bytes.Equal(old, data) {
		return true, WriteFile(path, data, perm)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return true, WriteFile(path, data, perm)
	}
	if fi.Mode().Perm() == perm.Perm() {
		return false, nil
	}
	if err := os.Chmod(path, perm.Perm()); err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	return true, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
