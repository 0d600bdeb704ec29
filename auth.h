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

/* One kind of crypt hash in the user file (scheme and cost): a hash of that
 * kind, and how many entries have one. */
struct costclass {
	char hash[MAX_SECRET + 1];
	unsigned count;
};

/* What the start-up scan of the user file learned, and how hashing runs.
 * It holds hashes from the file: wipe it (auth_forget) before a process
 * that needs none of it goes on. */
struct authinfo {
	int has_apop;                   /* some entry has a {PLAIN} secret */
	size_t nclasses;
	unsigned total;                 /* entries in all classes */
	struct costclass classes[MAX_COST_CLASSES];
	unsigned char key[16];          /* picks the class an unknown name imitates */
	int hash_drop;                  /* hashing processes switch to: */
	uid_t hash_uid;
	gid_t hash_gid;
};

enum { AUTH_OK, AUTH_FAIL, AUTH_ERROR };

/* Check the user file is safe to use and scan it, logging each malformed line
 * once. -1 with a reason in err when it cannot be used at all. */
int auth_scan(const char *path, struct authinfo *info, char *err, size_t errlen);
/* Wipe what auth_scan learned. */
void auth_forget(struct authinfo *info);
/* 1 when name is a syntactically valid user name. */
int auth_valid_name(const char *name);
/* USER/PASS and APOP. On AUTH_FAIL *known says whether the account exists. */
int auth_pass(const struct authinfo *, const char *path, const char *name,
    const char *pass, struct user *out, int *known);
int auth_apop(const char *path, const char *name, const char *digest,
    const char *timestamp, struct user *out, int *known);

/* As root: take the user's gid for good (and extra, when it is not
 * (gid_t)-1, as the saved gid only: see auth_group), and the user's uid as the
 * effective uid only, to open the maildrop with the user's rights;
 * auth_unassume gives the effective uid back to root. auth_become then makes
 * the user's uid the real, effective and saved one, for good. Without root
 * all three do nothing. -1 with a reason in err. */
int auth_assume(const struct user *, gid_t extra, char *err, size_t errlen);
int auth_unassume(char *err, size_t errlen);
int auth_become(const struct user *, gid_t extra, char *err, size_t errlen);
/* After auth_become: make group (the -g group, kept as the saved gid) the
 * effective gid while on is 1, the user's own again when it is 0. */
int auth_group(gid_t group, int on);

#endif
