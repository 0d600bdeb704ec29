/*
 * auth.h - the user file, password and APOP checks, and the switch to the
 * maildrop owner's identity.
 */
#ifndef POP3D_AUTH_H
#define POP3D_AUTH_H

#include <stddef.h>
#include <sys/types.h>

#include "config.h"

struct user {
	char name[MAX_NAME + 1];
	uid_t uid;
	gid_t gid;
	int has_ids;                    /* the uid and gid fields were not empty */
	char maildrop[MAX_PATH];
};

/* What the start-up scan of the user file learned. */
struct authinfo {
	int has_apop;                   /* some entry has a {PLAIN} secret */
	char dummy[MAX_SECRET + 1];     /* a crypt setting of the file's kind, for unknown users */
};

enum { AUTH_OK, AUTH_FAIL, AUTH_ERROR };

/* Check the user file is safe to use and scan it, logging each malformed line
 * once. -1 with a reason in err when it cannot be used at all. */
int auth_scan(const char *path, struct authinfo *info, char *err, size_t errlen);
/* 1 when name is a syntactically valid user name. */
int auth_valid_name(const char *name);
/* USER/PASS and APOP. On AUTH_FAIL *known says whether the account exists. */
int auth_pass(const struct authinfo *, const char *path, const char *name,
    const char *pass, struct user *out, int *known);
int auth_apop(const char *path, const char *name, const char *digest,
    const char *timestamp, struct user *out, int *known);
/* As root, become the user for good, keeping only the supplementary group
 * extra when it is not (gid_t)-1. -1 with a reason in err. */
int auth_become(const struct user *, gid_t extra, char *err, size_t errlen);

#endif
