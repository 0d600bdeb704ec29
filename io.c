/*
 * io.c - the client connection.
 *
 * Input: command lines of at most MAX_LINE octets with their terminator (CRLF or a
 * bare LF). An over-long line is reported once when it ends and never run; a line
 * holding a NUL is reported and never run. Output: replies are gathered in one
 * buffer and written when the buffer fills or before waiting for more input, so
 * pipelined commands get their replies in as few writes as possible. Every wait,
 * for input or for the client to take output, is bounded by poll() and a timeout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#ifdef HAVE_TLS
#include "tls.h"
#endif

void
io_init(struct io *io, int in, int out, int timeout)
{
	struct stat st;

	memset(io, 0, sizeof(*io) - sizeof(io->ibuf) - sizeof(io->obuf));
	io->in = in;
	io->out = out;
	io->timeout = timeout;
	io->out_is_socket = fstat(out, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Wait until fd is ready for events; 1 ready, 0 timeout, -1 error. */
static int
wait_fd(int fd, short events, int seconds)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, seconds * 1000);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return r;
	return 1;
}

int
io_flush(struct io *io)
{
	size_t off = 0;

#ifdef HAVE_TLS
	if (io->tls != NULL && io->olen > 0 && !io->failed &&
	    tls_write(io->tls, io->obuf, io->olen, io->timeout) < 0)
		io->failed = 1;
	if (io->tls != NULL)
		off = io->olen;
#endif
	while (off < io->olen && !io->failed) {
		size_t want = io->olen - off;
		ssize_t n;

		if (io->out_is_socket) {
			/* Try first; wait only when the socket is full. */
			n = send(io->out, io->obuf + off, want, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
			    wait_fd(io->out, POLLOUT, io->timeout) != 1) {
				io->failed = 1;
				break;
			}
		} else {
			if (wait_fd(io->out, POLLOUT, io->timeout) != 1) {
				io->failed = 1;
				break;
			}
			/* A blocking pipe or tty: after POLLOUT, PIPE_BUF octets never block. */
			if (want > PIPE_BUF)
				want = PIPE_BUF;
			n = write(io->out, io->obuf + off, want);
		}
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n <= 0) {
			io->failed = 1;
			break;
		}
		off += (size_t)n;
	}
	io->olen = 0;
	return io->failed ? -1 : 0;
}

int
io_put(struct io *io, const void *data, size_t len)
{
	const char *p = data;

	io->sent += len;
	while (len > 0 && !io->failed) {
		size_t room = sizeof(io->obuf) - io->olen;
		size_t n = len < room ? len : room;

		memcpy(io->obuf + io->olen, p, n);
		io->olen += n;
		p += n;
		len -= n;
		if (io->olen == sizeof(io->obuf))
			io_flush(io);
	}
	return io->failed ? -1 : 0;
}

int
io_printf(struct io *io, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	return io_put(io, line, (size_t)n);
}

size_t
io_buffered(const struct io *io)
{
	return io->ilen - io->ipos;
}

/* Take the next complete line out of the buffer, if there is one. */
static int
take_line(struct io *io, char *line, size_t max, size_t *len)
{
	char *start = io->ibuf + io->ipos;
	char *lf = memchr(start, '\n', io->ilen - io->ipos);
	size_t raw, n;
	int r = IO_LINE;

	if (lf == NULL)
		return -1;
	raw = (size_t)(lf - start) + 1;
	io->ipos += raw;
	n = raw - 1;
	if (n > 0 && start[n - 1] == '\r')
		n--;
	if (io->discarding || raw > max)
		r = IO_TOOLONG;
	else if (memchr(start, '\0', n) != NULL)
		r = IO_NUL;
	else {
		memcpy(line, start, n);
		line[n] = '\0';
		*len = n;
	}
	io->discarding = 0;
	explicit_bzero(start, raw);     /* a consumed line may hold a password */
	return r;
}

/* More input into the buffer: IO_LINE (some), or IO_EOF, IO_TIMEOUT, IO_ERROR. */
static int
fill(struct io *io)
{
	ssize_t n;
	int r;

	for (;;) {
#ifdef HAVE_TLS
		if (io->tls != NULL) {
			n = tls_read(io->tls, io->ibuf + io->ilen, sizeof(io->ibuf) - io->ilen,
			    io->timeout);
			if (n == -2)
				return IO_TIMEOUT;
			if (n < 0)
				return IO_ERROR;
			if (n == 0)
				return IO_EOF;
			io->ilen += (size_t)n;
			return IO_LINE;
		}
#endif
		r = wait_fd(io->in, POLLIN, io->timeout);
		if (r == 0)
			return IO_TIMEOUT;
		if (r < 0)
			return IO_ERROR;
		n = read(io->in, io->ibuf + io->ilen, sizeof(io->ibuf) - io->ilen);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return IO_ERROR;
		if (n == 0)
			return IO_EOF;
		io->ilen += (size_t)n;
		return IO_LINE;
	}
}

int
io_getline_max(struct io *io, char *line, size_t max, size_t *len)
{
	for (;;) {
		int r = take_line(io, line, max, len);

		if (r >= 0)
			return r;
		/* No complete line buffered: drop or keep the partial one. */
		if (io->discarding || io->ilen - io->ipos >= max) {
			io->discarding = 1;
			io->ipos = io->ilen;
		}
		memmove(io->ibuf, io->ibuf + io->ipos, io->ilen - io->ipos);
		explicit_bzero(io->ibuf + io->ilen - io->ipos, io->ipos);
		io->ilen -= io->ipos;
		io->ipos = 0;

		if (io_flush(io) < 0)
			return IO_ERROR;
		if ((r = fill(io)) != IO_LINE)
			return r;
	}
}

int
io_getline(struct io *io, char line[MAX_LINE], size_t *len)
{
	return io_getline_max(io, line, MAX_LINE, len);
}

void
io_discard(struct io *io)
{
	explicit_bzero(io->ibuf, sizeof(io->ibuf));
	io->ipos = io->ilen = 0;
	io->discarding = 0;
}

int
io_split(char *line, char **argv, int max)
{
	int argc = 0;
	char *p = line;

	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return argc;
		if (argc == max)
			return -1;
		argv[argc++] = p;
		while (*p != ' ' && *p != '\0')
			p++;
		if (*p == ' ')
			*p++ = '\0';
	}
}

int
parse_msgno(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		unsigned long d = (unsigned long)(*s - '0');

		if (*s < '0' || *s > '9')
			return -1;
		if (v > max / 10 || d > max - v * 10)
			return -1;      /* beyond max, however many digits follow */
		v = v * 10 + d;
	}
	if (v == 0)
		return -1;
	*out = v;
	return 0;
}

int
parse_count(const char *s, unsigned long *out)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (ULONG_MAX - 9) / 10)
			v = ULONG_MAX;
		else
			v = v * 10 + (unsigned long)(*s - '0');
	}
	*out = v;
	return 0;
}

int
io_base64(const char *in, unsigned char *out, size_t max)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t len = strlen(in), i, n = 0;
	uint32_t v;
	int k, pad;

	if (len == 0 || len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		v = 0;
		pad = 0;
		for (k = 0; k < 4; k++) {
			const char *p = in[i + k] != '\0' ? strchr(alphabet, in[i + k]) : NULL;

			if (in[i + k] == '=' && i + 4 == len && k >= 2 && (k == 3 || in[i + 3] == '=')) {
				pad++;
				v <<= 6;
				continue;
			}
			if (p == NULL || pad > 0)
				return -1;
			v = v << 6 | (uint32_t)(p - alphabet);
		}
		if (n + 3 - (size_t)pad > max)
			return -1;
		out[n++] = (unsigned char)(v >> 16);
		if (pad < 2)
			out[n++] = (unsigned char)(v >> 8);
		if (pad < 1)
			out[n++] = (unsigned char)v;
	}
	return (int)n;
}
