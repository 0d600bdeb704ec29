/*
 * maildrop.h - one user's maildrop for one session: the session lock, the
 * message list frozen at login, sending messages, and the UPDATE at QUIT.
 */
#ifndef POP3D_MAILDROP_H
#define POP3D_MAILDROP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "config.h"
#include "io.h"

struct msg {
	off_t start;                    /* the "From " line */
	off_t body;                     /* first octet of the message proper */
	off_t end;                      /* end of the message, before any separator line */
	uint64_t size;                  /* octets as sent: CRLF line ends, no dot-stuffing */
	unsigned char digest[16];       /* UIDL digest */
	uint32_t dup;                   /* earlier messages with the same digest */
	unsigned char deleted;
};

struct maildrop {
	char path[MAX_PATH];
	int fd;                         /* the mbox, or -1 when it does not exist */
	int lockfd;                     /* session lock (flock), -1 when not held */
	struct stat st;                 /* the mbox when loaded */
	size_t count;                   /* messages, deleted ones included */
	struct msg *msgs;
};

/* Results; the session maps them to response codes. */
enum { MD_OK, MD_INUSE, MD_TEMP, MD_PERM };

void maildrop_init(struct maildrop *);
/* Take the session lock for the maildrop at path, in lockdir. Call before
 * giving up root: the lock file lives in a root-only directory. */
int maildrop_lock(struct maildrop *, const char *path, const char *lockdir,
    char *err, size_t errlen);
/* Open and scan the maildrop under the delivery agents' lock. */
int maildrop_load(struct maildrop *, char *err, size_t errlen);
/* The UIDL of message i (0-based). */
void maildrop_uidl(const struct maildrop *, size_t i, char out[UIDL_LEN]);
/* Send message i to io with CRLF line ends and dot-stuffing, without the
 * final ".": all of it when lines < 0, else the header and that many body
 * lines. -1 when the message can no longer be read as loaded. */
int maildrop_send(struct maildrop *, size_t i, long lines, struct io *io,
    char *err, size_t errlen);
/* Remove the deleted messages; keeps mail delivered since the load. */
int maildrop_update(struct maildrop *, char *err, size_t errlen);
/* Release everything, the session lock included. */
void maildrop_close(struct maildrop *);

#endif
