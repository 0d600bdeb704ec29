/*
 * mbox.c - the mbox back end of maildrop.c.
 *
 * Delivery agents' locks: a dotlock <mbox>.lock (O_EXCL, stale after
 * DOTLOCK_STALE seconds) and then fcntl on the mbox, each tried without
 * blocking for at most MBOX_LOCK_WAIT seconds, held only while loading and
 * while updating, so a slow client never blocks delivery.
 *
 * Loading streams the file once through a fixed buffer (no line-length limit,
 * NUL-safe), recording for each message its offsets, its size as sent (CRLF
 * line ends, From_ and separator lines excluded, a missing final newline
 * supplied) and its UIDL digest, and a fingerprint of all it read. Before and
 * after each message is sent, and at the update, the mbox must still be what
 * was loaded, or that plus appended mail: same inode under the path, no
 * shorter, and (once size or mtime moved) the same fingerprint.
 *
 * The update rewrites the file in place (same inode, owner and mode) and is
 * crash-safe through a journal kept in the session's lock file:
 *   1. the journal gets the original octets [start, S) - start is the first
 *      deleted message, S the current size - and a checksummed header; fsync;
 *   2. the kept messages and the mail appended since the load are copied down
 *      over [start, N), N the new size, and a NUL is written at N; fsync;
 *   3. a commit record is appended to the journal; fsync;
 *   4. the mbox is truncated to N; fsync; the journal is emptied; fsync.
 * Recovery, before the next login's +OK: a journal that fails its checksum
 * is discarded (the mbox was not touched yet); without a commit record the
 * original octets are written back (rollback); with one, a NUL at N means the
 * truncation did not happen - clear the commit, roll back - and anything else
 * means it did, and octets from N on are mail delivered since (an mbox
 * message never starts with NUL). Delivery agents append at the end, which
 * is never inside [start, S) before step 4, so their mail survives every case.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "lfscan.h"
#include "maildrop.h"
#include "xxh3.h"

#define JOURNAL_MAGIC "POP3DJ2\n"
#define JOURNAL_ANY "POP3DJ"            /* any version's magic starts so */
#define COMMIT_MAGIC "POP3DC2\n"

/* What makes a file that very file: its inode, owner, birth time and inode
 * generation (the last two where the file system has them), all of which a
 * new file given the same inode number differs in. */
enum { ID_BTIME = 1, ID_GEN = 2 };

struct ident {
	uint64_t dev, ino, uid;
	int64_t btime_sec;
	uint64_t btime_nsec;
	uint64_t gen;
	uint64_t flags;                 /* ID_* */
};

/* The journal's header, at offset 0 of the session lock file; then nranges
 * struct range, then the saved octets, then (from step 3) a struct commit. */
struct journal {
	char magic[8];
	struct ident id;                /* the mbox */
	uint64_t start;                 /* saved octets are the mbox's [start, size) */
	uint64_t size;                  /* its size before the update */
	uint64_t new_size;              /* and after */
	uint64_t nranges;               /* pieces of [start, size) kept, in order */
	unsigned char prefix[16];       /* digest of the mbox's [0, start) */
	char path[MAX_PATH];            /* the mbox's path */
	unsigned char sum[16];          /* digest of all the above, the ranges and octets */
};

/* The rewrite puts these pieces of the original octets one after the other
 * from start on: the kept messages and the mail appended since the load. */
struct range {
	uint64_t src, len;
};

/* After the saved octets: the update has reached step 3. */
struct commit {
	char magic[8];
	unsigned char sum[16];          /* digest of the header's sum */
};

#ifndef FS_IOC_GETVERSION                       /* linux/fs.h: the inode generation */
#define FS_IOC_GETVERSION _IOR('v', 1, long)
#endif

/* The digest of journals, of the kept prefix and of the octets loaded:
 * XXH3-128, integrity, not secrecy. */
struct digest {
	struct xxh3 x;
};

static void
digest_init(struct digest *d)
{
	xxh3_init(&d->x);
}

static void
digest_update(struct digest *d, const void *p, size_t n)
{
	xxh3_update(&d->x, p, n);
}

static void
digest_final(struct digest *d, unsigned char out[16])
{
	xxh3_final(&d->x, out);
}

#ifdef F_OFD_SETLK
#define SETLK F_OFD_SETLK               /* owned by the open file, not the process */
#else
#define SETLK F_SETLK
#endif

/* The delivery agents' lock on the whole mbox: F_RDLCK, F_WRLCK or F_UNLCK.
 * Waits at most MBOX_LOCK_WAIT seconds. */
static int
lock_mbox(int fd, short type)
{
	struct timespec pause = { 0, MBOX_LOCK_POLL_MS * 1000000L };
	int tries = MBOX_LOCK_WAIT * 1000 / MBOX_LOCK_POLL_MS;
	struct flock fl;

	for (;;) {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = type;
		fl.l_whence = SEEK_SET;
		if (fcntl(fd, SETLK, &fl) == 0)
			return 0;
		if ((errno != EAGAIN && errno != EACCES && errno != EINTR) || tries-- <= 0)
			return -1;
		nanosleep(&pause, NULL);
	}
}

/* A dotlock is stale when older than DOTLOCK_STALE, or when the process
 * whose pid it holds is gone (as liblockfile judges, on this host). */
static int
dotlock_stale(const char *path)
{
	char buf[32];
	struct stat st;
	ssize_t n;
	long pid;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return 0;
	n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, buf, sizeof(buf) - 1) : -1;
	close(fd);
	if (n < 0)
		return 0;
	if (time(NULL) - st.st_mtime > DOTLOCK_STALE)
		return 1;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* A dotlock as liblockfile makes it, never empty: the pid goes into a file
 * of a name no one can guess (so no one can block us by making it first),
 * which is then linked to <mbox>.lock. The descriptor is kept, to refresh
 * the lock's time during long loads and updates (dotlock_refresh) and to know
 * it is still ours when it is removed. The -g group is ours only meanwhile.
 * 0, or -1 with errno set. */
static int
dotlock_take(struct maildrop *md)
{
	struct timespec pause = { 0, MBOX_LOCK_POLL_MS * 1000000L };
	int tries = MBOX_LOCK_WAIT * 1000 / MBOX_LOCK_POLL_MS;
	char path[MAX_PATH + 8], tmp[MAX_PATH + 64], pid[32];
	const char *slash = strrchr(md->path, '/');
	unsigned char r[8] = { 0 };
	int fd = -1, n, e;

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec t;      /* unguessable enough for a name taken with O_EXCL */

		clock_gettime(CLOCK_REALTIME, &t);
		memcpy(r, &t.tv_nsec, sizeof(r) < sizeof(t.tv_nsec) ? sizeof(r) : sizeof(t.tv_nsec));
	}
	snprintf(path, sizeof(path), "%s.lock", md->path);
	snprintf(tmp, sizeof(tmp), "%.*s/.pop3d-%ld-%02x%02x%02x%02x%02x%02x%02x%02x",
	    slash != NULL ? (int)(slash - md->path) : 1, slash != NULL ? md->path : ".",
	    (long)getpid(), r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
	if (auth_group(md->group, 1) < 0)
		return -1;
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
	if (fd < 0)
		goto fail;
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (write(fd, pid, (size_t)n) != n)
		goto fail;
	for (;;) {
		if (link(tmp, path) == 0)
			break;
		if (errno != EEXIST)
			goto fail;
		if (dotlock_stale(path)) {
			unlink(path);   /* its holder is gone */
			continue;
		}
		if (tries-- <= 0) {
			errno = EWOULDBLOCK;
			goto fail;
		}
		nanosleep(&pause, NULL);
	}
	unlink(tmp);
	auth_group(md->group, 0);
	md->dotlockfd = fd;
	clock_gettime(CLOCK_MONOTONIC, &md->dotlock_touched);
	return 0;
fail:
	e = errno;
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	auth_group(md->group, 0);
	errno = e;
	return -1;
}

/* Keep a dotlock held for long from looking stale to other programs. */
static void
dotlock_refresh(struct maildrop *md)
{
	struct timespec now;

	if (md == NULL || md->dotlockfd < 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - md->dotlock_touched.tv_sec < DOTLOCK_REFRESH)
		return;
	md->dotlock_touched = now;
	if (futimens(md->dotlockfd, NULL) < 0)
		syslog(LOG_WARNING, "warning %s.lock: cannot refresh the dotlock: %m", md->path);
}

/* Remove the dotlock, if it is still the one we made. */
static void
dotlock_drop(struct maildrop *md)
{
	char path[MAX_PATH + 8];
	struct stat ours, now;

	if (md->dotlockfd < 0)
		return;
	snprintf(path, sizeof(path), "%s.lock", md->path);
	if (fstat(md->dotlockfd, &ours) == 0 && lstat(path, &now) == 0 &&
	    ours.st_ino == now.st_ino && ours.st_dev == now.st_dev) {
		if (auth_group(md->group, 1) == 0)
			unlink(path);
		auth_group(md->group, 0);
	} else {
		syslog(LOG_WARNING, "warning %s: the dotlock was removed by another program "
		    "while pop3d held it", path);
	}
	close(md->dotlockfd);
	md->dotlockfd = -1;
}

/* Both delivery agents' locks, dotlock first as procmail and liblockfile
 * take them; neither is waited for while the other is held for long. */
static int
lock_all(struct maildrop *md, short type, char *err, size_t errlen)
{
	if (md->dotlock && dotlock_take(md) < 0) {
		snprintf(err, errlen, "%s.lock: cannot create dotlock: %s%s", md->path,
		    strerror(errno), errno == EACCES ?
		    " (give pop3d the spool's group with -g, or turn dotlocks off with -n)" : "");
		return -1;
	}
	if (lock_mbox(md->fd, type) < 0) {
		snprintf(err, errlen, "%s: cannot lock (fcntl): %s", md->path, strerror(errno));
		dotlock_drop(md);
		return -1;
	}
	return 0;
}

static void
unlock_all(struct maildrop *md)
{
	lock_mbox(md->fd, F_UNLCK);
	dotlock_drop(md);
}

/* ---- scanning ---- */

struct scan {
	struct maildrop *md;            /* (for dotlock_refresh; may be NULL) */
	int fd;
	off_t off;                      /* file offset of buf[0] */
	off_t limit;                    /* read no further than this */
	size_t pos, len;                /* unread data is buf[pos..len) */
	int error;
	struct xxh3 fp;                 /* of every octet read */
	char buf[MBOX_READ_SIZE];
};

struct line {
	off_t start;                    /* file offset */
	uint64_t len;                   /* octets, LF included */
	int lf;                         /* ended by LF (else by the end of the file) */
	int cr;                         /* last octet before the LF (or of the file) is CR */
	const char *head;               /* the line's first octets */
	const char *lfp;                /* its LF in the buffer, if line_begin found it */
	size_t headlen;                 /* how many: the whole line, or a full buffer */
};

/* Read more after compacting; returns octets read, 0 at the limit, -1 error. */
static ssize_t
fill(struct scan *s)
{
	off_t at;
	size_t want;
	ssize_t n;

	if (s->pos > 0) {
		memmove(s->buf, s->buf + s->pos, s->len - s->pos);
		s->off += (off_t)s->pos;
		s->len -= s->pos;
		s->pos = 0;
	}
	at = s->off + (off_t)s->len;
	want = sizeof(s->buf) - s->len;
	if (at >= s->limit || want == 0)
		return 0;
	if ((off_t)want > s->limit - at)
		want = (size_t)(s->limit - at);
	do
		n = pread(s->fd, s->buf + s->len, want, at);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		s->error = errno;
		return -1;
	}
	xxh3_update(&s->fp, s->buf + s->len, (size_t)n);
	s->len += (size_t)n;
	dotlock_refresh(s->md);
	return n;
}

/* Start the next line: its head is the whole line when it fits the buffer.
 * 1 a line, 0 the end, -1 a read error. */
static int
line_begin(struct scan *s, struct line *l)
{
	char *lf;
	ssize_t n;

	if (s->pos == s->len && (n = fill(s)) <= 0)
		return (int)n;
	while ((lf = memchr(s->buf + s->pos, '\n', s->len - s->pos)) == NULL) {
		if (s->pos == 0 && s->len == sizeof(s->buf))
			break;
		if ((n = fill(s)) < 0)
			return -1;
		if (n == 0)
			break;
	}
	l->start = s->off + (off_t)s->pos;
	l->head = s->buf + s->pos;
	l->headlen = lf != NULL ? (size_t)(lf - l->head) + 1 : s->len - s->pos;
	l->lfp = lf;
	return 1;
}

/* Consume the line begun, setting len, lf and cr. Its octets, line end
 * included, are fed to feed when that is not NULL. */
static int
line_finish(struct scan *s, struct line *l, struct xxh3 *feed)
{
	char last = 0;
	int have_last = 0;

	l->len = 0;
	l->lf = 0;
	for (;;) {
		char *p = s->buf + s->pos;
		char *lf = l->lfp != NULL ? (char *)l->lfp : memchr(p, '\n', s->len - s->pos);
		size_t n = lf != NULL ? (size_t)(lf - p) : s->len - s->pos;

		if (feed != NULL)
			xxh3_update(feed, p, n + (lf != NULL));
		if (n > 0) {
			last = p[n - 1];
			have_last = 1;
		}
		l->len += n;
		s->pos += n;
		if (lf != NULL) {
			l->lf = 1;
			l->len++;
			s->pos++;
			break;
		}
		l->lfp = NULL;
		if (fill(s) <= 0)
			break;          /* end of file, or an error left in s->error */
	}
	l->cr = have_last && last == '\r';
	return s->error ? -1 : 0;
}

/* Octets of the line without its line end (LF, or CR LF). */
static uint64_t
content_len(const struct line *l)
{
	return l->len - (uint64_t)l->lf - (uint64_t)(l->lf && l->cr);
}

/* An empty line or one of only CR, decided from the line's head alone. */
static int
is_blank(const struct line *l)
{
	return l->head[0] == '\n' || (l->headlen >= 2 && l->head[0] == '\r' && l->head[1] == '\n');
}

/* Header fields that mail readers and other servers rewrite in messages
 * already delivered (flags, their IMAP and POP3 ids, counts): never part of
 * a UIDL. Names case-insensitive. */
static const char *const volatile_fields[] = {
	"Status", "X-Status", "X-Keywords", "X-UID", "X-IMAP", "X-IMAPbase",
	"X-Mozilla-Status", "X-Mozilla-Status2", "X-Mozilla-Keys", "Content-Length",
	"Lines", "X-UIDL", NULL
};

/* Does this header line (not a continuation) start a volatile field? */
static int
volatile_field(const struct line *l)
{
	size_t i, n;

	for (i = 0; volatile_fields[i] != NULL; i++) {
		n = strlen(volatile_fields[i]);
		if (l->headlen > n && l->head[n] == ':' &&
		    strncasecmp(l->head, volatile_fields[i], n) == 0)
			return 1;
	}
	return 0;
}

struct parse {
	struct maildrop *md;
	size_t cap;
	struct msg *m;                  /* the message being read, or NULL */
	struct xxh3 ctx;                /* its UIDL digest */
	int in_header;
	int in_volatile;                /* the header field being read is volatile */
	int blank_pending;              /* the last line was blank: separator or content? */
	int blank_cr;                   /* (it was CR LF) */
	off_t blank_start;
};

static void
end_message(struct parse *p, off_t end)
{
	if (p->m == NULL)
		return;
	p->m->end = end;
	xxh3_final(&p->ctx, p->m->digest);
	p->m = NULL;
}

static int
begin_message(struct parse *p, const struct line *l, char *err, size_t errlen)
{
	struct maildrop *md = p->md;

	if (md->count == MAX_MESSAGES) {
		snprintf(err, errlen, "%s: more than %d messages (limit MAX_MESSAGES)",
		    md->path, MAX_MESSAGES);
		return -1;
	}
	if (md->count == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct msg *n = reallocarray(md->msgs, cap, sizeof(*n));

		if (n == NULL) {
			snprintf(err, errlen, "%s: out of memory", md->path);
			return -1;
		}
		md->msgs = n;
		p->cap = cap;
	}
	p->m = &md->msgs[md->count++];
	memset(p->m, 0, sizeof(*p->m));
	p->m->start = l->start;
	p->in_header = 1;
	p->in_volatile = 0;
	p->blank_pending = 0;
	xxh3_init(&p->ctx);
	return 0;
}

/* A line of the message begins (not a From_ line starting the next one):
 * where its octets go for the UIDL digest, if anywhere. The digest covers
 * the message as stored, From_ line to end, but the lines of volatile
 * header fields; a blank line only once it is known not to be a separator. */
static struct xxh3 *
message_line(struct parse *p, const struct line *l, int blank)
{
	if (p->blank_pending) {         /* the blank line was content after all */
		p->m->size += 2;
		p->blank_pending = 0;
		xxh3_update(&p->ctx, p->blank_cr ? "\r\n" : "\n", p->blank_cr ? 2 : 1);
	}
	if (blank)
		return NULL;
	if (!p->in_header)
		return &p->ctx;
	if (l->head[0] != ' ' && l->head[0] != '\t')
		p->in_volatile = volatile_field(l);
	return p->in_volatile ? NULL : &p->ctx;
}

/* The line has been read to its end: count it. A blank line waits to learn
 * whether a From_ line follows (a separator) or not (content). */
static void
message_line_done(struct parse *p, const struct line *l, int blank)
{
	if (!blank) {
		p->m->size += content_len(l) + 2;
		return;
	}
	p->blank_pending = 1;
	p->blank_cr = l->cr;
	p->blank_start = l->start;
	p->in_header = 0;
}

static int
cmp_digest(const void *a, const void *b)
{
	const struct msg *x = *(const struct msg *const *)a, *y = *(const struct msg *const *)b;
	int c = memcmp(x->digest, y->digest, sizeof(x->digest));

	if (c != 0)
		return c;
	return x < y ? -1 : x > y;
}

/* Number the messages that share a digest, in file order. */
static int
number_duplicates(struct maildrop *md)
{
	struct msg **v;
	size_t i;

	if (md->count < 2)
		return 0;
	if ((v = calloc(md->count, sizeof(*v))) == NULL)
		return -1;
	for (i = 0; i < md->count; i++)
		v[i] = &md->msgs[i];
	qsort(v, md->count, sizeof(*v), cmp_digest);
	for (i = 1; i < md->count; i++)
		if (memcmp(v[i]->digest, v[i - 1]->digest, sizeof(v[i]->digest)) == 0)
			v[i]->dup = v[i - 1]->dup + 1;
	free(v);
	return 0;
}

/* ---- the body scan: 64 octets at a time (lfscan.h) ---- */

/* The first blank line that starts in the 64-octet block at p, given the LF
 * mask of the block and whether the two octets before it are LF: its offset
 * in the block (-1: the block's first octet is the LF of a CR LF line that
 * starts just before it), or 64 when there is none. */
static inline int
first_blank(const char *p, uint64_t lf, uint64_t lf1, uint64_t lf2)
{
	uint64_t starts = lf << 1 | lf1;                /* the octets that start a line */
	uint64_t lflf = lf & starts;                    /* LF at a line start */
	uint64_t maybe = lf & ~starts & (lf << 2 | lf1 << 1 | lf2);     /* LF ? LF */
	int first = lflf != 0 ? __builtin_ctzll(lflf) : 64;

	for (; maybe != 0; maybe &= maybe - 1) {        /* is the ? a CR? */
		int i = __builtin_ctzll(maybe);

		if (i - 1 >= first)
			break;
		if (p[i - 1] == '\r')
			return i - 1;
	}
	return first;
}

/* A blank line ends a body run when a From_ line follows it, or when what
 * follows is not buffered yet: the line-by-line path decides that. */
static int
run_ends(const char *next, const char *end)
{
	return end - next < 5 || memcmp(next, "From ", 5) == 0;
}

/* After a non-blank body line: the whole lines buffered up to the next blank
 * line followed by a From_ line cannot start a message; they go to the UIDL
 * digest as they are, and count toward the size, which is their octets plus
 * one for each LF without a CR before it. Whole 64-octet blocks are
 * searched for LF at once, a blank line being an LF at a line start or CR LF
 * at one; the last partial block, and a run that ends in a long line, go
 * line by line. */
static void
body_run(struct scan *s, struct parse *p)
{
	const char *b = s->buf + s->pos, *end = s->buf + s->len, *blk, *q, *lf, *cr;
	uint64_t lf1 = 1, lf2 = 0;              /* the octets before blk: blk[-1] is LF */
	struct lfcount lfs = { 0 };

	for (blk = b; end - blk >= 64;) {
		uint64_t L = lf64(blk, &lfs);
		int blank = first_blank(blk, L, lf1, lf2);
		const char *bl = blk + blank, *next;

		if (blank == 64) {
			lf2 = L >> 62 & 1;
			lf1 = L >> 63;
			blk += 64;
			continue;
		}
		next = bl + (*bl == '\r' ? 2 : 1);
		if (run_ends(next, end)) {      /* uncount the LFs from the blank line on */
			lfs.n -= ones64(blank > 0 ? L >> blank : L);
			q = bl;
			goto count;
		}
		lfs.n -= ones64(L >> (next - blk - 1) >> 1);    /* (next - blk may be 64) */
		lf2 = *bl == '\n';              /* the blank line is content */
		lf1 = 1;
		blk = next;
	}
	q = (lf = memrchr(b, '\n', (size_t)(blk - b))) != NULL ? lf + 1 : b;
	while (q < end && (lf = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		if ((lf == q || (lf == q + 1 && *q == '\r')) && run_ends(lf + 1, end))
			break;
		lfs.n++;
		q = lf + 1;
	}
count:
	for (cr = b; (cr = memchr(cr, '\r', (size_t)(q - cr))) != NULL; cr++)
		lfs.n -= cr[1] == '\n'; /* (cr < q, and q is after an LF) */
	p->m->size += (uint64_t)(q - b) + lf_total(&lfs);
	xxh3_update(&p->ctx, b, (size_t)(q - b));
	s->pos += (size_t)(q - b);
}

static int
scan_mbox(struct maildrop *md, struct scan *s, char *err, size_t errlen)
{
	struct parse p;
	struct line l = { 0 };
	int r;

	memset(&p, 0, sizeof(p));
	p.md = md;
	while ((r = line_begin(s, &l)) == 1) {
		int from = l.headlen >= 5 && memcmp(l.head, "From ", 5) == 0;
		int blank = is_blank(&l);
		int starts = from && (l.start == 0 || p.blank_pending);
		struct xxh3 *feed = NULL;

		if (starts) {
			end_message(&p, p.blank_pending ? p.blank_start : l.start);
			if (begin_message(&p, &l, err, errlen) < 0)
				return MD_PERM;
			feed = &p.ctx;
		} else if (p.m == NULL) {
			snprintf(err, errlen, "%s: not an mbox (no \"From \" line at the start)",
			    md->path);
			return MD_PERM;
		} else {
			feed = message_line(&p, &l, blank);
		}
		if (line_finish(s, &l, feed) < 0)
			break;
		if (starts)
			p.m->body = l.start + (off_t)l.len;
		else {
			message_line_done(&p, &l, blank);
			if (!blank && !p.in_header && l.lf)
				body_run(s, &p);
		}
	}
	if (r < 0 || s->error) {
		snprintf(err, errlen, "%s: read: %s", md->path, strerror(s->error));
		return MD_TEMP;
	}
	end_message(&p, p.blank_pending ? p.blank_start : s->limit);
	if (number_duplicates(md) < 0) {
		snprintf(err, errlen, "%s: out of memory", md->path);
		return MD_TEMP;
	}
	return MD_OK;
}

/* ---- I/O helpers ---- */

static int
pread_all(int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = pread(fd, p, n, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;    /* shorter than it must be */
			return -1;
		}
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

static int
pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t r = pwrite(fd, p, n, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* Copy len octets from src in one file to dst in another (or the same one,
 * with dst <= src): a forward copy never overwrites octets not yet read. */
static int
copy_range(struct maildrop *md, int from, off_t src, int to, off_t dst, off_t len)
{
	char buf[MBOX_COPY_SIZE];

	while (len > 0) {
		size_t n = len < (off_t)sizeof(buf) ? (size_t)len : sizeof(buf);

		if (pread_all(from, buf, n, src) < 0 || pwrite_all(to, buf, n, dst) < 0)
			return -1;
		src += (off_t)n;
		dst += (off_t)n;
		len -= (off_t)n;
		dotlock_refresh(md);
	}
	return 0;
}

/* The digest of the octets [off, off + len) of fd: 0, or -1 if unreadable. */
static int
digest_file(struct digest *ctx, int fd, off_t off, uint64_t len)
{
	char buf[MBOX_COPY_SIZE];

	while (len > 0) {
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);

		if (pread_all(fd, buf, n, off) < 0)
			return -1;
		digest_update(ctx, buf, n);
		off += (off_t)n;
		len -= n;
	}
	return 0;
}

static int
prefix_digest(int fd, uint64_t len, unsigned char out[16])
{
	struct digest ctx;

	digest_init(&ctx);
	if (digest_file(&ctx, fd, 0, len) < 0)
		return -1;
	digest_final(&ctx, out);
	return 0;
}

/* ---- the journal ---- */

static void
file_ident(int fd, const struct stat *st, struct ident *id)
{
	memset(id, 0, sizeof(*id));
	id->dev = (uint64_t)st->st_dev;
	id->ino = (uint64_t)st->st_ino;
	id->uid = (uint64_t)st->st_uid;
#ifdef STATX_BTIME
	{
		struct statx sx;

		if (statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &sx) == 0 &&
		    (sx.stx_mask & STATX_BTIME)) {
			id->btime_sec = sx.stx_btime.tv_sec;
			id->btime_nsec = sx.stx_btime.tv_nsec;
			id->flags |= ID_BTIME;
		}
	}
#endif
#ifdef FS_IOC_GETVERSION
	{
		int gen;                /* (the kernel writes an int) */

		if (ioctl(fd, FS_IOC_GETVERSION, &gen) == 0) {
			id->gen = (uint64_t)(unsigned)gen;
			id->flags |= ID_GEN;
		}
	}
#endif
}

/* The same file: what both sides know must agree. */
static int
same_ident(const struct ident *a, const struct ident *b)
{
	if (a->dev != b->dev || a->ino != b->ino || a->uid != b->uid)
		return 0;
	if ((a->flags & b->flags & ID_BTIME) &&
	    (a->btime_sec != b->btime_sec || a->btime_nsec != b->btime_nsec))
		return 0;
	if ((a->flags & b->flags & ID_GEN) && a->gen != b->gen)
		return 0;
	return 1;
}

static off_t
ranges_at(void)
{
	return (off_t)sizeof(struct journal);
}

static off_t
saved_at(const struct journal *j)
{
	return (off_t)(sizeof(*j) + j->nranges * sizeof(struct range));
}

static off_t
commit_at(const struct journal *j)
{
	return saved_at(j) + (off_t)(j->size - j->start);
}

/* The digest of the header's fields, the ranges and the saved octets, as
 * they are in the journal file: 0, or -1 if unreadable. */
static int
journal_sum(const struct journal *j, int fd, unsigned char out[16])
{
	struct digest ctx;

	digest_init(&ctx);
	digest_update(&ctx, j, offsetof(struct journal, sum));
	if (digest_file(&ctx, fd, ranges_at(), (uint64_t)(commit_at(j) - ranges_at())) < 0)
		return -1;
	digest_final(&ctx, out);
	return 0;
}

static void
commit_sum(const struct journal *j, unsigned char out[16])
{
	struct digest ctx;

	digest_init(&ctx);
	digest_update(&ctx, j->sum, sizeof(j->sum));
	digest_final(&ctx, out);
}

static int
journal_clear(int jfd)
{
	return ftruncate(jfd, 0) < 0 || fsync(jfd) < 0 ? -1 : 0;
}

/* Step 1: save the octets [start, size) of the mbox, and what the rewrite
 * will put there. */
static int
journal_write(struct maildrop *md, struct journal *j, const struct range *r)
{
	int jfd = md->lockfd;

	memcpy(j->magic, JOURNAL_MAGIC, sizeof(j->magic));
	file_ident(md->fd, &md->st, &j->id);
	snprintf(j->path, sizeof(j->path), "%s", md->path);
	if (ftruncate(jfd, 0) < 0 ||
	    pwrite_all(jfd, r, j->nranges * sizeof(*r), ranges_at()) < 0 ||
	    copy_range(md, md->fd, (off_t)j->start, jfd, saved_at(j),
	    (off_t)(j->size - j->start)) < 0)
		return -1;
	if (journal_sum(j, jfd, j->sum) < 0 || pwrite_all(jfd, j, sizeof(*j), 0) < 0 ||
	    fsync(jfd) < 0)
		return -1;
	return 0;
}

static int
journal_commit(struct maildrop *md, const struct journal *j, int on)
{
	struct commit c;

	memset(&c, 0, sizeof(c));
	if (on) {
		memcpy(c.magic, COMMIT_MAGIC, sizeof(c.magic));
		commit_sum(j, c.sum);
	}
	if (pwrite_all(md->lockfd, &c, sizeof(c), commit_at(j)) < 0 || fsync(md->lockfd) < 0)
		return -1;
	return 0;
}

/* A whole journal of this version in jfd (1), none (0: empty, torn, or of
 * another version, which *other tells), or -1 on a read error. */
static int
journal_read(int jfd, struct journal *j, int *other)
{
	struct stat st;
	unsigned char sum[16];

	*other = 0;
	if (fstat(jfd, &st) < 0)
		return -1;
	if ((size_t)st.st_size < sizeof(*j))
		return 0;
	if (pread_all(jfd, j, sizeof(*j), 0) < 0)
		return -1;
	if (memcmp(j->magic, JOURNAL_MAGIC, sizeof(j->magic)) != 0) {
		*other = memcmp(j->magic, JOURNAL_ANY, strlen(JOURNAL_ANY)) == 0;
		return 0;
	}
	j->path[sizeof(j->path) - 1] = '\0';
	if (j->start > j->size || j->new_size > j->size || j->new_size < j->start ||
	    j->nranges > j->size - j->start ||
	    (uint64_t)st.st_size < (uint64_t)commit_at(j) || journal_sum(j, jfd, sum) < 0 ||
	    memcmp(sum, j->sum, sizeof(sum)) != 0)
		return 0;
	return 1;
}

int
mbox_journal_orphaned(int jfd, char *path, size_t len)
{
	struct journal j;
	struct ident now;
	struct stat st;
	int other, r = journal_read(jfd, &j, &other);

	if (r <= 0)
		return other ? 0 : -1;  /* another version's: for its mbox's next login */
	snprintf(path, len, "%s", j.path);
	if (lstat(j.path, &st) < 0)
		return errno == ENOENT || errno == ENOTDIR ? 1 : 0;
	if (!S_ISREG(st.st_mode))
		return 1;
	memset(&now, 0, sizeof(now));
	now.dev = (uint64_t)st.st_dev;
	now.ino = (uint64_t)st.st_ino;
	now.uid = (uint64_t)st.st_uid;
#ifdef STATX_BTIME
	{
		struct statx sx;

		if (statx(AT_FDCWD, j.path, AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) == 0 &&
		    (sx.stx_mask & STATX_BTIME)) {
			now.btime_sec = sx.stx_btime.tv_sec;
			now.btime_nsec = sx.stx_btime.tv_nsec;
			now.flags |= ID_BTIME;
		}
	}
#endif
	return !same_ident(&j.id, &now);
}

/* Reads the journal's kept ranges in order, mapping the new octets'
 * offsets to the original ones. */
struct rangecur {
	int fd;
	const struct journal *j;
	uint64_t k;                     /* the range at hand */
	struct range r;
	uint64_t at;                    /* new offset where it starts */
};

/* Read range k: 0, or -1 (errno EINVAL for one outside [start, size)). */
static int
rangecur_load(struct rangecur *c, uint64_t k)
{
	c->k = k;
	if (k >= c->j->nranges ||
	    pread_all(c->fd, &c->r, sizeof(c->r), ranges_at() + (off_t)(k * sizeof(c->r))) < 0)
		return -1;
	if (c->r.src < c->j->start || c->r.src > c->j->size || c->r.len > c->j->size - c->r.src)
		return errno = EINVAL, -1;
	return 0;
}

static int
rangecur_seek(struct rangecur *c, uint64_t q)
{
	while (q >= c->at + c->r.len) {
		c->at += c->r.len;
		if (rangecur_load(c, c->k + 1) < 0)
			return -1;
	}
	return 0;
}

/* Is every octet of the mbox's [start, size) the original one (saved in the
 * journal) or the one the rewrite puts there, as a crash leaves them? With
 * the commit record the rewrite was complete, so only its octets count. A
 * different octet was written by another program since. 1, 0, -1 (error). */
static int
region_matches(struct maildrop *md, const struct journal *j, int committed)
{
	enum { CHUNK = 16384 };
	char f[CHUNK], o[CHUNK], n[CHUNK];
	struct rangecur c = { md->lockfd, j, 0, { j->start, 0 }, j->start };
	uint64_t p;

	if (j->nranges > 0 && rangecur_load(&c, 0) < 0)
		return -1;
	for (p = j->start; p < j->size;) {
		size_t len = j->size - p < CHUNK ? (size_t)(j->size - p) : CHUNK, i;
		uint64_t q;

		if (pread_all(md->fd, f, len, (off_t)p) < 0 ||
		    pread_all(md->lockfd, o, len, saved_at(j) + (off_t)(p - j->start)) < 0)
			return -1;
		memcpy(n, o, len);
		for (q = p; q < p + len && q < j->new_size;) {
			size_t take;

			if (rangecur_seek(&c, q) < 0)
				return -1;
			take = (size_t)(c.at + c.r.len - q);
			if (take > p + len - q)
				take = (size_t)(p + len - q);
			if (take > j->new_size - q)
				take = (size_t)(j->new_size - q);
			if (pread_all(md->lockfd, n + (q - p), take,
			    saved_at(j) + (off_t)(c.r.src + (q - c.at) - j->start)) < 0)
				return -1;
			q += take;
		}
		if (j->new_size >= p && j->new_size < p + len)
			n[j->new_size - p] = '\0';
		for (i = 0; i < len; i++)
			if (f[i] != n[i] && (committed || f[i] != o[i]))
				return 0;
		p += len;
	}
	return 1;
}

/* Put the saved octets back: the mbox as it was before the update, with
 * whatever was appended after it. Idempotent. */
static int
rollback(struct maildrop *md, const struct journal *j)
{
	if (copy_range(md, md->lockfd, saved_at(j), md->fd, (off_t)j->start,
	    (off_t)(j->size - j->start)) < 0 || fsync(md->fd) < 0)
		return -1;
	return journal_clear(md->lockfd);
}

/* The mbox moved on since the crash: leave it alone and keep the journal's
 * octets, an mbox fragment, in the rescue file for an administrator. */
static int
rescue(struct maildrop *md, const struct journal *j, const char *why,
    char *err, size_t errlen)
{
	off_t from = j != NULL ? saved_at(j) : 0, len;
	struct stat st;

	if (md->rescuefd < 0 || fstat(md->lockfd, &st) < 0) {
		snprintf(err, errlen, "%s: recovery: %s, and the journal cannot be kept "
		    "elsewhere (%s); ask your administrator", md->path, why, md->rescue);
		return MD_TEMP;
	}
	len = j != NULL ? (off_t)(j->size - j->start) : st.st_size;
	if (ftruncate(md->rescuefd, 0) < 0 ||
	    copy_range(md, md->lockfd, from, md->rescuefd, 0, len) < 0 || fsync(md->rescuefd) < 0) {
		snprintf(err, errlen, "%s: recovery: %s, and writing %s failed: %s", md->path, why,
		    md->rescue, strerror(errno));
		return MD_TEMP;
	}
	if (j != NULL)
		syslog(LOG_ERR, "recovery %s: %s: not rolled back; the interrupted update's "
		    "original octets (from offset %ju) are kept in %s", md->path, why,
		    (uintmax_t)j->start, md->rescue);
	else
		syslog(LOG_ERR, "recovery %s: %s: not applied; it is kept in %s", md->path, why,
		    md->rescue);
	return journal_clear(md->lockfd) < 0 ? MD_TEMP : MD_OK;
}

/* Finish, undo or leave alone an update a crash interrupted. Run under the
 * delivery agents' locks, before the mbox is loaded. *done says it had
 * finished. */
static int
recover(struct maildrop *md, int *done, char *err, size_t errlen)
{
	struct journal j;
	struct commit c;
	struct ident id;
	struct stat st;
	unsigned char sum[16];
	char nul;
	int committed, other, r;

	*done = 0;
	r = journal_read(md->lockfd, &j, &other);
	if (r < 0)
		goto fail;
	if (r == 0 && other)
		return rescue(md, NULL, "a journal of another pop3d version", err, errlen);
	if (r == 0) {
		if (fstat(md->lockfd, &st) == 0 && st.st_size == 0)
			return MD_OK;
		syslog(LOG_WARNING, "recovery %s: incomplete journal discarded, mbox untouched",
		    md->path);
		return journal_clear(md->lockfd) < 0 ? MD_TEMP : MD_OK;
	}
	if (fstat(md->fd, &st) < 0)
		goto fail;
	file_ident(md->fd, &st, &id);
	if (!same_ident(&j.id, &id) || strcmp(j.path, md->path) != 0) {
		syslog(LOG_WARNING, "recovery %s: journal of another file (%s, inode %ju) dropped",
		    md->path, j.path, (uintmax_t)j.id.ino);
		return journal_clear(md->lockfd) < 0 ? MD_TEMP : MD_OK;
	}
	committed = pread_all(md->lockfd, &c, sizeof(c), commit_at(&j)) == 0 &&
	    memcmp(c.magic, COMMIT_MAGIC, sizeof(c.magic)) == 0 &&
	    (commit_sum(&j, sum), memcmp(sum, c.sum, sizeof(sum)) == 0);
	if (committed && ((uint64_t)st.st_size <= j.new_size ||
	    pread_all(md->fd, &nul, 1, (off_t)j.new_size) < 0 || nul != '\0')) {
		syslog(LOG_NOTICE, "recovery %s: interrupted update was complete, "
		    "%ju octets removed", md->path, (uintmax_t)(j.size - j.new_size));
		*done = 1;
		return journal_clear(md->lockfd) < 0 ? MD_TEMP : MD_OK;
	}
	/* To be undone: only if the mbox is still as the crash left it. */
	if ((uint64_t)st.st_size < j.size)
		return rescue(md, &j, "the mbox is shorter than before the interrupted update",
		    err, errlen);
	if (prefix_digest(md->fd, j.start, sum) < 0 || (r = region_matches(md, &j, committed)) < 0)
		goto fail;
	if (memcmp(sum, j.prefix, sizeof(sum)) != 0 || r == 0)
		return rescue(md, &j, "the mbox was changed since the interrupted update",
		    err, errlen);
	/* Uncommit first, so a crash during the rollback is taken for one
	 * before the commit next time. */
	if ((committed && journal_commit(md, &j, 0) < 0) || rollback(md, &j) < 0)
		goto fail;
	syslog(LOG_NOTICE, "recovery %s: interrupted update rolled back, no message deleted",
	    md->path);
	return MD_OK;
fail:
	snprintf(err, errlen, "%s: recovery from the journal failed: %s", md->path, strerror(errno));
	return MD_TEMP;
}

/* ---- loading ---- */

int
mbox_load(struct maildrop *md, char *err, size_t errlen)
{
	struct scan *s;
	struct stat jst;
	int r, done;

	if (md->fd < 0)
		return MD_OK;           /* no mail yet: an empty maildrop */
	if (md->lockfd >= 0 && fstat(md->lockfd, &jst) == 0 && jst.st_size > 0) {
		if (lock_all(md, F_WRLCK, err, errlen) < 0)
			return MD_TEMP;
		r = recover(md, &done, err, errlen);
		unlock_all(md);
		if (r != MD_OK)
			return r;
	}
	if (md->rescuefd >= 0) {        /* made in case; unused: state_gc removes it */
		close(md->rescuefd);
		md->rescuefd = -1;
	}
	if (lock_all(md, F_RDLCK, err, errlen) < 0)
		return MD_TEMP;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", md->path);
		r = MD_TEMP;
	} else if (fstat(md->fd, &md->st) < 0) {
		snprintf(err, errlen, "%s: %s", md->path, strerror(errno));
		r = MD_TEMP;
	} else {
		s->md = md;
		s->fd = md->fd;
		s->limit = md->st.st_size;
		xxh3_init(&s->fp);
		r = scan_mbox(md, s, err, errlen);
		xxh3_final(&s->fp, md->hash);
		md->vst = md->st;
	}
	free(s);
	unlock_all(md);
	return r;
}

/* ---- outside changes ---- */

/* Is the octets' digest from 0 up to what was loaded still the load's? With
 * prefix, also the digest of [0, upto) (the same pass). 1 yes, 0 no, -1 a
 * read error. */
static int
still_loaded(struct maildrop *md, uint64_t upto, unsigned char prefix[16])
{
	unsigned char now[16];
	struct digest ctx;

	digest_init(&ctx);
	if (prefix != NULL) {
		if (digest_file(&ctx, md->fd, 0, upto) < 0)
			return -1;
		digest_final(&ctx, prefix);     /* (the state goes on) */
	} else {
		upto = 0;
	}
	if (digest_file(&ctx, md->fd, (off_t)upto, (uint64_t)md->st.st_size - upto) < 0)
		return -1;
	digest_final(&ctx, now);
	return memcmp(now, md->hash, sizeof(now)) == 0;
}

/* Is the mbox still what was loaded, or that with mail appended? The inode
 * under the path, the size, and, once size or mtime moved, the digest of
 * every octet loaded. (The update checks the digest whatever they say.) */
int
mbox_verify(struct maildrop *md, char *err, size_t errlen)
{
	struct stat st, now;

	if (fstat(md->fd, &st) < 0)
		goto changed;
	if (lstat(md->path, &now) < 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev)
		goto changed;           /* replaced: a rename over the path */
	if (st.st_size < md->st.st_size)
		goto changed;
	if (st.st_size == md->vst.st_size && st.st_mtim.tv_sec == md->vst.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == md->vst.st_mtim.tv_nsec)
		return MD_OK;
	if (still_loaded(md, 0, NULL) != 1)
		goto changed;
	md->vst = st;                   /* an append: fine, and checked once */
	return MD_OK;
changed:
	snprintf(err, errlen, "%s was changed by another program during the session", md->path);
	return MD_TEMP;
}

/* ---- update ---- */

/* The pieces of [start, size) the update keeps, in order and merged: the
 * messages not deleted and the mail appended since the load. NULL without
 * memory. */
static struct range *
kept_ranges(struct maildrop *md, struct journal *j)
{
	off_t loaded = md->st.st_size;
	struct range *r = reallocarray(NULL, md->count + 1, sizeof(*r));
	size_t i, n = 0;

	if (r == NULL)
		return NULL;
	for (i = 0; i <= md->count; i++) {
		uint64_t from, to;

		if (i < md->count) {
			struct msg *m = &md->msgs[i];

			if (m->start < (off_t)j->start || m->deleted)
				continue;
			from = (uint64_t)m->start;
			to = (uint64_t)(i + 1 < md->count ? md->msgs[i + 1].start : loaded);
		} else {
			from = (uint64_t)loaded;
			to = j->size;
		}
		if (to <= from)
			continue;
		if (n > 0 && r[n - 1].src + r[n - 1].len == from)
			r[n - 1].len += to - from;
		else
			r[n++] = (struct range){ from, to - from };
	}
	j->nranges = n;
	return r;
}

/* Step 2: copy the kept pieces down over [start, new_size) and mark
 * new_size with a NUL. */
static int
rewrite(struct maildrop *md, const struct journal *j, const struct range *r)
{
	off_t w = (off_t)j->start;
	uint64_t k;

	for (k = 0; k < j->nranges; k++) {
		if (copy_range(md, md->fd, (off_t)r[k].src, md->fd, w, (off_t)r[k].len) < 0)
			return -1;
		w += (off_t)r[k].len;
	}
	return pwrite_all(md->fd, "", 1, (off_t)j->new_size) < 0 || fsync(md->fd) < 0 ? -1 : 0;
}

/* Steps 1 to 4 (see the top of this file). */
static int
update_journaled(struct maildrop *md, struct journal *j, char *err, size_t errlen)
{
	struct range *r;
	int bad;

	if (md->lockfd < 0) {
		snprintf(err, errlen, "%s: no journal", md->path);
		return MD_TEMP;
	}
	if ((r = kept_ranges(md, j)) == NULL || journal_write(md, j, r) < 0) {
		snprintf(err, errlen, "%s: writing the journal: %s", md->path, strerror(errno));
		journal_clear(md->lockfd);
		free(r);
		return MD_TEMP;         /* the mbox was not touched */
	}
	bad = rewrite(md, j, r) < 0 || journal_commit(md, j, 1) < 0 ||
	    ftruncate(md->fd, (off_t)j->new_size) < 0 || fsync(md->fd) < 0;
	free(r);
	if (bad) {
		char why[512];
		int done;

		snprintf(err, errlen, "%s: update failed: %s", md->path, strerror(errno));
		/* Do now what the next login would: the journal and the file
		 * tell recover() whether to finish or undo, in every phase. */
		if (recover(md, &done, why, sizeof(why)) != MD_OK)
			syslog(LOG_ERR, "error %s; the next login recovers from the journal", why);
		else if (done)
			md->not_removed = 0;    /* removed, but not known to be on disk */
		return MD_TEMP;
	}
	if (journal_clear(md->lockfd) < 0)
		syslog(LOG_WARNING, "warning %s: emptying the journal: %s (recovery will finish it)",
		    md->path, strerror(errno));
	return MD_OK;
}

static int
update_locked(struct maildrop *md, char *err, size_t errlen)
{
	struct journal j;
	struct stat st;
	size_t i;
	int r;

	if (mbox_verify(md, err, errlen) != MD_OK || fstat(md->fd, &st) < 0)
		return MD_TEMP;
	memset(&j, 0, sizeof(j));
	j.size = (uint64_t)st.st_size;
	j.new_size = j.size;
	j.start = j.size;
	for (i = md->count; i-- > 0;) {
		const struct msg *m = &md->msgs[i];
		off_t next = i + 1 < md->count ? md->msgs[i + 1].start : md->st.st_size;

		if (m->deleted) {
			j.new_size -= (uint64_t)(next - m->start);
			j.start = (uint64_t)m->start;
		}
	}
	/* Whatever size and mtime say, under the write lock: is what is about
	 * to be cut and moved what the session loaded, octet for octet? */
	if ((r = still_loaded(md, j.start, j.prefix)) != 1) {
		snprintf(err, errlen, "%s %s", md->path, r < 0 ? "could not be read again" :
		    "was changed by another program during the session");
		return MD_TEMP;
	}
	if (j.new_size != j.start)
		return update_journaled(md, &j, err, errlen);
	/* Nothing to move: one truncate, atomic, is the whole update. A failed
	 * fsync after it cannot be undone: the messages are gone, or back after
	 * a power loss; nothing else is lost. */
	if (ftruncate(md->fd, (off_t)j.start) < 0) {
		snprintf(err, errlen, "%s: update failed: %s", md->path, strerror(errno));
		return MD_TEMP;
	}
	if (fsync(md->fd) < 0) {
		snprintf(err, errlen, "%s: update failed: %s", md->path, strerror(errno));
		md->not_removed = 0;    /* removed, but not known to be on disk */
		return MD_TEMP;
	}
	return MD_OK;
}

int
mbox_update(struct maildrop *md, char *err, size_t errlen)
{
	size_t i;
	int r;

	md->not_removed = 0;
	for (i = 0; i < md->count; i++)
		md->not_removed += md->msgs[i].deleted;
	if (md->not_removed == 0)
		return MD_OK;           /* nothing deleted: nothing to write */
	if (lock_all(md, F_WRLCK, err, errlen) < 0)
		return MD_TEMP;
	r = update_locked(md, err, errlen);
	unlock_all(md);
	if (r == MD_OK)
		md->not_removed = 0;
	return r;
}
