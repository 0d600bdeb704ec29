/*
 * pop3d.c - one POP3 session (RFC 1939, 2449, 3206) on the connection a
 * super-server hands over: the options, the AUTHORIZATION and TRANSACTION
 * states, and a command table with one small function per command. UPDATE
 * happens in QUIT; any other end of the session deletes nothing.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "auth.h"
#include "config.h"
#include "io.h"
#include "maildrop.h"

enum { S_AUTH = 1, S_TRANS = 2 };
enum { GO_ON, END };                    /* what a command tells the session loop */

struct session {
	int state;
	int status;                     /* exit status once the session ends */
	const char *userfile, *lockdir;
	struct authinfo auth;
	int fail_delay, timeout;
	gid_t group;                    /* -g: kept for dotlocks, or (gid_t)-1 */
	int failures;
	char user[MAX_NAME + 1];        /* named by USER, awaiting PASS */
	char stamp[128];                /* APOP timestamp; empty when APOP is not offered */
	char rhost[INET6_ADDRSTRLEN];
	struct user who;                /* logged in as */
	struct maildrop md;
	unsigned long retr, dele;
	struct timespec started;
	struct io io;
};

static void
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

static void
live_totals(const struct session *s, size_t *n, uint64_t *octets)
{
	size_t i;

	*n = 0;
	*octets = 0;
	for (i = 0; i < s->md.count; i++)
		if (!s->md.msgs[i].deleted) {
			(*n)++;
			*octets += s->md.msgs[i].size;
		}
}

/* The message an argument names, or NULL after answering -ERR. */
static struct msg *
message(struct session *s, const char *arg, size_t *index)
{
	unsigned long n;

	if (parse_msgno(arg, s->md.count, &n) < 0) {
		reply(s, "-ERR no such message");
		return NULL;
	}
	if (s->md.msgs[n - 1].deleted) {
		reply(s, "-ERR message %lu is deleted", n);
		return NULL;
	}
	*index = n - 1;
	return &s->md.msgs[n - 1];
}

static int
args_ok(struct session *s, int argc, int min, int max)
{
	if (argc < min || argc > max) {
		reply(s, argc < min ? "-ERR missing argument" : "-ERR too many arguments");
		return 0;
	}
	return 1;
}

/* ---- AUTHORIZATION ---- */

static int
fail(struct session *s, const char *why)
{
	syslog(LOG_NOTICE, "auth failed user=%s rhost=%s", why, s->rhost);
	if (s->fail_delay > 0) {
		io_flush(&s->io);
		sleep((unsigned)s->fail_delay);
	}
	reply(s, "-ERR [AUTH] invalid user name or password");
	if (++s->failures < MAX_AUTH_FAILURES)
		return GO_ON;
	syslog(LOG_NOTICE, "auth limit rhost=%s failures=%d", s->rhost, s->failures);
	return END;
}

static int
fatal(struct session *s, const char *code, const char *err)
{
	syslog(LOG_ERR, "error user=%s rhost=%s: %s", s->who.name, s->rhost, err);
	reply(s, "-ERR [%s] %s", code, strcmp(code, "SYS/PERM") == 0 ?
	    "maildrop unavailable, ask your administrator" : "maildrop unavailable, try again later");
	return END;
}

/* After a credential check: lock, become the user, load, enter TRANSACTION. */
static int
login(struct session *s, int r, const char *name, int known)
{
	char err[512];

	if (r == AUTH_FAIL) {
		int next = fail(s, known ? name : "unknown");

		s->user[0] = '\0';     /* a new attempt starts with USER */
		return next;
	}
	s->user[0] = '\0';
	if (r == AUTH_ERROR) {
		reply(s, "-ERR [SYS/TEMP] cannot check credentials, try again later");
		return END;
	}
	r = maildrop_lock(&s->md, s->who.maildrop, s->lockdir, err, sizeof(err));
	if (r == MD_OK) {
		if (auth_become(&s->who, s->group, err, sizeof(err)) < 0)
			return fatal(s, "SYS/PERM", err);
		r = maildrop_load(&s->md, err, sizeof(err));
	}
	if (r == MD_INUSE) {
		syslog(LOG_NOTICE, "in-use user=%s rhost=%s", s->who.name, s->rhost);
		reply(s, "-ERR [IN-USE] maildrop is locked by another session");
		return END;
	}
	if (r != MD_OK)
		return fatal(s, r == MD_PERM ? "SYS/PERM" : "SYS/TEMP", err);

	size_t n;
	uint64_t octets;

	live_totals(s, &n, &octets);
	s->state = S_TRANS;
	s->io.timeout = s->timeout;
	syslog(LOG_INFO, "login user=%s rhost=%s msgs=%zu octets=%ju", s->who.name, s->rhost,
	    n, (uintmax_t)octets);
	reply(s, "+OK maildrop has %zu messages (%ju octets)", n, (uintmax_t)octets);
	return GO_ON;
}

static int
cmd_user(struct session *s, int argc, char **argv)
{
	if (!args_ok(s, argc, 1, 1))
		return GO_ON;
	if (!auth_valid_name(argv[0])) {
		reply(s, "-ERR invalid user name");
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
	int known, r;

	if (s->user[0] == '\0') {
		reply(s, "-ERR USER first");
		return GO_ON;
	}
	r = auth_pass(&s->auth, s->userfile, s->user, pass, &s->who, &known);
	return login(s, r, s->user, known);
}

static int
cmd_apop(struct session *s, int argc, char **argv)
{
	int known, r;

	if (s->stamp[0] == '\0') {
		reply(s, "-ERR APOP not available");
		return GO_ON;
	}
	if (!args_ok(s, argc, 2, 2))
		return GO_ON;
	if (!auth_valid_name(argv[0]) || strlen(argv[1]) != APOP_DIGEST_LEN ||
	    strspn(argv[1], "0123456789abcdefABCDEF") != APOP_DIGEST_LEN) {
		reply(s, "-ERR invalid arguments");
		return GO_ON;
	}
	r = auth_apop(s->userfile, argv[0], argv[1], s->stamp, &s->who, &known);
	return login(s, r, argv[0], known);
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
	reply(s, "USER");
	reply(s, "RESP-CODES");
	reply(s, "AUTH-RESP-CODE");
	reply(s, "PIPELINING");
	reply(s, "EXPIRE NEVER");
	reply(s, "IMPLEMENTATION pop3d");
	reply(s, ".");
	return GO_ON;
}

static double
elapsed(const struct session *s)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - s->started.tv_sec) +
	    (double)(now.tv_nsec - s->started.tv_nsec) / 1e9;
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
		s->status = 0;
		return END;
	}
	err[0] = '\0';
	if (maildrop_update(&s->md, err, sizeof(err)) != MD_OK) {
		syslog(LOG_ERR, "error user=%s rhost=%s: %s", s->who.name, s->rhost, err);
		reply(s, "-ERR [SYS/TEMP] update failed: %zu deleted messages not removed",
		    s->md.not_removed);
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
	reply(s, "+OK pop3d signing off (%zu messages left)", kept);
	s->status = 0;
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
	reply(s, "+OK %zu messages (%ju octets)", n, (uintmax_t)octets);
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
	int r = maildrop_open_msg(&s->md, i, err, sizeof(err));

	if (r != MD_OK) {
		syslog(LOG_WARNING, "warning user=%s rhost=%s: %s", s->who.name, s->rhost, err);
		if (r == MD_GONE)
			reply(s, "-ERR message %zu was removed by another program", i + 1);
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
		reply(s, "-ERR invalid line count");
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
	reply(s, "+OK maildrop has %zu messages (%ju octets)", n, (uintmax_t)octets);
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
		reply(s, "-ERR unknown command");
		return GO_ON;
	}
	if (!(c->states & s->state)) {
		reply(s, "-ERR %s not allowed %s", c->name,
		    s->state == S_AUTH ? "before login" : "after login");
		return GO_ON;
	}
	if (c->run == NULL)
		return cmd_pass(s, rest);
	if ((argc = io_split(rest, argv, MAX_ARGS)) < 0) {
		reply(s, "-ERR too many arguments");
		return GO_ON;
	}
	return c->run(s, argc, argv);
}

static void
session_loop(struct session *s)
{
	char line[MAX_LINE];
	size_t len;

	for (;;) {
		switch (io_getline(&s->io, line, &len)) {
		case IO_LINE:
			if (dispatch(s, line) == END)
				return;
			break;
		case IO_TOOLONG:
			reply(s, "-ERR line too long");
			break;
		case IO_NUL:
			reply(s, "-ERR NUL octet in command");
			break;
		case IO_TIMEOUT:
			syslog(LOG_NOTICE, "timeout user=%s rhost=%s",
			    s->state == S_TRANS ? s->who.name : "-", s->rhost);
			reply(s, "-ERR autologout: idle for too long");
			return;
		default:                /* the client went away */
			if (s->state == S_TRANS)
				syslog(LOG_NOTICE, "drop user=%s rhost=%s retr=%lu",
				    s->who.name, s->rhost, s->retr);
			return;
		}
		explicit_bzero(line, sizeof(line));
		if (s->io.failed)
			return;
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

static void
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
		return;
	}
	env = getenv("REMOTE_ADDR");
	if (env != NULL && env[0] != '\0' && strlen(env) < len &&
	    strspn(env, "0123456789abcdefABCDEF.:") == strlen(env))
		snprintf(out, len, "%s", env);
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
	fprintf(f, "usage: pop3d [-Aehn] [-D seconds] [-f userfile] [-g group] [-l statedir] "
	    "[-t seconds] [-T seconds] [-V]\n"
	    "  -A          never offer APOP (no timestamp in the greeting)\n"
	    "  -D seconds  delay before answering a failed login (default %d)\n"
	    "  -e          also log to stderr (default: only when it is a terminal)\n"
	    "  -f file     user file (default %s)\n"
	    "  -g group    keep this group after login, to create dotlocks in the spool\n"
	    "  -l dir      state directory: session locks, mbox update journals (default %s)\n"
	    "  -n          no dotlocks (<mbox>.lock); fcntl locks only\n"
	    "  -t seconds  idle timeout after login (default %d)\n"
	    "  -T seconds  idle timeout before login (default %d)\n"
	    "  -h          this help\n"
	    "  -V          print the version\n",
	    DEFAULT_FAIL_DELAY, DEFAULT_USERFILE, DEFAULT_LOCKDIR, DEFAULT_TIMEOUT,
	    DEFAULT_AUTH_TIMEOUT);
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

/* Parse the options; NULL, or what is wrong with them. */
static const char *
options(int argc, char **argv, struct session *s, int *no_apop, int *log_stderr)
{
	struct group *gr;
	int c;

	opterr = 0;                     /* getopt must not write to fd 2 */
	while ((c = getopt(argc, argv, ":AD:ef:g:hl:nt:T:V")) != -1) {
		switch (c) {
		case 'A':
			*no_apop = 1;
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
			if ((gr = getgrnam(optarg)) == NULL || gr->gr_gid == 0)
				return "-g: no such group, or group 0";
			s->group = gr->gr_gid;
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
		case 'V':
			printf("pop3d %s\n", POP3D_VERSION);
			exit(0);
		case ':':
			return "option needs an argument";
		default:
			return "unknown option";
		}
	}
	if (optind != argc)
		return "unexpected argument";
	return NULL;
}

/* A configuration error: tell the client and syslog, then stop. */
static int
startup_error(struct session *s, const char *what)
{
	syslog(LOG_ERR, "error config: %s", what);
	reply(s, "-ERR [SYS/PERM] server configuration error");
	io_flush(&s->io);
	return 1;
}

int
main(int argc, char **argv)
{
	static struct session session; /* the one session of this process */
	struct session *s = &session;
	int in, out, no_apop = 0, log_stderr = 0;
	const char *bad;
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	client_fds(&in, &out);
	io_init(&s->io, in, out, DEFAULT_AUTH_TIMEOUT);
	s->state = S_AUTH;
	s->status = 1;
	s->userfile = DEFAULT_USERFILE;
	s->lockdir = DEFAULT_LOCKDIR;
	s->timeout = DEFAULT_TIMEOUT;
	s->fail_delay = DEFAULT_FAIL_DELAY;
	s->group = (gid_t)-1;
	clock_gettime(CLOCK_MONOTONIC, &s->started);
	maildrop_init(&s->md);

	bad = options(argc, argv, s, &no_apop, &log_stderr);
	if (log_stderr || isatty(2))
		log_stderr = LOG_PERROR;
	openlog("pop3d", LOG_PID | LOG_NDELAY | log_stderr, LOG_MAIL);
	peer_name(in, s->rhost, sizeof(s->rhost));
	if (bad != NULL)
		return startup_error(s, bad);
	if (auth_scan(s->userfile, &s->auth, err, sizeof(err)) < 0)
		return startup_error(s, err);
	if (s->auth.has_apop && !no_apop && make_stamp(s->stamp, sizeof(s->stamp)) < 0)
		return startup_error(s, "no random numbers for the APOP timestamp");

	if (s->stamp[0] != '\0')
		reply(s, "+OK pop3d ready %s", s->stamp);
	else
		reply(s, "+OK pop3d ready");
	session_loop(s);
	io_flush(&s->io);
	maildrop_close(&s->md);
	return s->status;
}
