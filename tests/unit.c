/*
 * tests/unit.c - unit tests: md5 (RFC 1321 vectors, the RFC 1939 APOP example),
 * the command-line reader and parser, the mbox parser (sizes, offsets, UIDL
 * selection and duplicates), message sending and the in-place update; the
 * Maildir back end (order, sizes, UIDL, lock, renames, update); with TLS, the
 * signer (one signature per process, then gone); the block LF scan built
 * here (SSE2, NEON or portable: lfscan.h) against an octet-by-octet one; an
 * mbox and a Maildir message past 4 GiB (sparse files: 64-bit offsets and
 * sizes on 32-bit CPUs too; POP3D_UNIT_NO_BIG=1 skips them); the parsers of
 * -U (popa3d's UIDL on the messages the real popa3d was run on, its refusals
 * and its 64 KiB quirk, in chunks of every size; dovecot-uidlist lines;
 * X-UIDL fields; the -U list).
 * Prints a line per failure and a closing "N passed, N failed".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "io.h"
#include "lfscan.h"
#include "maildrop.h"
#include "md5.h"
#include "uidlsrc.h"
#include "xxh3.h"
#ifdef HAVE_TLS
#include <sys/socket.h>
#include <sys/wait.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "signer.h"
#include "tls.h"
#endif

static int passed, failed;
static char tmpdir[] = "/tmp/pop3d-unit.XXXXXX";

#define CHECK(cond, ...) do { \
	if (cond) { \
		passed++; \
	} else { \
		failed++; \
		printf("FAIL %s:%d: ", __FILE__, __LINE__); \
		printf(__VA_ARGS__); \
		printf("\n"); \
	} \
} while (0)

static void
md5_of(const char *s, char hex[33])
{
	unsigned char d[16];
	struct md5 c;

	md5_init(&c);
	md5_update(&c, s, strlen(s));
	md5_final(&c, d);
	md5_hex(d, hex);
}

static void
test_md5(void)
{
	static const char *v[][2] = {
		{ "", "d41d8cd98f00b204e9800998ecf8427e" },
		{ "a", "0cc175b9c0f1b6a831c399e269772661" },
		{ "abc", "900150983cd24fb0d6963f7d28e17f72" },
		{ "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
		{ "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
		{ "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
		    "d174ab98d277d9f5a5611c2c9f419d9f" },
		{ "1234567890123456789012345678901234567890123456789012345678901234567890"
		    "1234567890", "57edf4a22be3c955ac49da2e2107b67a" },
		/* RFC 1939 section 7: APOP example */
		{ "<1896.697170952@dbc.mtview.ca.us>tanstaaf", "c4c9334bac560ecc979e58001b3e22fb" },
	};
	char hex[33];
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		md5_of(v[i][0], hex);
		CHECK(strcmp(hex, v[i][1]) == 0, "md5(\"%s\") = %s", v[i][0], hex);
	}
	/* The same digest when fed in pieces of every size. */
	for (i = 1; i < 70; i++) {
		const char *s = v[6][0];
		unsigned char d[16];
		struct md5 c;
		size_t off;

		md5_init(&c);
		for (off = 0; off < strlen(s); off += i)
			md5_update(&c, s + off, strlen(s) - off < i ? strlen(s) - off : i);
		md5_final(&c, d);
		md5_hex(d, hex);
		CHECK(strcmp(hex, v[6][1]) == 0, "md5 in pieces of %zu", i);
	}
}

static void
test_parse(void)
{
	unsigned long n = 0;
	char line[64], *argv[MAX_ARGS];

	CHECK(parse_msgno("1", 5, &n) == 0 && n == 1, "1");
	CHECK(parse_msgno("5", 5, &n) == 0 && n == 5, "5 of 5");
	CHECK(parse_msgno("0005", 5, &n) == 0 && n == 5, "leading zeros");
	CHECK(parse_msgno("6", 5, &n) < 0, "6 of 5");
	CHECK(parse_msgno("0", 5, &n) < 0, "0");
	CHECK(parse_msgno("00", 5, &n) < 0, "00");
	CHECK(parse_msgno("-1", 5, &n) < 0, "-1");
	CHECK(parse_msgno("+1", 5, &n) < 0, "+1");
	CHECK(parse_msgno("1x", 5, &n) < 0, "1x");
	CHECK(parse_msgno("01x", 5, &n) < 0, "01x");
	CHECK(parse_msgno("", 5, &n) < 0, "empty");
	CHECK(parse_msgno(" 1", 5, &n) < 0, "space");
	CHECK(parse_msgno("123456789012345678901234567890", (unsigned long)-1, &n) < 0, "30 digits");
	/* (ULONG_MAX as the CPU has it: 18446744073709551615 or, 32-bit, 4294967295) */
	snprintf(line, sizeof(line), "%lu", ULONG_MAX);
	CHECK(parse_msgno(line, (unsigned long)-1, &n) == 0 && n == ULONG_MAX, "ULONG_MAX");
	line[strlen(line) - 1]++;       /* (both end in 5) */
	CHECK(parse_msgno(line, (unsigned long)-1, &n) < 0, "ULONG_MAX+1");
	CHECK(parse_msgno("1", 0, &n) < 0, "empty maildrop");
	CHECK(parse_count("0", &n) == 0 && n == 0, "count 0");
	CHECK(parse_count("999999999999999999999999", &n) == 0 && n == (unsigned long)-1,
	    "count saturates");
	CHECK(parse_count("1a", &n) < 0, "count 1a");
	CHECK(parse_count("-1", &n) < 0, "count -1");

	strcpy(line, "1 2");
	CHECK(io_split(line, argv, MAX_ARGS) == 2 && strcmp(argv[0], "1") == 0 &&
	    strcmp(argv[1], "2") == 0, "split 2");
	strcpy(line, "");
	CHECK(io_split(line, argv, MAX_ARGS) == 0, "split none");
	strcpy(line, "1 2 3");
	CHECK(io_split(line, argv, MAX_ARGS) < 0, "split too many");
	strcpy(line, "  a  ");
	CHECK(io_split(line, argv, MAX_ARGS) == 1 && strcmp(argv[0], "a") == 0, "split spaces");

	CHECK(auth_valid_name("alice"), "name alice");
	CHECK(auth_valid_name("a.b-c_d+e@example.org"), "name with punctuation");
	CHECK(!auth_valid_name(""), "empty name");
	CHECK(!auth_valid_name(".alice"), "leading dot");
	CHECK(!auth_valid_name("-alice"), "leading dash");
	CHECK(!auth_valid_name("al ice"), "space");
	CHECK(!auth_valid_name("al:ice"), "colon");
	CHECK(auth_valid_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "64");
	CHECK(!auth_valid_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "65");
}

/* Feed input through a pipe into io_getline and collect the results. */
static void
test_getline(void)
{
	static struct io io;
	char input[2048], line[MAX_LINE];
	size_t len = 0, n = 0;
	int fds[2], r;

	memset(input + n, 'a', 253), n += 253;
	memcpy(input + n, "\r\n", 2), n += 2;           /* 255 with CRLF: fits */
	memset(input + n, 'b', 254), n += 254;
	memcpy(input + n, "\n", 1), n += 1;             /* 254 and a bare LF: fits */
	memset(input + n, 'c', 254), n += 254;
	memcpy(input + n, "\r\n", 2), n += 2;           /* 256: too long */
	memcpy(input + n, "NOOP\r\n", 6), n += 6;
	memset(input + n, 'd', 1000), n += 1000;
	memcpy(input + n, "QUIT\r\n", 6), n += 6;       /* the tail of a long line */
	memcpy(input + n, "NO\0OP\r\n", 7), n += 7;
	memcpy(input + n, "STAT", 4), n += 4;           /* unterminated at EOF */

	CHECK(pipe(fds) == 0, "pipe");
	CHECK(write(fds[1], input, n) == (ssize_t)n, "write");
	close(fds[1]);
	io_init(&io, fds[0], 1, 5);
	r = io_getline(&io, line, &len);
	CHECK(r == IO_LINE && len == 253, "255 octets accepted (r=%d len=%zu)", r, len);
	r = io_getline(&io, line, &len);
	CHECK(r == IO_LINE && len == 254, "254 + LF accepted (r=%d len=%zu)", r, len);
	r = io_getline(&io, line, &len);
	CHECK(r == IO_TOOLONG, "256 octets too long (r=%d)", r);
	r = io_getline(&io, line, &len);
	CHECK(r == IO_LINE && strcmp(line, "NOOP") == 0, "line after the long one");
	r = io_getline(&io, line, &len);
	CHECK(r == IO_TOOLONG, "1006 octets: one too-long (r=%d)", r);
	r = io_getline(&io, line, &len);
	CHECK(r == IO_NUL, "NUL voids the line (r=%d)", r);
	r = io_getline(&io, line, &len);
	CHECK(r == IO_EOF, "unterminated line at EOF is not run (r=%d)", r);
	close(fds[0]);
}

/* ---- mbox ---- */

static int
write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int ok = fd >= 0 && write(fd, data, len) == (ssize_t)len;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

static int
load(struct maildrop *md, const char *data, size_t len)
{
	char path[256], err[512];

	char state[256];
	int r;

	snprintf(path, sizeof(path), "%s/mbox", tmpdir);
	snprintf(state, sizeof(state), "%s/state", tmpdir);
	mkdir(state, 0700);
	if (write_file(path, data, len) < 0)
		return -1;
	maildrop_init(md);
	if ((r = maildrop_open(md, path, err, sizeof(err))) != MD_OK ||
	    (r = maildrop_lock(md, state, err, sizeof(err))) != MD_OK)
		return r;
	return maildrop_load(md, err, sizeof(err));
}

/* Send message i (lines as for maildrop_send) and return what was written. */
static char *
sent(struct maildrop *md, size_t i, long lines, size_t *outlen)
{
	static struct io io;
	char path[256], err[512], *buf;
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/out", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	io_init(&io, -1, fd, 5);
	if (maildrop_open_msg(md, i, lines < 0, err, sizeof(err)) != MD_OK ||
	    maildrop_send(md, i, lines, &io, err, sizeof(err)) < 0)
		printf("send: %s\n", err);
	io_flush(&io);
	close(fd);
	f = fopen(path, "rb");
	buf = calloc(1, 8 << 20);
	*outlen = fread(buf, 1, 8 << 20, f);
	fclose(f);
	return buf;
}

#define S(x) x, sizeof(x) - 1

static void
test_mbox_basic(void)
{
	struct maildrop md;
	char *out;
	size_t n;

	CHECK(load(&md, S("")) == MD_OK && md.count == 0, "empty file");
	maildrop_close(&md);
	CHECK(load(&md, S("hello\nworld\n")) == MD_PERM, "not an mbox");
	maildrop_close(&md);

	CHECK(load(&md, S("From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nHello\n.dot\n\n"
	    "From c@d Mon Jan  1 00:00:00 2024\r\nSubject: two\r\n\r\nbody\r\n\r\n"
	    "From e@f Tue\nSubject: three\n\nno newline")) == MD_OK, "load three");
	CHECK(md.count == 3, "three messages (%zu)", md.count);
	CHECK(md.msgs[0].size == 14 + 2 + 7 + 6, "size 1: %ju", (uintmax_t)md.msgs[0].size);
	CHECK(md.msgs[1].size == 14 + 2 + 6, "size 2 (stored CRLF not doubled): %ju",
	    (uintmax_t)md.msgs[1].size);
	CHECK(md.msgs[2].size == 16 + 2 + 12, "size 3 (final newline supplied): %ju",
	    (uintmax_t)md.msgs[2].size);
	out = sent(&md, 0, -1, &n);
	CHECK(n == md.msgs[0].size + 1 && memcmp(out, "Subject: one\r\n\r\nHello\r\n..dot\r\n", n) == 0,
	    "RETR 1 bytes, dot-stuffed");
	free(out);
	out = sent(&md, 1, -1, &n);
	CHECK(n == md.msgs[1].size && memcmp(out, "Subject: two\r\n\r\nbody\r\n", n) == 0,
	    "RETR 2 bytes");
	free(out);
	out = sent(&md, 2, -1, &n);
	CHECK(n == md.msgs[2].size && memcmp(out, "Subject: three\r\n\r\nno newline\r\n", n) == 0,
	    "RETR 3 bytes");
	free(out);
	out = sent(&md, 0, 0, &n);
	CHECK(n == 16 && memcmp(out, "Subject: one\r\n\r\n", n) == 0, "TOP 1 0");
	free(out);
	out = sent(&md, 0, 1, &n);
	CHECK(n == 23 && memcmp(out, "Subject: one\r\n\r\nHello\r\n", n) == 0, "TOP 1 1");
	free(out);
	out = sent(&md, 0, 100, &n);
	CHECK(n == 30, "TOP 1 100 gives everything");
	free(out);
	maildrop_close(&md);
}

static void
test_mbox_separators(void)
{
	struct maildrop md;
	char *out;
	size_t n;

	CHECK(load(&md, S("From a\nX: y\n\nline\nFrom not a separator\n>From quoted\n")) == MD_OK &&
	    md.count == 1, "From inside a paragraph is content (%zu)", md.count);
	out = sent(&md, 0, -1, &n);
	CHECK(n == md.msgs[0].size &&
	    memcmp(out, "X: y\r\n\r\nline\r\nFrom not a separator\r\n>From quoted\r\n", n) == 0,
	    "From lines sent as stored");
	free(out);
	maildrop_close(&md);

	CHECK(load(&md, S("From a\n\n\nFrom b\n")) == MD_OK && md.count == 2, "blank lines");
	CHECK(md.msgs[0].size == 2 && md.msgs[1].size == 0, "sizes %ju %ju",
	    (uintmax_t)md.msgs[0].size, (uintmax_t)md.msgs[1].size);
	maildrop_close(&md);

	CHECK(load(&md, S("From a\nS: 1\n\nb\n\r\nFrom b\nS: 2\n\n")) == MD_OK && md.count == 2,
	    "a CR-only line separates");
	CHECK(md.msgs[0].size == 6 + 2 + 3 && md.msgs[1].size == 6, "sizes %ju %ju",
	    (uintmax_t)md.msgs[0].size, (uintmax_t)md.msgs[1].size);
	maildrop_close(&md);

	CHECK(load(&md, S("From a\nS: 1\n\nx\0y\n")) == MD_OK && md.msgs[0].size == 6 + 2 + 5,
	    "NUL in a message");
	out = sent(&md, 0, -1, &n);
	CHECK(n == 13 && memcmp(out, "S: 1\r\n\r\nx\0y\r\n", n) == 0, "NUL sent as is");
	free(out);
	maildrop_close(&md);

	CHECK(load(&md, S("From a\nS: 1\n\nab\r\r\nc\rd\n")) == MD_OK &&
	    md.msgs[0].size == 6 + 2 + 5 + 5, "bare CRs are content (%ju)", (uintmax_t)md.msgs[0].size);
	out = sent(&md, 0, -1, &n);
	CHECK(n == 18 && memcmp(out, "S: 1\r\n\r\nab\r\r\nc\rd\r\n", n) == 0, "bare CRs sent");
	free(out);
	maildrop_close(&md);
}

static void
test_mbox_long_lines(void)
{
	size_t len = 300000, n;
	char *data = malloc(len + 64), *out;
	struct maildrop md;
	size_t i, off = 0;

	off += (size_t)sprintf(data, "From a\nS: 1\n\n");
	for (i = 0; i < 200000; i++)
		data[off++] = i % 2 ? 'x' : '.';
	data[off++] = '\r';
	data[off++] = '\n';
	off += (size_t)sprintf(data + off, ".\n\nFrom b\n");
	CHECK(load(&md, data, off) == MD_OK && md.count == 2, "long line");
	CHECK(md.msgs[0].size == 6 + 2 + 200002 + 3, "long line size %ju",
	    (uintmax_t)md.msgs[0].size);
	out = sent(&md, 0, -1, &n);
	CHECK(n == md.msgs[0].size + 2 && out[8] == '.' && out[9] == '.' &&
	    memcmp(out + n - 6, "\r\n..\r\n", 6) == 0, "long line sent (%zu)", n);
	free(out);
	free(data);
	maildrop_close(&md);
}

static void
uidl_of(struct maildrop *md, size_t i, char *out)
{
	maildrop_uidl(md, i, out);
}

static void
xxh3_hex(const char *s, char out[33])
{
	unsigned char d[16];

	xxh3_128(s, strlen(s), d);
	md5_hex(d, out);                /* (any 16 octets in hex) */
}

/* XXH3-128 against vectors from the reference xxhsum -H2, whole and fed in
 * pieces of every size. */
static void
test_xxh3(void)
{
	static const struct { const char *in, *hex; } v[] = {
		{ "", "99aa06d3014798d86001c324468d497f" },
		{ "abc", "06b05ab6733a618578af5f94892f3950" },
		{ "From a\nSubject: a\n\nbody\n", "d71f656108fd3d02da20e484da233b69" },
	};
	unsigned char big[1280], d[16];
	char hex[33];
	struct xxh3 x;
	size_t i, k;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		xxh3_hex(v[i].in, hex);
		CHECK(strcmp(hex, v[i].hex) == 0, "xxh3 of \"%s\": %s", v[i].in, hex);
	}
	for (i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)i;
	for (k = 1; k < 300; k += 7) {
		xxh3_init(&x);
		for (i = 0; i < sizeof(big); i += k)
			xxh3_update(&x, big + i, i + k > sizeof(big) ? sizeof(big) - i : k);
		xxh3_final(&x, d);
		md5_hex(d, hex);
		CHECK(strcmp(hex, "d92ab3a1cb0542a74844b009e164352e") == 0,
		    "xxh3 of 1280 octets in pieces of %zu: %s", k, hex);
	}
}

/* The mbox UIDL: XXH3-128 of the message as stored, From_ line included,
 * the lines of volatile header fields left out; byte-identical copies
 * numbered by order. */
static void
test_uidl(void)
{
	struct maildrop md;
	char u[8][UIDL_LEN], want[33];

	CHECK(load(&md, S(
	    "From a\nSubject: a\nStatus: RO\n\nbody\n\n"
	    "From a\nX-Keywords: one\n two\nSubject: a\nX-UID: 7\n\nbody\n\n"
	    "From a\nSubject: a\n\nbodz\n\n"
	    "From a\n\nno header, equal length\n\n"
	    "From a\n\nno header, equal lenhtg\n\n"
	    "From b\nSubject: a\n\nbody\n\n"
	    "From a\nSubject: a\nStatus : RO\n\nbody\n\n"
	    "From a\r\nSubject: a\r\n\r\nbody\r\n")) == MD_OK &&
	    md.count == 8, "load uidl corpus");
	for (size_t i = 0; i < 8; i++)
		uidl_of(&md, i, u[i]);
	xxh3_hex("From a\nSubject: a\n\nbody\n", want);
	CHECK(strcmp(u[0], want) == 0, "uidl 1 = %s, want %s", u[0], want);
	CHECK(strncmp(u[1], want, 32) == 0 && strcmp(u[1] + 32, "-2") == 0,
	    "volatile fields and their continuations left out: a copy gets -2 (%s)", u[1]);
	CHECK(strncmp(u[2], u[0], 32) != 0, "the body is part of it");
	CHECK(strcmp(u[3], u[4]) != 0, "header-less messages of equal length differ");
	xxh3_hex("From a\n\nno header, equal length\n", want);
	CHECK(strcmp(u[3], want) == 0, "uidl 4 = %s, want %s", u[3], want);
	CHECK(strncmp(u[5], u[0], 32) != 0, "the From_ line is part of it");
	CHECK(strncmp(u[6], u[0], 32) != 0, "\"Status :\" is not the Status field");
	xxh3_hex("From a\r\nSubject: a\r\n\r\nbody\r\n", want);
	CHECK(strcmp(u[7], want) == 0, "CR LF as stored: %s, want %s", u[7], want);
	maildrop_close(&md);
}

static void
test_update(void)
{
	const char orig[] = "From a\nS: 1\n\none\n\nFrom b\nS: 2\n\ntwo\n\nFrom c\nS: 3\n\nthree\n";
	const char extra[] = "\nFrom d\nS: 4\n\nfour\n";
	char path[256], err[512], buf[512];
	struct maildrop md;
	struct stat before, after;
	ssize_t n;
	int fd;

	CHECK(load(&md, S(orig)) == MD_OK && md.count == 3, "load for update");
	snprintf(path, sizeof(path), "%s/mbox", tmpdir);
	stat(path, &before);
	/* A delivery during the session. */
	fd = open(path, O_WRONLY | O_APPEND);
	CHECK(write(fd, extra, sizeof(extra) - 1) == (ssize_t)sizeof(extra) - 1, "append");
	close(fd);
	md.msgs[1].deleted = 1;
	CHECK(maildrop_update(&md, err, sizeof(err)) == MD_OK, "update: %s", err);
	maildrop_close(&md);
	stat(path, &after);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	CHECK(strcmp(buf, "From a\nS: 1\n\none\n\nFrom c\nS: 3\n\nthree\n\nFrom d\nS: 4\n\nfour\n") == 0,
	    "deleted the middle, kept the append:\n%s", buf);
	CHECK(before.st_ino == after.st_ino, "same inode");

	CHECK(load(&md, S(orig)) == MD_OK, "load again");
	md.msgs[0].deleted = md.msgs[1].deleted = md.msgs[2].deleted = 1;
	CHECK(maildrop_update(&md, err, sizeof(err)) == MD_OK, "delete all");
	maildrop_close(&md);
	stat(path, &after);
	CHECK(after.st_size == 0, "all deleted: empty file (%jd)", (intmax_t)after.st_size);

	CHECK(load(&md, S(orig)) == MD_OK, "load a third time");
	md.msgs[2].deleted = 1;
	CHECK(maildrop_update(&md, err, sizeof(err)) == MD_OK, "delete the last");
	maildrop_close(&md);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	CHECK(strcmp(buf, "From a\nS: 1\n\none\n\nFrom b\nS: 2\n\ntwo\n\n") == 0, "deleted the last");
}

/* ---- Maildir ---- */

static void
put(const char *dir, const char *name, const char *data)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s/%s", tmpdir, dir, name);
	if (write_file(path, data, strlen(data)) < 0)
		printf("cannot write %s\n", path);
}

static int
exists(const char *dir, const char *name)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s/%s", tmpdir, dir, name);
	return stat(path, &st) == 0;
}

static int
load_maildir(struct maildrop *md, const char *sub)
{
	char path[256], err[512];
	int r;

	snprintf(path, sizeof(path), "%s/%s/", tmpdir, sub);
	maildrop_init(md);
	if ((r = maildrop_open(md, path, err, sizeof(err))) != MD_OK ||
	    (r = maildrop_lock(md, "/nonexistent", err, sizeof(err))) != MD_OK)
		return r;
	r = maildrop_load(md, err, sizeof(err));
	if (r != MD_OK && r != MD_INUSE)
		printf("maildir load: %s\n", err);
	return r;
}

/* Sizes from names (issue 16): W= plus the newline pop3d supplies; a W=
 * whose S= is not the file's size is not believed. */
static void
test_maildir_names(void)
{
	struct maildrop md;
	static const char *dirs[] = { "mn", "mn/new", "mn/cur", "mn/tmp" };
	char path[512];

	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, dirs[i]);
		mkdir(path, 0700);
	}
	put("mn/cur", "1.M1P1.h,S=5,W=999:2,", "Subject: s\n\nwrong S\n");
	put("mn/cur", "2.M1P1.h,W=999:2,", "Subject: w\n\nno S\n");
	put("mn/cur", "3.M1P1.h,S=14,W=15:2,", "Subject: n\n\nno");
	put("mn/cur", "4.M1P1.h;2,S", "Subject: semi\n\n");
	CHECK(load_maildir(&md, "mn") == MD_OK && md.count == 4, "names: 4 messages (%zu)", md.count);
	CHECK(md.msgs[0].size == 12 + 2 + 9, "W= of a wrong S= not believed (%ju)",
	    (uintmax_t)md.msgs[0].size);
	CHECK(md.msgs[1].size == 999, "W= without S= believed (%ju)", (uintmax_t)md.msgs[1].size);
	CHECK(md.msgs[2].size == 17, "W= plus the supplied newline (%ju)",
	    (uintmax_t)md.msgs[2].size);
	maildir_uidl(&md, 3, path);
	CHECK(strcmp(path, "4.M1P1.h") == 0, "\";2,\" starts the info (%s)", path);
	maildrop_close(&md);
}

static void
test_maildir(void)
{
	char path[512], err[512], u[UIDL_LEN], *out;
	const char *longname = "1700000003.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:2,";
	struct maildrop md, md2;
	size_t n;
	static const char *dirs[] = { "md", "md/new", "md/cur", "md/tmp" };

	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, dirs[i]);
		mkdir(path, 0700);
	}
	put("md/new", "1700000002.M1P1.host", "Subject: b\n\nbody b\n");
	put("md/cur", "1700000001.M9P9.host:2,F", "Subject: a\r\n\r\nbody a\r\n.\r\n");
	put("md/cur", "1700000001.M10P1.host,S=26,W=777:2,", "Subject: w\n\nW= is trusted\n");
	put("md/cur", longname, "Subject: long\n\nno newline");
	put("md/new", ".hidden", "x\n");
	put("md/tmp", "1700000000.tmp.host", "Subject: in tmp\n\n");

	CHECK(load_maildir(&md, "md") == MD_OK && md.count == 4, "maildir: 4 messages (%zu)", md.count);
	maildrop_uidl(&md, 0, u);
	CHECK(strcmp(u, "1700000001.M10P1.host,S=26,W=777") == 0, "order: time, then name (%s)", u);
	maildrop_uidl(&md, 1, u);
	CHECK(strcmp(u, "1700000001.M9P9.host") == 0, "uidl is the unique part (%s)", u);
	maildrop_uidl(&md, 2, u);
	CHECK(strcmp(u, "1700000002.M1P1.host") == 0, "new/ message third (%s)", u);
	maildrop_uidl(&md, 3, u);
	CHECK(strlen(u) == 32 && strspn(u, "0123456789abcdef") == 32, "long name hashed (%s)", u);
	CHECK(md.msgs[0].size == 777, "W= size used when S= is the file's size (%ju)",
	    (uintmax_t)md.msgs[0].size);
	CHECK(md.msgs[1].size == 12 + 2 + 8 + 3, "CRLF stored, counted once (%ju)",
	    (uintmax_t)md.msgs[1].size);
	CHECK(md.msgs[3].size == 15 + 2 + 12, "final newline supplied (%ju)",
	    (uintmax_t)md.msgs[3].size);
	out = sent(&md, 1, -1, &n);
	CHECK(n == md.msgs[1].size + 1 && memcmp(out, "Subject: a\r\n\r\nbody a\r\n..\r\n", n) == 0,
	    "maildir RETR bytes");
	free(out);

	/* A second session is refused while the first holds the lock. */
	CHECK(load_maildir(&md2, "md") == MD_INUSE, "maildir lock: IN-USE");
	maildrop_close(&md2);

	/* Another program renames message 2 (flags) and removes message 4. */
	snprintf(path, sizeof(path), "%s/md/cur/1700000001.M9P9.host:2,F", tmpdir);
	snprintf(err, sizeof(err), "%s/md/cur/1700000001.M9P9.host:2,FR", tmpdir);
	CHECK(rename(path, err) == 0, "rename by another program");
	snprintf(path, sizeof(path), "%s/md/cur/%s", tmpdir, longname);
	unlink(path);
	out = sent(&md, 1, 0, &n);
	CHECK(n == 14 && memcmp(out, "Subject: a\r\n\r\n", n) == 0, "renamed message found again");
	free(out);
	CHECK(maildrop_open_msg(&md, 3, 1, err, sizeof(err)) == MD_GONE, "removed message: gone");

	/* A delivery during the session is not shown and not lost. */
	put("md/new", "1700000009.M1P1.host", "Subject: late\n\n");
	md.msgs[1].seen = 1;            /* RETR */
	md.msgs[2].seen = 1;            /* RETR of a new/ message */
	md.msgs[0].deleted = 1;
	md.msgs[3].deleted = 1;         /* already removed: fine */
	CHECK(maildrop_update(&md, err, sizeof(err)) == MD_OK, "maildir update");
	maildrop_close(&md);
	CHECK(!exists("md/cur", "1700000001.M10P1.host,S=99,W=777:2,"), "deleted message unlinked");
	CHECK(exists("md/cur", "1700000001.M9P9.host:2,FRS"), "S added in order to cur/ flags");
	CHECK(exists("md/cur", "1700000002.M1P1.host:2,S") && !exists("md/new", "1700000002.M1P1.host"),
	    "new/ message moved to cur/ with :2,S");
	CHECK(exists("md/new", "1700000009.M1P1.host"), "late delivery kept in new/");
	CHECK(exists("md/tmp", "1700000000.tmp.host"), "tmp/ untouched");
	CHECK(load_maildir(&md, "md") == MD_OK && md.count == 3, "next session: 3 (%zu)", md.count);
	maildrop_close(&md);
	CHECK(load_maildir(&md, "nonexistent") == MD_OK && md.count == 0, "missing Maildir is empty");
	maildrop_close(&md);
	snprintf(path, sizeof(path), "%s/nonexistent", tmpdir);
	CHECK(access(path, F_OK) != 0, "missing Maildir not created");
}

static void
test_sizer(void)
{
	static const struct { const char *s; uint64_t size; } v[] = {
		{ "", 0 }, { "a", 3 }, { "a\n", 3 }, { "a\r\n", 3 }, { "a\r", 4 },
		{ "\n\n", 4 }, { "a\r\r\n", 4 }, { "a\nb", 6 }, { "\r\n\r\n", 4 },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		for (size_t cut = 0; cut <= strlen(v[i].s); cut++) {
			struct sizer z = { .last = -1 };

			sizer_add(&z, v[i].s, cut);
			sizer_add(&z, v[i].s + cut, strlen(v[i].s) - cut);
			CHECK(sizer_size(&z) == v[i].size, "size of \"%s\" split at %zu: %ju", v[i].s, cut,
			    (uintmax_t)sizer_size(&z));
		}
	}
}

/* The fast paths against the simple ones, on tricky and random messages:
 * RETR (send_all) and TOP with a huge count (send_chunk) must send the same
 * octets; the scan's size (body_run) must equal an independent count
 * (sizer) of the stored message. Lines straddle the 64 KiB read size. */
static void
test_fast_paths(void)
{
	static const char *pieces[] = {
		"plain line\n", ".dot\n", "..two dots\n", "crlf line\r\n", "\r\n", "\n",
		">From quoted\n", "From unquoted\n", "lone\rcr\n", "cr at end\r", "x\0nul\n",
		"ends in two crs\r\r\n", "8-bit \xe9\xfc\n", ".\n", ".\r\n",
	};
	unsigned seed = 12345;
	size_t cap = 16 << 20, len = 0, i, k, n1, n2;
	char *data = malloc(cap), *a, *b;
	struct maildrop md;
	int bad = 0;

	for (k = 0; k < 24; k++) {              /* 24 messages, sizes 0 to ~200 KiB */
		size_t target = (k % 4 == 0) ? (size_t)(seed % 200000) : seed % 3000;

		len += (size_t)sprintf(data + len, "From m%zu Mon Jan  1 00:00:00 2024\n"
		    "Subject: %zu\n\n", k, k);
		for (size_t body = 0; body < target && len < cap - 100000;) {
			const char *pc;
			size_t pl;

			seed = seed * 1103515245 + 12345;
			pc = pieces[(seed >> 8) % (sizeof(pieces) / sizeof(pieces[0]))];
			pl = pc == pieces[10] ? 6 : strlen(pc);     /* "x\0nul\n" holds a NUL */
			memcpy(data + len, pc, pl);
			len += pl;
			body += pl;
			if (seed % 7 == 0) {    /* a long line crossing read boundaries */
				size_t run = (seed >> 4) % 70000;

				memset(data + len, 'y', run);
				len += run;
				body += run;
				data[len++] = '\n';
			}
		}
		data[len++] = '\n';             /* the separator */
	}
	/* ("From " after a random blank line starts a message: 24 or more) */
	CHECK(load(&md, data, len) == MD_OK && md.count >= 24, "fast-path corpus (%zu)", md.count);
	for (i = 0; i < md.count; i++) {
		struct sizer z = { .last = -1 };

		a = sent(&md, i, -1, &n1);              /* RETR: send_all */
		b = sent(&md, i, 0x7fffffffL, &n2);     /* TOP n huge: send_chunk */
		if (n1 != n2 || memcmp(a, b, n1) != 0)
			bad++;
		sizer_add(&z, data + md.msgs[i].body, (size_t)(md.msgs[i].end - md.msgs[i].body));
		if (sizer_size(&z) != md.msgs[i].size)
			bad += 100;
		free(a);
		free(b);
	}
	CHECK(bad == 0, "fast and simple paths agree on every message (%d)", bad);
	maildrop_close(&md);
	free(data);
}

/* The body scan matches 64-octet blocks from the start of a run (the line
 * after a non-blank body line): blank lines of every kind, content or
 * separator, at every offset from that start, must count as the line-by-line
 * sizer counts them, and "From " after a blank line must start a message.
 * RETR, which finds LFs by blocks too, must send what TOP's line-by-line
 * path sends. */
static void
test_body_blocks(void)
{
	static const char *blanks[] = { "\n", "\r\n", "\n\n", "\r\n\r\n", "\n\r\n", "\r\n\n" };
	size_t nb = sizeof(blanks) / sizeof(blanks[0]), cap = 4 << 20, len = 0, i, want = 0;
	char *data = malloc(cap);
	struct maildrop md;
	int bad = 0;

	for (size_t v = 0; v < nb; v++) {
		for (size_t shift = 1; shift <= 140; shift++) {
			len += (size_t)sprintf(data + len, "From a Mon Jan  1 00:00:00 2024\n"
			    "Subject: %zu %zu\n\nfirst\n", v, shift);
			memset(data + len, 'B', shift);         /* moves the blanks across blocks */
			len += shift;
			len += (size_t)sprintf(data + len, "\n%sC%s\r\nmore\n%s%s"
			    "From  content\nend\n%s", blanks[v], blanks[v], blanks[v], blanks[v],
			    blanks[v]);
			want += 2;     /* "From  content" after a blank line starts one */
		}
	}
	CHECK(load(&md, data, len) == MD_OK && md.count == want, "block corpus: %zu of %zu",
	    md.count, want);
	for (i = 0; i < md.count; i++) {
		struct sizer z = { .last = -1 };

		size_t n1, n2;
		char *a = sent(&md, i, -1, &n1), *b = sent(&md, i, 0x7fffffffL, &n2);

		sizer_add(&z, data + md.msgs[i].body, (size_t)(md.msgs[i].end - md.msgs[i].body));
		if (sizer_size(&z) != md.msgs[i].size && bad++ < 5)
			printf("  message %zu: size %ju, sizer %ju\n", i + 1,
			    (uintmax_t)md.msgs[i].size, (uintmax_t)sizer_size(&z));
		if ((n1 != n2 || memcmp(a, b, n1) != 0) && bad++ < 5)
			printf("  message %zu: RETR and TOP differ\n", i + 1);
		free(a);
		free(b);
	}
	CHECK(bad == 0, "block scan sizes and RETR bytes (%d wrong)", bad);
	maildrop_close(&md);
	free(data);
}

/* lf64 (SSE2, NEON or portable word arithmetic) against a plain loop, on
 * tricky and random blocks at every alignment; its counts over runs long
 * enough to flush SSE2's per-lane counters; lf_next against memchr. */
static uint64_t
lf64_simple(const unsigned char *p)
{
	uint64_t m = 0;

	for (int i = 0; i < 64; i++)
		if (p[i] == '\n')
			m |= (uint64_t)1 << i;
	return m;
}

static void
test_lf64(void)
{
	static const unsigned char near[] = { '\n', 0x0b, 0x09, 0x8a, 0x0a ^ 0x80, 0xff, 0, '\r',
	    0x4a, 0x1a, 0x7f, 0x80, 0x0a | 0x40 };
	enum { BLOCKS = 1000 };
	unsigned char *buf = malloc(64 * BLOCKS + 64);
	uint32_t seed = 99;
	uint64_t want = 0;
	struct lfcount cnt;
	struct lfiter it;
	const char *p, *q;
	int bad = 0;
	size_t b, i, found;

	printf("unit: lf64 is %s\n", LFSCAN_KIND);
	for (b = 0; b < BLOCKS; b++) {
		unsigned char *blk = buf + 64 * b;

		for (i = 0; i < 64; i++) {
			seed = seed * 1103515245u + 12345u;
			switch (b % 5) {
			case 0:                 /* octets near LF in value */
				blk[i] = near[(seed >> 16) % sizeof(near)];
				break;
			case 1:                 /* one LF, walking */
				blk[i] = i == b % 64 ? '\n' : 'x';
				break;
			case 2:                 /* all LF but one */
				blk[i] = i == b % 64 ? 0x8a : '\n';
				break;
			default:                /* random octets */
				blk[i] = (unsigned char)(seed >> 16);
			}
		}
	}
	memset(&cnt, 0, sizeof(cnt));
	for (size_t align = 0; align < 8; align++) {
		memmove(buf + align, buf + (align ? align - 1 : 0), 64 * BLOCKS - 8);
		for (b = 0; b + 1 < BLOCKS; b++) {
			const unsigned char *blk = buf + align + 64 * b;
			uint64_t m = lf64((const char *)blk, &cnt);

			want += (uint64_t)__builtin_popcountll(lf64_simple(blk));
			if (m != lf64_simple(blk) && bad++ < 5)
				printf("  block %zu align %zu: %016" PRIx64 " != %016" PRIx64 "\n", b,
				    align, m, lf64_simple(blk));
		}
	}
	CHECK(bad == 0, "lf64 (%s) masks equal the octet loop's (%d wrong)", LFSCAN_KIND, bad);
	CHECK(lf_total(&cnt) == want, "lf64 (%s) counts %" PRIu64 " LFs, the loop %" PRIu64,
	    LFSCAN_KIND, lf_total(&cnt), want);
	for (size_t len = 0; len < 64 * 5; len += 7) {
		lf_start(&it, (const char *)buf + 3, (const char *)buf + 3 + len);
		found = 0;
		p = (const char *)buf + 3;
		for (;;) {
			const char *end = (const char *)buf + 3 + len;

			q = lf_next(&it, p);
			if (q != memchr(p, '\n', (size_t)(end - p)) && bad++ < 5)
				printf("  lf_next over %zu octets: wrong LF\n", len);
			if (q == NULL)
				break;
			found++;
			p = q + 1;
		}
	}
	CHECK(bad == 0, "lf_next finds what memchr finds (%d wrong)", bad);
	free(buf);
}

/* Offsets and sizes past 4 GiB (off_t and uint64_t on 32-bit CPUs too): an
 * mbox whose first message is a sparse 4 GiB line of NULs, so the second
 * starts past 4 GiB, and a Maildir message of 4 GiB sized from its W=. The
 * scan reads every octet: seconds natively, longer under emulation. */
static void
test_big(void)
{
	const off_t hole = ((off_t)4 << 30) + 1000;
	static const char head[] = "From a Mon Jan  1 00:00:00 2024\nSubject: big\n\nstart";
	static const char tail[] = "\n\nFrom b Mon Jan  1 00:00:00 2024\nSubject: after\n\n"
	    "last\n";
	static const char want2[] = "Subject: after\r\n\r\nlast\r\n";
	char path[512], err[512], dir[512], *out;
	off_t second = (off_t)(sizeof(head) - 1) + hole + 2;
	struct maildrop md;
	size_t n;
	int fd, r;

	if (getenv("POP3D_UNIT_NO_BIG") != NULL) {
		printf("skip big: POP3D_UNIT_NO_BIG is set\n");
		return;
	}
	CHECK(sizeof(off_t) == 8, "off_t is 64 bits (%zu)", sizeof(off_t));
	snprintf(path, sizeof(path), "%s/bigmbox", tmpdir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	r = fd >= 0 && write(fd, head, sizeof(head) - 1) == (ssize_t)(sizeof(head) - 1) &&
	    pwrite(fd, tail, sizeof(tail) - 1, (off_t)(sizeof(head) - 1) + hole) ==
	    (ssize_t)(sizeof(tail) - 1);
	if (fd >= 0)
		close(fd);
	if (!r) {
		printf("skip big: cannot write a sparse file past 4 GiB in %s\n", tmpdir);
		unlink(path);
		return;
	}
	snprintf(dir, sizeof(dir), "%s/state", tmpdir);
	mkdir(dir, 0700);
	maildrop_init(&md);
	r = maildrop_open(&md, path, err, sizeof(err));
	if (r == MD_OK)
		r = maildrop_lock(&md, dir, err, sizeof(err));
	if (r == MD_OK)
		r = maildrop_load(&md, err, sizeof(err));
	CHECK(r == MD_OK && md.count == 2, "big mbox: two messages (%d, %zu: %s)", r, md.count,
	    r == MD_OK ? "" : err);
	if (r == MD_OK && md.count == 2) {
		/* "Subject: big" CRLF, CRLF, "start" + 4 GiB + 1000 NULs + CRLF */
		CHECK(md.msgs[0].size == 14 + 2 + 5 + (uint64_t)hole + 2,
		    "big mbox: size of the 4 GiB message (%" PRIu64 ")", md.msgs[0].size);
		CHECK(md.msgs[1].start == second, "big mbox: second message at %jd (want %jd)",
		    (intmax_t)md.msgs[1].start, (intmax_t)second);
		CHECK(md.msgs[1].size == sizeof(want2) - 1, "big mbox: size past 4 GiB (%" PRIu64 ")",
		    md.msgs[1].size);
		out = sent(&md, 1, -1, &n);
		CHECK(n == sizeof(want2) - 1 && memcmp(out, want2, n) == 0,
		    "big mbox: RETR of the message past 4 GiB");
		free(out);
		out = sent(&md, 0, 0, &n);
		CHECK(n == 16 && memcmp(out, "Subject: big\r\n\r\n", 16) == 0,
		    "big mbox: TOP 0 of the 4 GiB message");
		free(out);
	}
	maildrop_close(&md);
	unlink(path);

	/* A Maildir message of 4 GiB + 8 octets, its size from W=. */
	snprintf(dir, sizeof(dir), "%s/bigmd", tmpdir);
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/bigmd/new", tmpdir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/bigmd/cur", tmpdir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/bigmd/new/1700000000.big.host,W=%jd", tmpdir,
	    (intmax_t)((off_t)4 << 30) + 8);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	r = fd >= 0 && write(fd, "S: x\n\nb", 7) == 7 && pwrite(fd, "\n", 1, ((off_t)4 << 30) + 6) == 1;
	if (fd >= 0)
		close(fd);
	maildrop_init(&md);
	if (r && (r = maildrop_open(&md, dir, err, sizeof(err))) == MD_OK)
		r = maildrop_load(&md, err, sizeof(err));
	else
		r = -1;
	CHECK(r == MD_OK && md.count == 1 && md.msgs[0].size == ((uint64_t)4 << 30) + 8,
	    "big maildir: size %" PRIu64 " from W= (%d)", r == MD_OK && md.count == 1 ?
	    md.msgs[0].size : 0, r);
	if (r == MD_OK && md.count == 1) {
		out = sent(&md, 0, 0, &n);
		CHECK(n == 8 && memcmp(out, "S: x\r\n\r\n", 8) == 0, "big maildir: TOP 0 (%zu)", n);
		free(out);
	}
	maildrop_close(&md);
	unlink(path);
}

/* ---- -U: the parsers of uidlsrc.c ---- */

struct pcollect {
	int n;
	char uidl[16][17];
	uint64_t start[16], end[16];
};

static void
pcollect(void *arg, uint64_t start, uint64_t end, const unsigned char *d)
{
	struct pcollect *c = arg;

	if (c->n < 16) {
		popa3d_uidl(d, c->uidl[c->n]);
		c->start[c->n] = start;
		c->end[c->n] = end;
	}
	c->n++;
}

/* popa3d's scan of data fed in chunks of step octets: messages, or -1 refused. */
static int
popa3d_run(const char *data, size_t len, size_t step, struct pcollect *c)
{
	struct popa3d p;
	size_t off;

	memset(c, 0, sizeof(*c));
	popa3d_init(&p, pcollect, c);
	for (off = 0; off < len; off += step)
		popa3d_feed(&p, data + off, len - off < step ? len - off : step);
	return popa3d_end(&p) < 0 ? -1 : c->n;
}

/* The mbox and the UIDLs Debian's popa3d 1.0.3 printed for it. */
static const char popa3d_mbox[] =
    "From alice@example.org Mon Jan  1 10:00:00 2024\n"
    "Return-Path: <alice@example.org>\n"
    "Delivered-To: bob@example.net\n"
    "Received: from mx.example.org (mx.example.org [192.0.2.1])\n"
    "\tby mail.example.net (Postfix) with ESMTP id 4A1B2C3D\n"
    "\tfor <bob@example.net>; Mon,  1 Jan 2024 10:00:00 +0000 (UTC)\n"
    "Received: from client.example.org by mx.example.org; Mon, 1 Jan 2024 09:59:59 +0000\n"
    "Date: Mon, 1 Jan 2024 09:59:58 +0000\n"
    "From: Alice <alice@example.org>\n"
    "To: bob@example.net\n"
    "Subject: one\n"
    "Message-ID: <one@example.org>\n"
    "\n"
    "Body one.\n"
    ">From the escaped line\n"
    "\n"
    "From carol@example.org Mon Jan  1 11:00:00 2024\n"
    "date: Mon, 1 Jan 2024 11:00:00 +0000\n"
    "message-id: <two@example.org>\n"
    "From: Carol <carol@example.org>\n"
    "Subject: two\n"
    "Received: by localhost; Mon, 1 Jan 2024 11:00:01 +0000\n"
    "\n"
    "Body two.\n"
    "\n"
    "From dave@example.org Mon Jan  1 12:00:00 2024\n"
    "From: Dave <dave@example.org>\n"
    "Subject: three\n"
    "\n"
    "Body three.\n"
    "\n"
    "From dave@example.org Mon Jan  1 12:00:01 2024\n"
    "From: Dave <dave@example.org>\n"
    "Subject: four\n"
    "\n"
    "Body four, different.\n"
    "\n"
    "From erin@example.org Mon Jan  1 13:00:00 2024\n"
    "X-Delivery-ID: abc123\n"
    "Subject: five\n"
    "\n"
    "Body five.\n"
    "\n"
    "From frank@example.org Mon Jan  1 14:00:00 2024\n"
    "Date: Mon, 1 Jan 2024 14:00:00 +0000\n"
    "Message-ID: <six@example.org>\n"
    "Subject: six\n"
    "\n"
    "Body six without final newline";

static void
test_popa3d(void)
{
	static const char *want[] = { "71faf1c67579a98b", "0d64776bcfd7f108", "d98c1dd404b2008f",
	    "d98c1dd404b2008f", "81436a50a8b3be15", "5c8ea440db8c503b" };
	static const char crlf[] =
	    "From alice@example.org Mon Jan  1 10:00:00 2024\r\n"
	    "Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.net\r\n"
	    "Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n"
	    "\tby mail.example.net (Postfix) with ESMTP id 4A1B2C3D\r\n"
	    "\tfor <bob@example.net>; Mon,  1 Jan 2024 10:00:00 +0000 (UTC)\r\n"
	    "Received: from client.example.org by mx.example.org; Mon, 1 Jan 2024 09:59:59 +0000\r\n"
	    "Date: Mon, 1 Jan 2024 09:59:58 +0000\r\nFrom: Alice <alice@example.org>\r\n"
	    "To: bob@example.net\r\nSubject: one\r\nMessage-ID: <one@example.org>\r\n\r\n"
	    "Body one.\r\n>From the escaped line\r\n\r\n"
	    "From carol@example.org Mon Jan  1 11:00:00 2024\r\n"
	    "date: Mon, 1 Jan 2024 11:00:00 +0000\r\nmessage-id: <two@example.org>\r\n"
	    "From: Carol <carol@example.org>\r\nSubject: two\r\n"
	    "Received: by localhost; Mon, 1 Jan 2024 11:00:01 +0000\r\n\r\nBody two.\r\n\r\n";
	static const char *refused[] = { "Subject: no From_ line first\n\nFrom a b\nx\n",
	    "From a b\nFrom c d\nx\n", "From a b\n", "From a b", "\nFrom a b\nx\n",
	    "From a b\nx\n\nFrom c d\n" };
	static const size_t steps[] = { 1, 2, 3, 7, 16, 17, 64, 100000 };
	struct pcollect c;
	char *big;
	size_t i, k, n;
	int r;

	for (k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		r = popa3d_run(popa3d_mbox, strlen(popa3d_mbox), steps[k], &c);
		CHECK(r == 6, "popa3d: 6 messages in chunks of %zu (%d)", steps[k], r);
		for (i = 0; r == 6 && i < 6; i++)
			CHECK(strcmp(c.uidl[i], want[i]) == 0, "popa3d: message %zu in chunks of %zu: "
			    "%s, popa3d printed %s", i + 1, steps[k], c.uidl[i], want[i]);
		CHECK(r == 6 && c.start[0] == 0 && c.end[5] == strlen(popa3d_mbox) &&
		    c.end[0] == c.start[1], "popa3d: message offsets");
		r = popa3d_run(crlf, strlen(crlf), steps[k], &c);
		CHECK(r == 1 && strcmp(c.uidl[0], "f662a431b08b5358") == 0,
		    "popa3d: a CRLF mbox is one message, f662a431b08b5358 (%d %s)", r, c.uidl[0]);
	}
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		for (k = 0; k < sizeof(steps) / sizeof(steps[0]); k++)
			CHECK(popa3d_run(refused[i], strlen(refused[i]), steps[k], &c) == -1,
			    "popa3d: refuses %s (chunks of %zu)", refused[i], steps[k]);
	CHECK(popa3d_run("", 0, 1, &c) == 0, "popa3d: an empty mbox");
	/* The quirk: a From_ line that crosses a 64 KiB boundary in more than
	 * one fragment is not "blank", so a "From " line right after it is a
	 * header line; else popa3d refuses the mbox. */
	n = 2 * POPA3D_BLOCK;
	if ((big = malloc(n + 200)) == NULL)
		return;
	for (k = 0; k < 4; k++) {
		static const char *fl[] = { "From alice@example.org Mon Jan  1 10:00:00 2024\n",
		    "From alice@example.org Mon Jan  1 10:00:00 2024\n",
		    "From alice@example.org Mon Jan  1 10:00:00 2024\n", "From a@b.c Mon Jan 1 2024\n" };
		static const size_t before[] = { 10, 40, 500, 10 };     /* octets before 64 KiB */
		static const int ok[] = { 1, 1, 0, 0 };
		size_t at = POPA3D_BLOCK - before[k], len = 0;

		len += (size_t)snprintf(big, n, "From x@y Mon Jan  1 00:00:00 2024\nSubject: s\n\n");
		memset(big + len, 'a', at - 1 - len);
		big[at - 1] = '\n';             /* a long body line, then the blank line */
		big[at - 2] = '\n';
		len = at;
		len += (size_t)sprintf(big + len, "%sFrom second line\nSubject: t\n\nbody\n", fl[k]);
		for (i = 0; i < 3; i++) {
			r = popa3d_run(big, len, steps[i * 3], &c);
			CHECK(ok[k] ? r == 2 : r == -1, "popa3d 64 KiB quirk, case %zu (chunks of %zu): "
			    "%d", k, steps[i * 3], r);
		}
	}
	free(big);
}

static void
test_dovecot_uidlist(void)
{
	static const char *bad[] = { "2 V1 N2", "3 V0 N5", "3 N5", "3 Vx N5", "3 V5 N5 Gxyz", "x",
	    "", "1 5", "1 0 5", "3V5 N5" };
	static const char *badrec[] = { "0 :a", "5 a", "6 :a/b", "6 :", "a :b", "6", "6 S5",
	    "4294967295 :a", "99999999999 :a" };
	struct dovecot_list l;
	struct dovecot_rec r;
	const char *why = NULL, *line;
	size_t i;

	memset(&l, 0, sizeof(l));
	line = "3 V1796669846 N10 G0539671d9601176be941000083ecc375 Xextra";
	CHECK(dovecot_line(&l, line, strlen(line), &r, &why) == 0 && l.version == 3 &&
	    l.uidvalidity == 1796669846U && l.next_uid == 10, "uidlist: v3 header (%s)", why);
	line = "3 P W26 :1704103201.M1P100.host";
	CHECK(dovecot_line(&l, line, strlen(line), &r, &why) == 1 && r.uid == 3 && r.has_p &&
	    r.plen == 0 && r.namelen == 22 && memcmp(r.name, "1704103201.M1P100.host", 22) == 0,
	    "uidlist: a bare P field and the name (%s)", why);
	line = "5 Pabc-legacy.uidl O2 W26 :1704103202.M2P100.host,S=162:2,S";
	CHECK(dovecot_line(&l, line, strlen(line), &r, &why) == 1 && r.uid == 5 && r.has_p &&
	    r.plen == 15 && memcmp(r.p, "abc-legacy.uidl", 15) == 0 && r.has_o && r.order == 2 &&
	    r.namelen == 28, "uidlist: P and O fields, the name up to ':'");
	line = "5 :x";
	CHECK(dovecot_line(&l, line, strlen(line), &r, &why) == -1, "uidlist: UIDs must increase");
	memset(&l, 0, sizeof(l));
	line = "1 12345 10";
	CHECK(dovecot_line(&l, line, strlen(line), &r, &why) == 0 && l.version == 1 &&
	    l.uidvalidity == 12345 && l.next_uid == 10, "uidlist: v1 header");
	line = "3 1704103201.M1P100.host:2,S";
	CHECK(dovecot_line(&l, line, strlen(line), &r, &why) == 1 && r.uid == 3 && !r.has_p &&
	    r.namelen == 22, "uidlist: a v1 record with flags");
	line = "10 x";
	CHECK(dovecot_line(&l, line, strlen(line), &r, &why) == -1, "uidlist: v1 UID >= next");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&l, 0, sizeof(l));
		CHECK(dovecot_line(&l, bad[i], strlen(bad[i]), &r, &why) == -1,
		    "uidlist: a bad header \"%s\" refused", bad[i]);
	}
	for (i = 0; i < sizeof(badrec) / sizeof(badrec[0]); i++) {
		memset(&l, 0, sizeof(l));
		line = "3 V5 N7";
		dovecot_line(&l, line, strlen(line), &r, &why);
		l.prev_uid = 4;
		CHECK(dovecot_line(&l, badrec[i], strlen(badrec[i]), &r, &why) == -1,
		    "uidlist: a bad record \"%s\" refused", badrec[i]);
	}
}

static void
test_xuidl(void)
{
	static const struct {
		const char *lines[4];
		const char *want;
	} v[] = {
		{ { "Subject: a\n", "X-UIDL: 5f1a2b3c4d5e6f70\n", "\n" }, "5f1a2b3c4d5e6f70" },
		{ { "x-uidl:\t ef1d.1796669916.1 \r\n", "Subject: a\n" }, "ef1d.1796669916.1" },
		{ { "X-UIDL: first\n", "X-UIDL: second\n" }, "first" },
		{ { "X-UIDL: bad value\n", "X-UIDL: second\n" }, NULL },
		{ { "X-UIDL: folded\n", "\tcontinued\n" }, NULL },
		{ { "Subject: a\n", "\n", "X-UIDL: body\n" }, NULL },
		{ { "Subject: a\n", "\r\n", "X-UIDL: body\n" }, NULL },
		{ { "X-UIDL : spaced\n" }, NULL },
		{ { "X-UIDL:\n" }, NULL },
		{ { "X-UIDL: \xe9t\xe9\n" }, NULL },
		{ { "X-UIDL: 1234567890123456789012345678901234567890123456789012345678901234567890\n" },
		    "1234567890123456789012345678901234567890123456789012345678901234567890" },
		{ { "X-UIDL: 12345678901234567890123456789012345678901234567890123456789012345678901\n" },
		    NULL },
		{ { "Subject: a\n", "X-UIDL: last-line-no-lf" }, "last-line-no-lf" },
	};
	struct xuidl x;
	const char *got;
	size_t i, k;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		xuidl_init(&x);
		for (k = 0; k < 4 && v[i].lines[k] != NULL; k++)
			if (xuidl_line(&x, v[i].lines[k], strlen(v[i].lines[k]), strlen(v[i].lines[k])))
				break;
		got = xuidl_value(&x);
		CHECK(v[i].want == NULL ? got == NULL : got != NULL && strcmp(got, v[i].want) == 0,
		    "X-UIDL case %zu: %s, want %s", i, got ? got : "none", v[i].want ? v[i].want : "none");
	}
	xuidl_init(&x);
	xuidl_line(&x, "X-UIDL: abc", 11, 5000);        /* longer than looked at */
	CHECK(xuidl_value(&x) == NULL, "X-UIDL: a line longer than HEADER_LINE_MAX has none");
}

static void
test_sources_list(void)
{
	static const char *bad[] = { "", "dovecot,", ",xuidl", "dovecot,dovecot", "Dovecot", "imap",
	    "xuidl,,popa3d", "dovecot,xuidl,popa3d,dovecot" };
	unsigned char src[UIDL_SOURCES_MAX];
	char err[200];
	size_t i;
	int n;

	CHECK(uidl_sources_parse("popa3d,dovecot,xuidl", src, &n, err, sizeof(err)) == 0 && n == 3 &&
	    src[0] == SRC_POPA3D && src[1] == SRC_DOVECOT && src[2] == SRC_XUIDL, "-U: three, in order");
	CHECK(uidl_sources_parse("xuidl", src, &n, err, sizeof(err)) == 0 && n == 1 &&
	    src[0] == SRC_XUIDL, "-U: one");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(uidl_sources_parse(bad[i], src, &n, err, sizeof(err)) < 0 && err[0] == '-',
		    "-U \"%s\" refused", bad[i]);
	CHECK(uidl_valid("a", 1) && !uidl_valid("", 0) && !uidl_valid("a b", 3) &&
	    !uidl_valid("\x7f", 1), "a UIDL: 1-70 octets of 0x21-0x7E");
}

#ifdef HAVE_TLS
/* The signer answers one request, with a signature the key's public half
 * verifies, and exits: a second request gets nothing. */
static void
test_signer(void)
{
	char path[300];
	unsigned char digest[32];
	struct signreq req;
	struct signans ans, ready;
	EVP_PKEY *k = EVP_EC_gen("P-256");
	EVP_PKEY_CTX *v;
	FILE *f;
	int sv[2], status, ok = 0;
	pid_t pid;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/signer.key", tmpdir);
	f = fopen(path, "w");
	CHECK(k != NULL && f != NULL && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1,
	    "signer: key written");
	if (f != NULL)
		fclose(f);
	chmod(path, 0600);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0 || (pid = fork()) < 0) {
		CHECK(0, "signer: socketpair/fork");
		return;
	}
	if (pid == 0) {
		struct signer sg = { path, "none", "", 0, "unit", 30, 0, 0, 0 };

		close(sv[0]);
		signer_run(&sg, sv[1]);
	}
	close(sv[1]);
	n = recv(sv[0], &ready, sizeof(ready), 0);
	CHECK(n == (ssize_t)sizeof(ready) && ready.len == 0, "signer: ready (%zd)", n);
	memset(digest, 7, sizeof(digest));
	memset(&req, 0, sizeof(req));
	req.op = SIGN_ECDSA;
	req.len = sizeof(digest);
	memcpy(req.data, digest, sizeof(digest));
	for (int i = 0; i < 2; i++) {
		if (send(sv[0], &req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req))
			break;
		memset(&ans, 0, sizeof(ans));
		n = recv(sv[0], &ans, sizeof(ans), 0);
		if (i == 0) {
			v = EVP_PKEY_CTX_new(k, NULL);
			ok = n == (ssize_t)sizeof(ans) && ans.len > 0 && v != NULL &&
			    EVP_PKEY_verify_init(v) == 1 &&
			    EVP_PKEY_verify(v, ans.data, (size_t)ans.len, digest, sizeof(digest)) == 1;
			EVP_PKEY_CTX_free(v);
			CHECK(ok, "signer: first request signed, and the signature verifies");
		} else {
			CHECK(n <= 0, "signer: a second request answered (%zd)", n);
		}
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "signer: exits 0 after its one answer (status %#x)", status);
	close(sv[0]);
	EVP_PKEY_free(k);
}
#endif

int
main(void)
{
	char cmd[300];

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_md5();
	test_parse();
	test_getline();
	test_mbox_basic();
	test_mbox_separators();
	test_mbox_long_lines();
	test_xxh3();
	test_uidl();
	test_update();
	test_sizer();
	test_maildir();
	test_maildir_names();
	test_fast_paths();
	test_body_blocks();
	test_lf64();
	test_big();
	test_popa3d();
	test_dovecot_uidlist();
	test_xuidl();
	test_sources_list();
#ifdef HAVE_TLS
	test_signer();
#endif
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", tmpdir);
	printf("unit: %d passed, %d failed\n", passed, failed);
	return failed != 0;
}
