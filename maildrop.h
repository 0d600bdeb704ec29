/*
 * maildrop.h - one user's maildrop for one session, whatever its kind: the
 * session lock, the message list frozen at login, sending messages, and the
 * UPDATE at QUIT. mbox.c and maildir.c are the two back ends behind it.
 */
#ifndef POP3D_MAILDROP_H
#define POP3D_MAILDROP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "io.h"

enum { KIND_MBOX, KIND_MAILDIR };

struct msg {
	off_t start;                    /* mbox: the "From " line; maildir: delivery time */
	off_t body;                     /* first octet to send (maildir: 0) */
	off_t end;                      /* end of the message, before any separator line */
	uint64_t size;                  /* octets as sent: CRLF line ends, no dot-stuffing */
	union {
		unsigned char digest[16];       /* mbox: UIDL digest (XXH3-128) */
		struct {                        /* maildir */
			uint64_t ino;                   /* the file's inode, or 0 */
			uint32_t name;                  /* offset of the file name in names */
			uint32_t ulen;                  /* octets of its unique name */
		};
	};
	uint32_t dup;                   /* mbox: earlier messages with the same digest */
	uint32_t alt;                   /* -U: the value its source gave (uidlmap.c) */
	unsigned char deleted;          /* marked by DELE */
	unsigned char seen;             /* sent whole by RETR */
	unsigned char in_new;           /* maildir: in new/, else in cur/ */
	unsigned char named_size;       /* maildir: size from the name's ,W= */
	unsigned char twin;             /* maildir: not the first file of its unique name */
	unsigned char src;              /* -U: what alt is (uidlmap.c); 0: pop3d's own UIDL */
};

struct maildrop {
	int kind;
	char path[MAX_PATH];
	uid_t owner;                    /* the maildrop must be this uid's */
	gid_t group;                    /* -g: the group dotlocks are made with, or -1 */
	int fd;                         /* mbox: the file; maildir: the directory; or -1 */
	int lockfd;                     /* session lock (flock); for an mbox also its journal */
	int rescuefd;                   /* mbox: where recovery keeps a journal it cannot apply */
	char rescue[MAX_PATH];          /* (its path, for the log) */
	int msgfd;                      /* the message being sent */
	struct stat st;                 /* mbox: the file when loaded */
	struct stat vst;                /* mbox: the file when last found unchanged */
	unsigned char hash[16];         /* mbox: digest (XXH3-128) of the octets loaded */
	int dotlock;                    /* mbox: take <mbox>.lock too (default) */
	int dotlockfd;                  /* mbox: the dotlock we hold, or -1 */
	struct timespec dotlock_touched;/* mbox: when it was made or last refreshed */
	size_t count;                   /* messages, deleted ones included */
	struct msg *msgs;
	char *names;                    /* maildir: NUL-terminated file names */
	size_t names_len, names_cap;
	size_t not_removed;             /* after a failed update: deletions not done */
	char *buf;                      /* MBOX_READ_SIZE octets for sending, from the heap:
	                                 * it reuses the pages the load just freed */
	unsigned char sources[UIDL_SOURCES_MAX]; /* -U: the UIDL sources, in order (SRC_*) */
	int nsources;
	int recfd[UIDL_SOURCES_MAX];    /* -U: the state directory's record of sources[k], or -1 */
	struct uidmap *um;              /* -U: this session's UIDLs from the sources, or NULL */
};

/* Results; the session maps them to replies and response codes. */
enum { MD_OK, MD_INUSE, MD_TEMP, MD_PERM, MD_GONE };

void maildrop_init(struct maildrop *);
/* With the user's rights (auth_assume): open the maildrop at path and decide
 * its kind: a directory is a Maildir, anything else an mbox, which must be a
 * regular file with one link. Either must belong to the effective uid. */
int maildrop_open(struct maildrop *, const char *path, char *err, size_t errlen);
/* As root: for an mbox, take the session lock in lockdir, keyed by the file
 * maildrop_open opened; with -U, open and lock the records of its sources
 * there too (uidlmap.c); the lock directory is root's. */
int maildrop_lock(struct maildrop *, const char *lockdir, char *err, size_t errlen);
/* As the user for good: recover an interrupted update, then scan the
 * maildrop (a Maildir takes its session lock here, inside itself), then,
 * with -U, find the UIDLs its sources give (uidlmap.c). */
int maildrop_load(struct maildrop *, char *err, size_t errlen);
/* The UIDL of message i (0-based): from a -U source, else pop3d's own. */
void maildrop_uidl(const struct maildrop *, size_t i, char out[UIDL_LEN]);
/* pop3d's own UIDL of message i, whatever -U says. */
void maildrop_own_uidl(const struct maildrop *, size_t i, char out[UIDL_LEN]);
/* Before "+OK" to RETR (whole) or TOP: MD_GONE when another program removed
 * message i, MD_TEMP when it can no longer be read as loaded or is not the
 * size listed, MD_PERM when it is not the user's. */
int maildrop_open_msg(struct maildrop *, size_t i, int whole, char *err, size_t errlen);
/* Send the opened message i to io with CRLF line ends and dot-stuffing,
 * without the final ".": all of it when lines < 0, else the header and that
 * many body lines. -1 when it could not be sent whole and unchanged, or (all
 * of it) not in the size listed. */
int maildrop_send(struct maildrop *, size_t i, long lines, struct io *io,
    char *err, size_t errlen);
/* Remove the deleted messages, keeping mail delivered since the load. */
int maildrop_update(struct maildrop *, char *err, size_t errlen);
/* Release everything, the session lock included. */
void maildrop_close(struct maildrop *);

/* Back ends, for maildrop.c. */
int mbox_load(struct maildrop *, char *err, size_t errlen);
int mbox_verify(struct maildrop *, char *err, size_t errlen);
int mbox_update(struct maildrop *, char *err, size_t errlen);
/* For the state directory's clean-up, as root: is the journal in jfd for an
 * mbox that is gone or was replaced (1, with its path in path), one to keep
 * (0), or none at all, torn or empty (-1)? */
int mbox_journal_orphaned(int jfd, char *path, size_t len);
/* Lock the file name in the state directory dirfd, creating it (0600): the
 * descriptor, or -1 with errno (EWOULDBLOCK: another holds it). */
int state_lock_file(int dirfd, const char *name);
int maildir_load(struct maildrop *, char *err, size_t errlen);
int maildir_open_msg(struct maildrop *, size_t i, int whole, char *err, size_t errlen);
int maildir_update(struct maildrop *, char *err, size_t errlen);
void maildir_uidl(const struct maildrop *, size_t i, char out[UIDL_LEN]);
/* Counting a stored message's size as sent, chunk by chunk. */
struct sizer {
	uint64_t octets, lf, crlf;
	int last;                       /* the previous octet, or -1 */
};
void sizer_add(struct sizer *, const char *p, size_t n);
uint64_t sizer_size(const struct sizer *);

#endif
