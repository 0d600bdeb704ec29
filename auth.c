/*
 * auth.c - the user file, password and APOP checks, and becoming the user.
 *
 * The user file holds one entry a line, name:secret:uid:gid:gecos:maildrop.
 * A secret is a crypt(3) hash (checked with libxcrypt, or where there is none
 * the C library's crypt_r: cryptlib.h), {PLAIN}text (usable by
 * APOP too), or empty, "*" or "!..." for a disabled account. Every failure path
 * costs what a real check costs: unknown users, disabled accounts and {PLAIN}
 * entries run one crypt() of a kind of hash the file holds (dummy_work), so
 * timing does not tell them apart. Every crypt() runs in a short-lived,
 * confined child process (crypt_matches). Secrets are compared in constant
 * time and wiped after use; the file is read through a buffer of our own,
 * wiped too (struct ufile).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "auth.h"
#include "cryptlib.h"
#include "md5.h"
#include "sandbox.h"

enum { SECRET_DISABLED, SECRET_PLAIN, SECRET_CRYPT };

struct entry {
	char *name, *secret, *uid, *gid, *gecos, *maildrop;
};

int
auth_valid_name(const char *name)
{
	size_t n = strlen(name);

	if (n < 1 || n > MAX_NAME || name[0] == '.' || name[0] == '-')
		return 0;
	for (; *name != '\0'; name++)
		if (!isalnum((unsigned char)*name) && strchr("._-+@", *name) == NULL)
			return 0;
	return 1;
}

/* Constant time in the contents; the lengths are not secret. */
static int
ct_equal(const char *a, const char *b)
{
	size_t alen = strlen(a), blen = strlen(b), i;
	unsigned char d = alen != blen;

	for (i = 0; i < alen; i++)
		d |= (unsigned char)a[i] ^ (unsigned char)(i < blen ? b[i] : 0);
	return d == 0;
}

static int
secret_kind(const char *s, const char **plain)
{
	if (s[0] == '\0' || s[0] == '*' || s[0] == '!')
		return SECRET_DISABLED;
	if (strncasecmp(s, "{PLAIN}", 7) == 0) {
		*plain = s + 7;
		return **plain == '\0' ? SECRET_DISABLED : SECRET_PLAIN;
	}
	return SECRET_CRYPT;
}

/* 1 when pass hashes to hash; a failed or "*"-result crypt never matches. */
static int
crypt_here(const char *pass, const char *hash)
{
	pw_crypt_data cd;
	const char *out;
	int ok;

	out = pw_crypt(pass, hash, &cd);
	ok = out != NULL && out[0] != '*' && ct_equal(out, hash);
	explicit_bzero(&cd, sizeof(cd));
	return ok;
}

/* In the hashing process: become the unprivileged user when the monitor is
 * root, then keep only what crypt() needs (sandbox.c). 0, or -1. */
static int
hash_confine(const struct authinfo *info)
{
	char err[128];

	if (info->hash_drop && (setgroups(0, NULL) < 0 ||
	    setresgid(info->hash_gid, info->hash_gid, info->hash_gid) < 0 ||
	    setresuid(info->hash_uid, info->hash_uid, info->hash_uid) < 0))
		return -1;
	return sandbox_enter(SANDBOX_HASH, 0, err, sizeof(err));
}

/* crypt_here in a child process that exits with the answer, so the hashing's
 * memory (libxcrypt's code and state, yescrypt's megabytes) never becomes
 * part of the long-lived session, and a bug in the hashing, which runs on the
 * client's password, reaches nothing: the child runs as the pre-login user,
 * with no system calls but memory and exit. In this process when fork fails,
 * and in fuzzing builds (a fork per input would starve the fuzzer). 1 a
 * match, 0 none, -1 the hashing process died or could not confine itself
 * (logged). */
static int
crypt_matches(const struct authinfo *info, const char *pass, const char *hash)
{
	pid_t pid = -1;
	int status;

#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION       /* (make fuzz: no fork per input) */
	pid = fork();
#endif
	if (pid < 0)
		return crypt_here(pass, hash);
	if (pid == 0) {
		if (hash_confine(info) < 0)
			_exit(3);
		_exit(crypt_here(pass, hash) ? 0 : 1);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			syslog(LOG_ERR, "error privsep: waitpid: %m");
			return -1;
		}
	if (WIFEXITED(status) && WEXITSTATUS(status) <= 1)
		return WEXITSTATUS(status) == 0;
	if (WIFSIGNALED(status))
		syslog(LOG_ERR, "error privsep: the password hashing process was killed "
		    "by signal %d", WTERMSIG(status));
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		syslog(LOG_ERR, "error privsep: the password hashing process could not "
		    "confine itself");
	else
		syslog(LOG_ERR, "error privsep: the password hashing process failed");
	return -1;
}

/* The kind of a crypt hash, for the dummy work: the scheme and its cost
 * parameter ("$y$j9T", "$2b$12", "$6$rounds=9000", "$1$"), not the salt. */
static void
cost_class(const char *hash, char *out, size_t len)
{
	static const char *const with_param[] = { "y", "gy", "7", "2a", "2b", "2x", "2y",
	    "sha1", NULL };
	const char *id, *p, *q;
	size_t idlen, i;

	if (hash[0] != '$') {
		snprintf(out, len, "%.5s", hash[0] == '_' ? hash : "des");  /* bsdi _CCCC */
		return;
	}
	id = hash + 1;
	p = strchr(id, '$');
	idlen = p != NULL ? (size_t)(p - id) : strlen(id);
	q = p != NULL ? strchr(p + 1, '$') : NULL;
	for (i = 0; with_param[i] != NULL; i++)
		if (strlen(with_param[i]) == idlen && strncmp(id, with_param[i], idlen) == 0)
			break;
	if (q != NULL && (with_param[i] != NULL ||
	    ((idlen == 1 && (id[0] == '5' || id[0] == '6')) && strncmp(p + 1, "rounds=", 7) == 0)))
		snprintf(out, len, "$%.*s", (int)(q - id), id);
	else
		snprintf(out, len, "$%.*s$", (int)idlen, id);
}

/* Count hash's kind among the classes, keeping the first hash of each. */
static void
add_class(struct authinfo *info, const char *hash)
{
	char want[MAX_SECRET + 1], have[MAX_SECRET + 1];
	size_t i;

	cost_class(hash, want, sizeof(want));
	for (i = 0; i < info->nclasses; i++) {
		cost_class(info->classes[i].hash, have, sizeof(have));
		if (strcmp(want, have) == 0)
			break;
	}
	if (i == info->nclasses) {
		if (i == MAX_COST_CLASSES) {
			syslog(LOG_WARNING, "warning user file: more than %d kinds of hash "
			    "(MAX_COST_CLASSES); unknown users imitate the first %d only",
			    MAX_COST_CLASSES, MAX_COST_CLASSES);
			return;
		}
		snprintf(info->classes[i].hash, sizeof(info->classes[i].hash), "%s", hash);
		info->nclasses++;
	}
	info->classes[i].count++;
	info->total++;
}

/* The work a real check would have done, for paths that cannot succeed: one
 * crypt() of a kind chosen for the name, the kinds weighted as in the file,
 * by a digest of the name keyed with the file's hashes, so an unknown name
 * always costs what some real entries cost, the same every time. */
static void
dummy_work(const struct authinfo *info, const char *name, const char *pass)
{
	unsigned char d[16];
	struct md5 ctx;
	unsigned long pick;
	size_t i;

	if (info->total == 0)
		return;
	md5_init(&ctx);
	md5_update(&ctx, info->key, sizeof(info->key));
	md5_update(&ctx, name, strlen(name));
	md5_final(&ctx, d);
	pick = ((unsigned long)d[0] << 24 | (unsigned long)d[1] << 16 |
	    (unsigned long)d[2] << 8 | d[3]) % info->total;
	for (i = 0; i + 1 < info->nclasses && pick >= info->classes[i].count; i++)
		pick -= info->classes[i].count;
	(void)crypt_matches(info, pass, info->classes[i].hash);
	explicit_bzero(d, sizeof(d));
}

static int
parse_id(const char *s, unsigned long *out)
{
	unsigned long v = 0;

	if (*s == '\0' || strlen(s) > 10)
		return -1;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v >= 4294967295UL)
		return -1;
	*out = v;
	return 0;
}

/* Split and check one line in place; NULL when usable, else the reason. */
static const char *
parse_entry(char *line, struct entry *e)
{
	char *f[6];
	unsigned long id;
	int i;

	f[0] = line;
	for (i = 1; i < 6; i++) {
		char *c = strchr(f[i - 1], ':');

		if (c == NULL)
			return "fewer than 6 fields";
		*c = '\0';
		f[i] = c + 1;
	}
	if (strchr(f[5], ':') != NULL)
		return "more than 6 fields";
	e->name = f[0], e->secret = f[1], e->uid = f[2];
	e->gid = f[3], e->gecos = f[4], e->maildrop = f[5];
	if (!auth_valid_name(e->name))
		return "invalid user name";
	if (strlen(e->secret) > MAX_SECRET)
		return "secret too long";
	if (e->secret[0] == '{' && strncasecmp(e->secret, "{PLAIN}", 7) != 0)
		return "unknown secret scheme";
	if ((e->uid[0] != '\0' || geteuid() == 0) && parse_id(e->uid, &id) < 0)
		return "invalid uid";
	if ((e->gid[0] != '\0' || geteuid() == 0) && parse_id(e->gid, &id) < 0)
		return "invalid gid";
	if (e->maildrop[0] != '/')
		return "maildrop is not an absolute path";
	if (strlen(e->maildrop) >= MAX_PATH)
		return "maildrop path too long";
	return NULL;
}

/* The user file, read with read(2) through a buffer of our own that is wiped
 * when it is closed: stdio's buffer would be freed unwiped, and every hash and
 * {PLAIN} secret in it would live on in the pre-login process and the session. */
struct ufile {
	int fd;
	int error;
	size_t pos, len;
	char buf[4096];
};

static int
ufile_open(struct ufile *u, const char *path, char *err, size_t errlen)
{
	struct stat st;

	u->pos = u->len = 0;
	u->error = 0;
	u->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (u->fd < 0) {
		snprintf(err, errlen, "user file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(u->fd, &st) < 0 || !S_ISREG(st.st_mode))
		snprintf(err, errlen, "user file %s: not a regular file", path);
	else if (st.st_uid != 0 && st.st_uid != geteuid())
		snprintf(err, errlen, "user file %s: owned by uid %lu, not root or the running user",
		    path, (unsigned long)st.st_uid);
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		snprintf(err, errlen, "user file %s: unsafe, writable by group or others", path);
	else
		return 0;
	close(u->fd);
	return -1;
}

static void
ufile_close(struct ufile *u)
{
	close(u->fd);
	explicit_bzero(u->buf, sizeof(u->buf));
}

/* The next octet, or -1 at the end of the file or on an error. */
static int
ufile_getc(struct ufile *u)
{
	ssize_t n;

	if (u->pos == u->len) {
		do
			n = read(u->fd, u->buf, sizeof(u->buf));
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			if (n < 0)
				u->error = errno;
			return -1;
		}
		u->pos = 0;
		u->len = (size_t)n;
	}
	return (unsigned char)u->buf[u->pos++];
}

/* One line of at most cap-1 octets: 1, or 0 at the end of the file. A longer
 * line, or one holding a NUL, comes back with *bad set. */
static int
read_line(struct ufile *u, char *buf, size_t cap, const char **bad)
{
	size_t n = 0;
	int c;

	*bad = NULL;
	while ((c = ufile_getc(u)) != -1 && c != '\n') {
		if (c == '\0')
			*bad = "NUL octet in line";
		if (n + 1 < cap)
			buf[n++] = (char)c;
		else
			*bad = "line too long";
	}
	if (c == -1 && n == 0 && *bad == NULL)
		return 0;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return 1;
}

int
auth_scan(const char *path, struct authinfo *info, char *err, size_t errlen)
{
	char line[MAX_USERFILE_LINE + 1];
	unsigned long lineno = 0;
	const char *bad, *plain;
	struct ufile u;
	struct entry e;
	struct md5 key;

	memset(info, 0, sizeof(*info));
	if (ufile_open(&u, path, err, errlen) < 0)
		return -1;
	md5_init(&key);
	while (read_line(&u, line, sizeof(line), &bad)) {
		lineno++;
		if (bad == NULL && (line[0] == '#' || line[strspn(line, " \t")] == '\0'))
			continue;
		if (bad == NULL)
			bad = parse_entry(line, &e);
		if (bad != NULL) {
			syslog(LOG_WARNING, "userfile file=%s line=%lu malformed: %s",
			    path, lineno, bad);
			continue;
		}
		switch (secret_kind(e.secret, &plain)) {
		case SECRET_PLAIN:
			info->has_apop = 1;
			break;
		case SECRET_CRYPT:
			add_class(info, e.secret);
			md5_update(&key, e.secret, strlen(e.secret) + 1);
			break;
		}
	}
	md5_final(&key, info->key);
#ifdef POP3D_CRYPT_NONE
	if (info->total > 0)
		syslog(LOG_WARNING, "warning user file %s: %u crypt hashes, and this pop3d "
		    "was built without crypt (CRYPT=none): only {PLAIN} entries can log in",
		    path, info->total);
#endif
	explicit_bzero(line, sizeof(line));
	explicit_bzero(&e, sizeof(e));
	ufile_close(&u);
	if (u.error != 0) {
		snprintf(err, errlen, "user file %s: read error: %s", path, strerror(u.error));
		auth_forget(info);
		return -1;
	}
	return 0;
}

void
auth_forget(struct authinfo *info)
{
	explicit_bzero(info->classes, sizeof(info->classes));
	explicit_bzero(info->key, sizeof(info->key));
	info->nclasses = 0;
	info->total = 0;
}

/* Find name's well-formed entry: 1 found (fields point into line), 0 not, -1 error. */
static int
find_entry(const char *path, const char *name, char *line, size_t cap, struct entry *e)
{
	const char *bad;
	char err[256];
	struct ufile u;
	size_t n = strlen(name);
	int found = 0;

	if (ufile_open(&u, path, err, sizeof(err)) < 0) {
		syslog(LOG_ERR, "error %s", err);
		return -1;
	}
	while (!found && read_line(&u, line, cap, &bad)) {
		if (bad != NULL || strncmp(line, name, n) != 0 || line[n] != ':')
			continue;
		found = parse_entry(line, e) == NULL;
	}
	if (!found)
		explicit_bzero(line, cap);
	ufile_close(&u);
	if (u.error != 0) {
		syslog(LOG_ERR, "error user file %s: read error: %s", path, strerror(u.error));
		explicit_bzero(line, cap);
		found = -1;
	}
	return found;
}

static void
fill_user(const struct entry *e, struct user *u)
{
	unsigned long id;

	memset(u, 0, sizeof(*u));
	snprintf(u->name, sizeof(u->name), "%s", e->name);
	snprintf(u->maildrop, sizeof(u->maildrop), "%s", e->maildrop);
	u->has_ids = parse_id(e->uid, &id) == 0;
	u->uid = (uid_t)id;
	if (u->has_ids && parse_id(e->gid, &id) == 0)
		u->gid = (gid_t)id;
	else
		u->has_ids = 0;
}

int
auth_pass(const struct authinfo *info, const char *path, const char *name,
    const char *pass, struct user *out, int *known)
{
	char line[MAX_USERFILE_LINE + 1];
	const char *plain = NULL;
	struct entry e;
	int r, ok = 0;

	*known = 0;
	r = find_entry(path, name, line, sizeof(line), &e);
	if (r < 0)
		return AUTH_ERROR;
	if (r == 0) {
		dummy_work(info, name, pass);
		return AUTH_FAIL;
	}
	*known = 1;
	switch (secret_kind(e.secret, &plain)) {
	case SECRET_CRYPT:
		ok = crypt_matches(info, pass, e.secret);
		break;
	case SECRET_PLAIN:
		dummy_work(info, name, pass);
		ok = ct_equal(pass, plain);
		break;
	default:
		dummy_work(info, name, pass);
		break;
	}
	if (ok > 0)
		fill_user(&e, out);
	explicit_bzero(line, sizeof(line));
	explicit_bzero(&e, sizeof(e));
	return ok < 0 ? AUTH_ERROR : ok ? AUTH_OK : AUTH_FAIL;
}

int
auth_apop(const char *path, const char *name, const char *digest,
    const char *timestamp, struct user *out, int *known)
{
	char line[MAX_USERFILE_LINE + 1], want[33], got[33];
	unsigned char d[16];
	const char *plain = NULL;
	struct md5 ctx;
	struct entry e;
	size_t i;
	int r, ok = 0;

	*known = 0;
	for (i = 0; i < sizeof(got) - 1 && digest[i] != '\0'; i++)
		got[i] = (char)tolower((unsigned char)digest[i]);
	got[i] = '\0';
	r = find_entry(path, name, line, sizeof(line), &e);
	if (r < 0)
		return AUTH_ERROR;
	*known = r == 1;
	/* Unknown users and crypt-only entries hash the timestamp alone: same work. */
	if (r == 0 || secret_kind(e.secret, &plain) != SECRET_PLAIN)
		plain = "";
	md5_init(&ctx);
	md5_update(&ctx, timestamp, strlen(timestamp));
	md5_update(&ctx, plain, strlen(plain));
	md5_final(&ctx, d);             /* (which wipes ctx) */
	md5_hex(d, want);
	ok = ct_equal(got, want) && plain[0] != '\0';
	if (ok)
		fill_user(&e, out);
	explicit_bzero(line, sizeof(line));
	explicit_bzero(&e, sizeof(e));
	explicit_bzero(want, sizeof(want));
	explicit_bzero(d, sizeof(d));
	return ok ? AUTH_OK : AUTH_FAIL;
}

/* ---- becoming the user ---- */

static int
user_ids_ok(const struct user *u, char *err, size_t errlen)
{
	if (!u->has_ids) {
		snprintf(err, errlen, "user %s has no uid/gid in the user file", u->name);
		return 0;
	}
	if (u->uid == 0 || u->gid == 0) {
		snprintf(err, errlen, "user %s: uid or gid 0 refused", u->name);
		return 0;
	}
	return 1;
}

/* As root (effectively): no supplementary group at all, the user's gid as
 * the real and effective one and the -g group only as the saved gid, which
 * auth_group makes effective just to make and remove dotlocks. */
static int
take_gids(const struct user *u, gid_t extra, char *err, size_t errlen)
{
	if (setgroups(0, NULL) < 0 ||
	    setresgid(u->gid, u->gid, extra != (gid_t)-1 ? extra : u->gid) < 0) {
		snprintf(err, errlen, "user %s: cannot switch to gid %lu: %s", u->name,
		    (unsigned long)u->gid, strerror(errno));
		return -1;
	}
	return 0;
}

int
auth_assume(const struct user *u, gid_t extra, char *err, size_t errlen)
{
	if (getuid() != 0)
		return 0;               /* virtual mail: already the maildrop owner */
	if (!user_ids_ok(u, err, errlen) || auth_unassume(err, errlen) < 0 ||
	    take_gids(u, extra, err, errlen) < 0)
		return -1;
	if (setresuid((uid_t)-1, u->uid, (uid_t)-1) < 0) {
		snprintf(err, errlen, "user %s: cannot switch to uid %lu: %s", u->name,
		    (unsigned long)u->uid, strerror(errno));
		return -1;
	}
	return 0;
}

int
auth_unassume(char *err, size_t errlen)
{
	if (getuid() != 0 || geteuid() == 0)
		return 0;
	if (setresuid((uid_t)-1, 0, (uid_t)-1) < 0) {
		snprintf(err, errlen, "back to root: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int
auth_become(const struct user *u, gid_t extra, char *err, size_t errlen)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid, groups[1];
	gid_t saved = extra != (gid_t)-1 ? extra : u->gid;

	if (getuid() != 0)
		return 0;               /* virtual mail: already the maildrop owner */
	if (!user_ids_ok(u, err, errlen) || auth_unassume(err, errlen) < 0 ||
	    take_gids(u, extra, err, errlen) < 0)
		return -1;
	if (setresuid(u->uid, u->uid, u->uid) < 0) {
		snprintf(err, errlen, "user %s: cannot switch to uid %lu: %s", u->name,
		    (unsigned long)u->uid, strerror(errno));
		return -1;
	}
#ifdef __linux__
	(void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
#endif
	/* Verify the switch holds and cannot be undone. */
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0 ||
	    ruid != u->uid || euid != u->uid || suid != u->uid ||
	    rgid != u->gid || egid != u->gid || sgid != saved ||
	    getgroups(1, groups) != 0 || setuid(0) != -1 || setgid(0) != -1) {
		snprintf(err, errlen, "user %s: privilege switch did not hold", u->name);
		return -1;
	}
	return 0;
}

int
auth_group(gid_t group, int on)
{
	gid_t rgid, egid, sgid;

	if (group == (gid_t)-1 || getresgid(&rgid, &egid, &sgid) < 0 || sgid != group)
		return 0;               /* no -g group, or not ours to take */
	return setresgid((gid_t)-1, on ? group : rgid, (gid_t)-1);
}
