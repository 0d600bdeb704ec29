/*
 * uidlmap.h - the UIDLs of -U for one session: which message keeps the UIDL
 * another server gave it (Dovecot's uidlist, recorded X-UIDL and popa3d
 * values), and what the others get. See uidlmap.c.
 */
#ifndef POP3D_UIDLMAP_H
#define POP3D_UIDLMAP_H

#include <stddef.h>

#include "maildrop.h"

/* Does the maildrop need records in the state directory (as root)? */
int uidlmap_wants_lockdir(const struct maildrop *);
/* As root, in the state directory dirfd: open, make and lock the records of
 * the recorded sources, for the session to read or write. MD_*. */
int uidlmap_records_open(struct maildrop *, int dirfd, const char *lockdir, char *err,
    size_t errlen);
/* As the user, after the maildrop is loaded: the sources' UIDLs. MD_*. */
int uidlmap_load(struct maildrop *, char *err, size_t errlen);
/* Message i's UIDL when it is not pop3d's own (msgs[i].src != 0). */
void uidlmap_uidl(const struct maildrop *, size_t i, char out[UIDL_LEN]);
/* Messages named by each source (SRC_*; [SRC_NONE]: pop3d's own UIDLs), and
 * own UIDLs displaced. */
void uidlmap_counts(const struct maildrop *, size_t count[4], size_t *displaced);
void uidlmap_free(struct maildrop *);
/* The state directory's clean-up (as root): 1 when name is a record's, which
 * was looked at (and removed when torn, or when its maildrop is gone and it
 * went unused for UIDL_RECORD_KEEP), 0 when it is not a record's name. */
int uidlmap_gc(int dirfd, const char *name);

#endif
