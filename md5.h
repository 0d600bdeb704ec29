/*
 * md5.h - MD5 message digest (RFC 1321).
 *
 * Owns: the MD5 algorithm and nothing else. pop3d uses it for the APOP
 * digest (RFC 1939), for UIDLs (see README, "UIDL") and for the names of
 * session lock files. MD5 is not used for anything that needs collision
 * resistance.
 *
 * Usage: md5_init, any number of md5_update calls, md5_final (which wipes
 * the context), md5_hex to format the digest.
 */
#ifndef POP3D_MD5_H
#define POP3D_MD5_H

#include <stddef.h>
#include <stdint.h>

struct md5 {
	uint32_t state[4];	/* A, B, C, D */
	uint64_t count;		/* octets hashed so far (mod 2^64) */
	unsigned char buf[64];	/* partial block, count % 64 octets used */
};

void md5_init(struct md5 *);
void md5_update(struct md5 *, const void *data, size_t len);
/* Writes the 16-octet digest and wipes the context afterwards. */
void md5_final(struct md5 *, unsigned char digest[16]);
/* 32 lowercase hex digits and a NUL. */
void md5_hex(const unsigned char digest[16], char out[33]);

#endif
