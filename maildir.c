/*
 * maildir.c - the Maildir back end of maildrop.c.
 *
 * Messages are the regular files of the user's in new/ and cur/ (never tmp/,
 * never dot-files), ordered by delivery time, the number before the first "."
 * of the name, then by the rest of the unique name. The unique name is the
 * name up to its info: the first ":", or a ";" or "!" followed by "2," (what
 * mbsync and others write where ":" is not allowed). The size as sent comes
 * from a ",W=<n>" field of the name when there is one (Dovecot and Courier
 * write it), plus the CR LF pop3d adds when the file does not end with a
 * newline (its last octet is read at load); else from counting the file. A
 * RETR of a message sized from its name counts the file first, and a message
 * whose octets are not what LIST said is never sent under that size. The UIDL
 * is the unique name, or the MD5 of it when it does not fit the UIDL rules.
 *
 * Every file is known by its inode too. Other programs may work on the
 * Maildir meanwhile: a message renamed (an IMAP server changing flags, or
 * moving it from new/ to cur/) is found again by its unique name and inode;
 * one removed is gone for this session, even when another file of the same
 * unique name is there. Files sharing a unique name ("twins", which no MDA
 * should make) are all listed: the first (the lowest inode, so a rename
 * keeps it first) has the unique name as its UIDL, the others the MD5 of
 * "<unique name>/<inode>".
 *
 * At QUIT deleted messages are unlinked, and messages sent whole by RETR get
 * the Seen flag (new/x -> cur/x:2,S; cur/x:2,F -> cur/x:2,FS), each with the
 * info separator its name has. Each step is one atomic unlink or rename of a
 * file checked to be the one listed, so a crash leaves every message in
 * exactly one place. The directories are fsynced before +OK.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "maildrop.h"
#include "md5.h"

#define LOCK_NAME "pop3d.lock"
#define MAX_UIDL 70

static const char *
name_of(const struct maildrop *md, size_t i)
{
	return md->names + md->msgs[i].name;
}

/* Where the name's info starts: its separator, or the terminating NUL. */
static const char *
info_of(const char *name)
{
	const char *p;

	for (p = name; *p != '\0'; p++)
		if (*p == ':' || ((*p == ';' || *p == '!') && p[1] == '2' && p[2] == ','))
			break;
	return p;
}

/* Octets of the unique part: the name up to its info. */
static size_t
unique_len(const char *name)
{
	return (size_t)(info_of(name) - name);
}

static int
same_unique(const char *a, const char *b)
{
	size_t n = unique_len(a);

	return n == unique_len(b) && memcmp(a, b, n) == 0;
}

static uint64_t
delivery_time(const char *name)
{
	uint64_t t = 0;

	for (; *name >= '0' && *name <= '9'; name++)
		t = t > (UINT64_MAX - 9) / 10 ? UINT64_MAX : t * 10 + (uint64_t)(*name - '0');
	return t;
}

/* Store name in the arena; its offset, or -1 without memory. */
static long
store_name(struct maildrop *md, const char *name)
{
	size_t n = strlen(name) + 1, off = md->names_len;

	if (md->names_len + n > md->names_cap) {
		size_t cap = md->names_cap ? md->names_cap * 2 : 4096;
		char *p;

		while (cap < md->names_len + n)
			cap *= 2;
		if (cap > UINT32_MAX || (p = realloc(md->names, cap)) == NULL)
			return -1;
		md->names = p;
		md->names_cap = cap;
	}
	memcpy(md->names + off, name, n);
	md->names_len += n;
	return (long)off;
}

static int
add_message(struct maildrop *md, size_t *cap, const struct dirent *d, int in_new,
    char *err, size_t errlen)
{
	struct msg *m;
	long off;

	if (md->count == MAX_MESSAGES) {
		snprintf(err, errlen, "%s: more than %d messages (limit MAX_MESSAGES)",
		    md->path, MAX_MESSAGES);
		return MD_PERM;
	}
	if (md->count == *cap) {
		size_t n = *cap ? *cap * 2 : 64;
		struct msg *p = reallocarray(md->msgs, n, sizeof(*p));

		if (p == NULL)
			goto nomem;
		md->msgs = p;
		*cap = n;
	}
	if ((off = store_name(md, d->d_name)) < 0)
		goto nomem;
	m = &md->msgs[md->count++];
	memset(m, 0, sizeof(*m));
	m->name = (uint32_t)off;
	m->ulen = (uint32_t)unique_len(d->d_name);
	m->start = (off_t)delivery_time(d->d_name);
	m->in_new = (unsigned char)in_new;
	m->ino = (uint64_t)d->d_ino;
	return MD_OK;
nomem:
	snprintf(err, errlen, "%s: out of memory", md->path);
	return MD_TEMP;
}

/* A regular file that is not a dot-file: a message. */
static int
is_message(int dirfd, const struct dirent *d)
{
	struct stat st;

	if (d->d_name[0] == '.')
		return 0;
	if (d->d_type == DT_REG)
		return 1;
	if (d->d_type != DT_UNKNOWN)
		return 0;
	return fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

static DIR *
open_sub(struct maildrop *md, const char *sub)
{
	int fd = openat(md->fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		return NULL;
	if ((d = fdopendir(fd)) == NULL)
		close(fd);
	return d;
}

static int
scan_sub(struct maildrop *md, const char *sub, size_t *cap, char *err, size_t errlen)
{
	struct dirent *d;
	DIR *dir;
	int r = MD_OK;

	if ((dir = open_sub(md, sub)) == NULL) {
		if (errno == ENOENT)
			return MD_OK;   /* an incomplete Maildir holds nothing there */
		snprintf(err, errlen, "%s/%s: %s", md->path, sub, strerror(errno));
		return MD_TEMP;
	}
	errno = 0;
	while (r == MD_OK && (d = readdir(dir)) != NULL)
		if (is_message(dirfd(dir), d))
			r = add_message(md, cap, d, sub[0] == 'n', err, errlen);
	if (r == MD_OK && errno != 0) {
		snprintf(err, errlen, "%s/%s: %s", md->path, sub, strerror(errno));
		r = MD_TEMP;
	}
	closedir(dir);
	return r;
}

/* Sorting: delivery time, then the unique name, then cur/ before new/, then
 * the whole name. */

static int
cmp_msg(const void *a, const void *b, void *names)
{
	const struct msg *x = a, *y = b;
	const char *nx = (const char *)names + x->name, *ny = (const char *)names + y->name;
	size_t lx = x->ulen, ly = y->ulen;
	int c;

	/* start holds the delivery time of a Maildir message (set by add_message) */
	if ((uint64_t)x->start != (uint64_t)y->start)
		return (uint64_t)x->start < (uint64_t)y->start ? -1 : 1;
	c = memcmp(nx, ny, lx < ly ? lx : ly);
	if (c != 0)
		return c;
	if (lx != ly)
		return lx < ly ? -1 : 1;
	/* Twins by inode, which a rename (new/ to cur/, a flag change) keeps:
	 * the same one stays first, with the unique name as its UIDL. */
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	if (x->in_new != y->in_new)
		return (int)x->in_new - (int)y->in_new;
	return strcmp(nx, ny);
}

/* Order the messages in place. A file seen in both new/ and cur/ (moved
 * during the scan: the same inode) counts once, as its cur/ copy; other
 * files of the same unique name are twins. */
static void
sort_messages(struct maildrop *md)
{
	size_t i, n = 0, first = 0;

	if (md->count == 0)
		return;
	qsort_r(md->msgs, md->count, sizeof(md->msgs[0]), cmp_msg, md->names);
	for (i = 0; i < md->count; i++) {
		struct msg *m = &md->msgs[i];
		size_t k;
		int seen = 0;

		if (n > 0 && same_unique(name_of(md, i), name_of(md, n - 1))) {
			for (k = first; k < n; k++)
				seen |= m->ino != 0 && md->msgs[k].ino == m->ino;
			if (seen)
				continue;
			m->twin = 1;
		} else {
			first = n;
		}
		md->msgs[n++] = *m;
	}
	md->count = n;
}

/* The ",W=<n>" size of the name's unique part, if it has a valid one. */
static int
name_size(const char *name, uint64_t *size)
{
	size_t n = unique_len(name);
	const char *w = NULL, *p;
	uint64_t v = 0;

	for (p = name; (p = memchr(p, ',', n - (size_t)(p - name))) != NULL; p++)
		if ((size_t)(p - name) + 3 <= n && p[1] == 'W' && p[2] == '=')
			w = p + 3;
	if (w == NULL || w >= name + n || *w < '0' || *w > '9')
		return -1;
	for (p = w; p < name + n && *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > MAX_MAILDROP_BYTES)
			return -1;      /* not believed: the file is counted */
	}
	if (p < name + n && *p != ',')
		return -1;
	*size = v;
	return 0;
}

static int
path_of(const struct maildrop *md, size_t i, char *path, size_t len)
{
	return snprintf(path, len, "%s/%s", md->msgs[i].in_new ? "new" : "cur",
	    name_of(md, i)) < (int)len ? 0 : (errno = ENAMETOOLONG, -1);
}

static int
open_message_file(struct maildrop *md, size_t i)
{
	char path[8 + NAME_MAX + 1];

	if (path_of(md, i, path, sizeof(path)) < 0)
		return -1;
	/* O_NONBLOCK: a FIFO put in place of a message never blocks the open */
	return openat(md->fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

/* A message file must be a regular file of the user's (a hard link to
 * another user's mail, readable through a group, is not served) and the very
 * file listed (its inode). 0; -1 not the one listed; -2 not the user's
 * (logged). */
static int
check_file(struct maildrop *md, size_t i, int fd, struct stat *st)
{
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))
		return -1;
	if (md->msgs[i].ino != 0 && (uint64_t)st->st_ino != md->msgs[i].ino)
		return -1;
	if (st->st_uid != md->owner) {
		syslog(LOG_WARNING, "warning %s: message %s is owned by uid %lu, not by the user "
		    "(uid %lu): not served", md->path, name_of(md, i), (unsigned long)st->st_uid,
		    (unsigned long)md->owner);
		return -2;
	}
	md->msgs[i].ino = (uint64_t)st->st_ino;
	return 0;
}

/* The size as sent of the open file fd of len octets (-1: not known): 0,
 * or -1 on a read error. A short read past len is its end: a regular
 * file's. */
static int
count_fd(int fd, off_t len, uint64_t *size)
{
	struct sizer z = { .last = -1 };
	char buf[MBOX_READ_SIZE];
	off_t off = 0;
	ssize_t n;

	for (;;) {
		n = pread(fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		sizer_add(&z, buf, (size_t)n);
		off += n;
		if (n == 0 || ((len < 0 || off >= len) && (size_t)n < sizeof(buf)))
			break;  /* a short read (at the known size): the end */
	}
	*size = sizer_size(&z);
	return 0;
}

/* The ",S=<n>" stored size of the name's unique part, or -1. */
static off_t
name_stored(const char *name)
{
	size_t n = unique_len(name);
	const char *s = NULL, *p;
	off_t v = 0;

	for (p = name; (p = memchr(p, ',', n - (size_t)(p - name))) != NULL; p++)
		if ((size_t)(p - name) + 3 <= n && p[1] == 'S' && p[2] == '=')
			s = p + 3;
	if (s == NULL || s >= name + n || *s < '0' || *s > '9')
		return -1;
	for (p = s; p < name + n && *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (*p - '0')) > (off_t)MAX_MAILDROP_BYTES)
			return -1;
	return p < name + n && *p != ',' ? -1 : v;
}

/* Find message i's size at load: from the name's W= and the file's last
 * octet (W= counts no final newline; pop3d supplies one), or by counting the
 * file. Three system calls a file, opened with the user's own rights (whose
 * file it is is checked when it is sent). 0, or -1 when it is gone or
 * cannot be read. */
static int
size_of(struct maildrop *md, size_t i)
{
	struct msg *m = &md->msgs[i];
	struct stat st;
	char last[2];
	off_t len = name_stored(name_of(md, i));
	ssize_t n;
	int fd = open_message_file(md, i), r = -1;

	if (fd < 0)
		return -1;
	if (name_size(name_of(md, i), &m->size) == 0) {
		/* The size from the name's S=, checked by reading across its
		 * end (one octet back means that is the size), else fstat. */
		if (len <= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
		    (len = st.st_size) == 0))
			goto counted;
		if ((n = pread(fd, last, 2, len - 1)) != 1)
			goto counted;   /* not the size the name says: count it */
		if (last[0] != '\n')
			m->size += 2;
		m->named_size = 1;
		r = 0;
		goto out;
	}
counted:
	m->named_size = 0;
	r = count_fd(fd, -1, &m->size);
out:
	close(fd);
	return r;
}

/* Give back what the growing arrays reserved and did not use. */
static void
shrink(struct maildrop *md)
{
	void *p;

	if (md->count > 0 && (p = realloc(md->msgs, md->count * sizeof(md->msgs[0]))) != NULL)
		md->msgs = p;
	if (md->names_len > 0 && (p = realloc(md->names, md->names_len)) != NULL) {
		md->names = p;
		md->names_cap = md->names_len;
	}
}

static void
measure(struct maildrop *md)
{
	size_t i, n = 0;

	for (i = 0; i < md->count; i++) {
		if (size_of(md, i) < 0)
			continue;       /* removed since the scan, or not the user's */
		md->msgs[n++] = md->msgs[i];
	}
	md->count = n;
}

int
maildir_load(struct maildrop *md, char *err, size_t errlen)
{
	struct stat st;
	size_t cap = 0;
	int r;

	if (md->fd < 0)
		return MD_OK;           /* no Maildir yet: empty, nothing to lock */
	md->lockfd = openat(md->fd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
	    O_NOCTTY | O_NONBLOCK, 0600);
	if (md->lockfd < 0 || fstat(md->lockfd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s/%s: %s", md->path, LOCK_NAME,
		    md->lockfd < 0 ? strerror(errno) : "not a regular file");
		return MD_TEMP;
	}
	if (flock(md->lockfd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "%s/%s: %s", md->path, LOCK_NAME, strerror(errno));
		return errno == EWOULDBLOCK ? MD_INUSE : MD_TEMP;
	}
	/* new/ before cur/: a message moved between the two scans is seen twice,
	 * never missed, and sort_messages() keeps one. */
	if ((r = scan_sub(md, "new", &cap, err, errlen)) != MD_OK ||
	    (r = scan_sub(md, "cur", &cap, err, errlen)) != MD_OK)
		return r;
	sort_messages(md);
	measure(md);
	shrink(md);
	return MD_OK;
}

void
maildir_uidl(const struct maildrop *md, size_t i, char out[UIDL_LEN])
{
	const char *name = name_of(md, i);
	size_t n = unique_len(name), j;
	unsigned char d[16];
	struct md5 ctx;
	char ino[24];

	for (j = 0; j < n && name[j] >= 0x21 && name[j] <= 0x7e; j++)
		;
	if (n >= 1 && n <= MAX_UIDL && j == n && !md->msgs[i].twin) {
		memcpy(out, name, n);
		out[n] = '\0';
		return;
	}
	md5_init(&ctx);
	md5_update(&ctx, name, n);
	if (md->msgs[i].twin) {
		snprintf(ino, sizeof(ino), "/%ju", (uintmax_t)md->msgs[i].ino);
		md5_update(&ctx, ino, strlen(ino));
	}
	md5_final(&ctx, d);
	md5_hex(d, out);
}

/* Find message i again after another program renamed it: the file of its
 * unique name and inode. 0, or -1 (gone). */
static int
relocate(struct maildrop *md, size_t i)
{
	static const char *subs[] = { "cur", "new" };
	const char *name = name_of(md, i);
	uint64_t ino = md->msgs[i].ino;
	struct dirent *d;
	size_t s;

	for (s = 0; s < 2; s++) {
		DIR *dir = open_sub(md, subs[s]);

		if (dir == NULL)
			continue;
		while ((d = readdir(dir)) != NULL) {
			long off;

			if (!is_message(dirfd(dir), d) || !same_unique(d->d_name, name) ||
			    (ino != 0 && (uint64_t)d->d_ino != ino))
				continue;
			off = store_name(md, d->d_name);
			closedir(dir);
			if (off < 0)
				return -1;
			md->msgs[i].name = (uint32_t)off;
			md->msgs[i].in_new = s == 1;
			return 0;
		}
		closedir(dir);
	}
	return -1;
}

/* Is the name recorded for message i still its file? Else find it again.
 * 0, or -1 (gone). */
static int
locate(struct maildrop *md, size_t i)
{
	char path[8 + NAME_MAX + 1];
	struct stat st;

	if (path_of(md, i, path, sizeof(path)) == 0 &&
	    fstatat(md->fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    (md->msgs[i].ino == 0 || (uint64_t)st.st_ino == md->msgs[i].ino))
		return 0;
	return relocate(md, i);
}

int
maildir_open_msg(struct maildrop *md, size_t i, int whole, char *err, size_t errlen)
{
	struct msg *m = &md->msgs[i];
	struct stat st;
	uint64_t size = 0;
	int fd, r;

	if (locate(md, i) < 0) {
		snprintf(err, errlen, "%s: message %s: gone", md->path, name_of(md, i));
		return MD_GONE;
	}
	if ((fd = open_message_file(md, i)) < 0) {
		snprintf(err, errlen, "%s: message %s: %s", md->path, name_of(md, i),
		    strerror(errno));
		return errno == ENOENT ? MD_GONE : MD_TEMP;
	}
	if ((r = check_file(md, i, fd, &st)) < 0) {
		snprintf(err, errlen, "%s: message %s: %s", md->path, name_of(md, i),
		    r == -2 ? "not the user's file" : "not the file listed: gone");
		close(fd);
		return r == -2 ? MD_PERM : MD_GONE;
	}
	/* A size taken from the name is checked before it is announced. */
	if (whole && m->named_size && (count_fd(fd, st.st_size, &size) < 0 || size != m->size)) {
		snprintf(err, errlen, "%s: message %s holds %ju octets as sent, not the %ju its "
		    "name says: not sent (rename it without its ,W= field)", md->path,
		    name_of(md, i), (uintmax_t)size, (uintmax_t)m->size);
		close(fd);
		return MD_TEMP;
	}
	m->body = 0;
	m->end = st.st_size;
	md->msgfd = fd;
	return MD_OK;
}

/* The name message i gets once seen: cur/<unique><sep>2,<flags with S>,
 * flags kept in ASCII order, sep the name's own info separator (":" when it
 * has none). 0 with the name in out, or -1 when it needs none. */
static int
seen_name(const struct maildrop *md, size_t i, char *out, size_t len)
{
	const char *name = name_of(md, i), *info = info_of(name);
	const char *flags = "";
	char sep = ':';
	size_t n = 0;

	if (info[0] != '\0') {
		if (info[1] != '2' || info[2] != ',')
			return -1;      /* an info we do not know: leave it alone */
		sep = info[0];
		flags = info + 3;
		if (strchr(flags, 'S') != NULL && !md->msgs[i].in_new)
			return -1;      /* already seen */
	}
	n = (size_t)snprintf(out, len, "cur/%.*s%c2,", (int)(info - name), name, sep);
	for (; *flags != '\0' && *flags < 'S' && n + 1 < len; flags++)
		out[n++] = *flags;
	if (strchr(flags, 'S') == NULL && n + 1 < len)
		out[n++] = 'S';
	n += (size_t)snprintf(out + n, len > n ? len - n : 0, "%s", flags);
	return n < len ? 0 : -1;
}

static int
mark_seen(struct maildrop *md, size_t i)
{
	char from[8 + NAME_MAX + 1], to[8 + NAME_MAX + 1];
	int tries;

	for (tries = 0; tries < 2; tries++) {
		if (locate(md, i) < 0)
			return 0;       /* removed by another program meanwhile */
		if (seen_name(md, i, to, sizeof(to)) < 0 || path_of(md, i, from, sizeof(from)) < 0)
			return 0;
		if (renameat(md->fd, from, md->fd, to) == 0)
			return 0;
		if (errno != ENOENT)
			return -1;
	}
	return -1;
}

/* 0 when message i is gone from the Maildir, -1 when it could not be removed.
 * Only the very file listed is removed: another of the same unique name is
 * not the message the client deleted. */
static int
remove_message(struct maildrop *md, size_t i)
{
	char path[8 + NAME_MAX + 1];
	int tries;

	for (tries = 0; tries < 2; tries++) {
		if (locate(md, i) < 0)
			return 0;       /* removed by another program: as wanted */
		if (path_of(md, i, path, sizeof(path)) < 0)
			return -1;
		if (unlinkat(md->fd, path, 0) == 0)
			return 0;
		if (errno != ENOENT)
			return -1;
	}
	return -1;
}

static int
sync_sub(struct maildrop *md, const char *sub)
{
	int fd = openat(md->fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int r;

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	r = fsync(fd);
	close(fd);
	return r;
}

int
maildir_update(struct maildrop *md, char *err, size_t errlen)
{
	size_t i, unseen = 0;

	md->not_removed = 0;
	for (i = 0; i < md->count; i++) {
		struct msg *m = &md->msgs[i];

		if (m->deleted) {
			if (remove_message(md, i) < 0)
				md->not_removed++;
		} else if (m->seen) {
			if (mark_seen(md, i) < 0)
				unseen++;
		}
	}
	if (sync_sub(md, "new") < 0 || sync_sub(md, "cur") < 0) {
		snprintf(err, errlen, "%s: fsync: %s", md->path, strerror(errno));
		return MD_TEMP;
	}
	if (md->not_removed > 0) {
		snprintf(err, errlen, "%s: %zu deleted messages could not be removed",
		    md->path, md->not_removed);
		return MD_TEMP;
	}
	if (unseen > 0)                 /* not worth failing QUIT for: logged */
		snprintf(err, errlen, "%s: %zu messages could not be marked seen", md->path, unseen);
	return MD_OK;
}
