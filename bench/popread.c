/*
 * bench/popread.c - a lean pipelined POP3 reader for the bench, plain or
 * POP3S, so that the client's own cost weighs little in a download figure
 * (Python's ssl reads one TLS record per call).
 *
 *   popread [-s] PORT USER PASSWORD
 *
 * Connects to 127.0.0.1:PORT (with -s: TLS from the first octet, OpenSSL,
 * read-ahead on, certificate not checked), logs in with USER/PASS, sends
 * STAT, then every RETR and QUIT at once, and reads until the server closes.
 * Prints "SECONDS OCTETS" (from connect to the last octet; octets received
 * after the STAT reply) and exits 0; on any error, a message and exit 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static SSL *ssl;
static int fd;

static void
die(const char *what)
{
	fprintf(stderr, "popread: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static ssize_t
get(void *buf, size_t n)
{
	size_t got = 0;

	if (ssl == NULL)
		return read(fd, buf, n);
	if (SSL_read_ex(ssl, buf, n, &got) == 1)
		return (ssize_t)got;
	return SSL_get_error(ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static void
put(const char *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		size_t w = 0;
		ssize_t r;

		if (ssl != NULL)
			r = SSL_write_ex(ssl, buf + done, n - done, &w) == 1 ? (ssize_t)w : -1;
		else
			r = write(fd, buf + done, n - done);
		if (r <= 0)
			die("write");
		done += (size_t)r;
	}
}

/* One reply line into line (NUL-terminated, without CRLF); what followed it
 * stays in *rest. A line must start with +OK. */
static char inbuf[1 << 20];
static size_t inlen;

static void
reply(char *line, size_t max)
{
	char *nl;
	ssize_t n;

	while ((nl = memchr(inbuf, '\n', inlen)) == NULL) {
		if (inlen == sizeof(inbuf) || (n = get(inbuf + inlen, sizeof(inbuf) - inlen)) <= 0)
			die("no reply");
		inlen += (size_t)n;
	}
	snprintf(line, max, "%.*s", (int)(nl - inbuf), inbuf);
	inlen -= (size_t)(nl + 1 - inbuf);
	memmove(inbuf, nl + 1, inlen);
	if (strncmp(line, "+OK", 3) != 0)
		die(line);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timespec t0, t1;
	char line[512], *cmds;
	unsigned long count, i;
	unsigned long long octets;
	size_t len = 0;
	ssize_t n;
	int tls = argc == 5 && strcmp(argv[1], "-s") == 0;

	if (argc != 4 + tls)
		die("usage: popread [-s] PORT USER PASSWORD");
	argv += tls;
	sin.sin_port = htons((unsigned short)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		die("connect");
	if (tls) {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

		if (ctx == NULL)
			die("SSL_CTX_new");
		SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
		SSL_CTX_set_read_ahead(ctx, 1);
		SSL_CTX_set_default_read_buffer_len(ctx, 1 << 18);
		if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
			die("TLS handshake");
	}
	reply(line, sizeof(line));                      /* greeting */
	snprintf(line, sizeof(line), "USER %s\r\n", argv[2]);
	put(line, strlen(line));
	reply(line, sizeof(line));
	snprintf(line, sizeof(line), "PASS %s\r\n", argv[3]);
	put(line, strlen(line));
	reply(line, sizeof(line));
	put("STAT\r\n", 6);
	reply(line, sizeof(line));
	count = strtoul(line + 4, NULL, 10);
	if ((cmds = malloc(count * 16 + 8)) == NULL)
		die("malloc");
	for (i = 1; i <= count; i++)
		len += (size_t)sprintf(cmds + len, "RETR %lu\r\n", i);
	len += (size_t)sprintf(cmds + len, "QUIT\r\n");
	put(cmds, len);
	octets = inlen;
	while ((n = get(inbuf, sizeof(inbuf))) > 0)
		octets += (unsigned long long)n;
	if (n < 0)
		die("read");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.6f %llu\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
	    octets);
	return 0;
}
