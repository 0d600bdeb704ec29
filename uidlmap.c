/*
 * uidlmap.c - the UIDLs of -U: which message keeps the UIDL another server
 * gave it, and what the others get.
 *
 * Sources, in the order -U lists them; the first that names a message, with
 * a value it may use, gives its UIDL; a message none names has pop3d's own.
 *  - dovecot (Maildir): <Maildir>/dovecot-uidlist, read as the user at every
 *    login: a P field's value, else "%08x%08x" of the UID and UIDVALIDITY
 *    (Dovecot's default pop3_uidl_format %08Xu%08Xv). Messages are listed in
 *    Dovecot's order: O fields first, then by UID, then the files it did not
 *    list, in pop3d's own order. The first session with it records the
 *    list's UIDVALIDITY and next UID; later ones take only UIDs of that
 *    UIDVALIDITY below that next UID (see dovecot_load).
 *  - xuidl (mbox, Maildir) and popa3d (mbox): recorded. The first session
 *    with the source reads the value of every message then in the maildrop
 *    (the header's first X-UIDL field; popa3d's MD5) and writes them to a
 *    record in the state directory, keyed by each message's own pop3d UIDL;
 *    later sessions take the values from the record only, so mail that
 *    arrives later never gets one, whatever its header says. A value that
 *    two recorded messages share goes to neither (xuidl: anyone can write
 *    an X-UIDL field) or to the first in the mbox (popa3d: the messages
 *    popa3d named alike, of which the first is the one a client fetched).
 *
 * Unique and stable: a value from a source is not used when an earlier
 * source in -U holds it at all (for any message, here or not); a value two
 * messages share within a source goes to neither; and pop3d's own UIDL of a
 * message no source names is replaced ("displaced") when any source holds
 * it, by the MD5 of "<own UIDL>:<k>", k = 1, 2, ... the first not held.
 * What a source holds does not depend on which messages are there (the
 * records are frozen, the uidlist is Dovecot's and only its UIDs below the
 * recorded next UID count), so no message's UIDL changes when others are
 * deleted or delivered.
 *
 * A record: <statedir>/<md5 of "pop3d-uidl-record:<path>">.<source>, root's,
 * 0600, made and locked (flock) by root before the switch to the user and
 * kept open for the session, which writes it once: "pop3d uidl record 1",
 * "source S", "path P", then "<own UIDL> <value>" lines sorted by own UIDL,
 * then "end <count> <XXH3-128 of all before>". One that does not check out
 * (a first session that died while writing it) counts as not made. The
 * state directory's hourly clean-up (maildrop.c) removes such torn records
 * and those whose maildrop is gone and no session used for
 * UIDL_RECORD_KEEP seconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "maildrop.h"
#include "md5.h"
#include "uidlmap.h"
#include "uidlsrc.h"
#include "xxh3.h"

#define UIDLIST_NAME "dovecot-uidlist"
#define RECORD_MAGIC "pop3d uidl record 1"

/* msg.src: the source (SRC_*) in the low bits, and what alt holds. */
#define SRCF_STR 0x08                   /* alt: a value's offset in um->str */
#define SRCF_DISPLACED 0x10             /* alt: k of a displaced own UIDL */
#define SRCF_LISTED 0x20                /* (while loading) in the uidlist, alt its UID */

struct pval {                           /* a P field of the uidlist */
	uint32_t uid;
	uint32_t off;                   /* the value in um->str */
	int usable;                     /* a valid UIDL no other value may equal */
};

struct oval {                           /* an O field of the uidlist */
	uint32_t uid, order;
};

struct record {                         /* a record, read into um->str */
	int src;
	size_t n;
	uint32_t *keys;                 /* entries "own\0value\0", by own UIDL */
	uint32_t *vals;                 /* the same, by value */
};

struct uidmap {
	char *str;                      /* values: P fields, records */
	size_t len, cap;
	int dovecot;                    /* the uidlist lists messages this session */
	int dv_transient;               /* it could not be read now: try again later */
	int shape;                      /* Dovecot's values are held (see held()) */
	uint32_t uidvalidity;           /* its UIDVALIDITY (the recorded one) */
	uint32_t next_uid;              /* above every UID it lists */
	struct pval *pv;                /* by UID (the uidlist's order) */
	size_t npv;
	uint32_t *psort;                /* indexes of pv with a valid value, by value */
	size_t npv_sorted;
	struct oval *ov;                /* by UID */
	size_t nov;
	struct record rec[UIDL_SOURCES_MAX];
	size_t count[SRC_POPA3D + 1];   /* messages named by each source; [0] own */
	size_t displaced;
};

/* ---- helpers ---- */

/* Room for n more octets in um->str: 0, or -1 (too much, or no memory). */
static int
reserve(struct uidmap *um, size_t n)
{
	size_t cap;
	char *q;

	if (um->len + n > UINT32_MAX)
		return -1;
	if (um->len + n <= um->cap)
		return 0;
	cap = um->cap ? um->cap * 2 : 4096;
	if (cap < um->len + n)
		cap = um->len + n;
	if ((q = realloc(um->str, cap)) == NULL)
		return -1;
	um->str = q;
	um->cap = cap;
	return 0;
}

static int
append(struct uidmap *um, const void *p, size_t n, uint32_t *off)
{
	if (reserve(um, n) < 0)
		return -1;
	if (off != NULL)
		*off = (uint32_t)um->len;
	memcpy(um->str + um->len, p, n);
	um->len += n;
	return 0;
}

static int
pread_full(int fd, char *buf, size_t n, off_t off, size_t *got)
{
	ssize_t r;

	*got = 0;
	while (*got < n) {
		r = pread(fd, buf + *got, n - *got, off + (off_t)*got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		*got += (size_t)r;
	}
	return 0;
}

/* The maildrop's path without trailing slashes: what names its records. */
static void
norm_path(const char *path, char *out, size_t len)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	snprintf(out, len, "%.*s", (int)n, path);
}

/* Sources with a record: all three, where they apply. */
static int
recorded(const struct maildrop *md, int src)
{
	return src == SRC_XUIDL || (src == SRC_POPA3D && md->kind == KIND_MBOX) ||
	    (src == SRC_DOVECOT && md->kind == KIND_MAILDIR);
}

/* Is the message's value, held in a 16-hex-digit shape with this
 * UIDVALIDITY, one Dovecot's default format could give? */
static int
dovecot_shaped(const struct uidmap *um, const char *v)
{
	char tail[9];

	if (strlen(v) != 16 || strspn(v, "0123456789abcdef") != 16)
		return 0;
	snprintf(tail, sizeof(tail), "%08" PRIx32, um->uidvalidity);
	return memcmp(v + 8, tail, 8) == 0;
}

/* ---- the records: made and locked as root ---- */

static void
record_name(const char *path, int src, char name[48])
{
	char norm[MAX_PATH], hex[33];
	unsigned char d[16];
	struct md5 ctx;

	norm_path(path, norm, sizeof(norm));
	md5_init(&ctx);
	md5_update(&ctx, "pop3d-uidl-record:", 18);
	md5_update(&ctx, norm, strlen(norm));
	md5_final(&ctx, d);
	md5_hex(d, hex);
	snprintf(name, 48, "%s.%s", hex, uidl_source_name(src));
}

int
uidlmap_records_open(struct maildrop *md, int dirfd, const char *lockdir, char *err,
    size_t errlen)
{
	struct timespec pause = { 0, 5 * 1000000L };
	char name[48];
	int k, fd, tries;

	for (k = 0; k < md->nsources; k++) {
		if (!recorded(md, md->sources[k]))
			continue;
		record_name(md->path, md->sources[k], name);
		/* The clean-up holds a record's lock for a moment; a session of
		 * the same maildrop, for all of its time. */
		for (tries = 0; (fd = state_lock_file(dirfd, name)) < 0 && errno == EWOULDBLOCK &&
		    tries < UIDL_RECORD_TRIES; tries++)
			nanosleep(&pause, NULL);
		if (fd < 0) {
			int busy = errno == EWOULDBLOCK;

			snprintf(err, errlen, "UIDL record %s/%s: %s", lockdir, name, strerror(errno));
			return busy ? MD_INUSE : MD_TEMP;
		}
		(void)futimens(fd, NULL);       /* used: see uidlmap_gc */
		md->recfd[k] = fd;
	}
	return MD_OK;
}

/* ---- the records: read and written by the session ---- */

static int
cmp_val(const void *a, const void *b, void *str)
{
	const char *x = (const char *)str + *(const uint32_t *)a, *y = (const char *)str + *(const uint32_t *)b;

	return strcmp(x + strlen(x) + 1, y + strlen(y) + 1);
}

/* Check and index the record text at um->str[off, off + len) in place: 0,
 * or -1 with why (malformed; then it counts as not made). */
static int
record_parse(struct uidmap *um, struct record *r, const struct maildrop *md, size_t off,
    size_t len, const char **why)
{
	char *p = um->str + off, *end = p + len, *lf, *sp, want[MAX_PATH + 16], norm[MAX_PATH];
	unsigned char sum[16];
	char hex[33], tail[80];
	size_t n = 0, i, cap = 0;
	struct xxh3 x;

	*why = "malformed";
	norm_path(md->path, norm, sizeof(norm));
	snprintf(want, sizeof(want), RECORD_MAGIC "\nsource %s\npath ", uidl_source_name(r->src));
	if (len < strlen(want) || memcmp(p, want, strlen(want)) != 0)
		return *why = "not a record of this source", -1;
	p += strlen(want);
	if ((lf = memchr(p, '\n', (size_t)(end - p))) == NULL || (size_t)(lf - p) != strlen(norm) ||
	    memcmp(p, norm, strlen(norm)) != 0)
		return *why = "not this maildrop's record", -1;
	p = lf + 1;
	xxh3_init(&x);
	xxh3_update(&x, um->str + off, (size_t)(p - (um->str + off)));
	for (;;) {
		if ((lf = memchr(p, '\n', (size_t)(end - p))) == NULL)
			return *why = "torn (no end line)", -1;
		if ((size_t)(lf - p) > 4 && memcmp(p, "end ", 4) == 0)
			break;
		xxh3_update(&x, p, (size_t)(lf - p) + 1);      /* before it is cut up */
		if ((sp = memchr(p, ' ', (size_t)(lf - p))) == NULL ||
		    !uidl_valid(p, (size_t)(sp - p)) || !uidl_valid(sp + 1, (size_t)(lf - sp - 1)))
			return *why = "a malformed entry", -1;
		if (n == cap) {
			uint32_t *k;

			if (n == MAX_MESSAGES)
				return *why = "more entries than MAX_MESSAGES", -1;
			cap = cap ? cap * 2 : 256;
			if ((k = reallocarray(r->keys, cap, sizeof(*k))) == NULL)
				return *why = "out of memory", -1;
			r->keys = k;
		}
		*sp = '\0';
		*lf = '\0';
		r->keys[n] = (uint32_t)(p - um->str);
		if (n > 0 && strcmp(um->str + r->keys[n - 1], p) >= 0)
			return *why = "entries not in order", -1;
		n++;
		p = lf + 1;
	}
	/* "end <count> <sum>": the sum of every octet before it */
	xxh3_final(&x, sum);
	md5_hex(sum, hex);
	snprintf(tail, sizeof(tail), "end %zu %s", n, hex);
	if ((size_t)(lf - p) != strlen(tail) || memcmp(p, tail, strlen(tail)) != 0 || lf + 1 != end)
		return *why = "torn (a bad end line)", -1;
	r->n = n;
	if (r->src == SRC_DOVECOT)
		return 0;               /* (no values: its UIDVALIDITY and next UID) */
	if (n > 0 && (r->vals = calloc(n, sizeof(*r->vals))) == NULL)
		return *why = "out of memory", -1;
	if (n > 0)
		memcpy(r->vals, r->keys, n * sizeof(*r->vals));
	if (n > 1)
		qsort_r(r->vals, n, sizeof(*r->vals), cmp_val, um->str);
	for (i = 1; i < n; i++)
		if (cmp_val(&r->vals[i - 1], &r->vals[i], um->str) == 0)
			return *why = "a value twice", -1;
	return 0;
}

/* The record's value for own UIDL key, or NULL. */
static const char *
record_lookup(const struct uidmap *um, const struct record *r, const char *key)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *k = um->str + r->keys[mid];
		int c = strcmp(key, k);

		if (c == 0)
			return k + strlen(k) + 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Does the record hold value v, for any message? */
static int
record_holds(const struct uidmap *um, const struct record *r, const char *v)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *k = um->str + r->vals[mid];
		int c = strcmp(v, k + strlen(k) + 1);

		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

/* ---- what the first session records ---- */

struct found {                          /* a message's value, found by a scan */
	size_t msg;
	char value[UIDL_LEN];
};

struct scan {
	struct found *f;
	size_t n, cap;
};

static int
found_add(struct scan *sc, size_t msg, const char *value)
{
	if (sc->n == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 64;
		struct found *p = reallocarray(sc->f, cap, sizeof(*p));

		if (p == NULL)
			return -1;
		sc->f = p;
		sc->cap = cap;
	}
	sc->f[sc->n].msg = msg;
	snprintf(sc->f[sc->n].value, UIDL_LEN, "%s", value);
	sc->n++;
	return 0;
}

/* Feed x the header lines of fd's octets [off, end) (end < 0: to the end
 * of the file), at most HEADER_SCAN_MAX of them: 0, or -1 (read error). */
static int
scan_header(int fd, off_t off, off_t end, struct xuidl *x)
{
	char buf[8192], head[HEADER_LINE_MAX];
	size_t nhead = 0, linelen = 0, got, want, i;
	uint64_t seen = 0;

	while (seen < HEADER_SCAN_MAX) {
		want = sizeof(buf);
		if (end >= 0 && (off_t)want > end - off)
			want = (size_t)(end - off);
		if (want == 0)
			break;
		if (pread_full(fd, buf, want, off, &got) < 0)
			return -1;
		if (got == 0)
			break;
		for (i = 0; i < got;) {
			const char *lf = memchr(buf + i, '\n', got - i);
			size_t k = lf != NULL ? (size_t)(lf - (buf + i)) + 1 : got - i;
			size_t take = k < sizeof(head) - nhead ? k : sizeof(head) - nhead;

			memcpy(head + nhead, buf + i, take);
			nhead += take;
			linelen += k;
			i += k;
			if (lf != NULL) {
				if (xuidl_line(x, head, nhead, linelen))
					return 0;
				nhead = linelen = 0;
			}
		}
		off += (off_t)got;
		seen += got;
	}
	if (linelen > 0 && seen < HEADER_SCAN_MAX)
		(void)xuidl_line(x, head, nhead, linelen);      /* a last line without LF */
	return 0;
}

static int
scan_xuidl(struct maildrop *md, struct scan *sc, char *err, size_t errlen)
{
	char e[512];
	size_t i;

	for (i = 0; i < md->count; i++) {
		struct xuidl x;
		int r;

		xuidl_init(&x);
		if (md->kind == KIND_MBOX) {
			r = scan_header(md->fd, md->msgs[i].body, md->msgs[i].end, &x);
		} else {
			if (maildrop_open_msg(md, i, 0, e, sizeof(e)) != MD_OK)
				continue;       /* gone, or not the user's: not served */
			r = scan_header(md->msgfd, 0, -1, &x);
		}
		if (r < 0) {
			snprintf(err, errlen, "reading message %zu: %s", i + 1, strerror(errno));
			return -1;
		}
		if (xuidl_value(&x) != NULL && found_add(sc, i, xuidl_value(&x)) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (md->msgfd >= 0 && md->msgfd != md->fd)
		close(md->msgfd);
	md->msgfd = -1;
	return 0;
}

struct pmatch {
	struct maildrop *md;
	struct scan *sc;
	size_t j;
	uint64_t size;
	int nomem;
};

/* A message popa3d found: it is pop3d's message j when both start at the
 * same From_ line and end at the same place. */
static void
popa3d_found(void *arg, uint64_t start, uint64_t end, const unsigned char *d)
{
	struct pmatch *pm = arg;
	const struct msg *m = pm->md->msgs;
	size_t n = pm->md->count;
	char v[17];

	while (pm->j < n && (uint64_t)m[pm->j].start < start)
		pm->j++;
	if (pm->j == n || (uint64_t)m[pm->j].start != start ||
	    (pm->j + 1 < n ? (uint64_t)m[pm->j + 1].start != end : end != pm->size))
		return;
	popa3d_uidl(d, v);
	if (found_add(pm->sc, pm->j, v) < 0)
		pm->nomem = 1;
}

static int
scan_popa3d(struct maildrop *md, struct scan *sc, char *err, size_t errlen, const char **refused)
{
	struct pmatch pm = { md, sc, 0, 0, 0 };
	struct popa3d p;
	char *buf;
	size_t got;
	off_t off = 0;

	*refused = NULL;
	if (md->fd < 0)
		return 0;
	pm.size = (uint64_t)md->st.st_size;
	if (md->st.st_size > POPA3D_MAX_MBOX) {
		*refused = "over 2 GB";
		return 0;
	}
	if ((buf = malloc(POPA3D_BLOCK)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	popa3d_init(&p, popa3d_found, &pm);
	while (off < md->st.st_size) {
		size_t want = POPA3D_BLOCK;

		if ((off_t)want > md->st.st_size - off)
			want = (size_t)(md->st.st_size - off);
		if (pread_full(md->fd, buf, want, off, &got) < 0 || got < want) {
			snprintf(err, errlen, "read: %s", got < want ? "the mbox shrank" : strerror(errno));
			free(buf);
			return -1;
		}
		popa3d_feed(&p, buf, got);
		off += (off_t)got;
	}
	free(buf);
	if (pm.nomem) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (popa3d_end(&p) < 0) {
		*refused = "not an mbox popa3d would open: it does not start with a From_ line, "
		    "or has a From_ line with no line after it";
		sc->n = 0;
	}
	return 0;
}

static int
cmp_found_value(const void *a, const void *b)
{
	const struct found *x = a, *y = b;
	int c = strcmp(x->value, y->value);

	if (c != 0)
		return c;
	return x->msg < y->msg ? -1 : x->msg > y->msg;
}

/* Values two messages share: xuidl's go to neither, popa3d's to the first. */
static void
dedupe(struct scan *sc, int src)
{
	size_t i, j, n = 0;

	if (sc->n > 1)
		qsort(sc->f, sc->n, sizeof(*sc->f), cmp_found_value);
	for (i = 0; i < sc->n; i = j) {
		for (j = i + 1; j < sc->n && strcmp(sc->f[j].value, sc->f[i].value) == 0; j++)
			;
		if (j - i == 1 || src == SRC_POPA3D)
			sc->f[n++] = sc->f[i];
	}
	sc->n = n;
}

static int
cmp_pair(const void *a, const void *b, void *keys)
{
	return strcmp(((const char *const *)keys)[*(const size_t *)a],
	    ((const char *const *)keys)[*(const size_t *)b]);
}

/* A record's text, into um->str at *off: the n pairs keys[i], vals[i] (own
 * UIDL and value, or what the source keeps), by key. */
static int
record_build(const struct maildrop *md, struct uidmap *um, int src, const char *const *keys,
    const char *const *vals, size_t n, size_t *off, size_t *len)
{
	char line[2 * UIDL_LEN + 8], norm[MAX_PATH], hex[33];
	unsigned char sum[16];
	size_t i, *order = NULL;
	int r = -1;

	norm_path(md->path, norm, sizeof(norm));
	if (n > 0 && (order = calloc(n, sizeof(*order))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		order[i] = i;
	if (n > 1)
		qsort_r(order, n, sizeof(*order), cmp_pair, (void *)keys);
	*off = um->len;
	snprintf(line, sizeof(line), RECORD_MAGIC "\nsource %s\npath ", uidl_source_name(src));
	if (append(um, line, strlen(line), NULL) < 0 || append(um, norm, strlen(norm), NULL) < 0 ||
	    append(um, "\n", 1, NULL) < 0)
		goto out;
	for (i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "%s %s\n", keys[order[i]], vals[order[i]]);
		if (append(um, line, strlen(line), NULL) < 0)
			goto out;
	}
	xxh3_128(um->str + *off, um->len - *off, sum);
	md5_hex(sum, hex);
	snprintf(line, sizeof(line), "end %zu %s\n", n, hex);
	if (append(um, line, strlen(line), NULL) < 0)
		goto out;
	*len = um->len - *off;
	r = 0;
out:
	free(order);
	return r;
}

static int
record_write(int fd, const char *p, size_t n)
{
	size_t done = 0;
	ssize_t w;

	if (ftruncate(fd, 0) < 0)
		return -1;
	while (done < n) {
		w = pwrite(fd, p + done, n - done, (off_t)done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		done += (size_t)w;
	}
	return fsync(fd);
}

static void
record_drop(struct record *r)
{
	free(r->keys);
	free(r->vals);
	r->keys = r->vals = NULL;
	r->n = 0;
}

/* Write the record built at um->str[off, off + len) and index it. 0; 1
 * (logged) when nothing of the source may be used, now or later (the same
 * every session); -1 with err when the record cannot be written: this
 * session must not use values no later session would see (it is made again
 * at the next login). */
static int
record_finish(const struct maildrop *md, struct uidmap *um, struct record *r, int fd,
    size_t off, size_t len, char *err, size_t errlen)
{
	const char *why;

	if (record_write(fd, um->str + off, len) < 0) {
		snprintf(err, errlen, "%s: -U %s: cannot write its record: %s; made again at the "
		    "next login", md->path, uidl_source_name(r->src), strerror(errno));
		(void)ftruncate(fd, 0);
		record_drop(r);
		return -1;
	}
	if (record_parse(um, r, md, off, len, &why) < 0) {
		syslog(LOG_ERR, "error %s: -U %s: %s", md->path, uidl_source_name(r->src), why);
		record_drop(r);
		return 1;
	}
	return 0;
}

/* This session records xuidl or popa3d: scan, then write. MD_OK (with
 * nothing of the source when what it would record can never be used,
 * logged), or MD_TEMP with err when the maildrop changed during the scan,
 * memory ran out or the record cannot be written: then the login is
 * refused, as this session would otherwise give UIDLs the next one does not
 * (it is made again then). */
static int
record_make(struct maildrop *md, struct uidmap *um, struct record *r, int fd, char *errout,
    size_t errlen)
{
	struct uidmap scratch = { 0 };
	struct scan sc = { 0 };
	const char *refused = NULL, **keys = NULL, **vals = NULL;
	char err[512] = "", own[UIDL_LEN];
	uint32_t *at = NULL;
	size_t i, off, len;
	int k;

	k = r->src == SRC_XUIDL ? scan_xuidl(md, &sc, err, sizeof(err)) :
	    scan_popa3d(md, &sc, err, sizeof(err), &refused);
	if (k == 0 && md->kind == KIND_MBOX && md->fd >= 0 && mbox_verify(md, err, sizeof(err)) != MD_OK)
		k = -1;                 /* changed meanwhile: next time */
	if (k < 0) {
		snprintf(errout, errlen, "%s: -U %s: %s: nothing recorded; made at the next login",
		    md->path, uidl_source_name(r->src), err);
		free(sc.f);
		return MD_TEMP;
	}
	if (refused != NULL)
		syslog(LOG_WARNING, "warning %s: -U popa3d: %s: no message keeps a popa3d UIDL",
		    md->path, refused);
	dedupe(&sc, r->src);
	k = -1;
	if (sc.n > 0 && ((keys = calloc(sc.n, sizeof(*keys))) == NULL ||
	    (vals = calloc(sc.n, sizeof(*vals))) == NULL || (at = calloc(sc.n, sizeof(*at))) == NULL))
		goto out;
	for (i = 0; i < sc.n; i++) {
		maildrop_own_uidl(md, sc.f[i].msg, own);
		if (append(&scratch, own, strlen(own) + 1, &at[i]) < 0)
			goto out;
		vals[i] = sc.f[i].value;
	}
	for (i = 0; i < sc.n; i++)
		keys[i] = scratch.str + at[i];
	k = record_build(md, um, r->src, keys, vals, sc.n, &off, &len);
out:
	free(scratch.str);
	free(keys);
	free(vals);
	free(at);
	free(sc.f);
	if (k < 0) {
		snprintf(errout, errlen, "%s: -U %s: out of memory", md->path,
		    uidl_source_name(r->src));
		return MD_TEMP;
	}
	if ((k = record_finish(md, um, r, fd, off, len, errout, errlen)) != 0)
		return k < 0 ? MD_TEMP : MD_OK;
	syslog(LOG_INFO, "uidl record %s: %s: %zu message%s recorded", md->path,
	    uidl_source_name(r->src), r->n, r->n == 1 ? "" : "s");
	return MD_OK;
}

enum { REC_VALID, REC_MAKE, REC_SKIP };

/* Read the record of source k into um->str and index it: *state REC_VALID;
 * REC_MAKE when there is none yet, or a torn or corrupt one (logged);
 * REC_SKIP when it cannot be read (logged). MD_OK, or MD_TEMP. */
static int
record_read(const struct maildrop *md, struct uidmap *um, int k, int *state, char *err,
    size_t errlen)
{
	struct record *r = &um->rec[k];
	struct stat st;
	const char *why = NULL;
	size_t off = um->len, got = 0, len;
	int fd = md->recfd[k];

	r->src = md->sources[k];
	*state = REC_SKIP;
	if (fd < 0)
		return MD_OK;
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: -U %s: its record: %s", md->path,
		    uidl_source_name(r->src), strerror(errno));
		return MD_TEMP;
	}
	*state = REC_MAKE;
	if (st.st_size > 0 && (unsigned long long)st.st_size <= UIDL_RECORD_MAX) {
		len = (size_t)st.st_size;
		if (reserve(um, len) < 0) {
			snprintf(err, errlen, "%s: -U %s: out of memory", md->path,
			    uidl_source_name(r->src));
			return MD_TEMP;
		}
		if (pread_full(fd, um->str + off, len, 0, &got) < 0) {
			snprintf(err, errlen, "%s: -U %s: reading its record: %s", md->path,
			    uidl_source_name(r->src), strerror(errno));
			return MD_TEMP;
		}
		um->len += got;
		if (got == len && record_parse(um, r, md, off, got, &why) == 0) {
			*state = REC_VALID;
			return MD_OK;
		}
		if (got != len)
			why = "shorter than its size";
		record_drop(r);
		um->len = off;
	} else if (st.st_size > 0) {
		why = "too large";
	}
	if (why != NULL)
		syslog(LOG_WARNING, "warning %s: -U %s: its record is %s: recording again",
		    md->path, uidl_source_name(r->src), why);
	return MD_OK;
}

/* The record of xuidl or popa3d: read it, or make it. */
static int
record_load(struct maildrop *md, struct uidmap *um, int k, char *err, size_t errlen)
{
	int state, r;

	if ((r = record_read(md, um, k, &state, err, errlen)) != MD_OK || state != REC_MAKE)
		return r;
	return record_make(md, um, &um->rec[k], md->recfd[k], err, errlen);
}

/* ---- dovecot-uidlist ---- */

/* SipHash-2-4 (Aumasson, Bernstein), keyed per session: the index of the
 * user's file names cannot be made to collide on purpose. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

static uint64_t
siphash(const uint64_t key[2], const char *p, size_t n)
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
	uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
	uint64_t m, b = (uint64_t)n << 56;
	size_t i, j;

	for (i = 0; i + 8 <= n; i += 8) {
		for (m = 0, j = 0; j < 8; j++)
			m |= (uint64_t)(unsigned char)p[i + j] << (8 * j);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (j = 0; i < n; i++, j++)
		b |= (uint64_t)(unsigned char)p[i] << (8 * j);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* The messages by their name up to its first ':' (as Dovecot finds a file
 * from a uidlist record), twins left out: they keep pop3d's own UIDLs. */
struct index {
	uint32_t *slot;                 /* message + 1, or 0 */
	size_t mask;
	uint64_t key[2];
};

static size_t
base_len(const char *name)
{
	const char *c = strchr(name, ':');

	return c != NULL ? (size_t)(c - name) : strlen(name);
}

static int
index_build(struct index *x, const struct maildrop *md)
{
	size_t size = 16, i, h;

	while (size < 2 * md->count)
		size *= 2;
	if ((x->slot = calloc(size, sizeof(*x->slot))) == NULL)
		return -1;
	x->mask = size - 1;
	if (getrandom(x->key, sizeof(x->key), GRND_NONBLOCK) != (ssize_t)sizeof(x->key)) {
		struct timespec t;

		clock_gettime(CLOCK_MONOTONIC, &t);
		x->key[0] = (uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
		x->key[1] = (uint64_t)t.tv_sec ^ (uint64_t)(uintptr_t)x;
	}
	for (i = 0; i < md->count; i++) {
		const char *name = md->names + md->msgs[i].name;

		if (md->msgs[i].twin)
			continue;
		for (h = siphash(x->key, name, base_len(name)) & x->mask; x->slot[h] != 0;
		    h = (h + 1) & x->mask)
			;
		x->slot[h] = (uint32_t)i + 1;
	}
	return 0;
}

static long
index_find(const struct index *x, const struct maildrop *md, const char *name, size_t n)
{
	size_t h;

	for (h = siphash(x->key, name, n) & x->mask; x->slot[h] != 0; h = (h + 1) & x->mask) {
		const char *m = md->names + md->msgs[x->slot[h] - 1].name;

		if (base_len(m) == n && memcmp(m, name, n) == 0)
			return (long)x->slot[h] - 1;
	}
	return -1;
}

static int
add_pval(struct uidmap *um, const struct dovecot_rec *r, size_t *cap)
{
	const char *v = r->plen > 0 ? r->p : r->name;     /* a bare P: the base name */
	size_t n = r->plen > 0 ? r->plen : r->namelen;
	struct pval *pv;

	if (um->npv == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		if ((pv = reallocarray(um->pv, *cap, sizeof(*pv))) == NULL)
			return -1;
		um->pv = pv;
	}
	pv = &um->pv[um->npv++];
	pv->uid = r->uid;
	pv->off = 0;
	pv->usable = uidl_valid(v, n);
	if (pv->usable && (append(um, v, n, &pv->off) < 0 || append(um, "", 1, NULL) < 0))
		return -1;
	return 0;
}

static int
add_oval(struct uidmap *um, const struct dovecot_rec *r, size_t *cap)
{
	struct oval *ov;

	if (um->nov == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		if ((ov = reallocarray(um->ov, *cap, sizeof(*ov))) == NULL)
			return -1;
		um->ov = ov;
	}
	um->ov[um->nov].uid = r->uid;
	um->ov[um->nov++].order = r->order;
	return 0;
}

struct reader {
	struct maildrop *md;
	struct uidmap *um;
	struct index x;
	struct dovecot_list l;
	size_t pcap, ocap;
	unsigned long lines, records;
};

/* One line of the uidlist: 0, -1 malformed (why), -2 out of memory. */
static int
uidlist_line(struct reader *rd, const char *line, size_t len, const char **why)
{
	struct dovecot_rec r;
	long i;
	int k;

	rd->lines++;
	if ((k = dovecot_line(&rd->l, line, len, &r, why)) <= 0)
		return k;
	if (++rd->records > 2UL * MAX_MESSAGES)
		return *why = "more than twice MAX_MESSAGES records", -1;
	if (r.has_p && add_pval(rd->um, &r, &rd->pcap) < 0)
		return -2;
	if ((i = index_find(&rd->x, rd->md, r.name, r.namelen)) < 0)
		return 0;               /* a file that is gone: Dovecot keeps its record a while */
	if (r.has_o && add_oval(rd->um, &r, &rd->ocap) < 0)
		return -2;
	/* A later record of the same file replaces an earlier one, as in Dovecot. */
	rd->md->msgs[i].alt = r.uid;
	rd->md->msgs[i].src = SRCF_LISTED;
	return 0;
}

static int
uidlist_read(struct reader *rd, int fd, const char **why)
{
	char *buf;
	size_t have = 0, start, cap = 65536;
	uint64_t total = 0;
	ssize_t n;
	int r = 0;

	if ((buf = malloc(cap)) == NULL)
		return -2;
	for (;;) {
		const char *lf;

		do
			n = read(fd, buf + have, cap - have);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			*why = strerror(errno);
			r = -3;         /* a read error: not the file's fault */
			break;
		}
		if (n == 0)
			break;          /* a last line without LF is being written: ignored */
		if ((total += (uint64_t)n) > DOVECOT_UIDLIST_MAX) {
			*why = "larger than DOVECOT_UIDLIST_MAX";
			r = -1;
			break;
		}
		have += (size_t)n;
		for (start = 0; r == 0 && (lf = memchr(buf + start, '\n', have - start)) != NULL;
		    start = (size_t)(lf - buf) + 1) {
			if ((size_t)(lf - (buf + start)) + 1 > DOVECOT_LINE_MAX) {
				*why = "a line longer than DOVECOT_LINE_MAX";
				r = -1;
			} else {
				r = uidlist_line(rd, buf + start, (size_t)(lf - (buf + start)), why);
			}
		}
		if (r != 0)
			break;
		if (have - start >= DOVECOT_LINE_MAX) {
			*why = "a line longer than DOVECOT_LINE_MAX";
			r = -1;
			break;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
	}
	free(buf);
	if (r == 0 && rd->l.version == 0) {
		*why = "empty (no header line)";
		r = -1;
	}
	return r;
}

static int
cmp_pval(const void *a, const void *b, void *um_)
{
	const struct uidmap *um = um_;

	return strcmp(um->str + um->pv[*(const uint32_t *)a].off,
	    um->str + um->pv[*(const uint32_t *)b].off);
}

/* P values no other value of the list may equal: not two alike (neither is
 * used), not one shaped like another UID's default UIDL. */
static int
pvals_check(struct uidmap *um)
{
	size_t i, j, n = 0;
	char own[17];

	for (i = 0; i < um->npv; i++)
		if (um->pv[i].usable)
			n++;
	if (n == 0)
		return 0;
	if ((um->psort = calloc(n, sizeof(*um->psort))) == NULL)
		return -1;
	for (i = 0, j = 0; i < um->npv; i++)
		if (um->pv[i].usable)
			um->psort[j++] = (uint32_t)i;
	um->npv_sorted = n;
	qsort_r(um->psort, n, sizeof(*um->psort), cmp_pval, um);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && cmp_pval(&um->psort[i], &um->psort[j], um) == 0; j++)
			;
		if (j - i > 1)
			for (; i < j; i++)
				um->pv[um->psort[i]].usable = 0;
	}
	for (i = 0; i < um->npv; i++) {
		const char *v = um->str + um->pv[i].off;

		snprintf(own, sizeof(own), "%08" PRIx32 "%08" PRIx32, um->pv[i].uid, um->uidvalidity);
		if (um->pv[i].usable && dovecot_shaped(um, v) && strcmp(v, own) != 0)
			um->pv[i].usable = 0;
	}
	return 0;
}

static void
unlist(struct maildrop *md)
{
	size_t i;

	for (i = 0; i < md->count; i++)
		md->msgs[i].src = 0;
}

/* The uidlist could not be read for a reason that may pass (an I/O error,
 * no descriptors, no permission): the login is refused, as this session
 * would otherwise give other UIDLs than the sessions before and after. */
static int
dovecot_unread(const struct maildrop *md, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s/%s: cannot be read now (logged above): -U dovecot would give "
	    "other UIDLs this session", md->path, UIDLIST_NAME);
	return MD_TEMP;
}

/* Read <Maildir>/dovecot-uidlist as the user; one that is missing,
 * malformed or of an unknown version is ignored, with a log line. */
static int
dovecot_read(struct maildrop *md, struct uidmap *um, char *err, size_t errlen)
{
	struct reader rd;
	struct stat st;
	const char *why = NULL;
	int fd, r;

	fd = openat(md->fd, UIDLIST_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && (errno == ENOENT || errno == ELOOP))
		why = errno == ENOENT ? "missing" : "a symbolic link";
	else if (fd < 0 || fstat(fd, &st) < 0)
		why = strerror(errno), um->dv_transient = 1;
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (st.st_uid != md->owner)
		why = "not the user's file";
	if (why != NULL) {
		syslog(LOG_WARNING, "warning %s/%s: %s: %s", md->path, UIDLIST_NAME, why,
		    um->dv_transient ? "the login is refused" :
		    "-U dovecot gives no message a Dovecot UIDL");
		if (fd >= 0)
			close(fd);
		return MD_OK;
	}
	memset(&rd, 0, sizeof(rd));
	rd.md = md;
	rd.um = um;
	if (index_build(&rd.x, md) < 0) {
		close(fd);
		goto nomem;
	}
	r = uidlist_read(&rd, fd, &why);
	close(fd);
	free(rd.x.slot);
	if (r == -2)
		goto nomem;
	if (r < 0) {            /* -1 malformed, -3 unreadable */
		um->dv_transient = r == -3;
		syslog(LOG_WARNING, "warning %s/%s: %s (line %lu): %s", md->path, UIDLIST_NAME,
		    why, rd.lines, um->dv_transient ? "the login is refused" :
		    "ignored, -U dovecot gives no message a Dovecot UIDL");
		unlist(md);
		free(um->pv);
		free(um->ov);
		um->pv = NULL;
		um->ov = NULL;
		um->npv = um->nov = 0;
		return MD_OK;
	}
	um->dovecot = 1;
	um->uidvalidity = rd.l.uidvalidity;
	/* (Dovecot appends records without updating the header's next UID) */
	um->next_uid = rd.l.next_uid > rd.l.prev_uid ? rd.l.next_uid : rd.l.prev_uid + 1;
	if (pvals_check(um) < 0)
		goto nomem;
	return MD_OK;
nomem:
	unlist(md);
	snprintf(err, errlen, "%s/%s: out of memory", md->path, UIDLIST_NAME);
	return MD_TEMP;
}

static const struct pval *
pval_of(const struct uidmap *um, uint32_t uid)
{
	size_t lo = 0, hi = um->npv;

	while (lo < hi) {               /* by UID: the records' order */
		size_t mid = lo + (hi - lo) / 2;

		if (um->pv[mid].uid == uid)
			return &um->pv[mid];
		if (um->pv[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int
pval_held(const struct uidmap *um, const char *v)
{
	size_t lo = 0, hi = um->npv_sorted;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(v, um->str + um->pv[um->psort[mid]].off);

		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

/* Dovecot's order: messages with an O field first, by it; then the others
 * it listed, by UID; then the rest in pop3d's own order. */
static void
order_key(const struct uidmap *um, const struct msg *m, uint64_t key[2])
{
	size_t lo = 0, hi = um->nov;

	if (!(m->src & SRCF_LISTED)) {
		key[0] = 2ULL << 32;
		key[1] = m->alt;        /* (its place in pop3d's order) */
		return;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (um->ov[mid].uid == m->alt) {
			key[0] = um->ov[mid].order;
			key[1] = m->alt;
			return;
		}
		if (um->ov[mid].uid < m->alt)
			lo = mid + 1;
		else
			hi = mid;
	}
	key[0] = 1ULL << 32;
	key[1] = m->alt;
}

static int
cmp_order(const void *a, const void *b, void *um)
{
	uint64_t x[2], y[2];

	order_key(um, a, x);
	order_key(um, b, y);
	if (x[0] != y[0])
		return x[0] < y[0] ? -1 : 1;
	return x[1] < y[1] ? -1 : x[1] > y[1];
}

static void
dovecot_order(struct maildrop *md, struct uidmap *um)
{
	size_t i;
	int sorted = 1;

	for (i = 0; i < md->count; i++)
		if (!(md->msgs[i].src & SRCF_LISTED))
			md->msgs[i].alt = (uint32_t)i;
	for (i = 1; i < md->count && sorted; i++)
		sorted = cmp_order(&md->msgs[i - 1], &md->msgs[i], um) < 0;
	if (!sorted)
		qsort_r(md->msgs, md->count, sizeof(md->msgs[0]), cmp_order, um);
}

/* Messages with a UID from next on were numbered by Dovecot after pop3d's
 * first session: no client saw their Dovecot UIDL. */
static void
unlist_from(struct maildrop *md, uint32_t next)
{
	size_t i;

	for (i = 0; i < md->count; i++)
		if ((md->msgs[i].src & SRCF_LISTED) && md->msgs[i].alt >= next)
			md->msgs[i].src = 0;
}

static int
number32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* -U dovecot. Its record, made by pop3d's first session with it, keeps the
 * uidlist's UIDVALIDITY and next UID of then (or nothing, when there was no
 * usable uidlist): later sessions list only the messages Dovecot had
 * numbered by then, so a message pop3d once named by its own UIDL never
 * takes a Dovecot UIDL later, when Dovecot (IMAP, its LDA) goes on running
 * and numbers it. */
static int
dovecot_load(struct maildrop *md, struct uidmap *um, int k, char *err, size_t errlen)
{
	struct record *rec = &um->rec[k];
	char vbuf[16], nbuf[16];
	const char *keys[2] = { "next", "uidvalidity" }, *vals[2] = { nbuf, vbuf };
	uint32_t v, n;
	size_t off, len;
	int state, r;

	if ((r = record_read(md, um, k, &state, err, errlen)) != MD_OK || state == REC_SKIP)
		return r;
	if (state == REC_VALID) {
		if (number32(record_lookup(um, rec, "uidvalidity"), &v) < 0 ||
		    number32(record_lookup(um, rec, "next"), &n) < 0)
			return MD_OK;   /* pop3d's first session had no uidlist */
		if (md->fd >= 0 && (r = dovecot_read(md, um, err, errlen)) != MD_OK)
			return r;
		if (um->dv_transient)
			return dovecot_unread(md, err, errlen);
		if (um->dovecot && um->uidvalidity != v) {
			syslog(LOG_WARNING, "warning %s/%s: UIDVALIDITY %" PRIu32 ", not the %" PRIu32
			    " of pop3d's first session: -U dovecot gives no message a Dovecot UIDL",
			    md->path, UIDLIST_NAME, um->uidvalidity, v);
			unlist(md);
			um->dovecot = 0;
		} else if (um->dovecot) {
			unlist_from(md, n);
		}
		um->uidvalidity = v;
		um->shape = 1;
	} else {
		if (md->fd >= 0 && (r = dovecot_read(md, um, err, errlen)) != MD_OK)
			return r;
		if (um->dv_transient)
			return dovecot_unread(md, err, errlen);
		snprintf(vbuf, sizeof(vbuf), "%" PRIu32, um->uidvalidity);
		snprintf(nbuf, sizeof(nbuf), "%" PRIu32, um->next_uid);
		if (record_build(md, um, SRC_DOVECOT, keys, vals, um->dovecot ? 2 : 0, &off,
		    &len) < 0) {
			snprintf(err, errlen, "%s: -U dovecot: out of memory", md->path);
			return MD_TEMP;
		}
		if ((r = record_finish(md, um, rec, md->recfd[k], off, len, err, errlen)) != 0) {
			unlist(md);
			um->dovecot = 0;
			return r < 0 ? MD_TEMP : MD_OK;
		}
		if (um->dovecot)
			syslog(LOG_INFO, "uidl record %s: dovecot: UIDVALIDITY %s, UIDs below %s",
			    md->path, vbuf, nbuf);
		else
			syslog(LOG_INFO, "uidl record %s: dovecot: no usable dovecot-uidlist, no "
			    "Dovecot UIDLs", md->path);
		um->shape = um->dovecot;
	}
	if (um->dovecot)
		dovecot_order(md, um);
	return MD_OK;
}

/* ---- who gets which UIDL ---- */

/* Does a source before the k-th of -U hold v, for any message? */
static int
held(const struct maildrop *md, const struct uidmap *um, const char *v, int k)
{
	int j;

	for (j = 0; j < k; j++) {
		if (md->sources[j] == SRC_DOVECOT) {
			if (um->shape && (dovecot_shaped(um, v) || pval_held(um, v)))
				return 1;
		} else if (um->rec[j].n > 0 && record_holds(um, &um->rec[j], v)) {
			return 1;
		}
	}
	return 0;
}

static void
displaced_uidl(const char *own, uint32_t k, char out[UIDL_LEN])
{
	unsigned char d[16];
	struct md5 ctx;
	char tail[16];

	snprintf(tail, sizeof(tail), ":%" PRIu32, k);
	md5_init(&ctx);
	md5_update(&ctx, own, strlen(own));
	md5_update(&ctx, tail, strlen(tail));
	md5_final(&ctx, d);
	md5_hex(d, out);
}

static void
choose(struct maildrop *md, struct uidmap *um)
{
	char own[UIDL_LEN], buf[UIDL_LEN];
	size_t i;
	int k;

	for (i = 0; i < md->count; i++) {
		struct msg *m = &md->msgs[i];
		int listed = (m->src & SRCF_LISTED) != 0;
		uint32_t uid = m->alt, k2;

		own[0] = '\0';
		m->src = 0;
		m->alt = 0;
		for (k = 0; k < md->nsources && m->src == 0; k++) {
			const char *v = NULL;
			const struct pval *pv;
			int s = md->sources[k];

			if (s == SRC_DOVECOT) {
				if (!listed || !um->dovecot)
					continue;
				if ((pv = pval_of(um, uid)) != NULL && !pv->usable)
					continue;
				if (pv != NULL)
					v = um->str + pv->off;
				else if (k > 0) {
					snprintf(buf, sizeof(buf), "%08" PRIx32 "%08" PRIx32, uid,
					    um->uidvalidity);
					v = buf;
				}
			} else if (um->rec[k].n > 0) {
				if (own[0] == '\0')
					maildrop_own_uidl(md, i, own);
				if ((v = record_lookup(um, &um->rec[k], own)) == NULL)
					continue;
			} else {
				continue;
			}
			if (v != NULL && held(md, um, v, k))
				continue;       /* an earlier source holds it */
			if (v == NULL || v == buf) {
				m->src = SRC_DOVECOT;
				m->alt = uid;
			} else {
				m->src = (unsigned char)(s | SRCF_STR);
				m->alt = (uint32_t)(v - um->str);
			}
			um->count[s]++;
		}
		if (m->src != 0)
			continue;
		if (own[0] == '\0')
			maildrop_own_uidl(md, i, own);
		if (!held(md, um, own, md->nsources)) {
			um->count[SRC_NONE]++;
			continue;
		}
		for (k2 = 1; displaced_uidl(own, k2, buf), held(md, um, buf, md->nsources); k2++)
			;
		m->src = SRCF_DISPLACED;
		m->alt = k2;
		um->displaced++;
	}
}

/* ---- the interface ---- */

int
uidlmap_wants_lockdir(const struct maildrop *md)
{
	int k;

	for (k = 0; k < md->nsources; k++)
		if (recorded(md, md->sources[k]))
			return 1;
	return 0;
}

int
uidlmap_load(struct maildrop *md, char *err, size_t errlen)
{
	struct uidmap *um;
	int k, r;

	if (md->nsources == 0)
		return MD_OK;
	if ((um = calloc(1, sizeof(*um))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", md->path);
		return MD_TEMP;
	}
	md->um = um;
	for (k = 0; k < md->nsources; k++)
		if (md->sources[k] == SRC_DOVECOT && recorded(md, SRC_DOVECOT) &&
		    (r = dovecot_load(md, um, k, err, errlen)) != MD_OK)
			return r;
	for (k = 0; k < md->nsources; k++)
		if (md->sources[k] != SRC_DOVECOT && recorded(md, md->sources[k]) &&
		    (r = record_load(md, um, k, err, errlen)) != MD_OK)
			return r;
	choose(md, um);
	return MD_OK;
}

void
uidlmap_uidl(const struct maildrop *md, size_t i, char out[UIDL_LEN])
{
	const struct msg *m = &md->msgs[i];
	char own[UIDL_LEN];

	if (m->src & SRCF_DISPLACED) {
		maildrop_own_uidl(md, i, own);
		displaced_uidl(own, m->alt, out);
	} else if (m->src & SRCF_STR) {
		snprintf(out, UIDL_LEN, "%s", md->um->str + m->alt);
	} else {
		snprintf(out, UIDL_LEN, "%08" PRIx32 "%08" PRIx32, m->alt, md->um->uidvalidity);
	}
}

void
uidlmap_counts(const struct maildrop *md, size_t count[4], size_t *displaced)
{
	memcpy(count, md->um->count, sizeof(md->um->count));
	*displaced = md->um->displaced;
}

void
uidlmap_free(struct maildrop *md)
{
	struct uidmap *um = md->um;
	int k;

	for (k = 0; k < UIDL_SOURCES_MAX; k++)
		if (md->recfd[k] >= 0) {
			close(md->recfd[k]);
			md->recfd[k] = -1;
		}
	if (um == NULL)
		return;
	for (k = 0; k < UIDL_SOURCES_MAX; k++) {
		free(um->rec[k].keys);
		free(um->rec[k].vals);
	}
	free(um->str);
	free(um->pv);
	free(um->psort);
	free(um->ov);
	free(um);
	md->um = NULL;
}

/* ---- the state directory's clean-up, as root ---- */

/* Is the record in fd whole (a header and an end line)? Its path in path. */
static int
record_intact(int fd, const struct stat *st, const char *src, char *path, size_t len)
{
	char buf[MAX_PATH + 128], want[64], *p, *lf;
	size_t got, n;

	if (pread_full(fd, buf, sizeof(buf) - 1, 0, &got) < 0)
		return -1;
	buf[got] = '\0';
	n = (size_t)snprintf(want, sizeof(want), RECORD_MAGIC "\nsource %s\npath ", src);
	if (got < n || memcmp(buf, want, n) != 0 || (lf = memchr(buf + n, '\n', got - n)) == NULL)
		return 0;
	snprintf(path, len, "%.*s", (int)(lf - (buf + n)), buf + n);
	if (st->st_size < 6)
		return 0;
	n = st->st_size < 80 ? (size_t)st->st_size : 80;
	if (pread_full(fd, buf, n, st->st_size - (off_t)n, &got) < 0 || got != n)
		return -1;
	buf[n] = '\0';
	if (buf[n - 1] != '\n')
		return 0;
	buf[n - 1] = '\0';
	p = strrchr(buf, '\n');
	return p != NULL && strncmp(p + 1, "end ", 4) == 0;
}

int
uidlmap_gc(int dirfd, const char *name)
{
	char path[MAX_PATH];
	struct stat st, now, ms;
	size_t n = strlen(name);
	const char *src = name + 33;
	int fd, r, drop = 0;

	if (n < 34 || strspn(name, "0123456789abcdef") != 32 || name[32] != '.' ||
	    (strcmp(src, "xuidl") != 0 && strcmp(src, "popa3d") != 0 && strcmp(src, "dovecot") != 0))
		return 0;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return 1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || flock(fd, LOCK_EX | LOCK_NB) < 0 ||
	    fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_ino != st.st_ino) {
		close(fd);
		return 1;               /* in use by a session, or replaced */
	}
	if ((r = record_intact(fd, &st, src, path, sizeof(path))) == 0) {
		drop = 1;               /* torn: its first session died writing it */
	} else if (r > 0 && lstat(path, &ms) < 0 && (errno == ENOENT || errno == ENOTDIR) &&
	    time(NULL) - st.st_mtime > UIDL_RECORD_KEEP) {
		syslog(LOG_NOTICE, "uidl record %s: %s: dropped: the maildrop is gone and no "
		    "session used the record for %d days", path, src, UIDL_RECORD_KEEP / 86400);
		drop = 1;
	}
	if (drop)
		unlinkat(dirfd, name, 0);
	close(fd);
	return 1;
}
