/*
 * relay.c - the relay: after a login over TLS, the pre-login process goes on
 * as the relay between the client (TLS) and the session, which speaks plain
 * POP3 over a socketpair and has no TLS library mapped (tlsmod.h).
 *
 * It stays as confined as before login (the pre-login user, chrooted,
 * seccomp). It moves octets both ways through two fixed buffers: what the
 * client sends goes to the session as it comes; what the session answers is
 * sent to the client in records of up to 16 kB. It has no idle timeout of its
 * own (the session has one, and closes the socketpair when it ends); a client
 * that stops taking octets for the session's -t seconds ends it. When either
 * side is done it sends close_notify and exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"
#include "tls.h"

struct side {
	char buf[RELAY_BUF_SIZE];
	size_t pos, len;                /* octets buf[pos..len) are still to go */
	int eof;                        /* its source is done */
};

static int
room(const struct side *s)
{
	return !s->eof && s->len < sizeof(s->buf);
}

static int
waiting(const struct side *s)
{
	return s->pos < s->len;
}

static void
drained(struct side *s)
{
	if (s->pos == s->len)
		s->pos = s->len = 0;
}

/* One round of everything that can be done without waiting. 1 some
 * progress, 0 none, -1 the client is gone. *rwant and *wwant: what TLS waits
 * for to read and to write. */
static int
round_trip(struct tls *t, int sess, struct side *up, struct side *down, short *rwant,
    short *wwant)
{
	int moved = 0;
	ssize_t n;

	while (room(up)) {                      /* client -> up */
		n = tls_recv(t, up->buf + up->len, sizeof(up->buf) - up->len);
		if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
			*rwant = n == TLS_WANT_READ ? POLLIN : POLLOUT;
			break;
		}
		if (n <= 0)
			up->eof = 1;    /* the client's end or an error: the session sees it */
		else
			up->len += (size_t)n;
		moved = 1;
	}
	while (waiting(down)) {                 /* down -> client */
		n = tls_send(t, down->buf + down->pos, down->len - down->pos);
		if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
			*wwant = n == TLS_WANT_READ ? POLLIN : POLLOUT;
			break;
		}
		if (n < 0)
			return -1;
		down->pos += (size_t)n;
		moved = 1;
	}
	drained(down);
	while (waiting(up)) {                   /* up -> session */
		n = send(sess, up->buf + up->pos, up->len - up->pos, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			down->eof = 1;          /* the session is gone */
			up->pos = up->len;
			break;
		}
		up->pos += (size_t)n;
		moved = 1;
	}
	drained(up);
	while (room(down)) {                    /* session -> down */
		n = recv(sess, down->buf + down->len, sizeof(down->buf) - down->len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			down->eof = 1;
		else
			down->len += (size_t)n;
		moved = 1;
	}
	return moved;
}

void
relay_run(struct tls *t, int sess, int timeout)
{
	static struct side up, down;    /* client to session, session to client */
	short rwant = POLLIN, wwant = POLLOUT;
	int r, shut = 0;

	for (;;) {
		struct pollfd p[2] = { { .fd = tls_fd(t) }, { .fd = sess } };

		if ((r = round_trip(t, sess, &up, &down, &rwant, &wwant)) < 0)
			break;                  /* the client is gone */
		if (up.eof && !waiting(&up) && !shut) {
			shutdown(sess, SHUT_WR);        /* the session sees the client's end */
			shut = 1;
		}
		if (down.eof && !waiting(&down))
			break;                  /* the session is done: so are we */
		if (r > 0)
			continue;
		p[0].events = (short)((room(&up) ? rwant : 0) | (waiting(&down) ? wwant : 0));
		p[1].events = (short)((room(&down) ? POLLIN : 0) | (waiting(&up) ? POLLOUT : 0));
		for (int i = 0; i < 2; i++)
			if (p[i].events == 0)
				p[i].fd = -1;   /* (its hang-up would wake us for nothing) */
		do
			r = poll(p, 2, waiting(&down) ? timeout * 1000 : -1);
		while (r < 0 && errno == EINTR);
		if (r <= 0)
			break;                  /* the client took nothing for -t seconds */
	}
	explicit_bzero(&up, sizeof(up));
	explicit_bzero(&down, sizeof(down));
	tls_close(t, timeout);
	close(sess);
	_exit(0);
}
