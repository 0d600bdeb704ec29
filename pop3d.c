/*
 * pop3d.c - one POP3 session (RFC 1939, 2449, 3206) on the connection a
 * super-server hands over: the options, the AUTHORIZATION and TRANSACTION
 * states, and a command table with one small function per command. UPDATE
 * happens in QUIT; any other end of the session deletes nothing.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "auth.h"
#include "config.h"
#include "cryptlib.h"
#include "io.h"
#include "maildrop.h"
#include "privsep.h"
#include "relay.h"
#include "sandbox.h"
#include "session.h"
#include "signer.h"
#include "tls.h"
#include "tlsmod.h"
#include "uidlsrc.h"

void
reply(struct session *s, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = sizeof(line) - 3;
	memcpy(line + n, "\r\n", 2);
	io_put(&s->io, line, (size_t)n + 2);
}

/* A -ERR for the client's own mistake: counted towards the bad-command limit. */
static void
refuse(struct session *s, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	reply(s, "%s", line);
	s->bad++;
}

void
live_totals(const struct session *s, size_t *n, uint64_t *octets)
{
	size_t i;

	*n = 0;
	*octets = 0;
	for (i = 0; i < s->md.count; i++)
		if (!s->md.msgs[i].deleted) {
			(*n)++;
			*octets = s->md.msgs[i].size > UINT64_MAX - *octets ? UINT64_MAX :
			    *octets + s->md.msgs[i].size;
		}
}

/* The message an argument names, or NULL after answering -ERR. */
static struct msg *
message(struct session *s, const char *arg, size_t *index)
{
	unsigned long n;

	if (parse_msgno(arg, s->md.count, &n) < 0) {
		refuse(s, "-ERR no such message");
		return NULL;
	}
	if (s->md.msgs[n - 1].deleted) {
		refuse(s, "-ERR message %lu is deleted", n);
		return NULL;
	}
	*index = n - 1;
	return &s->md.msgs[n - 1];
}

static int
args_ok(struct session *s, int argc, int min, int max)
{
	if (argc < min || argc > max) {
		refuse(s, argc < min ? "-ERR missing argument" : "-ERR too many arguments");
		return 0;
	}
	return 1;
}

/* ---- AUTHORIZATION ---- */

double
elapsed(const struct session *s)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - s->started.tv_sec) +
	    (double)(now.tv_nsec - s->started.tv_nsec) / 1e9;
}

/* Seconds a connection has to log in (the pre-login process's alarm). */
int
prelogin_limit(const struct session *s)
{
	return s->io.timeout > MAX_PRELOGIN_SECONDS ? s->io.timeout : MAX_PRELOGIN_SECONDS;
}

/* ---- TLS, in the pre-login process ---- */

static int
tls_configured(const struct session *s)
{
	return s->certfile != NULL;
}

/* USER, PASS, APOP and AUTH: over TLS, or without TLS configured, or with
 * -p; else the client must STLS first (RFC 2595). */
static int
login_allowed(const struct session *s)
{
	return !tls_configured(s) || s->tls_active || s->proxy_tls || s->allow_plain;
}

/* A line for the monitor to log ("error WHAT: TEXT", WHAT tls or proxy): the
 * pre-login process has no syslog. Without a monitor (fuzzing) it is dropped. */
static void
prelogin_report(struct session *s, const char *what, const char *text)
{
	struct authreq req;

	if (s->chan < 0)
		return;
	memset(&req, 0, sizeof(req));
	req.kind = REQ_LOG;
	req.datalen = (uint32_t)snprintf(req.data, sizeof(req.data), "%s: %.180s", what, text);
	(void)privsep_ask(s->chan, &req);
}

#ifdef HAVE_TLS
static void
tls_report(struct session *s, const char *text)
{
	prelogin_report(s, "tls", text);
}

/* Has the signer loaded the key? It says so once, at its start (an answer
 * of length 0); a signer that could not has logged why and gone. */
static int
signer_ready(struct session *s)
{
	struct signans ans;
	struct pollfd p = { .fd = s->signfd, .events = POLLIN };
	ssize_t n = -1;

	if (s->signfd < 0)
		return 0;
	if (poll(&p, 1, s->io.timeout * 1000) == 1)
		n = recv(s->signfd, &ans, sizeof(ans), 0);
	if (n != (ssize_t)sizeof(ans) || ans.len != 0) {
		s->tls_unusable = 1;
		return 0;
	}
	return 1;
}

/* The handshake (after STLS, or first thing with -s). 0, or -1 (reported). */
static int
start_tls(struct session *s)
{
	char err[256], why[300];

	switch (tls_accept(s->tls, s->io.in, s->io.timeout, err, sizeof(err))) {
	case 0:
		break;
	case -2:
		return -1;              /* a probe that sent nothing: not logged */
	default:
		snprintf(why, sizeof(why), "handshake: %s", err);
		tls_report(s, why);
		return -1;
	}
	tls_signer_done(s->tls);        /* the key is needed no more */
	s->signfd = -1;
	s->tls_active = 1;
	s->io.tls = s->tls;
	s->user[0] = '\0';
	return 0;
}
#endif

/* STLS (RFC 2595): whatever the client sent after it in clear is dropped
 * unread, and the session starts afresh over TLS. */
static int
cmd_stls(struct session *s, int argc, char **argv)
{
	(void)argv;
	if (!args_ok(s, argc, 0, 0))
		return GO_ON;
	if (!tls_configured(s)) {
		refuse(s, "-ERR unknown command");
		return GO_ON;
	}
	if (s->tls_active || s->proxy_tls) {
		refuse(s, "-ERR TLS is already active");
		return GO_ON;
	}
#ifdef HAVE_TLS
	if (s->tls == NULL || s->tls_unusable || !signer_ready(s)) {
		reply(s, "-ERR [SYS/TEMP] TLS is not available, try again later");
		return GO_ON;
	}
	reply(s, "+OK begin TLS negotiation");
	io_flush(&s->io);
	io_discard(&s->io);             /* nothing sent in clear is kept (CVE-2011-0411) */
	if (start_tls(s) < 0) {
		s->status = END_TLS;
		return END;
	}
	return GO_ON;
#else
	return GO_ON;
#endif
}

/* The pre-login process's half: ask the monitor (or, without a monitor,
 * check here), then answer the client. On success the pre-login process
 * ends, or after a login over TLS becomes the relay, and the monitor goes
 * on with the session. */
static int
attempt(struct session *s, struct authreq *req)
{
	int r, limit = 0;

	s->user[0] = '\0';              /* a new attempt starts with USER */
	if (s->chan >= 0) {
		io_flush(&s->io);       /* earlier replies go out first */
		req->datalen = (uint32_t)io_buffered(&s->io);
		memcpy(req->data, s->io.ibuf + s->io.ipos, req->datalen);
#ifdef HAVE_TLS
		if (s->tls_active)
			req->tlslen = (uint32_t)strlen(tls_describe(s->tls, req->tls,
			    sizeof(req->tls)));
#endif
		r = privsep_ask(s->chan, req);
		explicit_bzero(req, sizeof(*req));
		if (r == ANS_OK) {
#ifdef HAVE_TLS
			if (s->tls_active) {
				io_discard(&s->io);     /* the monitor took it */
				if (s->cmdline != NULL) /* PASS or AUTH PLAIN, with the password */
					explicit_bzero(s->cmdline, MAX_LINE);
				close(s->chan);
				alarm(0);
				relay_run(s->tls, s->relayfd[1], s->timeout);
			}
#endif
			_exit(0);
		}
		limit = r == ANS_LIMIT;
		r = r == ANS_FAIL || r == ANS_LIMIT ? AUTH_FAIL : AUTH_ERROR;
	} else {
		r = verify(s, req, &limit);
		explicit_bzero(req, sizeof(*req));
		if (r == AUTH_OK)
			return login(s);
	}
	if (r == AUTH_FAIL) {
		reply(s, "-ERR [AUTH] invalid user name or password");
		return limit ? END : GO_ON;
	}
	reply(s, "-ERR [SYS/TEMP] cannot check credentials, try again later");
	return END;
}

static void
request(struct authreq *req, int kind, const char *name, const char *secret)
{
	memset(req, 0, sizeof(*req));
	req->kind = (uint32_t)kind;
	req->namelen = (uint32_t)snprintf(req->name, sizeof(req->name), "%s", name);
	req->secretlen = (uint32_t)snprintf(req->secret, sizeof(req->secret), "%s", secret);
}

/* A login command on a connection that must STLS first: refused (and counted
 * as a bad command), with a text that says so. */
static int
needs_tls(struct session *s)
{
	if (login_allowed(s))
		return 0;
	refuse(s, "-ERR [AUTH] TLS required: use STLS first");
	return 1;
}

static int
cmd_user(struct session *s, int argc, char **argv)
{
	if (needs_tls(s) || !args_ok(s, argc, 1, 1))
		return GO_ON;
	if (!auth_valid_name(argv[0])) {
		refuse(s, "-ERR invalid user name");
		return GO_ON;
	}
	snprintf(s->user, sizeof(s->user), "%s", argv[0]);
	reply(s, "+OK");
	return GO_ON;
}

/* PASS takes the rest of the line as it is: a password may hold spaces. */
static int
cmd_pass(struct session *s, const char *pass)
{
	struct authreq req;

	if (needs_tls(s))
		return GO_ON;
	if (s->user[0] == '\0') {
		refuse(s, "-ERR USER first");
		return GO_ON;
	}
	request(&req, REQ_PASS, s->user, pass);
	return attempt(s, &req);
}

static int
cmd_apop(struct session *s, int argc, char **argv)
{
	struct authreq req;

	if (needs_tls(s))
		return GO_ON;
	if (s->stamp[0] == '\0') {
		refuse(s, "-ERR APOP not available");
		return GO_ON;
	}
	if (!args_ok(s, argc, 2, 2))
		return GO_ON;
	if (!auth_valid_name(argv[0]) || strlen(argv[1]) != APOP_DIGEST_LEN ||
	    strspn(argv[1], "0123456789abcdefABCDEF") != APOP_DIGEST_LEN) {
		refuse(s, "-ERR invalid arguments");
		return GO_ON;
	}
	request(&req, REQ_APOP, argv[0], argv[1]);
	return attempt(s, &req);
}

/* The SASL PLAIN message (RFC 4616), base64-decoded into m: authzid NUL
 * authcid NUL password. The authorization identity must be empty or the
 * authentication one (no proxy logins). 0 with the parts in req, or -1. */
static int
plain_request(struct authreq *req, unsigned char *m, size_t len)
{
	const unsigned char *z = memchr(m, '\0', len), *c, *w;
	char name[MAX_NAME + 1], pass[MAX_LINE - 6];
	size_t zl, cl, wl;
	int r = -1;

	if (z == NULL || (c = memchr(z + 1, '\0', len - (size_t)(z + 1 - m))) == NULL)
		return -1;
	zl = (size_t)(z - m);
	cl = (size_t)(c - (z + 1));
	w = c + 1;
	wl = len - (size_t)(w - m);
	if (cl == 0 || cl > MAX_NAME || wl == 0 || wl >= sizeof(pass) ||
	    memchr(w, '\0', wl) != NULL || (zl != 0 && (zl != cl || memcmp(m, z + 1, cl) != 0)))
		return -1;
	memcpy(name, z + 1, cl);
	name[cl] = '\0';
	memcpy(pass, w, wl);
	pass[wl] = '\0';
	if (auth_valid_name(name)) {
		request(req, REQ_PASS, name, pass);
		r = 0;
	}
	explicit_bzero(pass, sizeof(pass));
	return r;
}

/* AUTH (RFC 5034) with PLAIN (RFC 4616), with or without an initial
 * response ("=" is an empty one); "*" cancels. Then as USER/PASS: the same
 * failures, delays, timing and log lines. Bare AUTH lists the mechanisms. */
static int
cmd_auth(struct session *s, int argc, char **argv)
{
	char line[MAX_SASL_LINE];
	unsigned char m[MAX_SASL_LINE];
	struct authreq req;
	size_t len;
	int r, n;

	if (needs_tls(s) || !args_ok(s, argc, 0, 2))
		return GO_ON;
	if (argc == 0) {
		reply(s, "+OK");
		reply(s, "PLAIN");
		reply(s, ".");
		return GO_ON;
	}
	if (strcasecmp(argv[0], "PLAIN") != 0) {
		refuse(s, "-ERR unsupported authentication mechanism");
		return GO_ON;
	}
	if (argc == 2) {
		n = strcmp(argv[1], "=") == 0 ? 0 : io_base64(argv[1], m, sizeof(m));
	} else {
		reply(s, "+ ");
		r = io_getline_max(&s->io, line, sizeof(line), &len);
		if (r == IO_TIMEOUT || r == IO_EOF || r == IO_ERROR) {
			s->status = r == IO_TIMEOUT ? END_TIMEOUT : END_DROP;
			return END;
		}
		if (r == IO_LINE && strcmp(line, "*") == 0) {
			refuse(s, "-ERR authentication cancelled");
			return GO_ON;
		}
		n = r == IO_LINE ? io_base64(line, m, sizeof(m)) : -1;
		explicit_bzero(line, sizeof(line));
	}
	r = n >= 0 ? plain_request(&req, m, (size_t)n) : -1;
	explicit_bzero(m, sizeof(m));
	if (r < 0) {
		refuse(s, "-ERR invalid SASL PLAIN response");
		return GO_ON;
	}
	return attempt(s, &req);
}

/* ---- both states ---- */

static int
cmd_capa(struct session *s, int argc, char **argv)
{
	(void)argv;
	if (!args_ok(s, argc, 0, 0))
		return GO_ON;
	reply(s, "+OK Capability list follows");
	reply(s, "TOP");
	reply(s, "UIDL");
	if (tls_configured(s) && !s->tls_active && !s->proxy_tls && s->state == S_AUTH)
		reply(s, "STLS");
	if (login_allowed(s)) {
		reply(s, "USER");
		reply(s, "SASL PLAIN");
	}
	reply(s, "RESP-CODES");
	reply(s, "AUTH-RESP-CODE");
	reply(s, "PIPELINING");
	reply(s, "EXPIRE NEVER");
	reply(s, "IMPLEMENTATION pop3d");
	reply(s, ".");
	return GO_ON;
}

static int
cmd_quit(struct session *s, int argc, char **argv)
{
	char err[512];
	size_t kept;
	uint64_t octets;

	(void)argv;
	if (!args_ok(s, argc, 0, 0))
		return GO_ON;
	if (s->state == S_AUTH) {
		reply(s, "+OK pop3d signing off");
		s->status = END_QUIT;
		return END;
	}
	err[0] = '\0';
	if (maildrop_update(&s->md, err, sizeof(err)) != MD_OK) {
		syslog(LOG_ERR, "error user=%s rhost=%s: %s", s->who.name, s->rhost, err);
		if (s->md.not_removed > 0)
			reply(s, "-ERR [SYS/TEMP] update failed: %zu deleted messages not removed",
			    s->md.not_removed);
		else
			reply(s, "-ERR [SYS/TEMP] messages deleted, but not confirmed on disk");
		maildrop_close(&s->md);
		return END;
	}
	if (err[0] != '\0')
		syslog(LOG_WARNING, "warning user=%s rhost=%s: %s", s->who.name, s->rhost, err);
	live_totals(s, &kept, &octets);
	maildrop_close(&s->md);         /* durable: now others may lock it */
	syslog(LOG_INFO, "logout user=%s rhost=%s retr=%lu dele=%lu kept=%zu octets_sent=%ju "
	    "duration=%.2f", s->who.name, s->rhost, s->retr, s->dele, kept,
	    (uintmax_t)s->io.sent, elapsed(s));
	reply(s, "+OK pop3d signing off (%zu message%s left)", kept, kept == 1 ? "" : "s");
	s->status = END_QUIT;
	return END;
}

/* ---- TRANSACTION ---- */

static int
cmd_stat(struct session *s, int argc, char **argv)
{
	size_t n;
	uint64_t octets;

	(void)argv;
	if (!args_ok(s, argc, 0, 0))
		return GO_ON;
	live_totals(s, &n, &octets);
	reply(s, "+OK %zu %ju", n, (uintmax_t)octets);
	return GO_ON;
}

static int
cmd_list(struct session *s, int argc, char **argv)
{
	struct msg *m;
	size_t i, n;
	uint64_t octets;

	if (!args_ok(s, argc, 0, 1))
		return GO_ON;
	if (argc == 1) {
		if ((m = message(s, argv[0], &i)) != NULL)
			reply(s, "+OK %zu %ju", i + 1, (uintmax_t)m->size);
		return GO_ON;
	}
	live_totals(s, &n, &octets);
	reply(s, "+OK %zu message%s (%ju octets)", n, n == 1 ? "" : "s", (uintmax_t)octets);
	for (i = 0; i < s->md.count; i++)
		if (!s->md.msgs[i].deleted)
			reply(s, "%zu %ju", i + 1, (uintmax_t)s->md.msgs[i].size);
	reply(s, ".");
	return GO_ON;
}

static int
cmd_uidl(struct session *s, int argc, char **argv)
{
	char uid[UIDL_LEN];
	size_t i;

	if (!args_ok(s, argc, 0, 1))
		return GO_ON;
	if (argc == 1) {
		if (message(s, argv[0], &i) != NULL) {
			maildrop_uidl(&s->md, i, uid);
			reply(s, "+OK %zu %s", i + 1, uid);
		}
		return GO_ON;
	}
	reply(s, "+OK unique-id listing follows");
	for (i = 0; i < s->md.count; i++)
		if (!s->md.msgs[i].deleted) {
			maildrop_uidl(&s->md, i, uid);
			reply(s, "%zu %s", i + 1, uid);
		}
	reply(s, ".");
	return GO_ON;
}

/* RETR and TOP, after the "+OK" line in first. A message that cannot be
 * sent whole and as loaded ends the session without the final ".", so the
 * client never takes stale or partial data for a message. */
static int
send_message(struct session *s, size_t i, long lines, const char *first)
{
	char err[512];
	int r = maildrop_open_msg(&s->md, i, lines < 0, err, sizeof(err));

	if (r != MD_OK) {
		syslog(LOG_WARNING, "warning user=%s rhost=%s: %s", s->who.name, s->rhost, err);
		if (r == MD_GONE)
			reply(s, "-ERR message %zu was removed by another program", i + 1);
		else if (r == MD_PERM)
			reply(s, "-ERR [SYS/PERM] message %zu cannot be served, ask your "
			    "administrator", i + 1);
		else
			reply(s, "-ERR [SYS/TEMP] maildrop changed by another program, try later");
		return GO_ON;
	}
	reply(s, "%s", first);
	if (maildrop_send(&s->md, i, lines, &s->io, err, sizeof(err)) < 0) {
		if (!s->io.failed)
			syslog(LOG_ERR, "error user=%s rhost=%s: %s", s->who.name, s->rhost, err);
		return END;
	}
	reply(s, ".");
	return GO_ON;
}

static int
cmd_retr(struct session *s, int argc, char **argv)
{
	char first[64];
	struct msg *m;
	size_t i;

	if (!args_ok(s, argc, 1, 1) || (m = message(s, argv[0], &i)) == NULL)
		return GO_ON;
	snprintf(first, sizeof(first), "+OK %ju octets", (uintmax_t)m->size);
	if (send_message(s, i, -1, first) != GO_ON)
		return END;
	m->seen = 1;
	s->retr++;
	return GO_ON;
}

static int
cmd_top(struct session *s, int argc, char **argv)
{
	unsigned long k;
	size_t i;

	if (!args_ok(s, argc, 2, 2) || message(s, argv[0], &i) == NULL)
		return GO_ON;
	if (parse_count(argv[1], &k) < 0) {
		refuse(s, "-ERR invalid line count");
		return GO_ON;
	}
	return send_message(s, i, k > (unsigned long)LONG_MAX ? LONG_MAX : (long)k,
	    "+OK top of message follows");
}

static int
cmd_dele(struct session *s, int argc, char **argv)
{
	struct msg *m;
	size_t i;

	if (!args_ok(s, argc, 1, 1) || (m = message(s, argv[0], &i)) == NULL)
		return GO_ON;
	m->deleted = 1;
	s->dele++;
	reply(s, "+OK message %zu deleted", i + 1);
	return GO_ON;
}

static int
cmd_rset(struct session *s, int argc, char **argv)
{
	size_t i, n;
	uint64_t octets;

	(void)argv;
	if (!args_ok(s, argc, 0, 0))
		return GO_ON;
	for (i = 0; i < s->md.count; i++)
		s->md.msgs[i].deleted = 0;
	s->dele = 0;
	live_totals(s, &n, &octets);
	reply(s, "+OK maildrop has %zu message%s (%ju octets)", n, n == 1 ? "" : "s",
	    (uintmax_t)octets);
	return GO_ON;
}

static int
cmd_noop(struct session *s, int argc, char **argv)
{
	(void)argv;
	if (args_ok(s, argc, 0, 0))
		reply(s, "+OK");
	return GO_ON;
}

static const struct command {
	const char *name;
	int states;
	int (*run)(struct session *, int argc, char **argv);
} commands[] = {
	{ "CAPA", S_AUTH | S_TRANS, cmd_capa },
	{ "USER", S_AUTH, cmd_user },
	{ "PASS", S_AUTH, NULL },       /* takes the raw rest of the line: cmd_pass */
	{ "APOP", S_AUTH, cmd_apop },
	{ "AUTH", S_AUTH, cmd_auth },
	{ "STLS", S_AUTH, cmd_stls },
	{ "QUIT", S_AUTH | S_TRANS, cmd_quit },
	{ "STAT", S_TRANS, cmd_stat },
	{ "LIST", S_TRANS, cmd_list },
	{ "UIDL", S_TRANS, cmd_uidl },
	{ "RETR", S_TRANS, cmd_retr },
	{ "TOP", S_TRANS, cmd_top },
	{ "DELE", S_TRANS, cmd_dele },
	{ "RSET", S_TRANS, cmd_rset },
	{ "NOOP", S_TRANS, cmd_noop },
};

static int
dispatch(struct session *s, char *line)
{
	char *rest = strchr(line, ' '), *argv[MAX_ARGS];
	const struct command *c = NULL;
	size_t i;
	int argc;

	if (rest != NULL)
		*rest++ = '\0';
	else
		rest = line + strlen(line);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcasecmp(line, commands[i].name) == 0)
			c = &commands[i];
	if (c == NULL) {
		refuse(s, "-ERR unknown command");
		return GO_ON;
	}
	if (!(c->states & s->state)) {
		refuse(s, "-ERR %s not allowed %s", c->name,
		    s->state == S_AUTH ? "before login" : "after login");
		return GO_ON;
	}
	if (c->run == NULL)
		return cmd_pass(s, rest);
	if ((argc = io_split(rest, argv, MAX_ARGS)) < 0) {
		refuse(s, "-ERR too many arguments");
		return GO_ON;
	}
	return c->run(s, argc, argv);
}

static void
session_loop(struct session *s)
{
	char line[MAX_LINE];
	size_t len;
	int before;

	s->cmdline = line;
	for (;;) {
		switch (io_getline(&s->io, line, &len)) {
		case IO_LINE:
			before = s->bad;
			if (dispatch(s, line) == END)
				return;
			if (s->bad == before)
				s->bad = 0;     /* only consecutive mistakes count */
			break;
		case IO_TOOLONG:
			refuse(s, "-ERR line too long");
			break;
		case IO_NUL:
			refuse(s, "-ERR NUL octet in command");
			break;
		case IO_TIMEOUT:
			if (s->state == S_TRANS)
				syslog(LOG_NOTICE, "timeout user=%s rhost=%s", s->who.name, s->rhost);
			reply(s, "-ERR autologout: idle for too long");
			s->status = END_TIMEOUT;
			return;
		default:                /* the client went away */
			if (s->state == S_TRANS)
				syslog(LOG_NOTICE, "drop user=%s rhost=%s retr=%lu",
				    s->who.name, s->rhost, s->retr);
			s->status = END_DROP;
			return;
		}
		explicit_bzero(line, sizeof(line));
		if (s->io.failed)
			return;
		if (s->bad >= (s->state == S_AUTH ? MAX_BAD_AUTH : MAX_BAD_COMMANDS)) {
			if (s->state == S_TRANS)
				syslog(LOG_NOTICE, "bad commands user=%s rhost=%s count=%d",
				    s->who.name, s->rhost, s->bad);
			reply(s, "-ERR too many bad commands");
			s->status = END_BAD;
			return;
		}
	}
}

/* ---- start-up ---- */

static void
client_fds(int *in, int *out)
{
	struct stat st;
	int listen3 = 0;

	*in = 0;
	*out = 1;
	if (fstat(0, &st) == 0 && S_ISSOCK(st.st_mode))
		return;                 /* inetd style */
#ifdef HAVE_SYSTEMD
	listen3 = sd_listen_fds(0) == 1 &&
	    sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, -1) > 0;
#else
	{
		const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");

		listen3 = pid != NULL && fds != NULL && strtol(pid, NULL, 10) == getpid() &&
		    strcmp(fds, "1") == 0 && fstat(3, &st) == 0 && S_ISSOCK(st.st_mode);
	}
#endif
	if (listen3)
		*in = *out = 3;
}

/* The client's address into out ("local" when there is none). -1 when fd
 * is a socket whose peer is already gone (a probe that connected and left). */
static int
peer_name(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	const char *env;

	snprintf(out, len, "local");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len);
		} else if (ss.ss_family == AF_INET6) {
			struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;

			if (IN6_IS_ADDR_V4MAPPED(a))
				inet_ntop(AF_INET, a->s6_addr + 12, out, (socklen_t)len);
			else
				inet_ntop(AF_INET6, a, out, (socklen_t)len);
		}
		return 0;
	}
	if (errno == ENOTCONN)
		return -1;
	env = getenv("REMOTE_ADDR");
	if (env != NULL && env[0] != '\0' && strlen(env) < len &&
	    strspn(env, "0123456789abcdefABCDEF.:") == strlen(env))
		snprintf(out, len, "%s", env);
	return 0;
}

/* A fresh, unpredictable APOP timestamp: <random.pid@host>. */
static int
make_stamp(char *out, size_t len)
{
	unsigned char r[16];
	char host[64], hex[33];
	size_t i;

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -1;
	for (i = 0; i < sizeof(r); i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	for (i = 0; host[i] != '\0'; i++)
		if (strchr("<>@ \t", host[i]) != NULL || host[i] < 0x21 || host[i] > 0x7e)
			host[i] = '_';
	snprintf(out, len, "<%s.%ld@%s>", hex, (long)getpid(), host);
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: pop3d [-Aehnps] [-c certfile -k keyfile] [-D seconds] [-f userfile] "
	    "[-g group] [-l statedir] [-P proxies] [-t seconds] [-T seconds] [-u user]\n"
	    "             [-U sources] [-V]\n"
	    "  -A          never offer APOP (no timestamp in the greeting)\n"
	    "  -c file     TLS certificate chain, PEM, leaf first (with -k)\n"
	    "  -D seconds  delay before answering a failed login (default %d)\n"
	    "  -e          also log to stderr (default: only when it is a terminal)\n"
	    "  -f file     user file (default %s)\n"
	    "  -g group    the group dotlocks are made with in the spool\n"
	    "  -k file     TLS private key, PEM (with -c)\n"
	    "  -l dir      state directory: session locks, mbox journals, -U records (default %s)\n"
	    "  -n          no dotlocks (<mbox>.lock); fcntl locks only\n"
	    "  -p          allow logins without TLS although TLS is configured\n"
	    "  -P list     trusted proxies (addresses, CIDR prefixes): every connection\n"
	    "              starts with a PROXY protocol header from one of them\n"
	    "  -s          TLS from the first octet (POP3S, port 995)\n"
	    "  -u user     unprivileged user for the pre-login process (default %s)\n"
	    "  -t seconds  idle timeout after login (default %d)\n"
	    "  -T seconds  idle timeout before login (default %d)\n"
	    "  -U sources  UIDLs to keep from the server this one replaces, in order, comma-\n"
	    "              separated: dovecot (a Maildir's dovecot-uidlist), xuidl (X-UIDL\n"
	    "              header fields, recorded at the first session), popa3d (an mbox\n"
	    "              served by popa3d 1.0); default none: pop3d's own UIDLs\n"
	    "  -h          this help\n"
	    "  -V          print the version\n",
	    DEFAULT_FAIL_DELAY, DEFAULT_USERFILE, DEFAULT_LOCKDIR, DEFAULT_PRELOGIN_USER,
	    DEFAULT_TIMEOUT, DEFAULT_AUTH_TIMEOUT);
}

static int
number(const char *arg, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* A group from /etc/group itself (no NSS modules in the session process),
 * or (gid_t)-1. */
static gid_t
system_group(const char *name)
{
	struct group *gr;
	gid_t gid = (gid_t)-1;
	FILE *f = fopen("/etc/group", "re");

	if (f == NULL)
		return gid;
	while (gid == (gid_t)-1 && (gr = fgetgrent(f)) != NULL)
		if (strcmp(gr->gr_name, name) == 0)
			gid = gr->gr_gid;
	fclose(f);
	return gid;
}

/* Parse the options; NULL, or what is wrong with them. */
static const char *
options(int argc, char **argv, struct session *s, int *no_apop, int *log_stderr)
{
	static struct proxylist proxies;
	static char perr[200], uerr[200];
	int c;

	opterr = 0;                     /* getopt must not write to fd 2 */
	while ((c = getopt(argc, argv, ":Ac:D:ef:g:hk:l:nP:pst:T:u:U:V")) != -1) {
		switch (c) {
		case 'A':
			*no_apop = 1;
			break;
		case 'c':
			s->certfile = optarg;
			break;
		case 'k':
			s->keyfile = optarg;
			break;
		case 'p':
			s->allow_plain = 1;
			break;
		case 'P':
			if (proxy_list_parse(optarg, &proxies, perr, sizeof(perr)) < 0)
				return perr;
			s->proxies = &proxies;
			break;
		case 's':
			s->implicit_tls = 1;
			break;
		case 'D':
			if (number(optarg, 0, MAX_FAIL_DELAY, &s->fail_delay) < 0)
				return "invalid -D value";
			break;
		case 'e':
			*log_stderr = 1;
			break;
		case 'f':
			s->userfile = optarg;
			break;
		case 'g':
			if ((s->group = system_group(optarg)) == (gid_t)-1 || s->group == 0)
				return "-g: no such group in /etc/group, or group 0";
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'l':
			s->lockdir = optarg;
			break;
		case 'n':
			s->md.dotlock = 0;
			break;
		case 't':
			if (number(optarg, 1, MAX_TIMEOUT, &s->timeout) < 0)
				return "invalid -t value";
			break;
		case 'T':
			if (number(optarg, 1, MAX_TIMEOUT, &s->io.timeout) < 0)
				return "invalid -T value";
			break;
		case 'u':
			s->prelogin_user = optarg;
			s->prelogin_user_given = 1;
			break;
		case 'U':
			if (uidl_sources_parse(optarg, s->md.sources, &s->md.nsources, uerr,
			    sizeof(uerr)) < 0)
				return uerr;
			break;
		case 'V':
			printf("pop3d %s\ncrypt: %s (%s)\n", POP3D_VERSION, CRYPT_BACKEND,
			    CRYPT_SCHEMES);
			exit(0);
		case ':':
			return "option needs an argument";
		default:
			return "unknown option";
		}
	}
	if (optind != argc)
		return "unexpected argument";
	if ((s->certfile == NULL) != (s->keyfile == NULL))
		return "-c and -k go together";
	if ((s->implicit_tls || s->allow_plain) && s->certfile == NULL)
		return "-s and -p need -c and -k";
#ifndef HAVE_TLS
	if (s->certfile != NULL)
		return "TLS options, but pop3d was built without TLS (TLS=no)";
#endif
	return NULL;
}

/* The key file must be a regular file of root's or the running user's that
 * others may not read (group-readable is fine: Debian's ssl-cert); it is not
 * read here: only the signer ever reads it. NULL, or what is wrong. One that
 * cannot be found is the signer's to report, per connection. */
static const char *
key_unsafe(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return NULL;
	if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (st.st_mode & S_IRWXO))
		return "-k: the key file must be a regular file of root's or the running user's, "
		    "with no access for others";
	return NULL;
}

/* With TLS configured: NULL when the TLS module is there and safe to load,
 * else why not (in buf). */
static const char *
module_unsafe(char *buf, size_t len)
{
#ifdef HAVE_TLS
	char path[PATH_MAX + 8], real[PATH_MAX];
	const char *why = tlsmod_unsafe(tlsmod_path(path, sizeof(path)), real);

	if (why == NULL)
		return NULL;
	snprintf(buf, len, "%.300s: %s", path, why);
	return buf;
#else
	(void)buf;
	(void)len;
	return NULL;
#endif
}

#ifdef HAVE_TLS
/* The certificate chain into s->cert: read afresh by every connection, so a
 * renewed certificate takes effect at the next one. 0, or -1 (logged). */
static int
read_cert(struct session *s)
{
	struct stat st;
	ssize_t n;
	int fd = open(s->certfile, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size <= 0 || st.st_size >= MAX_CERT_FILE ||
	    (s->cert = malloc((size_t)st.st_size + 1)) == NULL) {
		syslog(LOG_ERR, "error tls: certificate %s: %s rhost=%s", s->certfile,
		    fd < 0 ? strerror(errno) : "not a regular file of 1 to MAX_CERT_FILE octets",
		    s->rhost);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	do
		n = read(fd, s->cert, (size_t)st.st_size);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n != st.st_size) {
		syslog(LOG_ERR, "error tls: certificate %s: short read rhost=%s", s->certfile,
		    s->rhost);
		free(s->cert);
		s->cert = NULL;
		return -1;
	}
	s->certlen = (size_t)n;
	s->cert[n] = '\0';
	return 0;
}
#endif

/* A configuration error: tell the client and syslog, then stop. */
static int
startup_error(struct session *s, const char *what)
{
	syslog(LOG_ERR, "error config: %s", what);
	reply(s, "-ERR [SYS/PERM] server configuration error");
	io_flush(&s->io);
	return 1;
}

static void
session_init(struct session *s, int in, int out)
{
	memset(s, 0, sizeof(*s) - sizeof(s->io));
	io_init(&s->io, in, out, DEFAULT_AUTH_TIMEOUT);
	s->state = S_AUTH;
	s->status = END_ERROR;
	s->userfile = DEFAULT_USERFILE;
	s->lockdir = DEFAULT_LOCKDIR;
	s->timeout = DEFAULT_TIMEOUT;
	s->fail_delay = DEFAULT_FAIL_DELAY;
	s->group = (gid_t)-1;
	s->prelogin_user = DEFAULT_PRELOGIN_USER;
	s->chan = -1;
	s->signfd = -1;
	s->relayfd[0] = s->relayfd[1] = -1;
	clock_gettime(CLOCK_MONOTONIC, &s->started);
	maildrop_init(&s->md);
}

/* With -c and -k: the certificate, the signer and the relay's socketpair,
 * before the pre-login process is started. A certificate or key that cannot
 * be used is logged and leaves TLS unusable for this connection (STLS gets
 * -ERR [SYS/TEMP], a POP3S connection closes). */
static void
tls_setup(struct session *s, const struct prelogin *pl)
{
#ifdef HAVE_TLS
	struct signer sg = { s->keyfile, s->certfile, NULL, 0, s->rhost,
	    prelogin_limit(s) + PRELOGIN_GRACE, pl->active, pl->uid, pl->gid };
	char err[256];

	if (read_cert(s) < 0) {
		s->tls_unusable = 1;
		return;
	}
	sg.cert = s->cert;
	sg.certlen = s->certlen;
	if ((s->signer = privsep_signer(&sg, &s->signfd, err, sizeof(err))) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->relayfd) < 0) {
		syslog(LOG_ERR, "error tls: %s rhost=%s", s->signer < 0 ? err : strerror(errno),
		    s->rhost);
		s->tls_unusable = 1;
	}
	if (s->signer < 0)
		s->signer = 0;
#else
	(void)s;
	(void)pl;
#endif
}

/* With -P: the PROXY header, read octet-exact before anything else (before
 * the TLS handshake too), within the pre-login timeout; what it says goes to
 * the monitor, which checks it and logs with the client's address from then
 * on. 0, or -1 (reported). */
static int
proxy_header(struct session *s)
{
	struct proxyinfo pi;
	struct authreq req;
	char err[200];

	switch (proxy_read(s->io.in, s->io.timeout, &pi, err, sizeof(err))) {
	case 0:
		break;
	case -2:
		return -1;              /* a probe that sent nothing: not logged */
	default:
		prelogin_report(s, "proxy", err);
		return -1;
	}
	if (s->chan >= 0) {
		memset(&req, 0, sizeof(req));
		req.kind = REQ_PROXY;
		memcpy(req.data, &pi, sizeof(pi));
		req.datalen = sizeof(pi);
		if (privsep_ask(s->chan, &req) != ANS_OK)
			return -1;
	}
	s->proxy_tls = (int)pi.tls;
	return 0;
}

/* The pre-login process, confined by privsep_fork: the TLS server, then the
 * sandbox, then the AUTHORIZATION state, without syslog, for at most the
 * pre-login time limit. Never returns. */
static void
prelogin(struct session *s, int chan)
{
	char err[256];
	int maxfd = chan;

	s->chan = chan;
	closelog();
	alarm((unsigned)prelogin_limit(s));
	auth_forget(&s->auth);
	if (s->relayfd[0] >= 0)
		close(s->relayfd[0]);   /* the session's end */
#ifdef HAVE_TLS
	if (tls_configured(s) && !s->tls_unusable &&
	    (s->tls = tls_new(s->cert, s->certlen, s->signfd, err, sizeof(err))) == NULL) {
		tls_report(s, err);
		s->tls_unusable = 1;
	}
#endif
	if (s->cert != NULL) {
		explicit_bzero(s->cert, s->certlen);
		free(s->cert);
		s->cert = NULL;
	}
	maxfd = s->signfd > maxfd ? s->signfd : maxfd;
	maxfd = s->relayfd[1] > maxfd ? s->relayfd[1] : maxfd;
	if (sandbox_enter(SANDBOX_PRELOGIN, maxfd + 1, err, sizeof(err)) < 0)
		_exit(END_ERROR);
	if (s->proxies != NULL && proxy_header(s) < 0)
		_exit(END_PROXY);
#ifdef HAVE_TLS
	if (s->implicit_tls) {
		if (s->tls == NULL || s->tls_unusable || !signer_ready(s) || start_tls(s) < 0)
			_exit(END_TLS);
	}
#endif
	if (s->stamp[0] != '\0')
		reply(s, "+OK pop3d ready %s", s->stamp);
	else
		reply(s, "+OK pop3d ready");
	session_loop(s);
	io_flush(&s->io);
#ifdef HAVE_TLS
	tls_close(s->tls, s->io.timeout);
#endif
	_exit(s->status);
}

int
main(int argc, char **argv)
{
	static struct session session; /* the one session of this process */
	struct session *s = &session;
	int in, out, chan, no_apop = 0, log_stderr = 0, on = 1, gone;
	struct prelogin pl;
	const char *bad;
	char err[512];
	pid_t pid;

	signal(SIGPIPE, SIG_IGN);
	client_fds(&in, &out);
	session_init(s, in, out);

	bad = options(argc, argv, s, &no_apop, &log_stderr);
	if (log_stderr || isatty(2))
		log_stderr = LOG_PERROR;
	openlog("pop3d", LOG_PID | LOG_NDELAY | log_stderr, LOG_MAIL);
	gone = peer_name(in, s->rhost, sizeof(s->rhost)) < 0;
	if (bad == NULL && s->keyfile != NULL)
		bad = key_unsafe(s->keyfile);
	if (bad == NULL && tls_configured(s))
		bad = module_unsafe(err, sizeof(err));
	if (bad != NULL)
		return startup_error(s, bad);
	if (s->proxies != NULL && gone)
		return 1;               /* a proxy's probe, already gone: nothing to log */
	if (s->proxies != NULL && !proxy_trusted(s->proxies, s->rhost)) {
		/* Not a proxy of ours: closed before any greeting. */
		syslog(LOG_ERR, "error proxy: %s is not a trusted proxy (-P) rhost=%s", s->rhost,
		    s->rhost);
		return 1;
	}
	if (auth_scan(s->userfile, &s->auth, err, sizeof(err)) < 0)
		return startup_error(s, err);
	if (s->auth.has_apop && !no_apop && make_stamp(s->stamp, sizeof(s->stamp)) < 0)
		return startup_error(s, "no random numbers for the APOP timestamp");
	if (privsep_setup(&pl, s->lockdir, s->prelogin_user, s->prelogin_user_given,
	    err, sizeof(err)) < 0)
		return startup_error(s, err);
	s->auth.hash_drop = pl.active;  /* password hashing runs as the pre-login user */
	s->auth.hash_uid = pl.uid;
	s->auth.hash_gid = pl.gid;
	(void)setsockopt(in, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)); /* fails on pipes */
	if (tls_configured(s))
		tls_setup(s, &pl);
	pl.tls = tls_configured(s) && !s->tls_unusable;

	pid = privsep_fork(&pl, &chan, err, sizeof(err));
	if (pid == -1)
		return startup_error(s, err);
	if (pid == -2)
		_exit(startup_error(s, err));   /* the child could not confine itself */
	if (pid == 0)
		prelogin(s, chan);
	/* The monitor: nothing of TLS is its to keep. */
	if (s->signfd >= 0)
		close(s->signfd);
	if (s->relayfd[1] >= 0)
		close(s->relayfd[1]);
	s->signfd = s->relayfd[1] = -1;
	free(s->cert);
	s->cert = NULL;
	if (monitor(s, chan, pid) == GO_ON)
		session_loop(s);
	io_flush(&s->io);
	maildrop_close(&s->md);
	monitor_finish(s);
	return s->status == END_QUIT ? 0 : 1;
}
