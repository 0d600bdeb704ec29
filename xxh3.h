/*
 * xxh3.h - XXH3 128-bit hash, streaming and one-shot.
 *
 * Owns: the XXH3-128 algorithm of xxHash 0.8 ("XXH3_128bits": seed 0,
 * default secret) by Yann Collet, implemented independently from its
 * description, and nothing else. The 16-octet output is the canonical
 * form, high 64 bits first, each big-endian: its lowercase hex is what
 * `xxhsum -H2` prints. Not a cryptographic hash.
 *
 * Usage: xxh3_init, any number of xxh3_update calls (any chunk sizes,
 * including 0), xxh3_final. xxh3_final does not change the state, so it
 * can be called at any point and hashing can go on afterwards. The state
 * is plain memory (no heap, no pointers): it may be copied to fork a hash.
 * xxh3_128 hashes one buffer in one call, with the same result.
 */
#ifndef POP3D_XXH3_H
#define POP3D_XXH3_H

#include <stddef.h>
#include <stdint.h>

struct xxh3 {
	uint64_t acc[8];	/* the eight lanes of the long-input loop */
	uint64_t total;		/* octets hashed so far (mod 2^64) */
	uint32_t nbuf;		/* octets in buf, not yet consumed */
	uint32_t nstripes;	/* stripes consumed in the current block */
	/*
	 * Input not yet consumed. While total <= 256 this is the whole
	 * input (inputs of up to 240 octets are hashed differently).
	 */
	unsigned char buf[256];
	/* The last stripe consumed, kept for the overlapping final stripe. */
	unsigned char last[64];
};

void xxh3_init(struct xxh3 *);
void xxh3_update(struct xxh3 *, const void *p, size_t n);
/* Writes the canonical 16-octet hash of the input so far. */
void xxh3_final(const struct xxh3 *, unsigned char out[16]);
/* One shot: same result as init, update(p, n), final. */
void xxh3_128(const void *p, size_t n, unsigned char out[16]);

#endif
