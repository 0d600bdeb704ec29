/*
 * pop3passwd.c - make a crypt(3) hash, or a whole pop3d user-file line.
 *
 *   pop3passwd [-s scheme] [-r rounds]
 *   pop3passwd [-s scheme] [-r rounds] -u name [-i uid] [-g gid] [-c gecos] -m maildrop
 *
 * The password is read twice without echo when stdin is a terminal (prompts
 * and errors on stderr), else once, as one line, from stdin (for scripts).
 * The salt comes from libxcrypt's crypt_gensalt_rn with the kernel's random
 * bytes; the hash from crypt_rn. Built with the C library's crypt_r instead
 * (cryptlib.h: musl), the salt is made here from getrandom (make_setting),
 * sha512 is the default, and yescrypt is refused. Only the hash or the
 * user-file line goes to stdout. Every copy of the password is wiped with
 * explicit_bzero.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "cryptlib.h"

/* A PASS command line is at most MAX_LINE octets: "PASS " + password + CRLF. */
#define MAX_PASSWORD (MAX_LINE - 7)

static const struct scheme {
	const char *name, *prefix;
} schemes[] = {
#ifdef POP3D_CRYPT_XCRYPT
	{ "yescrypt", "$y$" },          /* the default */
#endif
	{ "sha512", "$6$" },            /* the default without libxcrypt */
	{ "bcrypt", "$2b$" },
};

#ifndef CRYPT_GENSALT_OUTPUT_SIZE              /* (libxcrypt's crypt.h has it) */
#define CRYPT_GENSALT_OUTPUT_SIZE 64
#endif
#ifdef POP3D_CRYPT_LIBC
#define BCRYPT_DEFAULT_COST 5           /* libxcrypt's crypt_gensalt default */

/* A setting for prefix ($6$ or $2b$) with 16 random octets of salt, as
 * libxcrypt's crypt_gensalt_rn makes it; rounds 0 is the scheme's default.
 * NULL with errno EINVAL for rounds out of the scheme's range. */
static const char *
make_setting(const char *prefix, unsigned long rounds, char *out, size_t len)
{
	static const char crypt64[] =
	    "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	static const char bcrypt64[] =
	    "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char r[16];
	size_t n = 0, i;

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return NULL;
	if (strcmp(prefix, "$2b$") == 0) {
		if (rounds == 0)
			rounds = BCRYPT_DEFAULT_COST;
		if (rounds < 4 || rounds > 31) {
			errno = EINVAL;
			return NULL;
		}
		n = (size_t)snprintf(out, len, "$2b$%02lu$", rounds);
		/* bcrypt's own base64 of the 16 octets: 22 digits */
		for (i = 0; i < sizeof(r); i += 3) {
			unsigned c1 = r[i];

			out[n++] = bcrypt64[c1 >> 2];
			c1 = (c1 & 0x03) << 4;
			if (i + 1 >= sizeof(r)) {
				out[n++] = bcrypt64[c1];
				break;
			}
			out[n++] = bcrypt64[c1 | r[i + 1] >> 4];
			c1 = (r[i + 1] & 0x0f) << 2;
			if (i + 2 >= sizeof(r)) {
				out[n++] = bcrypt64[c1];
				break;
			}
			out[n++] = bcrypt64[c1 | r[i + 2] >> 6];
			out[n++] = bcrypt64[r[i + 2] & 0x3f];
		}
	} else {
		if (rounds != 0 && (rounds < 1000 || rounds > 999999999)) {
			errno = EINVAL;
			return NULL;
		}
		n = rounds != 0 ? (size_t)snprintf(out, len, "%srounds=%lu$", prefix, rounds) :
		    (size_t)snprintf(out, len, "%s", prefix);
		for (i = 0; i < sizeof(r); i++)
			out[n++] = crypt64[r[i] & 0x3f];
	}
	out[n] = '\0';
	explicit_bzero(r, sizeof(r));
	return out;
}
#endif

static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

static void
usage(FILE *f)
{
	fprintf(f, "usage: pop3passwd [-s scheme] [-r rounds]\n"
	    "       pop3passwd [-s scheme] [-r rounds] -u name [-i uid] [-g gid] [-c gecos] "
	    "-m maildrop\n"
#ifdef POP3D_CRYPT_XCRYPT
	    "  -s scheme    yescrypt (default), sha512 or bcrypt\n"
#else
	    "  -s scheme    sha512 (default) or bcrypt (yescrypt needs libxcrypt)\n"
#endif
	    "  -r rounds    cost parameter for crypt_gensalt (default: libxcrypt's)\n"
	    "  -u name      print a whole user-file line for this user, not just the hash\n"
	    "  -i uid       its uid (decimal, not 0)\n"
	    "  -g gid       its gid (decimal, not 0)\n"
	    "  -c gecos     its comment field\n"
	    "  -m maildrop  its maildrop: an absolute path (ending in / for a Maildir)\n"
	    "  -h           this help\n"
	    "  -V           print the version\n"
	    "The password is read twice without echo from a terminal, else once from stdin.\n");
}

static void
die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("pop3passwd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
restore_tty(void)
{
	if (tty_changed) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
		tty_changed = 0;
	}
}

static void
on_signal(int sig)
{
	restore_tty();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Read one line into buf (without its line end). 0, or -1 at end of input
 * before any octet. Longer lines are read whole and reported by length. */
static int
read_line(char *buf, size_t size, size_t *len)
{
	size_t n = 0;
	char c;
	ssize_t r;

	for (;;) {
		r = read(STDIN_FILENO, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("reading the password: %s", strerror(errno));
		if (r == 0) {
			if (n == 0)
				return -1;
			break;
		}
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n] = c;
		n++;
	}
	c = 0;
	if (n > 0 && n < size && buf[n - 1] == '\r')
		n--;
	buf[n < size ? n : size - 1] = '\0';
	*len = n;
	return 0;
}

/* A password from the terminal, without echo; prompt on stderr. */
static int
read_tty(const char *prompt, char *buf, size_t size, size_t *len)
{
	struct termios t;
	int r;

	if (tcgetattr(STDIN_FILENO, &saved_tty) < 0)
		die("terminal: %s", strerror(errno));
	t = saved_tty;
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	t.c_lflag |= ICANON;
	tty_changed = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0)
		die("terminal: %s", strerror(errno));
	fputs(prompt, stderr);
	fflush(stderr);
	r = read_line(buf, size, len);
	restore_tty();
	fputc('\n', stderr);
	return r;
}

/* Refuse what pop3d could never accept; wipe the buffer before dying. */
static void
check_password(char *pw, size_t size, size_t len)
{
	const char *why = NULL;

	if (len == 0)
		why = "empty password";
	else if (len > MAX_PASSWORD)
		why = "password too long: it would not fit a POP3 PASS line";
	else if (strlen(pw) != len)
		why = "password contains a NUL octet";
	if (why != NULL) {
		explicit_bzero(pw, size);
		die("%s", why);
	}
}

/* 1-64 octets of A-Z a-z 0-9 . _ - + @, not starting with . or -: pop3d's rule. */
static int
valid_name(const char *s)
{
	size_t n = strlen(s), i;

	if (n < 1 || n > MAX_NAME || s[0] == '.' || s[0] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || strchr("._-+@", s[i]) != NULL))
			return 0;
	return 1;
}

static void
check_id(const char *what, const char *s)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		die("%s must be a decimal number: %s", what, s);
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > UINT_MAX - 1)
		die("%s must be a decimal number: %s", what, s);
	if (v == 0)
		die("%s 0 is refused by pop3d", what);
}

/* No field separator, no line end, no control octet. */
static void
check_field(const char *what, const char *s)
{
	for (; *s != '\0'; s++)
		if (*s == ':' || (unsigned char)*s < 0x20 || *s == 0x7f)
			die("%s must not contain ':' or control characters", what);
}

int
main(int argc, char **argv)
{
	const char *prefix = schemes[0].prefix, *name = NULL, *uid = "", *gid = "", *gecos = "",
	    *maildrop = NULL;
	char pw[MAX_PASSWORD + 2], again[MAX_PASSWORD + 2], setting[CRYPT_GENSALT_OUTPUT_SIZE];
	static pw_crypt_data cd;
	unsigned long rounds = 0;
	size_t len, len2, i;
	const char *hash;
	char *end;
	int c, tty;

	while ((c = getopt(argc, argv, "c:g:hi:m:r:s:u:V")) != -1) {
		switch (c) {
		case 'c':
			gecos = optarg;
			break;
		case 'g':
			gid = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'i':
			uid = optarg;
			break;
		case 'm':
			maildrop = optarg;
			break;
		case 'r':
			errno = 0;
			rounds = strtoul(optarg, &end, 10);
			if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || errno != 0)
				die("invalid -r value: %s", optarg);
			break;
		case 's':
			for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
				if (strcmp(optarg, schemes[i].name) == 0)
					break;
			if (i == sizeof(schemes) / sizeof(schemes[0]))
				die("unknown scheme %s (%ssha512 or bcrypt)", optarg,
				    strcmp(schemes[0].name, "yescrypt") == 0 ? "yescrypt, " :
				    "this build has no yescrypt: ");
			prefix = schemes[i].prefix;
			break;
		case 'u':
			name = optarg;
			break;
		case 'V':
			printf("pop3passwd %s\n", POP3D_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (name == NULL && (maildrop != NULL || uid[0] || gid[0] || gecos[0]))
		die("-i, -g, -c and -m need -u");
	if (name != NULL) {
		if (!valid_name(name))
			die("invalid user name %s: 1-%d of A-Z a-z 0-9 . _ - + @, "
			    "not starting with . or -", name, MAX_NAME);
		if (maildrop == NULL)
			die("-u needs -m maildrop");
		if (uid[0] != '\0')
			check_id("uid", uid);
		if (gid[0] != '\0')
			check_id("gid", gid);
		check_field("gecos", gecos);
		check_field("maildrop", maildrop);
		if (maildrop[0] != '/')
			die("maildrop must be an absolute path: %s", maildrop);
		if (strlen(maildrop) >= MAX_PATH)
			die("maildrop path too long");
	}

	/* The salt first: a bad -r fails before anyone types a password. */
#if defined(POP3D_CRYPT_NONE)
	(void)rounds;
	die("this pop3passwd was built without crypt (CRYPT=none): use {PLAIN} secrets, "
	    "or make the hash with a pop3passwd that has crypt");
#elif defined(POP3D_CRYPT_XCRYPT)
	if (crypt_gensalt_rn(prefix, rounds, NULL, 0, setting, (int)sizeof(setting)) == NULL)
#else
	if (make_setting(prefix, rounds, setting, sizeof(setting)) == NULL)
#endif
		die("crypt_gensalt %s (rounds %lu): %s", prefix, rounds,
		    errno == EINVAL ? "invalid rounds for this scheme" : strerror(errno));

	tty = isatty(STDIN_FILENO);
	if (tty) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		signal(SIGHUP, on_signal);
		signal(SIGQUIT, on_signal);
		signal(SIGTSTP, SIG_IGN);
		if (read_tty("Password: ", pw, sizeof(pw), &len) < 0)
			die("no password");
		check_password(pw, sizeof(pw), len);
		if (read_tty("Again: ", again, sizeof(again), &len2) < 0)
			die("no password");
		if (len != len2 || strcmp(pw, again) != 0) {
			explicit_bzero(pw, sizeof(pw));
			explicit_bzero(again, sizeof(again));
			die("the passwords differ");
		}
		explicit_bzero(again, sizeof(again));
	} else {
		if (read_line(pw, sizeof(pw), &len) < 0)
			die("no password on stdin");
		check_password(pw, sizeof(pw), len);
	}

	hash = pw_crypt(pw, setting, &cd);
	explicit_bzero(pw, sizeof(pw));
	if (hash == NULL || hash[0] == '*') {
		explicit_bzero(&cd, sizeof(cd));
		die("crypt failed for %s", prefix);
	}
	if (name != NULL)
		printf("%s:%s:%s:%s:%s:%s\n", name, hash, uid, gid, gecos, maildrop);
	else
		printf("%s\n", hash);
	explicit_bzero(&cd, sizeof(cd));
	if (fflush(stdout) != 0 || ferror(stdout))
		die("writing the result: %s", strerror(errno));
	return 0;
}
