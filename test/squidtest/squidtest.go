// Package squidtest writes the squid.conf the test levels (test/httpcaps,
// test/interop) run Debian's squid with: one listener that also leaves
// from its own address, no cache, no Via or X-Forwarded-For (as free-list
// operators run it), every file under one directory, quick shutdown.
package squidtest

import "fmt"

// Conf is a squid.conf listening on ip:port, going out from ip, with
// access (the acl/http_access lines, newline-terminated) deciding who may
// use it, and its pid file and logs under dir.
func Conf(ip string, port int, access, dir string) string {
	return fmt.Sprintf(`http_port %[1]s:%[2]d
tcp_outgoing_address %[1]s
%[3]scache deny all
cache_mem 8 MB
forwarded_for delete
via off
cache_effective_user proxy
pid_filename %[4]s/squid.pid
cache_log %[4]s/cache.log
access_log stdio:%[4]s/access.log
coredump_dir %[4]s
netdb_filename none
pinger_enable off
shutdown_lifetime 1 seconds
max_filedescriptors 1024
dns_nameservers 127.0.0.1
`, ip, port, access, dir)
}
