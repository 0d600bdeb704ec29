/*
 * uidlsrc.h - reading the UIDLs other POP3 servers gave, from what they left
 * behind (-U): the -U list, Dovecot's dovecot-uidlist, X-UIDL header
 * fields, and popa3d 1.0's UIDL computation. Parsers over octets only, no
 * I/O, so the unit tests and the fuzzers reach them; uidlmap.c applies them
 * to a maildrop.
 */
#ifndef POP3D_UIDLSRC_H
#define POP3D_UIDLSRC_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "md5.h"

enum { SRC_NONE, SRC_DOVECOT, SRC_XUIDL, SRC_POPA3D };

/* Parse a -U argument: comma-separated source names, in order, each at most
 * once. 0, or -1 with the reason in err. */
int uidl_sources_parse(const char *arg, unsigned char src[UIDL_SOURCES_MAX], int *n,
    char *err, size_t errlen);
const char *uidl_source_name(int src);
/* Is p[0..n) a valid UIDL: 1 to 70 octets of 0x21 to 0x7E? */
int uidl_valid(const char *p, size_t n);

/* ---- dovecot-uidlist, version 1 or 3, one line at a time ---- */

struct dovecot_list {
	int version;                    /* 1 or 3 once the header is read, else 0 */
	uint32_t uidvalidity;
	uint32_t next_uid;
	uint32_t prev_uid;              /* the last record's UID: they must increase */
};

struct dovecot_rec {
	uint32_t uid;
	const char *name;               /* the file's base name: up to its first ':' */
	size_t namelen;
	int has_p;                      /* a P field: the POP3 UIDL Dovecot saved */
	const char *p;                  /* its value (empty: the base name) */
	size_t plen;
	int has_o;                      /* an O field: its POP3 order */
	uint32_t order;
};

/* One line of the file, without its LF (the first line is the header). 1: a
 * record, in rec; 0: the header, taken; -1: the file is malformed or of an
 * unknown version, why says how (then the whole file is to be ignored, as
 * Dovecot itself would not use it). */
int dovecot_line(struct dovecot_list *, const char *line, size_t len, struct dovecot_rec *rec,
    const char **why);

/* ---- X-UIDL: the first X-UIDL field of a header ---- */

struct xuidl {
	int state;                      /* looking, found (a continuation line voids
	                                 * it), done */
	int valid;
	size_t len;
	char value[UIDL_LEN];
};

void xuidl_init(struct xuidl *);
/* Feed the header's next line: head holds its first headlen octets (the
 * whole line when headlen == len), len is its length, LF included. 1 when
 * nothing that follows can change the result (feed no more), else 0. */
int xuidl_line(struct xuidl *, const char *head, size_t headlen, size_t len);
/* The value, when the header had a valid one; else NULL. */
const char *xuidl_value(const struct xuidl *);

/* ---- popa3d 1.0.3's UIDL ---- */

/* popa3d splits the mbox and hashes, with MD5, the first Received: field and
 * its continuation lines, every Delivered-To: and X-Delivery-ID: field, and
 * Date: and Message-ID: when they come before the first Received:, exactly
 * as its mailbox_parse() does (see uidlsrc.c). Feed it the whole mbox, in
 * chunks of any size; emit gets each message: the offset of its From_ line,
 * the offset where it ends (the next From_ line, or the end of the mbox),
 * and its digest. */
struct popa3d {
	uint64_t off;                   /* offset of the next octet fed */
	uint64_t line;                  /* offset of the current line */
	int bol;                        /* the next octet starts a line */
	int classified;                 /* the current line's kind is known */
	size_t nhead;                   /* octets of it in head, until then */
	char head[16];
	int from;                       /* the current line starts a message */
	int hashing;                    /* the current line goes to the digest */
	int blank, header, fixed, received, data, in_msg;
	int refused;                    /* popa3d would have refused the mailbox */
	uint64_t start;                 /* the current message's From_ line */
	struct md5 ctx;
	void (*emit)(void *arg, uint64_t start, uint64_t end, const unsigned char digest[16]);
	void *arg;
};

void popa3d_init(struct popa3d *, void (*emit)(void *, uint64_t, uint64_t,
    const unsigned char *), void *arg);
void popa3d_feed(struct popa3d *, const char *p, size_t n);
/* At the end of the mbox: 0, or -1 when popa3d would have refused it (then
 * the messages emitted are void). */
int popa3d_end(struct popa3d *);
/* popa3d's UIDL of a digest: 16 lowercase hex digits, octets 3, 2, 1, 0, 7,
 * 6, 5, 4 (its two first 32-bit words, little-endian). */
void popa3d_uidl(const unsigned char digest[16], char out[17]);

#endif
