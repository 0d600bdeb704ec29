/*
 * tls.h - TLS (OpenSSL 3) for the pre-login process and the relay: the
 * server context and its policy, the handshake, and reads and writes on the
 * client socket. The private key is never here: its operations go to the
 * signer over a channel (signer.c).
 */
#ifndef POP3D_TLS_H
#define POP3D_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* A signing request from the pre-login process to the signer, and its
 * answer: fixed-size records on a SOCK_SEQPACKET socketpair; the signer
 * checks every request as untrusted input. */
enum { SIGN_RSA = 1, SIGN_ECDSA = 2 };

struct signreq {
	uint32_t op;                    /* SIGN_RSA or SIGN_ECDSA */
	int32_t padding;                /* SIGN_RSA: RSA_PKCS1_PADDING or RSA_NO_PADDING */
	uint32_t len;                   /* octets of data */
	unsigned char data[MAX_SIGNATURE];      /* RSA: what to encrypt; ECDSA: the digest */
};

struct signans {
	int32_t len;                    /* octets of data, or -1: refused */
	unsigned char data[MAX_SIGNATURE];      /* RSA: the result; ECDSA: a DER signature */
};

struct tls;

/* What tls_recv and tls_send return when they would block. */
enum { TLS_WANT_READ = -2, TLS_WANT_WRITE = -3 };

/* A server for the certificate chain pem (PEM, leaf first) whose private
 * key operations go to the signer on signfd. Call before the sandbox (it
 * loads nothing from files). NULL with a reason in err. */
struct tls *tls_new(const char *pem, size_t len, int signfd, char *err, size_t errlen);
/* The handshake on fd, which becomes non-blocking; each wait at most
 * timeout seconds. 0, or -1 with a reason (no key material) in err, or -2
 * when the peer closed without sending anything (a probe: nothing to log). */
int tls_accept(struct tls *, int fd, int timeout, char *err, size_t errlen);
/* The signer is needed no more: close its channel (it then exits). */
void tls_signer_done(struct tls *);
/* Blocking, for the pre-login process's io: at most timeout seconds a
 * wait. tls_read: octets, 0 at the end, -1 an error, -2 a timeout.
 * tls_write: 0 when all went out, -1 otherwise. */
ssize_t tls_read(struct tls *, void *buf, size_t n, int timeout);
int tls_write(struct tls *, const void *buf, size_t n, int timeout);
/* Non-blocking, for the relay: octets, 0 at the end, -1 an error, or a
 * TLS_WANT_*: which readiness of tls_fd to wait for before trying again. */
ssize_t tls_recv(struct tls *, void *buf, size_t n);
ssize_t tls_send(struct tls *, const void *buf, size_t n);
/* Octets decrypted and not yet read (no need to wait for the socket). */
size_t tls_pending(struct tls *);
int tls_fd(const struct tls *);
/* Say goodbye (close_notify, at most timeout seconds) and free it all. */
void tls_close(struct tls *, int timeout);
/* The protocol and cipher agreed, for the log ("TLSv1.3 TLS_AES_..."). */
const char *tls_describe(const struct tls *, char *buf, size_t len);

#endif
