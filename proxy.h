/*
 * proxy.h - the PROXY protocol (HAProxy's doc/proxy-protocol.txt, versions
 * 1 and 2): the trusted-proxy list of -P, and the header a proxy sends before
 * anything of the client's.
 */
#ifndef POP3D_PROXY_H
#define POP3D_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* -P: the trusted proxies, addresses or CIDR prefixes. */
struct proxynet {
	int family;                     /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int bits;                       /* prefix length */
};

struct proxylist {
	struct proxynet net[MAX_PROXIES];
	int n;
};

/* What a header says, as the pre-login process passes it to the monitor
 * (which checks it again: proxy_check). */
enum { PROXY_LOCAL = 1, PROXY_CLIENT = 2 };

struct proxyinfo {
	uint32_t command;               /* PROXY_LOCAL: the proxy's own connection
	                                 * (v2 LOCAL, v1 UNKNOWN, or an address
	                                 * family other than IPv4 and IPv6) */
	uint32_t family;                /* PROXY_CLIENT: AF_INET or AF_INET6 */
	unsigned char src[16];          /* the client's address and port */
	uint32_t sport;
	uint32_t tls;                   /* v2 SSL TLV: the client spoke TLS to the
	                                 * proxy, and it verified the connection */
};

/* Parse "ADDR[/BITS],..." into list. 0, or -1 with a reason in err. */
int proxy_list_parse(const char *, struct proxylist *, char *err, size_t errlen);
/* Is the address (text, as pop3d logs it) in the list? */
int proxy_trusted(const struct proxylist *, const char *addr);

/* The header in buf[0..len): 1 complete (its length in *used, the result in
 * *pi), 0 a valid beginning that needs more octets (at least *used in all),
 * -1 malformed (a reason in err). Never reads past len. */
int proxy_parse(const unsigned char *buf, size_t len, size_t *used, struct proxyinfo *pi,
    char *err, size_t errlen);
/* Read the header from fd, octet-exact: nothing after it is consumed. Each
 * wait at most timeout seconds. 0, or -1 with a reason in err, or -2 when
 * the peer closed without sending anything (a probe: a health check that
 * only connects, a port scan). */
int proxy_read(int fd, int timeout, struct proxyinfo *, char *err, size_t errlen);
/* The monitor's check of a record from the pre-login process: 0 and the
 * client's address in text (addrlen >= 46), or -1. */
int proxy_check(const struct proxyinfo *, char *addr, size_t addrlen);

#endif
