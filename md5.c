/*
 * md5.c - MD5 message digest, written from RFC 1321.
 *
 * Owns: the MD5 compression function, padding and output encoding. No
 * other part of pop3d depends on how this is done; see md5.h for the API.
 *
 * All loads and stores are byte-wise little-endian, so the code does not
 * depend on the host byte order or alignment. All arithmetic is on
 * uint32_t (wraps modulo 2^32 as RFC 1321 requires); rotation counts are
 * always 1..31. Full 64-octet blocks are hashed straight from the
 * caller's buffer; only a partial block is copied into the context.
 */
#include "md5.h"

#include <string.h>

/* Little-endian 32-bit load and store, octet by octet. */
static uint32_t
load32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 |
	    (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
store32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v & 0xffu);
	p[1] = (unsigned char)(v >> 8 & 0xffu);
	p[2] = (unsigned char)(v >> 16 & 0xffu);
	p[3] = (unsigned char)(v >> 24 & 0xffu);
}

/* RFC 1321 section 3.4: the four auxiliary functions. */
#define F(x, y, z) (((x) & (y)) | (~(x) & (z)))
#define G(x, y, z) (((x) & (z)) | ((y) & ~(z)))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define I(x, y, z) ((y) ^ ((x) | ~(z)))

#define ROTL(x, n) ((uint32_t)((x) << (n)) | (uint32_t)((x) >> (32 - (n))))

/* a = b + ((a + fn(b,c,d) + X[k] + T[i]) <<< s), X[k] = word k of block p */
#define STEP(fn, a, b, c, d, k, s, t) do {				\
	(a) += fn((b), (c), (d)) + load32(p + 4 * (k)) + (uint32_t)(t);	\
	(a) = ROTL((a), (s));						\
	(a) += (b);							\
} while (0)

/*
 * Hash n consecutive 64-octet blocks starting at p. The message words are
 * loaded from p as they are needed rather than copied to a local array,
 * so no copy of the (possibly secret) input is left on the stack.
 */
static void
md5_blocks(uint32_t state[4], const unsigned char *p, size_t n)
{
	uint32_t a = state[0], b = state[1], c = state[2], d = state[3];

	for (; n > 0; n--, p += 64) {
		uint32_t aa = a, bb = b, cc = c, dd = d;

		/* Round 1 */
		STEP(F, a, b, c, d,  0,  7, 0xd76aa478u);
		STEP(F, d, a, b, c,  1, 12, 0xe8c7b756u);
		STEP(F, c, d, a, b,  2, 17, 0x242070dbu);
		STEP(F, b, c, d, a,  3, 22, 0xc1bdceeeu);
		STEP(F, a, b, c, d,  4,  7, 0xf57c0fafu);
		STEP(F, d, a, b, c,  5, 12, 0x4787c62au);
		STEP(F, c, d, a, b,  6, 17, 0xa8304613u);
		STEP(F, b, c, d, a,  7, 22, 0xfd469501u);
		STEP(F, a, b, c, d,  8,  7, 0x698098d8u);
		STEP(F, d, a, b, c,  9, 12, 0x8b44f7afu);
		STEP(F, c, d, a, b, 10, 17, 0xffff5bb1u);
		STEP(F, b, c, d, a, 11, 22, 0x895cd7beu);
		STEP(F, a, b, c, d, 12,  7, 0x6b901122u);
		STEP(F, d, a, b, c, 13, 12, 0xfd987193u);
		STEP(F, c, d, a, b, 14, 17, 0xa679438eu);
		STEP(F, b, c, d, a, 15, 22, 0x49b40821u);

		/* Round 2 */
		STEP(G, a, b, c, d,  1,  5, 0xf61e2562u);
		STEP(G, d, a, b, c,  6,  9, 0xc040b340u);
		STEP(G, c, d, a, b, 11, 14, 0x265e5a51u);
		STEP(G, b, c, d, a,  0, 20, 0xe9b6c7aau);
		STEP(G, a, b, c, d,  5,  5, 0xd62f105du);
		STEP(G, d, a, b, c, 10,  9, 0x02441453u);
		STEP(G, c, d, a, b, 15, 14, 0xd8a1e681u);
		STEP(G, b, c, d, a,  4, 20, 0xe7d3fbc8u);
		STEP(G, a, b, c, d,  9,  5, 0x21e1cde6u);
		STEP(G, d, a, b, c, 14,  9, 0xc33707d6u);
		STEP(G, c, d, a, b,  3, 14, 0xf4d50d87u);
		STEP(G, b, c, d, a,  8, 20, 0x455a14edu);
		STEP(G, a, b, c, d, 13,  5, 0xa9e3e905u);
		STEP(G, d, a, b, c,  2,  9, 0xfcefa3f8u);
		STEP(G, c, d, a, b,  7, 14, 0x676f02d9u);
		STEP(G, b, c, d, a, 12, 20, 0x8d2a4c8au);

		/* Round 3 */
		STEP(H, a, b, c, d,  5,  4, 0xfffa3942u);
		STEP(H, d, a, b, c,  8, 11, 0x8771f681u);
		STEP(H, c, d, a, b, 11, 16, 0x6d9d6122u);
		STEP(H, b, c, d, a, 14, 23, 0xfde5380cu);
		STEP(H, a, b, c, d,  1,  4, 0xa4beea44u);
		STEP(H, d, a, b, c,  4, 11, 0x4bdecfa9u);
		STEP(H, c, d, a, b,  7, 16, 0xf6bb4b60u);
		STEP(H, b, c, d, a, 10, 23, 0xbebfbc70u);
		STEP(H, a, b, c, d, 13,  4, 0x289b7ec6u);
		STEP(H, d, a, b, c,  0, 11, 0xeaa127fau);
		STEP(H, c, d, a, b,  3, 16, 0xd4ef3085u);
		STEP(H, b, c, d, a,  6, 23, 0x04881d05u);
		STEP(H, a, b, c, d,  9,  4, 0xd9d4d039u);
		STEP(H, d, a, b, c, 12, 11, 0xe6db99e5u);
		STEP(H, c, d, a, b, 15, 16, 0x1fa27cf8u);
		STEP(H, b, c, d, a,  2, 23, 0xc4ac5665u);

		/* Round 4 */
		STEP(I, a, b, c, d,  0,  6, 0xf4292244u);
		STEP(I, d, a, b, c,  7, 10, 0x432aff97u);
		STEP(I, c, d, a, b, 14, 15, 0xab9423a7u);
		STEP(I, b, c, d, a,  5, 21, 0xfc93a039u);
		STEP(I, a, b, c, d, 12,  6, 0x655b59c3u);
		STEP(I, d, a, b, c,  3, 10, 0x8f0ccc92u);
		STEP(I, c, d, a, b, 10, 15, 0xffeff47du);
		STEP(I, b, c, d, a,  1, 21, 0x85845dd1u);
		STEP(I, a, b, c, d,  8,  6, 0x6fa87e4fu);
		STEP(I, d, a, b, c, 15, 10, 0xfe2ce6e0u);
		STEP(I, c, d, a, b,  6, 15, 0xa3014314u);
		STEP(I, b, c, d, a, 13, 21, 0x4e0811a1u);
		STEP(I, a, b, c, d,  4,  6, 0xf7537e82u);
		STEP(I, d, a, b, c, 11, 10, 0xbd3af235u);
		STEP(I, c, d, a, b,  2, 15, 0x2ad7d2bbu);
		STEP(I, b, c, d, a,  9, 21, 0xeb86d391u);

		a += aa;
		b += bb;
		c += cc;
		d += dd;
	}
	state[0] = a;
	state[1] = b;
	state[2] = c;
	state[3] = d;
}

/* Overwrite memory in a way the compiler may not optimise away. */
static void
wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

void
md5_init(struct md5 *ctx)
{
	/* RFC 1321 section 3.3 */
	ctx->state[0] = 0x67452301u;
	ctx->state[1] = 0xefcdab89u;
	ctx->state[2] = 0x98badcfeu;
	ctx->state[3] = 0x10325476u;
	ctx->count = 0;
	memset(ctx->buf, 0, sizeof ctx->buf);
}

void
md5_update(struct md5 *ctx, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t used, n;

	if (len == 0)
		return;
	used = (size_t)(ctx->count & 63u);
	ctx->count += (uint64_t)len;

	if (used > 0) {
		n = 64 - used;
		if (len < n) {
			memcpy(ctx->buf + used, p, len);
			return;
		}
		memcpy(ctx->buf + used, p, n);
		md5_blocks(ctx->state, ctx->buf, 1);
		p += n;
		len -= n;
	}
	n = len / 64;
	if (n > 0) {
		md5_blocks(ctx->state, p, n);
		p += n * 64;
		len -= n * 64;
	}
	if (len > 0)
		memcpy(ctx->buf, p, len);
}

void
md5_final(struct md5 *ctx, unsigned char digest[16])
{
	/* RFC 1321 sections 3.1 and 3.2: 0x80, zeros to 56 mod 64, length. */
	uint64_t bits = ctx->count << 3;
	size_t used = (size_t)(ctx->count & 63u);
	int i;

	ctx->buf[used++] = 0x80;
	if (used > 56) {
		memset(ctx->buf + used, 0, 64 - used);
		md5_blocks(ctx->state, ctx->buf, 1);
		used = 0;
	}
	memset(ctx->buf + used, 0, 56 - used);
	store32(ctx->buf + 56, (uint32_t)(bits & 0xffffffffu));
	store32(ctx->buf + 60, (uint32_t)(bits >> 32));
	md5_blocks(ctx->state, ctx->buf, 1);

	for (i = 0; i < 4; i++)
		store32(digest + 4 * i, ctx->state[i]);
	wipe(ctx, sizeof *ctx);
}

void
md5_hex(const unsigned char digest[16], char out[33])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 16; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0f];
	}
	out[32] = '\0';
}
