/*
 * io.h - the client connection: bounded command lines in, buffered replies out,
 * both under a timeout; and the strict tokenizing of a command line.
 */
#ifndef POP3D_IO_H
#define POP3D_IO_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct tls;

struct io {
	int in, out;            /* client descriptors (the same socket under inetd) */
	struct tls *tls;        /* TLS on them (tls.c), or NULL: plain */
	int out_is_socket;      /* send(MSG_DONTWAIT) rather than write() */
	int timeout;            /* seconds a read or a write may wait */
	int failed;             /* a write failed or timed out: the client is gone */
	int discarding;         /* inside an over-long line, skipping to its end */
	size_t ipos, ilen;      /* unread input is ibuf[ipos..ilen) */
	size_t olen;            /* buffered output */
	uint64_t sent;          /* octets sent or queued for the client */
	char ibuf[INBUF_SIZE];
	char obuf[OUTBUF_SIZE];
};

/* io_getline results */
enum { IO_LINE, IO_TOOLONG, IO_NUL, IO_EOF, IO_TIMEOUT, IO_ERROR };

void io_init(struct io *, int in, int out, int timeout);
/* Next command line without its terminator into line[MAX_LINE]; flushes the
 * replies before it waits for more input. */
int io_getline(struct io *, char line[MAX_LINE], size_t *len);
/* The same for a line of at most max octets with its terminator (max <=
 * INBUF_SIZE): an AUTH continuation line. */
int io_getline_max(struct io *, char *line, size_t max, size_t *len);
/* Drop, unread and wiped, whatever input is buffered (STLS). */
void io_discard(struct io *);
/* Append to the output buffer, writing it out when full. -1 once the client is gone. */
int io_put(struct io *, const void *, size_t);
int io_printf(struct io *, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int io_flush(struct io *);
/* Bytes of input already buffered and not yet consumed (pipelined commands). */
size_t io_buffered(const struct io *);

/* Split line in place at spaces into at most max tokens; -1 if there are more. */
int io_split(char *line, char **argv, int max);
/* Strict decimal: ASCII digits only, 1..max. 0 on success. */
int parse_msgno(const char *s, unsigned long max, unsigned long *out);
/* ASCII digits only, any length, saturating. 0 on success. */
int parse_count(const char *s, unsigned long *out);
/* Strict base64 (RFC 4648: the standard alphabet, padded, nothing else) of
 * in into out: the octets decoded, or -1 when in is not that or they do not
 * fit max. */
int io_base64(const char *in, unsigned char *out, size_t max);

#endif
