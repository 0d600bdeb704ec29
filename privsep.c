/*
 * privsep.c - privilege separation: the processes of one connection, and the
 * channel between the monitor and the pre-login process.
 *
 * The processes of a connection, each started here or where the table says:
 *
 *   process      runs as, where                 holds                  talks to
 *   -----------  -----------------------------  ---------------------  -----------------------
 *   monitor      root (or the virtual-mail      the user file (read,   the pre-login process
 *   (monitor.c)  user), the real root           never kept), the       (channel); after login
 *                directory                      state directory        it is the session
 *   pre-login    the -u user, chrooted into     the client socket,     the client (plain or
 *   (pop3d.c,    <statedir>/empty, no groups,   the certificate chain  TLS), the monitor
 *   tls.c)       seccomp, limits                (public)               (channel), the signer
 *   signer       root to load the key, then     the TLS private key    the pre-login process
 *   (signer.c)   the -u user, seccomp; answers  (only it, only while   only (one signature
 *                one signature and exits        it lives)              request)
 *   hashing      the -u user, seccomp (memory   one password, one      nobody: exits with the
 *   (auth.c)     and exit only)                 hash                   answer
 *   session      the maildrop owner, no groups  the user's maildrop    the client, or the
 *   (pop3d.c)    (the -g group as saved gid)                           relay over a socketpair
 *   relay        the pre-login process going    the client socket and  the client (TLS) and
 *   (relay.c)    on after a login over TLS, as  the connection's TLS   the session (plain)
 *                confined as before             state
 *
 * The TLS code (tls.c, signer.c, relay.c and OpenSSL) is a module of its own,
 * pop3d-tls.so (tlsmod.h): only the signer and the pre-login process load it,
 * in the child right after the fork, before it gives anything up (the chroot
 * would hide it). The monitor, and so the session, never maps OpenSSL.
 *
 * The pre-login process reads and parses everything a client sends before
 * login, TLS records included. It has chrooted into an empty root-owned
 * directory and switched to an unprivileged user of its own, with no way back
 * (setres[ug]id, no supplementary groups, PR_SET_NO_NEW_PRIVS), then set
 * resource limits and a system call allow-list (sandbox.c). It cannot read
 * the user file or any maildrop, open a file or a socket, or start a
 * process. For each login attempt it sends the privileged monitor one
 * fixed-size record over a SOCK_SEQPACKET socketpair, which the monitor
 * checks as untrusted input; the monitor answers with one octet. On success
 * the child exits (or, over TLS, becomes the relay) and the monitor carries
 * on with the session.
 *
 * Started as a non-root user (virtual mail), pop3d still forks the child,
 * which then simply keeps the running user's identity.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "privsep.h"
#include "sandbox.h"
#include "signer.h"
#include "tlsmod.h"

/* Open (creating it when missing) the directory name relative to at: it
 * must be root's and not writable by group or others. fd, or -1. */
static int
safe_dir(int at, const char *name, mode_t mode, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (mkdirat(at, name, mode) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		return -1;
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(err, errlen, "%s: must be a directory owned by root, not writable "
		    "by group or others", name);
		close(fd);
		return -1;
	}
	return fd;
}

/* A system user, from /etc/passwd itself: no NSS modules loaded into the
 * monitor (they would stay in the session process's memory). */
static int
system_user(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;
	FILE *f = fopen("/etc/passwd", "re");
	int found = 0;

	if (f == NULL)
		return 0;
	while (!found && (pw = fgetpwent(f)) != NULL)
		if (strcmp(pw->pw_name, name) == 0) {
			*uid = pw->pw_uid;
			*gid = pw->pw_gid;
			found = 1;
		}
	fclose(f);
	return found;
}

int
privsep_setup(struct prelogin *pl, const char *statedir, const char *user,
    int user_given, char *err, size_t errlen)
{
	int dirfd, found;

	memset(pl, 0, sizeof(*pl));
	pl->rootfd = -1;
	if (geteuid() != 0)
		return 0;
	found = system_user(user, &pl->uid, &pl->gid);
	if (!found && !user_given)
		found = system_user("nobody", &pl->uid, &pl->gid);
	if (!found || pl->uid == 0 || pl->gid == 0) {
		snprintf(err, errlen, "pre-login user %s: not in /etc/passwd, or uid/gid 0", user);
		return -1;
	}
	pl->active = 1;
	snprintf(pl->root, sizeof(pl->root), "%s/empty", statedir);
	/* Both directories are opened, then checked, then used through the
	 * descriptor: nobody can swap them between the check and the chroot. */
	if ((dirfd = safe_dir(AT_FDCWD, statedir, 0700, err, errlen)) < 0)
		return -1;
	pl->rootfd = safe_dir(dirfd, "empty", 0555, err, errlen);
	close(dirfd);
	return pl->rootfd < 0 ? -1 : 0;
}

/* In the child: give up everything for good. */
static int
confine(const struct prelogin *pl, char *err, size_t errlen)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	if (!pl->active)
		return 0;
	if (fchdir(pl->rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0 || setgroups(0, NULL) < 0 ||
	    setresgid(pl->gid, pl->gid, pl->gid) < 0 || setresuid(pl->uid, pl->uid, pl->uid) < 0) {
		snprintf(err, errlen, "pre-login confinement in %s: %s", pl->root, strerror(errno));
		return -1;
	}
#ifdef __linux__
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -1;
	}
#endif
	if (getresuid(&r, &e, &s) < 0 || getresgid(&rg, &eg, &sg) < 0 || r != pl->uid ||
	    e != pl->uid || s != pl->uid || rg != pl->gid || eg != pl->gid || sg != pl->gid ||
	    getgroups(0, NULL) != 0 || setuid(0) != -1) {
		snprintf(err, errlen, "pre-login confinement did not hold");
		return -1;
	}
	return 0;
}

/* socketpair and fork: the child's pid, with this side's end in *chan (the
 * child gets the other end), or -1 with a reason. */
static pid_t
fork_channel(int *chan, char *err, size_t errlen)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	close(sv[pid == 0 ? 0 : 1]);
	*chan = sv[pid == 0 ? 1 : 0];
	return pid;
}

pid_t
privsep_fork(const struct prelogin *pl, int *chan, char *err, size_t errlen)
{
	pid_t pid = fork_channel(chan, err, errlen);

	if (pid != 0 && pl->rootfd >= 0)
		close(pl->rootfd);      /* the monitor never needs it */
	if (pid != 0)
		return pid;
#ifdef HAVE_TLS
	if (pl->tls && tlsmod_load(err, errlen) < 0)
		return -2;              /* (the module is mapped before the chroot hides it) */
#endif
	if (confine(pl, err, errlen) < 0)
		return -2;
	if (pl->rootfd >= 0)
		close(pl->rootfd);
	return 0;
}

#ifdef HAVE_TLS
pid_t
privsep_signer(const struct signer *sg, int *chan, char *err, size_t errlen)
{
	pid_t pid = fork_channel(chan, err, errlen);

	if (pid != 0)
		return pid;
	if (tlsmod_load(err, errlen) < 0) {
		syslog(LOG_ERR, "error tls: %s rhost=%s", err, sg->rhost);
		_exit(1);
	}
	signer_run(sg, *chan);   /* (the child's end) */
}
#endif

int
privsep_ask(int chan, const struct authreq *req)
{
	ssize_t n;
	char a;

	do
		n = send(chan, req, sizeof(*req), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*req))
		return -1;
	do
		n = recv(chan, &a, 1, 0);
	while (n < 0 && errno == EINTR);
	return n == 1 ? (unsigned char)a : -1;
}

/* A field of len octets, NUL-terminated in place, holding no NUL itself. */
static int
field_ok(char *f, uint32_t len, size_t size)
{
	if (len >= size)
		return 0;
	f[len] = '\0';
	return memchr(f, '\0', len) == NULL;
}

int
privsep_receive(int chan, struct authreq *req)
{
	ssize_t n;

	do
		n = recv(chan, req, sizeof(*req), MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof(*req))
		return -1;
	if ((req->kind != REQ_PASS && req->kind != REQ_APOP && req->kind != REQ_LOG &&
	    req->kind != REQ_PROXY) ||
	    !field_ok(req->name, req->namelen, sizeof(req->name)) ||
	    !field_ok(req->secret, req->secretlen, sizeof(req->secret)) ||
	    !field_ok(req->tls, req->tlslen, sizeof(req->tls)) ||
	    req->datalen > sizeof(req->data))
		return -1;
	return 1;
}

int
privsep_answer(int chan, char answer)
{
	ssize_t n;

	do
		n = send(chan, &answer, 1, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : -1;
}
