/*
 * maildrop.c - a maildrop for one session, whatever its kind.
 *
 * A path that is a directory, or ends in "/", is a Maildir (maildir.c); any
 * other an mbox file (mbox.c). This file owns what both share: opening the
 * maildrop with the user's rights (it must be the user's, and an mbox must
 * have one link), the session lock, the conversion of stored messages to what
 * POP3 sends (CRLF line ends, dot-stuffing, a final newline supplied) and the
 * count of that size.
 *
 * Session lock of an mbox: flock(2) on <lockdir>/<md5 of "dev:ino">.lock,
 * where dev:ino is the file maildrop_open opened (so the lock is always that
 * of the file served), taken by root before the final switch to the user, in
 * a directory only root can write; the same file holds the mbox's update
 * journal (mbox.c). A lock file is removed only by a holder of its lock: the
 * state directory's clean-up (state_gc) removes those no journal needs, so
 * they do not pile up as mboxes come and go. A Maildir's lock is maildir.c's
 * pop3d.lock inside it, taken as the user. Either way the kernel drops the
 * lock when the process dies. With -U, maildrop_lock also opens the records
 * of its sources in the state directory for either kind (uidlmap.c), and
 * maildrop_load applies them.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "lfscan.h"
#include "maildrop.h"
#include "md5.h"
#include "uidlmap.h"

void
maildrop_init(struct maildrop *md)
{
	int k;

	memset(md, 0, sizeof(*md));
	md->fd = -1;
	md->lockfd = -1;
	md->rescuefd = -1;
	md->msgfd = -1;
	md->dotlockfd = -1;
	md->dotlock = 1;
	md->group = (gid_t)-1;
	for (k = 0; k < UIDL_SOURCES_MAX; k++)
		md->recfd[k] = -1;
}

void
maildrop_close(struct maildrop *md)
{
	unsigned char sources[UIDL_SOURCES_MAX];
	int dotlock = md->dotlock, nsources = md->nsources;
	gid_t group = md->group;

	memcpy(sources, md->sources, sizeof(sources));
	uidlmap_free(md);

	if (md->msgfd >= 0 && md->msgfd != md->fd)
		close(md->msgfd);
	if (md->fd >= 0)
		close(md->fd);
	if (md->rescuefd >= 0)
		close(md->rescuefd);
	if (md->lockfd >= 0)
		close(md->lockfd);
	free(md->msgs);
	free(md->names);
	free(md->buf);
	maildrop_init(md);
	md->dotlock = dotlock;          /* options survive */
	md->group = group;
	md->nsources = nsources;
	memcpy(md->sources, sources, sizeof(sources));
}

/* ---- opening, as the user ---- */

static int
not_ours(struct maildrop *md, const struct stat *st, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: owned by uid %lu, not by the user (uid %lu): refused",
	    md->path, (unsigned long)st->st_uid, (unsigned long)md->owner);
	return MD_PERM;
}

static int
open_maildir(struct maildrop *md, char *err, size_t errlen)
{
	struct stat st;

	md->kind = KIND_MAILDIR;
	md->fd = open(md->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
	if (md->fd < 0 && errno == ENOENT)
		return MD_OK;           /* no Maildir yet: empty, nothing to lock */
	if (md->fd < 0) {
		snprintf(err, errlen, "%s: %s", md->path, strerror(errno));
		return errno == ENOTDIR || errno == EACCES ? MD_PERM : MD_TEMP;
	}
	if (fstat(md->fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", md->path, strerror(errno));
		return MD_TEMP;
	}
	return st.st_uid == md->owner ? MD_OK : not_ours(md, &st, err, errlen);
}

int
maildrop_open(struct maildrop *md, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	snprintf(md->path, sizeof(md->path), "%s", path);
	md->owner = geteuid();
	if (path[0] == '\0' || path[strlen(path) - 1] == '/')
		return open_maildir(md, err, errlen);
	/* O_NOATIME, as the owner may: reading leaves atime before mtime, so
	 * "new mail" checks (biff, shells, procmail's wait) still see the mail.
	 * O_NONBLOCK: a FIFO or a device never blocks the open. */
	fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && (errno == EISDIR || errno == ELOOP) &&
	    lstat(path, &st) == 0 && (S_ISDIR(st.st_mode) || (S_ISLNK(st.st_mode) &&
	    stat(path, &st) == 0 && S_ISDIR(st.st_mode))))
		return open_maildir(md, err, errlen);   /* a directory, or a link to one */
	md->kind = KIND_MBOX;
	if (fd < 0 && errno == ENOENT)
		return MD_OK;           /* no mail yet: an empty maildrop */
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, errno == ELOOP ?
		    "a symbolic link: refused" : strerror(errno));
		return errno == ELOOP || errno == EACCES ? MD_PERM : MD_TEMP;
	}
	md->fd = fd;
	if (fstat(fd, &md->st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return MD_TEMP;
	}
	if (!S_ISREG(md->st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return MD_PERM;
	}
	if (md->st.st_uid != md->owner)
		return not_ours(md, &md->st, err, errlen);
	if (md->st.st_nlink != 1) {
		snprintf(err, errlen, "%s: has %ju hard links, refused (an mbox must have one)",
		    path, (uintmax_t)md->st.st_nlink);
		return MD_PERM;
	}
	return MD_OK;
}

/* ---- the session lock of an mbox, as root ---- */

static int
open_lockdir(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && geteuid() == 0 && mkdir(dir, 0700) == 0)
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "lock directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(err, errlen, "lock directory %s: unsafe (must be owned by uid %lu "
		    "and not writable by group or others)", dir, (unsigned long)geteuid());
		close(fd);
		return -1;
	}
	return fd;
}

/* Lock the file name in dirfd, creating it: the fd, -1 with errno
 * (EWOULDBLOCK: held by another session). A lock file (or a UIDL record,
 * uidlmap.c) is only ever removed by a holder of its lock (state_gc), so a
 * lock on a file that is no longer under its name is worth nothing: then it
 * starts again. */
int
state_lock_file(int dirfd, const char *name)
{
	struct stat st, now;
	int fd, tries, created;

	for (tries = 0; tries < 5; tries++) {
		created = 1;
		fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
		    O_NOCTTY | O_NONBLOCK, 0600);
		if (fd < 0 && errno == EEXIST) {
			created = 0;
			fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
			    O_NONBLOCK);
		}
		if (fd < 0) {
			if (errno == ENOENT)
				continue;       /* removed between the two opens */
			return -1;
		}
		/* A new name must be durable: it will hold the update journal. */
		if ((created && fsync(dirfd) < 0) || flock(fd, LOCK_EX | LOCK_NB) < 0 ||
		    fstat(fd, &st) < 0) {
			int e = errno;

			close(fd);
			errno = e;
			return -1;
		}
		if (S_ISREG(st.st_mode) && fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
		    now.st_ino == st.st_ino && now.st_dev == st.st_dev)
			return fd;
		close(fd);              /* removed or replaced meanwhile */
	}
	errno = EAGAIN;
	return -1;
}

/* Look at one file of the state directory: a lock file no session holds
 * and no journal needs (empty, torn, or for an mbox that is gone), or an
 * empty rescue file, is removed; a UIDL record, as uidlmap_gc says. Removed
 * only while locked, and only if the name is still that file: see
 * state_lock_file. */
static void
gc_file(int dirfd, const char *name)
{
	char path[MAX_PATH];
	struct stat st, now;
	size_t n = strlen(name);
	int fd, drop, r;

	if (uidlmap_gc(dirfd, name))
		return;
	if (!(n == 37 && strspn(name, "0123456789abcdef") == 32 && strcmp(name + 32, ".lock") == 0) &&
	    !(n > 7 && strcmp(name + n - 7, ".rescue") == 0))
		return;
	fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || flock(fd, LOCK_EX | LOCK_NB) < 0 ||
	    fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_ino != st.st_ino) {
		close(fd);
		return;
	}
	drop = st.st_size == 0;
	if (!drop && name[n - 1] == 'k') {      /* a .lock holding a journal */
		r = mbox_journal_orphaned(fd, path, sizeof(path));
		if (r > 0)
			syslog(LOG_WARNING, "recovery %s: journal dropped: that mbox is gone "
			    "or was replaced", path);
		drop = r != 0;                  /* (a torn journal: its mbox was untouched) */
	}
	if (drop)
		unlinkat(dirfd, name, 0);
	close(fd);
}

/* Clean the state directory up, at most once every STATE_GC_INTERVAL
 * seconds (the time of gc.stamp tells): lock files of mboxes that are gone
 * or were replaced would otherwise pile up. */
static void
state_gc(int dirfd)
{
	struct dirent *d;
	struct stat st;
	time_t now = time(NULL);
	DIR *dir;
	int fd, n = 0;

	if (fstatat(dirfd, "gc.stamp", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_mtime <= now && now - st.st_mtime < STATE_GC_INTERVAL)
		return;
	fd = openat(dirfd, "gc.stamp", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
	    O_NONBLOCK, 0600);
	if (fd < 0)
		return;
	(void)futimens(fd, NULL);
	close(fd);
	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return;
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while (n++ < STATE_GC_MAX_FILES && (d = readdir(dir)) != NULL)
		gc_file(dirfd, d->d_name);
	closedir(dir);
}

/* The rescue files' tag of the maildrop path md->path names (the user
 * file's spelling): the MD5 of it, in hex. */
static void
rescue_tag(const struct maildrop *md, char tag[33])
{
	unsigned char d[16];
	struct md5 ctx;

	md5_init(&ctx);
	md5_update(&ctx, md->path, strlen(md->path));
	md5_final(&ctx, d);
	md5_hex(d, tag);
}

/* Rescue files already holding something for the maildrop path tag names,
 * whichever file that path named when they were made: their names say,
 * "<lock key>.<tag>.<time>.<pid>.rescue". */
static int
rescues_kept(int dirfd, const char tag[33])
{
	struct dirent *d;
	struct stat st;
	size_t len;
	DIR *dir;
	int fd, n = 0;

	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return RESCUE_MAX;
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return RESCUE_MAX;
	}
	while ((d = readdir(dir)) != NULL) {
		len = strlen(d->d_name);
		if (len > 32 + 34 + 7 && d->d_name[32] == '.' && memcmp(d->d_name + 33, tag, 32) == 0 &&
		    d->d_name[65] == '.' &&
		    strcmp(d->d_name + len - 7, ".rescue") == 0 &&
		    fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_size > 0)
			n++;
	}
	closedir(dir);
	return n;
}

/* A place for the octets of a journal recovery may not apply: made now, as
 * root, when there is a journal, used (or left empty for state_gc) by the
 * recovery after the switch to the user. At most RESCUE_MAX per maildrop
 * path of the user file (not per lock key: a user who crashes sessions on
 * purpose, changes the mbox and gives it a new inode each time gets a new
 * key each time; and not per uid, which virtual users share), so nobody can
 * fill the state directory: beyond that, recovery keeps the journal and
 * refuses that maildrop's logins until an administrator has looked. */
static void
make_rescue(struct maildrop *md, int dirfd, const char *lockdir, const char *key)
{
	char name[128], stamp[32], tag[33];
	time_t now = time(NULL);
	struct tm tm;

	rescue_tag(md, tag);
	if (rescues_kept(dirfd, tag) >= RESCUE_MAX) {
		snprintf(md->rescue, sizeof(md->rescue), "%s/*.%s.*.rescue: %d already kept for "
		    "this maildrop, the limit RESCUE_MAX", lockdir, tag, RESCUE_MAX);
		return;
	}
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", gmtime_r(&now, &tm));
	snprintf(name, sizeof(name), "%s.%s.%s.%ld.rescue", key, tag, stamp, (long)getpid());
	snprintf(md->rescue, sizeof(md->rescue), "%s/%s", lockdir, name);
	md->rescuefd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
	    O_NOCTTY | O_NONBLOCK, 0600);
	if (md->rescuefd >= 0 && flock(md->rescuefd, LOCK_EX | LOCK_NB) < 0) {
		close(md->rescuefd);
		md->rescuefd = -1;
	}
	if (md->rescuefd < 0)
		syslog(LOG_ERR, "error %s: %m", md->rescue);
}

/* The session lock of an mbox, in the state directory dirfd. */
static int
lock_mbox_session(struct maildrop *md, int dirfd, const char *lockdir, char *err, size_t errlen)
{
	unsigned char d[16];
	char name[40], key[MAX_PATH + 1];
	struct md5 ctx;
	struct stat st;

	/* The file's identity names the lock, so every spelling of its path
	 * shares one; a path with no file yet names its own. */
	if (md->fd >= 0)
		snprintf(key, sizeof(key), "%ju:%ju", (uintmax_t)md->st.st_dev,
		    (uintmax_t)md->st.st_ino);
	else
		snprintf(key, sizeof(key), "%s", md->path);
	md5_init(&ctx);
	md5_update(&ctx, key, strlen(key));
	md5_final(&ctx, d);
	md5_hex(d, name);
	strcat(name, ".lock");
	md->lockfd = state_lock_file(dirfd, name);
	if (md->lockfd < 0) {
		snprintf(err, errlen, "lock file %s/%s: %s", lockdir, name, strerror(errno));
		return errno == EWOULDBLOCK ? MD_INUSE : MD_TEMP;
	}
	name[32] = '\0';
	if (fstat(md->lockfd, &st) == 0 && st.st_size > 0)
		make_rescue(md, dirfd, lockdir, name);
	return MD_OK;
}

int
maildrop_lock(struct maildrop *md, const char *lockdir, char *err, size_t errlen)
{
	int dirfd, r = MD_OK;

	if (md->kind == KIND_MAILDIR && !uidlmap_wants_lockdir(md))
		return MD_OK;           /* locked inside itself, as the user */
	if ((dirfd = open_lockdir(lockdir, err, errlen)) < 0)
		return MD_TEMP;
	state_gc(dirfd);
	if (md->kind == KIND_MBOX)
		r = lock_mbox_session(md, dirfd, lockdir, err, errlen);
	if (r == MD_OK)
		r = uidlmap_records_open(md, dirfd, lockdir, err, errlen);
	close(dirfd);
	return r;
}

/* ---- the back ends ---- */

int
maildrop_load(struct maildrop *md, char *err, size_t errlen)
{
	int r = md->kind == KIND_MAILDIR ? maildir_load(md, err, errlen) :
	    mbox_load(md, err, errlen);

	return r == MD_OK ? uidlmap_load(md, err, errlen) : r;
}

void
maildrop_uidl(const struct maildrop *md, size_t i, char out[UIDL_LEN])
{
	if (md->um != NULL && md->msgs[i].src != 0)
		uidlmap_uidl(md, i, out);
	else
		maildrop_own_uidl(md, i, out);
}

void
maildrop_own_uidl(const struct maildrop *md, size_t i, char out[UIDL_LEN])
{
	const struct msg *m = &md->msgs[i];

	if (md->kind == KIND_MAILDIR) {
		maildir_uidl(md, i, out);
		return;
	}
	md5_hex(m->digest, out);
	if (m->dup > 0)
		snprintf(out + 32, UIDL_LEN - 32, "-%" PRIu32, m->dup + 1);
}

int
maildrop_open_msg(struct maildrop *md, size_t i, int whole, char *err, size_t errlen)
{
	if (md->msgfd >= 0 && md->msgfd != md->fd)
		close(md->msgfd);
	md->msgfd = -1;
	if (md->kind == KIND_MAILDIR)
		return maildir_open_msg(md, i, whole, err, errlen);
	md->msgfd = md->fd;
	return mbox_verify(md, err, errlen);
}

int
maildrop_update(struct maildrop *md, char *err, size_t errlen)
{
	if (md->count == 0)
		return MD_OK;
	return md->kind == KIND_MAILDIR ? maildir_update(md, err, errlen) :
	    mbox_update(md, err, errlen);
}

/* ---- sizes ---- */

void
sizer_add(struct sizer *z, const char *p, size_t n)
{
	const char *q = p, *end = p + n, *lf;

	while ((lf = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		z->lf++;
		if (lf > p ? lf[-1] == '\r' : z->last == '\r')
			z->crlf++;
		q = lf + 1;
	}
	if (n > 0) {
		z->octets += n;
		z->last = (unsigned char)p[n - 1];
	}
}

/* Each line's octets without its LF or CR LF, plus CR LF; a last line
 * without a newline gets one. */
uint64_t
sizer_size(const struct sizer *z)
{
	uint64_t lines = z->lf + (z->octets > 0 && z->last != '\n');

	return z->octets + 2 * lines - z->lf - z->crlf;
}

/* ---- sending ---- */

struct sender {
	struct io *io;
	int bol;                        /* at the beginning of a line */
	int held_cr;                    /* a CR ended the last chunk: line end or content? */
	uint64_t linelen;               /* content octets of the current line so far */
	int in_header;
	long lines;                     /* body lines still wanted, or -1 for all */
	uint64_t stuffed;               /* dots added by dot-stuffing */
};

/* Convert one chunk; returns 1 when TOP has sent all it wants. */
static int
send_chunk(struct sender *t, const char *p, const char *q)
{
	while (p < q) {
		const char *lf, *e;

		if (t->bol) {
			if (!t->in_header && t->lines == 0)
				return 1;
			if (*p == '.') {
				io_put(t->io, ".", 1);
				t->stuffed++;
			}
			t->bol = 0;
			t->linelen = 0;
		}
		lf = memchr(p, '\n', (size_t)(q - p));
		e = lf != NULL ? lf : q;
		if (t->held_cr && (e > p || lf == NULL)) {
			io_put(t->io, "\r", 1);         /* the held CR was content */
			t->linelen++;
		}
		t->held_cr = 0;
		if (e > p && e[-1] == '\r') {
			t->held_cr = 1;
			e--;
		}
		io_put(t->io, p, (size_t)(e - p));
		t->linelen += (uint64_t)(e - p);
		if (lf == NULL)
			return 0;
		io_put(t->io, "\r\n", 2);
		t->held_cr = 0;
		t->bol = 1;
		if (t->in_header && t->linelen == 0)
			t->in_header = 0;
		else if (!t->in_header && t->lines > 0)
			t->lines--;
		p = lf + 1;
	}
	return 0;
}

/* RETR (all lines): the same conversion, written straight into the output
 * buffer, one memcpy per line and no call per piece; the LFs are found 64
 * octets at a time. */
static void
send_all(struct sender *t, const char *p, const char *q)
{
	struct io *io = t->io;
	struct lfiter it;

	lf_start(&it, p, q);
	while (p < q) {
		const char *lf, *e;
		size_t n, need;

		if (t->bol) {
			t->bol = 0;
			if (*p == '.') {
				io_put(io, ".", 1);
				t->stuffed++;
			}
		}
		lf = lf_next(&it, p);
		e = lf != NULL ? lf : q;
		if (t->held_cr && (e > p || lf == NULL))
			io_put(io, "\r", 1);
		t->held_cr = 0;
		if (e > p && e[-1] == '\r') {
			t->held_cr = 1;
			e--;
		}
		n = (size_t)(e - p);
		need = n + (lf != NULL ? 2 : 0);
		if (sizeof(io->obuf) - io->olen >= need && !io->failed) {
			char *o = io->obuf + io->olen;

			memcpy(o, p, n);
			if (lf != NULL) {
				o[n] = '\r';
				o[n + 1] = '\n';
			}
			io->olen += need;
			io->sent += need;
		} else {
			io_put(io, p, n);
			if (lf != NULL)
				io_put(io, "\r\n", 2);
		}
		if (lf == NULL)
			return;
		t->held_cr = 0;
		t->bol = 1;
		p = lf + 1;
	}
}

int
maildrop_send(struct maildrop *md, size_t i, long lines, struct io *io,
    char *err, size_t errlen)
{
	const struct msg *m = &md->msgs[i];
	struct sender t = { .io = io, .bol = 1, .in_header = 1, .lines = lines };
	uint64_t before = io->sent;
	off_t off = m->body;
	char *buf;

	if (md->buf == NULL && (md->buf = malloc(MBOX_READ_SIZE)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	buf = md->buf;
	while (off < m->end && !io->failed) {
		size_t want = MBOX_READ_SIZE;
		ssize_t n;

		if ((off_t)want > m->end - off)
			want = (size_t)(m->end - off);
		n = pread(md->msgfd, buf, want, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s: read: %s", md->path,
			    n < 0 ? strerror(errno) : "file shrank");
			return -1;
		}
		off += n;
		if (lines < 0)
			send_all(&t, buf, buf + n);
		else if (send_chunk(&t, buf, buf + n))
			break;
	}
	if (!t.bol) {                   /* no final newline: supply one */
		if (t.held_cr)
			io_put(io, "\r", 1);
		io_put(io, "\r\n", 2);
	}
	if (md->kind == KIND_MBOX && mbox_verify(md, err, errlen) != MD_OK)
		return -1;
	if (lines < 0 && !io->failed && io->sent - before - t.stuffed != m->size) {
		snprintf(err, errlen, "%s: message %zu came to %ju octets, not the %ju listed: "
		    "not ended", md->path, i + 1, (uintmax_t)(io->sent - before - t.stuffed),
		    (uintmax_t)m->size);
		return -1;
	}
	return io->failed ? -1 : 0;
}

