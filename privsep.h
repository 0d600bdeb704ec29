/*
 * privsep.h - privilege separation: the unprivileged, chrooted pre-login
 * process and its channel to the privileged monitor that checks credentials.
 */
#ifndef POP3D_PRIVSEP_H
#define POP3D_PRIVSEP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

enum { REQ_PASS = 1, REQ_APOP = 2, REQ_LOG = 3, REQ_PROXY = 4 };
/* The monitor's answers. */
enum { ANS_OK = 'K', ANS_FAIL = 'F', ANS_LIMIT = 'L', ANS_ERROR = 'E' };

/* The one record the pre-login process sends per login attempt, for a line
 * the monitor is to log for it (REQ_LOG: "tls: ..." or "proxy: ..."), or,
 * with -P, first of all for what the PROXY header said (REQ_PROXY: a struct
 * proxyinfo in data): untrusted. */
struct authreq {
	uint32_t kind;                  /* REQ_PASS, REQ_APOP, REQ_LOG or REQ_PROXY */
	uint32_t namelen, secretlen, datalen, tlslen;
	char name[MAX_NAME + 1];
	char secret[MAX_LINE + 1];      /* the password, or the APOP digest */
	char tls[64];                   /* protocol and cipher when over TLS, else empty */
	char data[INBUF_SIZE];          /* what the client pipelined after the command;
	                                 * REQ_LOG: the text */
};

struct prelogin {
	int active;                     /* root: chroot and switch in the child */
	uid_t uid;
	gid_t gid;
	int rootfd;                     /* <statedir>/empty, opened and checked */
	char root[MAX_PATH];            /* its name, for messages */
	int tls;                        /* load the TLS module in the child (tlsmod.h),
	                                 * before it gives up its rights */
};

/* Find the pre-login user (user; "nobody" when user is the default and does
 * not exist) and make <statedir>/empty. -1 with a reason in err. */
int privsep_setup(struct prelogin *, const char *statedir, const char *user,
    int user_given, char *err, size_t errlen);
/* Fork: 0 in the child, which now runs unprivileged in the empty root (its
 * sandbox is the caller's to enter, once TLS is set up) with the TLS module
 * loaded if pl->tls; the child's pid in
 * the parent; -1 when the parent could not fork, -2 in a child that could
 * not confine itself or load the module. *chan is this side's channel. */
pid_t privsep_fork(const struct prelogin *, int *chan, char *err, size_t errlen);
struct signer;
/* Fork the signer (signer.c, in the TLS module, which the child loads) for
 * this connection: its pid, with the pre-login process's end of its channel
 * in *chan; -1 with a reason. */
pid_t privsep_signer(const struct signer *, int *chan, char *err, size_t errlen);
/* Child: send the request and wait for the answer (ANS_*), or -1. */
int privsep_ask(int chan, const struct authreq *);
/* Monitor: 1 a well-formed request, 0 the child is gone, -1 a malformed one. */
int privsep_receive(int chan, struct authreq *);
int privsep_answer(int chan, char answer);

#endif
