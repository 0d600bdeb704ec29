/*
 * maildrop.c - a maildrop for one session, whatever its kind.
 *
 * A path that is a directory, or ends in "/", is a Maildir (maildir.c); any
 * other an mbox file (mbox.c). This file owns what both share: the session
 * lock, the conversion of stored messages to what POP3 sends (CRLF line ends,
 * dot-stuffing, a final newline supplied) and the count of that size.
 *
 * Session lock of an mbox: flock(2) on <lockdir>/<md5 of "dev:ino">.lock,
 * opened by root before the switch to the user, in a directory only root can
 * write; the same file holds the mbox's update journal (mbox.c). A Maildir's
 * lock is maildir.c's pop3d.lock inside it, taken as the user. Either way the
 * kernel drops the lock when the process dies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lfscan.h"
#include "maildrop.h"
#include "md5.h"

void
maildrop_init(struct maildrop *md)
{
	memset(md, 0, sizeof(*md));
	md->fd = -1;
	md->lockfd = -1;
	md->msgfd = -1;
	md->dotlock = 1;
}

void
maildrop_close(struct maildrop *md)
{
	if (md->msgfd >= 0 && md->msgfd != md->fd)
		close(md->msgfd);
	if (md->fd >= 0)
		close(md->fd);
	if (md->lockfd >= 0)
		close(md->lockfd);
	free(md->msgs);
	free(md->names);
	free(md->buf);
	maildrop_init(md);
}

/* ---- locks ---- */

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

int
maildrop_lock(struct maildrop *md, const char *path, const char *lockdir,
    char *err, size_t errlen)
{
	unsigned char d[16];
	char name[40], key[MAX_PATH + 1];
	struct md5 ctx;
	struct stat st;
	int dirfd, fd;

	snprintf(md->path, sizeof(md->path), "%s", path);
	if (path[0] != '\0' && (path[strlen(path) - 1] == '/' ||
	    (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))) {
		md->kind = KIND_MAILDIR;
		return MD_OK;           /* locked inside itself, as the user */
	}
	md->kind = KIND_MBOX;
	/* The file's identity names the lock, so every spelling of its path
	 * shares one; a path with no file yet names its own. */
	if (lstat(path, &st) == 0)
		snprintf(key, sizeof(key), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
	else
		snprintf(key, sizeof(key), "%s", path);
	md5_init(&ctx);
	md5_update(&ctx, key, strlen(key));
	md5_final(&ctx, d);
	md5_hex(d, name);
	strcat(name, ".lock");

	if ((dirfd = open_lockdir(lockdir, err, errlen)) < 0)
		return MD_TEMP;
	fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && errno == ENOENT) {
		/* New: make its name durable, for it will hold the update journal. */
		fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
		    O_NOCTTY, 0600);
		if (fd >= 0 && fsync(dirfd) < 0) {
			close(fd);
			fd = -1;
		}
	}
	close(dirfd);
	if (fd < 0) {
		snprintf(err, errlen, "lock file %s/%s: %s", lockdir, name, strerror(errno));
		return MD_TEMP;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int busy = errno == EWOULDBLOCK;

		snprintf(err, errlen, "lock file %s/%s: %s", lockdir, name, strerror(errno));
		close(fd);
		return busy ? MD_INUSE : MD_TEMP;
	}
	md->lockfd = fd;
	return MD_OK;
}

/* ---- the back ends ---- */

int
maildrop_load(struct maildrop *md, char *err, size_t errlen)
{
	struct stat st;

	/* As the user now: a directory root could not look into (a 0700 home
	 * without CAP_DAC_READ_SEARCH) is a Maildir too. */
	if (md->kind == KIND_MBOX && stat(md->path, &st) == 0 && S_ISDIR(st.st_mode))
		md->kind = KIND_MAILDIR;
	return md->kind == KIND_MAILDIR ? maildir_load(md, err, errlen) : mbox_load(md, err, errlen);
}

void
maildrop_uidl(const struct maildrop *md, size_t i, char out[UIDL_LEN])
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
maildrop_open_msg(struct maildrop *md, size_t i, char *err, size_t errlen)
{
	if (md->msgfd >= 0 && md->msgfd != md->fd)
		close(md->msgfd);
	md->msgfd = -1;
	if (md->kind == KIND_MAILDIR)
		return maildir_open_msg(md, i, err, errlen);
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
			if (*p == '.')
				io_put(t->io, ".", 1);
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
			if (*p == '.')
				io_put(io, ".", 1);
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
	return io->failed ? -1 : 0;
}

