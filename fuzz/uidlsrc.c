/*
 * fuzz/uidlsrc.c - libFuzzer harness for the parsers of -U (uidlsrc.c). The
 * first octet picks one; the rest is its input:
 *  - a dovecot-uidlist, line by line: a record's name and P value lie in
 *    its line, the name is not empty and holds no '/' or ':', UIDs increase;
 *  - a message header for X-UIDL: a value found is a valid UIDL;
 *  - an mbox for popa3d's UIDL, fed whole and in chunks of a size the input
 *    picks: the same messages, UIDLs and refusal either way; messages in
 *    order, each ending where the next starts, the last at the end.
 */
#include <stdlib.h>
#include <string.h>

#include "../uidlsrc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t n;
	uint64_t start[64], end[64];
	unsigned char d[64][16];
};

static void
collect(void *arg, uint64_t start, uint64_t end, const unsigned char *d)
{
	struct seen *s = arg;

	if (s->n < 64) {
		s->start[s->n] = start;
		s->end[s->n] = end;
		memcpy(s->d[s->n], d, 16);
	}
	s->n++;
}

static int
popa3d(const char *p, size_t n, size_t step, struct seen *s)
{
	struct popa3d st;
	size_t off;

	memset(s, 0, sizeof(*s));
	popa3d_init(&st, collect, s);
	for (off = 0; off < n; off += step)
		popa3d_feed(&st, p + off, n - off < step ? n - off : step);
	return popa3d_end(&st);
}

static void
dovecot(const char *p, size_t n)
{
	struct dovecot_list l;
	struct dovecot_rec r;
	const char *why, *e = p + n, *lf;
	uint32_t prev = 0;

	memset(&l, 0, sizeof(l));
	for (; p < e; p = lf + 1) {
		int k;

		if ((lf = memchr(p, '\n', (size_t)(e - p))) == NULL)
			lf = e;
		if ((size_t)(lf - p) >= DOVECOT_LINE_MAX)
			return;
		k = dovecot_line(&l, p, (size_t)(lf - p), &r, &why);
		if (k < 0)
			return;
		if (k == 0)
			continue;
		if (r.uid <= prev || r.name < p || r.name + r.namelen > lf || r.namelen == 0 ||
		    memchr(r.name, '/', r.namelen) != NULL || memchr(r.name, ':', r.namelen) != NULL ||
		    (r.has_p && (r.p < p || r.p + r.plen > lf)))
			abort();
		prev = r.uid;
	}
}

static void
xuidl(const char *p, size_t n)
{
	struct xuidl x;
	const char *e = p + n, *lf, *v;

	xuidl_init(&x);
	for (; p < e; p = lf + 1) {
		size_t len;

		if ((lf = memchr(p, '\n', (size_t)(e - p))) == NULL)
			lf = e - 1;
		len = (size_t)(lf - p) + 1;
		if (xuidl_line(&x, p, len < HEADER_LINE_MAX ? len : HEADER_LINE_MAX, len))
			break;
	}
	if ((v = xuidl_value(&x)) != NULL && !uidl_valid(v, strlen(v)))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen a, b;
	const char *p = (const char *)data + 1;
	size_t n, i;
	int ra, rb;

	if (size < 1)
		return 0;
	n = size - 1;
	switch (data[0] % 3) {
	case 0:
		dovecot(p, n);
		break;
	case 1:
		xuidl(p, n);
		break;
	default:
		ra = popa3d(p, n, n + 1, &a);
		rb = popa3d(p, n, 1 + data[0] / 3 % 61, &b);
		if (ra != rb || (ra == 0 && (a.n != b.n || memcmp(&a, &b, sizeof(a)) != 0)))
			abort();
		for (i = 0; ra == 0 && i < a.n && i < 64; i++)
			if ((i > 0 && a.start[i] != a.end[i - 1]) || a.start[i] >= a.end[i] ||
			    (i + 1 == a.n && a.end[i] != n))
				abort();
		break;
	}
	return 0;
}
