/*
 * xxh3.c - XXH3 128-bit hash (xxHash 0.8 "XXH3_128bits", seed 0, default
 * secret), by Yann Collet; implemented independently from its description.
 *
 * Owns: the short-input functions (0, 1-3, 4-8, 9-16, 17-128 and 129-240
 * octets), the long-input loop (64-octet stripes into eight 64-bit lanes,
 * a scramble after every 16 stripes, a final stripe that overlaps the
 * one before it), the streaming buffer and the canonical output. See
 * xxh3.h for the API.
 *
 * Octets are loaded with memcpy and converted from little-endian, so the
 * code does not depend on alignment or host byte order. On x86-64 the
 * lanes are kept in SSE2 registers; -DXXH3_PORTABLE forces the scalar
 * code there too. Whole stripes of a large update are hashed where they
 * lie; only partial stripes at the edges of an update are copied.
 */
#include "xxh3.h"

#include <string.h>

#if defined(__SSE2__) && defined(__x86_64__) && !defined(XXH3_PORTABLE)
#define XXH3_SSE2 1
#include <emmintrin.h>
#endif

#define STRIPE		64	/* octets per stripe */
#define SECRET_SIZE	192
#define BLOCK_STRIPES	16	/* (SECRET_SIZE - STRIPE) / 8 */
#define SCRAMBLE_KEY	128	/* secret offsets: SECRET_SIZE - STRIPE */
#define LAST_KEY	121	/* SECRET_SIZE - STRIPE - 7 */
#define MERGE_LO_KEY	11
#define MERGE_HI_KEY	117	/* SECRET_SIZE - 64 - 11 */
#define SHORT_MAX	240	/* longest input hashed without the lanes */
#define BUF_SIZE	(sizeof ((struct xxh3 *)0)->buf)

_Static_assert(sizeof ((struct xxh3 *)0)->buf % STRIPE == 0 &&
    sizeof ((struct xxh3 *)0)->buf > SHORT_MAX, "bad xxh3 buffer size");
_Static_assert(sizeof ((struct xxh3 *)0)->last == STRIPE,
    "bad xxh3 last-stripe size");

#define P32_1	0x9E3779B1u
#define P32_2	0x85EBCA77u
#define P32_3	0xC2B2AE3Du
#define P64_1	0x9E3779B185EBCA87u
#define P64_2	0xC2B2AE3D27D4EB4Fu
#define P64_3	0x165667B19E3779F9u
#define P64_4	0x85EBCA77C2B2AE63u
#define P64_5	0x27D4EB2F165667C5u
#define MIX_1	0x165667919E3779F9u
#define MIX_2	0x9FB21C651E98DF25u

/* The default secret (192 pseudorandom octets). */
static const unsigned char secret[SECRET_SIZE] = {
	0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe,
	0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
	0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb,
	0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
	0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78,
	0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
	0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e,
	0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
	0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb,
	0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
	0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e,
	0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
	0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f,
	0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
	0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31,
	0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
	0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3,
	0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
	0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49,
	0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
	0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc,
	0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
	0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28,
	0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

/* A 128-bit value as two 64-bit halves. */
struct u128 {
	uint64_t lo, hi;
};

/* ---- Octet order and arithmetic helpers ---- */

static inline uint32_t
swap32(uint32_t v)
{
	return v >> 24 | (v >> 8 & 0xff00u) | (v << 8 & 0xff0000u) | v << 24;
}

static inline uint64_t
swap64(uint64_t v)
{
	return (uint64_t)swap32((uint32_t)v) << 32 | swap32((uint32_t)(v >> 32));
}

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FROM_LE32(v) (v)
#define FROM_LE64(v) (v)
#elif defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define FROM_LE32(v) swap32(v)
#define FROM_LE64(v) swap64(v)
#else
#define XXH3_BYTEWISE 1		/* unknown byte order: assemble octets */
#endif

/* Little-endian loads from any address. */
static inline uint32_t
rd32(const unsigned char *p)
{
#ifdef XXH3_BYTEWISE
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 |
	    (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
#else
	uint32_t v;

	memcpy(&v, p, sizeof v);
	return FROM_LE32(v);
#endif
}

static inline uint64_t
rd64(const unsigned char *p)
{
#ifdef XXH3_BYTEWISE
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
#else
	uint64_t v;

	memcpy(&v, p, sizeof v);
	return FROM_LE64(v);
#endif
}

/* Big-endian store, for the canonical output. */
static void
wr64be(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xffu);
		v >>= 8;
	}
}

/* The full 128-bit product of two 64-bit numbers. */
static inline struct u128
mul128(uint64_t a, uint64_t b)
{
	struct u128 r;
#ifdef __SIZEOF_INT128__
	__extension__ typedef unsigned __int128 uint128;
	uint128 p = (uint128)a * b;

	r.lo = (uint64_t)p;
	r.hi = (uint64_t)(p >> 64);
#else
	/* Schoolbook on 32-bit halves; the middle sum cannot overflow. */
	uint64_t ll = (a & 0xffffffffu) * (b & 0xffffffffu);
	uint64_t hl = (a >> 32) * (b & 0xffffffffu);
	uint64_t lh = (a & 0xffffffffu) * (b >> 32);
	uint64_t hh = (a >> 32) * (b >> 32);
	uint64_t mid = (ll >> 32) + (hl & 0xffffffffu) + lh;

	r.lo = mid << 32 | (ll & 0xffffffffu);
	r.hi = hh + (hl >> 32) + (mid >> 32);
#endif
	return r;
}

/* 128-bit product folded to 64 bits by xor of its halves. */
static inline uint64_t
mulfold(uint64_t a, uint64_t b)
{
	struct u128 r = mul128(a, b);

	return r.lo ^ r.hi;
}

/* XXH64's final mix. */
static inline uint64_t
avalanche64(uint64_t h)
{
	h ^= h >> 33;
	h *= P64_2;
	h ^= h >> 29;
	h *= P64_3;
	h ^= h >> 32;
	return h;
}

/* XXH3's lighter final mix. */
static inline uint64_t
avalanche3(uint64_t h)
{
	h ^= h >> 37;
	h *= MIX_1;
	h ^= h >> 32;
	return h;
}

/* ---- Inputs of 0 to 240 octets ---- */

/* Hash 16 input octets against 16 secret octets. */
static inline uint64_t
mix16(const unsigned char *in, const unsigned char *key)
{
	return mulfold(rd64(in) ^ rd64(key), rd64(in + 8) ^ rd64(key + 8));
}

/* Fold two 16-octet pieces a and b, with 32 secret octets, into h. */
static inline void
mix32(struct u128 *h, const unsigned char *a, const unsigned char *b,
    const unsigned char *key)
{
	h->lo += mix16(a, key);
	h->lo ^= rd64(b) + rd64(b + 8);
	h->hi += mix16(b, key + 16);
	h->hi ^= rd64(a) + rd64(a + 8);
}

/* Final step shared by the 17-128 and 129-240 octet cases. */
static struct u128
mid_finish(struct u128 h, size_t len)
{
	struct u128 r;

	r.lo = avalanche3(h.lo + h.hi);
	r.hi = 0 - avalanche3(h.lo * P64_1 + h.hi * P64_4 +
	    (uint64_t)len * P64_2);
	return r;
}

static struct u128
hash_0(void)
{
	struct u128 r;

	r.lo = avalanche64(rd64(secret + 64) ^ rd64(secret + 72));
	r.hi = avalanche64(rd64(secret + 80) ^ rd64(secret + 88));
	return r;
}

static struct u128
hash_1to3(const unsigned char *p, size_t len)
{
	struct u128 r;
	uint32_t lo, hi;

	/* { last, len, first, middle } from the least significant octet */
	lo = (uint32_t)p[len - 1] | (uint32_t)len << 8 |
	    (uint32_t)p[0] << 16 | (uint32_t)p[len >> 1] << 24;
	hi = swap32(lo);
	hi = hi << 13 | hi >> 19;
	r.lo = avalanche64(lo ^ (uint64_t)(rd32(secret) ^ rd32(secret + 4)));
	r.hi = avalanche64(hi ^
	    (uint64_t)(rd32(secret + 8) ^ rd32(secret + 12)));
	return r;
}

static struct u128
hash_4to8(const unsigned char *p, size_t len)
{
	uint64_t in = rd32(p) | (uint64_t)rd32(p + len - 4) << 32;
	uint64_t key = rd64(secret + 16) ^ rd64(secret + 24);
	struct u128 m = mul128(in ^ key, P64_1 + ((uint64_t)len << 2));

	m.hi += m.lo << 1;
	m.lo ^= m.hi >> 3;
	m.lo ^= m.lo >> 35;
	m.lo *= MIX_2;
	m.lo ^= m.lo >> 28;
	m.hi = avalanche3(m.hi);
	return m;
}

static struct u128
hash_9to16(const unsigned char *p, size_t len)
{
	uint64_t keylo = rd64(secret + 32) ^ rd64(secret + 40);
	uint64_t keyhi = rd64(secret + 48) ^ rd64(secret + 56);
	uint64_t first = rd64(p);
	uint64_t last = rd64(p + len - 8);
	struct u128 m, r;

	m = mul128(first ^ last ^ keylo, P64_1);
	m.lo += (uint64_t)(len - 1) << 54;
	last ^= keyhi;
	/* m.hi += last's high half + last's low half * P32_2 */
	m.hi += last + (last & 0xffffffffu) * (P32_2 - 1);
	m.lo ^= swap64(m.hi);
	/* r = m * P64_2, modulo 2^128 */
	r = mul128(m.lo, P64_2);
	r.hi += m.hi * P64_2;
	r.lo = avalanche3(r.lo);
	r.hi = avalanche3(r.hi);
	return r;
}

static struct u128
hash_17to128(const unsigned char *p, size_t len)
{
	struct u128 h;
	size_t i = (len - 1) / 32;

	h.lo = (uint64_t)len * P64_1;
	h.hi = 0;
	/* pairs from both ends, innermost first */
	for (;;) {
		mix32(&h, p + 16 * i, p + len - 16 * (i + 1), secret + 32 * i);
		if (i-- == 0)
			break;
	}
	return mid_finish(h, len);
}

static struct u128
hash_129to240(const unsigned char *p, size_t len)
{
	struct u128 h;
	size_t i;

	h.lo = (uint64_t)len * P64_1;
	h.hi = 0;
	for (i = 0; i < 4; i++)
		mix32(&h, p + 32 * i, p + 32 * i + 16, secret + 32 * i);
	h.lo = avalanche3(h.lo);
	h.hi = avalanche3(h.hi);
	/* whole 32-octet pieces from offset 128 on, secret from offset 3 */
	for (i = 4; 32 * (i + 1) <= len; i++)
		mix32(&h, p + 32 * i, p + 32 * i + 16, secret + 3 + 32 * (i - 4));
	/* the last 32 octets, halves swapped */
	mix32(&h, p + len - 16, p + len - 32, secret + 103);
	return mid_finish(h, len);
}

static struct u128
hash_short(const unsigned char *p, size_t len)
{
	if (len == 0)
		return hash_0();
	if (len <= 3)
		return hash_1to3(p, len);
	if (len <= 8)
		return hash_4to8(p, len);
	if (len <= 16)
		return hash_9to16(p, len);
	if (len <= 128)
		return hash_17to128(p, len);
	return hash_129to240(p, len);
}

/* ---- Inputs of more than 240 octets: the eight lanes ---- */

/*
 * The lanes while a run of stripes is hashed, kept in registers. Each
 * stripe is eight little-endian 64-bit words d[i]; with k = d[i] xor the
 * secret word i, lane i gets (low 32 bits of k) * (high 32 bits of k) and
 * lane i^1 gets d[i]. The scramble is lane = (lane ^ lane >> 47 ^ key) *
 * P32_1.
 */
#ifdef XXH3_SSE2

struct lanes {
	__m128i v[4];		/* lanes 2i and 2i+1 in v[i] */
};

static inline void
lanes_load(struct lanes *l, const uint64_t acc[8])
{
	l->v[0] = _mm_loadu_si128((const void *)acc);
	l->v[1] = _mm_loadu_si128((const void *)(acc + 2));
	l->v[2] = _mm_loadu_si128((const void *)(acc + 4));
	l->v[3] = _mm_loadu_si128((const void *)(acc + 6));
}

static inline void
lanes_store(uint64_t acc[8], const struct lanes *l)
{
	_mm_storeu_si128((void *)acc, l->v[0]);
	_mm_storeu_si128((void *)(acc + 2), l->v[1]);
	_mm_storeu_si128((void *)(acc + 4), l->v[2]);
	_mm_storeu_si128((void *)(acc + 6), l->v[3]);
}

/* One stripe into lanes 2i and 2i+1 (v), from 16 octets of p and key. */
static inline __m128i
pair_stripe(__m128i v, const unsigned char *p, const unsigned char *key)
{
	__m128i d = _mm_loadu_si128((const void *)p);
	__m128i k = _mm_xor_si128(d, _mm_loadu_si128((const void *)key));
	__m128i prod = _mm_mul_epu32(k, _mm_srli_epi64(k, 32));
	__m128i swapped = _mm_shuffle_epi32(d, _MM_SHUFFLE(1, 0, 3, 2));

	return _mm_add_epi64(v, _mm_add_epi64(prod, swapped));
}

static inline __m128i
pair_scramble(__m128i v, const unsigned char *key)
{
	const __m128i prime = _mm_set1_epi32((int)P32_1);
	__m128i x = _mm_xor_si128(v, _mm_srli_epi64(v, 47));

	x = _mm_xor_si128(x, _mm_loadu_si128((const void *)key));
	/* 64 x 32-bit multiply from two 32 x 32 -> 64 products */
	return _mm_add_epi64(_mm_mul_epu32(x, prime),
	    _mm_slli_epi64(_mm_mul_epu32(_mm_srli_epi64(x, 32), prime), 32));
}

/* Unrolled by hand so that the lanes stay in registers. */
static inline void
lanes_stripe(struct lanes *l, const unsigned char *p,
    const unsigned char *key)
{
	l->v[0] = pair_stripe(l->v[0], p, key);
	l->v[1] = pair_stripe(l->v[1], p + 16, key + 16);
	l->v[2] = pair_stripe(l->v[2], p + 32, key + 32);
	l->v[3] = pair_stripe(l->v[3], p + 48, key + 48);
}

static inline void
lanes_scramble(struct lanes *l, const unsigned char *key)
{
	l->v[0] = pair_scramble(l->v[0], key);
	l->v[1] = pair_scramble(l->v[1], key + 16);
	l->v[2] = pair_scramble(l->v[2], key + 32);
	l->v[3] = pair_scramble(l->v[3], key + 48);
}

#else /* portable */

struct lanes {
	uint64_t v[8];
};

static inline void
lanes_load(struct lanes *l, const uint64_t acc[8])
{
	memcpy(l->v, acc, sizeof l->v);
}

static inline void
lanes_store(uint64_t acc[8], const struct lanes *l)
{
	memcpy(acc, l->v, sizeof l->v);
}

/* One stripe into lanes 2i (*a) and 2i+1 (*b), 16 octets of p and key. */
static inline void
pair_stripe(uint64_t *a, uint64_t *b, const unsigned char *p,
    const unsigned char *key)
{
	uint64_t d0 = rd64(p), d1 = rd64(p + 8);
	uint64_t k0 = d0 ^ rd64(key), k1 = d1 ^ rd64(key + 8);

	*a += d1 + (k0 & 0xffffffffu) * (k0 >> 32);
	*b += d0 + (k1 & 0xffffffffu) * (k1 >> 32);
}

static inline uint64_t
scramble1(uint64_t x, const unsigned char *key)
{
	x ^= x >> 47;
	x ^= rd64(key);
	return x * P32_1;
}

/* Unrolled by hand so that the lanes stay in registers. */
static inline void
lanes_stripe(struct lanes *l, const unsigned char *p,
    const unsigned char *key)
{
	pair_stripe(&l->v[0], &l->v[1], p, key);
	pair_stripe(&l->v[2], &l->v[3], p + 16, key + 16);
	pair_stripe(&l->v[4], &l->v[5], p + 32, key + 32);
	pair_stripe(&l->v[6], &l->v[7], p + 48, key + 48);
}

static inline void
lanes_scramble(struct lanes *l, const unsigned char *key)
{
	l->v[0] = scramble1(l->v[0], key);
	l->v[1] = scramble1(l->v[1], key + 8);
	l->v[2] = scramble1(l->v[2], key + 16);
	l->v[3] = scramble1(l->v[3], key + 24);
	l->v[4] = scramble1(l->v[4], key + 32);
	l->v[5] = scramble1(l->v[5], key + 40);
	l->v[6] = scramble1(l->v[6], key + 48);
	l->v[7] = scramble1(l->v[7], key + 56);
}

#endif /* XXH3_SSE2 */

static void
acc_init(uint64_t acc[8])
{
	acc[0] = P32_3;
	acc[1] = P64_1;
	acc[2] = P64_2;
	acc[3] = P64_3;
	acc[4] = P64_4;
	acc[5] = P32_2;
	acc[6] = P64_5;
	acc[7] = P32_1;
}

/*
 * Hash n whole stripes at p into acc. *ns counts the stripes of the
 * current block hashed so far: stripe j of a block uses the secret from
 * offset 8j, and the lanes are scrambled when a block is complete.
 */
static void
consume(uint64_t acc[8], uint32_t *ns, const unsigned char *p, size_t n)
{
	struct lanes l;
	uint32_t done = *ns;

	lanes_load(&l, acc);
	while (n > 0) {
		const unsigned char *key = secret + 8 * done;
		size_t m = BLOCK_STRIPES - done;

		if (m > n)
			m = n;
		n -= m;
		done += (uint32_t)m;
		for (; m > 0; m--, p += STRIPE, key += 8)
			lanes_stripe(&l, p, key);
		if (done == BLOCK_STRIPES) {
			lanes_scramble(&l, secret + SCRAMBLE_KEY);
			done = 0;
		}
	}
	lanes_store(acc, &l);
	*ns = done;
}

/* Combine the eight lanes into 64 bits. */
static uint64_t
merge(const uint64_t acc[8], const unsigned char *key, uint64_t h)
{
	int i;

	for (i = 0; i < 4; i++)
		h += mulfold(acc[2 * i] ^ rd64(key + 16 * i),
		    acc[2 * i + 1] ^ rd64(key + 16 * i + 8));
	return avalanche3(h);
}

/*
 * The end of a long input: acc holds every whole stripe but the one that
 * ends the input; last is the input's final 64 octets (which may overlap
 * stripes already hashed). acc is clobbered.
 */
static struct u128
long_finish(uint64_t acc[8], const unsigned char *last, uint64_t len)
{
	struct lanes l;
	struct u128 r;

	lanes_load(&l, acc);
	lanes_stripe(&l, last, secret + LAST_KEY);
	lanes_store(acc, &l);
	r.lo = merge(acc, secret + MERGE_LO_KEY, len * P64_1);
	r.hi = merge(acc, secret + MERGE_HI_KEY, ~(len * P64_2));
	return r;
}

static void
put(unsigned char out[16], struct u128 h)
{
	wr64be(out, h.hi);
	wr64be(out + 8, h.lo);
}

/* ---- API ---- */

void
xxh3_init(struct xxh3 *st)
{
	memset(st, 0, sizeof *st);
	acc_init(st->acc);
}

/*
 * A stripe is consumed only when at least one more octet follows it (the
 * stripe that ends the input is hashed differently), and nothing is
 * consumed before more than BUF_SIZE octets have come (so an input of up
 * to SHORT_MAX octets is still whole in buf at the end).
 */
void
xxh3_update(struct xxh3 *st, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t k;

	if (n == 0)
		return;
	st->total += n;
	if (n <= BUF_SIZE - st->nbuf) {
		memcpy(st->buf + st->nbuf, p, n);
		st->nbuf += (uint32_t)n;
		return;
	}

	/* More than BUF_SIZE octets pending: the input is a long one. */
	if (st->nbuf > 0) {
		/* complete the buffer's last stripe; input remains after it */
		k = (STRIPE - st->nbuf % STRIPE) % STRIPE;
		memcpy(st->buf + st->nbuf, p, k);
		p += k;
		n -= k;
		k = (st->nbuf + k) / STRIPE;
		consume(st->acc, &st->nstripes, st->buf, k);
		memcpy(st->last, st->buf + (k - 1) * STRIPE, STRIPE);
		st->nbuf = 0;
	}
	/* whole stripes in place, keeping 1 to STRIPE octets back */
	k = (n - 1) / STRIPE;
	if (k > 0) {
		consume(st->acc, &st->nstripes, p, k);
		p += k * STRIPE;
		n -= k * STRIPE;
		memcpy(st->last, p - STRIPE, STRIPE);
	}
	memcpy(st->buf, p, n);
	st->nbuf = (uint32_t)n;
}

void
xxh3_final(const struct xxh3 *st, unsigned char out[16])
{
	uint64_t acc[8];
	unsigned char tail[STRIPE];
	const unsigned char *last;
	uint32_t ns, nbuf = st->nbuf;

	if (st->total <= SHORT_MAX) {
		put(out, hash_short(st->buf, (size_t)st->total));
		return;
	}
	/* work on copies so that the state can take more input */
	memcpy(acc, st->acc, sizeof acc);
	ns = st->nstripes;
	if (nbuf >= STRIPE) {
		consume(acc, &ns, st->buf, (nbuf - 1) / STRIPE);
		last = st->buf + nbuf - STRIPE;
	} else {
		/* 1 to 63 octets buffered: end of the last stripe, then them */
		memcpy(tail, st->last + nbuf, STRIPE - nbuf);
		memcpy(tail + (STRIPE - nbuf), st->buf, nbuf);
		last = tail;
	}
	put(out, long_finish(acc, last, st->total));
}

void
xxh3_128(const void *data, size_t n, unsigned char out[16])
{
	const unsigned char *p = data;
	uint64_t acc[8];
	uint32_t ns = 0;

	if (n <= SHORT_MAX) {
		put(out, hash_short(p, n));
		return;
	}
	acc_init(acc);
	consume(acc, &ns, p, (n - 1) / STRIPE);
	put(out, long_finish(acc, p + n - STRIPE, n));
}
