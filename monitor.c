/*
 * monitor.c - the monitor: the privileged side of a connection until login.
 *
 * It answers the pre-login process's requests (each a fixed-size record,
 * checked as untrusted input: privsep.c), checks credentials against the user
 * file (auth.c), counts and delays failures itself, logs for the pre-login
 * process (which has no syslog), and enforces the pre-login time limit. After
 * a good password it opens the maildrop with the user's rights, locks it as
 * root, becomes the user for good and loads it: from then on this process is
 * the session (pop3d.c's TRANSACTION state), talking to the client directly,
 * or, after a login over TLS, to the relay over a socketpair. It never parses
 * TLS records and never holds the TLS private key; the signer, if any, is
 * ended before the session begins.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "session.h"
#include "uidlmap.h"
#include "uidlsrc.h"

/* What poll says of the channel within ms: 0 nothing, else its revents. */
static int
wait_chan(int chan, int ms)
{
	struct pollfd p = { .fd = chan, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r > 0 ? p.revents | POLLIN : 0;
}

/* Wait at most ms for a child to end, then kill it (logged as what): its
 * status. Every wait of the monitor has a deadline. */
static int
reap(struct session *s, pid_t child, int ms, const char *what)
{
	struct timespec pause = { 0, 1000000L };
	int status = 0;
	pid_t r;

	for (;;) {
		r = waitpid(child, &status, WNOHANG);
		if (r == child || (r < 0 && errno != EINTR))
			return status;
		if (ms-- <= 0) {
			if (what != NULL)
				syslog(LOG_ERR, "error privsep: %s rhost=%s", what, s->rhost);
			kill(child, SIGKILL);
			while (waitpid(child, &status, 0) < 0 && errno == EINTR)
				;
			return status;
		}
		nanosleep(&pause, NULL);
	}
}

/* The signer must be gone before a session begins: it holds the key. */
static void
end_signer(struct session *s)
{
	if (s->signer > 0) {
		kill(s->signer, SIGKILL);
		reap(s, s->signer, PRELOGIN_GRACE * 1000, NULL);
		s->signer = 0;
	}
}

static int
fatal(struct session *s, const char *code, const char *err)
{
	syslog(LOG_ERR, "error user=%s rhost=%s: %s", s->who.name, s->rhost, err);
	reply(s, "-ERR [%s] %s", code, strcmp(code, "SYS/PERM") == 0 ?
	    "maildrop unavailable, ask your administrator" : "maildrop unavailable, try again later");
	return END;
}

/* A REQ_LOG record: a line about TLS or the PROXY header that the pre-login
 * process cannot log itself ("tls: TEXT" or "proxy: TEXT"). At most a few
 * per connection, printable ASCII only. 0, or -1 (malformed). */
static int
log_for_prelogin(struct session *s, struct authreq *req)
{
	size_t i;

	if (++s->logs > 2 || req->datalen == 0 || req->datalen >= 200 ||
	    (strncmp(req->data, "tls: ", 5) != 0 && strncmp(req->data, "proxy: ", 7) != 0))
		return -1;
	for (i = 0; i < req->datalen; i++)
		if (req->data[i] < 0x20 || req->data[i] > 0x7e)
			return -1;
	syslog(LOG_ERR, "error %.*s rhost=%s", (int)req->datalen, req->data, s->rhost);
	return 0;
}

/* A REQ_PROXY record (-P): what the PROXY header said, once, before any
 * login. From then on rhost is the client's address, checked and formatted
 * here. 0, or -1 (malformed). */
static int
take_proxy(struct session *s, const struct authreq *req)
{
	struct proxyinfo pi;
	char addr[INET6_ADDRSTRLEN];

	if (s->proxies == NULL || s->proxy_seen || req->datalen != sizeof(pi))
		return -1;
	memcpy(&pi, req->data, sizeof(pi));
	if (proxy_check(&pi, addr, sizeof(addr)) < 0)
		return -1;
	s->proxy_seen = 1;
	s->proxy_tls = (int)pi.tls;
	if (pi.command == PROXY_CLIENT) {
		snprintf(s->proxy_peer, sizeof(s->proxy_peer), "%s", s->rhost);
		snprintf(s->rhost, sizeof(s->rhost), "%s", addr);
		s->rport = pi.sport;
		s->proxied = 1;
	}
	return 0;
}

int
verify(struct session *s, const struct authreq *req, int *limit)
{
	int known, r;

	*limit = 0;
	if (!auth_valid_name(req->name))
		return -1;
	if (req->kind == REQ_APOP) {
		if (s->stamp[0] == '\0' || strlen(req->secret) != APOP_DIGEST_LEN ||
		    strspn(req->secret, "0123456789abcdefABCDEF") != APOP_DIGEST_LEN)
			return -1;
		r = auth_apop(s->userfile, req->name, req->secret, s->stamp, &s->who, &known);
	} else {
		r = auth_pass(&s->auth, s->userfile, req->name, req->secret, &s->who, &known);
	}
	if (r != AUTH_FAIL)
		return r;
	syslog(LOG_NOTICE, "auth failed user=%s rhost=%s", known ? req->name : "unknown",
	    s->rhost);
	if (s->fail_delay > 0)
		sleep((unsigned)s->fail_delay);
	if (++s->failures >= MAX_AUTH_FAILURES) {
		syslog(LOG_NOTICE, "auth limit rhost=%s failures=%d", s->rhost, s->failures);
		*limit = 1;
	}
	return AUTH_FAIL;
}

/* Open the maildrop with the user's rights, lock it as root, then become the
 * user for good: MD_* with a reason in err. */
static int
open_and_lock(struct session *s, char *err, size_t errlen)
{
	int r;

	if (auth_assume(&s->who, s->group, err, errlen) < 0)
		return MD_PERM;
	r = maildrop_open(&s->md, s->who.maildrop, err, errlen);
	if (auth_unassume(err, errlen) < 0)
		return MD_PERM;
	if (r == MD_OK)
		r = maildrop_lock(&s->md, s->lockdir, err, errlen);
	if (r == MD_OK && auth_become(&s->who, s->group, err, errlen) < 0)
		r = MD_PERM;
	return r;
}

int
login(struct session *s)
{
	char err[512], via[96] = "";
	size_t n;
	uint64_t octets;
	int r;

	auth_forget(&s->auth);
	end_signer(s);
	if (getuid() == 0)
		s->md.group = s->group;         /* dotlocks: see auth_group */
	err[0] = '\0';
	r = open_and_lock(s, err, sizeof(err));
	if (r == MD_OK)
		r = maildrop_load(&s->md, err, sizeof(err));
	if (r == MD_INUSE) {
		syslog(LOG_NOTICE, "in-use user=%s rhost=%s", s->who.name, s->rhost);
		reply(s, "-ERR [IN-USE] maildrop is locked by another session");
		return END;
	}
	if (r != MD_OK)
		return fatal(s, r == MD_PERM ? "SYS/PERM" : "SYS/TEMP", err);
	live_totals(s, &n, &octets);
	if (octets > MAX_MAILDROP_BYTES) {
		snprintf(err, sizeof(err), "maildrop holds %ju octets, over the limit "
		    "MAX_MAILDROP_BYTES (%ju)", (uintmax_t)octets, (uintmax_t)MAX_MAILDROP_BYTES);
		return fatal(s, "SYS/PERM", err);
	}
	s->state = S_TRANS;
	s->bad = 0;
	s->io.timeout = s->timeout;
	if (s->tlsinfo[0] == '\0' && s->proxy_tls)
		snprintf(s->tlsinfo, sizeof(s->tlsinfo), "proxy");
	if (s->proxied)
		snprintf(via, sizeof(via), " rport=%u proxy=%s", s->rport, s->proxy_peer);
	syslog(LOG_INFO, "login user=%s rhost=%s msgs=%zu octets=%ju%s%s%s", s->who.name, s->rhost,
	    n, (uintmax_t)octets, s->tlsinfo[0] != '\0' ? " tls=" : "", s->tlsinfo, via);
	if (s->md.um != NULL) {
		size_t c[4], displaced;

		uidlmap_counts(&s->md, c, &displaced);
		syslog(LOG_INFO, "uidl user=%s rhost=%s dovecot=%zu xuidl=%zu popa3d=%zu own=%zu "
		    "displaced=%zu", s->who.name, s->rhost, c[SRC_DOVECOT], c[SRC_XUIDL],
		    c[SRC_POPA3D], c[SRC_NONE], displaced);
	}
	reply(s, "+OK maildrop has %zu message%s (%ju octets)", n, n == 1 ? "" : "s",
	    (uintmax_t)octets);
	return GO_ON;
}

/* After a good login over TLS the pre-login process goes on as the relay:
 * the session talks to it, not to the client. The TLS description comes
 * from the (untrusted) pre-login process: only what fits a log field is
 * kept. */
static void
use_relay(struct session *s, const struct authreq *req, pid_t child)
{
	struct stat client, err2;
	size_t i;
	int nul, err_too;

	for (i = 0; i < sizeof(s->tlsinfo) - 1 && req->tls[i] != '\0'; i++)
		s->tlsinfo[i] = req->tls[i] == ' ' ? ':' :
		    req->tls[i] > 0x20 && req->tls[i] < 0x7f ? req->tls[i] : '?';
	s->tlsinfo[i] = '\0';
	s->relay = child;
	s->tls_active = 1;
	/* The client's socket is the relay's now: this process keeps none of
	 * it, only the socketpair; not as fd 2 either, which inetd and
	 * systemd's Accept=yes also make the socket. */
	err_too = fstat(s->io.in, &client) == 0 && fstat(STDERR_FILENO, &err2) == 0 &&
	    err2.st_dev == client.st_dev && err2.st_ino == client.st_ino;
	if ((nul = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
		dup2(nul, s->io.in);
		dup2(nul, s->io.out);
		if (err_too)
			dup2(nul, STDERR_FILENO);
		if (nul != s->io.in && nul != s->io.out && (nul != STDERR_FILENO || !err_too))
			close(nul);
	} else {
		close(s->io.in);
		close(s->io.out);
		if (err_too)
			close(STDERR_FILENO);
	}
	s->io.in = s->io.out = s->relayfd[0];
	s->io.out_is_socket = 1;
	s->relayfd[0] = -1;
}

int
monitor(struct session *s, int chan, pid_t child)
{
	struct authreq req;
	int r, left, limit = 0, status = 0, in = 0, relay = 0;

	for (;;) {
		/* The child's own alarm ends it in time; should it no longer
		 * (subverted), the monitor does, a little later. */
		left = (int)((prelogin_limit(s) + PRELOGIN_GRACE - elapsed(s)) * 1000);
		if (left <= 0 || !wait_chan(chan, left)) {
			syslog(LOG_WARNING, "error privsep: pre-login process outstayed its time "
			    "limit rhost=%s", s->rhost);
			kill(child, SIGKILL);
			break;
		}
		r = privsep_receive(chan, &req);
		if (r == 0)
			break;          /* the child is done: QUIT, timeout, failures */
		if (r == 1 && req.kind == REQ_PROXY) {
			if (take_proxy(s, &req) == 0) {
				explicit_bzero(&req, sizeof(req));
				if (privsep_answer(chan, ANS_OK) < 0)
					break;
				continue;
			}
			r = -1;
		} else if (r == 1 && req.kind == REQ_LOG) {
			r = log_for_prelogin(s, &req) < 0 ? -1 : AUTH_FAIL;
		} else if (r == 1 && s->proxies != NULL && !s->proxy_seen) {
			r = -1;         /* a login before the PROXY header's record */
		} else if (r == 1) {
			r = verify(s, &req, &limit);
		}
		if (r < 0) {
			syslog(LOG_ERR, "error privsep: malformed request from the pre-login "
			    "process rhost=%s", s->rhost);
			kill(child, SIGKILL);
			break;
		}
		if (privsep_answer(chan, r == AUTH_OK ? ANS_OK : r == AUTH_ERROR ? ANS_ERROR :
		    limit ? ANS_LIMIT : ANS_FAIL) < 0)
			r = AUTH_ERROR;
		if (r == AUTH_OK) {
			memcpy(s->io.ibuf, req.data, req.datalen);
			s->io.ilen = req.datalen;
			in = 1;
			relay = req.tls[0] != '\0' && s->relayfd[0] >= 0;
			if (relay)
				use_relay(s, &req, child);
		}
		explicit_bzero(&req, sizeof(req));
		if (r != AUTH_FAIL || limit) {
			/* The last answer: the child exits now (or, over TLS,
			 * becomes the relay), which closes the channel. Anything
			 * else on it, or nothing within the grace time, and the
			 * child is ended. */
			if (!(wait_chan(chan, PRELOGIN_GRACE * 1000) & POLLHUP)) {
				syslog(LOG_ERR, "error privsep: pre-login process went on after "
				    "its last answer rhost=%s", s->rhost);
				kill(child, SIGKILL);
				relay = in = 0;
			}
			break;
		}
	}
	close(chan);
	if (relay)
		return login(s);
	status = reap(s, child, PRELOGIN_GRACE * 1000,
	    "pre-login process did not exit after its channel closed");
	if (in && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return login(s);
	auth_forget(&s->auth);
	/* Log for the pre-login process, which cannot. */
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		syslog(LOG_NOTICE, "timeout user=- rhost=%s limit=%ds", s->rhost, prelogin_limit(s));
	else if (WIFEXITED(status) && WEXITSTATUS(status) == END_TIMEOUT)
		syslog(LOG_NOTICE, "timeout user=- rhost=%s", s->rhost);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == END_BAD)
		syslog(LOG_NOTICE, "bad commands user=- rhost=%s count=%d", s->rhost, MAX_BAD_AUTH);
	s->status = WIFEXITED(status) ? WEXITSTATUS(status) : END_ERROR;
	return END;
}

void
monitor_finish(struct session *s)
{
	end_signer(s);
	if (s->relay > 0) {
		/* The relay ends when the session's end of the socketpair
		 * closes, once it has passed on what was left, or when the
		 * client has taken nothing for -t seconds (relay.c): it is
		 * waited for, not killed after a grace time, which would cut off
		 * a slow reader's last message after its DELE was committed (a
		 * review found it). The maildrop is already unlocked, and this
		 * process, the user's now, could not signal it anyway. */
		shutdown(s->io.out, SHUT_RDWR);
		close(s->io.out);
		while (waitpid(s->relay, NULL, 0) < 0 && errno == EINTR)
			;
		s->relay = 0;
	}
}
