/*
 * tls.c - TLS with OpenSSL 3, for the pre-login process (the handshake, then
 * the POP3 dialogue up to login) and the relay (after login).
 *
 * Policy: TLS 1.2 and 1.3 only; forward-secret AEAD suites only (Mozilla's
 * "intermediate" less the DHE ones), the server's order; X25519, P-256 and
 * P-384; no compression, no renegotiation, no session tickets or cache
 * (every connection is a process of its own); ALPN "pop3" when the client
 * offers ALPN, a no_application_protocol alert when it offers only others.
 *
 * The private key is not here. The server's key is the public key of the
 * certificate, given an RSA_METHOD or EC_KEY_METHOD whose private operation
 * is a request to the signer (signer.c) over a socketpair: the signature of
 * the handshake is the one thing TLS needs the key for. (These methods are
 * OpenSSL's legacy interface, deprecated in 3.0 but kept: keys with such a
 * "foreign" method stay on the legacy path, which calls them.)
 */
#define _GNU_SOURCE
#define OPENSSL_SUPPRESS_DEPRECATED     /* RSA_METHOD, EC_KEY_METHOD: see above */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls.h"

#define CIPHERS_12 "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define CIPHERS_13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:P-256:P-384"

struct tls {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;                         /* the client socket */
	int signfd;                     /* the channel to the signer, or -1 */
	int timeout;                    /* seconds the signer may take */
	RSA_METHOD *rsa_meth;
	EC_KEY_METHOD *ec_meth;
};

/* The ex_data slot of an EC_KEY that points to its struct tls: a number
 * OpenSSL hands out once per process, set in tls_new. */
static int ec_slot = -1;

/* OpenSSL's words for an error, never NULL. */
static const char *
ossl_reason(unsigned long e)
{
	const char *r = ERR_reason_error_string(e);

	return r != NULL ? r : "unknown TLS error";
}

/* ---- the key, through the signer ---- */

/* Ask the signer: the length of its answer in out, or -1. */
static int
sign_remote(struct tls *t, uint32_t op, int padding, const unsigned char *data, size_t len,
    unsigned char *out, size_t max)
{
	struct pollfd p = { .fd = t->signfd, .events = POLLIN };
	struct signreq req;
	struct signans ans;
	ssize_t n;
	int r = -1;

	if (t->signfd < 0 || len > sizeof(req.data))
		return -1;
	memset(&req, 0, sizeof(req));
	req.op = op;
	req.padding = padding;
	req.len = (uint32_t)len;
	memcpy(req.data, data, len);
	do
		n = send(t->signfd, &req, sizeof(req), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(req))
		goto out;
	do
		n = poll(&p, 1, t->timeout * 1000);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		goto out;
	do
		n = recv(t->signfd, &ans, sizeof(ans), 0);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(ans) && ans.len > 0 && (size_t)ans.len <= max &&
	    (size_t)ans.len <= sizeof(ans.data)) {
		memcpy(out, ans.data, (size_t)ans.len);
		r = ans.len;
	}
out:
	explicit_bzero(&req, sizeof(req));
	return r;
}

static int
rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
	struct tls *t = RSA_meth_get0_app_data(RSA_get_method(rsa));

	if (flen < 0 || (padding != RSA_PKCS1_PADDING && padding != RSA_NO_PADDING))
		return -1;
	return sign_remote(t, SIGN_RSA, padding, from, (size_t)flen, to, (size_t)RSA_size(rsa));
}

static int
ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig,
    unsigned int *siglen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
{
	struct tls *t = EC_KEY_get_ex_data(eckey, ec_slot);
	int n;

	(void)type;
	(void)kinv;
	(void)r;
	if (dlen < 0)
		return 0;
	n = sign_remote(t, SIGN_ECDSA, 0, dgst, (size_t)dlen, sig, (size_t)ECDSA_size(eckey));
	if (n <= 0)
		return 0;
	*siglen = (unsigned int)n;
	return 1;
}

static ECDSA_SIG *
ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv, const BIGNUM *r,
    EC_KEY *eckey)
{
	unsigned char der[MAX_SIGNATURE];
	const unsigned char *p = der;
	unsigned int n = 0;

	if (ec_sign(0, dgst, dlen, der, &n, kinv, r, eckey) != 1)
		return NULL;
	return d2i_ECDSA_SIG(NULL, &p, (long)n);
}

/* The certificate's public key, its private operations sent to the signer. */
static EVP_PKEY *
remote_key(struct tls *t, EVP_PKEY *pub, char *err, size_t errlen)
{
	EVP_PKEY *k = EVP_PKEY_new();
	RSA *rsa;
	EC_KEY *ec;
	int (*sign)(int, const unsigned char *, int, unsigned char *, unsigned int *,
	    const BIGNUM *, const BIGNUM *, EC_KEY *) = NULL;
	int (*setup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;
	ECDSA_SIG *(*sign_sig)(const unsigned char *, int, const BIGNUM *, const BIGNUM *,
	    EC_KEY *) = NULL;

	if (k == NULL)
		goto fail;
	switch (EVP_PKEY_get_base_id(pub)) {
	case EVP_PKEY_RSA:
		if ((t->rsa_meth = RSA_meth_dup(RSA_get_default_method())) == NULL ||
		    RSA_meth_set1_name(t->rsa_meth, "pop3d signer") != 1 ||
		    RSA_meth_set_priv_enc(t->rsa_meth, rsa_priv_enc) != 1 ||
		    RSA_meth_set0_app_data(t->rsa_meth, t) != 1 ||
		    (rsa = EVP_PKEY_get1_RSA(pub)) == NULL)
			goto fail;
		if (RSA_set_method(rsa, t->rsa_meth) != 1 || EVP_PKEY_assign_RSA(k, rsa) != 1) {
			RSA_free(rsa);
			goto fail;
		}
		return k;
	case EVP_PKEY_EC:
		if (ec_slot < 0)
			ec_slot = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, NULL);
		if (ec_slot < 0 ||
		    (t->ec_meth = EC_KEY_METHOD_new(EC_KEY_get_default_method())) == NULL ||
		    (ec = EVP_PKEY_get1_EC_KEY(pub)) == NULL)
			goto fail;
		EC_KEY_METHOD_get_sign(t->ec_meth, &sign, &setup, &sign_sig);
		EC_KEY_METHOD_set_sign(t->ec_meth, ec_sign, setup, ec_sign_sig);
		if (EC_KEY_set_method(ec, t->ec_meth) != 1 || EC_KEY_set_ex_data(ec, ec_slot, t) != 1 ||
		    EVP_PKEY_assign_EC_KEY(k, ec) != 1) {
			EC_KEY_free(ec);
			goto fail;
		}
		return k;
	default:
		snprintf(err, errlen, "certificate: a key type other than RSA or ECDSA");
		EVP_PKEY_free(k);
		return NULL;
	}
fail:
	snprintf(err, errlen, "certificate key: %s", ossl_reason(ERR_get_error()));
	EVP_PKEY_free(k);
	return NULL;
}

/* ---- the context ---- */

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char pop3[] = { 4, 'p', 'o', 'p', '3' };
	unsigned char *sel = NULL;

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto(&sel, outlen, pop3, sizeof(pop3), in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;     /* no_application_protocol */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int
policy(SSL_CTX *ctx)
{
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_CLEANSE_PLAINTEXT);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_security_level(ctx, 2);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 &&
	    SSL_CTX_set_cipher_list(ctx, CIPHERS_12) == 1 &&
	    SSL_CTX_set_ciphersuites(ctx, CIPHERS_13) == 1 &&
	    SSL_CTX_set1_groups_list(ctx, GROUPS) == 1 &&
	    SSL_CTX_set_num_tickets(ctx, 0) == 1;
}

/* The chain: the leaf first, then the others in order. */
static int
load_chain(struct tls *t, const char *pem, size_t len, char *err, size_t errlen)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *leaf, *x;
	EVP_PKEY *key;
	int r = -1;

	if (b == NULL || (leaf = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		snprintf(err, errlen, "certificate: no PEM certificate in the file");
		BIO_free(b);
		return -1;
	}
	if (SSL_CTX_use_certificate(t->ctx, leaf) != 1) {
		snprintf(err, errlen, "certificate: %s", ossl_reason(ERR_get_error()));
		goto out;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (SSL_CTX_add0_chain_cert(t->ctx, x) != 1) {
			X509_free(x);
			snprintf(err, errlen, "certificate chain: %s",
			    ossl_reason(ERR_get_error()));
			goto out;
		}
	ERR_clear_error();                      /* the end of the PEM data */
	if ((key = remote_key(t, X509_get0_pubkey(leaf), err, errlen)) == NULL)
		goto out;
	if (SSL_CTX_use_PrivateKey(t->ctx, key) != 1) {
		snprintf(err, errlen, "certificate key: %s", ossl_reason(ERR_get_error()));
		EVP_PKEY_free(key);
		goto out;
	}
	EVP_PKEY_free(key);
	r = 0;
out:
	X509_free(leaf);
	BIO_free(b);
	return r;
}

struct tls *
tls_new(const char *pem, size_t len, int signfd, char *err, size_t errlen)
{
	struct tls *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->fd = -1;
	t->signfd = signfd;
	t->timeout = DEFAULT_AUTH_TIMEOUT;
	if (OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL) != 1 ||
	    (t->ctx = SSL_CTX_new(TLS_server_method())) == NULL || !policy(t->ctx)) {
		snprintf(err, errlen, "TLS context: %s", ossl_reason(ERR_get_error()));
		tls_close(t, 0);
		return NULL;
	}
	if (load_chain(t, pem, len, err, errlen) < 0) {
		tls_close(t, 0);
		return NULL;
	}
	return t;
}

/* ---- I/O ---- */

/* Wait at most timeout seconds for fd: 1 ready, 0 timeout, -1 error. */
static int
wait_for(int fd, short events, int timeout)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, timeout < 0 ? -1 : timeout * 1000);
	while (r < 0 && errno == EINTR);
	return r;
}

/* Why the last call failed, in words (OpenSSL's reason, or errno's). */
static void
reason(SSL *ssl, int r, char *err, size_t errlen)
{
	int code = SSL_get_error(ssl, r);
	unsigned long e = ERR_get_error();

	if (e != 0)
		snprintf(err, errlen, "%s", ossl_reason(e));
	else if (code == SSL_ERROR_SYSCALL && errno != 0)
		snprintf(err, errlen, "%s", strerror(errno));
	else
		snprintf(err, errlen, "the client closed the connection");
	ERR_clear_error();
}

int
tls_accept(struct tls *t, int fd, int timeout, char *err, size_t errlen)
{
	int r, code;

	t->fd = fd;
	t->timeout = timeout;
	if ((t->ssl = SSL_new(t->ctx)) == NULL || SSL_set_fd(t->ssl, fd) != 1 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "TLS connection: %s", ossl_reason(ERR_get_error()));
		return -1;
	}
	for (;;) {
		ERR_clear_error();
		errno = 0;
		if ((r = SSL_accept(t->ssl)) == 1)
			return 0;
		code = SSL_get_error(t->ssl, r);
		if (code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) {
			reason(t->ssl, r, err, errlen);
			/* Closed before sending a single octet: a probe (a
			 * health check, a port scan), not a failed handshake. */
			return BIO_number_read(SSL_get_rbio(t->ssl)) == 0 ? -2 : -1;
		}
		r = wait_for(fd, code == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, timeout);
		if (r <= 0) {
			snprintf(err, errlen, r == 0 ? "handshake timed out" : "poll: %s",
			    strerror(errno));
			return -1;
		}
	}
}

void
tls_signer_done(struct tls *t)
{
	if (t->signfd >= 0)
		close(t->signfd);
	t->signfd = -1;
}

ssize_t
tls_recv(struct tls *t, void *buf, size_t n)
{
	size_t got = 0;
	int r, code;

	ERR_clear_error();
	if ((r = SSL_read_ex(t->ssl, buf, n, &got)) == 1)
		return (ssize_t)got;
	code = SSL_get_error(t->ssl, r);
	if (code == SSL_ERROR_WANT_READ)
		return TLS_WANT_READ;
	if (code == SSL_ERROR_WANT_WRITE)
		return TLS_WANT_WRITE;
	if (code == SSL_ERROR_ZERO_RETURN ||
	    (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0))
		return 0;               /* close_notify, or the connection's end */
	return -1;
}

ssize_t
tls_send(struct tls *t, const void *buf, size_t n)
{
	size_t put = 0;
	int r, code;

	ERR_clear_error();
	if ((r = SSL_write_ex(t->ssl, buf, n, &put)) == 1)
		return (ssize_t)put;
	code = SSL_get_error(t->ssl, r);
	if (code == SSL_ERROR_WANT_READ)
		return TLS_WANT_READ;
	if (code == SSL_ERROR_WANT_WRITE)
		return TLS_WANT_WRITE;
	return -1;
}

ssize_t
tls_read(struct tls *t, void *buf, size_t n, int timeout)
{
	ssize_t r;
	int w;

	for (;;) {
		errno = 0;
		r = tls_recv(t, buf, n);
		if (r >= 0 || r == -1)
			return r;
		w = wait_for(t->fd, r == TLS_WANT_READ ? POLLIN : POLLOUT, timeout);
		if (w == 0)
			return -2;
		if (w < 0)
			return -1;
	}
}

int
tls_write(struct tls *t, const void *buf, size_t n, int timeout)
{
	const char *p = buf;
	ssize_t r;

	while (n > 0) {
		r = tls_send(t, p, n);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
		} else if (r == -1 ||
		    wait_for(t->fd, r == TLS_WANT_READ ? POLLIN : POLLOUT, timeout) != 1) {
			return -1;
		}
	}
	return 0;
}

size_t
tls_pending(struct tls *t)
{
	return t->ssl != NULL ? (size_t)SSL_pending(t->ssl) : 0;
}

int
tls_fd(const struct tls *t)
{
	return t->fd;
}

const char *
tls_describe(const struct tls *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s", SSL_get_version(t->ssl),
	    SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)));
	return buf;
}

void
tls_close(struct tls *t, int timeout)
{
	if (t == NULL)
		return;
	if (t->ssl != NULL) {
		if (timeout > 0 && SSL_is_init_finished(t->ssl) && SSL_shutdown(t->ssl) < 0 &&
		    SSL_get_error(t->ssl, -1) == SSL_ERROR_WANT_WRITE &&
		    wait_for(t->fd, POLLOUT, timeout) == 1)
			SSL_shutdown(t->ssl);
		SSL_free(t->ssl);
	}
	SSL_CTX_free(t->ctx);
	if (t->rsa_meth != NULL)
		RSA_meth_free(t->rsa_meth);
	if (t->ec_meth != NULL)         /* (EC_KEY_METHOD_free(NULL) is not safe) */
		EC_KEY_METHOD_free(t->ec_meth);
	tls_signer_done(t);
	free(t);
}
