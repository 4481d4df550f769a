// Package dbustest starts private dbus-daemon instances for tests: a
// session-like bus that allows everything, and a system-like bus built from
// the distribution's system.conf that includes only the policy files the
// test names. Tests skip when dbus-daemon is not installed. It imports
// nothing but the standard library.
package dbustest
