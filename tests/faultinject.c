/*
 * tests/faultinject.c - an LD_PRELOAD shim for pop3d's fault and crash tests.
 *
 *   cc -shared -fPIC -o tests/faultinject.so tests/faultinject.c -ldl
 *   LD_PRELOAD=tests/faultinject.so POP3D_FAULT=fsync:3:EIO ./pop3d ...
 *
 * Everything is configured from the environment at the first intercepted
 * call (nothing is read from files: pop3d switches to the maildrop owner's
 * uid after login, and the shim must work the same before and after):
 *
 * POP3D_FAULT=RULE[,RULE...]       make calls fail
 *     RULE = OP:N:ERR[:FILTER]
 *     OP     pwrite | write | fsync | ftruncate | unlinkat | renameat | any
 *            (any = any of these except write)
 *     N      fail the Nth call that matches OP and FILTER (1-based);
 *            "N+" fails the Nth and every later one
 *     ERR    ENOSPC | EIO | EDQUOT | EACCES | EPERM | EROFS | a number
 *     FILTER ino=NUM    the file (for unlinkat/renameat: the file named) has
 *                       this inode number
 *            path=TEXT  its path (readlink of /proc/self/fd/N, or the name
 *                       given to unlinkat/renameat) contains TEXT
 *     A failing call does nothing and returns -1 with errno = ERR.
 *
 * POP3D_FAULT_DELAY_US=N           usleep(N) before each pwrite, fsync,
 *     ftruncate, unlinkat and renameat (not write: that is client I/O), to
 *     widen the update window for the kill test.
 *
 * POP3D_FAULT_SUBVERT=close | empty | probe    the pre-login process turns
 *     hostile at its first request to the monitor (the first send of more
 *     than one octet, without MSG_DONTWAIT, on a SOCK_SEQPACKET socket, or
 *     on a socket whose type its sandbox does not let it ask):
 *         close  closes its channel, turns its alarm off and stays alive
 *         empty  sends an empty datagram instead of the request, alarm off,
 *                and stays alive
 *         probe  tries what its sandbox must refuse and writes
 *                "probe socket=E kill=E open=E\r\n" to fd 1 (E: the errno,
 *                0 when the call worked), then sends the request as usual
 *
 * POP3D_FAULT_TRACE=fd:N | PATH    one line per intercepted call (write only
 *     when it goes to a regular file), written before the delay and before
 *     the call itself:
 *         SEQ OP ino=INO off=OFF len=LEN [FAIL]
 *     SEQ counts every traced call from 1. A test that reads the lines from a
 *     pipe and SIGKILLs pop3d on line k kills it (within the delay) before
 *     call k runs. A PATH is opened at the first call, before pop3d gives up
 *     root, and stays open.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>

enum { OP_PWRITE, OP_WRITE, OP_FSYNC, OP_FTRUNCATE, OP_UNLINKAT, OP_RENAMEAT, OP_ANY };
static const char *const opnames[] = { "pwrite", "write", "fsync", "ftruncate",
	"unlinkat", "renameat", "any" };

#define MAX_RULES 16

struct rule {
	int op;
	unsigned long nth;
	int and_later;
	int err;
	unsigned long long ino;         /* 0: any */
	char path[256];                 /* "": any */
	unsigned long seen;             /* matching calls so far */
};

static struct rule rules[MAX_RULES];
static int nrules;
static int inited;
static useconds_t delay_us;
static int trace_fd = -1;
static unsigned long trace_seq;

static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate64)(int, off_t);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_rename)(const char *, const char *);
static int (*real_unlink)(const char *);
static ssize_t (*real_send)(int, const void *, size_t, int);
static const char *subvert;

static void
die(const char *what)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "faultinject: bad POP3D_FAULT: %s\n", what);

	syscall(SYS_write, 2, msg, (size_t)n);
	_exit(111);
}

static int
parse_errno(const char *s)
{
	static const struct { const char *name; int val; } names[] = {
		{ "ENOSPC", ENOSPC }, { "EIO", EIO }, { "EDQUOT", EDQUOT }, { "EACCES", EACCES },
		{ "EPERM", EPERM }, { "EROFS", EROFS }, { "EINTR", EINTR }, { "EFBIG", EFBIG },
	};
	size_t i;
	char *end;
	long v;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].val;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v <= 0 || v > 4095)
		die(s);
	return (int)v;
}

static void
parse_rule(char *s)
{
	struct rule *r;
	char *f[4] = { 0 }, *end;
	int n = 0, i;

	if (nrules == MAX_RULES)
		die("too many rules");
	r = &rules[nrules++];
	memset(r, 0, sizeof(*r));
	f[n++] = s;
	while (n < 4 && (s = strchr(s, ':')) != NULL) {
		*s++ = '\0';
		f[n++] = s;
	}
	if (n < 3)
		die("want OP:N:ERR[:FILTER]");
	r->op = -1;
	for (i = 0; i <= OP_ANY; i++)
		if (strcmp(f[0], opnames[i]) == 0)
			r->op = i;
	if (r->op < 0)
		die(f[0]);
	r->nth = strtoul(f[1], &end, 10);
	if (end == f[1] || r->nth == 0 || (*end != '\0' && strcmp(end, "+") != 0))
		die(f[1]);
	r->and_later = *end == '+';
	r->err = parse_errno(f[2]);
	if (n == 4) {
		if (strncmp(f[3], "ino=", 4) == 0) {
			r->ino = strtoull(f[3] + 4, &end, 10);
			if (*end != '\0' || r->ino == 0)
				die(f[3]);
		} else if (strncmp(f[3], "path=", 5) == 0 && f[3][5] != '\0') {
			snprintf(r->path, sizeof(r->path), "%s", f[3] + 5);
		} else {
			die(f[3]);
		}
	}
}

static void *
sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (p == NULL)
		die(name);
	return p;
}

static void
init(void)
{
	const char *v;

	if (inited)
		return;
	inited = 1;
	real_pwrite64 = sym("pwrite64");
	real_write = sym("write");
	real_fsync = sym("fsync");
	real_fdatasync = sym("fdatasync");
	real_ftruncate64 = sym("ftruncate64");
	real_unlinkat = sym("unlinkat");
	real_renameat = sym("renameat");
	real_rename = sym("rename");
	real_unlink = sym("unlink");
	real_send = sym("send");
	subvert = getenv("POP3D_FAULT_SUBVERT");
	if ((v = getenv("POP3D_FAULT")) != NULL && *v != '\0') {
		char *copy = strdup(v), *save = NULL, *tok;

		if (copy == NULL)
			die("out of memory");
		for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
			parse_rule(tok);
		free(copy);
	}
	if ((v = getenv("POP3D_FAULT_DELAY_US")) != NULL)
		delay_us = (useconds_t)strtoul(v, NULL, 10);
	if ((v = getenv("POP3D_FAULT_TRACE")) != NULL && *v != '\0') {
		if (strncmp(v, "fd:", 3) == 0)
			trace_fd = atoi(v + 3);
		else
			trace_fd = open(v, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	}
}

__attribute__((constructor)) static void
faultinject_init(void)
{
	init();
}

/* The identity of what a call works on. */
struct target {
	unsigned long long ino;
	int have_ino;
	int regular;
	char path[512];
};

static void
target_fd(int fd, struct target *t)
{
	char link[64];
	struct stat st;
	ssize_t n;

	memset(t, 0, sizeof(*t));
	if (fstat(fd, &st) == 0) {
		t->ino = (unsigned long long)st.st_ino;
		t->have_ino = 1;
		t->regular = S_ISREG(st.st_mode);
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, t->path, sizeof(t->path) - 1);
	t->path[n > 0 ? n : 0] = '\0';
}

static void
target_at(int dirfd, const char *name, struct target *t)
{
	struct stat st;

	memset(t, 0, sizeof(*t));
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		t->ino = (unsigned long long)st.st_ino;
		t->have_ino = 1;
		t->regular = S_ISREG(st.st_mode);
	}
	snprintf(t->path, sizeof(t->path), "%s", name);
}

/* Does the call fail? 0, or the errno to fail with. */
static int
decide(int op, const struct target *t)
{
	int i, err = 0;

	for (i = 0; i < nrules; i++) {
		struct rule *r = &rules[i];

		if (r->op != op && !(r->op == OP_ANY && op != OP_WRITE))
			continue;
		if (r->ino != 0 && (!t->have_ino || t->ino != r->ino))
			continue;
		if (r->path[0] != '\0' && strstr(t->path, r->path) == NULL)
			continue;
		r->seen++;
		if ((r->seen == r->nth || (r->and_later && r->seen > r->nth)) && err == 0)
			err = r->err;
	}
	return err;
}

static void
trace(int op, const struct target *t, long long off, unsigned long long len, int err)
{
	char line[256];
	int n;

	if (trace_fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%lu %s ino=%llu off=%lld len=%llu%s\n", ++trace_seq,
	    opnames[op], t->ino, off, len, err ? " FAIL" : "");
	syscall(SYS_write, trace_fd, line, (size_t)n);
}

/* Everything before a call: returns the errno to fail with, or 0. */
static int
before(int op, const struct target *t, long long off, unsigned long long len)
{
	int err;

	init();
	err = decide(op, t);
	if (op == OP_WRITE && !t->regular)
		return err;             /* client I/O: neither traced nor slowed */
	trace(op, t, off, len, err);
	if (delay_us > 0 && op != OP_WRITE)
		usleep(delay_us);
	return err;
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	struct target t;
	int err;

	init();
	target_fd(fd, &t);
	if ((err = before(OP_PWRITE, &t, (long long)off, n)) != 0) {
		errno = err;
		return -1;
	}
	return real_pwrite64(fd, buf, n, off);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite64(fd, buf, n, off);
}

ssize_t
write(int fd, const void *buf, size_t n)
{
	struct target t;
	int err;

	init();
	if (nrules == 0 && trace_fd < 0)
		return real_write(fd, buf, n);
	target_fd(fd, &t);
	if ((err = before(OP_WRITE, &t, -1, n)) != 0) {
		errno = err;
		return -1;
	}
	return real_write(fd, buf, n);
}

int
fsync(int fd)
{
	struct target t;
	int err;

	init();
	target_fd(fd, &t);
	if ((err = before(OP_FSYNC, &t, -1, 0)) != 0) {
		errno = err;
		return -1;
	}
	return real_fsync(fd);
}

int
fdatasync(int fd)
{
	struct target t;
	int err;

	init();
	target_fd(fd, &t);
	if ((err = before(OP_FSYNC, &t, -1, 0)) != 0) {
		errno = err;
		return -1;
	}
	return real_fdatasync(fd);
}

int
ftruncate64(int fd, off_t len)
{
	struct target t;
	int err;

	init();
	target_fd(fd, &t);
	if ((err = before(OP_FTRUNCATE, &t, -1, (unsigned long long)len)) != 0) {
		errno = err;
		return -1;
	}
	return real_ftruncate64(fd, len);
}

int
ftruncate(int fd, off_t len)
{
	return ftruncate64(fd, len);
}

int
unlinkat(int dirfd, const char *name, int flags)
{
	struct target t;
	int err;

	init();
	target_at(dirfd, name, &t);
	if ((err = before(OP_UNLINKAT, &t, -1, 0)) != 0) {
		errno = err;
		return -1;
	}
	return real_unlinkat(dirfd, name, flags);
}

int
unlink(const char *name)
{
	struct target t;
	int err;

	init();
	target_at(AT_FDCWD, name, &t);
	if ((err = before(OP_UNLINKAT, &t, -1, 0)) != 0) {
		errno = err;
		return -1;
	}
	return real_unlink(name);
}

int
renameat(int olddirfd, const char *from, int newdirfd, const char *to)
{
	struct target t;
	int err;

	init();
	target_at(olddirfd, from, &t);
	if ((err = before(OP_RENAMEAT, &t, -1, 0)) != 0) {
		errno = err;
		return -1;
	}
	return real_renameat(olddirfd, from, newdirfd, to);
}

int
rename(const char *from, const char *to)
{
	struct target t;
	int err;

	init();
	target_at(AT_FDCWD, from, &t);
	if ((err = before(OP_RENAMEAT, &t, -1, 0)) != 0) {
		errno = err;
		return -1;
	}
	return real_rename(from, to);
}

static void
linger(void)
{
	struct timespec t = { 1, 0 };

	alarm(0);
	for (;;)
		nanosleep(&t, NULL);
}

static int
errno_of(int r)
{
	return r < 0 ? errno : 0;
}

ssize_t
send(int fd, const void *buf, size_t n, int flags)
{
	char line[128];
	int type = 0, len, e1, e2, e3, s;
	socklen_t tl = sizeof(type);

	init();
	if (subvert == NULL || n <= 1 || (flags & MSG_DONTWAIT) ||
	    (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type != SOCK_SEQPACKET))
		return real_send(fd, buf, n, flags);
	if (strcmp(subvert, "close") == 0) {
		close(fd);
		linger();
	}
	if (strcmp(subvert, "empty") == 0) {
		real_send(fd, "", 0, flags);
		linger();
	}
	if (strcmp(subvert, "probe") == 0) {
		s = socket(AF_INET, SOCK_STREAM, 0);
		e1 = errno_of(s);
		if (s >= 0)
			close(s);
		e2 = errno_of(kill(getpid(), 0));
		s = open("/", O_RDONLY);
		e3 = errno_of(s);
		if (s >= 0)
			close(s);
		len = snprintf(line, sizeof(line), "probe socket=%d kill=%d open=%d\r\n", e1, e2, e3);
		real_write(1, line, (size_t)len);
		subvert = NULL;
	}
	return real_send(fd, buf, n, flags);
}
