// Package atomicfile replaces files so that a reader (tor, systemd, another
// process, or this one after a crash) sees either the old content or the new
// content, never a torn mix: the data goes to a temporary file in the same
// directory, is fsynced and chmodded, renamed over the target, and the
// directory is fsynced so the rename itself survives a power cut.
//
// It uses the standard library only.
package atomicfile
