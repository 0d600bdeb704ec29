/*
 * proxy.c - the PROXY protocol, versions 1 and 2 (HAProxy's
 * doc/proxy-protocol.txt), for pop3d behind nginx's mail proxy or HAProxy:
 * the trusted-proxy list (-P), the header parser, which the pre-login
 * process runs on untrusted octets, its octet-exact reader, and the
 * monitor's check of what the parser reported.
 *
 * Limits: a v1 header is at most 107 octets (the specification's maximum), a
 * v2 header at most MAX_PROXY_HEADER. TLVs are skipped, but for the SSL one
 * (PP2_TYPE_SSL), which says whether the client spoke TLS to the proxy.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy.h"

#define V1_MAX 107                      /* "PROXY TCP6 <39> <39> 65535 65535\r\n" */
#define V2_FIXED 16                     /* signature, version and command, family, length */
#define PP2_TYPE_SSL 0x20
#define PP2_CLIENT_SSL 0x01

static const unsigned char v2sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* ---- the trusted proxies */

static int
parse_net(const char *s, struct proxynet *n)
{
	char addr[64], *slash, *end;
	long bits;

	if (strlen(s) >= sizeof(addr))
		return -1;
	strcpy(addr, s);
	if ((slash = strchr(addr, '/')) != NULL)
		*slash++ = '\0';
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, addr, n->addr) == 1)
		n->family = AF_INET, n->bits = 32;
	else if (inet_pton(AF_INET6, addr, n->addr) == 1)
		n->family = AF_INET6, n->bits = 128;
	else
		return -1;
	if (slash != NULL) {
		if (*slash < '0' || *slash > '9')
			return -1;
		errno = 0;
		bits = strtol(slash, &end, 10);
		if (errno != 0 || *end != '\0' || bits > n->bits)
			return -1;
		n->bits = (int)bits;
	}
	return 0;
}

int
proxy_list_parse(const char *arg, struct proxylist *l, char *err, size_t errlen)
{
	char item[80];
	const char *p = arg, *comma;
	size_t len;

	l->n = 0;
	for (;;) {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (len == 0 || len >= sizeof(item)) {
			snprintf(err, errlen, "-P: empty or over-long entry in \"%.100s\"", arg);
			return -1;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (l->n == MAX_PROXIES) {
			snprintf(err, errlen, "-P: more than %d entries (MAX_PROXIES)", MAX_PROXIES);
			return -1;
		}
		if (parse_net(item, &l->net[l->n]) < 0) {
			snprintf(err, errlen, "-P: \"%s\" is not an IPv4 or IPv6 address or "
			    "ADDRESS/BITS prefix", item);
			return -1;
		}
		l->n++;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

static int
in_net(const struct proxynet *n, int family, const unsigned char *a)
{
	int full = n->bits / 8, rest = n->bits % 8;

	if (family != n->family || memcmp(a, n->addr, (size_t)full) != 0)
		return 0;
	return rest == 0 || ((a[full] ^ n->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

int
proxy_trusted(const struct proxylist *l, const char *text)
{
	unsigned char a[16];
	int family, i;

	if (inet_pton(AF_INET, text, a) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, text, a) == 1)
		family = AF_INET6;
	else
		return 0;
	for (i = 0; i < l->n; i++)
		if (in_net(&l->net[i], family, a))
			return 1;
	return 0;
}

/* ---- the header */

/* A decimal port: 0, or 1-5 digits without a leading zero, at most 65535. */
static int
v1_port(const char *s, uint32_t *port)
{
	size_t n = strlen(s), i;
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint32_t)v;
	return 0;
}

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT" or "PROXY UNKNOWN[ anything]", the
 * line without its CRLF, single spaces. */
static int
v1_line(char *line, struct proxyinfo *pi, char *err, size_t errlen)
{
	char *f[7], *save = NULL;
	unsigned char dst[16];
	uint32_t dport;
	int n = 0, family;

	if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' ')) {
		pi->command = PROXY_LOCAL;
		return 0;
	}
	if (strstr(line, "  ") != NULL || line[strlen(line) - 1] == ' ') {
		snprintf(err, errlen, "v1 header: not single spaces");
		return -1;
	}
	for (char *t = strtok_r(line, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		if (n == 7)
			break;
		f[n++] = t;
	}
	if (n != 6 || strcmp(f[0], "PROXY") != 0) {
		snprintf(err, errlen, "v1 header: not PROXY TCP4|TCP6|UNKNOWN and four fields");
		return -1;
	}
	if (strcmp(f[1], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		family = AF_INET6;
	else {
		snprintf(err, errlen, "v1 header: unknown protocol");
		return -1;
	}
	if (inet_pton(family, f[2], pi->src) != 1 || inet_pton(family, f[3], dst) != 1 ||
	    v1_port(f[4], &pi->sport) < 0 || v1_port(f[5], &dport) < 0) {
		snprintf(err, errlen, "v1 header: bad address or port");
		return -1;
	}
	pi->command = PROXY_CLIENT;
	pi->family = (uint32_t)family;
	return 0;
}

static int
v1(const unsigned char *b, size_t len, size_t *used, struct proxyinfo *pi, char *err,
    size_t errlen)
{
	static const char sig[] = "PROXY ";
	char line[V1_MAX + 1];
	size_t i;

	for (i = 0; i < len && i < 6; i++)
		if (b[i] != (unsigned char)sig[i]) {
			snprintf(err, errlen, "not a PROXY header");
			return -1;
		}
	for (i = 6; i + 1 < len && i + 1 < V1_MAX; i++)
		if (b[i] == '\r' && b[i + 1] == '\n')
			break;
	if (i + 1 < len && i + 1 < V1_MAX) {
		memcpy(line, b, i);
		line[i] = '\0';
		if (memchr(line, '\0', i) != NULL || memchr(line, '\r', i) != NULL ||
		    memchr(line, '\n', i) != NULL) {
			snprintf(err, errlen, "v1 header: control octets");
			return -1;
		}
		*used = i + 2;
		return v1_line(line, pi, err, errlen) < 0 ? -1 : 1;
	}
	if (len >= V1_MAX) {
		snprintf(err, errlen, "v1 header: no CRLF within %d octets", V1_MAX);
		return -1;
	}
	*used = len + 1;                /* one octet at a time: none too many */
	return 0;
}

/* The TLVs after the addresses: only PP2_TYPE_SSL counts. */
static int
v2_tlvs(const unsigned char *t, size_t len, struct proxyinfo *pi)
{
	size_t n;

	while (len > 0) {
		if (len < 3)
			return -1;
		n = (size_t)t[1] << 8 | t[2];
		if (n > len - 3)
			return -1;
		if (t[0] == PP2_TYPE_SSL && n >= 5)
			pi->tls = (t[3] & PP2_CLIENT_SSL) && t[4] == 0 && t[5] == 0 &&
			    t[6] == 0 && t[7] == 0;      /* verify: 0, the connection verified */
		t += 3 + n;
		len -= 3 + n;
	}
	return 0;
}

static int
v2(const unsigned char *b, size_t len, size_t *used, struct proxyinfo *pi, char *err,
    size_t errlen)
{
	size_t i, total, alen;
	int cmd, af, proto;

	for (i = 0; i < len && i < sizeof(v2sig); i++)
		if (b[i] != v2sig[i]) {
			snprintf(err, errlen, "not a PROXY header");
			return -1;
		}
	if (len < V2_FIXED) {
		*used = V2_FIXED;
		return 0;
	}
	total = V2_FIXED + ((size_t)b[14] << 8 | b[15]);
	if ((b[12] >> 4) != 2 || (cmd = b[12] & 0x0f) > 1) {
		snprintf(err, errlen, "v2 header: version or command unknown");
		return -1;
	}
	if (total > MAX_PROXY_HEADER) {
		snprintf(err, errlen, "v2 header of %zu octets, over MAX_PROXY_HEADER (%d)",
		    total, MAX_PROXY_HEADER);
		return -1;
	}
	if (len < total) {
		*used = total;
		return 0;
	}
	*used = total;
	pi->command = PROXY_LOCAL;
	if (cmd == 0)
		return 1;                       /* LOCAL: a health check; nothing to read */
	af = b[13] >> 4;
	proto = b[13] & 0x0f;
	alen = af == 1 ? 12 : af == 2 ? 36 : af == 3 ? 216 : 0;
	if (af > 3 || proto > 2 || (af != 0 && proto == 2) || total - V2_FIXED < alen) {
		snprintf(err, errlen, "v2 header: address family, protocol or length wrong");
		return -1;
	}
	if (v2_tlvs(b + V2_FIXED + alen, total - V2_FIXED - alen, pi) < 0) {
		snprintf(err, errlen, "v2 header: a TLV runs past the header");
		return -1;
	}
	if (af == 1 || af == 2) {               /* else: use the connection's own */
		pi->command = PROXY_CLIENT;
		pi->family = af == 1 ? AF_INET : AF_INET6;
		memcpy(pi->src, b + V2_FIXED, af == 1 ? 4 : 16);
		pi->sport = (uint32_t)b[V2_FIXED + (af == 1 ? 8 : 32)] << 8 |
		    b[V2_FIXED + (af == 1 ? 9 : 33)];
	} else {
		pi->tls = 0;
	}
	return 1;
}

int
proxy_parse(const unsigned char *b, size_t len, size_t *used, struct proxyinfo *pi,
    char *err, size_t errlen)
{
	memset(pi, 0, sizeof(*pi));
	if (len == 0) {
		*used = 1;
		return 0;
	}
	if (b[0] == 'P')
		return v1(b, len, used, pi, err, errlen);
	if (b[0] == v2sig[0])
		return v2(b, len, used, pi, err, errlen);
	snprintf(err, errlen, "not a PROXY header");
	return -1;
}

int
proxy_read(int fd, int timeout, struct proxyinfo *pi, char *err, size_t errlen)
{
	unsigned char buf[MAX_PROXY_HEADER];
	size_t len = 0, want = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int r;

	while ((r = proxy_parse(buf, len, &want, pi, err, errlen)) == 0) {
		do
			r = poll(&p, 1, timeout * 1000);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			snprintf(err, errlen, "no PROXY header within %d s", timeout);
			return -1;
		}
		do
			n = read(fd, buf + len, want - len);
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			snprintf(err, errlen, "connection %s in the PROXY header",
			    n == 0 ? "closed" : "failed");
			return n == 0 && len == 0 ? -2 : -1;
		}
		len += (size_t)n;
	}
	explicit_bzero(buf, sizeof(buf));
	return r == 1 ? 0 : -1;
}

int
proxy_check(const struct proxyinfo *pi, char *addr, size_t addrlen)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (pi->tls > 1 || pi->sport > 65535)
		return -1;
	if (pi->command == PROXY_LOCAL)
		return pi->tls == 0 ? 0 : -1;
	if (pi->command != PROXY_CLIENT)
		return -1;
	if (pi->family == AF_INET6 && memcmp(pi->src, mapped, sizeof(mapped)) == 0)
		return inet_ntop(AF_INET, pi->src + 12, addr, (socklen_t)addrlen) ? 0 : -1;
	if (pi->family != AF_INET && pi->family != AF_INET6)
		return -1;
	return inet_ntop((int)pi->family, pi->src, addr, (socklen_t)addrlen) ? 0 : -1;
}
