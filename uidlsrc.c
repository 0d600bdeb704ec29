/*
 * uidlsrc.c - the parsers of -U: the list of sources itself, Dovecot's
 * dovecot-uidlist, the X-UIDL header field (qpopper, GNU mailutils), and
 * popa3d 1.0.3's UIDL computation. Octets in, values out; no I/O, no memory
 * of their own: uidlmap.c reads the files and applies what these find.
 *
 * Each follows the other server's own code (Dovecot 2.3.19's
 * maildir-uidlist.c, popa3d 1.0.3's mailbox.c; see the UIDL section of
 * pop3d(8)), and takes only what fits a UIDL: 1 to 70 octets of 0x21 to
 * 0x7E. Lines are bounded by the callers (DOVECOT_LINE_MAX, HEADER_LINE_MAX);
 * popa3d's scan holds 16 octets of a line at most.
 */
#include <stdio.h>
#include <string.h>

#include "uidlsrc.h"

static const char *const source_names[] = { "", "dovecot", "xuidl", "popa3d" };

const char *
uidl_source_name(int src)
{
	return src > SRC_NONE && src <= SRC_POPA3D ? source_names[src] : "own";
}

int
uidl_valid(const char *p, size_t n)
{
	size_t i;

	if (n < 1 || n > 70)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return 0;
	return 1;
}

int
uidl_sources_parse(const char *arg, unsigned char src[UIDL_SOURCES_MAX], int *n,
    char *err, size_t errlen)
{
	const char *p = arg, *e;
	size_t len;
	int k, j;

	*n = 0;
	for (;;) {
		e = strchr(p, ',');
		len = e != NULL ? (size_t)(e - p) : strlen(p);
		for (k = SRC_DOVECOT; k <= SRC_POPA3D; k++)
			if (strlen(source_names[k]) == len && memcmp(source_names[k], p, len) == 0)
				break;
		if (len == 0) {
			snprintf(err, errlen, "-U: an empty source name (a list is names "
			    "separated by commas: dovecot, xuidl, popa3d)");
			return -1;
		}
		if (k > SRC_POPA3D) {
			snprintf(err, errlen, "-U: unknown UIDL source \"%.*s\" (known: dovecot, "
			    "xuidl, popa3d)", len > 32 ? 32 : (int)len, p);
			return -1;
		}
		for (j = 0; j < *n; j++)
			if (src[j] == k) {
				snprintf(err, errlen, "-U: %s given twice", source_names[k]);
				return -1;
			}
		src[(*n)++] = (unsigned char)k;     /* (at most one of each: fits) */
		if (e == NULL)
			return 0;
		p = e + 1;
	}
}

/* ASCII only, whatever the locale: the other servers compare so. */
static int
ascii_ieq(const char *s, const char *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char a = (unsigned char)s[i], b = (unsigned char)t[i];

		if (a >= 'A' && a <= 'Z')
			a = (unsigned char)(a - 'A' + 'a');
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char)(b - 'A' + 'a');
		if (a != b)
			return 0;
	}
	return 1;
}

/* ---- dovecot-uidlist (maildir-uidlist.c: maildir_uidlist_read_header,
 * maildir_uidlist_next, maildir_uidlist_read_extended) ---- */

/* Decimal digits from *p, at least one, as an unsigned 32-bit value: 0, or
 * -1 (none, or too large). */
static int
decimal32(const char **p, const char *end, uint32_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (s == end || *s < '0' || *s > '9')
		return -1;
	for (; s < end && *s >= '0' && *s <= '9'; s++)
		if ((v = v * 10 + (uint64_t)(*s - '0')) > UINT32_MAX)
			return -1;
	*out = (uint32_t)v;
	*p = s;
	return 0;
}

/* A whole token of decimal digits, as Dovecot's str_to_uint takes it. */
static int
token32(const char *s, const char *end, uint32_t *out)
{
	return decimal32(&s, end, out) == 0 && s == end ? 0 : -1;
}

static const char *
skip_spaces(const char *p, const char *end)
{
	while (p < end && *p == ' ')
		p++;
	return p;
}

static const char *
token_end(const char *p, const char *end)
{
	while (p < end && *p != ' ')
		p++;
	return p;
}

/* "3 V<uidvalidity> N<nextuid> G<guid> ...": other keys are Dovecot's own. */
static int
v3_header(struct dovecot_list *l, const char *p, const char *end, const char **why)
{
	while ((p = skip_spaces(p, end)) < end) {
		const char *v = p + 1, *e = token_end(p, end);
		size_t i;

		switch (*p) {
		case 'V':
			if (token32(v, e, &l->uidvalidity) < 0)
				return *why = "invalid UIDVALIDITY in the header", -1;
			break;
		case 'N':
			if (token32(v, e, &l->next_uid) < 0)
				return *why = "invalid next UID in the header", -1;
			break;
		case 'G':
			for (i = 0; v + i < e && strchr("0123456789abcdefABCDEF", v[i]) != NULL &&
			    v[i] != '\0'; i++)
				;
			if (i != 32 || v + i != e)
				return *why = "invalid mailbox GUID in the header", -1;
			break;
		default:
			break;
		}
		p = e;
	}
	return 0;
}

static int
header_line(struct dovecot_list *l, const char *line, size_t len, const char **why)
{
	const char *p = line + 2, *end = line + len;

	if (len < 2 || line[0] < '0' || line[0] > '9' || line[1] != ' ')
		return *why = "corrupted header (no version number)", -1;
	l->version = line[0] - '0';
	if (l->version == 1) {
		/* "1 <uidvalidity> <nextuid>", read with sscanf("%u %u") */
		p = skip_spaces(p, end);
		if (decimal32(&p, end, &l->uidvalidity) < 0 || p == end || *p != ' ')
			return *why = "corrupted version 1 header", -1;
		p = skip_spaces(p, end);
		if (decimal32(&p, end, &l->next_uid) < 0)
			return *why = "corrupted version 1 header", -1;
	} else if (l->version == 3) {
		if (v3_header(l, p, end, why) < 0)
			return -1;
	} else {
		return *why = "unsupported version (only 1 and 3 are known)", -1;
	}
	if (l->uidvalidity == 0 || l->next_uid == 0)
		return *why = "broken header (UIDVALIDITY or next UID missing or 0)", -1;
	return 0;
}

/* A v3 record's fields before ":<filename>": the first P and O are kept;
 * others (S, W, G and unknown ones) are Dovecot's business. */
static int
v3_fields(const char **pp, const char *end, struct dovecot_rec *r)
{
	const char *p = *pp;

	while (p < end && *p != ':') {
		const char *e = token_end(p, end);

		if (*p == 'P' && !r->has_p) {
			r->has_p = 1;
			r->p = p + 1;
			r->plen = (size_t)(e - p - 1);
		} else if (*p == 'O' && !r->has_o && token32(p + 1, e, &r->order) == 0) {
			r->has_o = 1;
		}
		p = skip_spaces(e, end);
	}
	if (p == end)
		return -1;              /* no ":<filename>" */
	*pp = p + 1;
	return 0;
}

int
dovecot_line(struct dovecot_list *l, const char *line, size_t len, struct dovecot_rec *r,
    const char **why)
{
	const char *p = line, *end = line + len, *colon;

	if (l->version == 0)
		return header_line(l, line, len, why);
	memset(r, 0, sizeof(*r));
	if (decimal32(&p, end, &r->uid) < 0 || r->uid == 0 || p == end || *p != ' ')
		return *why = "invalid record (no UID)", -1;
	if (r->uid <= l->prev_uid)
		return *why = "UIDs not in increasing order", -1;
	if (r->uid == UINT32_MAX)
		return *why = "UID too high", -1;
	if (l->version == 1 && r->uid >= l->next_uid)
		return *why = "UID not below the header's next UID", -1;
	l->prev_uid = r->uid;
	p = skip_spaces(p, end);
	if (l->version == 3 && v3_fields(&p, end, r) < 0)
		return *why = "invalid record (no \":<file name>\")", -1;
	if (p == end)
		return *why = "invalid record (empty file name)", -1;
	if (memchr(p, '/', (size_t)(end - p)) != NULL || memchr(p, '\0', (size_t)(end - p)) != NULL)
		return *why = "broken file name", -1;
	/* Dovecot finds a file by its name up to the first ':' (its info);
	 * a version 1 record may hold the flags too. */
	colon = memchr(p, ':', (size_t)(end - p));
	r->name = p;
	r->namelen = (size_t)((colon != NULL ? colon : end) - p);
	if (r->namelen == 0)
		return *why = "invalid record (empty file name)", -1;
	return 1;
}

/* ---- X-UIDL ---- */

enum { XU_LOOKING, XU_FOUND, XU_DONE };

void
xuidl_init(struct xuidl *x)
{
	memset(x, 0, sizeof(*x));
}

int
xuidl_line(struct xuidl *x, const char *head, size_t headlen, size_t len)
{
	size_t a = 7, b = headlen;

	if (x->state == XU_DONE)
		return 1;
	if (x->state == XU_FOUND) {
		/* A continuation line: the value was folded; a valid UIDL has
		 * no white space, whatever unfolding makes of it. */
		if (headlen > 0 && (head[0] == ' ' || head[0] == '\t'))
			x->valid = 0;
		x->state = XU_DONE;
		return 1;
	}
	if (headlen == 0 || head[0] == '\n' || (head[0] == '\r' && headlen >= 2 && head[1] == '\n')) {
		x->state = XU_DONE;     /* the blank line: the header is over */
		return 1;
	}
	if (headlen < 7 || !ascii_ieq(head, "X-UIDL:", 7))
		return 0;
	x->state = XU_FOUND;            /* the first one counts, valid or not */
	x->valid = 0;
	if (headlen < len)
		return 0;               /* longer than HEADER_LINE_MAX: no UIDL */
	if (b > a && head[b - 1] == '\n')
		b--;
	if (b > a && head[b - 1] == '\r')
		b--;
	while (a < b && (head[a] == ' ' || head[a] == '\t'))
		a++;
	while (b > a && (head[b - 1] == ' ' || head[b - 1] == '\t'))
		b--;
	if (uidl_valid(head + a, b - a)) {
		x->valid = 1;
		x->len = b - a;
		memcpy(x->value, head + a, x->len);
		x->value[x->len] = '\0';
	}
	return 0;
}

const char *
xuidl_value(const struct xuidl *x)
{
	return x->state != XU_LOOKING && x->valid ? x->value : NULL;
}

/* ---- popa3d 1.0.3 (mailbox.c: mailbox_parse) ----
 *
 * popa3d reads the mbox in blocks of 64 KiB and looks at each line's first
 * fragment; its rules, on whole lines, are:
 *  - a line starting "From " starts a message when it is the first line or
 *    follows a line that is exactly "\n" (a CR LF line is not blank), or
 *    follows such a From_ line directly: a message with no line but its
 *    From_ line makes popa3d refuse the whole mailbox, as does a first line
 *    that is not a From_ line and a mailbox over 2 GB;
 *  - the header runs to the first line that is exactly "\n";
 *  - its lines starting (case-insensitively, but "X" in upper case only)
 *    "Received:" (the first such field only), "Delivered-To:",
 *    "X-Delivery-ID:", and "Date:" and "Message-ID:" when no Received: came
 *    before them, go to MD5 as they are, LF and any CR included, with the
 *    continuation lines (starting with SP or TAB) of a field so chosen;
 *  - the digest is printed as octets 3, 2, 1, 0, 7, 6, 5, 4 in hex.
 * One quirk depends on the blocks: after a From_ line that crosses a 64 KiB
 * boundary in more than one fragment (see fragmented()), the line after it is
 * not taken as "after a blank line". It only decides whether a "From " line
 * right after a From_ line makes popa3d refuse the mailbox, and is kept so
 * that pop3d refuses, or not, exactly as popa3d did. */

static int
eq(const char *line, size_t n, const char *name, size_t len)
{
	return n >= len && ascii_ieq(line, name, len);
}

/* Did popa3d see the line [s, e) as more than one fragment? Only a line
 * that crosses a block boundary is split: into a fragment of what precedes
 * the boundary when that is more than its line buffer holds (32 octets),
 * else into the line buffer's 32 octets and the rest, when the line is
 * longer than that. */
static int
fragmented(uint64_t s, uint64_t e)
{
	uint64_t b = (s / POPA3D_BLOCK + 1) * POPA3D_BLOCK;

	if (e - 1 < b)
		return 0;
	if (b - s > POPA3D_LINE_BUFFER)
		return 1;
	return e - s > POPA3D_LINE_BUFFER;
}

static void
finish(struct popa3d *p, uint64_t end)
{
	unsigned char d[16];

	md5_final(&p->ctx, d);
	if (p->emit != NULL)
		p->emit(p->arg, p->start, end, d);
}

/* The current line's first octets are in head (all of it, or 16): what is
 * it? */
static void
classify(struct popa3d *p)
{
	const char *h = p->head;
	size_t n = p->nhead;

	p->from = 0;
	p->hashing = 0;
	if (p->refused)
		return;
	if (p->blank && n >= 5 && memcmp(h, "From ", 5) == 0) {
		if (p->line != 0) {
			if (!p->data) {
				p->refused = 1; /* a message of only its From_ line */
				return;
			}
			finish(p, p->line);
		}
		p->start = p->line;
		md5_init(&p->ctx);
		p->header = 1;
		p->fixed = p->received = p->data = 0;
		p->in_msg = 1;
		p->from = 1;            /* blank stays as it is until the line's end */
		return;
	}
	if (p->line == 0) {
		p->refused = 1;         /* the mailbox does not start with a From_ line */
		return;
	}
	if (p->header)
		p->data = 1;
	p->blank = h[0] == '\n';
	if (!p->header)
		return;
	if (p->blank) {
		p->header = 0;
		return;
	}
	switch (h[0]) {
	case '\t':
	case ' ':
		break;                  /* a continuation line: as the field's first */
	case 'R':
	case 'r':
		p->fixed = !p->received && (p->received = eq(h, n, "Received:", 9));
		break;
	case 'D':
	case 'd':
		p->fixed = eq(h, n, "Delivered-To:", 13) || (!p->received && eq(h, n, "Date:", 5));
		break;
	case 'M':
	case 'm':
		p->fixed = !p->received && eq(h, n, "Message-ID:", 11);
		break;
	case 'X':
		p->fixed = eq(h, n, "X-Delivery-ID:", 14);
		break;
	default:
		p->fixed = 0;
		return;
	}
	p->hashing = p->fixed;
}

static void
end_line(struct popa3d *p)
{
	if (p->from)
		p->blank = !fragmented(p->line, p->off);
	p->bol = 1;
}

void
popa3d_init(struct popa3d *p, void (*emit)(void *, uint64_t, uint64_t, const unsigned char *),
    void *arg)
{
	memset(p, 0, sizeof(*p));
	p->bol = 1;
	p->blank = 1;
	p->emit = emit;
	p->arg = arg;
}

void
popa3d_feed(struct popa3d *p, const char *s, size_t n)
{
	const char *end = s + n, *lf;
	size_t k;

	while (s < end && !p->refused) {
		if (p->bol) {
			p->bol = 0;
			p->line = p->off;
			p->nhead = 0;
			p->classified = 0;
		}
		if (!p->classified) {
			while (s < end && p->nhead < sizeof(p->head)) {
				p->off++;
				if ((p->head[p->nhead++] = *s++) == '\n')
					break;
			}
			if (p->head[p->nhead - 1] != '\n' && p->nhead < sizeof(p->head))
				return;         /* the rest of the line's head is to come */
			classify(p);
			p->classified = 1;
			if (p->hashing)
				md5_update(&p->ctx, p->head, p->nhead);
			if (p->head[p->nhead - 1] == '\n')
				end_line(p);
			continue;
		}
		lf = memchr(s, '\n', (size_t)(end - s));
		k = lf != NULL ? (size_t)(lf - s) + 1 : (size_t)(end - s);
		if (p->hashing)
			md5_update(&p->ctx, s, k);
		s += k;
		p->off += k;
		if (lf != NULL)
			end_line(p);
	}
}

int
popa3d_end(struct popa3d *p)
{
	if (!p->bol && !p->classified && !p->refused) {
		classify(p);            /* a last line, without LF, shorter than head */
		p->classified = 1;
		if (p->hashing)
			md5_update(&p->ctx, p->head, p->nhead);
	}
	if (p->off == 0)
		return 0;               /* an empty mailbox */
	if (p->refused || !p->in_msg || !p->data) {
		p->refused = 1;
		return -1;
	}
	finish(p, p->off);
	return 0;
}

void
popa3d_uidl(const unsigned char d[16], char out[17])
{
	static const int order[8] = { 3, 2, 1, 0, 7, 6, 5, 4 };
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 8; i++) {
		out[2 * i] = hex[d[order[i]] >> 4];
		out[2 * i + 1] = hex[d[order[i]] & 15];
	}
	out[16] = '\0';
}
