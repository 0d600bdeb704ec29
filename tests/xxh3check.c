/*
 * tests/xxh3check.c - checks xxh3.c (XXH3-128) against itself and, through
 * tests/xxh3check.sh, against the reference tool `xxhsum -H2`.
 *
 *   xxh3check [-c] [-s seed] file...
 *	For each file print "<32 lowercase hex digits>  <file>", as
 *	`xxhsum -H2` does, hashing it with xxh3_update calls of random sizes
 *	(zero-length ones included). With -c also hash it in one shot, one
 *	octet at a time (files up to 64 KiB), with more random splits and
 *	with xxh3_final called midway (checked against the one-shot hash of
 *	that prefix, then hashing goes on); on any difference print the
 *	file, the seed and both hashes and abort().
 *   xxh3check -e
 *	Every split of every input length 0..1100 into two update() calls
 *	(with final() between them) and many three-way splits of lengths
 *	around the buffer and block sizes, against the one-shot hash of
 *	built-in pseudo-random data; aborts on a difference.
 *   xxh3check -b MiB
 *	Throughput: hash a buffer of MiB mebioctets in memory, in one shot
 *	and in 64 KiB updates, best of three runs each, in GB/s (10^9 octets
 *	a second).
 *
 * The seed (-s, default from the clock and pid) makes the splits
 * reproducible; it is printed on stderr.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xxh3.h"

/* splitmix64: the test's own generator, state passed explicitly */
static uint64_t
rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15u);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
	return z ^ (z >> 31);
}

/* A random value in 0..n (inclusive). */
static size_t
rnd_upto(uint64_t *s, size_t n)
{
	return (size_t)(rnd(s) % ((uint64_t)n + 1));
}

static void
hex(const unsigned char h[16], char out[33])
{
	static const char digits[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 16; i++) {
		out[2 * i] = digits[h[i] >> 4];
		out[2 * i + 1] = digits[h[i] & 15];
	}
	out[32] = '\0';
}

static void
mismatch(const char *name, uint64_t seed, const char *what,
    const unsigned char want[16], const unsigned char got[16])
{
	char a[33], b[33];

	hex(want, a);
	hex(got, b);
	fprintf(stderr, "xxh3check: %s: seed %" PRIu64 ": %s: %s, one-shot %s\n",
	    name, seed, what, b, a);
	abort();
}

/* Whole file into memory (NULL and a message on error). */
static unsigned char *
slurp(const char *name, size_t *len)
{
	FILE *f = fopen(name, "rb");
	unsigned char *buf = NULL, *nb;
	size_t cap = 0, n = 0, r;

	if (f == NULL) {
		fprintf(stderr, "xxh3check: %s: %s\n", name, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 65536;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				fprintf(stderr, "xxh3check: out of memory\n");
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "xxh3check: %s: read error\n", name);
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

/*
 * Hash p[0..len) with random update sizes: mostly small, sometimes up to a
 * few stripes or blocks, sometimes most of what is left. If want is not
 * NULL (it is the one-shot hash), also call xxh3_final at a few random
 * points and compare with the one-shot hash of that prefix.
 */
static void
hash_split(const unsigned char *p, size_t len, uint64_t *rs,
    unsigned char out[16], const unsigned char *want, const char *name,
    uint64_t seed)
{
	struct xxh3 st;
	size_t pos = 0, k;
	int probes = want != NULL ? 3 : 0;
	unsigned char mid[16], ref[16];

	xxh3_init(&st);
	while (pos < len) {
		switch (rnd(rs) % 6) {
		case 0:
			k = rnd_upto(rs, 3);
			break;
		case 1:
			k = rnd_upto(rs, 70);
			break;
		case 2:
			k = rnd_upto(rs, 300);
			break;
		case 3:
			k = rnd_upto(rs, 3000);
			break;
		case 4:
			k = rnd_upto(rs, 70000);
			break;
		default:
			k = rnd_upto(rs, len - pos);
			break;
		}
		if (k > len - pos)
			k = len - pos;
		if (k == 0 && rnd(rs) % 2 == 0)
			xxh3_update(&st, NULL, 0);
		else
			xxh3_update(&st, p + pos, k);
		pos += k;
		if (probes > 0 && pos < len && rnd(rs) % 8 == 0) {
			probes--;
			xxh3_final(&st, mid);
			xxh3_128(p, pos, ref);
			if (memcmp(mid, ref, 16) != 0)
				mismatch(name, seed, "final midway", ref, mid);
		}
	}
	xxh3_final(&st, out);
	if (want != NULL) {
		/* final must not have changed the state */
		xxh3_final(&st, mid);
		if (memcmp(mid, out, 16) != 0)
			mismatch(name, seed, "second final", out, mid);
	}
}

static int
check_file(const char *name, int thorough, uint64_t seed, uint64_t *rs)
{
	unsigned char *p, h[16], one[16], other[16];
	size_t len, i;
	char out[33];
	int round;

	p = slurp(name, &len);
	if (p == NULL)
		return 1;
	hash_split(p, len, rs, h, NULL, name, seed);
	if (thorough) {
		struct xxh3 st;

		xxh3_128(p, len, one);
		if (memcmp(h, one, 16) != 0)
			mismatch(name, seed, "random split", one, h);
		for (round = 0; round < 3; round++) {
			hash_split(p, len, rs, other, one, name, seed);
			if (memcmp(other, one, 16) != 0)
				mismatch(name, seed, "random split", one, other);
		}
		if (len <= 65536) {
			xxh3_init(&st);
			for (i = 0; i < len; i++)
				xxh3_update(&st, p + i, 1);
			xxh3_final(&st, other);
			if (memcmp(other, one, 16) != 0)
				mismatch(name, seed, "octet by octet", one, other);
		}
	}
	free(p);
	hex(h, out);
	printf("%s  %s\n", out, name);
	return 0;
}

/* Hash p[0..len) as pieces cut at a and b (a <= b <= len). */
static void
hash3(const unsigned char *p, size_t len, size_t a, size_t b,
    unsigned char out[16])
{
	struct xxh3 st;

	xxh3_init(&st);
	xxh3_update(&st, p, a);
	xxh3_update(&st, p + a, b - a);
	xxh3_update(&st, p + b, len - b);
	xxh3_final(&st, out);
}

static int
exhaustive(void)
{
	static const size_t three[] = { 241, 256, 257, 300, 319, 320, 321,
	    512, 513, 1023, 1024, 1025, 1088, 1089, 1100, 2113 };
	unsigned char data[2113], one[16], got[16], ref[16];
	uint64_t rs = 42, v;
	unsigned long count = 0;
	struct xxh3 st;
	size_t len, a, b, i;
	char name[64];

	for (i = 0; i < sizeof data; i += 8) {
		v = rnd(&rs);
		memcpy(data + i, &v, sizeof data - i < 8 ? sizeof data - i : 8);
	}
	for (len = 0; len <= 1100; len++) {
		snprintf(name, sizeof name, "length %zu", len);
		xxh3_128(data, len, one);
		for (a = 0; a <= len; a++) {
			xxh3_init(&st);
			xxh3_update(&st, data, a);
			xxh3_final(&st, got);
			xxh3_128(data, a, ref);
			if (memcmp(got, ref, 16) != 0)
				mismatch(name, a, "prefix (seed = cut)", ref, got);
			xxh3_update(&st, data + a, len - a);
			xxh3_final(&st, got);
			if (memcmp(got, one, 16) != 0)
				mismatch(name, a, "two pieces (seed = cut)", one, got);
			count++;
		}
	}
	for (i = 0; i < sizeof three / sizeof three[0]; i++) {
		len = three[i];
		snprintf(name, sizeof name, "length %zu", len);
		xxh3_128(data, len, one);
		for (a = 0; a <= len; a++) {
			for (b = a; b <= len; b += 1 + (b - a) / 16) {
				hash3(data, len, a, b, got);
				if (memcmp(got, one, 16) != 0)
					mismatch(name, (uint64_t)a << 32 | b,
					    "three pieces (seed = cuts)", one, got);
				count++;
			}
		}
	}
	printf("%lu splits match one-shot\n", count);
	return 0;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
bench(size_t mib)
{
	size_t len = mib << 20, i, off;
	unsigned char *p = malloc(len), h[16];
	uint64_t rs = 1, v;
	double t, best1 = 1e30, best2 = 1e30;
	struct xxh3 st;
	char out[33];
	int run;

	if (p == NULL) {
		fprintf(stderr, "xxh3check: cannot allocate %zu MiB\n", mib);
		return 1;
	}
	for (i = 0; i + 8 <= len; i += 8) {
		v = rnd(&rs);
		memcpy(p + i, &v, 8);
	}
	for (run = 0; run < 3; run++) {
		t = now();
		xxh3_128(p, len, h);
		t = now() - t;
		if (t < best1)
			best1 = t;
		t = now();
		xxh3_init(&st);
		for (off = 0; off < len; off += 65536)
			xxh3_update(&st, p + off,
			    len - off < 65536 ? len - off : 65536);
		xxh3_final(&st, h);
		t = now() - t;
		if (t < best2)
			best2 = t;
	}
	hex(h, out);
#if defined(__SSE2__) && defined(__x86_64__) && !defined(XXH3_PORTABLE)
	printf("path: SSE2\n");
#else
	printf("path: portable\n");
#endif
	printf("%zu MiB, hash %s\n", mib, out);
	printf("one shot:      %.2f GB/s (%.3f s)\n", (double)len / best1 / 1e9,
	    best1);
	printf("64 KiB update: %.2f GB/s (%.3f s)\n", (double)len / best2 / 1e9,
	    best2);
	free(p);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: xxh3check [-c] [-s seed] file...\n"
	    "       xxh3check -e\n"
	    "       xxh3check -b MiB\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	uint64_t seed = (uint64_t)time(NULL) * 1000003u + (uint64_t)getpid();
	uint64_t rs;
	int c, thorough = 0, bad = 0, all_splits = 0;
	long mib = 0;
	char *end;

	while ((c = getopt(argc, argv, "b:ces:")) != -1) {
		switch (c) {
		case 'b':
			mib = strtol(optarg, &end, 10);
			if (*end != '\0' || mib <= 0)
				usage();
			break;
		case 'c':
			thorough = 1;
			break;
		case 'e':
			all_splits = 1;
			break;
		case 's':
			seed = strtoull(optarg, &end, 10);
			if (*end != '\0')
				usage();
			break;
		default:
			usage();
		}
	}
	if (mib > 0)
		return bench((size_t)mib);
	if (all_splits)
		return exhaustive();
	if (optind == argc)
		usage();
	fprintf(stderr, "xxh3check: seed %" PRIu64 "\n", seed);
	rs = seed;
	for (; optind < argc; optind++)
		bad |= check_file(argv[optind], thorough, seed, &rs);
	if (fflush(stdout) != 0)
		bad = 1;
	return bad;
}
