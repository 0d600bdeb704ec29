/*
 * signer.c - the signer: the one process that holds the TLS private key.
 *
 * A child of the monitor, started per connection when TLS is configured. As
 * root it opens the key file (which must be a regular file of root's or the
 * running user's, not readable by others) and parses it; then it becomes the
 * pre-login user, with no groups, not dumpable, under a seccomp filter that
 * allows only its channel, memory and exit (sandbox.c), and answers one
 * signature request of the pre-login process (the handshake's one use of the
 * key), then exits; the pre-login time limit, or the monitor at login, ends
 * it sooner. It reads no network input: only a fixed-size request from the
 * pre-login process, checked. A key it cannot load is logged and the channel
 * closed, which fails the handshake. Part of the TLS module (tlsmod.h): the
 * child loads it before it runs this.
 */
#define _GNU_SOURCE
#define OPENSSL_SUPPRESS_DEPRECATED     /* RSA_private_encrypt: tls.c says why */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "sandbox.h"
#include "signer.h"
#include "tls.h"

/* The PEM passphrase callback: there is none (OpenSSL's default would ask
 * on the terminal), so an encrypted key is refused as unusable. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* The key file as root: the key, or NULL (logged). */
static EVP_PKEY *
load_key(const char *path, const char *rhost)
{
	char buf[MAX_KEY_FILE];
	struct stat st;
	EVP_PKEY *k = NULL;
	ssize_t n;
	BIO *b;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		syslog(LOG_ERR, "error tls: key %s: %m rhost=%s", path, rhost);
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (st.st_mode & S_IRWXO)) {
		syslog(LOG_ERR, "error tls: key %s: unsafe (must be a regular file of root's or "
		    "the running user's, with no access for others) rhost=%s", path, rhost);
		close(fd);
		return NULL;
	}
	do
		n = read(fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0 || (size_t)n == sizeof(buf)) {
		syslog(LOG_ERR, "error tls: key %s: %s rhost=%s", path,
		    n < 0 ? strerror(errno) : n == 0 ? "empty" : "too big", rhost);
		explicit_bzero(buf, sizeof(buf));
		return NULL;
	}
	if ((b = BIO_new_mem_buf(buf, (int)n)) != NULL)
		k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
	BIO_free(b);
	explicit_bzero(buf, sizeof(buf));
	if (k == NULL || (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA &&
	    EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)) {
		syslog(LOG_ERR, "error tls: key %s: not a PEM RSA or EC private key (or encrypted) rhost=%s",
		    path, rhost);
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

/* Is k the private key of the chain's leaf? (A key of another certificate
 * would make every handshake fail later, and less clearly.) A chain that
 * does not parse is the pre-login process's to report. */
static int
key_matches(const struct signer *sg, EVP_PKEY *k)
{
	BIO *b = BIO_new_mem_buf(sg->cert, (int)sg->certlen);
	X509 *leaf = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	int ok = leaf == NULL || X509_check_private_key(leaf, k) == 1;

	X509_free(leaf);
	BIO_free(b);
	ERR_clear_error();
	return ok;
}

/* One answer to one request; the answer's len is -1 when it is refused. */
static void
sign_one(EVP_PKEY *k, const struct signreq *req, struct signans *ans)
{
	const RSA *rsa;
	const EC_KEY *ec;
	unsigned int len = 0;
	int n;

	ans->len = -1;
	if (req->len > sizeof(req->data))
		return;
	if (req->op == SIGN_RSA && EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA &&
	    (rsa = EVP_PKEY_get0_RSA(k)) != NULL && req->len <= (uint32_t)RSA_size(rsa) &&
	    (size_t)RSA_size(rsa) <= sizeof(ans->data) &&
	    (req->padding == RSA_PKCS1_PADDING || req->padding == RSA_NO_PADDING)) {
		n = RSA_private_encrypt((int)req->len, req->data, ans->data, (RSA *)rsa,
		    req->padding);
		ans->len = n > 0 ? n : -1;
	} else if (req->op == SIGN_ECDSA && EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
	    (ec = EVP_PKEY_get0_EC_KEY(k)) != NULL && req->len <= 64 &&
	    (size_t)ECDSA_size(ec) <= sizeof(ans->data)) {
		if (ECDSA_sign(0, req->data, (int)req->len, ans->data, &len, (EC_KEY *)ec) == 1)
			ans->len = (int32_t)len;
	}
	ERR_clear_error();
}

/* Close every descriptor but keep: the signer needs its channel only. */
static void
close_all_but(int keep)
{
	int fd;

	for (fd = 0; fd < MAX_INHERITED_FD; fd++)
		if (fd != keep)
			close(fd);
}

void
signer_run(const struct signer *sg, int chan)
{
	char err[128];
	struct signreq req;
	struct signans ans;
	EVP_PKEY *k;
	ssize_t n;

	alarm((unsigned)sg->limit);
	if ((k = load_key(sg->keyfile, sg->rhost)) == NULL)
		_exit(1);
	if (!key_matches(sg, k)) {
		syslog(LOG_ERR, "error tls: key %s is not the key of certificate %s rhost=%s",
		    sg->keyfile, sg->certfile, sg->rhost);
		_exit(1);
	}
	if (sg->drop && (setgroups(0, NULL) < 0 || setresgid(sg->gid, sg->gid, sg->gid) < 0 ||
	    setresuid(sg->uid, sg->uid, sg->uid) < 0)) {
		syslog(LOG_ERR, "error privsep: the signer cannot become uid %lu: %m",
		    (unsigned long)sg->uid);
		_exit(1);
	}
	closelog();
	close_all_but(chan);
	if (sandbox_enter(SANDBOX_SIGNER, chan + 1, err, sizeof(err)) < 0)
		_exit(1);
	memset(&ans, 0, sizeof(ans));   /* ready: an answer of length 0 */
	if (send(chan, &ans, sizeof(ans), MSG_NOSIGNAL) != (ssize_t)sizeof(ans))
		_exit(1);
	/* One handshake needs one signature (TLS 1.3's CertificateVerify, or
	 * TLS 1.2's ServerKeyExchange): one request is answered, then the
	 * signer is done, so even a subverted pre-login process gets no more
	 * than one signature of its choosing per connection. */
	do
		n = recv(chan, &req, sizeof(req), MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(req)) {
		memset(&ans, 0, sizeof(ans));
		sign_one(k, &req, &ans);
		explicit_bzero(&req, sizeof(req));
		do
			n = send(chan, &ans, sizeof(ans), MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
	}
	EVP_PKEY_free(k);
	_exit(0);
}
