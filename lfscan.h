/*
 * lfscan.h - finding LFs 64 octets at a time, for the mbox scan (mbox.c) and
 * the sender (maildrop.c): a bit mask of the LFs in a block, from SSE2
 * compares on x86-64, NEON compares on arm64, or portable 64-bit word
 * arithmetic elsewhere (and with -DMBOX_PORTABLE_SCAN, which the tests build
 * too). tests/unit.c checks each against an octet-by-octet count.
 */
#ifndef POP3D_LFSCAN_H
#define POP3D_LFSCAN_H

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) && defined(__x86_64__) && !defined(MBOX_PORTABLE_SCAN)
#define SCAN_SSE2
#include <emmintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON) && !defined(MBOX_PORTABLE_SCAN)
#define SCAN_NEON
#include <arm_neon.h>
#endif

/* Which of the three lf64 is built, for the tests' output. */
#if defined(SCAN_SSE2)
#define LFSCAN_KIND "sse2"
#elif defined(SCAN_NEON)
#define LFSCAN_KIND "neon"
#else
#define LFSCAN_KIND "portable"
#endif

/* LFs counted as blocks are matched: on SSE2 in per-octet-lane counters (a
 * compare's true is -1), added up every 255/4 blocks. */
struct lfcount {
	uint64_t n;
#ifdef SCAN_SSE2
	__m128i lanes;
	unsigned blocks;                /* in lanes */
#endif
};

static inline unsigned
ones64(uint64_t x)
{
	x -= (x >> 1) & 0x5555555555555555ULL;
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (unsigned)((x * 0x0101010101010101ULL) >> 56);
}

static inline uint64_t
lf_total(struct lfcount *c)
{
#ifdef SCAN_SSE2
	__m128i sums = _mm_sad_epu8(c->lanes, _mm_setzero_si128());    /* two 64-bit sums */

	c->n += (uint64_t)_mm_cvtsi128_si64(sums) +
	    (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
	c->lanes = _mm_setzero_si128();
	c->blocks = 0;
#endif
	return c->n;
}

/* The LFs of the 64 octets at p: bit i set when p[i] is LF; counted into c
 * unless it is NULL. */
static inline uint64_t
lf64(const char *p, struct lfcount *c)
{
#ifdef SCAN_SSE2
	const __m128i lf = _mm_set1_epi8('\n');
	__m128i e0, e1, e2, e3;

#define EQ(i) _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * (i))), lf)
	e0 = EQ(0), e1 = EQ(1), e2 = EQ(2), e3 = EQ(3);
#undef EQ
	if (c != NULL) {
		c->lanes = _mm_sub_epi8(c->lanes,
		    _mm_add_epi8(_mm_add_epi8(e0, e1), _mm_add_epi8(e2, e3)));
		if (++c->blocks == 255 / 4)
			lf_total(c);
	}
	return (uint64_t)(uint16_t)_mm_movemask_epi8(e0) |
	    (uint64_t)(uint16_t)_mm_movemask_epi8(e1) << 16 |
	    (uint64_t)(uint16_t)_mm_movemask_epi8(e2) << 32 |
	    (uint64_t)(uint16_t)_mm_movemask_epi8(e3) << 48;
#elif defined(SCAN_NEON)
	/* Each octet's compare (0xff or 0) keeps its bit of 1, 2, ..., 128;
	 * three rounds of pairwise adds pack 64 octets into 8 mask octets,
	 * octet i of the block at bit i (little-endian lanes). */
	static const uint8_t bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
	const uint8x16_t lf = vdupq_n_u8('\n'), w = vld1q_u8(bit);
	const uint8_t *q = (const uint8_t *)(const void *)p;
	uint8x16_t t0 = vandq_u8(vceqq_u8(vld1q_u8(q), lf), w);
	uint8x16_t t1 = vandq_u8(vceqq_u8(vld1q_u8(q + 16), lf), w);
	uint8x16_t t2 = vandq_u8(vceqq_u8(vld1q_u8(q + 32), lf), w);
	uint8x16_t t3 = vandq_u8(vceqq_u8(vld1q_u8(q + 48), lf), w);
	uint8x16_t s = vpaddq_u8(vpaddq_u8(t0, t1), vpaddq_u8(t2, t3));
	uint64_t m = vgetq_lane_u64(vreinterpretq_u64_u8(vpaddq_u8(s, s)), 0);

	if (c != NULL)
		c->n += ones64(m);
	return m;
#else
	const uint64_t low7 = 0x7f7f7f7f7f7f7f7fULL;
	uint64_t m = 0;

	for (int i = 0; i < 8; i++) {
		uint64_t x;

		memcpy(&x, p + 8 * i, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		x = __builtin_bswap64(x);               /* octet j at bits 8j..8j+7 */
#endif
		x ^= 0x0a0a0a0a0a0a0a0aULL;             /* LF octets become zero */
		x = ~(((x & low7) + low7) | x | low7);  /* 0x80 in each zero octet */
		m |= ((x >> 7) * 0x0102040810204080ULL >> 56) << (8 * i);
	}
	if (c != NULL)
		c->n += ones64(m);
	return m;
#endif
}

/* The LFs of [p, end) in order, a block at a time, the last partial block by
 * memchr. */
struct lfiter {
	const char *blk;                /* the next block */
	const char *end;
	uint64_t mask;                  /* LFs of the block before blk not yet returned */
};

static inline void
lf_start(struct lfiter *it, const char *p, const char *end)
{
	it->blk = p;
	it->end = end;
	it->mask = 0;
}

/* The next LF at or after p (p after every LF returned so far), or NULL. */
static inline const char *
lf_next(struct lfiter *it, const char *p)
{
	while (it->mask == 0) {
		if (it->end - it->blk < 64) {
			if (p < it->blk)
				p = it->blk;
			return memchr(p, '\n', (size_t)(it->end - p));
		}
		it->mask = lf64(it->blk, NULL);
		it->blk += 64;
	}
	p = it->blk - 64 + __builtin_ctzll(it->mask);
	it->mask &= it->mask - 1;
	return p;
}

#endif
