package tornet

// shimSource is an LD_PRELOAD library loaded into the test relays only. Tor
// never binds outgoing sockets for loopback destinations (connection.c:
// "if (!tor_addr_is_loopback(addr)) bind"), so without it every exit would
// reach the target from 127.0.0.1. It binds an unbound AF_INET socket to
// $TORNET_BIND_ADDR just before it connect()s or sendto()s a 127/8 address.
const shimSource = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static void maybe_bind(int fd, const struct sockaddr *addr) {
	if (addr == NULL || addr->sa_family != AF_INET) return;
	const struct sockaddr_in *dst = (const struct sockaddr_in *)addr;
	if ((ntohl(dst->sin_addr.s_addr) >> 24) != 127) return;
	const char *src = getenv("TORNET_BIND_ADDR");
	if (src == NULL) return;
	struct sockaddr_in cur;
	socklen_t len = sizeof cur;
	memset(&cur, 0, sizeof cur);
	if (getsockname(fd, (struct sockaddr *)&cur, &len) != 0 || cur.sin_family != AF_INET) return;
	if (cur.sin_port != 0 || cur.sin_addr.s_addr != 0) return;
	struct sockaddr_in b;
	memset(&b, 0, sizeof b);
	b.sin_family = AF_INET;
	if (inet_pton(AF_INET, src, &b.sin_addr) != 1) return;
	bind(fd, (struct sockaddr *)&b, sizeof b);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
	static int (*real)(int, const struct sockaddr *, socklen_t);
	if (real == NULL) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
	maybe_bind(fd, addr);
	return real(fd, addr, len);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t len) {
	static ssize_t (*real)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	if (real == NULL) real = (ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "sendto");
	maybe_bind(fd, addr);
	return real(fd, buf, n, flags, addr, len);
}
`
