/*
 * mbox.c - the mbox back end of maildrop.c.
 *
 * Delivery agents' lock: fcntl on the mbox, held only while loading and while
 * updating, so a slow client never blocks delivery.
 *
 * Loading streams the file once through a fixed buffer (no line-length limit,
 * NUL-safe), recording for each message its offsets, its size as sent (CRLF
 * line ends, From_ and separator lines excluded, a missing final newline
 * supplied) and its UIDL digest. The update rewrites the file in place, from
 * the first deleted message on, then appends whatever was delivered during
 * the session, truncates and fsyncs: same inode, owner and mode.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "maildrop.h"
#include "md5.h"

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

/* ---- scanning ---- */

struct scan {
	int fd;
	off_t off;                      /* file offset of buf[0] */
	off_t limit;                    /* read no further than this */
	size_t pos, len;                /* unread data is buf[pos..len) */
	int error;
	char buf[MBOX_READ_SIZE];
};

struct line {
	off_t start;                    /* file offset */
	uint64_t len;                   /* octets, LF included */
	int lf;                         /* ended by LF (else by the end of the file) */
	int cr;                         /* last octet before the LF (or of the file) is CR */
	const char *head;               /* the line's first octets */
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
	s->len += (size_t)n;
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
	return 1;
}

/* Consume the line begun, setting len, lf and cr. Its content (without the
 * line end) and then one LF are fed to feed when that is not NULL. */
static int
line_finish(struct scan *s, struct line *l, struct md5 *feed)
{
	char last = 0;
	int have_last = 0;

	l->len = 0;
	l->lf = 0;
	for (;;) {
		char *p = s->buf + s->pos;
		char *lf = memchr(p, '\n', s->len - s->pos);
		size_t n = lf != NULL ? (size_t)(lf - p) : s->len - s->pos;

		if (n > 0) {
			if (feed != NULL) {
				if (have_last)
					md5_update(feed, &last, 1);
				md5_update(feed, p, n - 1);
			}
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
		if (fill(s) <= 0)
			break;          /* end of file, or an error left in s->error */
	}
	l->cr = have_last && last == '\r';
	if (feed != NULL) {
		if (have_last && !(l->lf && l->cr))
			md5_update(feed, &last, 1);
		md5_update(feed, "\n", 1);
	}
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

static int
has_prefix(const struct line *l, const char *name)
{
	size_t n = strlen(name);

	return l->headlen >= n && strncasecmp(l->head, name, n) == 0;
}

/* Per-message state of the UIDL header selection. */
struct hdrsel {
	int received, delivered, delivery_id, date, msgid;
	int current;                    /* the field being read is selected */
};

/* Does this header line (not a continuation) start a selected field? */
static int
select_field(struct hdrsel *h, const struct line *l)
{
	int *seen = NULL;

	if (has_prefix(l, "Received:"))
		seen = &h->received;
	else if (has_prefix(l, "Delivered-To:"))
		seen = &h->delivered;
	else if (has_prefix(l, "X-Delivery-ID:"))
		seen = &h->delivery_id;
	else if (has_prefix(l, "Date:") && !h->received)
		seen = &h->date;
	else if (has_prefix(l, "Message-ID:") && !h->received)
		seen = &h->msgid;
	if (seen == NULL || *seen)
		return 0;
	*seen = 1;
	return 1;
}

struct parse {
	struct maildrop *md;
	size_t cap;
	struct msg *m;                  /* the message being read, or NULL */
	struct md5 ctx;
	struct hdrsel sel;
	int in_header;
	off_t body_start;               /* after the header's blank line */
	int blank_pending;              /* the last line was blank: separator or content? */
	off_t blank_start;
};

static void
end_message(struct parse *p, off_t end)
{
	char tail[40];
	off_t body;

	if (p->m == NULL)
		return;
	p->m->end = end;
	body = p->in_header ? end : p->body_start;
	snprintf(tail, sizeof(tail), "body=%jd\n", (intmax_t)(end > body ? end - body : 0));
	md5_update(&p->ctx, tail, strlen(tail));
	md5_final(&p->ctx, p->m->digest);
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
	memset(&p->sel, 0, sizeof(p->sel));
	p->in_header = 1;
	p->blank_pending = 0;
	md5_init(&p->ctx);
	return 0;
}

/* A line of the message begins (not a From_ line starting the next one):
 * where its octets go for the UIDL digest, if anywhere. */
static struct md5 *
message_line(struct parse *p, const struct line *l, int blank)
{
	if (p->blank_pending) {         /* the blank line was content after all */
		p->m->size += 2;
		p->blank_pending = 0;
	}
	if (blank || !p->in_header)
		return NULL;
	if (l->head[0] != ' ' && l->head[0] != '\t')
		p->sel.current = select_field(&p->sel, l);
	return p->sel.current ? &p->ctx : NULL;
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
	p->blank_start = l->start;
	if (p->in_header) {
		p->in_header = 0;
		p->body_start = l->start + (off_t)l->len;
	}
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
		struct md5 *feed = NULL;

		if (starts) {
			end_message(&p, p.blank_pending ? p.blank_start : l.start);
			if (begin_message(&p, &l, err, errlen) < 0)
				return MD_PERM;
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
		else
			message_line_done(&p, &l, blank);
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

int
mbox_load(struct maildrop *md, char *err, size_t errlen)
{
	struct scan *s;
	int r;

	md->fd = open(md->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (md->fd < 0 && errno == ENOENT)
		return MD_OK;           /* no mail yet: an empty maildrop */
	if (md->fd < 0) {
		snprintf(err, errlen, "%s: %s", md->path, strerror(errno));
		return errno == ELOOP || errno == EACCES ? MD_PERM : MD_TEMP;
	}
	if (fstat(md->fd, &md->st) < 0 || !S_ISREG(md->st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", md->path);
		return MD_PERM;
	}
	if (lock_mbox(md->fd, F_RDLCK) < 0) {
		snprintf(err, errlen, "%s: cannot lock (fcntl): %s", md->path, strerror(errno));
		return MD_TEMP;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", md->path);
		r = MD_TEMP;
	} else if (fstat(md->fd, &md->st) < 0) {
		snprintf(err, errlen, "%s: %s", md->path, strerror(errno));
		r = MD_TEMP;
	} else {
		s->fd = md->fd;
		s->limit = md->st.st_size;
		r = scan_mbox(md, s, err, errlen);
	}
	free(s);
	lock_mbox(md->fd, F_UNLCK);
	return r;
}

/* Has the mbox been changed other than by appending? */
int
mbox_check(struct maildrop *md, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(md->fd, &st) < 0 || st.st_size < md->st.st_size) {
		snprintf(err, errlen, "%s changed during the session", md->path);
		return MD_TEMP;
	}
	return MD_OK;
}

/* ---- update ---- */

/* Copy len octets from src to dst (dst <= src) within the file. */
static int
copy_down(int fd, off_t src, off_t dst, off_t len)
{
	char buf[MBOX_READ_SIZE];

	while (len > 0) {
		size_t want = len < (off_t)sizeof(buf) ? (size_t)len : sizeof(buf);
		ssize_t n = pread(fd, buf, want, src), w;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		for (ssize_t done = 0; done < n; done += w) {
			w = pwrite(fd, buf + done, (size_t)(n - done), dst + done);
			if (w < 0 && errno == EINTR)
				w = 0;
			else if (w <= 0)
				return -1;
		}
		src += n;
		dst += n;
		len -= n;
	}
	return 0;
}

/* Rewrite from the first deleted message: kept regions, then what was
 * appended since the load. Returns the new length, or -1. */
static off_t
compact(struct maildrop *md, off_t now)
{
	off_t loaded = md->st.st_size, w = -1;
	size_t i;

	for (i = 0; i < md->count; i++) {
		struct msg *m = &md->msgs[i];
		off_t next = i + 1 < md->count ? md->msgs[i + 1].start : loaded;

		if (w < 0 && m->deleted)
			w = m->start;
		if (w < 0 || m->deleted)
			continue;
		if (copy_down(md->fd, m->start, w, next - m->start) < 0)
			return -1;
		w += next - m->start;
	}
	if (w < 0)
		return now;
	if (now > loaded && copy_down(md->fd, loaded, w, now - loaded) < 0)
		return -1;
	return w + (now - loaded);
}

int
mbox_update(struct maildrop *md, char *err, size_t errlen)
{
	struct stat st;
	off_t len;
	size_t i;
	int r = MD_OK;

	for (i = 0; i < md->count && !md->msgs[i].deleted; i++)
		;
	if (i == md->count)
		return MD_OK;           /* nothing deleted: nothing to write */
	md->not_removed = 0;
	for (; i < md->count; i++)
		md->not_removed += md->msgs[i].deleted;
	if (lock_mbox(md->fd, F_WRLCK) < 0) {
		snprintf(err, errlen, "%s: cannot lock (fcntl): %s", md->path, strerror(errno));
		return MD_TEMP;
	}
	if (fstat(md->fd, &st) < 0 || st.st_size < md->st.st_size) {
		snprintf(err, errlen, "%s changed during the session; nothing deleted", md->path);
		r = MD_TEMP;
	} else if ((len = compact(md, st.st_size)) < 0 || ftruncate(md->fd, len) < 0 ||
	    fsync(md->fd) < 0) {
		snprintf(err, errlen, "%s: update failed: %s", md->path, strerror(errno));
		r = MD_TEMP;
	}
	lock_mbox(md->fd, F_UNLCK);
	if (r == MD_OK)
		md->not_removed = 0;
	return r;
}
