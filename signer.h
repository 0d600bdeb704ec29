/*
 * signer.h - the signer process (signer.c): the one process of a connection
 * that ever holds the TLS private key.
 */
#ifndef POP3D_SIGNER_H
#define POP3D_SIGNER_H

#include <sys/types.h>

struct signer {
	const char *keyfile;            /* the private key, PEM */
	const char *certfile;           /* (for the log) */
	const char *cert;               /* the certificate chain read at start: the key */
	size_t certlen;                 /* must be its leaf's */
	const char *rhost;              /* for the log */
	int limit;                      /* seconds it may live: the pre-login time limit */
	int drop;                       /* become uid/gid once the key is loaded */
	uid_t uid;
	gid_t gid;
};

/* The signer process, on its end chan of the channel to the pre-login
 * process: load the key (as root), say so on chan (an answer of length 0),
 * confine itself, answer one request (the handshake needs one signature)
 * and exit. Never returns. */
void signer_run(const struct signer *, int chan) __attribute__((noreturn));

#endif
