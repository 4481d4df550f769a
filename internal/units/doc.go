// Package units runs proxypool's Tor instances as Debian's own
// tor@<port>.service units through systemd's D-Bus API (go-systemd dbus).
// It creates each instance the way `tor-instance-create <port>` does
// (system user _tor-<port>, /var/lib/tor-instances/<port>), makes
// /etc/tor/instances/<port>/torrc hold `%include /etc/tor/torrc.<port>`,
// and enables/starts/reloads/stops/disables only the units whose state must
// change; an instance whose port is gone goes entirely (unit stopped and
// disabled, user, home and instance directory removed). Debian's
// tor@.service itself is never replaced. Proven under a booted systemd by
// the "tor" phase of test/e2e/checks.sh.
package units
