// Package torrc renders one tor instance's configuration (torrc.<port>),
// writes it atomically only when it changed (after `tor --verify-config`
// accepted it), reads back which slot key each generated file belongs to,
// and removes files of ports that are gone.
package torrc
