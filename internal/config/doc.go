// Package config loads and validates proxypool.yaml into a typed Config.
//
// The file is decoded through yaml.v3's yaml.Node, strictly: an unknown key,
// a duplicate key, a value of the wrong shape or an invalid value is an
// error, and every error names the file, the line and the dotted key path:
//
//	proxypool.yaml:12: probe.interval: "5x" is not a duration (use 30s, 5m)
//	proxypool.yaml:7: gateway.strategi: unknown key (did you mean "strategy"?)
//	proxypool.yaml:21: gateway.ports[1].group: no group "eu" in groups (have: nonus, us)
//
// Parse reports all problems it finds at once (errors.Join of *Error, in
// line order), not just the first.
//
// Defaults. Parse starts from Default() and overwrites only the keys the
// file contains, so a missing key (or an empty value, "key:") keeps its
// documented default, while an explicit value is validated as written: an
// explicit "interval: 0s" is an error, not a silent default. Where zero is
// meaningful the field says so (gateway.rotate-every, tor.newnym-period,
// slo and group floors). Defaults that depend on other keys are filled in
// after decoding: sources[].interval defaults to refresh.interval, and
// gateway.ports[].strategy to gateway.strategy.
//
// Values. Durations are Go duration strings (30s, 5m, 6h, 72h; no "d").
// Sizes are bytes or a number with a unit (64MiB, 512KiB, 1GB). Country
// codes are two letters and are upper-cased. Booleans are true/false
// (yes/no and on/off are accepted too).
//
// Paths. Relative paths in the file (database, probe.geoip, probe.geoip6,
// tor.torrc-dir, tor.data-dir, a tor.relays file, and file://./x source
// URLs) are kept as written and are therefore resolved against the working
// directory of the process that uses them, NOT against the config file's
// directory. `make run` starts everything from the checkout's root, so
// ./var/proxypool.db lands in the checkout; systemd units start in /, so a
// packaged config should use absolute paths.
//
// SLO floors. The pool-wide floors are slo.min-healthy (default 1: act
// when the pool has no healthy upstream) and slo.min-exits (default 0: off);
// per-group floors are groups.<name>.min-healthy and .min-exits (default 0).
//
// The config path itself comes from Path: the --config flag, else
// $PROXYPOOL_CONFIG, else /etc/proxypool/proxypool.yaml.
package config
